//! The in-memory cluster behind [`TestBroker`](super::TestBroker): topics of partitioned,
//! append-only logs, and consumer groups whose members (subscriptions) share a topic's
//! partitions and commit offsets.

use super::partitioner::partition_for_key;
use bytes::Bytes;
use faststream_core::broker::retry::not_due_for;
use faststream_core::broker::{
    outgoing_headers, partition_queue, BufferBudget, Held, OffsetStore, PartitionWorkers,
    QueueSender, RetryTopic, SubscribeOptions, Subscription, WorkerSet,
};
use faststream_core::broker::{
    MemberTransactions, OpenTransaction, Transaction, TransactionOffset,
};
use faststream_core::message::CORRELATION_ID_LEN;
use faststream_core::pattern::TopicPattern;
use faststream_core::seek::{Seek, SeekPartitions, Sought};
use faststream_core::{
    Delivered, Error, Headers, Message, OffsetReset, PublishError, Record, Result,
    SubscriberConfig, TopicPartition,
};
use faststream_core::{IsolationLevel, RebalanceHooks, StartFrom};
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
    records: Mutex<Vec<Stored>>,
    /// Woken by an append, and by the end of a transaction with records here.
    appended: Notify,
}

impl PartitionLog {
    fn len(&self) -> i64 {
        lock(&self.records).len() as i64
    }
}

/// A log entry: a record, with the transaction it belongs to, or a transaction's end marker
/// (Kafka's control record: it takes an offset and is never delivered).
struct Stored {
    message: Message,
    written: Written,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    Plain,
    InTransaction(u64),
    Marker,
}

/// Where a transaction stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TxnState {
    Open,
    Committed,
    Aborted,
}

/// Every transaction's state, looked up by the readers of the logs.
#[derive(Default)]
struct Transactions {
    states: Mutex<HashMap<u64, TxnState>>,
    next: std::sync::atomic::AtomicU64,
}

/// What a reader at `isolation` does with one entry.
enum Visibility {
    Deliver,
    Skip,
    /// An open transaction's record under `read_committed`: the last stable offset; nothing
    /// from here on is delivered until it ends.
    Wait,
}

impl Transactions {
    fn visibility(&self, written: Written, isolation: IsolationLevel) -> Visibility {
        let id = match written {
            Written::Plain => return Visibility::Deliver,
            Written::Marker => return Visibility::Skip,
            Written::InTransaction(id) => id,
        };
        if isolation == IsolationLevel::ReadUncommitted {
            return Visibility::Deliver;
        }
        match lock(&self.states).get(&id) {
            Some(TxnState::Committed) => Visibility::Deliver,
            Some(TxnState::Aborted) => Visibility::Skip,
            Some(TxnState::Open) | None => Visibility::Wait,
        }
    }

    /// The entries of `log` from `from` a reader at `isolation` can read now (at most
    /// `limit` of them, stopping at the last stable offset), each with its offset: `None`
    /// for one it skips.
    fn readable(
        &self,
        log: &PartitionLog,
        from: i64,
        isolation: IsolationLevel,
        limit: usize,
    ) -> Vec<(i64, Option<Message>)> {
        let records = lock(&log.records);
        let from = (from.max(0) as usize).min(records.len());
        let mut out = Vec::new();
        for (index, stored) in records[from..].iter().enumerate().take(limit) {
            let offset = (from + index) as i64;
            match self.visibility(stored.written, isolation) {
                Visibility::Deliver => out.push((offset, Some(stored.message.clone()))),
                Visibility::Skip => out.push((offset, None)),
                Visibility::Wait => break,
            }
        }
        out
    }
}

struct Topic {
    partitions: Vec<Arc<PartitionLog>>,
    /// The next partition of a keyless record (round robin).
    next_keyless: usize,
    /// Its `max.message.bytes`: a larger record is refused (see [`record_batch_size`]).
    max_message_bytes: Option<usize>,
}

