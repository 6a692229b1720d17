//! Routers and declarative routes: FastStream's `KafkaRouter(prefix=...)`, `include_router`
//! and `KafkaRoute`.
//!
//! A [`Router`] groups subscribers and publisher objects under a topic prefix, with its own
//! middleware layers and default policies, and is included in an app
//! ([`App::include_router`](crate::App::include_router)) or in another router
//! ([`Router::include_router`]). When it is included:
//!
//! - its prefix goes in front of every subscribed topic, pattern template
//!   ([`SubscriberConfig::pattern`]), explicitly assigned partition's topic
//!   ([`SubscriberConfig::partitions`]) and publisher topic (`#[publisher]`,
//!   [`SubscriberConfig::publish_to`]) of its subscribers, so the AsyncAPI
//!   document shows the prefixed names; nested prefixes concatenate (outer first);
//! - its layers wrap its subscribers inside the app's layers and outside the subscribers' own:
//!   app, outer router, inner router, subscriber;
//! - its default error policy and ack policy apply to the subscribers that set none: a
//!   subscriber's own setting wins over its router's, an inner router's over an outer's, and a
//!   router's over the app's; commit timing and failure handling are resolved separately
//!   ([`SubscriberConfig::delivery_policy`]).
//!
//! Groups and subscriber names are not prefixed (a subscriber's group is still its name unless
//! set).
//!
//! ```
//! use faststream_core::{AckPolicy, App, CommitTiming, ErrorPolicy, Router, SubscriberConfig};
//! # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
//! let billing = Router::new("billing-")
//!     .ack_policy(AckPolicy::NackOnError)
//!     .error_policy(ErrorPolicy::retry(3).then_dead_letter())
//!     .subscriber(
//!         SubscriberConfig::new("invoice", ["orders"]).publish_to("invoices"),
//!         |order_id: i64| async move { format!("invoice for {order_id}") },
//!     );
//! let app = App::new(broker).include_router(Router::new("eu-").include_router(billing));
//! let invoice = &app.subscribers()[0];
//! assert_eq!(invoice.backend.topics, ["eu-billing-orders"]);
//! assert_eq!(&*invoice.publishers[0].topic, "eu-billing-invoices");
//! // The router's error policy, over its own NackOnError preset (same level).
//! let policy = invoice.delivery_policy();
//! assert_eq!(policy.commit, CommitTiming::AfterHandler);
//! assert_eq!(policy.failure, ErrorPolicy::retry(3).then_dead_letter());
//! # app
//! # }
//! ```

use crate::app::publisher::Publisher;
use crate::broker::Broker;
use crate::config::subscriber::{
    HandlerLayer, IntoSubscriber, MessageLayer, Registry, SubscriberConfig,
};
use crate::handler::Handler;
use crate::message::codec::{Codec, CodecRef};
use crate::policy::{AckPolicy, ErrorPolicy, PolicyLevel};
use crate::runtime::factory::{factory, SubscriberFactory};
use std::marker::PhantomData;

/// A subscriber's configuration and the factory of its pipeline.
pub(crate) type RouteEntry<P> = (SubscriberConfig, SubscriberFactory<P>);

/// Subscribers and publisher objects under a topic prefix, with their own layers and default
/// policies (see [the module docs](self)). `B` is the app's broker, usually inferred from the
/// app the router is included in.
pub struct Router<B: Broker> {
    prefix: String,
    routes: Vec<RouteEntry<B::Publisher>>,
    publishers: Vec<Publisher>,
    layers: Vec<HandlerLayer>,
    policies: PolicyLevel,
    codec: Option<CodecRef>,
}

impl<B: Broker> std::fmt::Debug for Router<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<&SubscriberConfig> = self.routes.iter().map(|(c, _)| c).collect();
        f.debug_struct("Router")
            .field("prefix", &self.prefix)
            .field("subscribers", &routes)
            .field("publishers", &self.publishers)
            .field("layers", &self.layers.len())
            .field("policies", &self.policies)
            .field("codec", &self.codec)
            .finish()
    }
}

impl<B: Broker> Default for Router<B> {
    fn default() -> Self {
        Self::new("")
    }
}

impl<B: Broker> Registry for Router<B> {
    fn add_subscriber<H, T>(&mut self, mut config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        config.describe_handler(&handler);
        self.routes.push((config, factory(handler)));
    }
}

impl<B: Broker> Router<B> {
    /// A router whose subscribers' topics (and publisher topics) start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            routes: Vec::new(),
            publishers: Vec::new(),
            layers: Vec::new(),
            policies: PolicyLevel::default(),
            codec: None,
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configurations of its subscribers as declared, before its prefix, layers and
    /// policies are applied (that happens when the router is included).
    pub fn subscribers(&self) -> impl Iterator<Item = &SubscriberConfig> {
        self.routes.iter().map(|(config, _)| config)
    }

    /// Adds a subscriber declared with `#[subscriber]`, or a [`Route`].
    pub fn include(mut self, subscriber: impl IntoSubscriber) -> Self {
        subscriber.register(&mut self);
        self
    }

