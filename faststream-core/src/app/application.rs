//! The application: subscribers, shared state, lifecycle hooks, graceful shutdown.

use crate::app::publisher::{Publisher, SendFn};
use crate::app::retry_topics;
use crate::app::router::Router;
use crate::broker::{Broker, Publish, Record, SubscribeOptions, Subscription};
use crate::config::options::StartupOptions;
use crate::config::subscriber::{
    HandlerLayer, IntoSubscriber, MessageLayer, Registry, SubscriberConfig,
};
use crate::error::{BoxError, Error, PublishError, Result};
use crate::handler::extract::AppState;
use crate::handler::Handler;
use crate::handler::Seeker;
use crate::health::AppHealth;
use crate::message::codec::{Codec, CodecRef};
use crate::message::seek::{Seek, Sought};
use crate::middleware::{BoxPublishService, PublishLayer};
use crate::policy::{AckPolicy, ErrorPolicy, PolicyLevel};
use crate::runtime::factory::{factory, SubscriberFactory};
use crate::runtime::stats::SubscriberStats;
use crate::runtime::worker::{subscriber_workers, BuiltSubscriber, PublishPath, StartContext};
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer, Service};

/// How long shutdown waits, after the graceful timeout, for consumers to commit and leave their
/// groups.
const LEAVE_MARGIN: Duration = Duration::from_secs(5);

/// What a lifecycle hook may return: `()` or `Result<(), E>`.
pub trait HookOutput: Send {
    /// Converts into the hook's outcome.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HookOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError> + Send> HookOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// A startup hook: receives the CLI's extra options and the worker id.
type StartupHook =
    Box<dyn FnOnce(StartupOptions) -> BoxFuture<'static, Result<(), BoxError>> + Send>;

#[derive(Default)]
struct Hooks {
    on_startup: Vec<StartupHook>,
    after_startup: Vec<Hook>,
    on_shutdown: Vec<Hook>,
    after_shutdown: Vec<Hook>,
}

async fn run_hooks(name: &'static str, hooks: Vec<Hook>) -> Result<()> {
    for hook in hooks {
        hook()
            .await
            .map_err(|source| Error::Hook { hook: name, source })?;
    }
    Ok(())
}

/// The delivery future of a broker's publisher.
type DeliveryOf<B> = <<B as Broker>::Publisher as Publish>::Delivery;

/// The runtime of an application: a broker, its subscribers, shared state and lifecycle hooks.
///
/// Users build it through the facade's `faststream::FastStream`, which adds the AsyncAPI
/// description, logging set-up and the app's command line around it.
///
/// ```
/// use faststream_core::{App, SubscriberConfig};
/// # async fn demo<B: faststream_core::Broker>(broker: B) -> faststream_core::Result<()> {
/// let running = App::new(broker)
///     .subscriber(SubscriberConfig::new("double", ["numbers"]).publish_to("doubled"), |n: i64| async move { n * 2 })
///     .start()
///     .await?;
/// running.shutdown().await
/// # }
/// ```
pub struct App<B: Broker> {
    broker: B,
    subscribers: Vec<SubscriberFactory<B::Publisher>>,
    configs: Vec<Arc<SubscriberConfig>>,
    state: AppState,
    hooks: Hooks,
    graceful_timeout: Duration,
    rebalance_timeout: Option<Duration>,
    flush_timeout: Duration,
    layers: Vec<HandlerLayer>,
    publish_layers: Vec<PublishLayer<DeliveryOf<B>>>,
    /// The default policies of every subscriber (the least specific level).
    policies: PolicyLevel,
    /// The payload codec of every subscriber that sets none (nor a router for it).
    codec: Option<CodecRef>,
    publishers: Vec<Publisher>,
    stuck_after: Duration,
}

/// The default of [`App::stuck_after`].
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(60);

impl<B: Broker> std::fmt::Debug for App<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("subscribers", &self.configs)
            .field("graceful_timeout", &self.graceful_timeout)
            .finish_non_exhaustive()
    }
}

