//! [`FastStream`]: the application users build, the one app builder of the public API. It
//! wraps the runtime (`faststream_core::App`, not re-exported: its builder methods are these)
//! and adds what an application says about itself (its AsyncAPI `info`), its HTTP routes, its
//! observability, its logging set-up, and its command line (feature `cli`).

use crate::asyncapi::{
    AppInfo, AsyncApiError, AsyncApiVersion, Contact, DescribeServer, ExternalDocs, License, Tag,
};
#[cfg(feature = "metrics")]
use crate::observe::metrics;
#[cfg(feature = "otel")]
use crate::observe::otel;
use crate::observe::{access_log, Level, Observed};
use faststream_core::app::{App, HookOutput};
use faststream_core::middleware::{BoxPublishService, MessageLayer};
use faststream_core::{
    AckPolicy, Broker, ErrorPolicy, Handler, IntoSubscriber, Publish, PublishError, Publisher,
    Record, Registry, Result, Router, RunningApp, StartupOptions, SubscriberConfig,
};
use tower::{Layer, Service};

/// The delivery future of a broker's publisher.
type DeliveryOf<B> = <<B as Broker>::Publisher as Publish>::Delivery;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A FastStream application: a broker, its subscribers, state and hooks, and its AsyncAPI
/// description.
///
/// ```no_run
/// use faststream::{subscriber, publisher, FastStream};
/// use faststream::kafka::KafkaBroker;
///
/// #[subscriber("in-topic")]
/// #[publisher("out-topic")]
/// async fn handle_msg(user: String, user_id: i64) -> String {
///     format!("User: {user_id} - {user} registered")
/// }
///
/// #[tokio::main]
/// async fn main() -> faststream::Result<()> {
///     FastStream::new(KafkaBroker::new("localhost:9092")).include(handle_msg).run().await
/// }
/// ```
pub struct FastStream<B: Broker> {
    pub(crate) app: App<B>,
    info: AppInfo,
    /// Extra routes of the app's HTTP server (`--health-port`).
    #[cfg(feature = "http")]
    http_routes: Vec<(String, crate::http::RouteHandler)>,
    /// The observability the app installed (see [`crate::observe`]).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) observed: Observed,
}

impl<B: Broker> std::fmt::Debug for FastStream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastStream")
            .field("app", &self.app)
            .field("title", &self.info.title)
            .finish_non_exhaustive()
    }
}

impl<B: Broker> Registry for FastStream<B> {
    fn add_subscriber<H, T>(&mut self, config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        self.app.add_subscriber(config, handler);
    }
}

impl<B: Broker> FastStream<B> {
    /// An app on `broker`, with no subscribers yet.
    pub fn new(broker: B) -> Self {
        Self {
            app: App::new(broker),
            info: AppInfo::default(),
            #[cfg(feature = "http")]
            http_routes: Vec::new(),
            observed: Observed::default(),
        }
    }

    /// Applies a builder step of the runtime this type wraps.
    fn runtime(mut self, f: impl FnOnce(App<B>) -> App<B>) -> Self {
        self.app = f(self.app);
        self
    }

    /// Adds a subscriber declared with `#[subscriber]`.
    pub fn include(mut self, subscriber: impl IntoSubscriber) -> Self {
        subscriber.register(&mut self);
        self
    }

