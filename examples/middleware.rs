//! Middlewares on the seed example, as tower layers:
//!
//! 1. [`Timing`]: logs how long each message took and how it ended, and keeps counts.
//! 2. A publish layer adding an `x-service` header to every outgoing record.
//! 3. [`map_unknown_user`]: error mapping in the style of FastStream's `ExceptionMiddleware`,
//!    turning the handler's `UnknownUser` error into a reply instead of a failure.
//!
//! `cargo run --example middleware` runs it against `KAFKA_BOOTSTRAP_SERVERS` (default
//! `localhost:9092`); publishing `{"user": "John", "user_id": 1}` to `in-topic` gives
//! `User: 1 - John registered` on `out-topic`, with the header `x-service: users`;
//! `{"user": "Ghost", "user_id": -1}` gives `User: -1 unknown`.

use faststream::middleware::BoxError;
use faststream::tower::util::{MapRequestLayer, MapResultLayer};
use faststream::tower::{Layer, Service};
use faststream::{FastStream, IntoReply, Message, Record, Reply, SubscriberConfig};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The handler's own error for a user id that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown user {0}")]
pub struct UnknownUser(pub i64);

/// The seed example's payload.
#[derive(Debug, serde::Deserialize)]
pub struct NewUser {
    /// Name.
    pub user: String,
    /// Id; negative ids are unknown.
    pub user_id: i64,
}

/// The seed handler, failing for negative ids.
pub async fn handle_msg(new: NewUser) -> Result<String, UnknownUser> {
    if new.user_id < 0 {
        return Err(UnknownUser(new.user_id));
    }
    Ok(format!("User: {} - {} registered", new.user_id, new.user))
}

/// Counts kept by [`Timing`].
#[derive(Debug, Default)]
pub struct TimingStats {
    /// Messages whose pipeline answered `Ok`.
    pub handled: AtomicU64,
    /// Messages whose pipeline answered an error.
    pub failed: AtomicU64,
    /// Total time spent in the pipeline, in microseconds.
    pub micros: AtomicU64,
}

/// 1. Timing and logging: one line per message with its place, outcome and duration.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    /// What it saw, for dashboards (and tests).
    pub stats: Arc<TimingStats>,
}

impl<S> Layer<S> for Timing {
    type Service = TimingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TimingService {
            inner,
            stats: Arc::clone(&self.stats),
        }
    }
}

/// The service of [`Timing`].
#[derive(Debug, Clone)]
pub struct TimingService<S> {
    inner: S,
    stats: Arc<TimingStats>,
}

impl<S> Service<Message> for TimingService<S>
where
    S: Service<Message, Response = Reply, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let place = format!(
            "{}[{}]@{}",
            message.topic, message.partition, message.offset
        );
        let stats = Arc::clone(&self.stats);
        let started = Instant::now();
        let call = self.inner.call(message);
        Box::pin(async move {
            let outcome = call.await;
            let took = started.elapsed();
            stats
                .micros
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            match &outcome {
                Ok(_) => {
                    stats.handled.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("{place} handled in {took:?}");
                }
                Err(err) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("{place} failed in {took:?}: {err}");
                }
            }
            outcome
        })
    }
}

/// 2. The publish layer's function: every outgoing record says which service wrote it.
pub fn add_service_header(record: Record) -> Record {
    record.header("x-service", "users")
}

/// 3. Error mapping: an [`UnknownUser`] becomes a reply; other errors pass through.
pub fn map_unknown_user(outcome: Result<Reply, BoxError>) -> Result<Reply, BoxError> {
    match outcome {
        Err(err) => match err.downcast::<UnknownUser>() {
            Ok(unknown) => Ok(format!("User: {} unknown", unknown.0).into_reply()),
            Err(other) => Err(other),
        },
        ok => ok,
    }
}

/// The app: the seed handler on `input`, publishing to `output`, with the three layers.
pub fn app<B: faststream::Broker>(
    broker: B,
    input: &str,
    output: &str,
    timing: Timing,
) -> FastStream<B> {
    FastStream::new(broker)
        .layer(timing)
        .layer(MapResultLayer::new(map_unknown_user))
        .publish_layer(MapRequestLayer::new(add_service_header))
        .subscriber(
            SubscriberConfig::new("handle_msg", [input]).publish_to(output),
            handle_msg,
        )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> faststream::Result<()> {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".into());
    let broker = faststream::kafka::KafkaBroker::new(servers);
    app(broker, "in-topic", "out-topic", Timing::default())
        .cli()
        .await
}
