//! Prometheus metrics with FastStream's names and labels, so its dashboards work unchanged.
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `faststream_received_messages_total` | counter | `app_name`, `broker`, `handler` |
//! | `faststream_received_messages_size_bytes` | histogram | `app_name`, `broker`, `handler` |
//! | `faststream_received_messages_in_process` | gauge | `app_name`, `broker`, `handler` |
//! | `faststream_received_processed_messages_total` | counter | `app_name`, `broker`, `handler`, `status` |
//! | `faststream_received_processed_messages_duration_seconds` | histogram | `app_name`, `broker`, `handler` |
//! | `faststream_received_processed_messages_exceptions_total` | counter | `app_name`, `broker`, `handler`, `exception_type` |
//! | `faststream_published_messages_total` | counter | `app_name`, `broker`, `destination`, `status` |
//! | `faststream_published_messages_duration_seconds` | histogram | `app_name`, `broker`, `destination` |
//! | `faststream_published_messages_exceptions_total` | counter | `app_name`, `broker`, `destination`, `exception_type` |
//!
//! As in FastStream, `handler` is the topic the message came from, `broker` is `kafka`,
//! `app_name` defaults to `faststream`, and the size buckets are powers of four from 16 B to
//! 16 MiB. `status` of a handled message is `acked` (the handler succeeded), `nacked` or
//! `rejected` (through the `Ack` extractor) or `error` (any other failure, also counted in
//! the exceptions metric by the error's type, e.g. `HandlerError`, `DecodeError`,
//! `HandlerPanicked`, `HandlerTimedOut`; see [`faststream_core::policy::error_type`]).
//! FastStream's `skipped` has no counterpart here: no handler outcome skips a message
//! without a failure.
//!
//! The publish side measures handing a record to the producer (`enqueue`); `status` is
//! `success` or `error` (the producer refused the record, `exception_type` `PublishError`).
//! A record the broker refuses later is a failure of the message that produced it (its error
//! policy runs), not a publish error here.
//!
//! ```
//! use faststream_core::App;
//! use faststream_observe::metrics::Metrics;
//!
//! # fn app<B: faststream_core::Broker>(app: App<B>) -> App<B> {
//! let metrics = Metrics::new("billing");
//! let app = metrics.install(app);
//! // An HTTP endpoint serves this, with `Metrics::CONTENT_TYPE`:
//! let text = metrics.render();
//! assert!(text.contains("# TYPE faststream_received_messages counter"));
//! # app
//! # }
//! ```

use crate::outcome::Outcome;
use faststream_core::middleware::BoxError;
use faststream_core::policy::error_type;
use faststream_core::{App, Broker, Message, PublishError, Record, Reply, SubscriberConfig};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

/// The `broker` label of every metric.
const BROKER: &str = "kafka";

/// FastStream's buckets of `received_messages_size_bytes`: 16 B to 16 MiB by powers of 4.
const SIZE_BUCKETS: [f64; 11] = [
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// The Python client's default duration buckets, which FastStream's histograms use.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    app_name: String,
    broker: &'static str,
    handler: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    app_name: String,
    broker: &'static str,
    handler: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExceptionLabels {
    app_name: String,
    broker: &'static str,
    handler: String,
    exception_type: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    app_name: String,
    broker: &'static str,
    destination: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishStatusLabels {
    app_name: String,
    broker: &'static str,
    destination: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishExceptionLabels {
    app_name: String,
    broker: &'static str,
    destination: String,
    exception_type: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Every metric family, shared by all layers of one [`Metrics`].
#[derive(Debug)]
struct Families {
    app_name: String,
    received: Family<HandlerLabels, Counter>,
    received_size: HistogramFamily<HandlerLabels>,
    in_process: Family<HandlerLabels, Gauge>,
    processed: Family<StatusLabels, Counter>,
    processed_duration: HistogramFamily<HandlerLabels>,
    processed_exceptions: Family<ExceptionLabels, Counter>,
    published: Family<PublishStatusLabels, Counter>,
    published_duration: HistogramFamily<DestinationLabels>,
    published_exceptions: Family<PublishExceptionLabels, Counter>,
    /// Where the consumer lag is read from at each scrape (see [`Metrics::watch_lag`]).
    lag_source: Mutex<Option<LagSource>>,
}

/// Locks `mutex`, also one a panic poisoned: what it guards (a registry, the lag source) is
/// whole between calls.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the lag of every assigned partition.
#[derive(Clone)]
struct LagSource(Arc<dyn Fn() -> Vec<PartitionLag> + Send + Sync>);

impl std::fmt::Debug for LagSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagSource")
    }
}

/// The consumer lag of one assigned partition, for [`Metrics::watch_lag`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The subscriber's name.
    pub subscriber: String,
    /// Its consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Records in the partition after the last one the subscriber finished.
    pub lag: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    app_name: String,
    broker: &'static str,
    subscriber: String,
    group: String,
    topic: String,
    partition: i32,
}

/// Encodes `faststream_consumer_lag` from the lag source at each scrape.
#[derive(Debug)]
struct LagCollector(Arc<Families>);

impl prometheus_client::collector::Collector for LagCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let source = lock(&self.0.lag_source).clone();
        let Some(source) = source else {
            return Ok(());
        };
        let lags = (source.0)();
        let mut family = encoder.encode_descriptor(
            "faststream_consumer_lag",
            "Records in each assigned partition after the last one its subscriber finished",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for lag in lags {
            let labels = LagLabels {
                app_name: self.0.app_name.clone(),
                broker: BROKER,
                subscriber: lag.subscriber,
                group: lag.group,
                topic: lag.topic,
                partition: lag.partition,
            };
            prometheus_client::encoding::EncodeMetric::encode(
                &prometheus_client::metrics::gauge::ConstGauge::new(lag.lag),
                family.encode_family(&labels)?,
            )?;
        }
        Ok(())
    }
}

