//! Metrics, tracing and the access log of an app: the layers of the `faststream-observe`
//! crate, installed with [`FastStream::metrics`](crate::FastStream::metrics),
//! [`FastStream::otel`](crate::FastStream::otel) and
//! [`FastStream::access_log`](crate::FastStream::access_log), or from the command line
//! (`run --health-port 8080 --metrics`, `run --otel`, `run --access-log info`).
//!
//! - [`metrics`] (feature `metrics`): Prometheus metrics with FastStream's names and labels,
//!   served on `/metrics` by the app's HTTP server ([`crate::http`]), with the consumer lag
//!   of every assigned partition ([`watch_lag`]).
//! - [`otel`] (feature `otel`; OTLP export with `otlp`): OpenTelemetry `process`/`send`
//!   spans per the messaging semantic conventions, W3C trace context in the headers.
//! - [`access_log`]: one `Received` and one `Processed` (or failure) line per message.
//!
//! With none of them installed, the handler and publish pipelines are exactly what they
//! were.
//!
//! ```
//! use faststream::FastStream;
//! # fn app<B: faststream::Broker>(broker: B) -> FastStream<B> {
//! FastStream::new(broker).access_log(faststream::observe::Level::INFO)
//! # }
//! ```

pub use faststream_observe::access_log;
pub use faststream_observe::access_log::Level;
#[cfg(feature = "metrics")]
pub use faststream_observe::metrics;
#[cfg(feature = "otel")]
pub use faststream_observe::otel;

/// What an app installed, kept for the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<metrics::Metrics>,
}

/// Reports `faststream_consumer_lag` in `metrics` from the health of the running app behind
/// `probe`: the lag of every assigned partition that the backend knows, labelled with the
/// subscriber's name and group (from `subscribers`, the app's configurations).
///
/// ```no_run
/// use faststream::observe::{metrics::Metrics, watch_lag};
/// use faststream::FastStream;
/// # async fn run<B: faststream::Broker>(app: FastStream<B>) -> faststream::Result<()> {
/// let metrics = Metrics::new("billing");
/// let app = app.metrics(&metrics);
/// let subscribers = app.subscribers().to_vec();
/// let running = app.start().await?;
/// watch_lag(&metrics, running.health_probe(), &subscribers);
/// # Ok(()) }
/// ```
#[cfg(feature = "metrics")]
pub fn watch_lag(
    metrics: &metrics::Metrics,
    probe: faststream_core::HealthProbe,
    subscribers: &[std::sync::Arc<faststream_core::SubscriberConfig>],
) {
    let groups: std::collections::HashMap<String, String> = subscribers
        .iter()
        .map(|config| (config.name.clone(), config.effective_group_id().to_owned()))
        .collect();
    metrics.watch_lag(move || {
        probe
            .health()
            .subscribers
            .into_iter()
            .flat_map(|subscriber| {
                let group = groups.get(&subscriber.name).cloned().unwrap_or_default();
                let name = subscriber.name;
                subscriber
                    .partitions
                    .into_iter()
                    .filter_map(move |partition| {
                        Some(metrics::PartitionLag {
                            subscriber: name.clone(),
                            group: group.clone(),
                            topic: partition.topic,
                            partition: partition.partition,
                            lag: partition.lag?,
                        })
                    })
            })
            .collect()
    });
}

/// The OTLP exporter asked for with `run --otel` could not be built.
#[cfg(feature = "otlp")]
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ObserveError(#[from] otel::OtlpError);

/// What `run` set up from its options, until the app stops.
#[cfg(feature = "cli")]
#[derive(Debug, Default)]
pub(crate) struct RunObservation {
    #[cfg(feature = "metrics")]
    metrics: Option<(
        metrics::Metrics,
        Vec<std::sync::Arc<faststream_core::SubscriberConfig>>,
    )>,
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

#[cfg(feature = "cli")]
impl RunObservation {
    /// Once the app started, `metrics` follow the consumer lag of `subscribers` (the app's
    /// configurations).
    #[cfg(feature = "metrics")]
    pub(crate) fn follow_lag(
        &mut self,
        metrics: metrics::Metrics,
        subscribers: Vec<std::sync::Arc<faststream_core::SubscriberConfig>>,
    ) {
        self.metrics = Some((metrics, subscribers));
    }

    /// The OTLP tracing `run --otel` asks for, exporting as the standard `OTEL_*` environment
    /// variables say; [`RunObservation::finish`] exports its last spans.
    #[cfg(feature = "otlp")]
    pub(crate) fn otlp(&mut self) -> Result<otel::Otel, ObserveError> {
        use opentelemetry::trace::TracerProvider as _;
        let provider = otel::otlp_from_env()?;
        let otel = otel::Otel::new(provider.tracer("faststream"));
        self.provider = Some(provider);
        Ok(otel)
    }

    /// The app started: the metrics follow its consumer lag.
    pub(crate) fn started<B: faststream_core::Broker>(
        &self,
        running: &faststream_core::RunningApp<B>,
    ) {
        #[cfg(feature = "metrics")]
        if let Some((metrics, subscribers)) = &self.metrics {
            watch_lag(metrics, running.health_probe(), subscribers);
        }
        let _ = running;
    }

    /// The app stopped: the last spans are exported.
    pub(crate) async fn finish(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider {
            // Shutting down exports the last batch: blocking work, off the runtime's threads.
            match tokio::task::spawn_blocking(move || provider.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!("the last spans could not be exported: {err}"),
                Err(err) => tracing::warn!("the span exporter did not shut down: {err}"),
            }
        }
    }
}