impl<B: Broker> Registry for App<B> {
    fn add_subscriber<H, T>(&mut self, mut config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        config.describe_handler(&handler);
        self.push_subscriber(config, factory(handler));
    }
}

impl<B: Broker> App<B> {
    /// An app on `broker`, with no subscribers yet.
    pub fn new(broker: B) -> Self {
        Self {
            broker,
            subscribers: Vec::new(),
            configs: Vec::new(),
            state: AppState::default(),
            hooks: Hooks::default(),
            graceful_timeout: Duration::from_secs(15),
            rebalance_timeout: None,
            flush_timeout: Duration::from_secs(5),
            layers: Vec::new(),
            publish_layers: Vec::new(),
            policies: PolicyLevel::default(),
            codec: None,
            publishers: Vec::new(),
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }

    /// Adds a subscriber whose configuration is final but for the app's defaults.
    fn push_subscriber(
        &mut self,
        mut config: SubscriberConfig,
        build: SubscriberFactory<B::Publisher>,
    ) {
        config.inherit_app_policies(&self.policies);
        config.codec.inherit_app(self.codec.as_ref());
        self.configs.push(Arc::new(config));
        self.subscribers.push(build);
    }

    /// The ack policy of every subscriber that sets none of its own, neither itself nor
    /// through a router (default [`AckPolicy::AckAfter`]): their commit timing, and for
    /// `AckAfter`, `NackOnError` and `RejectOnError` their failure handling unless a more
    /// specific level sets one ([`SubscriberConfig::delivery_policy`]). Applies to the
    /// subscribers included before and after this call.
    ///
    /// ```
    /// use faststream_core::{AckPolicy, App, CommitTiming, SubscriberConfig};
    /// # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
    /// let app = App::new(broker)
    ///     .subscriber(SubscriberConfig::new("a", ["a"]), |n: i64| async move { n })
    ///     .subscriber(
    ///         SubscriberConfig::new("b", ["b"]).ack_policy(AckPolicy::AckFirst),
    ///         |n: i64| async move { n },
    ///     )
    ///     .ack_policy(AckPolicy::NackOnError);
    /// let first = app.subscribers()[0].delivery_policy();
    /// assert_eq!(first.failure.max_attempts, None, "the app's NackOnError retries");
    /// let second = app.subscribers()[1].delivery_policy();
    /// assert_eq!(second.commit, CommitTiming::BeforeHandler, "its own AckFirst");
    /// # app
    /// # }
    /// ```
    pub fn ack_policy(mut self, policy: AckPolicy) -> Self {
        self.policies.ack_policy = Some(policy);
        self.inherit_policies();
        self
    }

    /// The payload codec of every subscriber that sets none, neither itself nor through a
    /// router (default: FastStream's JSON), added before or after this call (see
    /// [`SubscriberConfig::codec`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        let codec: CodecRef = Arc::new(codec);
        for config in &mut self.configs {
            Arc::make_mut(config).codec.inherit_app(Some(&codec));
        }
        self.codec = Some(codec);
        self
    }

    /// Hands the app's default policies to every subscriber added so far.
    fn inherit_policies(&mut self) {
        for config in &mut self.configs {
            Arc::make_mut(config).inherit_app_policies(&self.policies);
        }
    }

    /// Includes `router`: its subscribers (topics and publisher topics under its prefix,
    /// wrapped in its layers, with its default policies) and its publisher objects. See
    /// [`Router`].
    ///
    /// ```
    /// use faststream_core::{App, Router, SubscriberConfig};
    /// # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
    /// let orders = Router::new("orders-").subscriber(
    ///     SubscriberConfig::new("double", ["in"]).publish_to("out"),
    ///     |n: i64| async move { n * 2 },
    /// );
    /// let app = App::new(broker).include_router(orders);
    /// assert_eq!(app.subscribers()[0].backend.topics, ["orders-in"]);
    /// assert_eq!(&*app.subscribers()[0].publishers[0].topic, "orders-out");
    /// # app
    /// # }
    /// ```
    pub fn include_router(mut self, router: Router<B>) -> Self {
        let (routes, publishers) = router.into_parts();
        for (config, build) in routes {
            self.push_subscriber(config, build);
        }
        self.publishers.extend(publishers);
        self
    }

