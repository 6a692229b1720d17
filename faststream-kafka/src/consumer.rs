//! One consumer per subscriber: a dedicated thread reads the assigned partitions' records in
//! batches (see `fetch_queue`), serves rdkafka's events between batches, and feeds each
//! partition to its own worker task, so partitions run concurrently and in order.
//!
//! Back-pressure: each record goes straight into its partition worker's queue. Records queued
//! beyond what a worker keeps at hand ([`AT_HAND`]) are its backlog. When one partition's
//! backlog grows past its bound (that worker is slower than the rest), only that partition is
//! paused, so the others keep flowing; it resumes once its worker is back to what it keeps at
//! hand. When the backlogs of the partitions still flowing together grow past a bound (every
//! worker is behind), the thread fetches nothing new until workers catch up, pausing any
//! partition whose worker made no progress for a while (a stuck handler), and it keeps serving
//! rebalances meanwhile.
//! A retry topic's partition is also paused while its head record is not due, and resumed at
//! the due time (see `due_gate`); no backlog or budget rule resumes it before.
//! Rebalances run on the same thread (librdkafka calls them from `poll`): on revoke, the
//! revoked partitions' workers finish what they hold, store their offsets, and those offsets
//! are committed synchronously before the revoke completes.

use crate::config::BrokerSettings;
use crate::context::{classify, ClientHealth, ErrorClass, KafkaContext, Stats};
use crate::due_gate::{Admit, DueGate};
use crate::fetch_queue::{self, FetchQueue, FetchTarget, Fetched};
use crate::fetched_headers;
use crate::member::KafkaMember;
use crate::partition_map::PartitionMap;
use crate::record_bytes::RecordBytes;
use faststream_core::broker::{
    partition_queue, BufferBudget, Held, OffsetStore, PartitionHealth, PartitionWorkers,
    QueueSender, StartPosition, SubscribeOptions, Subscription, SubscriptionHealth, TrySendError,
    WorkerSet,
};
use faststream_core::seek::{Seek, SeekPartitions, Sought};
use faststream_core::{Error, Message, Result, StartFrom, SubscriberConfig, TopicPartition};
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Records queued for a worker that do not count as a backlog: what it keeps at hand. A paused
/// partition resumes once its queue is down to this.
const AT_HAND: usize = 1024;
/// Backlogged records of one partition at which that partition is paused. Well above what
/// one fetch response brings for a partition (about 10,000 small records with the default
/// 1 MB `max.partition.fetch.bytes`): pausing drops librdkafka's prefetched records, which are
/// then fetched again, so it must only happen for a partition that is really behind.
const PAUSE_BACKLOG: usize = 32_768;
/// Backlogged records of the partitions still flowing at which polling waits for the workers.
const TOTAL_BACKLOG: usize = 49_152;
/// Records dispatched between two looks at every partition's backlog while records flow.
const CHECK_EVERY: u32 = 64;
/// How long the fetch loop waits for records when idle: bounds how fast a shutdown request
/// is noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Main queue events served in a row, at most, before records are read again.
const MAX_EVENTS: u32 = 16;
/// How long a backlogged worker may take nothing before its partition is paused while every
/// worker is behind.
const STALL: Duration = Duration::from_secs(1);

type KafkaConsumer = BaseConsumer<SubscriberContext>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; what it guards stays consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A partition being consumed: the worker's queue and what is waiting for it.
struct Slot {
    topic: Arc<str>,
    queue: QueueSender,
    stop: CancellationToken,
    task: JoinHandle<()>,
    paused: bool,
    /// Where to restart reading if the worker dies: the offset after the last one it stored,
    /// or the first record it was given (-1 before that).
    resume_from: Arc<AtomicI64>,
    /// Since when the worker has taken nothing while it had a backlog.
    stalled_since: Option<Instant>,
    /// Records the worker had taken from its queue at the last look.
    taken: u64,
    /// Records after the last stored offset, from librdkafka's statistics.
    lag: Option<i64>,
    /// A retry topic's partition: held paused while its head record is not due.
    due: Option<DueGate>,
    /// Where the partition's records are copied to out of librdkafka's buffers.
    bytes: RecordBytes,
}

impl Slot {
    /// Whether it is paused until its head record is due (no backlog or budget rule may
    /// resume it).
    fn held_until_due(&self) -> bool {
        self.due.as_ref().is_some_and(DueGate::is_holding)
    }
}

#[derive(Default)]
struct Partitions {
    slots: PartitionMap<Slot>,
    /// The memory budget is full: every partition is paused until it drains to half.
    over_budget: bool,
}

/// State shared by the polling thread, the rebalance callbacks and the workers' offset store.
struct Shared {
    name: String,
    workers: Arc<dyn PartitionWorkers>,
    runtime: Handle,
    partitions: Mutex<Partitions>,
    consumer: OnceLock<Weak<KafkaConsumer>>,
    /// The subscription's stop signal; each partition worker's is a child of it.
    stop: CancellationToken,
    /// How long workers get to finish at shutdown, and on a revoke.
    graceful_timeout: Duration,
    rebalance_timeout: Duration,
    /// The subscriber's rebalance callbacks.
    hooks: faststream_core::RebalanceHooks,
    /// Bytes of records held, shared with the workers (which release them when finished).
    budget: Arc<BufferBudget>,
    /// The group assigned partitions at least once.
    joined: AtomicBool,
    /// Mirrors `Partitions::over_budget` for the lock-free check in `enforce_budget`.
    over_budget: AtomicBool,
    /// Some partition had a backlog or was paused at the last look (set by the polling thread
    /// only): the poll loop looks at the partitions again only then.
    behind: AtomicBool,
    /// Why the consumer can no longer consume.
    failure: OnceLock<String>,
    /// The subscriber's retry topics, whose partitions go through a [`DueGate`].
    retry_topics: Vec<String>,
    /// A retry partition was paused until due since the poll loop last looked (its deadline
    /// may come before the ones the loop knows).
    paused_until_due: AtomicBool,
    health: Arc<ClientHealth>,
    /// Seeks asked for, done by the polling thread between two polls (it owns the partitions'
    /// workers, and a rebalance never runs in between); `None` once the thread ended.
    seeks: Mutex<Option<Vec<SeekOrder>>>,
    /// Mirrors `!seeks.is_empty()` for the lock-free check in the poll loop.
    seek_pending: AtomicBool,
    /// An exactly-once subscriber: offsets commit with its member's transactions, never
    /// from this consumer.
    exactly_once: bool,
    /// Where assigned partitions forward their records (see the `fetch_queue` module).
    fetch: Arc<FetchTarget>,
}

