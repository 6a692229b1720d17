//! The in-memory cluster behind [`TestBroker`](super::TestBroker): topics of partitioned,
//! append-only logs, and consumer groups whose members (subscriptions) share a topic's
//! partitions and commit offsets.

use super::partitioner::partition_for_key;
use bytes::Bytes;
use faststream_core::broker::{
    outgoing_headers, partition_queue, BufferBudget, Held, OffsetStore, PartitionWorkers,
    QueueSender, SubscribeOptions, Subscription, WorkerSet,
};
use faststream_core::message::CORRELATION_ID_LEN;
use faststream_core::pattern::TopicPattern;
use faststream_core::{
    Delivered, Error, Headers, Message, OffsetReset, PublishError, Record, Result,
    SubscriberConfig, TopicPartition,
};
use faststream_core::{RebalanceHooks, StartFrom};
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where the in-memory broker's requests ask for their replies.
pub(crate) const REPLY_TOPIC: &str = "faststream-test-replies";

/// How often a request looks for its reply.
const REPLY_POLL: Duration = Duration::from_millis(1);

/// How many messages a partition feeder queues ahead of its worker.
const FEED_AHEAD: usize = 64;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One partition's log.
#[derive(Default)]
pub(crate) struct PartitionLog {
    records: Mutex<Vec<Message>>,
    appended: Notify,
}

impl PartitionLog {
    fn len(&self) -> i64 {
        lock(&self.records).len() as i64
    }
}

struct Topic {
    partitions: Vec<Arc<PartitionLog>>,
    /// The next partition of a keyless record (round robin).
    next_keyless: usize,
}

impl Topic {
    fn new(partitions: i32) -> Self {
        Self {
            partitions: (0..partitions.max(1))
                .map(|_| Arc::new(PartitionLog::default()))
                .collect(),
            next_keyless: 0,
        }
    }
}

/// Topics and consumer groups, shared by every clone of a test broker.
pub(crate) struct Cluster {
    topics: Mutex<HashMap<Arc<str>, Topic>>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    default_partitions: i32,
    default_reset: OffsetReset,
    next_member: std::sync::atomic::AtomicU64,
}

impl Cluster {
    pub(crate) fn new(default_partitions: i32, default_reset: OffsetReset) -> Self {
        Self {
            topics: Mutex::default(),
            groups: Mutex::default(),
            default_partitions: default_partitions.max(1),
            default_reset,
            next_member: Default::default(),
        }
    }

    /// Partitions of a topic created on first use.
    pub(crate) fn default_partitions(&self) -> i32 {
        self.default_partitions
    }

