//! Topic administration the app needs: the request path's reply topic, and the retry topics
//! of subscribers with `ErrorPolicy::retry_topics`.

use crate::config::BrokerSettings;
use crate::context::KafkaContext;
use crate::error;
use faststream_core::broker::RetryTopic;
use faststream_core::Result;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

/// How long creating topics, and waiting for their partitions' leaders, may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// An admin client of `settings`, its OAuth token primed.
async fn admin_client(settings: &BrokerSettings) -> Result<AdminClient<KafkaContext>> {
    let context = settings.context();
    let admin: AdminClient<KafkaContext> = settings
        .admin_config()
        .create_with_context(context.clone())
        .map_err(|err| error::config("cannot create an admin client", err))?;
    // Nothing polls an admin client's main queue, where librdkafka asks for OAuth tokens.
    tokio::task::spawn_blocking(move || {
        context.prime_oauth_token(admin.inner());
        admin
    })
    .await
    .map_err(|err| error::task_failed("admin client set-up failed", err))
}

/// Creates `topics` where missing (`what` names them in errors).
async fn create_topics(
    admin: &AdminClient<KafkaContext>,
    topics: &[NewTopic<'_>],
    what: &str,
) -> Result<()> {
    let results = admin
        .create_topics(
            topics,
            &AdminOptions::new().operation_timeout(Some(SETUP_TIMEOUT)),
        )
        .await
        .map_err(|err| error::broker(format!("cannot create the {what}"), err))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(error::broker(
                    format!("cannot create the {what} `{topic}`"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(())
}

/// Creates the reply topic `topic` if it is missing: one partition, the cluster's default
/// replication.
pub(crate) async fn create_reply_topic(settings: &BrokerSettings, topic: &str) -> Result<()> {
    let admin = admin_client(settings).await?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
    create_topics(&admin, &[new], "reply topic").await
}

/// Creates the retry topics where missing, each with its source topic's partition count and
/// its retention, and waits until every partition of them has a leader (so the subscriber
/// that reads them, and the first retry record, find them).
pub(crate) async fn create_retry_topics(
    settings: &BrokerSettings,
    topics: &[RetryTopic],
) -> Result<()> {
    let admin = admin_client(settings).await?;
    let sources: Vec<String> = topics.iter().map(|t| t.source.clone()).collect();
    let (admin, counts) = tokio::task::spawn_blocking(move || {
        let counts: Result<Vec<i32>> = sources
            .iter()
            .map(|source| partition_count(&admin, source))
            .collect();
        (admin, counts)
    })
    .await
    .map_err(|err| error::task_failed("retry topic set-up failed", err))?;
    let counts = counts?;
    let retention: Vec<String> = topics
        .iter()
        .map(|t| t.retention.as_millis().to_string())
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&counts)
        .zip(&retention)
        .map(|((topic, count), retention)| {
            NewTopic::new(&topic.name, *count, TopicReplication::Fixed(-1))
                .set("retention.ms", retention)
        })
        .collect();
    create_topics(&admin, &new, "retry topic").await?;
    let names: Vec<(String, i32)> = topics
        .iter()
        .zip(counts)
        .map(|(t, count)| (t.name.clone(), count))
        .collect();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        for (name, count) in &names {
            while !led(&admin, name, *count) {
                if Instant::now() >= deadline {
                    return Err(faststream_core::Error::broker_msg(
                        format!("the retry topic `{name}` has no leader after {SETUP_TIMEOUT:?}"),
                        faststream_core::ErrorClass::Retriable,
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    })
    .await
    .map_err(|err| error::task_failed("retry topic set-up failed", err))?
}

/// The number of partitions of `topic`; an error when it does not exist (its retry topics
/// need its partition count).
fn partition_count(admin: &AdminClient<KafkaContext>, topic: &str) -> Result<i32> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), SETUP_TIMEOUT)
        .map_err(|err| error::broker(format!("cannot read the metadata of `{topic}`"), err))?;
    match metadata.topics().first() {
        Some(found) if found.error().is_none() && !found.partitions().is_empty() => {
            Ok(found.partitions().len() as i32)
        }
        _ => Err(faststream_core::Error::config_msg(format!(
            "the retry topics of `{topic}` need its partition count, but the topic does not exist"
        ))),
    }
}

/// Whether `topic` has its `count` partitions, each with a leader.
fn led(admin: &AdminClient<KafkaContext>, topic: &str, count: i32) -> bool {
    let Ok(metadata) = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
    else {
        return false;
    };
    metadata.topics().first().is_some_and(|found| {
        found.error().is_none()
            && found.partitions().len() as i32 == count
            && found.partitions().iter().all(|p| p.leader() >= 0)
    })
}