/// A seek waiting for the polling thread, and where its answer goes.
struct SeekOrder {
    seek: Seek,
    answer: oneshot::Sender<Result<Vec<Sought>>>,
}

/// How long a seek waits for each broker query (watermarks, offsets for a time, committed
/// offsets) and for librdkafka's seek.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    fn partitions(&self) -> MutexGuard<'_, Partitions> {
        lock(&self.partitions)
    }

    /// A consumer error read from a queue: a fatal one ends the subscriber.
    fn consumer_error(&self, err: KafkaError) {
        match classify(&err, &err.to_string()) {
            ErrorClass::Fatal(cause) => self.fail(cause),
            // The client context already logged this event once (rdkafka hands every error
            // event to both).
            _ => tracing::debug!(subscriber = %self.name, "consumer error: {err}"),
        }
    }

    /// Forwards the records of `tpl`'s partitions to the fetch queue.
    fn forward(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let client = consumer.client().native_ptr();
        for element in tpl.elements() {
            self.fetch
                .forward(client, element.topic(), element.partition());
        }
    }

    fn spawn_slot(&self, topic: Arc<str>, partition: i32, resume_from: i64) -> Slot {
        // Unbounded: this consumer bounds it by pausing the partition (see the module docs).
        let (queue, mut messages) = partition_queue(usize::MAX);
        // What the worker holds in hand when its task is dropped leaves the budget then (an
        // aborted task may be dropped after `release_queued` took what was left in the queue).
        let budget = Arc::clone(&self.budget);
        messages.release_on_drop(move |bytes| budget.release(bytes));
        let stop = self.stop.child_token();
        // Each partition's records share a name of its own: every record takes and drops a
        // reference to it, on the fetch thread and the partition's worker, and one name shared
        // by all of a topic's partitions had every worker's thread change the same count.
        let topic: Arc<str> = Arc::from(&*topic);
        let tp = TopicPartition::new(Arc::clone(&topic), partition);
        let resume_from = Arc::new(AtomicI64::new(resume_from));
        let offsets = Arc::new(KafkaOffsets {
            consumer: self.consumer.get().cloned().unwrap_or_default(),
            resume_from: Arc::clone(&resume_from),
        });
        let task = Arc::clone(&self.workers).spawn(tp, messages, offsets, stop.clone());
        Slot {
            queue,
            stop,
            task,
            paused: false,
            resume_from,
            stalled_since: None,
            taken: 0,
            lag: None,
            due: self
                .retry_topics
                .iter()
                .any(|t| **t == *topic)
                .then(DueGate::default),
            bytes: RecordBytes::shared(),
            topic,
        }
    }

    /// Replaces a worker that ended unexpectedly (it never should: handler panics are caught).
    /// Its unfinished records are read again: those left in its queue are released and the
    /// partition is rewound to the record after the last stored offset, so nothing is skipped.
    fn restart_worker(&self, consumer: &KafkaConsumer, slot: &mut Slot, partition: i32) {
        let from = slot.resume_from.load(Ordering::Acquire);
        tracing::error!(
            subscriber = %self.name,
            "worker of {}[{partition}] ended unexpectedly; restarting it from offset {from}",
            slot.topic
        );
        let mut fresh = self.spawn_slot(Arc::clone(&slot.topic), partition, from);
        fresh.paused = slot.paused;
        // No worker will take them.
        self.release_queued(&slot.queue);
        *slot = fresh;
        if from >= 0 {
            if let Err(err) = consumer.seek(
                &slot.topic,
                partition,
                Offset::Offset(from),
                Duration::from_secs(10),
            ) {
                tracing::error!(subscriber = %self.name, "cannot rewind {}[{partition}] to {from}: {err}", slot.topic);
            }
        }
    }

    /// Does the seeks asked for since the last poll, answering each.
    fn run_seeks(&self, consumer: &KafkaConsumer) {
        self.seek_pending.store(false, Ordering::Relaxed);
        let orders = lock(&self.seeks)
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for order in orders {
            let result = self.seek(consumer, &order.seek);
            if let Err(err) = &result {
                tracing::warn!(subscriber = %self.name, "seek failed: {err}");
            }
            // The asker may be gone (a handler that sought its own partition was dropped).
            let _ = order.answer.send(result);
        }
    }

    /// Moves the partitions `seek` names. Every offset is resolved before anything moves, so
    /// a partition not owned or a broker query that fails leaves all of them as they were.
    fn seek(&self, consumer: &KafkaConsumer, seek: &Seek) -> Result<Vec<Sought>> {
        let owned = self.owned();
        let chosen = seek.select(&self.name, &owned)?;
        let mut sought = Vec::with_capacity(chosen.len());
        for partition in chosen {
            let offset = self.resolve(consumer, &partition, seek.to)?;
            sought.push(Sought { partition, offset });
        }
        for target in &sought {
            self.move_partition(consumer, &target.partition, target.offset)?;
        }
        Ok(sought)
    }

    /// The partitions this subscriber owns now, sorted.
    fn owned(&self) -> Vec<TopicPartition> {
        let parts = self.partitions();
        let mut owned: Vec<TopicPartition> = parts
            .slots
            .iter()
            .map(|(topic, partition, _)| TopicPartition::new(Arc::clone(topic), partition))
            .collect();
        owned.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        owned
    }

    /// The offset `to` means in `partition` now, within its retained records.
    fn resolve(
        &self,
        consumer: &KafkaConsumer,
        partition: &TopicPartition,
        to: StartFrom,
    ) -> Result<i64> {
        let (topic, number) = (&*partition.topic, partition.partition);
        let cannot = |err: KafkaError| {
            crate::error::broker(
                format!("subscriber `{}` cannot seek {partition}", self.name),
                err,
            )
        };
        let (low, high) = consumer
            .fetch_watermarks(topic, number, SEEK_TIMEOUT)
            .map_err(cannot)?;
        let one = |offset: Offset| {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, number, offset)
                .map(|()| tpl)
        };
        let position = match to {
            StartFrom::Committed => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, number);
                let committed = consumer
                    .committed_offsets(tpl, SEEK_TIMEOUT)
                    .map_err(cannot)?;
                match committed.find_partition(topic, number).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => StartPosition::Offset(offset),
                    _ => {
                        return Err(Error::broker_msg(
                            format!(
                                "subscriber `{}` cannot seek {partition} to its committed offset: the group committed none",
                                self.name
                            ),
                            faststream_core::ErrorClass::Abortable,
                        ))
                    }
                }
            }
            StartFrom::Timestamp(millis) => {
                let found = consumer
                    .offsets_for_times(one(Offset::Offset(millis)).map_err(cannot)?, SEEK_TIMEOUT)
                    .map_err(cannot)?;
                to.resolve(|_| match found.find_partition(topic, number)?.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                })
            }
            other => other.resolve(|_| None),
        };
        // `Committed` was turned into an offset above.
        Ok(position.within(low, high).unwrap_or(high))
    }

    /// Drops `partition`'s in-flight work (its worker is aborted: nothing it held is
    /// committed), moves librdkafka's fetch position to `offset`, stores `offset` as the
    /// partition's committed position, and starts a fresh worker there.
    fn move_partition(
        &self,
        consumer: &KafkaConsumer,
        partition: &TopicPartition,
        offset: i64,
    ) -> Result<()> {
        let (topic, number) = (&partition.topic, partition.partition);
        let Some(old) = self.partitions().slots.remove(topic, number) else {
            return Ok(());
        };
        old.task.abort();
        old.stop.cancel();
        // Once it ended it stores nothing more, so the position stored below stays.
        let _ = self.runtime.block_on(old.task);
        self.release_queued(&old.queue);
        // Committed at once (with no metadata: what a lanes partition finished above its old
        // position means nothing at the new one), and stored, so the background commit that
        // follows does not put the old position back.
        // Exactly-once: the position commits with the next transaction that handles a record
        // of the partition, and an abort's rewind must not commit at all.
        let moved = consumer
            .seek(topic, number, Offset::Offset(offset), SEEK_TIMEOUT)
            .and_then(|()| {
                if self.exactly_once {
                    return Ok(());
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, number, Offset::Offset(offset))?;
                consumer.commit(&tpl, CommitMode::Sync)?;
                consumer.store_offsets(&tpl)
            });
        // After the commit: a fresh worker with lanes reads the committed metadata as it starts.
        let fresh = self.spawn_slot(Arc::clone(topic), number, offset);
        // The fresh worker has nothing queued: fetch for it (unless the budget holds every
        // partition paused; it resumes them).
        let mut parts = self.partitions();
        let paused =
            old.paused && !(parts.over_budget || set_paused(consumer, topic, number, false));
        parts
            .slots
            .insert(Arc::clone(topic), number, Slot { paused, ..fresh });
        drop(parts);
        tracing::info!(subscriber = %self.name, "{partition} sought to offset {offset}");
        moved.map_err(|err| {
            crate::error::broker(
                format!(
                    "subscriber `{}` cannot seek {partition} to {offset}",
                    self.name
                ),
                err,
            )
        })
    }

    /// Takes the records left in a worker's queue out of it and the budget.
    fn release_queued(&self, queue: &QueueSender) {
        let left = queue.take_all();
        self.budget
            .release(left.iter().map(Message::held_bytes).sum());
    }

    fn assign(&self, tpl: &TopicPartitionList) {
        let mut parts = self.partitions();
        for element in tpl.elements() {
            let topic = element.topic();
            let partition = element.partition();
            if parts.slots.contains(topic, partition) {
                continue;
            }
            let topic_arc = parts
                .slots
                .topic_name(topic)
                .unwrap_or_else(|| Arc::from(topic));
            let slot = self.spawn_slot(Arc::clone(&topic_arc), partition, -1);
            parts.slots.insert(topic_arc, partition, slot);
        }
    }

    /// Hands a fetched record to its partition's worker, pausing the partition when the
    /// worker is behind.
    fn dispatch(&self, consumer: &KafkaConsumer, record: &impl Fetched) {
        let mut parts = self.partitions();
        let partition = record.partition();
        let handle = record.topic_ptr() as usize;
        let Some(slot) = parts
            .slots
            .for_record(handle, || record.topic_bytes(), partition)
        else {
            // librdkafka only delivers assigned partitions; a record of any other is not ours to
            // handle (and is not committed here).
            tracing::warn!(
                subscriber = %self.name,
                "record {}[{partition}]@{} of an unassigned partition ignored",
                record.topic_name(),
                record.offset()
            );
            return;
        };
        if slot.resume_from.load(Ordering::Relaxed) < 0 {
            slot.resume_from.store(record.offset(), Ordering::Release);
        }
        let message = to_message(&slot.topic, record, &mut slot.bytes);
        let message = match slot.due.as_mut() {
            None => message,
            Some(gate) => match gate.admit(message) {
                Admit::Pass(message) => message,
                Admit::Kept { pause } => {
                    if pause {
                        slot.paused |= set_paused(consumer, &slot.topic, partition, true);
                        self.paused_until_due.store(true, Ordering::Relaxed);
                    }
                    return;
                }
            },
        };
        match Held::try_send_new(&self.budget, message, &slot.queue) {
            Ok(queued) if queued > AT_HAND => {
                self.behind.store(true, Ordering::Relaxed);
                if queued - AT_HAND >= PAUSE_BACKLOG && !slot.paused {
                    slot.paused = set_paused(consumer, &slot.topic, partition, true);
                }
            }
            Ok(_) => {}
            // The queue is unbounded; a gone worker is replaced and the rewind reads this
            // record again (dropping it releases it).
            Err(TrySendError::Full(message) | TrySendError::Closed(message)) => {
                drop(message);
                self.restart_worker(consumer, slot, partition);
            }
        }
    }

    /// Lets every partition's record copier go of its current chunk (see [`RecordBytes`]).
    fn release_record_chunks(&self) {
        let mut parts = self.partitions();
        for (_, slot) in parts.slots.iter_mut() {
            slot.bytes.release();
        }
    }

    /// Looks at every partition's backlog: notes workers that took nothing since the last
    /// look, and resumes paused partitions whose workers caught up. Returns the records in
    /// backlogs: in all, and in those of partitions that are not paused.
    fn check_backlogs(&self, consumer: &KafkaConsumer) -> (usize, usize) {
        if !self.behind.load(Ordering::Relaxed) {
            return (0, 0);
        }
        let mut parts = self.partitions();
        let (mut backlogged, mut flowing, mut paused) = (0, 0, false);
        let over_budget = parts.over_budget;
        for (partition, slot) in parts.slots.iter_mut() {
            let (queued, taken) = slot.queue.progress();
            let backlog = queued.saturating_sub(AT_HAND);
            if backlog == 0 || taken != slot.taken {
                slot.stalled_since = None;
            } else {
                slot.stalled_since.get_or_insert_with(Instant::now);
            }
            slot.taken = taken;
            if backlog == 0 && slot.paused && !over_budget && !slot.held_until_due() {
                slot.paused = !set_paused(consumer, &slot.topic, partition, false);
            }
            backlogged += backlog;
            if slot.paused {
                paused = true;
            } else {
                flowing += backlog;
            }
        }
        self.behind
            .store(backlogged > 0 || paused, Ordering::Relaxed);
        (backlogged, flowing)
    }

    /// How many records the next batch read may take: as many of the largest record read so
    /// far (`largest` bytes of key and payload) as fit in the memory budget's room, at least
    /// one and at most a batch. A batch's records are all handed to their workers, so a full
    /// batch read just under the limit would overshoot it by up to a batch of records
    /// instead of the one that [`Shared::enforce_budget`] allows.
    fn records_in_room(&self, largest: usize) -> usize {
        let room = self.budget.limit().saturating_sub(self.budget.held());
        (room / largest.max(1)).clamp(1, fetch_queue::BATCH)
    }

    /// Keeps the records held within the memory budget: when it is full, pauses every
    /// partition (librdkafka then fetches nothing more and drops what it prefetched for
    /// them); once the workers brought it down to half, resumes those without a backlog.
    fn enforce_budget(&self, consumer: &KafkaConsumer) {
        let held = self.budget.held();
        let full = held >= self.budget.limit();
        // The common case, checked without the lock: under budget and nothing paused for it.
        if !full && !self.over_budget.load(Ordering::Relaxed) {
            return;
        }
        let mut parts = self.partitions();
        if full {
            if !parts.over_budget {
                tracing::debug!(subscriber = %self.name, held, limit = self.budget.limit(), "memory budget full: pausing fetches");
            }
            parts.over_budget = true;
            self.over_budget.store(true, Ordering::Relaxed);
            // Also catches partitions assigned while over budget.
            for (partition, slot) in parts.slots.iter_mut() {
                if !slot.paused {
                    slot.paused = set_paused(consumer, &slot.topic, partition, true);
                }
            }
        } else if parts.over_budget && held <= self.budget.limit() / 2 {
            parts.over_budget = false;
            self.over_budget.store(false, Ordering::Relaxed);
            for (partition, slot) in parts.slots.iter_mut() {
                if slot.paused && slot.queue.progress().0 <= AT_HAND && !slot.held_until_due() {
                    slot.paused = !set_paused(consumer, &slot.topic, partition, false);
                }
            }
        }
    }

    /// Hands the records of held retry partitions that came due to their workers, and resumes
    /// the partitions left with nothing to wait for. Returns the next deadline, if any
    /// partition is still held.
    fn release_due(&self, consumer: &KafkaConsumer) -> Option<Instant> {
        let now = Instant::now();
        let mut parts = self.partitions();
        let over_budget = parts.over_budget;
        let (mut next, mut due) = (None::<Instant>, Vec::new());
        for (partition, slot) in parts.slots.iter_mut() {
            let Some(gate) = slot.due.as_mut() else {
                continue;
            };
            gate.release_due(now, &mut due);
            for message in due.drain(..) {
                // The queue is unbounded; a gone worker is replaced by the next dispatch.
                drop(Held::new(&self.budget, message).try_send(&slot.queue));
            }
            match gate.resume_at() {
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None if slot.paused && !over_budget => {
                    slot.paused = !set_paused(consumer, &slot.topic, partition, false);
                }
                None => {}
            }
        }
        next
    }

    /// What the subscription reports for health.
    fn health(&self) -> SubscriptionHealth {
        let parts = self.partitions();
        let mut partitions: Vec<PartitionHealth> = parts
            .slots
            .iter()
            .map(|(topic, partition, slot)| PartitionHealth {
                topic: topic.to_string(),
                partition,
                lag: slot.lag,
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        SubscriptionHealth {
            joined: self.joined.load(Ordering::Relaxed),
            partitions,
            failure: self.failure.get().cloned(),
        }
    }

    /// Records lag from librdkafka's statistics.
    fn note_stats(&self, stats: &Stats) {
        let mut parts = self.partitions();
        for (topic, topic_stats) in &stats.topics {
            for p in topic_stats.partitions.values() {
                if let Some(slot) = parts.slots.get_mut(topic.as_bytes(), p.partition) {
                    slot.lag = p.lag();
                }
            }
        }
    }

    /// The consumer cannot go on: the subscriber fails and the app stops.
    fn fail(&self, cause: String) {
        let cause = format!("consumer of `{}`: {cause}", self.name);
        let _ = self.failure.set(cause.clone());
        self.health.raise(cause);
    }

    /// Pauses the partitions whose workers took nothing for [`STALL`], so a stuck handler does
    /// not hold back the partitions that still flow.
    fn pause_stalled(&self, consumer: &KafkaConsumer) {
        let mut parts = self.partitions();
        for (partition, slot) in parts.slots.iter_mut() {
            if !slot.paused
                && slot
                    .stalled_since
                    .is_some_and(|since| since.elapsed() >= STALL)
            {
                slot.paused = set_paused(consumer, &slot.topic, partition, true);
            }
        }
    }

    /// Stops the workers of `which` partitions (all when `None`): each finishes the record in
    /// hand and its publishes, and stores its offsets. Waits up to `timeout`, then aborts what
    /// is left (those records stay uncommitted and are delivered again).
    fn stop_partitions(
        &self,
        which: Option<&TopicPartitionList>,
        timeout: Duration,
    ) -> Vec<TopicPartition> {
        let slots: Vec<(Arc<str>, i32, Slot)> = {
            let mut parts = self.partitions();
            let mut taken = Vec::new();
            match which {
                None => taken = parts.slots.drain(),
                Some(tpl) => {
                    for element in tpl.elements() {
                        if let Some(slot) = parts.slots.remove(element.topic(), element.partition())
                        {
                            taken.push((Arc::clone(&slot.topic), element.partition(), slot));
                        }
                    }
                }
            }
            taken
        };
        if slots.is_empty() {
            return Vec::new();
        }
        let stopped: Vec<TopicPartition> = slots
            .iter()
            .map(|(topic, partition, _)| TopicPartition::new(Arc::clone(topic), *partition))
            .collect();
        let mut workers = WorkerSet::new();
        let mut queues = Vec::with_capacity(slots.len());
        for (topic, partition, slot) in slots {
            workers.push((topic, partition), slot.stop, slot.task);
            queues.push(slot.queue);
        }
        workers.cancel();
        if Handle::try_current().is_ok() {
            tracing::warn!(subscriber = %self.name, "partition stop requested from inside the runtime; not waiting for workers");
            return stopped;
        }
        for (topic, partition) in self.runtime.block_on(workers.stop(timeout)) {
            tracing::warn!(subscriber = %self.name, topic = %topic, partition, "worker did not finish within {timeout:?}; its unfinished records will be delivered again");
        }
        // A worker that finished released what was left in its queue; one that was aborted
        // could not: its records will never be handled here, so they leave the budget.
        for queue in &queues {
            self.release_queued(queue);
        }
        stopped
    }
}

impl Shared {
    /// Commits what the stopped workers finished: the offsets they stored, or for an
    /// exactly-once subscriber its member's open transaction, at a barrier over the workers
    /// still running. Called from the polling thread (a rebalance callback or the stop).
    fn settle(&self, consumer: &KafkaConsumer) {
        match self.workers.commit_open_transaction() {
            None => commit_sync(consumer, &self.name),
            Some(commit) => {
                if let Err(err) = self.runtime.block_on(commit) {
                    tracing::warn!(subscriber = %self.name, "{err}");
                }
            }
        }
    }
}

fn set_paused(consumer: &KafkaConsumer, topic: &str, partition: i32, pause: bool) -> bool {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let result = if pause {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match result {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(
                topic,
                partition,
                "could not {} partition: {err}",
                if pause { "pause" } else { "resume" }
            );
            false
        }
    }
}

pub(crate) fn to_message(
    topic: &Arc<str>,
    record: &impl Fetched,
    bytes: &mut RecordBytes,
) -> Message {
    let headers = fetched_headers::read(record, bytes);
    Message {
        topic: Arc::clone(topic),
        partition: record.partition(),
        offset: record.offset(),
        timestamp: record.timestamp_millis(),
        key: record.key().map(|key| bytes.copy(key)),
        payload: record
            .payload()
            .map(|payload| bytes.copy(payload))
            .unwrap_or_default(),
        headers,
        extensions: Default::default(),
    }
}

fn commit_sync(consumer: &KafkaConsumer, name: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(err) => tracing::warn!(subscriber = %name, "offset commit failed: {err}"),
    }
}