    /// Adds a subscriber without the macro: any function or closure that is a [`Handler`].
    ///
    /// ```
    /// use faststream::{FastStream, SubscriberConfig};
    /// # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
    /// FastStream::new(broker).subscriber(
    ///     SubscriberConfig::new("double", ["numbers"]).publish_to("doubled"),
    ///     |n: i64| async move { n * 2 },
    /// )
    /// # }
    /// ```
    pub fn subscriber<H, T>(self, config: SubscriberConfig, handler: H) -> Self
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        self.runtime(|app| app.subscriber(config, handler))
    }

    /// Includes a [`Router`]: its subscribers under its prefix, in its layers, with its
    /// default policies, and its publisher objects (see [`faststream_core::router`]).
    ///
    /// ```
    /// use faststream::{publisher, subscriber, FastStream, Router};
    ///
    /// #[subscriber("in-topic")]
    /// #[publisher("out-topic")]
    /// async fn handle_msg(user: String, user_id: i64) -> String {
    ///     format!("User: {user_id} - {user} registered")
    /// }
    ///
    /// # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
    /// let app = FastStream::new(broker).include_router(Router::new("users-").include(handle_msg));
    /// assert_eq!(app.subscribers()[0].backend.topics, ["users-in-topic"]);
    /// assert_eq!(&*app.subscribers()[0].publishers[0].topic, "users-out-topic");
    /// # app
    /// # }
    /// ```
    pub fn include_router(self, router: Router<B>) -> Self {
        self.runtime(|app| app.include_router(router))
    }

    /// The ack policy of every subscriber that sets none of its own, neither itself nor
    /// through a router (default [`AckPolicy::AckAfter`]). Applies to the subscribers included
    /// before and after this call.
    ///
    /// ```
    /// use faststream::{AckPolicy, FastStream, SubscriberConfig};
    /// # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
    /// let app = FastStream::new(broker)
    ///     .subscriber(SubscriberConfig::new("a", ["a"]), |n: i64| async move { n })
    ///     .ack_policy(AckPolicy::NackOnError);
    /// // NackOnError's preset: run a failed message again until it succeeds.
    /// assert_eq!(app.subscribers()[0].delivery_policy().failure.max_attempts, None);
    /// # app
    /// # }
    /// ```
    pub fn ack_policy(self, policy: AckPolicy) -> Self {
        self.runtime(|app| app.ack_policy(policy))
    }

    /// Registers shared state, available to handlers as `State<T>`.
    pub fn with_state<T: Send + Sync + 'static>(self, value: T) -> Self {
        self.runtime(|app| app.with_state(value))
    }

    /// How long shutdown waits for in-flight handlers and publishes (default 15 s). Handlers
    /// still running then are cancelled, and their messages stay uncommitted.
    pub fn graceful_timeout(self, timeout: Duration) -> Self {
        self.runtime(|app| app.graceful_timeout(timeout))
    }

    /// Registers a publisher object: the AsyncAPI document lists it like a `#[publisher]`, and
    /// once the app started it publishes through the app's publish layers; see
    /// [`crate::publisher`](mod@crate::publisher).
    pub fn with_publisher(self, publisher: &Publisher) -> Self {
        self.runtime(|app| app.with_publisher(publisher))
    }

    /// The error policy of every subscriber that sets none of its own (default: each
    /// subscriber's ack-policy preset, [`ErrorPolicy::preset`]); see [`crate::policy`].
    pub fn error_policy(self, policy: ErrorPolicy) -> Self {
        self.runtime(|app| app.error_policy(policy))
    }

    /// The payload codec of every subscriber that sets none, neither itself nor through a
    /// router (default: FastStream's JSON); see [`crate::codec::seam`].
    pub fn codec(self, codec: impl faststream_core::codec::Codec) -> Self {
        self.runtime(|app| app.codec(codec))
    }

    /// How long a rebalance waits for the in-flight work of revoked partitions before it
    /// cancels it (default: the graceful timeout). That work's messages stay uncommitted and
    /// go to the partitions' new owner.
    pub fn rebalance_timeout(self, timeout: Duration) -> Self {
        self.runtime(|app| app.rebalance_timeout(timeout))
    }

    /// How long shutdown waits for the producer to flush, after the consumers stopped
    /// (default 5 s). A whole shutdown takes at most the graceful timeout plus this, plus a
    /// few seconds for consumers to commit and leave their groups.
    pub fn flush_timeout(self, timeout: Duration) -> Self {
        self.runtime(|app| app.flush_timeout(timeout))
    }

    /// Wraps every subscriber's handler pipeline in `layer`, any tower layer over the
    /// pipeline (a [`MessageLayer`]; see [`crate::middleware`] for examples). App layers are
    /// outside subscriber layers; the first added is the outermost.
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: MessageLayer + Send + Sync + 'static,
    {
        self.runtime(|app| app.layer(layer))
    }

    /// Like [`FastStream::layer`], with the layer built for each subscriber by `make` from its
    /// configuration (e.g. to label metrics or recorded calls with the subscriber's name).
    ///
    /// ```
    /// use faststream::{BoxError, FastStream, SubscriberConfig};
    /// use faststream::tower::util::MapErrLayer;
    /// # fn app<B: faststream::Broker>(app: FastStream<B>) -> FastStream<B> {
    /// app.layer_for(|config: &SubscriberConfig| {
    ///     let name = config.name.clone();
    ///     MapErrLayer::new(move |err: BoxError| -> BoxError { format!("{name}: {err}").into() })
    /// })
    /// # }
    /// ```
    pub fn layer_for<F, L>(self, make: F) -> Self
    where
        F: Fn(&SubscriberConfig) -> L + Send + Sync + 'static,
        L: MessageLayer,
    {
        self.runtime(|app| app.layer_for(make))
    }

    /// Wraps the publishing of every record a handler's reply produces in `layer`, a tower
    /// layer over [`BoxPublishService`] (e.g. to add a header to every outgoing record, see
    /// [`crate::middleware`]). The first added is the outermost.
    pub fn publish_layer<L>(self, layer: L) -> Self
    where
        L: Layer<BoxPublishService<DeliveryOf<B>>> + Send + Sync + 'static,
        L::Service: Service<Record, Response = DeliveryOf<B>, Error = PublishError>
            + Clone
            + Send
            + 'static,
        <L::Service as Service<Record>>::Future: Send + 'static,
    {
        self.runtime(|app| app.publish_layer(layer))
    }

    /// Runs before the broker connects. A failing hook aborts the start.
    pub fn on_startup<F, Fut>(self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.runtime(|app| app.on_startup(hook))
    }

    /// Like [`FastStream::on_startup`], receiving the extra `--key value` options given to the
    /// app's `run` command and the worker id (see [`StartupOptions`]).
    ///
    /// ```
    /// use faststream::FastStream;
    /// # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
    /// FastStream::new(broker).on_startup_with(|opts| async move {
    ///     if let Some(env) = opts.str("env") {
    ///         println!("loading {env} as worker {:?}", opts.worker_id());
    ///     }
    /// })
    /// # }
    /// ```
    pub fn on_startup_with<F, Fut>(self, hook: F) -> Self
    where
        F: FnOnce(StartupOptions) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.runtime(|app| app.on_startup_with(hook))
    }

    /// Runs once every subscriber is consuming. A failing hook stops what was started.
    pub fn after_startup<F, Fut>(self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.runtime(|app| app.after_startup(hook))
    }

    /// Runs when shutdown begins, before consumers stop.
    pub fn on_shutdown<F, Fut>(self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.runtime(|app| app.on_shutdown(hook))
    }

    /// Runs after consumers stopped and the producer flushed.
    pub fn after_shutdown<F, Fut>(self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.runtime(|app| app.after_shutdown(hook))
    }

    /// Replaces the app's AsyncAPI `info` (title, version, description, contact...).
    pub fn info(mut self, info: AppInfo) -> Self {
        self.info = info;
        self
    }

    /// Sets the AsyncAPI title (default `FastStream`).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.info.title = title.into();
        self
    }

    /// Sets the AsyncAPI version of the app's API (default `0.1.0`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.info.version = version.into();
        self
    }

    /// Sets the AsyncAPI description (CommonMark allowed).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.info.description = Some(description.into());
        self
    }

    /// Sets the AsyncAPI contact.
    pub fn contact(mut self, contact: Contact) -> Self {
        self.info.contact = Some(contact);
        self
    }

    /// Sets the AsyncAPI license.
    pub fn license(mut self, license: License) -> Self {
        self.info.license = Some(license);
        self
    }

    /// Adds an AsyncAPI tag.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.info.tags.push(tag);
        self
    }

    /// Sets the AsyncAPI external documentation link.
    pub fn external_docs(mut self, docs: ExternalDocs) -> Self {
        self.info.external_docs = Some(docs);
        self
    }

    /// The app's AsyncAPI `info`.
    pub fn app_info(&self) -> &AppInfo {
        &self.info
    }

    /// The registered subscribers' configurations (topics, groups, publishers, docs).
    pub fn subscribers(&self) -> &[Arc<SubscriberConfig>] {
        self.app.subscribers()
    }

    /// The registered publisher objects ([`FastStream::with_publisher`], and those of the
    /// included routers).
    pub fn publishers(&self) -> &[Publisher] {
        self.app.publishers()
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        self.app.broker()
    }

    /// A message in flight longer than `limit` makes the app not ready (`/health/ready`
    /// answers 503), as SmallRye's stuck-record detection does. Default 60 s.
    pub fn stuck_after(self, limit: Duration) -> Self {
        self.runtime(|app| app.stuck_after(limit))
    }

    /// Serves GET `path` from the app's HTTP server (started by `run --health-port`), beside
    /// the health probes: a metrics endpoint, for one.
    ///
    /// ```
    /// use faststream::FastStream;
    /// use faststream::http::HttpResponse;
    /// use faststream::kafka::KafkaBroker;
    ///
    /// let app = FastStream::new(KafkaBroker::new("localhost:9092"))
    ///     .http_route("/version", || HttpResponse::text(200, "1.0.0\n"));
    /// ```
    #[cfg(feature = "http")]
    pub fn http_route(
        mut self,
        path: impl Into<String>,
        handler: impl Fn() -> crate::http::HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.http_routes.push((path.into(), Arc::new(handler)));
        self
    }

    /// The extra routes added with [`FastStream::http_route`].
    #[cfg(feature = "http")]
    pub fn http_routes(&self) -> &[(String, crate::http::RouteHandler)] {
        &self.http_routes
    }

    /// Starts consuming and returns a handle to stop the app; use [`FastStream::run`] to run
    /// until SIGINT or SIGTERM.
    pub async fn start(self) -> Result<RunningApp<B>> {
        self.app.start().await
    }

    /// [`FastStream::start`] handing `options` to startup hooks (and to handlers as
    /// `State<StartupOptions>`).
    pub async fn start_with(self, options: StartupOptions) -> Result<RunningApp<B>> {
        self.app.start_with(options).await
    }

    /// Sets up logging from the environment (see [`crate::logging`]), starts the app, waits
    /// for SIGINT or SIGTERM, then shuts down gracefully: stop fetching, let in-flight
    /// handlers finish (up to the graceful timeout), flush the producer, commit.
    pub async fn run(self) -> Result<()> {
        crate::logging::init_from_env();
        self.app.run().await
    }

    /// [`FastStream::run`] handing `options` to startup hooks; logging is set up by the caller
    /// (or not at all).
    pub async fn run_with(self, options: StartupOptions) -> Result<()> {
        self.app.run_with(options).await
    }
}

