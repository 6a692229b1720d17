//! A `tracing` span per message, so every log line of a handler names its message.

use crate::message::Message;
use std::task::{Context, Poll};
use tracing::instrument::{Instrument, Instrumented};

/// Runs each call inside a `message` span with the subscriber's name, topic, partition and
/// offset. The span is at DEBUG level: with the default INFO filter it is never created.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    subscriber: std::sync::Arc<str>,
}

impl TraceLayer {
    /// Spans named after `subscriber`.
    pub fn new(subscriber: impl Into<std::sync::Arc<str>>) -> Self {
        Self {
            subscriber: subscriber.into(),
        }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            subscriber: std::sync::Arc::clone(&self.subscriber),
        }
    }
}

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    subscriber: std::sync::Arc<str>,
}

impl<S> tower::Service<Message> for Trace<S>
where
    S: tower::Service<Message>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let span = tracing::debug_span!(
            "message",
            subscriber = %self.subscriber,
            topic = %message.topic,
            partition = message.partition,
            offset = message.offset,
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(message)
        };
        future.instrument(span)
    }
}