impl Topic {
    fn new(partitions: i32) -> Self {
        Self {
            partitions: (0..partitions.max(1))
                .map(|_| Arc::new(PartitionLog::default()))
                .collect(),
            next_keyless: 0,
            max_message_bytes: None,
        }
    }
}

/// The topic configs the in-memory broker models, from Kafka's names and values; any other
/// name is an error, so that a test does not pass on a setting memory would ignore.
#[derive(Debug, Default, Clone, Copy)]
struct TopicConfigs {
    max_message_bytes: Option<usize>,
}

impl TopicConfigs {
    fn parse(topic: &str, configs: &[(&str, &str)]) -> Result<Self> {
        let mut parsed = Self::default();
        for (name, value) in configs {
            match *name {
                "max.message.bytes" => {
                    let bytes = value.parse().map_err(|_| {
                        Error::config_msg(format!(
                            "topic `{topic}`: max.message.bytes must be a number of bytes, not `{value}`"
                        ))
                    })?;
                    parsed.max_message_bytes = Some(bytes);
                }
                other => {
                    return Err(Error::config_msg(format!(
                        "topic `{topic}`: the in-memory broker does not model the topic config `{other}` (only max.message.bytes); run this test on Kafka"
                    )))
                }
            }
        }
        Ok(parsed)
    }
}

/// The bytes a record takes on Kafka as a record batch of its own (the v2 format, no
/// compression): the batch's 61-byte header, then the record with its varint lengths. Kafka
/// refuses a batch over the topic's `max.message.bytes`; in memory each record is checked
/// alone (on Kafka, a batch of small records with a large one is refused whole).
fn record_batch_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &Headers) -> usize {
    const BATCH_HEADER: usize = 61;
    let varint = |n: i64| {
        let mut zigzag = ((n << 1) ^ (n >> 63)) as u64;
        let mut bytes = 1;
        while zigzag >= 0x80 {
            zigzag >>= 7;
            bytes += 1;
        }
        bytes
    };
    let field = |bytes: Option<&[u8]>| match bytes {
        Some(bytes) => varint(bytes.len() as i64) + bytes.len(),
        None => varint(-1),
    };
    // Attributes, then the timestamp and offset deltas (both 0 in a batch of one).
    let mut body = 3 + field(key) + field(value) + varint(headers.len() as i64);
    for (name, value) in headers.iter() {
        body += field(Some(name.as_bytes())) + field(Some(&value[..]));
    }
    BATCH_HEADER + varint(body as i64) + body
}

/// Topics and consumer groups, shared by every clone of a test broker.
pub(crate) struct Cluster {
    topics: Mutex<HashMap<Arc<str>, Topic>>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    default_partitions: i32,
    default_reset: OffsetReset,
    next_member: std::sync::atomic::AtomicU64,
    transactions: Arc<Transactions>,
    /// Held by the open transaction: one at a time, as on a Kafka broker handle.
    transaction_turn: Arc<tokio::sync::Mutex<()>>,
    /// Per transactional id: the epoch of its newest producer, and that producer's open
    /// transaction (Kafka's transaction coordinator, which fences older producers).
    producers: Mutex<HashMap<String, ProducerEpoch>>,
}

/// The newest producer of a transactional id.
#[derive(Clone, Copy, Default)]
struct ProducerEpoch {
    epoch: u64,
    open: Option<u64>,
}

impl Cluster {
    pub(crate) fn new(default_partitions: i32, default_reset: OffsetReset) -> Self {
        Self {
            topics: Mutex::default(),
            groups: Mutex::default(),
            default_partitions: default_partitions.max(1),
            default_reset,
            next_member: Default::default(),
            transactions: Arc::default(),
            transaction_turn: Arc::default(),
            producers: Mutex::default(),
        }
    }

    /// Registers a producer of `transactional_id` (Kafka's `init_transactions`): it fences
    /// every older producer of that id and aborts the transaction one left open. Its epoch.
    pub(crate) fn init_producer(&self, transactional_id: &str) -> u64 {
        let previous = {
            let mut producers = lock(&self.producers);
            let entry = producers.entry(transactional_id.to_owned()).or_default();
            entry.epoch += 1;
            entry.open.take()
        };
        if let Some(open) = previous {
            self.end_transaction(open, &[], TxnState::Aborted);
        }
        lock(&self.producers)[transactional_id].epoch
    }