    /// Adds a subscriber without the macro (as [`App::subscriber`](crate::App::subscriber)).
    pub fn subscriber<H, T>(mut self, config: SubscriberConfig, handler: H) -> Self
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        self.add_subscriber(config, handler);
        self
    }

    /// Includes `router` in this one: its prefix comes after this router's, its layers inside
    /// this router's, its default policies before this router's.
    pub fn include_router(mut self, router: Router<B>) -> Self {
        let (routes, publishers) = router.into_parts();
        self.routes.extend(routes);
        self.publishers.extend(publishers);
        self
    }

    /// Registers a publisher object (listed in the AsyncAPI document and bound when the app
    /// starts, as [`App::with_publisher`](crate::App::with_publisher)). Its topic is kept as
    /// it is: a publisher object exists before the router is included, so no prefix can be
    /// added to it afterwards; make it with [`Router::publisher`] to put this router's prefix in
    /// front.
    pub fn with_publisher(mut self, publisher: &Publisher) -> Self {
        self.publishers.push(publisher.clone());
        self
    }

    /// A publisher object to `topic` under this router's own prefix (an outer router's prefix
    /// is not added), to register with [`Router::with_publisher`].
    ///
    /// ```
    /// use faststream_core::Router;
    /// # fn demo<B: faststream_core::Broker>() {
    /// let router = Router::<B>::new("orders-");
    /// let audit = router.publisher("audit");
    /// assert_eq!(audit.topic(), "orders-audit");
    /// let router = router.with_publisher(&audit);
    /// # }
    /// ```
    pub fn publisher(&self, topic: &str) -> Publisher {
        Publisher::to(format!("{}{topic}", self.prefix))
    }

    /// Wraps this router's subscribers in `layer` (a [`MessageLayer`],
    /// like [`App::layer`](crate::App::layer)): inside the app's and outer routers' layers,
    /// outside inner routers' and the subscribers' own. The first added is the outermost.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: MessageLayer + Send + Sync + 'static,
    {
        self.layers.push(HandlerLayer::new(layer));
        self
    }

    /// Like [`Router::layer`], built for each subscriber from its final configuration (as
    /// [`App::layer_for`](crate::App::layer_for)).
    pub fn layer_for<F, L>(mut self, make: F) -> Self
    where
        F: Fn(&SubscriberConfig) -> L + Send + Sync + 'static,
        L: MessageLayer,
    {
        self.layers.push(HandlerLayer::per_subscriber(make));
        self
    }

    /// The failure handling of its subscribers that set none (nor an inner router for them):
    /// wins over the app's error and ack policies, and over this router's own ack policy
    /// (see [`SubscriberConfig::delivery_policy`]).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policies.error_policy = Some(policy);
        self
    }

    /// The ack policy of its subscribers that set none (nor an inner router for them): their
    /// commit timing, and for `AckAfter`, `NackOnError` and `RejectOnError` their failure
    /// handling unless they or an inner router set one; wins over the app's (see
    /// [`SubscriberConfig::delivery_policy`]).
    pub fn ack_policy(mut self, policy: AckPolicy) -> Self {
        self.policies.ack_policy = Some(policy);
        self
    }

    /// The payload codec of its subscribers that set none (nor an inner router for them);
    /// wins over the app's (see [`SubscriberConfig::codec`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Some(std::sync::Arc::new(codec));
        self
    }

    /// Its subscribers with its prefix, layers and policies applied, and its publishers.
    pub(crate) fn into_parts(self) -> (Vec<RouteEntry<B::Publisher>>, Vec<Publisher>) {
        let Router {
            prefix,
            routes,
            publishers,
            layers,
            policies,
            codec,
        } = self;
        let routes = routes
            .into_iter()
            .map(|(mut config, build)| {
                config.prefix_topics(&prefix);
                if !layers.is_empty() {
                    let own = std::mem::take(&mut config.delivery.layers);
                    config.delivery.layers = layers.iter().cloned().chain(own).collect();
                }
                // Kept as a level of its own, not copied into the subscriber's fields: the
                // subscriber's ack policy must still beat this router's error policy.
                config.inherit_router_policies(&policies);
                config.codec.inherit_router(codec.as_ref());
                (config, build)
            })
            .collect();
        (routes, publishers)
    }
}

/// A subscriber built as a value, FastStream's `KafkaRoute`: a configuration and a handler,
/// for apps that build their routes from configuration. Include it in an app or a router like
/// a `#[subscriber]` function.
///
/// ```
/// use faststream_core::{App, Route, Router, SubscriberConfig};
///
/// async fn double(n: i64) -> i64 {
///     n * 2
/// }
///
/// # fn app<B: faststream_core::Broker>(broker: B) -> App<B> {
/// // e.g. read from a configuration file
/// let topics = [("numbers", "doubled"), ("more-numbers", "more-doubled")];
/// let mut router = Router::new("math-");
/// for (input, output) in topics {
///     let config = SubscriberConfig::new(format!("double_{input}"), [input]).publish_to(output);
///     router = router.include(Route::new(config, double));
/// }
/// let app = App::new(broker).include_router(router);
/// assert_eq!(app.subscribers()[1].backend.topics, ["math-more-numbers"]);
/// # app
/// # }
/// ```
pub struct Route<H, T> {
    config: SubscriberConfig,
    handler: H,
    _marker: PhantomData<fn() -> T>,
}

impl<H, T> std::fmt::Debug for Route<H, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<H: Handler<T>, T: Send + 'static> Route<H, T> {
    /// A subscriber running `handler` as `config` says.
    pub fn new(config: SubscriberConfig, handler: H) -> Self {
        Self {
            config,
            handler,
            _marker: PhantomData,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SubscriberConfig {
        &self.config
    }
}

impl<H: Handler<T>, T: Send + 'static> IntoSubscriber for Route<H, T> {
    fn register<R: Registry>(self, registry: &mut R) {
        registry.add_subscriber(self.config, self.handler);
    }
}