/// Stores finished offsets in librdkafka; its background auto-commit sends them.
struct KafkaOffsets {
    consumer: Weak<KafkaConsumer>,
    /// Shared with the partition's slot: where to rewind to if the worker must be replaced.
    resume_from: Arc<AtomicI64>,
}

impl OffsetStore for KafkaOffsets {
    fn store(&self, partition: &TopicPartition, offset: i64) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        self.resume_from.store(offset + 1, Ordering::Release);
        // librdkafka commits `offset + 1`, the next record to read.
        if let Err(err) = consumer.store_offset(&partition.topic, partition.partition, offset) {
            // The partition was revoked meanwhile; its new owner starts from the last commit.
            tracing::debug!(%partition, offset, "offset not stored: {err}");
        }
    }

    fn store_with_metadata(&self, partition: &TopicPartition, offset: i64, metadata: &str) {
        let Some(consumer) = self.consumer.upgrade() else {
            return;
        };
        self.resume_from.store(offset + 1, Ordering::Release);
        let mut list = TopicPartitionList::new();
        let stored = list
            .add_partition_offset(
                &partition.topic,
                partition.partition,
                Offset::Offset(offset + 1),
            )
            .and_then(|()| {
                if let Some(mut element) =
                    list.find_partition(&partition.topic, partition.partition)
                {
                    element.set_metadata(metadata);
                }
                consumer.store_offsets(&list)
            });
        if let Err(err) = stored {
            tracing::debug!(%partition, offset, "offset not stored: {err}");
        }
    }

    fn committed_metadata(&self, partition: &TopicPartition) -> Option<String> {
        let consumer = self.consumer.upgrade()?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.topic, partition.partition);
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(5))
            .map_err(|err| tracing::debug!(%partition, "committed metadata not read: {err}"))
            .ok()?;
        let element = committed.find_partition(&partition.topic, partition.partition)?;
        Some(element.metadata().to_owned()).filter(|metadata| !metadata.is_empty())
    }
}

