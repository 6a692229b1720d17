//! FastStream's access log: a `Received` line when a message reaches its handler, then a
//! `Processed` line, or one naming the failure, each with the topic, group, partition, offset
//! and correlation id.
//!
//! The lines are `tracing` events with target `faststream::access`, at the level the layer
//! is given; the layer is not installed by default, and an installed one whose level the
//! subscriber filters out costs one cached check per line.
//!
//! ```
//! use faststream_core::App;
//! use faststream_observe::access_log::AccessLog;
//!
//! # fn app<B: faststream_core::Broker>(app: App<B>) -> App<B> {
//! AccessLog::new(tracing::Level::INFO).install(app)
//! # }
//! ```

use crate::outcome::Outcome;
use faststream_core::message::CORRELATION_ID;
use faststream_core::middleware::BoxError;
use faststream_core::policy::error_type;
use faststream_core::{App, Broker, Message, Reply, SubscriberConfig};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
/// The level of the lines (`tracing`'s).
pub use tracing::Level;

/// The access log of every subscriber of an app, at one level.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    level: Level,
}

impl AccessLog {
    /// Lines at `level`.
    pub fn new(level: Level) -> Self {
        Self { level }
    }

    /// The layer of the subscriber `config` describes (it names the subscriber's group).
    pub fn layer(&self, config: &SubscriberConfig) -> AccessLogLayer {
        AccessLogLayer {
            level: self.level,
            group: Arc::from(config.effective_group_id()),
        }
    }

    /// Adds the access log to every subscriber of `app`.
    // Hidden: the runtime's `App` is not part of the public API; users install this with
    // `FastStream::access_log`, which calls this.
    #[doc(hidden)]
    pub fn install<B: Broker>(self, app: App<B>) -> App<B> {
        app.layer_for(move |config: &SubscriberConfig| self.layer(config))
    }
}

/// Emits `$message` at the runtime `$level` with the message's fields.
macro_rules! access_event {
    ($level:expr_2021, $place:expr_2021, $($rest:tt)+) => {{
        let place: &Place = $place;
        macro_rules! at {
            ($lvl:expr_2021) => {
                tracing::event!(
                    target: "faststream::access",
                    $lvl,
                    topic = %place.topic,
                    group = %place.group,
                    partition = place.partition,
                    offset = place.offset,
                    correlation_id = place.correlation_id.as_deref().unwrap_or(""),
                    $($rest)+
                )
            };
        }
        match $level {
            Level::ERROR => at!(Level::ERROR),
            Level::WARN => at!(Level::WARN),
            Level::INFO => at!(Level::INFO),
            Level::DEBUG => at!(Level::DEBUG),
            _ => at!(Level::TRACE),
        }
    }};
}

/// Whether an access line at `level` would be recorded anywhere.
fn enabled(level: Level) -> bool {
    match level {
        Level::ERROR => tracing::enabled!(target: "faststream::access", Level::ERROR),
        Level::WARN => tracing::enabled!(target: "faststream::access", Level::WARN),
        Level::INFO => tracing::enabled!(target: "faststream::access", Level::INFO),
        Level::DEBUG => tracing::enabled!(target: "faststream::access", Level::DEBUG),
        _ => tracing::enabled!(target: "faststream::access", Level::TRACE),
    }
}

/// Where a message came from, for its lines.
#[derive(Debug)]
struct Place {
    topic: Arc<str>,
    group: Arc<str>,
    partition: i32,
    offset: i64,
    correlation_id: Option<String>,
}

/// Logs each message of one subscriber; see [`AccessLog`].
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    level: Level,
    group: Arc<str>,
}

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;

    fn layer(&self, inner: S) -> AccessLogService<S> {
        AccessLogService {
            inner,
            level: self.level,
            group: Arc::clone(&self.group),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLogService<S> {
    inner: S,
    level: Level,
    group: Arc<str>,
}

impl<S> tower::Service<Message> for AccessLogService<S>
where
    S: tower::Service<Message, Response = Reply, Error = BoxError>,
{
    type Response = Reply;
    type Error = BoxError;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let place = enabled(self.level).then(|| {
            let place = Place {
                topic: Arc::clone(&message.topic),
                group: Arc::clone(&self.group),
                partition: message.partition,
                offset: message.offset,
                correlation_id: message.headers.get_str(CORRELATION_ID).map(str::to_owned),
            };
            access_event!(self.level, &place, "Received");
            Box::new(place)
        });
        AccessLogFuture {
            inner: self.inner.call(message),
            level: self.level,
            place,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`AccessLogService`].
    #[derive(Debug)]
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        level: Level,
        place: Option<Box<Place>>,
    }
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Reply, BoxError>>,
{
    type Output = Result<Reply, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.inner.poll(cx));
        if let Some(place) = this.place.take() {
            match Outcome::of(&outcome) {
                Outcome::Nacked => access_event!(*this.level, &place, "Nacked"),
                Outcome::Rejected => access_event!(*this.level, &place, "Rejected"),
                Outcome::Failed(err) => access_event!(
                    *this.level,
                    &place,
                    error_type = error_type(err),
                    "Failed: {err}"
                ),
                Outcome::Processed => access_event!(*this.level, &place, "Processed"),
            }
        }
        Poll::Ready(outcome)
    }
}
