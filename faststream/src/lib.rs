//! # faststream
//!
//! Event-driven services on Apache Kafka: write a handler as an annotated async function, get
//! typed payloads, run it with one command, with at-least-once delivery by default.
//!
//! This is the crate users depend on. It assembles the others (runtime, macros, AsyncAPI
//! tooling, the Kafka backend, the app CLI) and holds no runtime logic of its own; no other
//! crate of the workspace depends on it except the `faststream` command.
//!
//! ```no_run
//! use faststream::{publisher, subscriber, FastStream};
//! use faststream::kafka::KafkaBroker;
//!
//! #[subscriber("in-topic")]
//! #[publisher("out-topic")]
//! async fn handle_msg(user: String, user_id: i64) -> String {
//!     format!("User: {user_id} - {user} registered")
//! }
//!
//! #[tokio::main]
//! async fn main() -> faststream::Result<()> {
//!     let broker = KafkaBroker::new("localhost:9092");
//!     FastStream::new(broker).include(handle_msg).run().await
//! }
//! ```
//!
//! The pieces:
//! - [`subscriber`](macro@subscriber) and [`publisher`](macro@publisher): the attributes (see their docs for parameters).
//! - Extractors: [`Key`], [`Headers`], [`Header`], [`Meta`], [`State`], [`Message`], [`Ack`],
//!   [`seek::Seeker`];
//!   any `serde::Deserialize` type is the payload. Write your own with [`FromMessageParts`]
//!   (dependencies may wait, build on other extractors and clean up after the handler).
//! - [`serde`], [`Serialize`], [`Deserialize`], [`schemars`] and [`JsonSchema`]: the very
//!   versions the framework uses, for your payload types' derives (see below).
//! - Return values: `()`, any `Serialize` type, [`Response`], `Result<T, E>` (`E` any
//!   `std::error::Error`, or [`BoxError`] for any error boxed).
//! - [`FastStream`]: the app; `kafka::KafkaBroker`: the Kafka backend (feature `kafka`, on by
//!   default).
//! - [`asyncapi`]: the app's AsyncAPI document and docs page; [`cli`]: the command line every
//!   app gets with `FastStream::cli` (feature `cli`, on by default); [`logging`]: the
//!   `tracing` set-up `FastStream::run` uses.
//! - `testing` (feature `testing`, off by default): `TestBroker`, the in-memory broker for
//!   tests, with waiting assertions on what was published and what handlers were called, and a
//!   real-Kafka mode for the same test bodies.
//! - [`codec`]: payload formats besides FastStream's JSON/text/bytes, set per app, router,
//!   subscriber or publisher: `MessagePack` (feature `msgpack`), `Cbor` (`cbor`), `Avro`
//!   (`avro`) and `Proto<T>` for prost messages (`protobuf`), all off by default, or your own
//!   [`codec::Codec`].
//! - `registry` (feature `registry`, off by default): a Confluent-compatible schema registry
//!   client and its Avro, JSON Schema and Protobuf codecs (the `faststream-registry`
//!   crate); with feature `protobuf-reflect`, Protobuf schemas derived from the message
//!   type's descriptor (`RegistryCodec::protobuf_of`).
//!
//! The facade is where the pieces meet: it depends on the runtime (`faststream-core`), the
//! macros, the AsyncAPI tooling and the Kafka backend; none of them depends on it.
//!
//! # Payload types
//!
//! A payload type derives `Deserialize` (and `Serialize` to publish it). `JsonSchema` is
//! optional: with it the AsyncAPI document shows the type's schema, without it "any JSON".
//! Derive them through this crate so the versions always match the framework's, without
//! depending on `serde` or `schemars` yourself; the `crate` attributes point the derives'
//! generated code at these re-exports:
//!
//! ```
//! use faststream::{subscriber, Deserialize, JsonSchema, Serialize};
//!
//! /// A user's message (named like the `Message` extractor: parameters are told apart by
//! /// trait, so this is payload).
//! #[derive(Serialize, Deserialize, JsonSchema)]
//! #[serde(crate = "faststream::serde")]
//! #[schemars(crate = "faststream::schemars")]
//! struct Message {
//!     text: String,
//! }
//!
//! #[subscriber("messages")]
//! async fn on_message(message: Message, key: faststream::Key<String>) -> String {
//!     format!("{}: {}", key.0, message.text)
//! }
//!
//! use faststream::schemars::schema::Schema;
//! let schema_fn = on_message::config().docs.payload_schema.expect("a payload schema");
//! let mut generator = faststream::schemars::r#gen::SchemaGenerator::default();
//! let Schema::Object(reference) = schema_fn(&mut generator) else { panic!() };
//! assert_eq!(reference.reference.as_deref(), Some("#/definitions/Message"));
//! let Schema::Object(message) = &generator.definitions()["Message"] else { panic!() };
//! assert!(message.object.as_ref().unwrap().properties.contains_key("text"));
//! ```
//!
//! Without `#[serde(crate = ...)]` and `#[schemars(crate = ...)]` the derives would need
//! `serde` and `schemars` as direct dependencies of your crate.
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod app;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "http")]
pub mod http;
pub mod logging;
pub mod observe;
#[cfg(feature = "testing")]
pub mod testing;

