//! Positions in a partition's log: where reading starts ([`StartFrom`]), and moving a running
//! subscriber to another one ([`Seek`], answered with where each partition now reads from,
//! [`Sought`]).
//!
//! A backend that can seek hands out a [`SeekPartitions`] for each subscription; the app's
//! `RunningApp::seek` and the handlers' `Seeker` extractor both go through it.

use super::TopicPartition;
use crate::error::Result;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Where a partition reads from: where a subscriber with explicit partitions
/// ([`SubscriberConfig::partitions`](crate::SubscriberConfig::partitions)) starts, or where a
/// [`Seek`] moves a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Where the group last committed, else as
    /// [`SubscriberConfig::auto_offset_reset`](crate::SubscriberConfig::auto_offset_reset)
    /// says. For a seek: back to the group's committed offset (an error when there is none).
    #[default]
    Committed,
    /// The oldest retained record.
    Earliest,
    /// The next record produced.
    Latest,
    /// This offset (clamped into the retained range).
    Offset(i64),
    /// The first record with a timestamp at or after this one (milliseconds since the Unix
    /// epoch), or the end when there is none.
    Timestamp(i64),
}

/// Which of a subscriber's partitions a [`Seek`] moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekScope {
    /// Every partition the subscriber owns now.
    All,
    /// Every partition of this topic the subscriber owns now.
    Topic(Arc<str>),
    /// These partitions; the seek fails, moving none, unless the subscriber owns all of them.
    Partitions(Vec<TopicPartition>),
}

/// A request to move a running subscriber's partitions: their in-flight work is dropped
/// (not committed), the next record each one hands its handler is the one sought, and the
/// sought offset becomes the partition's committed position.
///
/// ```
/// use faststream_core::seek::{Seek, SeekScope};
/// use faststream_core::StartFrom;
///
/// let replay = Seek::all(StartFrom::Timestamp(1_700_000_000_000));
/// let one = Seek::partition("orders", 2, StartFrom::Offset(40));
/// assert_eq!(replay.scope, SeekScope::All);
/// assert_eq!(one.to, StartFrom::Offset(40));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seek {
    /// The partitions moved.
    pub scope: SeekScope,
    /// Where they read from next.
    pub to: StartFrom,
}

impl Seek {
    /// Every partition the subscriber owns, to `to`.
    pub fn all(to: StartFrom) -> Self {
        Self {
            scope: SeekScope::All,
            to,
        }
    }

    /// Every partition of `topic` the subscriber owns, to `to`.
    pub fn topic(topic: impl Into<Arc<str>>, to: StartFrom) -> Self {
        Self {
            scope: SeekScope::Topic(topic.into()),
            to,
        }
    }

    /// One partition, to `to`.
    pub fn partition(topic: impl Into<Arc<str>>, partition: i32, to: StartFrom) -> Self {
        Self::partitions([TopicPartition::new(topic, partition)], to)
    }

    /// These partitions, to `to`.
    pub fn partitions(partitions: impl IntoIterator<Item = TopicPartition>, to: StartFrom) -> Self {
        Self {
            scope: SeekScope::Partitions(partitions.into_iter().collect()),
            to,
        }
    }

    /// Picks the partitions this seek moves among those `owned`, in `owned`'s order. A
    /// partition asked for by name that is not owned (never assigned, or revoked) is an
    /// error naming it, and nothing moves.
    pub fn select(
        &self,
        subscriber: &str,
        owned: &[TopicPartition],
    ) -> Result<Vec<TopicPartition>> {
        match &self.scope {
            SeekScope::All => Ok(owned.to_vec()),
            SeekScope::Topic(topic) => Ok(owned
                .iter()
                .filter(|tp| tp.topic == *topic)
                .cloned()
                .collect()),
            SeekScope::Partitions(wanted) => {
                if let Some(missing) = wanted.iter().find(|tp| !owned.contains(tp)) {
                    return Err(crate::Error::NotOwned {
                        subscriber: subscriber.to_owned(),
                        partition: missing.to_string(),
                        owned: owned.iter().map(ToString::to_string).collect(),
                    });
                }
                Ok(wanted.clone())
            }
        }
    }
}

/// Where a partition reads from after a [`Seek`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sought {
    /// The partition moved.
    pub partition: TopicPartition,
    /// The offset of the next record its handler gets (and its committed position).
    pub offset: i64,
}

/// A subscription's ability to seek, handed out by a backend that has it (see
/// `Subscription::seeker`).
pub trait SeekPartitions: Send + Sync {
    /// Moves the partitions `seek` names; where each reads from now, in no set order.
    fn seek(&self, seek: Seek) -> BoxFuture<'static, Result<Vec<Sought>>>;
}