/// The metrics of one app: the families FastStream defines, in a Prometheus registry, and
/// the layers that record them. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Metrics {
    families: Arc<Families>,
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// The content type of [`Metrics::render`]'s output (OpenMetrics text, which Prometheus
    /// scrapes natively).
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// Metrics labelled `app_name = app_name` (FastStream's default is `faststream`), in a
    /// registry of their own.
    pub fn new(app_name: impl Into<String>) -> Self {
        let families = Families {
            app_name: app_name.into(),
            received: Family::default(),
            received_size: Family::new_with_constructor(size_histogram),
            in_process: Family::default(),
            processed: Family::default(),
            processed_duration: Family::new_with_constructor(duration_histogram),
            processed_exceptions: Family::default(),
            published: Family::default(),
            published_duration: Family::new_with_constructor(duration_histogram),
            published_exceptions: Family::default(),
            lag_source: Mutex::new(None),
        };
        let families = Arc::new(families);
        let mut registry = Registry::default();
        let prefixed = registry.sub_registry_with_prefix("faststream");
        // Counters get their `_total` suffix from the encoder.
        prefixed.register(
            "received_messages",
            "Count of received messages by broker and handler",
            families.received.clone(),
        );
        prefixed.register(
            "received_messages_size_bytes",
            "Histogram of received messages size in bytes by broker and handler",
            families.received_size.clone(),
        );
        prefixed.register(
            "received_messages_in_process",
            "Gauge of received messages in process by broker and handler",
            families.in_process.clone(),
        );
        prefixed.register(
            "received_processed_messages",
            "Count of received processed messages by broker, handler and status",
            families.processed.clone(),
        );
        prefixed.register(
            "received_processed_messages_duration_seconds",
            "Histogram of received processed messages duration in seconds by broker and handler",
            families.processed_duration.clone(),
        );
        prefixed.register(
            "received_processed_messages_exceptions",
            "Count of received processed messages exceptions by broker, handler and exception_type",
            families.processed_exceptions.clone(),
        );
        prefixed.register(
            "published_messages",
            "Count of published messages by destination and status",
            families.published.clone(),
        );
        prefixed.register(
            "published_messages_duration_seconds",
            "Histogram of published messages duration in seconds by broker and destination",
            families.published_duration.clone(),
        );
        prefixed.register(
            "published_messages_exceptions",
            "Count of published messages exceptions by broker, destination and exception_type",
            families.published_exceptions.clone(),
        );
        registry.register_collector(Box::new(LagCollector(Arc::clone(&families))));
        Self {
            families,
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// The `app_name` label.
    pub fn app_name(&self) -> &str {
        &self.families.app_name
    }

    /// Registers more metrics of your own in the same registry, so one `/metrics` endpoint
    /// serves both.
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    /// # let metrics = faststream_observe::metrics::Metrics::new("app");
    /// let orders = Counter::<u64>::default();
    /// metrics.register(|registry| {
    ///     registry.register("orders_placed", "Orders placed", orders.clone())
    /// });
    /// orders.inc();
    /// assert!(metrics.render().contains("orders_placed_total 1"));
    /// ```
    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        add(&mut lock(&self.registry));
    }

    /// Every metric in the Prometheus/OpenMetrics text format, for a `/metrics` endpoint
    /// (served with [`Metrics::CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = lock(&self.registry);
        // Writing to a `String` cannot fail; the encoder only fails on its writer.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!("metrics could not be encoded: {err}");
        }
        text
    }

    /// Reports `faststream_consumer_lag{app_name, broker, subscriber, group, topic,
    /// partition}`, a gauge read from `lags` at each render (replacing an earlier source).
    ///
    /// ```
    /// use faststream_observe::metrics::{Metrics, PartitionLag};
    /// let metrics = Metrics::new("app");
    /// metrics.watch_lag(|| {
    ///     vec![PartitionLag {
    ///         subscriber: "orders".into(),
    ///         group: "billing".into(),
    ///         topic: "orders".into(),
    ///         partition: 0,
    ///         lag: 42,
    ///     }]
    /// });
    /// assert!(metrics.render().contains(
    ///     r#"faststream_consumer_lag{app_name="app",broker="kafka",subscriber="orders",group="billing",topic="orders",partition="0"} 42"#
    /// ));
    /// ```
    pub fn watch_lag(&self, lags: impl Fn() -> Vec<PartitionLag> + Send + Sync + 'static) {
        *lock(&self.families.lag_source) = Some(LagSource(Arc::new(lags)));
    }

    /// The handler-side layer of a subscriber (for [`App::layer_for`]).
    pub fn receive_layer(&self, _config: &SubscriberConfig) -> ReceiveMetricsLayer {
        ReceiveMetricsLayer {
            families: Arc::clone(&self.families),
        }
    }

    /// The publish-side layer (for an app's `publish_layer`).
    pub fn publish_layer(&self) -> PublishMetricsLayer {
        PublishMetricsLayer {
            families: Arc::clone(&self.families),
        }
    }

    /// Adds both layers to `app`: every handled message and every record its handlers'
    /// replies publish are counted.
    // Hidden: the runtime's `App` is not part of the public API; users install this with
    // `FastStream::metrics`, which calls this.
    #[doc(hidden)]
    pub fn install<B: Broker>(&self, app: App<B>) -> App<B> {
        let receive = self.clone();
        app.layer_for(move |config: &SubscriberConfig| receive.receive_layer(config))
            .publish_layer(self.publish_layer())
    }
}

