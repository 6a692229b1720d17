//! What a running app reports about itself: per subscriber, its state, assigned partitions,
//! lag and how long its oldest in-flight message has gone unfinished; and whether the
//! broker connection is up. [`AppHealth::is_ready`] is what a readiness probe asks.
//!
//! The partition workers publish a few counters (relaxed atomic stores, no clock read per
//! message); the backend reports assignment, lag and connectivity through
//! [`crate::broker::Subscription::health`] and [`crate::Broker::connection`]. Everything is
//! put together only when [`crate::RunningApp::health`] is called.

use crate::broker::BufferBudget;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The state of one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberState {
    /// Subscribed, but the group has not assigned it partitions yet.
    Starting,
    /// Assigned and handling messages (or idle, waiting for them).
    Consuming,
    /// A message waits for its next attempt under the error policy.
    Retrying,
    /// Stopped: the app is shutting down, or the error policy stopped a partition (its
    /// offset stays uncommitted until the app restarts).
    Stopped,
    /// Its consumer hit an error it cannot recover from.
    Failed,
}

/// One assigned partition of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionHealth {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Records in the partition after the last one finished here, if the backend knows.
    pub lag: Option<i64>,
}

/// What a backend reports about one subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionHealth {
    /// The group assigned partitions (possibly none) at least once.
    pub joined: bool,
    /// The partitions assigned now.
    pub partitions: Vec<PartitionHealth>,
    /// Why the consumer can no longer consume, if it cannot.
    pub failure: Option<String>,
}

/// One subscriber's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriberHealth {
    /// The subscriber's name.
    pub name: String,
    /// Its state.
    pub state: SubscriberState,
    /// Its assigned partitions.
    pub partitions: Vec<PartitionHealth>,
    /// The sum of its partitions' lags that are known.
    pub lag: i64,
    /// How long the oldest unfinished message of any of its partitions has gone without the
    /// partition finishing it (zero when nothing is in flight).
    #[serde(serialize_with = "seconds")]
    pub oldest_in_flight: Duration,
    /// Bytes of consumed records held in memory (queued, being handled, or waiting for
    /// their publishes), bounded by [`crate::SubscriberConfig::max_buffer_bytes`].
    pub buffered_bytes: usize,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// Whether the backend's connection to the broker is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionHealth {
    /// At least one broker answers.
    pub connected: bool,
    /// The last connection error, while disconnected.
    pub error: Option<String>,
}

impl Default for ConnectionHealth {
    fn default() -> Self {
        Self {
            connected: true,
            error: None,
        }
    }
}

/// The whole app's health, from [`crate::RunningApp::health`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppHealth {
    /// Every subscriber, in the order they were added.
    pub subscribers: Vec<SubscriberHealth>,
    /// The producer's connection.
    pub producer: ConnectionHealth,
    /// A message in flight longer than this makes the app not ready.
    #[serde(serialize_with = "seconds")]
    pub stuck_after: Duration,
    /// Why the app must stop, if the backend hit an error it cannot recover from.
    pub fatal: Option<String>,
}

impl AppHealth {
    /// Alive: nothing fatal happened (a liveness probe restarts the process otherwise).
    pub fn is_live(&self) -> bool {
        self.fatal.is_none()
            && self
                .subscribers
                .iter()
                .all(|s| s.state != SubscriberState::Failed)
    }

    /// Ready: every subscriber is assigned and consuming (or retrying), none has a message
    /// in flight longer than [`AppHealth::stuck_after`], and the producer is connected.
    pub fn is_ready(&self) -> bool {
        self.is_live() && self.producer.connected && self.not_ready_reasons().is_empty()
    }

    /// Why the app is not ready, one line per reason (empty when it is).
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(fatal) = &self.fatal {
            reasons.push(format!("fatal error: {fatal}"));
        }
        if !self.producer.connected {
            reasons.push(format!(
                "producer disconnected: {}",
                self.producer
                    .error
                    .as_deref()
                    .unwrap_or("no broker answers")
            ));
        }
        for s in &self.subscribers {
            match s.state {
                SubscriberState::Consuming | SubscriberState::Retrying => {}
                state => reasons.push(format!("subscriber `{}` is {state:?}", s.name)),
            }
            if s.oldest_in_flight > self.stuck_after {
                reasons.push(format!(
                    "subscriber `{}` has a message in flight for {:?} (limit {:?})",
                    s.name, s.oldest_in_flight, self.stuck_after
                ));
            }
        }
        reasons
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

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
}

impl PartitionStats {
    /// A message starts its first attempt. `idle`: nothing of the partition was unfinished.
    #[inline]
    pub(crate) fn took(&self, offset: i64, idle: bool) {
        if idle {
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
        let stats = Arc::new(PartitionStats {
            taken: AtomicI64::new(-1),
            done: AtomicI64::new(-1),
            progress_at: AtomicU64::new(0),
            retrying: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            base: Instant::now(),
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
            buffered_bytes: self.buffer.held(),
            failure: backend.failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(state: SubscriberState, in_flight: Duration) -> AppHealth {
        AppHealth {
            subscribers: vec![SubscriberHealth {
                name: "s".into(),
                state,
                partitions: vec![],
                lag: 0,
                oldest_in_flight: in_flight,
                buffered_bytes: 0,
                failure: None,
            }],
            producer: ConnectionHealth::default(),
            stuck_after: Duration::from_secs(60),
            fatal: None,
        }
    }

    #[test]
    fn ready_needs_consuming_subscribers_and_no_stuck_message() {
        assert!(health(SubscriberState::Consuming, Duration::ZERO).is_ready());
        assert!(health(SubscriberState::Retrying, Duration::from_secs(1)).is_ready());
        assert!(!health(SubscriberState::Starting, Duration::ZERO).is_ready());
        assert!(!health(SubscriberState::Stopped, Duration::ZERO).is_ready());
        let stuck = health(SubscriberState::Consuming, Duration::from_secs(61));
        assert!(stuck.is_live() && !stuck.is_ready());
        assert_eq!(stuck.not_ready_reasons().len(), 1);
        let mut down = health(SubscriberState::Consuming, Duration::ZERO);
        down.producer.connected = false;
        assert!(down.is_live() && !down.is_ready());
        let failed = health(SubscriberState::Failed, Duration::ZERO);
        assert!(!failed.is_live());
    }

    #[test]
    fn a_partition_is_stalled_only_while_work_is_unfinished() {
        let stats = SubscriberStats::new(1024);
        let p = stats.partition();
        assert_eq!(p.stalled_for(), Duration::ZERO);
        p.took(0, true);
        std::thread::sleep(Duration::from_millis(20));
        assert!(p.stalled_for() >= Duration::from_millis(20));
        p.finished(0);
        assert_eq!(p.stalled_for(), Duration::ZERO);
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