    /// Creates `name` with `partitions` partitions; fine when it exists with that many.
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        if partitions < 1 {
            return Err(Error::config_msg(format!(
                "topic `{name}` needs at least one partition, not {partitions}"
            )));
        }
        let mut topics = lock(&self.topics);
        match topics.get(name) {
            Some(topic) if topic.partitions.len() as i32 != partitions => {
                Err(Error::config_msg(format!(
                    "topic `{name}` already exists with {} partitions, not {partitions}",
                    topic.partitions.len()
                )))
            }
            Some(_) => Ok(()),
            None => {
                topics.insert(name.into(), Topic::new(partitions));
                Ok(())
            }
        }
    }

    /// The partitions of `name`, creating it with the default count when it does not exist.
    fn partitions(&self, name: &str) -> Vec<Arc<PartitionLog>> {
        let mut topics = lock(&self.topics);
        topics
            .entry(name.into())
            .or_insert_with(|| Topic::new(self.default_partitions))
            .partitions
            .clone()
    }

    /// Everything written to `topic` so far, partition by partition, each in offset order.
    pub(crate) fn records(&self, topic: &str) -> Vec<Message> {
        let logs = match lock(&self.topics).get(topic) {
            Some(topic) => topic.partitions.clone(),
            None => return Vec::new(),
        };
        let mut out = Vec::new();
        for log in logs {
            out.extend(lock(&log.records).iter().cloned());
        }
        out
    }

    /// Publishes `record` as a request, as the Kafka broker does (a new correlation id,
    /// `reply_to` naming [`REPLY_TOPIC`]), and waits up to `timeout` for the record there
    /// with the same correlation id: the runtime's reply path answers as on Kafka.
    pub(crate) async fn request(&self, mut record: Record, timeout: Duration) -> Result<Message> {
        let correlation_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let topic = record.topic.to_string();
        record.correlation_id = Some(correlation_id.clone().into());
        self.append(record.reply_to(REPLY_TOPIC))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let reply = self.records(REPLY_TOPIC).into_iter().find(|reply| {
                reply
                    .headers
                    .get_str(faststream_core::message::CORRELATION_ID)
                    == Some(correlation_id.as_str())
            });
            if let Some(reply) = reply {
                return Ok(reply);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::RequestTimeout {
                    topic,
                    reply_topic: REPLY_TOPIC.to_owned(),
                    correlation_id,
                    timeout,
                });
            }
            tokio::time::sleep(REPLY_POLL).await;
        }
    }

    /// The next offset `group` will read from `topic`'s `partition`, when it committed one.
    pub(crate) fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let group = lock(&self.groups).get(group).cloned()?;
        let committed = lock(&group.committed);
        committed
            .get(&TopicPartition::new(topic, partition))
            .copied()
    }

    /// Appends `record` the way the Kafka publisher writes it: `content-type` first, then
    /// `correlation_id` (a new uuid4 when unset), then the record's headers.
    pub(crate) fn append(&self, record: Record) -> Result<Delivered, PublishError> {
        let refuse = |message: String| PublishError {
            topic: record.topic.to_string(),
            message,
        };
        let (log, partition) = {
            let mut topics = lock(&self.topics);
            let topic = topics
                .entry(Arc::clone(&record.topic))
                .or_insert_with(|| Topic::new(self.default_partitions));
            let count = topic.partitions.len() as i32;
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if (0..count).contains(&p) => p,
                (Some(p), _) => {
                    return Err(refuse(format!(
                        "unknown partition {p} (the topic has {count})"
                    )))
                }
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => {
                    let p = topic.next_keyless % count as usize;
                    topic.next_keyless = topic.next_keyless.wrapping_add(1);
                    p as i32
                }
            };
            (Arc::clone(&topic.partitions[partition as usize]), partition)
        };
        let mut fresh_id = [0_u8; CORRELATION_ID_LEN];
        let written = outgoing_headers(&record, &mut fresh_id);
        let mut headers = Headers::with_capacity(written.len());
        for (name, value) in written {
            headers.append(name, Bytes::copy_from_slice(value));
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let offset = {
            let mut records = lock(&log.records);
            let offset = records.len() as i64;
            records.push(Message {
                topic: Arc::clone(&record.topic),
                partition,
                offset,
                timestamp: Some(timestamp),
                key: record.key,
                payload: record.payload.unwrap_or_default(),
                headers,
                batch: None,
                extensions: Default::default(),
            });
            offset
        };
        log.appended.notify_waiters();
        Ok(Delivered {
            topic: record.topic,
            partition,
            offset,
        })
    }

    fn group(&self, name: &str) -> Arc<Group> {
        Arc::clone(
            lock(&self.groups)
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Group::default())),
        )
    }

    /// Joins `config`'s group as a new member and takes its share of the partitions.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        config: Arc<SubscriberConfig>,
        workers: Arc<dyn PartitionWorkers>,
        options: SubscribeOptions,
    ) -> Result<Box<dyn Subscription>> {
        if config.backend.pattern.is_none() {
            for topic in &config.backend.topics {
                self.partitions(topic);
            }
        }
        let group = self.group(config.effective_group_id());
        let member = Arc::new(Member {
            id: self
                .next_member
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            topics: config.backend.topics.clone(),
            pattern: config.backend.pattern.clone(),
            workers,
            stop: options.stop.clone(),
            reset: config
                .backend
                .auto_offset_reset
                .unwrap_or(self.default_reset),
            hooks: config.backend.rebalance.clone(),
            owned: Mutex::default(),
        });
        if config.backend.assignment.is_empty() {
            let _rebalancing = group.rebalancing.lock().await;
            lock(&group.members).push(Arc::clone(&member));
            self.rebalance(&group, options.rebalance_timeout).await;
        } else {
            // Explicit partitions: no group membership, no rebalancing.
            for tp in &config.backend.assignment {
                if tp.partition < 0 || tp.partition as usize >= self.partitions(&tp.topic).len() {
                    return Err(faststream_core::Error::broker_msg(
                        format!("cannot assign {tp} to `{}`: no such partition", config.name),
                        faststream_core::ErrorClass::Retriable,
                    ));
                }
            }
            member.hooks.assigned(&config.backend.assignment);
            for tp in &config.backend.assignment {
                let from = self.start_position(tp, config.backend.start_from);
                let feed = self.start_feed_at(&group, &member, tp.clone(), from);
                lock(&member.owned).insert(tp.clone(), feed);
            }
        }
        Ok(Box::new(MemorySubscription {
            cluster: Arc::clone(self),
            group,
            member,
            options,
        }))
    }

    /// Spreads every topic's partitions over the group's active members (round robin, members
    /// in join order): revokes what moves (its workers finish and store their offsets, bounded
    /// by `timeout`), then starts the new owners at the committed offsets. The caller holds
    /// the group's rebalance lock.
    async fn rebalance(&self, group: &Arc<Group>, timeout: Duration) {
        let members: Vec<Arc<Member>> = lock(&group.members).clone();
        let active: Vec<&Arc<Member>> = members.iter().filter(|m| !m.stop.is_cancelled()).collect();
        let existing: Vec<String> = lock(&self.topics).keys().map(|t| t.to_string()).collect();
        let reads = |member: &Member, topic: &str| match &member.pattern {
            Some(pattern) => pattern.matches(topic),
            None => member.topics.iter().any(|t| t == topic),
        };
        let topics: BTreeSet<String> = active
            .iter()
            .flat_map(|m| match &m.pattern {
                Some(pattern) => existing
                    .iter()
                    .filter(|t| pattern.matches(t))
                    .cloned()
                    .collect::<Vec<_>>(),
                None => m.topics.clone(),
            })
            .collect();
        let mut desired: BTreeMap<u64, BTreeSet<TopicPartition>> = BTreeMap::new();
        for topic in &topics {
            let topic = topic.as_str();
            let consumers: Vec<u64> = active
                .iter()
                .filter(|m| reads(m, topic))
                .map(|m| m.id)
                .collect();
            let count = self.partitions(topic).len();
            for partition in 0..count {
                desired
                    .entry(consumers[partition % consumers.len()])
                    .or_default()
                    .insert(TopicPartition::new(topic, partition as i32));
            }
        }
        // Revoke first, so no partition ever has two owners.
        let mut revoked = Vec::new();
        let mut moved = Vec::new();
        for member in &members {
            let keep = desired.get(&member.id);
            let mut owned = lock(&member.owned);
            let moving: Vec<TopicPartition> = owned
                .keys()
                .filter(|tp| keep.is_none_or(|k| !k.contains(*tp)))
                .cloned()
                .collect();
            for tp in &moving {
                if let Some(feed) = owned.remove(tp) {
                    revoked.push(feed);
                }
            }
            moved.push((member, moving));
        }
        stop_feeds(revoked, timeout).await;
        // As on Kafka: a revoke callback runs once that work is committed.
        for (member, moving) in moved {
            member.hooks.revoked(&moving);
        }
        for member in active {
            let Some(wanted) = desired.get(&member.id) else {
                continue;
            };
            let new: Vec<TopicPartition> = {
                let owned = lock(&member.owned);
                wanted
                    .iter()
                    .filter(|tp| !owned.contains_key(*tp))
                    .cloned()
                    .collect()
            };
            member.hooks.assigned(&new);
            for tp in new {
                let feed = self.start_feed(group, member, tp.clone());
                lock(&member.owned).insert(tp, feed);
            }
        }
    }

    /// Starts feeding `tp` to a new partition worker of `member`, from the group's committed
    /// offset (or the member's reset policy).
    fn start_feed(&self, group: &Arc<Group>, member: &Member, tp: TopicPartition) -> Feed {
        self.start_feed_at(group, member, tp, None)
    }

    /// Where an explicitly assigned partition starts; `None`: the committed offset.
    fn start_position(&self, tp: &TopicPartition, start: StartFrom) -> Option<i64> {
        let log = Arc::clone(&self.partitions(&tp.topic)[tp.partition as usize]);
        let records = lock(&log.records);
        start
            .resolve(|millis| {
                let first = records
                    .iter()
                    .position(|m| m.timestamp.is_some_and(|t| t >= millis))?;
                Some(first as i64)
            })
            .within(0, records.len() as i64)
    }

    /// [`Cluster::start_feed`] from `from` when given.
    fn start_feed_at(
        &self,
        group: &Arc<Group>,
        member: &Member,
        tp: TopicPartition,
        from: Option<i64>,
    ) -> Feed {
        let log = Arc::clone(&self.partitions(&tp.topic)[tp.partition as usize]);
        let committed = lock(&group.committed).get(&tp).copied();
        let start = from.or(committed).unwrap_or_else(|| match member.reset {
            OffsetReset::Earliest => 0,
            OffsetReset::Latest => log.len(),
        });
        let token = member.stop.child_token();
        let (tx, rx) = partition_queue(FEED_AHEAD);
        let offsets: Arc<dyn OffsetStore> = Arc::new(GroupOffsets(Arc::clone(group)));
        let worker = Arc::clone(&member.workers).spawn(tp.clone(), rx, offsets, token.clone());
        let budget = Arc::clone(member.workers.buffer());
        let feeder = tokio::spawn(feed(log, start, tx, token.clone(), budget));
        Feed {
            token,
            worker,
            feeder,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Sends the log's records from `position` on to the worker, waiting for new ones, until
/// `stop` fires or the worker is gone.
async fn feed(
    log: Arc<PartitionLog>,
    mut position: i64,
    tx: QueueSender,
    stop: CancellationToken,
    budget: Arc<BufferBudget>,
) {
    loop {
        let appended = log.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let batch: Vec<Message> = {
            let records = lock(&log.records);
            let from = (position.max(0) as usize).min(records.len());
            records[from..].iter().take(FEED_AHEAD).cloned().collect()
        };
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = appended => continue,
            }
        }
        for message in batch {
            // Held like the Kafka consumer holds it: the worker releases it once finished, and
            // a record not handed over (a stop) is released.
            let held = Held::new(&budget, message);
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = held.send(&tx) => if !sent { return },
            }
            position += 1;
        }
    }
}