    /// Opens a transaction for producer `epoch` of `transactional_id`; `None` when it was
    /// fenced.
    fn open_for(&self, transactional_id: &str, epoch: u64) -> Option<u64> {
        let mut producers = lock(&self.producers);
        let entry = producers.get_mut(transactional_id)?;
        if entry.epoch != epoch {
            return None;
        }
        let id = self
            .transactions
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.transactions.states).insert(id, TxnState::Open);
        entry.open = Some(id);
        Some(id)
    }

    /// Starts an exactly-once member of `config`'s group (see [`MemoryMember`]).
    pub(crate) fn exactly_once(
        self: &Arc<Self>,
        config: &SubscriberConfig,
    ) -> Result<Arc<MemoryMember>> {
        let id = member_transactional_id(config);
        let epoch = self.init_producer(&id);
        let open = self.open_for(&id, epoch).ok_or_else(|| {
            Error::config_msg(format!("transactional id `{id}` was fenced as it started"))
        })?;
        Ok(Arc::new(MemoryMember {
            cluster: Arc::clone(self),
            group: self.group(config.effective_group_id()),
            id,
            open: Mutex::new(MemberTransaction {
                epoch,
                id: open,
                sent: Vec::new(),
            }),
        }))
    }

    /// Partitions of a topic created on first use.
    pub(crate) fn default_partitions(&self) -> i32 {
        self.default_partitions
    }

    /// Creates `name` with `partitions` partitions; fine when it exists with that many.
    pub(crate) fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.create_topic_with(name, partitions, &[])
    }

    /// [`Cluster::create_topic`] with topic `configs` (Kafka's names; see [`TopicConfigs`]),
    /// which apply when the topic is created, as on Kafka.
    pub(crate) fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let configs = TopicConfigs::parse(name, configs)?;
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
                let mut topic = Topic::new(partitions);
                topic.max_message_bytes = configs.max_message_bytes;
                topics.insert(name.into(), topic);
                Ok(())
            }
        }
    }

    /// Creates each retry topic with its source topic's partition count (retention is not
    /// modelled).
    pub(crate) fn create_retry_topics(&self, topics: &[RetryTopic]) -> Result<()> {
        for topic in topics {
            let partitions = self.partitions(&topic.source).len() as i32;
            self.create_topic(&topic.name, partitions)?;
        }
        Ok(())
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

    /// What a `read_committed` reader finds in `topic` now, partition by partition, each in
    /// offset order (as the real mode's reader reads it).
    pub(crate) fn records(&self, topic: &str) -> Vec<Message> {
        let logs = match lock(&self.topics).get(topic) {
            Some(topic) => topic.partitions.clone(),
            None => return Vec::new(),
        };
        let mut out = Vec::new();
        for log in logs {
            let readable =
                self.transactions
                    .readable(&log, 0, IsolationLevel::ReadCommitted, usize::MAX);
            out.extend(readable.into_iter().filter_map(|(_, message)| message));
        }
        out
    }

    /// Begins a transaction (waiting while another is open): its records are appended as
    /// they are sent, visible to `read_committed` readers once it commits.
    pub(crate) async fn begin_transaction(self: &Arc<Self>) -> Transaction {
        let turn = Arc::clone(&self.transaction_turn).lock_owned().await;
        let id = self
            .transactions
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.transactions.states).insert(id, TxnState::Open);
        Transaction::new(Box::new(MemoryTransaction {
            cluster: Arc::clone(self),
            id,
            sent: Vec::new(),
            _turn: turn,
        }))
    }

    /// Ends transaction `id`: its state, then a marker in every partition it wrote to, whose
    /// readers are woken.
    fn end_transaction(&self, id: u64, sent: &[Delivered], state: TxnState) {
        lock(&self.transactions.states).insert(id, state);
        if state == TxnState::Aborted {
            // Readers parked at the last stable offset of this transaction's partitions that
            // were not named (the fenced producer's list is gone) are woken too.
            for topic in lock(&self.topics).values() {
                for log in &topic.partitions {
                    log.appended.notify_waiters();
                }
            }
        }
        let mut touched: Vec<(Arc<str>, i32)> = sent
            .iter()
            .map(|d| (Arc::clone(&d.topic), d.partition))
            .collect();
        touched.sort();
        touched.dedup();
        for (topic, partition) in touched {
            let log = Arc::clone(&self.partitions(&topic)[partition as usize]);
            {
                let mut records = lock(&log.records);
                let offset = records.len() as i64;
                records.push(Stored {
                    message: Message {
                        topic: Arc::clone(&topic),
                        partition,
                        offset,
                        timestamp: Some(now_ms()),
                        key: None,
                        payload: Bytes::new(),
                        headers: Headers::new(),
                        extensions: Default::default(),
                    },
                    written: Written::Marker,
                });
            }
            log.appended.notify_waiters();
        }
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
        self.append_as(record, Written::Plain)
    }

    fn append_as(&self, record: Record, written: Written) -> Result<Delivered, PublishError> {
        let refuse = |message: String| PublishError::new(record.topic.to_string(), message);
        let (log, partition, max_message_bytes) = {
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
            (
                Arc::clone(&topic.partitions[partition as usize]),
                partition,
                topic.max_message_bytes,
            )
        };
        let mut fresh_id = [0_u8; CORRELATION_ID_LEN];
        let outgoing = outgoing_headers(&record, &mut fresh_id);
        let mut headers = Headers::with_capacity(outgoing.len());
        for (name, value) in outgoing {
            headers.append(name, Bytes::copy_from_slice(value));
        }
        if let Some(max) = max_message_bytes {
            let size =
                record_batch_size(record.key.as_deref(), record.payload.as_deref(), &headers);
            if size > max {
                // As Kafka's refusal reads through the Kafka publisher, and classed the same:
                // this record can never be written there.
                return Err(refuse(format!(
                    "Message production error: MessageSizeTooLarge (Broker: Message size too large): the record takes {size} bytes as a record batch of its own, over the topic's max.message.bytes {max} (in memory)"
                ))
                .with_class(faststream_core::ErrorClass::Abortable));
            }
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let offset = {
            let mut records = lock(&log.records);
            let offset = records.len() as i64;
            records.push(Stored {
                message: Message {
                    topic: Arc::clone(&record.topic),
                    partition,
                    offset,
                    timestamp: Some(timestamp),
                    key: record.key,
                    payload: record.payload.unwrap_or_default(),
                    headers,
                    extensions: Default::default(),
                },
                written,
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
        let topics: Vec<String> = config
            .backend
            .topics
            .iter()
            .chain(&config.backend.retry_topics)
            .cloned()
            .collect();
        if config.backend.pattern.is_none() {
            for topic in &topics {
                self.partitions(topic);
            }
        }
        let group = self.group(config.effective_group_id());
        let member = Arc::new(Member {
            id: self
                .next_member
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            topics,
            retry_topics: config.backend.retry_topics.clone(),
            pattern: config.backend.pattern.clone(),
            workers,
            stop: options.stop.clone(),
            reset: config
                .backend
                .auto_offset_reset
                .unwrap_or(self.default_reset),
            isolation: config.backend.isolation_level.unwrap_or_default(),
            hooks: config.backend.rebalance.clone(),
            owned: Mutex::default(),
            exactly_once: config.delivery.exactly_once.is_some(),
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
            name: config.name.clone(),
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
        // As on Kafka: a revoke callback runs once that work is committed (an exactly-once
        // member commits its open transaction first, before any new owner starts).
        for (member, moving) in moved {
            if !moving.is_empty() {
                member.settle().await;
            }
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
                    .position(|s| s.message.timestamp.is_some_and(|t| t >= millis))?;
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
        let gate = if member.retry_topics.iter().any(|t| *t == *tp.topic) {
            Gate::UntilDue
        } else {
            Gate::Open
        };
        let from = FeedFrom {
            log,
            position: start,
            isolation: member.isolation,
            transactions: Arc::clone(&self.transactions),
            gate,
        };
        let feeder = tokio::spawn(feed(from, tx, token.clone(), budget));
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

/// Whether a partition's feeder holds records back until they are due.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    Open,
    /// A retry topic's partition: its head record is fed once its `retry-due-at` passed, the
    /// partition "paused" (nothing fetched) until then, as the Kafka consumer pauses it.
    UntilDue,
}

/// What a partition feeder reads: its log, where, and how.
struct FeedFrom {
    log: Arc<PartitionLog>,
    position: i64,
    isolation: IsolationLevel,
    transactions: Arc<Transactions>,
    /// Whether it holds records back until they are due.
    gate: Gate,
}

/// Sends the log's records from `from.position` on to the worker (those its isolation level
/// lets it read), waiting for new ones, until `stop` fires or the worker is gone.
async fn feed(
    mut from: FeedFrom,
    tx: QueueSender,
    stop: CancellationToken,
    budget: Arc<BufferBudget>,
) {
    loop {
        let appended = from.log.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let batch =
            from.transactions
                .readable(&from.log, from.position, from.isolation, FEED_AHEAD);
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = appended => continue,
            }
        }
        for (offset, message) in batch {
            if let Some(message) = message {
                if let Some(wait) = (from.gate == Gate::UntilDue)
                    .then(|| not_due_for(&message.headers))
                    .flatten()
                {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                // Held like the Kafka consumer holds it: the worker releases it once finished,
                // and a record not handed over (a stop) is released.
                let held = Held::new(&budget, message);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    sent = held.send(&tx) => if !sent { return },
                }
            }
            from.position = offset + 1;
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
    /// The topics it reads, its retry topics included.
    topics: Vec<String>,
    /// Its retry topics: each partition is fed only as its head record comes due.
    retry_topics: Vec<String>,
    /// A pattern subscriber reads the topics matching it when the group rebalances.
    pattern: Option<Arc<TopicPattern>>,
    workers: Arc<dyn PartitionWorkers>,
    stop: CancellationToken,
    reset: OffsetReset,
    /// Which records of transactions it reads.
    isolation: IsolationLevel,
    hooks: RebalanceHooks,
    owned: Mutex<HashMap<TopicPartition, Feed>>,
    /// Offsets commit with its transactions, never from a seek.
    exactly_once: bool,
}

impl Member {
    /// After some of its workers stopped: an exactly-once member commits its open
    /// transaction (the others' workers committed as they stored).
    async fn settle(&self) {
        if let Some(commit) = self.workers.commit_open_transaction() {
            if let Err(err) = commit.await {
                tracing::warn!("{err}");
            }
        }
    }
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
    name: String,
    group: Arc<Group>,
    member: Arc<Member>,
    options: SubscribeOptions,
}

impl Subscription for MemorySubscription {
    fn seeker(&self) -> Option<Arc<dyn SeekPartitions>> {
        Some(Arc::new(MemorySeeker {
            cluster: Arc::clone(&self.cluster),
            name: self.name.clone(),
            group: Arc::clone(&self.group),
            member: Arc::clone(&self.member),
        }))
    }

    fn finished(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.options.stop.cancelled().await;
            let _rebalancing = self.group.rebalancing.lock().await;
            let (partitions, feeds): (Vec<TopicPartition>, Vec<Feed>) =
                lock(&self.member.owned).drain().unzip();
            stop_feeds(feeds, self.options.graceful_timeout).await;
            self.member.settle().await;
            self.member.hooks.revoked(&partitions);
            lock(&self.group.members).retain(|m| m.id != self.member.id);
            // The members left (of other apps on this broker) take over.
            self.cluster
                .rebalance(&self.group, self.options.rebalance_timeout)
                .await;
        })
    }
}

/// Seeks a member's partitions, as the Kafka consumer does: between rebalances, dropping the
/// partition's in-flight work, committing the sought offset, and feeding a fresh worker from
/// there.
struct MemorySeeker {
    cluster: Arc<Cluster>,
    name: String,
    group: Arc<Group>,
    member: Arc<Member>,
}

impl SeekPartitions for MemorySeeker {
    fn seek(&self, seek: Seek) -> BoxFuture<'static, Result<Vec<Sought>>> {
        let (cluster, name) = (Arc::clone(&self.cluster), self.name.clone());
        let (group, member) = (Arc::clone(&self.group), Arc::clone(&self.member));
        // Its own task: a handler seeking its own partition is dropped by the seek, which must
        // still finish.
        let seeking = tokio::spawn(async move {
            let _rebalancing = group.rebalancing.lock().await;
            if member.stop.is_cancelled() {
                return Err(Error::config_msg("cannot seek: the subscriber stopped"));
            }
            let mut owned: Vec<TopicPartition> = lock(&member.owned).keys().cloned().collect();
            owned.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            let mut sought = Vec::new();
            for partition in seek.select(&name, &owned)? {
                let offset = match seek.to {
                    StartFrom::Committed => lock(&group.committed).get(&partition).copied().ok_or_else(|| {
                        Error::broker_msg(
                            format!("subscriber `{name}` cannot seek {partition} to its committed offset: the group committed none"),
                            faststream_core::ErrorClass::Abortable,
                        )
                    })?,
                    to => cluster.start_position(&partition, to).unwrap_or_default(),
                };
                sought.push(Sought { partition, offset });
            }
            for target in &sought {
                let Some(feed) = lock(&member.owned).remove(&target.partition) else {
                    continue;
                };
                feed.feeder.abort();
                feed.worker.abort();
                feed.token.cancel();
                // Once ended they store nothing more, so the commit below stays.
                let _ = feed.feeder.await;
                let _ = feed.worker.await;
                // As on Kafka: the seek's commit carries no metadata; an exactly-once member's
                // position commits with its next transaction instead.
                if !member.exactly_once {
                    lock(&group.committed).insert(target.partition.clone(), target.offset);
                    lock(&group.metadata).remove(&target.partition);
                }
                let fresh = cluster.start_feed_at(
                    &group,
                    &member,
                    target.partition.clone(),
                    Some(target.offset),
                );
                lock(&member.owned).insert(target.partition.clone(), fresh);
            }
            Ok(sought)
        });
        Box::pin(async move {
            seeking
                .await
                .map_err(|err| Error::config("the seek's task failed", err))?
        })
    }
}

/// The transactional id of `config`'s member in memory.
pub(crate) fn member_transactional_id(config: &SubscriberConfig) -> String {
    format!("{}-{}-memory", config.effective_group_id(), config.name)
}

/// An exactly-once subscriber's group member in memory: one producer epoch of a
/// transactional id, whose transactions commit the member's outputs together with its offsets
/// in the group, as Kafka's `send_offsets_to_transaction` does.
pub(crate) struct MemoryMember {
    cluster: Arc<Cluster>,
    group: Arc<Group>,
    id: String,
    open: Mutex<MemberTransaction>,
}

/// A member's open transaction.
struct MemberTransaction {
    /// Its producer's epoch: older than the id's newest once fenced.
    epoch: u64,
    id: u64,
    sent: Vec<Delivered>,
}

impl MemoryMember {
    /// Appends `record` in the open transaction; refused once the producer was fenced (a
    /// fenced Kafka producer is fatal: it sends nothing more).
    pub(crate) fn send(&self, record: Record) -> Result<Delivered, PublishError> {
        let mut open = lock(&self.open);
        if self.is_fenced(&open) {
            return Err(PublishError::new(
                record.topic.to_string(),
                format!(
                    "transactional id `{}`: the producer was fenced by a newer one with its id",
                    self.id
                ),
            )
            .with_class(faststream_core::ErrorClass::Fatal));
        }
        let sent = self
            .cluster
            .append_as(record, Written::InTransaction(open.id))?;
        open.sent.push(sent.clone());
        Ok(sent)
    }

    /// Whether a newer producer of the id started since `open`'s.
    fn is_fenced(&self, open: &MemberTransaction) -> bool {
        lock(&self.cluster.producers)
            .get(&self.id)
            .is_none_or(|p| p.epoch != open.epoch)
    }

    /// Ends the open transaction as `state`, committing `offsets` with it, and opens the
    /// next; a fenced producer is replaced (the replacement fences the intruder in turn, as a
    /// recreated Kafka producer does).
    fn end(&self, state: TxnState, offsets: Vec<TransactionOffset>) -> Result<()> {
        let mut open = lock(&self.open);
        let sent = std::mem::take(&mut open.sent);
        if self.is_fenced(&open) {
            // Its transaction was aborted by the fencing producer's init.
            tracing::error!(transactional_id = %self.id, "the transactional producer is fenced (another producer with its id started); creating a new producer, the transaction's partitions are rewound");
            self.cluster
                .end_transaction(open.id, &sent, TxnState::Aborted);
            open.epoch = self.cluster.init_producer(&self.id);
            open.id = self.cluster.open_for(&self.id, open.epoch).ok_or_else(|| {
                Error::broker_msg(
                    "the new transactional producer was fenced at once",
                    faststream_core::ErrorClass::Fatal,
                )
            })?;
            return Err(Error::broker_msg(
                format!("transactional id `{}`: the producer was fenced and replaced; the transaction is aborted", self.id),
                faststream_core::ErrorClass::Abortable,
            ));
        }
        // Held from before the records become visible until the offsets are written: a
        // reader woken by the end that then asks for the offsets gets the new ones, as
        // Kafka makes both visible at the commit marker. Taken after the end, a test that
        // saw the outputs could still read the old offsets.
        let mut committed = lock(&self.group.committed);
        let mut metadata = lock(&self.group.metadata);
        self.cluster.end_transaction(open.id, &sent, state);
        if state == TxnState::Committed {
            for offset in offsets {
                match offset.metadata {
                    Some(kept) => metadata.insert(offset.partition.clone(), kept),
                    None => metadata.remove(&offset.partition),
                };
                committed.insert(offset.partition, offset.next);
            }
        }
        drop((metadata, committed));
        open.id = self.cluster.open_for(&self.id, open.epoch).ok_or_else(|| {
            Error::broker_msg(
                "the transactional producer was fenced",
                faststream_core::ErrorClass::Abortable,
            )
        })?;
        Ok(())
    }
}

impl MemberTransactions for MemoryMember {
    fn commit(&self, offsets: Vec<TransactionOffset>) -> BoxFuture<'static, Result<()>> {
        let result = self.end(TxnState::Committed, offsets);
        Box::pin(async move { result })
    }

    fn abort(&self) -> BoxFuture<'static, Result<()>> {
        let result = self.end(TxnState::Aborted, Vec::new());
        Box::pin(async move { result })
    }

    fn id(&self) -> String {
        self.id.clone()
    }
}

/// An open in-memory transaction: its records are in the logs already, hidden from
/// `read_committed` readers until it ends.
struct MemoryTransaction {
    cluster: Arc<Cluster>,
    id: u64,
    sent: Vec<Delivered>,
    /// One transaction at a time.
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl OpenTransaction for MemoryTransaction {
    fn send(&mut self, record: Record) -> BoxFuture<'_, Result<(), PublishError>> {
        let sent = self
            .cluster
            .append_as(record, Written::InTransaction(self.id));
        Box::pin(async move {
            self.sent.push(sent?);
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<Vec<Delivered>>> {
        self.cluster
            .end_transaction(self.id, &self.sent, TxnState::Committed);
        Box::pin(async move { Ok(self.sent) })
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        self.cluster
            .end_transaction(self.id, &self.sent, TxnState::Aborted);
        Box::pin(async { Ok(()) })
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
