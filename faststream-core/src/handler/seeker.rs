//! The [`Seeker`] extractor: a handler moving its own subscriber's partitions.

use crate::error::{Error, Result};
use crate::message::seek::{Seek, SeekPartitions, Sought};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

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

/// The subscriber's name, and its backend's seek once the subscription started (`None`:
/// the backend cannot seek).
struct SeekerCell {
    subscriber: String,
    backend: OnceLock<Option<Arc<dyn SeekPartitions>>>,
    /// Wakes seeks asked for before the subscription started (a handler can run before
    /// `Broker::subscribe` returned).
    bound: Notify,
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
    pub(crate) fn unbound(subscriber: &str) -> Self {
        Self(Arc::new(SeekerCell {
            subscriber: subscriber.to_owned(),
            backend: OnceLock::new(),
            bound: Notify::new(),
        }))
    }

    /// A seeker that cannot seek (a handler called outside a subscriber): its seeks answer
    /// an error.
    pub(crate) fn detached() -> Self {
        let seeker = Self::unbound("(none)");
        seeker.bind(None);
        seeker
    }

    /// Gives the seeker its subscription's seek, `None` when the backend has none.
    pub(crate) fn bind(&self, backend: Option<Arc<dyn SeekPartitions>>) {
        let _ = self.0.backend.set(backend);
        self.0.bound.notify_waiters();
    }

    /// Moves the partitions `seek` names (see [`Seek`]); where each reads from now. Asked
    /// before the subscription finished starting, it waits for it.
    pub async fn seek(&self, seek: Seek) -> Result<Vec<Sought>> {
        let backend = loop {
            let bound = self.0.bound.notified();
            tokio::pin!(bound);
            bound.as_mut().enable();
            if let Some(backend) = self.0.backend.get() {
                break backend;
            }
            bound.await;
        };
        match backend {
            Some(backend) => backend.seek(seek).await,
            None => Err(Error::config_msg(format!(
                "subscriber `{}` cannot seek: its broker does not support seeking",
                self.0.subscriber
            ))),
        }
    }
}