    /// A message in flight longer than `limit` (its partition finished nothing meanwhile)
    /// makes the app not ready ([`AppHealth::is_ready`]), as SmallRye's stuck-record
    /// detection does. Default [`DEFAULT_STUCK_AFTER`] (60 s).
    pub fn stuck_after(mut self, limit: Duration) -> Self {
        self.stuck_after = limit;
        self
    }

    /// Registers a publisher object: the AsyncAPI document lists it like a `#[publisher]`,
    /// and once the app started it publishes through the app's publish layers (see
    /// [`crate::publisher`]).
    pub fn with_publisher(mut self, publisher: &Publisher) -> Self {
        self.publishers.push(publisher.clone());
        self
    }

    /// The registered publisher objects.
    pub fn publishers(&self) -> &[Publisher] {
        &self.publishers
    }

    /// The failure handling of every subscriber for which neither itself nor a router sets
    /// one (an error policy, or an ack policy with a preset such as `NackOnError`); see
    /// [`SubscriberConfig::delivery_policy`]. Default: each subscriber's ack-policy preset
    /// ([`ErrorPolicy::preset`]). Applies to the subscribers included before and after this
    /// call.
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policies.error_policy = Some(policy);
        self.inherit_policies();
        self
    }

    /// The app-wide error policy, if set.
    pub fn default_error_policy(&self) -> Option<&ErrorPolicy> {
        self.policies.error_policy.as_ref()
    }

    /// Adds a subscriber declared with `#[subscriber]`.
    pub fn include(mut self, subscriber: impl IntoSubscriber) -> Self {
        subscriber.register(&mut self);
        self
    }

    /// Adds a subscriber without the macro: any function or closure that is a [`Handler`].
    ///
    /// ```
    /// use faststream_core::{App, SubscriberConfig};
    /// # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
    /// App::new(broker).subscriber(
    ///     SubscriberConfig::new("double", ["numbers"]).publish_to("doubled"),
    ///     |n: i64| async move { n * 2 },
    /// )
    /// # }
    /// ```
    pub fn subscriber<H, T>(mut self, config: SubscriberConfig, handler: H) -> Self
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        self.add_subscriber(config, handler);
        self
    }

    /// Registers shared state, available to handlers as `State<T>`.
    pub fn with_state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// How long shutdown waits for in-flight handlers and publishes (default 15 s). Handlers
    /// still running then are cancelled, and their messages stay uncommitted.
    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_timeout = timeout;
        self
    }

    /// How long a rebalance waits for the in-flight work of revoked partitions before it
    /// cancels it (default: the graceful timeout). That work's messages stay uncommitted and
    /// go to the partitions' new owner.
    pub fn rebalance_timeout(mut self, timeout: Duration) -> Self {
        self.rebalance_timeout = Some(timeout);
        self
    }

    /// How long shutdown waits for the producer to flush, after the consumers stopped
    /// (default 5 s). A whole shutdown takes at most the graceful timeout plus this, plus a
    /// few seconds for consumers to commit and leave their groups.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Wraps every subscriber's handler pipeline in `layer`, any tower layer over the
    /// pipeline (a [`MessageLayer`]; see [`crate::middleware`] for examples). App layers are
    /// outside subscriber layers; the first added is the outermost.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: MessageLayer + Send + Sync + 'static,
    {
        self.layers.push(HandlerLayer::new(layer));
        self
    }

    /// Like [`App::layer`], with the layer built for each subscriber by `make` from its
    /// configuration (e.g. to label metrics or recorded calls with the subscriber's name).
    ///
    /// ```
    /// use faststream_core::{App, SubscriberConfig};
    /// use tower::util::MapErrLayer;
    /// use faststream_core::middleware::BoxError;
    /// # fn app<B: faststream_core::Broker>(app: App<B>) -> App<B> {
    /// app.layer_for(|config: &SubscriberConfig| {
    ///     let name = config.name.clone();
    ///     MapErrLayer::new(move |err: BoxError| -> BoxError { format!("{name}: {err}").into() })
    /// })
    /// # }
    /// ```
    pub fn layer_for<F, L>(mut self, make: F) -> Self
    where
        F: Fn(&SubscriberConfig) -> L + Send + Sync + 'static,
        L: MessageLayer,
    {
        self.layers.push(HandlerLayer::per_subscriber(make));
        self
    }

    /// Wraps the publishing of every record a handler's reply produces in `layer`, a tower
    /// layer over [`BoxPublishService`] (e.g. to add a header to every outgoing record, see
    /// [`crate::middleware`]). The first added is the outermost.
    pub fn publish_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxPublishService<DeliveryOf<B>>> + Send + Sync + 'static,
        L::Service: Service<Record, Response = DeliveryOf<B>, Error = PublishError>
            + Clone
            + Send
            + 'static,
        <L::Service as Service<Record>>::Future: Send + 'static,
    {
        self.publish_layers.push(PublishLayer::new(layer));
        self
    }

    /// Runs before the broker connects. A failing hook aborts the start.
    pub fn on_startup<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        let hook = boxed_hook(hook);
        self.hooks.on_startup.push(Box::new(move |_| hook()));
        self
    }

    /// Like [`App::on_startup`], receiving the extra `--key value` options given to the
    /// app's `run` command and the worker id (see [`StartupOptions`]).
    ///
    /// ```
    /// use faststream_core::App;
    /// # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
    /// App::new(broker).on_startup_with(|opts| async move {
    ///     if let Some(env) = opts.str("env") {
    ///         println!("loading {env} as worker {:?}", opts.worker_id());
    ///     }
    /// })
    /// # }
    /// ```
    pub fn on_startup_with<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(StartupOptions) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.hooks.on_startup.push(Box::new(move |opts| {
            Box::pin(async move { hook(opts).await.into_result() })
        }));
        self
    }

    /// Runs once every subscriber is consuming.
    pub fn after_startup<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.hooks.after_startup.push(boxed_hook(hook));
        self
    }

    /// Runs when shutdown begins, before consumers stop.
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.hooks.on_shutdown.push(boxed_hook(hook));
        self
    }

    /// Runs after consumers stopped and the producer flushed.
    pub fn after_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.hooks.after_shutdown.push(boxed_hook(hook));
        self
    }

    /// The registered subscribers' configurations (topics, groups, publishers, docs).
    pub fn subscribers(&self) -> &[Arc<SubscriberConfig>] {
        &self.configs
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// Starts consuming and returns a handle to stop the app; use [`App::run`] to run
    /// until SIGINT or SIGTERM.
    pub async fn start(self) -> Result<RunningApp<B>> {
        self.start_with(StartupOptions::from_env()).await
    }

    /// [`App::start`] handing `options` to startup hooks (and to handlers as
    /// `State<StartupOptions>`).
    ///
    /// If anything fails after consumers started (a subscription, an `after_startup` hook),
    /// what was started is shut down gracefully before the error is returned.
    pub async fn start_with(mut self, options: StartupOptions) -> Result<RunningApp<B>> {
        for hook in std::mem::take(&mut self.hooks.on_startup) {
            hook(options.clone()).await.map_err(|source| Error::Hook {
                hook: "on_startup",
                source,
            })?;
        }
        self.state.insert(options);
        self.broker.ping(Duration::from_secs(10)).await?;
        let publisher = self.broker.publisher()?;
        let mut running = RunningApp {
            publisher: publisher.clone(),
            live: Arc::new(Live {
                subscriptions: Mutex::new(Vec::with_capacity(self.subscribers.len())),
                stuck_after: self.stuck_after,
                fatal: Mutex::new(None),
                broker: self.broker,
            }),
            hooks: Hooks {
                on_shutdown: std::mem::take(&mut self.hooks.on_shutdown),
                after_shutdown: std::mem::take(&mut self.hooks.after_shutdown),
                ..Hooks::default()
            },
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            graceful_timeout: self.graceful_timeout,
            flush_timeout: self.flush_timeout,
            cx: None,
            options: None,
            policies: self.policies.clone(),
            codec: self.codec.clone(),
        };
        let cx = StartContext {
            state: Arc::new(std::mem::take(&mut self.state)),
            publisher: PublishPath::new(publisher, &self.publish_layers),
            publish_layers: std::mem::take(&mut self.publish_layers),
            layers: std::mem::take(&mut self.layers),
            tracker: running.tracker.clone(),
            transactions: None,
        };
        for declared in &self.publishers {
            let path = std::sync::Mutex::new(cx.publisher.clone());
            let send: SendFn = Box::new(move |record| {
                let mut path = path
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                Box::pin(async move { path.enqueue(record).await?.await })
            });
            if !declared.bind(send) {
                tracing::warn!(
                    "the publisher to `{}` is already bound to another app; it keeps publishing there",
                    declared.topic()
                );
            }
        }
        let options = SubscribeOptions {
            stop: running.shutdown.clone(),
            graceful_timeout: self.graceful_timeout,
            rebalance_timeout: self.rebalance_timeout.unwrap_or(self.graceful_timeout),
        };
        // Every handler's needs are checked before any consumer starts.
        let mut built = Vec::with_capacity(self.subscribers.len());
        let factories = std::mem::take(&mut self.subscribers);
        for (config, factory) in self.configs.iter().zip(factories) {
            let own = exactly_once_context(&running.live.broker, config, &cx).await?;
            built.push(factory(Arc::clone(config), own.as_ref().unwrap_or(&cx))?);
        }
        running.options = Some(options);
        for subscriber in built {
            if let Err(err) = running.start_subscription(subscriber).await {
                running.stop().await;
                return Err(err);
            }
        }
        running.cx = Some(cx);
        let after_startup = std::mem::take(&mut self.hooks.after_startup);
        if let Err(err) = run_hooks("after_startup", after_startup).await {
            tracing::error!("{err}; stopping what was started");
            running.stop().await;
            return Err(err);
        }
        Ok(running)
    }

    /// Starts the app, waits for SIGINT or SIGTERM, then shuts down gracefully: stop fetching,
    /// let in-flight handlers finish (up to the graceful timeout), flush the producer, commit.
    pub async fn run(self) -> Result<()> {
        self.run_with(StartupOptions::from_env()).await
    }

    /// [`App::run`] handing `options` to startup hooks; logging is set up by the caller
    /// (or not at all).
    ///
    /// A fatal backend error ([`Broker::fatal_error`]) shuts the app down too, and is
    /// returned as [`Error::Fatal`].
    pub async fn run_with(self, options: StartupOptions) -> Result<()> {
        let running = self.start_with(options).await?;
        running.run_until_signal().await
    }
}

