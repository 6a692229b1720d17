//! The application: subscribers, shared state, lifecycle hooks, graceful shutdown.

use crate::asyncapi::{
    AppInfo, AsyncApiError, AsyncApiVersion, Contact, ExternalDocs, License, Tag,
};
use crate::broker::{Broker, PartitionWorkers, Publish, Subscription};
use crate::cli::StartupOptions;
use crate::error::{Error, HandlerError, Result};
use crate::extract::AppState;
use crate::handler::Handler;
use crate::subscriber::{IntoSubscriber, Registry, SubscriberConfig};
use crate::worker::SubscriberRuntime;
use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What a lifecycle hook may return: `()` or `Result<(), E>`.
pub trait HookOutput: Send {
    /// Converts into the hook's outcome.
    fn into_result(self) -> Result<(), HandlerError>;
}

impl HookOutput for () {
    fn into_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<E: Into<HandlerError> + Send> HookOutput for Result<(), E> {
    fn into_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), HandlerError>> + Send>;

/// A startup hook: receives the CLI's extra options and the worker id.
type StartupHook =
    Box<dyn FnOnce(StartupOptions) -> BoxFuture<'static, Result<(), HandlerError>> + Send>;

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

/// Builds a subscriber's runtime once the publisher exists.
type SubscriberFactory<P> =
    Box<dyn FnOnce(P, Arc<AppState>) -> (Arc<SubscriberConfig>, Arc<dyn PartitionWorkers>) + Send>;

/// A FastStream application: a broker, its subscribers, state and hooks.
///
/// ```no_run
/// # #[cfg(any())] mod doc {
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
/// # }
/// ```
pub struct FastStream<B: Broker> {
    broker: B,
    subscribers: Vec<SubscriberFactory<B::Publisher>>,
    configs: Vec<Arc<SubscriberConfig>>,
    state: AppState,
    hooks: Hooks,
    graceful_timeout: Duration,
    info: AppInfo,
}

impl<B: Broker> std::fmt::Debug for FastStream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastStream")
            .field("subscribers", &self.configs)
            .field("graceful_timeout", &self.graceful_timeout)
            .finish_non_exhaustive()
    }
}

impl<B: Broker> Registry for FastStream<B> {
    fn add_subscriber<H, T>(&mut self, config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        let config = Arc::new(config);
        self.configs.push(Arc::clone(&config));
        self.subscribers.push(Box::new(move |publisher, state| {
            let runtime = SubscriberRuntime::new(Arc::clone(&config), handler, publisher, state);
            (config, Arc::new(runtime) as Arc<dyn PartitionWorkers>)
        }));
    }
}

impl<B: Broker> FastStream<B> {
    /// An app on `broker`, with no subscribers yet.
    pub fn new(broker: B) -> Self {
        Self {
            broker,
            subscribers: Vec::new(),
            configs: Vec::new(),
            state: AppState::default(),
            hooks: Hooks::default(),
            graceful_timeout: Duration::from_secs(15),
            info: AppInfo::default(),
        }
    }

    /// Adds a subscriber declared with `#[subscriber]`.
    pub fn include(mut self, subscriber: impl IntoSubscriber) -> Self {
        subscriber.register(&mut self);
        self
    }

    /// Adds a subscriber without the macro: any function or closure that is a [`Handler`].
    ///
    /// ```
    /// use faststream_core::{FastStream, SubscriberConfig};
    /// # fn app<B: faststream_core::Broker>(broker: B) -> FastStream<B> {
    /// FastStream::new(broker).subscriber(
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

    /// How long shutdown waits for in-flight handlers and publishes (default 15 s).
    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.graceful_timeout = timeout;
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

    /// Like [`FastStream::on_startup`], receiving the extra `--key value` options given to the
    /// app's `run` command and the worker id (see [`StartupOptions`]).
    ///
    /// ```
    /// use faststream_core::FastStream;
    /// # fn app<B: faststream_core::Broker>(broker: B) -> FastStream<B> {
    /// FastStream::new(broker).on_startup_with(|opts| async move {
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

