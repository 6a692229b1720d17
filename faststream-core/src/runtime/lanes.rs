//! Key-ordered lanes inside a partition ([`SubscriberConfig::lanes`]).
//!
//! A partition with lanes has a router in front of `n` lane workers. The router takes the
//! partition's records in offset order, gives each an entry in the partition's one progress
//! tracker and hands it to the lane of its key's hash; each lane is a partition worker of its
//! own (handler, publishes, error policy, retries, dead letters, a manual ack), over the
//! records of its keys, in order. A lane reports how far it finished through a [`LaneReport`]
//! (its worker's offset store); the router decides the tracker entries up to there, so the
//! partition's watermark, the only offset handed to the backend, never passes a record some
//! lane has not finished.
//!
//! [`SubscriberConfig::lanes`]: crate::config::subscriber::SubscriberConfig::lanes

use crate::broker::{BufferBudget, OffsetStore, QueueReceiver, QueueSender, TrySendError};
use crate::error::PublishError;
use crate::message::{Message, TopicPartition};
use crate::runtime::exactly_once::{gate_moved, LaneReached, TransactionGate};
use crate::runtime::progress::{
    CommitMode, PartitionProgress, PendingAck, Ticket, STORE_DELAY, STORE_EVERY,
};
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The lane a record goes to: a hash of its key, so one key always lands in one lane;
/// keyless records all go to lane 0.
pub(crate) fn lane_of(message: &Message, lanes: usize) -> usize {
    let Some(key) = &message.key else {
        return 0;
    };
    // SipHash with fixed keys: the same lane for a key in every run and every process.
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    // (The remainder is below `lanes`, a `usize`.)
    (hasher.finish() % lanes as u64) as usize
}

/// How many records wait in each lane's queue: the subscriber's per-partition allowance,
/// shared among its lanes.
pub(crate) fn lane_queue_capacity(max_pending_per_partition: usize, lanes: usize) -> usize {
    (max_pending_per_partition / lanes.max(1)).max(1)
}

/// Records per lane the router hands out past the partition's oldest unfinished one. The
/// window bounds how far lanes drift apart, and with it what a crash makes run again: the
/// records other lanes finished above the committed offset are fewer than `lanes *
/// WINDOW_PER_LANE` per partition (the chaos suite's scenario 8 measures them). 8 keeps 16
/// and 64 lanes above 12x and 40x of one lane with a 2 ms handler (BENCHMARKS.md, "Lanes");
/// 4 fell short of 12x, 2 to about 2x.
const WINDOW_PER_LANE: usize = 8;

/// What a lane worker tells its router.
pub(crate) enum LaneEvent {
    /// `(lane, offset)`: every record of the lane up to `offset` is finished.
    Finished(usize, i64),
    /// `(lane, barrier)`: the lane reached an exactly-once barrier, after its last
    /// `Finished` (see [`crate::runtime::exactly_once`]).
    Reached(usize, u64),
}

/// A lane worker's offset store: instead of the backend, its router hears how far the lane
/// finished.
pub(crate) struct LaneReport {
    lane: usize,
    to: mpsc::UnboundedSender<LaneEvent>,
}

impl OffsetStore for LaneReport {
    fn store(&self, _partition: &TopicPartition, offset: i64) {
        // The router is gone only once the partition stopped: nothing more is committed.
        let _ = self.to.send(LaneEvent::Finished(self.lane, offset));
    }
}

impl LaneReport {
    /// How the lane's exactly-once gate tells the router it reached a barrier: through the
    /// same channel as its watermarks, so the router has them all by then.
    pub(crate) fn barrier_report(&self) -> LaneReached {
        let (lane, to) = (self.lane, self.to.clone());
        Box::new(move |barrier| {
            let _ = to.send(LaneEvent::Reached(lane, barrier));
        })
    }
}

/// One report store per lane, and the router's end.
pub(crate) fn lane_reports(lanes: usize) -> (Vec<LaneReport>, mpsc::UnboundedReceiver<LaneEvent>) {
    let (to, from) = mpsc::unbounded_channel();
    let stores = (0..lanes)
        .map(|lane| LaneReport {
            lane,
            to: to.clone(),
        })
        .collect();
    (stores, from)
}

/// How the commit's metadata names the records finished above the committed offset:
/// `{METADATA_PREFIX}{committed}:{d1},{d2},...`, each `d` an offset minus the committed one.
const METADATA_PREFIX: &str = "faststream-lanes/1:";