fn boxed_hook<F, Fut>(hook: F) -> Hook
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HookOutput,
{
    Box::new(move || Box::pin(async move { hook().await.into_result() }))
}

/// An exactly-once subscriber's own start context: its member's transactional publisher,
/// from the broker. `None` for the other subscribers.
async fn exactly_once_context<B: Broker>(
    broker: &B,
    config: &SubscriberConfig,
    cx: &StartContext<B::Publisher>,
) -> Result<Option<StartContext<B::Publisher>>> {
    if config.delivery.exactly_once.is_none() {
        return Ok(None);
    }
    let member = broker.exactly_once(config).await?;
    Ok(Some(cx.exactly_once(member.publisher, member.transactions)))
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM; returns which.
pub async fn shutdown_signal() -> Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|_| "SIGINT").map_err(Error::from),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

/// A started app. Dropping it without [`RunningApp::shutdown`] cancels its consumers without
/// waiting for them.
pub struct RunningApp<B: Broker> {
    live: Arc<Live<B>>,
    publisher: B::Publisher,
    /// What subscribers added while running are built with.
    cx: Option<StartContext<B::Publisher>>,
    /// How subscriptions stop (each gets a child of the root token).
    options: Option<SubscribeOptions>,
    /// The app's default policies, for subscribers added while running.
    policies: PolicyLevel,
    /// The app's payload codec, for subscribers added while running.
    codec: Option<CodecRef>,
    hooks: Hooks,
    /// The root of every consumer's and partition worker's stop signal.
    shutdown: CancellationToken,
    /// Every partition worker task.
    tracker: TaskTracker,
    graceful_timeout: Duration,
    flush_timeout: Duration,
}

