//! The backend's side of an exactly-once subscriber: one transactional producer per group
//! member, whose transactions carry the member's outputs together with its input offsets
//! (Kafka's consume-transform-produce, KIP-447).
//!
//! The runtime decides *when* to commit: at a barrier, with every partition worker of the
//! member idle and its watermark known (see `SubscriberConfig::exactly_once`). The backend
//! decides *how*: [`MemberTransactions::commit`] hands the offsets to the open transaction
//! and commits it; [`MemberTransactions::abort`] throws it away. Both leave the next
//! transaction open, so the member's publisher always has one to write into.

use crate::error::{Error, Result};
use crate::message::TopicPartition;
use futures::future::BoxFuture;
use std::sync::Arc;

/// A group member's transactions (Kafka: one transactional producer with a `transactional.id`
/// stable across restarts, and the consumer's group metadata for
/// `send_offsets_to_transaction`).
pub trait MemberTransactions: Send + Sync {
    /// Commits the open transaction with `offsets` (per partition, the next offset to read)
    /// as the group's committed offsets, all or nothing, then opens the next transaction.
    /// On an error nothing of the transaction is visible (the backend aborted it) and the
    /// next transaction is open, on a new producer if the old one was fenced.
    fn commit(&self, offsets: Vec<TransactionOffset>) -> BoxFuture<'static, Result<()>>;

    /// Aborts the open transaction (nothing it wrote is ever visible to `read_committed`
    /// readers) and opens the next, on a new producer if the old one was fenced.
    fn abort(&self) -> BoxFuture<'static, Result<()>>;

    /// The transactional id, for the start line and logs.
    fn id(&self) -> String;
}

/// One partition's offset in a transaction's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// The next offset to read: every record before it is done.
    pub next: i64,
    /// The commit's metadata (a partition with lanes names the records it finished above
    /// `next`, see [`OffsetStore::store_with_metadata`](super::OffsetStore::store_with_metadata)).
    pub metadata: Option<String>,
}

/// What [`Broker::exactly_once`](super::Broker::exactly_once) gives an exactly-once
/// subscriber: a publisher writing into the member's open transaction, and the member's
/// transactions.
pub struct ExactlyOnce<P> {
    /// Publishes into the open transaction (the subscriber's outputs, replies, dead letters
    /// and retry records go through it).
    pub publisher: P,
    /// Commits and aborts the member's transactions.
    pub transactions: Arc<dyn MemberTransactions>,
}

impl<P> std::fmt::Debug for ExactlyOnce<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnce")
            .field("transactional_id", &self.transactions.id())
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// Set while an exactly-once subscriber's handler runs: the subscriber's name.
    static IN_TRANSACTION: Arc<str>;
}

/// Runs `call` as an exactly-once handler of `subscriber` (see [`refuse_request`]).
pub(crate) async fn in_transaction<F: std::future::Future>(
    subscriber: Arc<str>,
    call: F,
) -> F::Output {
    IN_TRANSACTION.scope(subscriber, call).await
}

/// An error when called from an exactly-once subscriber's handler: a request's reply is
/// written by another service only after it read the request, and the request is invisible
/// to `read_committed` readers until this handler's transaction commits, which waits for the
/// handler. Backends call this first in [`Broker::request`](crate::Broker::request).
pub fn refuse_request() -> Result<()> {
    match IN_TRANSACTION.try_with(Arc::clone) {
        Ok(subscriber) => Err(Error::config_msg(format!(
            "request() from the exactly-once subscriber `{subscriber}` is refused: the request is written in the handler's transaction, invisible until it commits, and it commits only after the handler returned, so the reply could never come; publish the request as an output and handle the reply in a subscriber"
        ))),
        Err(_) => Ok(()),
    }
}