pub use app::FastStream;
pub use faststream_core::{
    app::HookOutput, batch, broker, codec, extract, filter, health, message, middleware, pattern,
    policy, publisher, pull, reply, router, seek, Ack, AckPolicy, AppHealth, Backoff, Batch,
    BatchFailed, BoxError, Broker, CommitTiming, Delivered, DeliveryPolicy, Error, ErrorClass,
    ErrorPolicy, Exhausted, Extension, Extraction, FromMessage, FromMessageParts, Handler, Header,
    HeaderName, Headers, HealthProbe, IntoReply, IntoSubscriber, IsolationLevel, Key, Message,
    Meta, OffsetReset, Publish, PublishError, Publisher, PublisherConfig, Pull, Pulled,
    RebalanceHooks, Record, Registry, Reply, Response, Result, Route, Router, RunningApp,
    StartFrom, StartupOptions, State, SubscriberConfig, SubscriberHealth, SubscriberState,
    TopicPartition, TransactionCommits,
};

/// tower, whose `Layer` and `Service` traits middlewares implement (the version the runtime
/// uses).
pub use tower;

/// AsyncAPI documents of the app ([`FastStream::asyncapi`]), the offline docs page
/// ([`asyncapi::page`]) and the docs server (`asyncapi::serve`, feature `cli`).
pub mod asyncapi {
    pub use faststream_asyncapi::*;
}