/// What health is read from while the app runs, shared with [`HealthProbe`]s.
struct Live<B: Broker> {
    broker: B,
    subscriptions: Mutex<Vec<Started>>,
    stuck_after: Duration,
    /// The fatal error once [`RunningApp::fatal_error`] saw it.
    fatal: Mutex<Option<String>>,
}

/// A started subscription, with what its health is built from.
struct Started {
    config: Arc<SubscriberConfig>,
    stats: Arc<SubscriberStats>,
    subscription: Box<dyn Subscription>,
    /// Moves its partitions ([`RunningApp::seek`]).
    seeker: Seeker,
    /// Stops this subscription alone (a child of the app's root token).
    stop: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data stays usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<B: Broker> Live<B> {
    fn health(&self) -> AppHealth {
        let subscribers = lock(&self.subscriptions)
            .iter()
            .map(|s| s.stats.report(&s.config.name, s.subscription.health()))
            .collect();
        AppHealth {
            subscribers,
            producer: self.broker.connection(),
            stuck_after: self.stuck_after,
            fatal: lock(&self.fatal).clone(),
        }
    }
}

/// Reads a running app's health from anywhere (an HTTP endpoint, a task), without holding
/// the [`RunningApp`]. From [`RunningApp::health_probe`].
#[derive(Clone)]
pub struct HealthProbe(Arc<dyn Fn() -> AppHealth + Send + Sync>);

impl HealthProbe {
    /// A probe answering `health` (for tests and other runtimes).
    pub fn new(health: impl Fn() -> AppHealth + Send + Sync + 'static) -> Self {
        Self(Arc::new(health))
    }