    /// The app's AsyncAPI document: its subscribers and publishers on the broker's server.
    /// Needs no connection to the broker.
    ///
    /// ```
    /// use faststream_core::asyncapi::AsyncApiVersion;
    /// use faststream_core::{FastStream, SubscriberConfig};
    /// # fn doc<B: faststream_core::Broker>(broker: B) {
    /// let app = FastStream::new(broker)
    ///     .title("Doubler")
    ///     .subscriber(SubscriberConfig::new("double", ["numbers"]), |n: i64| async move { n * 2 });
    /// let document = app.asyncapi(AsyncApiVersion::V3_0_0);
    /// assert_eq!(document["info"]["title"], "Doubler");
    /// assert!(document["channels"].get("numbers:Double").is_some());
    /// # }
    /// ```
    pub fn asyncapi(&self, version: AsyncApiVersion) -> serde_json::Value {
        crate::asyncapi::document(&self.info, &self.broker.describe(), &self.configs, version)
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

    /// The registered subscribers' configurations (topics, groups, publishers, docs).
    pub fn subscribers(&self) -> &[Arc<SubscriberConfig>] {
        &self.configs
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// Starts consuming and returns a handle to stop the app; use [`FastStream::run`] to run
    /// until SIGINT or SIGTERM.
    pub async fn start(self) -> Result<RunningApp<B>> {
        self.start_with(StartupOptions::from_env()).await
    }

    /// [`FastStream::start`] handing `options` to startup hooks (and to handlers as
    /// `State<StartupOptions>`).
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
        let state = Arc::new(std::mem::take(&mut self.state));
        let mut subscriptions = Vec::with_capacity(self.subscribers.len());
        for factory in std::mem::take(&mut self.subscribers) {
            let (config, workers) = factory(publisher.clone(), Arc::clone(&state));
            tracing::info!(
                "subscriber `{}` consuming {:?} as group `{}` ({:?})",
                config.name,
                config.topics,
                config.effective_group_id(),
                config.ack_policy
            );
            match self.broker.subscribe(config, workers).await {
                Ok(subscription) => subscriptions.push(subscription),
                Err(err) => {
                    stop_all(subscriptions, self.graceful_timeout).await;
                    return Err(err);
                }
            }
        }
        run_hooks(
            "after_startup",
            std::mem::take(&mut self.hooks.after_startup),
        )
        .await?;
        Ok(RunningApp {
            broker: self.broker,
            publisher,
            subscriptions,
            hooks: self.hooks,
            graceful_timeout: self.graceful_timeout,
        })
    }

    /// Starts the app, waits for SIGINT or SIGTERM, then shuts down gracefully: stop fetching,
    /// let in-flight handlers finish (up to the graceful timeout), flush the producer, commit.
    pub async fn run(self) -> Result<()> {
        crate::logging::init_from_env();
        self.run_with(StartupOptions::from_env()).await
    }

    /// [`FastStream::run`] handing `options` to startup hooks; logging is set up by the caller
    /// (or not at all).
    pub async fn run_with(self, options: StartupOptions) -> Result<()> {
        let running = self.start_with(options).await?;
        let signal = shutdown_signal().await?;
        tracing::info!("received {signal}, shutting down");
        running.shutdown().await
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

async fn stop_all(subscriptions: Vec<Box<dyn Subscription>>, graceful: Duration) {
    let stops = subscriptions.into_iter().map(|s| s.stop(graceful));
    for result in futures::future::join_all(stops).await {
        if let Err(err) = result {
            tracing::error!("stopping a subscriber failed: {err}");
        }
    }
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

/// A started app. Dropping it without [`RunningApp::shutdown`] stops nothing gracefully.
pub struct RunningApp<B: Broker> {
    broker: B,
    publisher: B::Publisher,
    subscriptions: Vec<Box<dyn Subscription>>,
    hooks: Hooks,
    graceful_timeout: Duration,
}

impl<B: Broker> std::fmt::Debug for RunningApp<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("subscriptions", &self.subscriptions.len())
            .finish_non_exhaustive()
    }
}

impl<B: Broker> RunningApp<B> {
    /// The broker, e.g. to publish.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// Graceful shutdown: on_shutdown hooks, stop every subscriber (in-flight work finishes
    /// and is committed), flush the producer, after_shutdown hooks.
    pub async fn shutdown(mut self) -> Result<()> {
        let on_shutdown =
            run_hooks("on_shutdown", std::mem::take(&mut self.hooks.on_shutdown)).await;
        stop_all(
            std::mem::take(&mut self.subscriptions),
            self.graceful_timeout,
        )
        .await;
        if let Err(err) = self.publisher.flush(self.graceful_timeout).await {
            tracing::error!("flushing the producer failed: {err}");
        }
        run_hooks(
            "after_shutdown",
            std::mem::take(&mut self.hooks.after_shutdown),
        )
        .await?;
        tracing::info!("shutdown complete");
        on_shutdown
    }
}
