//! A subscriber's retry topics at start: which it needs (from its resolved error policy),
//! created through the broker where missing, and handed to the backend to consume.

use crate::broker::{Broker, RetryTopic};
use crate::config::subscriber::SubscriberConfig;
use crate::error::{Error, Result};
use crate::policy::ErrorPolicy;
use std::sync::Arc;
use std::time::Duration;

/// How much longer than the longest delay a retry topic keeps its records (Kafka's default
/// retention): a record is read again long before it could be deleted, even after an outage.
pub(crate) const RETENTION_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The retry topics `config` needs under `policy`: one per source topic and distinct delay.
/// An error for a subscriber that cannot have them (a batch subscriber, a topic pattern,
/// explicit partitions).
pub(crate) fn needed(config: &SubscriberConfig, policy: &ErrorPolicy) -> Result<Vec<RetryTopic>> {
    let Some(longest) = policy.retry_topics.iter().max() else {
        return Ok(Vec::new());
    };
    let unsupported = if config.backend.batch.is_some() {
        Some("a batch subscriber")
    } else if config.backend.pattern.is_some() {
        Some("a topic pattern")
    } else if !config.backend.assignment.is_empty() {
        Some("explicit partitions")
    } else {
        None
    };
    if let Some(what) = unsupported {
        return Err(Error::config_msg(format!(
            "subscriber `{}` cannot start: retry topics are not supported with {what}",
            config.name
        )));
    }
    let group = config.effective_group_id();
    let retention = *longest + RETENTION_MARGIN;
    Ok(config
        .backend
        .topics
        .iter()
        .flat_map(|source| {
            policy
                .retry_topic_names(source, group)
                .into_iter()
                .map(|name| RetryTopic {
                    source: source.clone(),
                    name,
                    retention,
                })
        })
        .collect())
}

/// `config` as its backend must see it under `policy`: its retry topics created where
/// missing and listed in [`SubscriberBackend::retry_topics`]. Unchanged without retry topics.
///
/// [`SubscriberBackend::retry_topics`]: crate::config::subscriber::SubscriberBackend::retry_topics
pub(crate) async fn prepare<B: Broker>(
    broker: &B,
    config: Arc<SubscriberConfig>,
    policy: &ErrorPolicy,
) -> Result<Arc<SubscriberConfig>> {
    let topics = needed(&config, policy)?;
    if topics.is_empty() {
        return Ok(config);
    }
    broker.create_retry_topics(&topics).await?;
    let mut backend = (*config).clone();
    backend.backend.retry_topics = topics.into_iter().map(|topic| topic.name).collect();
    Ok(Arc::new(backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_retry_topic_per_source_and_delay_kept_past_the_longest_delay() {
        let delays = [1, 2].map(Duration::from_secs);
        let policy = ErrorPolicy::retry_topics(delays);
        let config = SubscriberConfig::new("s", ["a", "b"]).group_id("g");
        let topics = needed(&config, &policy).unwrap();
        let names: Vec<(&str, &str)> = topics
            .iter()
            .map(|t| (t.source.as_str(), t.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("a", "a-g-retry-1000"),
                ("a", "a-g-retry-2000"),
                ("b", "b-g-retry-1000"),
                ("b", "b-g-retry-2000"),
            ]
        );
        assert!(topics.iter().all(|t| t.retention > delays[1]));
        assert!(needed(&config, &ErrorPolicy::retry(3)).unwrap().is_empty());
        let batch = config.batch(10, Duration::from_millis(5));
        let err = needed(&batch, &policy).unwrap_err().to_string();
        assert!(
            err.contains("not supported with a batch subscriber"),
            "{err}"
        );
    }
}
