//! The test broker's real mode: Kafka for publishing and consuming, plain rdkafka clients to
//! create topics, read them back and query committed offsets.

use crate::kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use crate::kafka::rdkafka::client::DefaultClientContext;
use crate::kafka::rdkafka::config::ClientConfig;
use crate::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use crate::kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use crate::kafka::rdkafka::message::{Headers as _, Message as _};
use crate::kafka::rdkafka::{Offset, TopicPartitionList};
use crate::kafka::{classify, KafkaBroker};
use bytes::Bytes;
use faststream_core::{Error, ErrorClass, Headers, Message, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) struct Real {
    pub(crate) kafka: KafkaBroker,
    servers: String,
    readers: Arc<Mutex<HashMap<String, Arc<Mutex<Reader>>>>>,
}

/// Reads one topic from its beginning, keeping what it read.
struct Reader {
    consumer: BaseConsumer,
    records: Vec<Message>,
}

impl Reader {
    /// Each partition's low and high watermarks now: what "every record now" must reach.
    fn ends(&self, topic: &str) -> Vec<(i32, i64, i64)> {
        let Ok(assignment) = self.consumer.assignment() else {
            return Vec::new();
        };
        assignment
            .elements_for_topic(topic)
            .iter()
            .filter_map(|element| {
                let partition = element.partition();
                self.consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(5))
                    .ok()
                    .map(|(low, high)| (partition, low, high))
            })
            .collect()
    }

    /// Whether the reader's position reached every partition's high watermark (the position
    /// also passes transaction markers, which are not records).
    fn caught_up(&self, topic: &str, ends: &[(i32, i64, i64)]) -> bool {
        let Ok(position) = self.consumer.position() else {
            return false;
        };
        ends.iter().all(|&(partition, low, high)| {
            high <= low
                || matches!(
                    position.find_partition(topic, partition).map(|p| p.offset()),
                    Some(Offset::Offset(next)) if next >= high
                )
        })
    }
}

fn client(servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    config
}

fn blocking_error(err: tokio::task::JoinError) -> Error {
    Error::broker("test broker task failed", ErrorClass::Fatal, err)
}

/// A broker error keeping `err` as its source, classified by the Kafka backend.
fn kafka_error(context: impl Into<String>, err: KafkaError) -> Error {
    Error::broker(context, classify(&err), err)
}

impl Real {
    pub(crate) fn new(servers: String) -> Self {
        Self {
            kafka: KafkaBroker::new(servers.clone())
                .client_id("faststream-test")
                .producer_set("partitioner", "murmur2_random"),
            servers,
            readers: Arc::default(),
        }
    }

    fn client(&self) -> ClientConfig {
        client(&self.servers)
    }

    pub(crate) async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        self.create_topic_with(topic, partitions, &[]).await
    }

    pub(crate) async fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client()
            .create()
            .map_err(|err| kafka_error("cannot create an admin client", err))?;
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (name, value) in configs {
            new = new.set(name, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = admin
            .create_topics([&new], &options)
            .await
            .map_err(|err| kafka_error(format!("cannot create topic `{topic}`"), err))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(kafka_error(
                        format!("cannot create topic `{topic}`"),
                        KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        // Wait until every partition has a leader.
        let probe: BaseConsumer = self
            .client()
            .create()
            .map_err(|err| kafka_error("cannot create a consumer", err))?;
        let name = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let ready = probe
                    .fetch_metadata(Some(&name), Duration::from_secs(2))
                    .ok()
                    .and_then(|m| {
                        m.topics().first().map(|t| {
                            t.error().is_none()
                                && t.partitions().len() as i32 == partitions
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    })
                    .unwrap_or(false);
                if ready {
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    return Err(Error::broker_msg(
                        format!("topic `{name}` has no leaders after 20 s"),
                        ErrorClass::Retriable,
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .map_err(blocking_error)?
    }

    /// The reader of `topic`, created on first use; `None` while the topic does not exist.
    fn reader(
        servers: &str,
        readers: &Mutex<HashMap<String, Arc<Mutex<Reader>>>>,
        topic: &str,
    ) -> Result<Option<Arc<Mutex<Reader>>>> {
        if let Some(reader) = readers.lock().unwrap_or_else(|p| p.into_inner()).get(topic) {
            return Ok(Some(Arc::clone(reader)));
        }
        let consumer: BaseConsumer = client(servers)
            .set(
                "group.id",
                format!("faststream-test-reader-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|err| kafka_error("cannot create a consumer", err))?;
        let partitions = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .first()
                    .filter(|t| t.error().is_none())
                    .map(|t| t.partitions().len() as i32)
            })
            .unwrap_or(0);
        if partitions == 0 {
            // Not there yet: try again on the next look.
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|err| {
                    kafka_error(format!("cannot assign a partition of `{topic}`"), err)
                })?;
        }
        consumer
            .assign(&assignment)
            .map_err(|err| kafka_error(format!("cannot read `{topic}`"), err))?;
        let reader = Arc::new(Mutex::new(Reader {
            consumer,
            records: Vec::new(),
        }));
        readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned(), Arc::clone(&reader));
        Ok(Some(reader))
    }

    /// What was read of `topic` so far, after taking what arrived meanwhile.
    pub(crate) async fn records(&self, topic: &str) -> Vec<Message> {
        let topic = topic.to_owned();
        let (servers, readers) = (self.servers.clone(), Arc::clone(&self.readers));
        let read = tokio::task::spawn_blocking(move || {
            let reader = match Self::reader(&servers, &readers, &topic) {
                Ok(Some(reader)) => reader,
                _ => return Vec::new(),
            };
            let mut reader = reader.lock().unwrap_or_else(|p| p.into_inner());
            // Read up to the high watermarks taken now, so that a reader's first look (before
            // its first fetch answered) does not end at two empty polls; a deadline for what
            // cannot be read yet (an open transaction's records, under read_committed).
            let ends = reader.ends(&topic);
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            let mut idle = 0;
            while idle < 2
                || (!reader.caught_up(&topic, &ends) && std::time::Instant::now() < deadline)
            {
                match reader.consumer.poll(Duration::from_millis(20)) {
                    Some(Ok(m)) => {
                        idle = 0;
                        let mut headers = Headers::new();
                        if let Some(h) = m.headers() {
                            for header in h.iter() {
                                headers.append(
                                    header.key,
                                    Bytes::copy_from_slice(header.value.unwrap_or_default()),
                                );
                            }
                        }
                        let message = Message {
                            topic: Arc::from(m.topic()),
                            partition: m.partition(),
                            offset: m.offset(),
                            timestamp: m.timestamp().to_millis(),
                            key: m.key().map(Bytes::copy_from_slice),
                            payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                            headers,
                            extensions: Default::default(),
                        };
                        reader.records.push(message);
                    }
                    _ => idle += 1,
                }
            }
            let mut records = reader.records.clone();
            records.sort_by_key(|m| (m.partition, m.offset));
            records
        })
        .await;
        read.unwrap_or_default()
    }

    pub(crate) async fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let consumer: BaseConsumer = self.client().set("group.id", group).create().ok()?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, partition);
            let committed = consumer
                .committed_offsets(list, Duration::from_secs(5))
                .ok()?;
            match committed.find_partition(&topic, partition)?.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            }
        })
        .await
        .ok()
        .flatten()
    }
}
