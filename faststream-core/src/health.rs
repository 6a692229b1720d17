//! What a running app reports about itself: per subscriber, its state, assigned partitions,
//! lag and how long its oldest in-flight message has gone unfinished; and whether the
//! broker connection is up. [`AppHealth::is_ready`] is what a readiness probe asks.
//!
//! The partition workers publish a few counters (relaxed atomic stores, no clock read per
//! message); the backend reports assignment, lag and connectivity through
//! [`crate::broker::Subscription::health`] and [`crate::Broker::connection`]. Everything is
//! put together only when [`crate::RunningApp::health`] is called.

use serde::Serialize;
use std::time::Duration;

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
    /// Its partitions' lanes (a subscriber with [`crate::SubscriberConfig::lanes`] above 1;
    /// empty otherwise).
    pub lanes: Vec<LaneHealth>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
}

/// One lane of a partition ([`crate::SubscriberConfig::lanes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneHealth {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The lane's index, 0-based.
    pub lane: usize,
    /// How long the lane's oldest unfinished record has gone without the lane finishing it.
    #[serde(serialize_with = "seconds")]
    pub oldest_in_flight: Duration,
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
                lanes: vec![],
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
}