/// The rdkafka context: turns rebalances into worker starts and stops.
pub(crate) struct SubscriberContext {
    shared: Arc<Shared>,
    /// OAuth bearer tokens for SASL `OAUTHBEARER`.
    client: KafkaContext,
}

impl ClientContext for SubscriberContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.client.oauth_token()
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.client.log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(stats) = Stats::parse(statistics) {
            self.shared.note_stats(&stats);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // A fatal error arrives with its underlying code: ask the client whether it is fatal.
        let fatal = self
            .shared
            .consumer
            .get()
            .and_then(Weak::upgrade)
            .and_then(|consumer| consumer.client().fatal_error());
        if let Some((_, cause)) = fatal {
            self.shared.fail(cause);
            return;
        }
        match classify(&error, reason) {
            ErrorClass::Fatal(cause) => self.shared.fail(cause),
            ErrorClass::Disconnected(reason) => {
                tracing::warn!(subscriber = %self.shared.name, "no Kafka broker answers ({reason}); retrying");
            }
            ErrorClass::Transient => {
                tracing::warn!(subscriber = %self.shared.name, "consumer: {error}: {reason}");
            }
        }
    }
}

impl ConsumerContext for SubscriberContext {
    fn pre_rebalance(&self, consumer: &KafkaConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Lost (the session expired, e.g. during a broker outage): another member owns
                // them already and this one's commits would be refused, so finishing in-flight
                // work would only run it twice. Stop at once; the new owner redelivers it.
                let lost = consumer.assignment_lost();
                let timeout = if lost {
                    tracing::warn!(subscriber = %self.shared.name, partitions = ?partition_names(tpl), "partitions lost (session expired); their unfinished work goes to the new owner");
                    Duration::ZERO
                } else {
                    tracing::info!(subscriber = %self.shared.name, partitions = ?partition_names(tpl), "partitions revoked");
                    self.shared.rebalance_timeout
                };
                let stopped = self.shared.stop_partitions(Some(tpl), timeout);
                self.shared.settle(consumer);
                self.shared.hooks.revoked(&stopped);
            }
            Rebalance::Assign(tpl) => {
                // Before librdkafka starts fetching them: their records go to the fetch queue.
                self.shared.forward(consumer, tpl);
            }
            Rebalance::Error(err) => {
                // rdkafka unassigns everything after a failed rebalance: stop like a revoke.
                tracing::error!(subscriber = %self.shared.name, "rebalance failed: {err}");
                let stopped = self
                    .shared
                    .stop_partitions(None, self.shared.rebalance_timeout);
                self.shared.settle(consumer);
                self.shared.hooks.revoked(&stopped);
            }
        }
    }

    fn post_rebalance(&self, consumer: &KafkaConsumer, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(subscriber = %self.shared.name, partitions = ?partition_names(tpl), "partitions assigned");
            self.shared.joined.store(true, Ordering::Relaxed);
            // librdkafka keeps a partition's pause across revoke and re-assign; a new worker
            // starts with nothing queued, so fetch from it again.
            if let Err(err) = consumer.resume(tpl) {
                tracing::warn!(subscriber = %self.shared.name, "cannot resume assigned partitions: {err}");
            }
            self.shared.assign(tpl);
            let assigned: Vec<TopicPartition> = tpl
                .elements()
                .iter()
                .map(|e| TopicPartition::new(e.topic(), e.partition()))
                .collect();
            self.shared.hooks.assigned(&assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(subscriber = %self.shared.name, "offset commit failed: {err}")
            }
        }
    }
}