    /// The app's health now (see [`RunningApp::health`]).
    pub fn health(&self) -> AppHealth {
        (self.0)()
    }
}

impl std::fmt::Debug for HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthProbe").finish_non_exhaustive()
    }
}

impl<B: Broker> std::fmt::Debug for RunningApp<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("subscriptions", &lock(&self.live.subscriptions).len())
            .field("workers", &self.tracker.len())
            .finish_non_exhaustive()
    }
}

impl<B: Broker> Drop for RunningApp<B> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl<B: Broker> RunningApp<B> {
    /// The broker, e.g. to publish.
    pub fn broker(&self) -> &B {
        &self.live.broker
    }

    /// Starts consuming for a built subscriber, under its own child of the root token.
    async fn start_subscription(&mut self, built: BuiltSubscriber) -> Result<()> {
        let Some(template) = &self.options else {
            return Err(Error::config_msg("the app is not running"));
        };
        let BuiltSubscriber {
            config,
            delivery,
            workers,
            stats,
            seeker,
            transactions,
        } = built;
        let config = retry_topics::prepare(&self.live.broker, config, &delivery.failure).await?;
        let stop = template.stop.child_token();
        let options = SubscribeOptions {
            stop: stop.clone(),
            ..template.clone()
        };
        let exactly_once = transactions
            .as_ref()
            .map(|t| {
                format!(
                    "; exactly-once, transactional id `{}`",
                    t.transactional_id()
                )
            })
            .unwrap_or_default();
        tracing::info!(
            "subscriber `{}` consuming {:?} as group `{}` ({delivery}{exactly_once})",
            config.name,
            config
                .backend
                .topics
                .iter()
                .chain(&config.backend.retry_topics)
                .collect::<Vec<_>>(),
            config.effective_group_id(),
        );
        let subscription = self
            .live
            .broker
            .subscribe(Arc::clone(&config), workers, options)
            .await?;
        seeker.bind(subscription.seeker());
        if let Some(coordinator) = transactions {
            self.tracker.spawn(coordinator.run(stop.clone()));
        }
        lock(&self.live.subscriptions).push(Started {
            seeker,
            config,
            stats,
            subscription,
            stop,
        });
        Ok(())
    }