/// Kafka keeps at most 4096 bytes of metadata per committed offset (the broker's
/// `offset.metadata.max.bytes`); a longer list is cut (those records simply run again).
const METADATA_MAX: usize = 4000;

/// The commit metadata naming `finished` (offsets above `next`, the committed offset).
fn encode_finished(next: i64, finished: impl Iterator<Item = i64>) -> String {
    use std::fmt::Write;
    let mut metadata = format!("{METADATA_PREFIX}{next}:");
    let mut first = true;
    for offset in finished {
        if metadata.len() > METADATA_MAX {
            break;
        }
        let _ = write!(
            metadata,
            "{}{}",
            if first { "" } else { "," },
            offset - next
        );
        first = false;
    }
    metadata
}

/// Records a previous owner finished above the committed offset, read from the commit's
/// metadata: skipped when they come again.
#[derive(Debug, PartialEq, Eq)]
struct Resume {
    /// The committed offset the metadata was stored with: the first record must be this one.
    next: i64,
    finished: HashSet<i64>,
}

impl Resume {
    fn parse(metadata: &str) -> Option<Self> {
        let (next, deltas) = metadata.strip_prefix(METADATA_PREFIX)?.split_once(':')?;
        let next: i64 = next.parse().ok()?;
        let finished = deltas
            .split(',')
            .filter(|delta| !delta.is_empty())
            .map(|delta| delta.parse::<i64>().ok().map(|delta| next + delta))
            .collect::<Option<HashSet<i64>>>()?;
        (!finished.is_empty()).then_some(Self { next, finished })
    }
}

/// A running lane: its queue and its worker's task.
pub(crate) struct Lane {
    pub(crate) queue: QueueSender,
    pub(crate) task: LaneTask,
}

/// A lane worker's task, aborted when dropped: a router aborted at the end of the graceful or
/// rebalance timeout takes its lanes (and their handlers still running) with it, as a plain
/// partition worker's abort takes its handler.
pub(crate) struct LaneTask(pub(crate) JoinHandle<()>);

impl Drop for LaneTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Nothing is published at the router's level: its entries finish when a lane reports them.
type NoDelivery = std::future::Ready<Result<(), PublishError>>;

/// A record the router could not hand over yet: its lane's queue is full.
struct Held {
    lane: usize,
    message: Message,
}

/// Spreads one partition's records over its lanes and commits for them.
pub(crate) struct LaneRouter {
    partition: TopicPartition,
    lanes: Vec<Lane>,
    /// Per lane, the offsets it was given and their tracker entries, oldest first: what it
    /// has not reported finished yet.
    unfinished: Vec<VecDeque<(i64, Ticket)>>,
    progress: PartitionProgress<NoDelivery>,
    /// Where the partition's watermark goes, with the finished records above it as metadata.
    offsets: Arc<dyn OffsetStore>,
    reports: mpsc::UnboundedReceiver<LaneEvent>,
    stop: CancellationToken,
    /// At most this many records between the oldest unfinished one and the newest handed out.
    window: usize,
    /// Records finished above the watermark changed since the last store.
    finished_changed: bool,
    /// What a previous owner finished above the committed offset, until those records passed.
    resume: Option<Resume>,
    /// Exactly-once only: the member's commit barrier, which this router reaches once every
    /// lane did and their watermarks are stored.
    transaction: Option<TransactionGate>,
    /// The last barrier each lane reached.
    lanes_reached: Vec<u64>,
}