/// Turns an async fn into a subscriber: `#[subscriber("topic", group_id = "...")]`.
///
/// Parameters are told apart by trait, never by their type's name: a [`FromMessageParts`]
/// extractor ([`Key`], [`Headers`], [`Meta`], [`State`], [`Message`], [`Ack`], [`Extension`],
/// yours) and parameters marked
/// `#[header("name")]` or `#[extract]` are not payload; `serde::Deserialize` types are. One
/// payload parameter takes the whole payload (or mark it `#[payload]`); several payload
/// parameters are the fields of a JSON object, named like the parameters. Payload types need
/// not implement `JsonSchema`: their AsyncAPI schema is then "any JSON". The function stays
/// callable as `name::call(...)`.
///
/// Topics: string literals, constants or other expressions (`#[subscriber(ORDERS_TOPIC)]`,
/// evaluated when the subscriber is registered), and `env = "VAR", default = "topic"` (the
/// variable's value when the subscriber is registered, else the default).
///
/// ```
/// use faststream::subscriber;
///
/// const ORDERS_TOPIC: &str = "orders";
///
/// #[subscriber(ORDERS_TOPIC, env = "REFUNDS_TOPIC", default = "refunds")]
/// async fn bill(order_id: i64) {}
///
/// assert_eq!(bill::config().backend.topics, ["orders", "refunds"]);
/// ```
///
/// Instead of topics, `pattern = "orders-{region}"` reads every topic matching the template
/// ([`SubscriberConfig::pattern`], FastStream's `pattern=`): literal text and `{name}`
/// parameters, which the handler takes with [`pattern::Path`]. Not together with topics or
/// `env`. A literal template is checked at compile time: parameters are named with letters,
/// digits and `_`, each once, and the literal text can only hold what Kafka topic names hold
/// (letters, digits, `.`, `_`, `-`), so a regular expression such as `"^orders-.*"` is an
/// error. A constant (`pattern = ORDERS_PATTERN`) is read when the subscriber is registered,
/// unchecked, like the builder's template.
///
/// ```
/// use faststream::pattern::Path;
/// use faststream::subscriber;
///
/// #[subscriber(pattern = "orders-{region}")]
/// async fn regional(Path(region): Path<String>, order_id: i64) {}
///
/// let config = regional::config();
/// assert_eq!(config.backend.topics, [r"^orders-(.+)$"]);
/// assert_eq!(config.backend.pattern.unwrap().template(), "orders-{region}");
/// ```
///
/// `batch = true` makes a batch subscriber ([`SubscriberConfig::batch`], FastStream's
/// `batch=True`): a `Vec<T>` parameter gets each partition's records in batches of at most
/// `max_records` (no limit by default), each delivered once full or `batch_timeout_ms` after
/// its first record (200 by default). `max_records` and `batch_timeout_ms` need `batch = true`.
///
/// ```
/// use faststream::{publisher, subscriber};
/// use std::time::Duration;
///
/// #[subscriber("amounts", batch = true, max_records = 100, batch_timeout_ms = 200)]
/// #[publisher("doubled", batch = true)]
/// async fn double_all(amounts: Vec<i64>) -> Vec<i64> {
///     amounts.iter().map(|n| n * 2).collect()
/// }
///
/// let batch = double_all::config().backend.batch.unwrap();
/// assert_eq!((batch.max_records, batch.timeout), (100, Duration::from_millis(200)));
/// ```
///
/// Keys: `group_id`, `ack_policy` (`ack_after`, `nack_on_error`, `ack_first`, `manual`, `reject_on_error`),
/// `auto_offset_reset` (`earliest`, `latest`), `max_concurrency`, `lanes` (key-ordered lanes
/// per partition, [`SubscriberConfig::lanes`]), `title`, `description`,
/// `include_in_schema`, `no_reply` (ignore an incoming `reply_to`), `pattern`, `batch`,
/// `max_records`, `batch_timeout_ms`.
pub use faststream_macros::subscriber;

/// Publishes a subscriber's return value to a topic: `#[publisher("topic")]`; stacks. The
/// topic may be a constant or expression (`#[publisher(INVOICES_TOPIC)]`) or come from the
/// environment (`#[publisher(env = "INVOICES_TOPIC", default = "invoices")]`). Keys: `title`,
/// `description`, `include_in_schema`, and `batch = true` ([`PublisherConfig::batch`]:
/// each element of a returned sequence is its own record).
pub use faststream_macros::publisher;

/// The `serde` the framework decodes and encodes payloads with. Derives through it need
/// `#[serde(crate = "faststream::serde")]`.
pub use serde;
/// `serde`'s `Deserialize` trait and derive macro (see [`serde`]).
pub use serde::Deserialize;
/// `serde`'s `Serialize` trait and derive macro (see [`serde`]).
pub use serde::Serialize;

/// The `schemars` the framework writes AsyncAPI schemas with. Derives through it need
/// `#[schemars(crate = "faststream::schemars")]`.
pub use schemars;
/// `schemars`' `JsonSchema` trait and derive macro (see [`schemars`]); optional on payload
/// types.
pub use schemars::JsonSchema;

/// The Apache Kafka backend (rdkafka).
#[cfg(feature = "kafka")]
pub mod kafka {
    pub use faststream_kafka::*;
}

/// A Confluent-compatible schema registry client and its codecs (`faststream-registry`).
#[cfg(feature = "registry")]
pub mod registry {
    pub use faststream_registry::*;
}

#[doc(hidden)]
pub mod __private {
    //! Paths used by code that `#[subscriber]` generates; not a public API.
    pub use faststream_core::__private::*;
    pub use faststream_core::extract::HeaderName;
}