/// The handles of one topic's received-side metrics, created on its first message.
#[derive(Debug)]
struct TopicMetrics {
    topic: Arc<str>,
    received: Counter,
    size: Histogram,
    in_process: Gauge,
    duration: Histogram,
    acked: Counter,
    nacked: Counter,
    rejected: Counter,
    error: Counter,
    families: Arc<Families>,
}

impl TopicMetrics {
    fn new(families: &Arc<Families>, topic: &Arc<str>) -> Self {
        let labels = HandlerLabels {
            app_name: families.app_name.clone(),
            broker: BROKER,
            handler: topic.to_string(),
        };
        let status = |status: &'static str| {
            families.processed.get_or_create_owned(&StatusLabels {
                app_name: families.app_name.clone(),
                broker: BROKER,
                handler: topic.to_string(),
                status,
            })
        };
        Self {
            topic: Arc::clone(topic),
            received: families.received.get_or_create_owned(&labels),
            size: families.received_size.get_or_create_owned(&labels),
            in_process: families.in_process.get_or_create_owned(&labels),
            duration: families.processed_duration.get_or_create_owned(&labels),
            acked: status("acked"),
            nacked: status("nacked"),
            rejected: status("rejected"),
            error: status("error"),
            families: Arc::clone(families),
        }
    }

    fn finish(&self, outcome: &Result<Reply, BoxError>, started: Instant) {
        self.duration.observe(started.elapsed().as_secs_f64());
        match Outcome::of(outcome) {
            Outcome::Processed => self.acked.inc(),
            Outcome::Nacked => self.nacked.inc(),
            Outcome::Rejected => self.rejected.inc(),
            Outcome::Failed(err) => {
                self.error.inc();
                self.families
                    .processed_exceptions
                    .get_or_create(&ExceptionLabels {
                        app_name: self.families.app_name.clone(),
                        broker: BROKER,
                        handler: self.topic.to_string(),
                        exception_type: error_type(err),
                    })
                    .inc()
            }
        };
    }
}