/// A group's members and committed offsets.
#[derive(Default)]
struct Group {
    members: Mutex<Vec<Arc<Member>>>,
    /// The next offset to read, per partition (Kafka's committed offset).
    committed: Mutex<HashMap<TopicPartition, i64>>,
    /// The metadata committed with it, where a commit had some.
    metadata: Mutex<HashMap<TopicPartition, String>>,
    /// Serializes joins, leaves and rebalances.
    rebalancing: tokio::sync::Mutex<()>,
}

/// Stores of a partition worker commit at once: `offset` done means `offset + 1` is next.
struct GroupOffsets(Arc<Group>);

impl OffsetStore for GroupOffsets {
    fn store(&self, partition: &TopicPartition, offset: i64) {
        lock(&self.0.committed).insert(partition.clone(), offset + 1);
        // As on Kafka: a commit without metadata replaces the metadata with none.
        lock(&self.0.metadata).remove(partition);
    }

    fn store_with_metadata(&self, partition: &TopicPartition, offset: i64, metadata: &str) {
        lock(&self.0.committed).insert(partition.clone(), offset + 1);
        lock(&self.0.metadata).insert(partition.clone(), metadata.to_owned());
    }

    fn committed_metadata(&self, partition: &TopicPartition) -> Option<String> {
        lock(&self.0.metadata).get(partition).cloned()
    }
}

