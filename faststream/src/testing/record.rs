//! Handler mocks: a tower layer the test broker puts around every subscriber, recording the
//! message each call received and how the call ended.

use super::payload::decode;
use faststream_core::middleware::BoxError;
use faststream_core::{Message, Reply};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// One call of a subscriber's handler pipeline.
#[derive(Debug, Clone)]
pub struct Call {
    /// The message the handler received.
    pub message: Message,
    /// `None` while the call runs; then `Ok(())`, or the error's text (decode error,
    /// handler error, panic, timeout, nack...).
    pub outcome: Option<Result<(), String>>,
}

impl Call {
    /// The payload decoded the way FastStream encodes it (see [`decode`]).
    pub fn json(&self) -> serde_json::Value {
        decode(&self.message)
    }
}

/// Calls per subscriber name.
pub(crate) type CallLog = Arc<Mutex<HashMap<String, Vec<Call>>>>;

/// Records calls; the n-th subscriber the layer wraps is the app's n-th subscriber (the
/// runtime builds subscribers in registration order, each wrapping its pipeline once).
#[derive(Clone)]
pub(crate) struct RecordCalls {
    pub(crate) log: CallLog,
    /// The subscriber whose calls these are.
    pub(crate) name: Arc<str>,
}

impl<S> Layer<S> for RecordCalls {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            name: Arc::clone(&self.name),
            log: Arc::clone(&self.log),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Recorded<S> {
    inner: S,
    name: Arc<str>,
    log: CallLog,
}

impl<S> Service<Message> for Recorded<S>
where
    S: Service<Message, Response = Reply, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Reply, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let index = {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let calls = log.entry(self.name.to_string()).or_default();
            calls.push(Call {
                message: message.clone(),
                outcome: None,
            });
            calls.len() - 1
        };
        let call = self.inner.call(message);
        let (log, name) = (Arc::clone(&self.log), Arc::clone(&self.name));
        Box::pin(async move {
            let outcome = call.await;
            let summary = match &outcome {
                Ok(Reply::Failed(err)) => Err(err.to_string()),
                Err(err) => Err(err.to_string()),
                Ok(_) => Ok(()),
            };
            if let Some(call) = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&*name)
                .and_then(|calls| calls.get_mut(index))
            {
                call.outcome = Some(summary);
            }
            outcome
        })
    }
}