/// Observability: the layers of [`crate::observe`].
impl<B: Broker> FastStream<B> {
    /// Logs every message of every subscriber at `level`: `Received`, then `Processed` or the
    /// failure, with topic, group, partition, offset and correlation id (target
    /// `faststream::access`). See [`access_log`].
    pub fn access_log(mut self, level: Level) -> Self {
        self.app = access_log::AccessLog::new(level).install(self.app);
        self
    }

    /// Records FastStream's Prometheus metrics of every handled and published message in
    /// `metrics`, and adds the `/metrics` route to the app's HTTP server (`run
    /// --health-port`). See [`metrics`].
    ///
    /// ```
    /// use faststream::observe::metrics::Metrics;
    /// use faststream::FastStream;
    /// # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
    /// let metrics = Metrics::new("billing");
    /// let app = FastStream::new(broker).metrics(&metrics);
    /// assert!(app.http_routes().iter().any(|(path, _)| path == "/metrics"));
    /// # app
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &metrics::Metrics) -> Self {
        self.app = metrics.install(self.app);
        self.observed.metrics = Some(metrics.clone());
        let served = metrics.clone();
        self.http_route("/metrics", move || {
            crate::http::HttpResponse::with_type(
                200,
                metrics::Metrics::CONTENT_TYPE,
                served.render(),
            )
        })
    }

    /// The metrics installed with [`FastStream::metrics`], if any.
    #[cfg(feature = "metrics")]
    pub fn installed_metrics(&self) -> Option<&metrics::Metrics> {
        self.observed.metrics.as_ref()
    }

    /// Traces every handled and published message with `otel`'s tracer. See [`otel`].
    ///
    /// ```
    /// use faststream::observe::otel::Otel;
    /// use faststream::FastStream;
    /// # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
    /// // Spans go to the global tracer provider (a no-op until one is installed).
    /// FastStream::new(broker).otel(&Otel::global())
    /// # }
    /// ```
    #[cfg(feature = "otel")]
    pub fn otel(mut self, otel: &otel::Otel) -> Self {
        self.app = otel.install(self.app);
        self
    }
}