/// One subscription in a group.
struct Member {
    id: u64,
    topics: Vec<String>,
    /// A pattern subscriber reads the topics matching it when the group rebalances.
    pattern: Option<Arc<TopicPattern>>,
    workers: Arc<dyn PartitionWorkers>,
    stop: CancellationToken,
    reset: OffsetReset,
    hooks: RebalanceHooks,
    owned: Mutex<HashMap<TopicPartition, Feed>>,
}

/// An owned partition: its feeder task and the runtime's worker.
struct Feed {
    token: CancellationToken,
    worker: JoinHandle<()>,
    feeder: JoinHandle<()>,
}

/// Stops feeds: their workers finish the message in hand and store offsets, or are aborted
/// after `timeout` (leaving that work uncommitted, as on Kafka).
async fn stop_feeds(feeds: Vec<Feed>, timeout: Duration) {
    let mut workers = WorkerSet::new();
    for feed in feeds {
        feed.feeder.abort();
        workers.push((), feed.token, feed.worker);
    }
    workers.stop(timeout).await;
}

struct MemorySubscription {
    cluster: Arc<Cluster>,
    group: Arc<Group>,
    member: Arc<Member>,
    options: SubscribeOptions,
}

impl Subscription for MemorySubscription {
    fn finished(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.options.stop.cancelled().await;
            let _rebalancing = self.group.rebalancing.lock().await;
            let (partitions, feeds): (Vec<TopicPartition>, Vec<Feed>) =
                lock(&self.member.owned).drain().unzip();
            stop_feeds(feeds, self.options.graceful_timeout).await;
            self.member.hooks.revoked(&partitions);
            lock(&self.group.members).retain(|m| m.id != self.member.id);
            // The members left (of other apps on this broker) take over.
            self.cluster
                .rebalance(&self.group, self.options.rebalance_timeout)
                .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_written_like_the_kafka_publisher_writes_them() {
        let cluster = Cluster::new(3, OffsetReset::Earliest);
        let mut record = Record::encode("t", &serde_json::json!({"a": 1})).unwrap();
        record.headers.append("x-extra", "1");
        let first = cluster.append(record.clone()).unwrap();
        let second = cluster
            .append(record.correlation_id("cid").timestamp(7))
            .unwrap();
        assert_eq!(
            (first.offset, second.offset),
            (0, 0),
            "round robin over partitions"
        );
        assert_ne!(first.partition, second.partition);
        let records = cluster.records("t");
        let names: Vec<&str> = records[0].headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type", "correlation_id", "x-extra"]);
        assert_eq!(
            records[0].correlation_id().map(str::len),
            Some(36),
            "a new uuid"
        );
        let with_id = records.iter().find(|m| m.timestamp == Some(7)).unwrap();
        assert_eq!(with_id.correlation_id(), Some("cid"));
        assert!(
            records[0].timestamp.unwrap() > 1_600_000_000_000,
            "the producer's clock"
        );
    }

    #[test]
    fn topics_keep_their_partition_count() {
        let cluster = Cluster::new(1, OffsetReset::Earliest);
        cluster.create_topic("t", 4).unwrap();
        cluster.create_topic("t", 4).unwrap();
        let err = cluster.create_topic("t", 2).unwrap_err().to_string();
        assert!(err.contains("already exists with 4 partitions"), "{err}");
        assert!(cluster.create_topic("u", 0).is_err());
        assert_eq!(cluster.partitions("auto").len(), 1, "created on first use");
    }
}
