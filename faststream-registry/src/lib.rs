//! A Confluent-compatible schema registry client and its payload codecs for faststream-rs
//! (the facade's `faststream::registry`, feature `registry`).
//!
//! - [`SchemaRegistry`]: the registry's REST API (Confluent Schema Registry, Apicurio's
//!   `/apis/ccompat/v7`, Redpanda...), with HTTP basic auth and TLS (a private CA), the
//!   password never in `Debug` output or logs. Schemas by id are cached for the life of the
//!   process, and each id is fetched once (concurrent asks share the request); a subject's
//!   latest version is cached for a time to live.
//! - [`RegistryCodec`]: Avro (apache-avro, with writer/reader schema resolution), JSON
//!   Schema, and Protobuf (for `codec::Proto<T>` prost messages; with feature
//!   `protobuf-reflect`, the schema and message indexes from the message's descriptor,
//!   `RegistryCodec::protobuf_of`) payloads or keys in the
//!   registry's [`wire`] format, a `faststream_core` `Codec`:
//!   set it on a subscriber, router or app (`.codec(..)`), as a key codec
//!   (`SubscriberConfig::key_codec`), or on a publisher. Subjects follow a
//!   [`SubjectStrategy`]; publishing registers the codec's schema, uses the subject's latest
//!   version, or a fixed id ([`PublishMode`]).
//! - **`schema check`**: [`Codec::check_schema`](faststream_core::codec::Codec::check_schema)
//!   of a codec with a schema of its own asks the registry whether it may be its subject's
//!   next version under the subject's compatibility level
//!   ([`SchemaRegistry::check_compatibility`]), and names the breaking field from the two
//!   schemas when the registry does not.
//! - **Failures**: an unknown schema id (404) or a writer schema that does not resolve to the
//!   reader's is a decode error, handled by the subscriber's error policy (dead-lettered
//!   under `retry(n).then_dead_letter()`, never retried). An outage (a refused connection, a
//!   timeout, a 5xx, 429, or refused credentials) is not bad data: the record waits, its
//!   partition paused, and runs again until the registry answers; it is never dead-lettered.
//!
//! The crate sits beside the Kafka backend, on `faststream-core` only: the core stays free of
//! HTTP clients, and any backend (the in-memory `TestBroker` too) decodes registry records.

mod check;
mod client;
mod codec;
mod protobuf;
#[cfg(feature = "protobuf-reflect")]
mod reflect;
mod subject;
pub mod wire;

pub use client::{
    Compatibility, RegisteredSchema, RegistryBuilder, RegistryError, SchemaReference,
    SchemaRegistry, SchemaType,
};
pub use codec::{PublishMode, RegistryCodec, REGISTRY_AVRO, REGISTRY_JSON, REGISTRY_PROTOBUF};
/// prost-reflect, whose `ReflectMessage` types [`RegistryCodec::protobuf_of`] takes (this
/// version, for its derive and build integration).
#[cfg(feature = "protobuf-reflect")]
pub use prost_reflect;
pub use subject::SubjectStrategy;
