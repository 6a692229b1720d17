//! The worker side of health: counters each partition worker updates, read when the app's
//! health is reported.

use crate::broker::BufferBudget;
use crate::health::{LaneHealth, SubscriberHealth, SubscriberState, SubscriptionHealth};
use crate::message::TopicPartition;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Counters one partition worker publishes.
#[derive(Debug)]
pub(crate) struct PartitionStats {
    /// The last offset handed to the handler (-1: none yet).
    taken: AtomicI64,
    /// The last offset stored as finished (-1: none yet).
    done: AtomicI64,
    /// When the partition last made progress or went from idle to busy, as milliseconds
    /// since the subscriber's clock base.
    progress_at: AtomicU64,
    retrying: AtomicBool,
    halted: AtomicBool,
    base: Instant,
    /// The partition and lane index of a lane's worker (`None`: a whole partition's).
    lane: Option<(TopicPartition, usize)>,
}

impl PartitionStats {
    /// A message starts its first attempt.
    #[inline]
    pub(crate) fn took(&self, offset: i64) {
        // Idle until now (everything taken was finished and stored): the stall clock starts
        // here. While messages flow the stored watermark trails what was taken and moves with
        // every store, so this reads the clock once per idle spell, not once per message.
        if self.taken.load(Ordering::Relaxed) <= self.done.load(Ordering::Relaxed) {
            self.mark_progress();
        }
        self.taken.store(offset, Ordering::Relaxed);
    }

    /// Offsets up to `offset` are finished (called per stored batch, not per message).
    pub(crate) fn finished(&self, offset: i64) {
        self.mark_progress();
        self.done.store(offset, Ordering::Relaxed);
    }

    fn mark_progress(&self) {
        let millis = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.progress_at.store(millis, Ordering::Relaxed);
    }

    pub(crate) fn set_retrying(&self, retrying: bool) {
        if self.retrying.load(Ordering::Relaxed) != retrying {
            self.retrying.store(retrying, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_halted(&self) {
        self.halted.store(true, Ordering::Relaxed);
    }

    /// How long the partition has had unfinished work without finishing any of it.
    fn stalled_for(&self) -> Duration {
        let taken = self.taken.load(Ordering::Relaxed);
        let done = self.done.load(Ordering::Relaxed);
        if taken <= done && !self.retrying.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.progress_at.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(since)
    }
}

/// One subscriber's worker-side counters: its partitions' stats (held weakly: a worker that
/// ended drops out) and the bytes of records it holds.
#[derive(Debug)]
pub(crate) struct SubscriberStats {
    partitions: Mutex<Vec<Weak<PartitionStats>>>,
    /// Bytes of consumed records held, from dispatch until they are finished.
    pub(crate) buffer: Arc<BufferBudget>,
}

impl SubscriberStats {
    pub(crate) fn new(max_buffer_bytes: usize) -> Self {
        Self {
            partitions: Mutex::new(Vec::new()),
            buffer: Arc::new(BufferBudget::new(max_buffer_bytes)),
        }
    }

    /// Counters for a newly spawned partition worker.
    pub(crate) fn partition(&self) -> Arc<PartitionStats> {
        self.register(None)
    }

    /// Counters for the worker of lane `index` of `partition`.
    pub(crate) fn lane(&self, partition: &TopicPartition, index: usize) -> Arc<PartitionStats> {
        self.register(Some((partition.clone(), index)))
    }

    fn register(&self, lane: Option<(TopicPartition, usize)>) -> Arc<PartitionStats> {
        let stats = Arc::new(PartitionStats {
            taken: AtomicI64::new(-1),
            done: AtomicI64::new(-1),
            progress_at: AtomicU64::new(0),
            retrying: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            base: Instant::now(),
            lane,
        });
        let mut all = self
            .partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        all.retain(|weak| weak.strong_count() > 0);
        all.push(Arc::downgrade(&stats));
        stats
    }

    /// Puts the worker side together with what the backend reports.
    pub(crate) fn report(&self, name: &str, backend: SubscriptionHealth) -> SubscriberHealth {
        let live: Vec<Arc<PartitionStats>> = self
            .partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let halted = live.iter().any(|p| p.halted.load(Ordering::Relaxed));
        let retrying = live.iter().any(|p| p.retrying.load(Ordering::Relaxed));
        let oldest_in_flight = live
            .iter()
            .map(|p| p.stalled_for())
            .max()
            .unwrap_or_default();
        let mut lanes: Vec<LaneHealth> = live
            .iter()
            .filter_map(|p| {
                let (partition, lane) = p.lane.as_ref()?;
                Some(LaneHealth {
                    topic: partition.topic.to_string(),
                    partition: partition.partition,
                    lane: *lane,
                    oldest_in_flight: p.stalled_for(),
                })
            })
            .collect();
        lanes.sort_by(|a, b| (&a.topic, a.partition, a.lane).cmp(&(&b.topic, b.partition, b.lane)));
        let state = if backend.failure.is_some() {
            SubscriberState::Failed
        } else if halted {
            SubscriberState::Stopped
        } else if !backend.joined {
            SubscriberState::Starting
        } else if retrying {
            SubscriberState::Retrying
        } else {
            SubscriberState::Consuming
        };
        SubscriberHealth {
            name: name.to_owned(),
            state,
            lag: backend.partitions.iter().filter_map(|p| p.lag).sum(),
            partitions: backend.partitions,
            oldest_in_flight,
            lanes,
            buffered_bytes: self.buffer.held(),
            failure: backend.failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_stalled_only_while_work_is_unfinished() {
        let stats = SubscriberStats::new(1024);
        let p = stats.partition();
        assert_eq!(p.stalled_for(), Duration::ZERO);
        p.took(0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.stalled_for() >= Duration::from_millis(20));
        p.finished(0);
        assert_eq!(p.stalled_for(), Duration::ZERO);
        // Idle for a while, then busy again: the stall is counted from the new message on.
        std::thread::sleep(Duration::from_millis(30));
        p.took(1);
        assert!(p.stalled_for() < Duration::from_millis(30));
        let report = stats.report(
            "s",
            SubscriptionHealth {
                joined: true,
                ..SubscriptionHealth::default()
            },
        );
        assert_eq!(report.state, SubscriberState::Consuming);
        p.set_halted();
        assert_eq!(
            stats.report("s", SubscriptionHealth::default()).state,
            SubscriberState::Stopped
        );
    }
}
