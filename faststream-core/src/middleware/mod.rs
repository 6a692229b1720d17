//! The handler pipeline as [tower] layers, and the publish pipeline users can wrap.
//!
//! Every consumed message goes through one [`tower::Service`]: it receives the owned
//! [`Message`](crate::Message) (topic, partition, offset, key, headers, payload bytes) and answers with the
//! handler's [`Reply`](crate::Reply) or an error ([`BoxError`]: a decode or extraction error, the handler's
//! own error, a panic, a timeout, a manual nack or reject). The partition worker then
//! publishes the reply and applies the subscriber's ack policy to the outcome.
//!
//! The stack of one subscriber, outermost first:
//!
//! 1. [`TraceLayer`]: a `tracing` span per message (`message{topic, partition, offset}`, at
//!    DEBUG so it costs nothing unless asked for).
//! 2. The app's layers ([`App::layer`](crate::App::layer)), then the subscriber's
//!    ([`SubscriberConfig::layer`](crate::SubscriberConfig::layer)), in the order added:
//!    the first added is the outermost.
//! 3. `max_concurrency`: tower's `GlobalConcurrencyLimitLayer`, one semaphore shared by
//!    all partitions of the subscriber.
//! 4. `handler_timeout` (off by default): tower's `TimeoutLayer`; an expired call is a
//!    failed message ([`HandlerTimedOut`]).
//! 5. [`HandlerService`]: extraction and the handler call. A panicking handler or extractor
//!    is a failed message ([`HandlerPanicked`]), never a dead partition: the service catches
//!    it ([`CatchPanicLayer`] does the same for services of your own).
//!
//! Without user layers the stack is one concrete type and a message costs no boxing; with
//! them the part above the user layers is boxed once per subscriber and each message's
//! future once.
//!
//! Publishing has the same seam: [`App::publish_layer`](crate::App::publish_layer) wraps the
//! service that hands a [`Record`] to the producer, for every record a
//! handler's reply produces.
//!
//! # Examples
//!
//! Timing and logging, as a layer any subscriber can use:
//!
//! ```
//! use faststream_core::middleware::BoxError;
//! use faststream_core::{Message, Reply};
//! use std::task::{Context, Poll};
//! use std::time::Instant;
//! use futures::future::BoxFuture;
//! use tower::{Layer, Service};
//!
//! #[derive(Clone)]
//! struct Timing;
//!
//! impl<S> Layer<S> for Timing {
//!     type Service = TimingService<S>;
//!     fn layer(&self, inner: S) -> Self::Service {
//!         TimingService(inner)
//!     }
//! }
//!
//! #[derive(Clone)]
//! struct TimingService<S>(S);
//!
//! impl<S> Service<Message> for TimingService<S>
//! where
//!     S: Service<Message, Response = Reply, Error = BoxError>,
//!     S::Future: Send + 'static,
//! {
//!     type Response = Reply;
//!     type Error = BoxError;
//!     type Future = BoxFuture<'static, Result<Reply, BoxError>>;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
//!         self.0.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, message: Message) -> Self::Future {
//!         let place = format!("{}[{}]@{}", message.topic, message.partition, message.offset);
//!         let started = Instant::now();
//!         let call = self.0.call(message);
//!         Box::pin(async move {
//!             let outcome = call.await;
//!             let outcome_name = if outcome.is_ok() { "ok" } else { "error" };
//!             tracing::info!("{place} handled in {:?}: {outcome_name}", started.elapsed());
//!             outcome
//!         })
//!     }
//! }
//!
//! # fn app<B: faststream_core::Broker>(app: faststream_core::App<B>) -> faststream_core::App<B> {
//! app.layer(Timing)
//! # }
//! ```
//!
//! A publish layer that adds a header to every outgoing record (tower's `MapRequestLayer`
//! is enough here):
//!
//! ```
//! use tower::util::MapRequestLayer;
//! use faststream_core::Record;
//!
//! # fn app<B: faststream_core::Broker>(app: faststream_core::App<B>) -> faststream_core::App<B> {
//! app.publish_layer(MapRequestLayer::new(|record: Record| record.header("x-service", "billing")))
//! # }
//! ```
//!
//! Error mapping in the style of FastStream's `ExceptionMiddleware`: a handler error of a
//! given type becomes a reply (here, an error document published instead), everything else
//! passes through:
//!
//! ```
//! use faststream_core::middleware::BoxError;
//! use faststream_core::{IntoReply, Reply};
//! use tower::util::MapResultLayer;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("unknown user {0}")]
//! struct UnknownUser(i64);
//!
//! fn handle_unknown_user(outcome: Result<Reply, BoxError>) -> Result<Reply, BoxError> {
//!     match outcome {
//!         Err(err) => match err.downcast::<UnknownUser>() {
//!             Ok(unknown) => Ok(serde_json::json!({"error": unknown.to_string()}).into_reply()),
//!             Err(other) => Err(other),
//!         },
//!         ok => ok,
//!     }
//! }
//!
//! # fn app<B: faststream_core::Broker>(app: faststream_core::App<B>) -> faststream_core::App<B> {
//! app.layer(MapResultLayer::new(handle_unknown_user))
//! # }
//! ```

mod catch_panic;
mod trace;

pub use catch_panic::{CatchPanic, CatchPanicFuture, CatchPanicLayer};
pub use trace::{Trace, TraceLayer};

// Defined with what they belong to, and named here too, where users look for layers.
pub use crate::config::subscriber::{HandlerLayer, MessageLayer};
pub use crate::error::{BoxError, HandlerPanicked, HandlerTimedOut, Nacked, Rejected};
pub use crate::handler::service::{
    BoxMessageService, HandlerFuture, HandlerService, MessageService,
};

use crate::error::PublishError;
use crate::message::record::Record;
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneService;
use tower::{Layer, Service};

/// The publish pipeline with its type erased: hands a record to the producer and answers with
/// the delivery future (`D`, the backend's) that resolves when the broker acknowledged it.
pub type BoxPublishService<D> = BoxCloneService<Record, D, PublishError>;

/// A user layer over the type-erased publish pipeline of a backend whose deliveries are `D`.
pub struct PublishLayer<D>(Arc<dyn Fn(BoxPublishService<D>) -> BoxPublishService<D> + Send + Sync>);

impl<D> Clone for PublishLayer<D> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<D> std::fmt::Debug for PublishLayer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishLayer")
    }
}

impl<D: Send + 'static> PublishLayer<D> {
    /// Type-erases `layer`.
    pub fn new<L>(layer: L) -> Self
    where
        L: Layer<BoxPublishService<D>> + Send + Sync + 'static,
        L::Service: Service<Record, Response = D, Error = PublishError> + Clone + Send + 'static,
        <L::Service as Service<Record>>::Future: Send + 'static,
    {
        Self(Arc::new(move |inner| {
            BoxCloneService::new(layer.layer(inner))
        }))
    }

    /// Wraps `inner`.
    pub fn apply(&self, inner: BoxPublishService<D>) -> BoxPublishService<D> {
        (self.0)(inner)
    }
}

/// Turns tower's timeout error into [`HandlerTimedOut`] naming the limit.
pub(crate) fn name_timeout(limit: Duration) -> impl Fn(BoxError) -> BoxError + Clone {
    move |err| {
        if err.is::<tower::timeout::error::Elapsed>() {
            Box::new(HandlerTimedOut(limit))
        } else {
            err
        }
    }
}
