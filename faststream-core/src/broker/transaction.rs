//! Transactions outside handlers: several records published all or nothing
//! ([`Broker::begin_transaction`](super::Broker::begin_transaction)).

use crate::error::{Error, PublishError, Result};
use crate::message::record::{Delivered, Record};
use futures::future::BoxFuture;
use std::sync::Arc;

/// A backend's open transaction, behind a [`Transaction`].
pub trait OpenTransaction: Send {
    /// Hands `record` to the transaction's producer; its acknowledgement is awaited by the
    /// commit.
    fn send(&mut self, record: Record) -> BoxFuture<'_, Result<(), PublishError>>;

    /// Waits for every record sent, then commits: all of them become visible to
    /// `read_committed` readers at once. Where each landed, in the order sent. A failure
    /// aborts the transaction (nothing is visible) before it is returned.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<Vec<Delivered>>>;

    /// Aborts: nothing sent is ever visible to `read_committed` readers.
    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
}

/// Records published all or nothing: [`commit`](Transaction::commit) makes every one of them
/// visible to `read_committed` readers at once; [`abort`](Transaction::abort), a failed
/// commit or dropping the transaction unfinished makes none of them visible, ever. A broker
/// runs one transaction at a time: [`Broker::begin_transaction`](super::Broker::begin_transaction)
/// waits while another is open.
///
/// ```no_run
/// use faststream_core::{Broker, Record};
///
/// async fn move_stock(broker: &impl Broker) -> faststream_core::Result<()> {
///     let mut tx = broker.begin_transaction().await?;
///     tx.publish(serde_json::json!({"sku": "A-1", "delta": -1}), "stock-a").await?;
///     tx.publish_record(Record::encode("stock-b", &serde_json::json!({"sku": "A-1", "delta": 1}))?.key("A-1")).await?;
///     let landed = tx.commit().await?; // both, or (on an error) neither
///     assert_eq!(landed.len(), 2);
///     Ok(())
/// }
/// ```
#[must_use = "a transaction's records are visible only once it is committed"]
pub struct Transaction {
    open: Option<Box<dyn OpenTransaction>>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.open.is_some())
            .finish()
    }
}

impl Transaction {
    /// Wraps a backend's open transaction.
    pub fn new(open: Box<dyn OpenTransaction>) -> Self {
        Self { open: Some(open) }
    }

    /// Publishes `value` to `topic` in the transaction, encoded as [`Broker::publish`] does.
    ///
    /// [`Broker::publish`]: super::Broker::publish
    pub async fn publish(
        &mut self,
        value: impl serde::Serialize,
        topic: impl Into<Arc<str>>,
    ) -> Result<()> {
        let record = Record::encode(topic, &value)?;
        self.publish_record(record).await
    }

    /// Publishes `record` in the transaction. A refusal leaves the transaction unable to
    /// commit: abort it (or drop it).
    pub async fn publish_record(&mut self, record: Record) -> Result<()> {
        let open = self.open.as_mut().ok_or_else(finished)?;
        Ok(open.send(record).await?)
    }

    /// Commits: every record published becomes visible at once; where each landed, in order.
    /// On an error the transaction was aborted and none of them is visible.
    pub async fn commit(mut self) -> Result<Vec<Delivered>> {
        let open = self.open.take().ok_or_else(finished)?;
        open.commit().await
    }

    /// Aborts: none of the records published is ever visible to `read_committed` readers.
    pub async fn abort(mut self) -> Result<()> {
        let open = self.open.take().ok_or_else(finished)?;
        open.abort().await
    }
}

fn finished() -> Error {
    Error::config_msg("the transaction is already committed or aborted")
}

impl Drop for Transaction {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        tracing::warn!("a transaction was dropped without commit or abort: aborting it");
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = open.abort().await {
                        tracing::error!("aborting a dropped transaction failed: {err}");
                    }
                });
            }
            Err(_) => tracing::error!(
                "no runtime to abort the dropped transaction on: its records stay invisible until the broker's transaction timeout"
            ),
        }
    }
}