impl LaneRouter {
    /// The router of `partition` over `lanes` (whose workers report into `reports`), storing
    /// the partition's watermark into `offsets`.
    pub(crate) fn new(
        partition: TopicPartition,
        lanes: Vec<Lane>,
        reports: mpsc::UnboundedReceiver<LaneEvent>,
        offsets: Arc<dyn OffsetStore>,
        budget: Arc<BufferBudget>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            unfinished: lanes.iter().map(|_| VecDeque::new()).collect(),
            progress: PartitionProgress::new(
                partition.clone(),
                Arc::clone(&offsets),
                budget,
                CommitMode::AfterHandling,
            ),
            offsets,
            finished_changed: false,
            resume: None,
            transaction: None,
            lanes_reached: vec![0; lanes.len()],
            partition,
            window: lanes.len() * WINDOW_PER_LANE,
            lanes,
            reports,
            stop,
        }
    }

    /// An exactly-once member's router: it takes part in the member's commit barrier.
    pub(crate) fn with_transaction(mut self, transaction: Option<TransactionGate>) -> Self {
        self.lanes_reached =
            vec![transaction.as_ref().map_or(0, TransactionGate::epoch); self.lanes.len()];
        self.transaction = transaction;
        self
    }

    /// Records handed to lanes and not finished yet, across every lane.
    pub(crate) fn in_flight(&self) -> usize {
        self.progress.in_flight()
    }

    pub(crate) async fn run(mut self, mut messages: QueueReceiver) {
        self.resume = self.read_resume().await;
        let mut held: Option<Held> = None;
        let store_timer = tokio::time::sleep(STORE_DELAY);
        tokio::pin!(store_timer);
        let mut store_armed = false;
        let gated = self.transaction.is_some();
        loop {
            let waiting_lane = held.as_ref().map(|h| &self.lanes[h.lane].queue);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                () = gate_moved(&mut self.transaction), if gated => self.at_barrier().await,
                Some(event) = self.reports.recv() => self.lane_event(event),
                () = &mut store_timer, if store_armed => {
                    store_armed = false;
                    self.store();
                }
                () = room(waiting_lane), if held.is_some() => {
                    if let Some(Held { lane, message }) = held.take() {
                        held = self.hand_over(lane, message);
                    }
                }
                next = messages.recv(), if held.is_none() && self.in_flight() < self.window => match next {
                    Some(message) => held = self.route(message),
                    None => break,
                },
            }
            if self.progress.unstored() >= STORE_EVERY {
                self.store();
            } else if (self.progress.unstored() > 0 || self.finished_changed) && !store_armed {
                store_timer.as_mut().reset(Instant::now() + STORE_DELAY);
                store_armed = true;
            }
        }
        if let Some(Held { message, .. }) = held {
            self.progress.release_undispatched(message.held_bytes());
        }
        self.finish(messages).await;
    }

    /// Gives `message` its tracker entry and hands it to its lane; returns it when the lane's
    /// queue is full.
    fn route(&mut self, message: Message) -> Option<Held> {
        if let Some(gate) = &mut self.transaction {
            gate.dispatched(message.offset);
        }
        if self.progress.watermark().is_none() {
            self.progress.resumes_at(message.offset);
            // Metadata committed with another offset than where this owner starts is stale.
            if self
                .resume
                .as_ref()
                .is_some_and(|r| r.next != message.offset)
            {
                self.resume = None;
            }
        }
        if self.resume.is_some() && self.finished_before(&message) {
            return None;
        }
        let lane = lane_of(&message, self.lanes.len());
        // The router's entry holds no bytes: the lane's own entry counts them.
        let ticket = self.progress.dispatch(message.offset, 0);
        self.unfinished[lane].push_back((message.offset, ticket));
        self.hand_over(lane, message)
    }

    fn hand_over(&mut self, lane: usize, message: Message) -> Option<Held> {
        match self.lanes[lane].queue.try_send(message) {
            Ok(_) => None,
            Err(TrySendError::Full(message)) => Some(Held { lane, message }),
            Err(TrySendError::Closed(message)) => {
                // The lane stopped (the partition is stopping): the record stays unfinished.
                self.progress.release_undispatched(message.held_bytes());
                None
            }
        }
    }

    /// Reads what a previous owner finished above the committed offset (a round trip to the
    /// broker, off the runtime's threads).
    async fn read_resume(&self) -> Option<Resume> {
        let offsets = Arc::clone(&self.offsets);
        let partition = self.partition.clone();
        let metadata = tokio::task::spawn_blocking(move || offsets.committed_metadata(&partition))
            .await
            .ok()??;
        let resume = Resume::parse(&metadata)?;
        tracing::info!(
            "{}: {} records above the committed offset {} were finished by its previous owner (commit metadata): they are skipped",
            self.partition,
            resume.finished.len(),
            resume.next,
        );
        Some(resume)
    }

    /// Whether a previous owner finished `message` (see [`Resume`]): then its entry finishes
    /// at once and it is not handled again. Metadata of another starting point is dropped.
    fn finished_before(&mut self, message: &Message) -> bool {
        let Some(resume) = &mut self.resume else {
            return false;
        };
        if message.offset < resume.next {
            self.resume = None;
            return false;
        }
        if !resume.finished.remove(&message.offset) {
            return false;
        }
        if resume.finished.is_empty() {
            self.resume = None;
        }
        let ticket = self.progress.dispatch(message.offset, 0);
        self.progress
            .decide(ticket, PendingAck::new(message.offset));
        self.progress.release_undispatched(message.held_bytes());
        self.progress.collect_ready();
        self.finished_changed = true;
        true
    }

    /// Hands the watermark on, with the records finished above it as the commit's metadata,
    /// when either changed.
    fn store(&mut self) {
        let moved = self.progress.committable().is_some();
        if !moved && !self.finished_changed {
            return;
        }
        self.finished_changed = false;
        let Some(done) = self.progress.watermark() else {
            return;
        };
        let mut finished = self.progress.finished_above().peekable();
        if finished.peek().is_none() {
            self.offsets.store(&self.partition, done);
            return;
        }
        let metadata = encode_finished(done + 1, finished);
        self.offsets
            .store_with_metadata(&self.partition, done, &metadata);
    }

    fn lane_event(&mut self, event: LaneEvent) {
        match event {
            LaneEvent::Finished(lane, offset) => self.lane_finished(lane, offset),
            LaneEvent::Reached(lane, barrier) => {
                if let Some(reached) = self.lanes_reached.get_mut(lane) {
                    *reached = barrier;
                }
            }
        }
    }

    /// The member's commit barrier moved. Closed for a commit this router has not reached:
    /// it waits until every lane reached it (each lane's last watermark arrives before),
    /// stores the partition's watermark with the records finished above it, and reports.
    async fn at_barrier(&mut self) {
        let Some(barrier) = self
            .transaction
            .as_ref()
            .filter(|gate| gate.barrier_waiting())
            .map(TransactionGate::epoch)
        else {
            return;
        };
        while self.lanes_reached.iter().any(|reached| *reached < barrier) {
            tokio::select! {
                biased;
                // Its gate leaves with it: the coordinator stops waiting for it.
                _ = self.stop.cancelled() => return,
                event = self.reports.recv() => match event {
                    Some(event) => self.lane_event(event),
                    None => return,
                },
            }
        }
        self.store();
        if let Some(gate) = &mut self.transaction {
            gate.reached();
        }
    }

    /// Lane `lane` finished its records up to `offset`: their entries are decided.
    fn lane_finished(&mut self, lane: usize, offset: i64) {
        let Some(unfinished) = self.unfinished.get_mut(lane) else {
            return;
        };
        while let Some(&(next, ticket)) = unfinished.front() {
            if next > offset {
                break;
            }
            unfinished.pop_front();
            self.progress.decide(ticket, PendingAck::new(next));
        }
        self.progress.collect_ready();
        self.finished_changed = true;
    }

    /// Stops the lanes (a stop signal reaches them through their own tokens; the end of the
    /// partition's records through their queues), waits for them to finish and report, and
    /// stores the partition's last watermark. What is left in the partition's queue leaves
    /// the memory budget.
    async fn finish(mut self, mut messages: QueueReceiver) {
        let tasks: Vec<LaneTask> = self.lanes.drain(..).map(|lane| lane.task).collect();
        for mut task in tasks {
            // A lane that panicked reported what it finished before.
            let _ = (&mut task.0).await;
        }
        while let Ok(event) = self.reports.try_recv() {
            self.lane_event(event);
        }
        self.store();
        messages.close();
        while let Ok(message) = messages.try_recv() {
            self.progress.release_undispatched(message.held_bytes());
        }
    }
}

