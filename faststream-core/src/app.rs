//! The application: subscribers, shared state, lifecycle hooks, graceful shutdown.

use crate::broker::{Broker, PartitionWorkers, Publish, Subscription};
use crate::error::{Error, HandlerError, Result};
use crate::extract::AppState;
use crate::handler::Handler;
use crate::options::StartupOptions;
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
}

impl<B: Broker> std::fmt::Debug for App<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("subscribers", &self.configs)
            .field("graceful_timeout", &self.graceful_timeout)
            .finish_non_exhaustive()
    }
}

impl<B: Broker> Registry for App<B> {
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
        self.run_with(StartupOptions::from_env()).await
    }

    /// [`App::run`] handing `options` to startup hooks; logging is set up by the caller
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