    /// Adds a subscriber to the running app, without disturbing the others (FastStream's
    /// runtime `broker.subscriber(...)` then `start()`): built with the app's state, layers,
    /// publish path and default policies, and stopped with the app or by
    /// [`RunningApp::unsubscribe`]. Names must stay unique. The app's default ack and error
    /// policies ([`App::ack_policy`], [`App::error_policy`]) apply as to the subscribers
    /// added before the start ([`SubscriberConfig::delivery_policy`]).
    pub async fn subscribe<H, T>(&mut self, mut config: SubscriberConfig, handler: H) -> Result<()>
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        if lock(&self.live.subscriptions)
            .iter()
            .any(|s| s.config.name == config.name)
        {
            return Err(Error::config_msg(format!(
                "a subscriber named `{}` is already running",
                config.name
            )));
        }
        let Some(cx) = &self.cx else {
            return Err(Error::config_msg("the app is not running"));
        };
        config.inherit_app_policies(&self.policies);
        config.codec.inherit_app(self.codec.as_ref());
        config.describe_handler(&handler);
        let own = exactly_once_context(&self.live.broker, &config, cx).await?;
        let built = subscriber_workers(Arc::new(config), handler, own.as_ref().unwrap_or(cx))?;
        self.start_subscription(built).await
    }

    /// Stops the subscriber `name` gracefully, as a shutdown does for all of them (its
    /// workers finish what they hold, offsets are committed, it leaves its group), while the
    /// others keep running.
    pub async fn unsubscribe(&mut self, name: &str) -> Result<()> {
        let started = {
            let mut subscriptions = lock(&self.live.subscriptions);
            let index = subscriptions
                .iter()
                .position(|s| s.config.name == name)
                .ok_or_else(|| Error::config_msg(format!("no running subscriber `{name}`")))?;
            subscriptions.remove(index)
        };
        started.stop.cancel();
        let bound = self.graceful_timeout + LEAVE_MARGIN;
        if tokio::time::timeout(bound, started.subscription.finished())
            .await
            .is_err()
        {
            tracing::error!("subscriber `{name}` did not stop within {bound:?}");
        }
        tracing::info!("subscriber `{name}` stopped");
        Ok(())
    }

    /// Moves the running subscriber `name`'s partitions to another position: an offset, a
    /// timestamp, the beginning or the end, for one partition, a topic's or all of them
    /// (see [`Seek`]). Each partition's in-flight work is dropped, not committed; the next
    /// record its handler gets is the one sought, and the sought offset becomes its
    /// committed position at once. Returns where each partition reads from now. Seeking a
    /// partition the subscriber does not own (never assigned, or revoked) is
    /// [`Error::NotOwned`], and nothing moves.
    ///
    /// ```no_run
    /// # async fn replay(running: &faststream_core::RunningApp<impl faststream_core::Broker>) -> faststream_core::Result<()> {
    /// use faststream_core::seek::Seek;
    /// use faststream_core::StartFrom;
    ///
    /// // Everything `orders` consumed since midnight (UTC, 2026-12-06), again.
    /// let sought = running.seek("orders", Seek::all(StartFrom::Timestamp(1_796_515_200_000))).await?;
    /// for s in sought {
    ///     println!("{} reads from {}", s.partition, s.offset);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn seek(&self, name: &str, seek: Seek) -> Result<Vec<Sought>> {
        let seeker = lock(&self.live.subscriptions)
            .iter()
            .find(|s| s.config.name == name)
            .map(|s| s.seeker.clone())
            .ok_or_else(|| Error::config_msg(format!("no running subscriber `{name}`")))?;
        seeker.seek(seek).await
    }

    /// The app's health now: per subscriber its state, assigned partitions, lag, buffered
    /// bytes and oldest in-flight message; the producer's connection; a fatal error.
    pub fn health(&self) -> AppHealth {
        self.live.health()
    }

    /// A cloneable handle that reads [`RunningApp::health`] while the app runs (after
    /// shutdown it reports no subscribers).
    pub fn health_probe(&self) -> HealthProbe {
        let live = Arc::clone(&self.live);
        HealthProbe(Arc::new(move || live.health()))
    }

    /// Resolves with the cause when the backend hit an error it cannot recover from (see
    /// [`Broker::fatal_error`]).
    pub fn fatal_error(&self) -> impl Future<Output = String> + Send + 'static + use<B> {
        let fatal = self.live.broker.fatal_error();
        let live = Arc::clone(&self.live);
        async move {
            let cause = fatal.await;
            lock(&live.fatal).get_or_insert_with(|| cause.clone());
            cause
        }
    }

    /// Waits for SIGINT or SIGTERM, or a fatal backend error, then shuts down gracefully.
    /// A fatal error is returned as [`Error::Fatal`] once the app has stopped.
    pub async fn run_until_signal(self) -> Result<()> {
        let fatal = self.fatal_error();
        tokio::select! {
            signal = shutdown_signal() => {
                tracing::info!("received {}, shutting down", signal?);
                self.shutdown().await
            }
            cause = fatal => {
                // The cause is reported once, by whoever prints the returned error.
                tracing::info!("stopping after a fatal broker error");
                let shutdown = self.shutdown().await;
                if let Err(err) = shutdown {
                    tracing::warn!("shutdown after the fatal error: {err}");
                }
                Err(Error::fatal_msg(cause))
            }
        }
    }

    /// Graceful shutdown: on_shutdown hooks, then the subscribers stop, then after_shutdown
    /// hooks. Bounded: the graceful timeout, a few seconds for consumers to commit and leave,
    /// and the flush timeout.
    pub async fn shutdown(mut self) -> Result<()> {
        let on_shutdown =
            run_hooks("on_shutdown", std::mem::take(&mut self.hooks.on_shutdown)).await;
        self.stop().await;
        run_hooks(
            "after_shutdown",
            std::mem::take(&mut self.hooks.after_shutdown),
        )
        .await?;
        tracing::info!("shutdown complete");
        on_shutdown
    }

    /// Stops consuming: fires the root stop signal (every consumer stops fetching and every
    /// partition worker finishes the message in hand and its publishes), waits for consumers
    /// to commit what was finished and leave their groups, then flushes the producer.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        let finished = futures::future::join_all(
            std::mem::take(&mut *lock(&self.live.subscriptions))
                .into_iter()
                .map(|s| s.subscription.finished()),
        );
        let bound = self.graceful_timeout + LEAVE_MARGIN;
        if tokio::time::timeout(bound, finished).await.is_err() {
            tracing::error!("consumers did not stop within {bound:?}; leaving them behind");
        }
        // Workers were stopped (or cancelled) by their consumers; this only confirms it.
        if tokio::time::timeout(LEAVE_MARGIN, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                "{} partition workers still running at exit",
                self.tracker.len()
            );
        }
        if let Err(err) = self.publisher.flush(self.flush_timeout).await {
            tracing::error!("flushing the producer failed: {err}");
        }
    }
}