/// Waits for room in `queue` (never, without one).
async fn room(queue: Option<&QueueSender>) {
    match queue {
        Some(queue) => queue.room().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::partition_queue;
    use std::sync::Mutex;

    /// Each store: the offset, and the metadata stored with it.
    #[derive(Default)]
    struct Stored(Mutex<Vec<(i64, Option<String>)>>);

    impl OffsetStore for Stored {
        fn store(&self, _partition: &TopicPartition, offset: i64) {
            self.0.lock().unwrap().push((offset, None));
        }

        fn store_with_metadata(&self, _partition: &TopicPartition, offset: i64, metadata: &str) {
            self.0
                .lock()
                .unwrap()
                .push((offset, Some(metadata.to_owned())));
        }
    }

    #[tokio::test]
    async fn the_watermark_passes_only_records_every_lane_finished() {
        let stored = Arc::new(Stored::default());
        let (queues, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| partition_queue(8)).unzip();
        let mut router = router_over(queues, &stored);
        // Offsets 0..6, keys spread over both lanes.
        let mut lane_of_offset = Vec::new();
        for offset in 0..6 {
            let mut message = keyed(&format!("k{offset}"));
            message.offset = offset;
            lane_of_offset.push(lane_of(&message, 2));
            assert!(router.route(message).is_none(), "room in the lane");
        }
        assert!(lane_of_offset.contains(&0) && lane_of_offset.contains(&1));
        assert_eq!(router.in_flight(), 6);
        // The lane of offset 0 has finished nothing; the other lane finishes everything.
        let other = 1 - lane_of_offset[0];
        router.lane_finished(other, 5);
        router.store();
        let (offset, metadata) = stored.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!(offset, -1, "offset 0 is unfinished: nothing past it");
        let resume = Resume::parse(&metadata.unwrap()).unwrap();
        let by_other: HashSet<i64> = (0..6)
            .filter(|&o| lane_of_offset[o as usize] == other)
            .collect();
        assert_eq!(
            (resume.next, resume.finished),
            (0, by_other),
            "the other lane's records"
        );
        router.lane_finished(lane_of_offset[0], 5);
        router.store();
        assert_eq!(stored.0.lock().unwrap().last(), Some(&(5, None)));
        assert_eq!(router.in_flight(), 0, "every lane idle");
        drop(receivers);
    }

    /// A router of partition `in`[0] over lanes fed by `queues` (their workers do nothing:
    /// the tests report for them), storing into `stored`.
    fn router_over(queues: Vec<QueueSender>, stored: &Arc<Stored>) -> LaneRouter {
        let lanes: Vec<Lane> = queues
            .into_iter()
            .map(|queue| Lane {
                queue,
                task: LaneTask(tokio::spawn(async {})),
            })
            .collect();
        let (_stores, reports) = lane_reports(lanes.len());
        LaneRouter::new(
            TopicPartition::new("in", 0),
            lanes,
            reports,
            Arc::clone(stored) as Arc<dyn OffsetStore>,
            Arc::new(BufferBudget::new(1 << 20)),
            CancellationToken::new(),
        )
    }

    fn keyed(key: &str) -> Message {
        let mut message = Message::new("in", "x");
        message.key = Some(bytes::Bytes::copy_from_slice(key.as_bytes()));
        message
    }

    #[tokio::test]
    async fn records_finished_before_a_restart_are_skipped() {
        let stored = Arc::new(Stored::default());
        let (queue, mut records) = partition_queue(8);
        let mut router = router_over(vec![queue], &stored);
        router.resume = Resume::parse(&encode_finished(10, [12, 13].into_iter()));
        for offset in 10..15 {
            let mut message = keyed("k");
            message.offset = offset;
            assert!(router.route(message).is_none());
        }
        let handed: Vec<i64> = std::iter::from_fn(|| records.try_recv().ok())
            .map(|m| m.offset)
            .collect();
        assert_eq!(handed, [10, 11, 14], "12 and 13 were finished before");
        assert!(router.resume.is_none(), "every skipped record passed");
        router.lane_finished(0, 14);
        router.store();
        assert_eq!(stored.0.lock().unwrap().last(), Some(&(14, None)));
        // Metadata stored with a later committed offset names nothing here: dropped at once.
        router.resume = Resume::parse(&encode_finished(20, [22].into_iter()));
        let mut message = keyed("k");
        message.offset = 15;
        assert!(router.route(message).is_none());
        assert!(router.resume.is_none());
        assert_eq!(records.try_recv().map(|m| m.offset).ok(), Some(15));
    }

    #[test]
    fn one_key_one_lane_and_keys_spread_over_every_lane() {
        let lanes = 16;
        let mut used = vec![0_usize; lanes];
        for n in 0..10_000 {
            let message = keyed(&format!("key-{n}"));
            let lane = lane_of(&message, lanes);
            assert_eq!(
                lane,
                lane_of(&message, lanes),
                "the same key, the same lane"
            );
            used[lane] += 1;
        }
        assert!(
            used.iter().all(|&n| n > 10_000 / lanes / 2),
            "every lane gets about its share: {used:?}"
        );
        assert_eq!(
            lane_of(&Message::new("in", "x"), lanes),
            0,
            "keyless: lane 0"
        );
    }
}
