//! # faststream-observe
//!
//! Observability for faststream-rs apps, as middleware layers on the runtime's seams
//! ([`App::layer_for`](faststream_core::App::layer_for) on the handler side,
//! [`App::publish_layer`](faststream_core::App::publish_layer) on the publish side):
//!
//! - [`metrics`] (feature `metrics`): Prometheus metrics with FastStream's names and labels,
//!   rendered as text for a `/metrics` endpoint.
//! - [`otel`] (feature `otel`): OpenTelemetry spans per the messaging semantic conventions,
//!   `process {topic}` per handled message and `send {topic}` per publish, with W3C trace
//!   context carried in the `traceparent`/`tracestate` headers; OTLP export from the
//!   `OTEL_*` environment variables with feature `otlp`.
//! - [`access_log`]: FastStream's access log, one `Received` and one `Processed` (or failure)
//!   line per message at a level of your choice.
//!
//! Nothing here is installed unless asked for: an app without these layers runs exactly the
//! same pipeline as before.
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

pub mod access_log;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod outcome;