fn partition_names(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect()
}

/// A running subscriber: its polling thread, stopped by the subscription's token.
struct KafkaSubscription {
    shared: Arc<Shared>,
    stop: CancellationToken,
    finished: Option<oneshot::Receiver<()>>,
}

impl Subscription for KafkaSubscription {
    fn health(&self) -> SubscriptionHealth {
        self.shared.health()
    }

    fn seeker(&self) -> Option<Arc<dyn SeekPartitions>> {
        Some(Arc::new(KafkaSeeker(Arc::downgrade(&self.shared))))
    }

    fn finished(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let finished = self.finished.take();
        Box::pin(async move {
            if let Some(finished) = finished {
                // An error only means the thread ended without reporting: nothing to wait for.
                let _ = finished.await;
            }
        })
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Hands seeks to a subscription's polling thread.
struct KafkaSeeker(Weak<Shared>);

impl SeekPartitions for KafkaSeeker {
    fn seek(&self, seek: Seek) -> BoxFuture<'static, Result<Vec<Sought>>> {
        let (answer, answered) = oneshot::channel();
        if let Some(shared) = self.0.upgrade() {
            if let Some(orders) = lock(&shared.seeks).as_mut() {
                orders.push(SeekOrder { seek, answer });
                shared.seek_pending.store(true, Ordering::Relaxed);
            }
        }
        Box::pin(async move {
            // An order not taken (the polling thread had ended) or dropped unanswered (it
            // ended meanwhile) closes the channel.
            answered
                .await
                .map_err(|_| Error::config_msg("cannot seek: the subscriber stopped"))?
        })
    }
}

/// Creates the subscriber's consumer, subscribes, and starts its polling thread.
pub(crate) fn subscribe(
    settings: &BrokerSettings,
    config: Arc<SubscriberConfig>,
    workers: Arc<dyn PartitionWorkers>,
    options: SubscribeOptions,
    health: Arc<ClientHealth>,
    member: Option<Arc<KafkaMember>>,
) -> Result<Box<dyn Subscription>> {
    let stop = options.stop.child_token();
    if config.delivery.exactly_once.is_some() && member.is_none() {
        return Err(Error::config_msg(format!(
            "subscriber `{}` is exactly-once but the broker made no transactional producer for it (`Broker::exactly_once` was not called)",
            config.name
        )));
    }
    let shared = Arc::new(Shared {
        exactly_once: member.is_some(),
        fetch: Arc::default(),
        budget: Arc::clone(workers.buffer()),
        joined: AtomicBool::new(false),
        over_budget: AtomicBool::new(false),
        behind: AtomicBool::new(false),
        failure: OnceLock::new(),
        retry_topics: config.backend.retry_topics.clone(),
        paused_until_due: AtomicBool::new(false),
        health,
        seeks: Mutex::new(Some(Vec::new())),
        seek_pending: AtomicBool::new(false),
        hooks: config.backend.rebalance.clone(),
        name: config.name.clone(),
        workers,
        runtime: Handle::current(),
        partitions: Mutex::new(Partitions::default()),
        consumer: OnceLock::new(),
        stop: stop.clone(),
        graceful_timeout: options.graceful_timeout,
        rebalance_timeout: options.rebalance_timeout,
    });
    let consumer: KafkaConsumer = settings
        .consumer_config(&config)
        .create_with_context(SubscriberContext {
            shared: Arc::clone(&shared),
            client: settings.context(),
        })
        .map_err(|err| {
            crate::error::config(
                format!("cannot create the consumer for `{}`", config.name),
                err,
            )
        })?;
    let consumer = Arc::new(consumer);
    // Made before the first assignment, whose partitions are forwarded to it; dropped before
    // the consumer (declared after it here, and dropped first by the fetch loop's thread).
    let fetch = FetchQueue::new(consumer.client().native_ptr(), Arc::clone(&shared.fetch))
        .ok_or_else(|| {
            Error::config_msg(format!(
                "cannot create the fetch queue of `{}` (librdkafka refused)",
                config.name
            ))
        })?;
    let _ = shared.consumer.set(Arc::downgrade(&consumer));
    if let Some(member) = member {
        let weak = Arc::downgrade(&consumer);
        member.bind(Box::new(move || weak.upgrade()?.group_metadata()));
    }
    if config.backend.assignment.is_empty() {
        let topics: Vec<&str> = config
            .backend
            .topics
            .iter()
            .chain(&config.backend.retry_topics)
            .map(String::as_str)
            .collect();
        consumer.subscribe(&topics).map_err(|err| {
            crate::error::broker(
                format!("cannot subscribe `{}` to {topics:?}", config.name),
                err,
            )
        })?;
    } else {
        assign_explicitly(&consumer, &shared, &config)?;
    }
    let (finished_tx, finished) = oneshot::channel();
    let thread_shared = Arc::clone(&shared);
    let shared_for_health = Arc::clone(&shared);
    std::thread::Builder::new()
        .name(format!("fs-consume-{}", config.name))
        .spawn(move || {
            let mut fetch = fetch;
            poll_loop(&consumer, &thread_shared, &mut fetch);
            drop(fetch);
            // Dropping the consumer closes it: it leaves the group at once, so the partitions
            // move to another member now rather than after the session timeout. Report
            // completion only afterwards, so a process that exits next does not cut that short.
            drop(consumer);
            let _ = finished_tx.send(());
        })
        .map_err(Error::Io)?;
    Ok(Box::new(KafkaSubscription {
        shared: shared_for_health,
        stop,
        finished: Some(finished),
    }))
}

/// Reads `config.backend.assignment` without joining the group's rebalancing, each partition from
/// `config.backend.start_from`.
fn assign_explicitly(
    consumer: &KafkaConsumer,
    shared: &Shared,
    config: &SubscriberConfig,
) -> Result<()> {
    let cannot = |err: KafkaError| {
        crate::error::broker(
            format!(
                "cannot assign {:?} to `{}`",
                config.backend.assignment, config.name
            ),
            err,
        )
    };
    // A start at a time: the broker finds every partition's offset for it, in one request.
    let for_time = match config.backend.start_from {
        StartFrom::Timestamp(millis) => {
            let mut query = TopicPartitionList::new();
            for tp in &config.backend.assignment {
                query
                    .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(millis))
                    .map_err(cannot)?;
            }
            Some(
                consumer
                    .offsets_for_times(query, Duration::from_secs(10))
                    .map_err(cannot)?,
            )
        }
        _ => None,
    };
    let mut tpl = TopicPartitionList::new();
    for tp in &config.backend.assignment {
        let found = |_millis| match for_time
            .as_ref()?
            .find_partition(&tp.topic, tp.partition)?
            .offset()
        {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        let offset = match config.backend.start_from.resolve(found) {
            StartPosition::Committed => Offset::Stored,
            StartPosition::Beginning => Offset::Beginning,
            StartPosition::End => Offset::End,
            StartPosition::Offset(offset) => Offset::Offset(offset),
        };
        tpl.add_partition_offset(&tp.topic, tp.partition, offset)
            .map_err(cannot)?;
    }
    shared.forward(consumer, &tpl);
    consumer.assign(&tpl).map_err(cannot)?;
    tracing::info!(subscriber = %shared.name, partitions = ?partition_names(&tpl), "partitions assigned explicitly");
    shared.assign(&tpl);
    shared.joined.store(true, Ordering::Relaxed);
    shared.hooks.assigned(&config.backend.assignment);
    Ok(())
}

fn poll_loop(consumer: &Arc<KafkaConsumer>, shared: &Shared, fetch: &mut FetchQueue) {
    let mut last_poll = Instant::now();
    let (mut waiting, mut flowing) = (0, 0);
    // Records dispatched since the partitions were last looked at: they are looked at when
    // nothing came, or after a few records, not after every one (looking takes each queue's
    // lock, and a partition resumed a few records later loses nothing).
    let mut unchecked = 0_u32;
    // When the earliest retry partition held until due is due.
    let mut next_due: Option<Instant> = None;
    // Whether records came since the partitions' record chunks were last released.
    let mut read_since_release = false;
    // The largest record read so far (key and payload bytes), for `records_in_room`.
    let mut largest = 0;
    loop {
        if unchecked == 0 || unchecked >= CHECK_EVERY {
            // The stop is looked at with the partitions, not before every record (reading it
            // takes the token's lock): a stop dispatches at most `CHECK_EVERY` records more,
            // which the stopping workers release unhandled.
            if shared.stop.is_cancelled() {
                break;
            }
            (waiting, flowing) = shared.check_backlogs(consumer);
            unchecked = 0;
        }
        if shared.seek_pending.load(Ordering::Relaxed) {
            shared.run_seeks(consumer);
        }
        shared.enforce_budget(consumer);
        if flowing >= TOTAL_BACKLOG {
            if last_poll.elapsed() < POLL_INTERVAL {
                // Every worker is behind: let them catch up instead of fetching more (but poll
                // at least every interval, to serve rebalances).
                shared.pause_stalled(consumer);
                std::thread::sleep(Duration::from_micros(200));
                unchecked = 0;
                continue;
            }
            // Only needed while every worker is behind: no clock read per record otherwise.
            last_poll = Instant::now();
        }
        // Retry partitions held until due are resumed at their deadline (the clock is read
        // only while one is held).
        let paused_anew = shared.paused_until_due.load(Ordering::Relaxed);
        if paused_anew || next_due.is_some_and(|at| at <= Instant::now()) {
            shared.paused_until_due.store(false, Ordering::Relaxed);
            next_due = shared.release_due(consumer);
        }
        // With records waiting, come back quickly to resume partitions that caught up.
        let timeout = if waiting > 0 {
            Duration::from_millis(1)
        } else {
            next_due.map_or(POLL_INTERVAL, |at| {
                at.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), POLL_INTERVAL)
            })
        };
        // The main queue's events first (rebalances, commits, errors), without waiting: an
        // event arriving later ends the wait for records. A record still on the main queue (a
        // partition not forwarded to the fetch queue, while closing) is handled too.
        let mut read = 0;
        let mut events = 0;
        while events == 0 || (fetch.events_waiting() && events < MAX_EVENTS) {
            events += 1;
            match consumer.poll(Duration::ZERO) {
                None => {}
                Some(Ok(record)) => {
                    shared.dispatch(consumer, &record);
                    read += 1;
                }
                Some(Err(err)) => shared.consumer_error(err),
            }
        }
        let room = shared.records_in_room(largest);
        read += fetch.read(timeout, room, |fetched| match fetched {
            Ok(record) => {
                let bytes =
                    record.key().map_or(0, <[u8]>::len) + record.payload().map_or(0, <[u8]>::len);
                largest = largest.max(bytes);
                shared.dispatch(consumer, record);
            }
            Err(err) => shared.consumer_error(err),
        });
        if read == 0 {
            unchecked = 0;
            // Caught up: no partition keeps the unfilled rest of its chunk meanwhile.
            if std::mem::take(&mut read_since_release) {
                shared.release_record_chunks();
            }
        } else {
            // Counted with the errors: errors that come back to back must not keep the stop
            // from being seen.
            unchecked += u32::try_from(read).unwrap_or(u32::MAX);
            read_since_release = true;
        }
    }
    // Seeks asked for from now on answer that the subscriber stopped.
    drop(lock(&shared.seeks).take());
    // Graceful stop: workers finish what they hold, then commit what they finished.
    let stopped = shared.stop_partitions(None, shared.graceful_timeout);
    shared.settle(consumer);
    shared.hooks.revoked(&stopped);
    consumer.unsubscribe();
}