impl<B: Broker + DescribeServer> FastStream<B> {
    /// The app's AsyncAPI document: its subscribers and publishers on the broker's server.
    /// Needs no connection to the broker.
    ///
    /// ```
    /// use faststream::asyncapi::AsyncApiVersion;
    /// use faststream::{FastStream, SubscriberConfig};
    /// use faststream::kafka::KafkaBroker;
    ///
    /// let app = FastStream::new(KafkaBroker::new("localhost:9092"))
    ///     .title("Doubler")
    ///     .subscriber(SubscriberConfig::new("double", ["numbers"]), |n: i64| async move { n * 2 });
    /// let document = app.asyncapi(AsyncApiVersion::V3_0_0);
    /// assert_eq!(document["info"]["title"], "Doubler");
    /// assert!(document["channels"].get("numbers:Double").is_some());
    /// ```
    pub fn asyncapi(&self, version: AsyncApiVersion) -> serde_json::Value {
        // Each subscriber documents the dead-letter topics of its resolved failure handling
        // (`SubscriberConfig::delivery_policy`, which knows the app's and routers' defaults).
        let subscribers = self.subscribers();
        let publishers: Vec<_> = self
            .app
            .publishers()
            .iter()
            .map(|p| p.config().clone())
            .collect();
        crate::asyncapi::document_with_publishers(
            &self.info,
            &self.broker().server_info(),
            subscribers,
            &publishers,
            version,
        )
    }

    /// Writes the AsyncAPI document to `path`, as YAML when `yaml`, else as JSON.
    pub fn write_asyncapi(
        &self,
        path: impl AsRef<std::path::Path>,
        version: AsyncApiVersion,
        yaml: bool,
    ) -> Result<(), AsyncApiError> {
        crate::asyncapi::write(&self.asyncapi(version), path.as_ref(), yaml)
    }
}