/// Finds (or creates) the handles of `topic` in a service's small cache: a subscriber reads
/// a handful of topics, so a linear scan beats hashing.
fn lookup<T>(
    cache: &mut Vec<(Arc<str>, Arc<T>)>,
    topic: &Arc<str>,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    if let Some((_, found)) = cache
        .iter()
        .find(|(known, _)| Arc::ptr_eq(known, topic) || **known == **topic)
    {
        return Arc::clone(found);
    }
    let made = Arc::new(make());
    cache.push((Arc::clone(topic), Arc::clone(&made)));
    made
}

/// Records the received-side metrics of every message of a subscriber; see [`Metrics`].
#[derive(Debug, Clone)]
pub struct ReceiveMetricsLayer {
    families: Arc<Families>,
}

impl<S> tower::Layer<S> for ReceiveMetricsLayer {
    type Service = ReceiveMetrics<S>;

    fn layer(&self, inner: S) -> ReceiveMetrics<S> {
        ReceiveMetrics {
            inner,
            families: Arc::clone(&self.families),
            topics: Vec::new(),
        }
    }
}

/// The service of [`ReceiveMetricsLayer`].
#[derive(Debug, Clone)]
pub struct ReceiveMetrics<S> {
    inner: S,
    families: Arc<Families>,
    topics: Vec<(Arc<str>, Arc<TopicMetrics>)>,
}

impl<S> tower::Service<Message> for ReceiveMetrics<S>
where
    S: tower::Service<Message, Response = Reply, Error = BoxError>,
{
    type Response = Reply;
    type Error = BoxError;
    type Future = ReceiveMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let families = &self.families;
        let metrics = lookup(&mut self.topics, &message.topic, || {
            TopicMetrics::new(families, &message.topic)
        });
        // A batch counts as its records, as FastStream counts a batch's messages.
        let records = message.records();
        metrics.received.inc_by(records.len() as u64);
        for record in records {
            metrics.size.observe(record.payload.len() as f64);
        }
        metrics.in_process.inc();
        ReceiveMetricsFuture {
            inner: self.inner.call(message),
            in_process: InProcess(Some(metrics)),
            started: Instant::now(),
        }
    }
}

/// Takes a message off the in-process gauge when its call ends, also when the call is
/// dropped unfinished (a shutdown).
#[derive(Debug)]
struct InProcess(Option<Arc<TopicMetrics>>);

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(metrics) = &self.0 {
            metrics.in_process.dec();
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`ReceiveMetrics`].
    #[derive(Debug)]
    pub struct ReceiveMetricsFuture<F> {
        #[pin]
        inner: F,
        in_process: InProcess,
        started: Instant,
    }
}

impl<F> Future for ReceiveMetricsFuture<F>
where
    F: Future<Output = Result<Reply, BoxError>>,
{
    type Output = Result<Reply, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.inner.poll(cx));
        if let Some(metrics) = this.in_process.0.take() {
            metrics.in_process.dec();
            metrics.finish(&outcome, *this.started);
        }
        Poll::Ready(outcome)
    }
}

/// The handles of one destination's publish metrics.
#[derive(Debug)]
struct DestinationMetrics {
    destination: Arc<str>,
    success: Counter,
    error: Counter,
    duration: Histogram,
    families: Arc<Families>,
}

impl DestinationMetrics {
    fn new(families: &Arc<Families>, destination: &Arc<str>) -> Self {
        let status = |status: &'static str| {
            families
                .published
                .get_or_create_owned(&PublishStatusLabels {
                    app_name: families.app_name.clone(),
                    broker: BROKER,
                    destination: destination.to_string(),
                    status,
                })
        };
        Self {
            destination: Arc::clone(destination),
            success: status("success"),
            error: status("error"),
            duration: families
                .published_duration
                .get_or_create_owned(&DestinationLabels {
                    app_name: families.app_name.clone(),
                    broker: BROKER,
                    destination: destination.to_string(),
                }),
            families: Arc::clone(families),
        }
    }
}

/// Records the publish metrics of every record; see [`Metrics`].
#[derive(Debug, Clone)]
pub struct PublishMetricsLayer {
    families: Arc<Families>,
}

impl<S> tower::Layer<S> for PublishMetricsLayer {
    type Service = PublishMetrics<S>;

    fn layer(&self, inner: S) -> PublishMetrics<S> {
        PublishMetrics {
            inner,
            families: Arc::clone(&self.families),
            destinations: Vec::new(),
        }
    }
}

