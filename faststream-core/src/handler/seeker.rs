//! The [`Seeker`] extractor: a handler moving its own subscriber's partitions.

use crate::error::{Error, Result};
use crate::message::seek::{Seek, SeekPartitions, Sought};
use std::sync::{Arc, OnceLock};

/// Seeks the handler's own subscriber (what `RunningApp::seek` does from outside), e.g. to
/// replay a partition from a timestamp when a handler finds it needs to:
///
/// ```
/// use faststream_core::seek::{Seek, Seeker};
/// use faststream_core::{Message, StartFrom};
///
/// async fn handle(message: Message, seeker: Seeker) -> faststream_core::Result<()> {
///     if message.payload.as_ref() == b"replay" {
///         // Every partition of this subscriber reads from the record an hour back.
///         let an_hour_ago = message.timestamp.unwrap_or_default() - 3_600_000;
///         seeker.seek(Seek::all(StartFrom::Timestamp(an_hour_ago))).await?;
///     }
///     Ok(())
/// }
/// ```
///
/// A seek drops the in-flight work of the partitions it moves, and the message in hand is
/// in-flight work of its own partition: a handler that seeks its own partition ends at that
/// `await` (its future is dropped), and its message is not committed. Seeking other
/// partitions returns where each reads from now.
#[derive(Clone)]
pub struct Seeker(Arc<SeekerCell>);

/// The subscriber's name, and its backend's seek once the subscription started.
struct SeekerCell {
    subscriber: String,
    backend: OnceLock<Arc<dyn SeekPartitions>>,
}

impl std::fmt::Debug for Seeker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeker")
            .field("subscriber", &self.0.subscriber)
            .field("bound", &self.0.backend.get().is_some())
            .finish()
    }
}

impl Seeker {
    /// A seeker for `subscriber`, usable once the subscription started (until then, and
    /// outside a subscriber, its seeks answer an error).
    pub fn unbound(subscriber: &str) -> Self {
        Self(Arc::new(SeekerCell {
            subscriber: subscriber.to_owned(),
            backend: OnceLock::new(),
        }))
    }

    /// Gives the seeker its subscription's seek (when the backend has one).
    pub(crate) fn bind(&self, backend: Arc<dyn SeekPartitions>) {
        let _ = self.0.backend.set(backend);
    }

    /// Moves the partitions `seek` names (see [`Seek`]); where each reads from now.
    pub async fn seek(&self, seek: Seek) -> Result<Vec<Sought>> {
        match self.0.backend.get() {
            Some(backend) => backend.seek(seek).await,
            None => Err(Error::config_msg(format!(
                "subscriber `{}` cannot seek: its broker does not support seeking",
                self.0.subscriber
            ))),
        }
    }
}
