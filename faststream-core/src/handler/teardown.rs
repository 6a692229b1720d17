//! Cleanup a dependency leaves for after the handler: Rust has no async `Drop`, so the steps
//! are kept in a [`Teardown`] that the handler's future runs once the handler is done, and
//! that hands them to the app's task tracker when the future is dropped first.

use futures::future::BoxFuture;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

/// How the handler ended, as a teardown step sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned, and its result is not an error.
    Succeeded,
    /// The handler returned an error, or one of its parameters could not be extracted.
    Failed,
    /// The handler's future was dropped before it finished: a handler timeout, a revoked
    /// partition, shutdown, or a panic.
    Cancelled,
}

type Step = Box<dyn FnOnce(Outcome) -> BoxFuture<'static, ()> + Send>;

/// The cleanup steps registered for one message (see
/// [`MessageContext::teardown`](crate::extract::MessageContext::teardown)). Cloning shares the
/// list, so a dependency's future can register a step once it has acquired what needs one.
///
/// ```
/// use faststream_core::extract::{Extraction, FromMessageParts, MessageContext, Outcome};
/// use faststream_core::Message;
///
/// struct Lease(u64);
///
/// impl FromMessageParts for Lease {
///     fn from_message_parts(_message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
///         let teardown = cx.teardown();
///         Extraction::pending(async move {
///             let lease = Lease(7); // acquired from a pool here
///             let id = lease.0;
///             teardown.defer(move |outcome| async move {
///                 // Give the lease back; roll back on anything but success.
///                 let _ = (id, outcome == Outcome::Succeeded);
///             });
///             Ok(lease)
///         })
///     }
/// }
/// ```
#[derive(Clone, Default)]
pub struct Teardown {
    steps: Arc<Mutex<Vec<Step>>>,
}

impl std::fmt::Debug for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps = self
            .steps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Teardown").field("steps", &steps).finish()
    }
}

impl Teardown {
    /// Registers `step`, run after the handler with how it ended. Steps run newest first,
    /// one after the other, like nested scopes.
    pub fn defer<F, Fut>(&self, step: F)
    where
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let step: Step = Box::new(move |outcome| Box::pin(step(outcome)));
        self.steps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(step);
    }

    /// Takes the registered steps and returns the future that runs them, newest first.
    pub(crate) fn run(&self, outcome: Outcome) -> BoxFuture<'static, ()> {
        let steps = std::mem::take(&mut *self.steps.lock().unwrap_or_else(PoisonError::into_inner));
        Box::pin(async move {
            for step in steps.into_iter().rev() {
                step(outcome).await;
            }
        })
    }
}