/// The service of [`PublishMetricsLayer`].
#[derive(Debug, Clone)]
pub struct PublishMetrics<S> {
    inner: S,
    families: Arc<Families>,
    destinations: Vec<(Arc<str>, Arc<DestinationMetrics>)>,
}

impl<S> tower::Service<Record> for PublishMetrics<S>
where
    S: tower::Service<Record, Error = PublishError>,
{
    type Response = S::Response;
    type Error = PublishError;
    type Future = PublishMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PublishError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        let families = &self.families;
        let metrics = lookup(&mut self.destinations, &record.topic, || {
            DestinationMetrics::new(families, &record.topic)
        });
        PublishMetricsFuture {
            inner: self.inner.call(record),
            metrics: Some(metrics),
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`PublishMetrics`].
    #[derive(Debug)]
    pub struct PublishMetricsFuture<F> {
        #[pin]
        inner: F,
        metrics: Option<Arc<DestinationMetrics>>,
        started: Instant,
    }
}

impl<F, D> Future for PublishMetricsFuture<F>
where
    F: Future<Output = Result<D, PublishError>>,
{
    type Output = Result<D, PublishError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = std::task::ready!(this.inner.poll(cx));
        if let Some(metrics) = this.metrics.take() {
            metrics
                .duration
                .observe(this.started.elapsed().as_secs_f64());
            if outcome.is_ok() {
                metrics.success.inc();
            } else {
                metrics.error.inc();
                metrics
                    .families
                    .published_exceptions
                    .get_or_create(&PublishExceptionLabels {
                        app_name: metrics.families.app_name.clone(),
                        broker: BROKER,
                        destination: metrics.destination.to_string(),
                        exception_type: "PublishError",
                    })
                    .inc();
            }
        }
        Poll::Ready(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faststream_core::middleware::{Nacked, Rejected};
    use tower::{Layer, Service, ServiceExt};

    fn handler() -> impl Service<Message, Response = Reply, Error = BoxError, Future: Send> + Clone
    {
        tower::service_fn(|message: Message| async move {
            match &message.payload[..] {
                b"fail" => Err::<Reply, BoxError>(std::io::Error::other("boom").into()),
                b"nack" => Err(Box::new(Nacked) as BoxError),
                b"reject" => Err(Box::new(Rejected) as BoxError),
                _ => Ok(Reply::Nothing),
            }
        })
    }

    #[tokio::test]
    async fn counts_every_outcome_with_faststream_names() {
        let metrics = Metrics::new("app");
        let config = SubscriberConfig::new("s", ["in"]);
        let mut service = metrics.receive_layer(&config).layer(handler());
        for payload in ["ok", "ok", "fail", "nack", "reject"] {
            let _ = service
                .ready()
                .await
                .unwrap()
                .call(Message::new("in", payload))
                .await;
        }
        let text = metrics.render();
        let labels = r#"app_name="app",broker="kafka",handler="in""#;
        for line in [
            format!("faststream_received_messages_total{{{labels}}} 5"),
            format!("faststream_received_messages_in_process{{{labels}}} 0"),
            format!("faststream_received_processed_messages_total{{{labels},status=\"acked\"}} 2"),
            format!("faststream_received_processed_messages_total{{{labels},status=\"error\"}} 1"),
            format!("faststream_received_processed_messages_total{{{labels},status=\"nacked\"}} 1"),
            format!(
                "faststream_received_processed_messages_total{{{labels},status=\"rejected\"}} 1"
            ),
            format!(
                "faststream_received_processed_messages_exceptions_total{{{labels},exception_type=\"HandlerError\"}} 1"
            ),
            format!("faststream_received_processed_messages_duration_seconds_count{{{labels}}} 5"),
            format!("faststream_received_messages_size_bytes_bucket{{le=\"16.0\",{labels}}} 5"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }

    #[tokio::test]
    async fn a_batch_counts_as_its_records() {
        let metrics = Metrics::new("app");
        let config = SubscriberConfig::new("s", ["in"]);
        let mut service = metrics.receive_layer(&config).layer(handler());
        let records = ["a", "bb", "ccc"].map(|p| Message::new("in", p)).to_vec();
        let batch = Message::batch_of(records).unwrap();
        service.ready().await.unwrap().call(batch).await.unwrap();
        let text = metrics.render();
        let labels = r#"app_name="app",broker="kafka",handler="in""#;
        for line in [
            format!("faststream_received_messages_total{{{labels}}} 3"),
            format!("faststream_received_messages_size_bytes_count{{{labels}}} 3"),
            format!("faststream_received_processed_messages_total{{{labels},status=\"acked\"}} 1"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
