//! Batch subscribers: a partition's records handed to one handler call as a batch.
//!
//! A subscriber with [`SubscriberConfig::batch`](crate::SubscriberConfig::batch) gets, per
//! partition, an assembler between the backend and the partition worker. It groups the
//! partition's records, in order, into one [`Message`] carrying a [`Batch`]: delivered once it
//! holds `max_records` records, or `timeout` after its first record arrived, whichever comes
//! first. From there the batch takes the one message path like any message: the handler
//! decodes it (a `Vec<T>` payload decodes every record, see [`crate::codec::decode_batch`]),
//! its reply is published, and its progress entry is the batch's last offset, so the offsets
//! advance only after the whole batch is done.
//!
//! A failing batch follows the error policy as a whole (retried, dead-lettered record by
//! record, skipped or stopped), unless the handler names the record that failed with
//! [`BatchFailed`]: then the records before it are done, the failed one follows the policy
//! alone, and the ones after it come again as the next batch (as Spring's
//! `BatchListenerFailedException`).

use crate::broker::BufferBudget;
use crate::message::Message;
use crate::middleware::BoxError;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a batch subscriber groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// At most this many records per batch (at least 1).
    pub max_records: usize,
    /// How long a batch waits for more records after its first one arrived. Zero: a batch is
    /// whatever is queued when its first record arrives.
    pub timeout: Duration,
}

impl BatchConfig {
    /// FastStream's default batch timeout (`batch_timeout_ms=200`).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
}

/// The records of one batch delivery, in offset order, all from one partition (never empty).
///
/// Take it as a handler parameter to see each record's offset, key and headers next to the
/// decoded payloads:
///
/// ```
/// use faststream_core::batch::Batch;
/// async fn store(amounts: Vec<i64>, batch: Batch) {
///     for (amount, record) in amounts.iter().zip(batch.iter()) {
///         println!("{amount} from {}[{}]@{}", record.topic, record.partition, record.offset);
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch(Arc<[Message]>);

impl Batch {
    /// The records.
    pub fn records(&self) -> &[Message] {
        &self.0
    }

    /// The first record's offset.
    pub fn first_offset(&self) -> i64 {
        self.0.first().map_or(0, |m| m.offset)
    }

    /// The last record's offset.
    pub fn last_offset(&self) -> i64 {
        self.0.last().map_or(0, |m| m.offset)
    }

    /// The records from `index` on, as a batch message (`None` when none are left).
    pub(crate) fn rest_from(&self, index: usize) -> Option<Message> {
        let rest = self.0.get(index..).filter(|rest| !rest.is_empty())?;
        Message::batch_of(rest.to_vec())
    }

    /// The bytes its records hold against the subscriber's budget.
    pub(crate) fn held_bytes(&self) -> usize {
        self.0.iter().map(Message::held_bytes).sum()
    }
}

impl Deref for Batch {
    type Target = [Message];

    fn deref(&self) -> &[Message] {
        &self.0
    }
}

impl Message {
    /// One message standing for a batch of `records` of one partition (in offset order):
    /// its topic and partition are theirs, its offset and timestamp the last record's (where
    /// the batch's progress is counted), its payload, key and headers empty. `None` when
    /// `records` is empty.
    ///
    /// ```
    /// use faststream_core::Message;
    /// let records = (3..6).map(|offset| {
    ///     let mut m = Message::new("orders", offset.to_string());
    ///     m.offset = offset;
    ///     m
    /// });
    /// let batch = Message::batch_of(records.collect()).unwrap();
    /// assert_eq!(batch.offset, 5);
    /// assert_eq!(batch.batch.as_ref().map(|b| b.len()), Some(3));
    /// ```
    pub fn batch_of(records: Vec<Message>) -> Option<Message> {
        let last = records.last()?;
        Some(Message {
            topic: Arc::clone(&last.topic),
            partition: last.partition,
            offset: last.offset,
            timestamp: last.timestamp,
            key: None,
            payload: bytes::Bytes::new(),
            headers: crate::Headers::new(),
            batch: Some(Batch(records.into())),
        })
    }

    /// The records it stands for: a batch's records, else the message itself.
    pub fn records(&self) -> &[Message] {
        match &self.batch {
            Some(batch) => batch.records(),
            None => std::slice::from_ref(self),
        }
    }

    /// Where the message is, for log lines: `topic[partition]@offset`, or
    /// `topic[partition]@first..=last` for a batch.
    pub fn position(&self) -> Position<'_> {
        Position(self)
    }
}

/// A message's place in its partition, as log lines name it (see [`Message::position`]).
#[derive(Debug, Clone, Copy)]
pub struct Position<'a>(&'a Message);

impl std::fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        match &m.batch {
            Some(batch) if batch.len() > 1 => write!(
                f,
                "{}[{}]@{}..={}",
                m.topic,
                m.partition,
                batch.first_offset(),
                batch.last_offset()
            ),
            _ => write!(f, "{}[{}]@{}", m.topic, m.partition, m.offset),
        }
    }
}

/// A batch handler's error naming the record that failed: the records before it are done,
/// the failed one follows the error policy alone, and the ones after it come again as the
/// next batch.
///
/// ```
/// use faststream_core::batch::BatchFailed;
/// async fn store(amounts: Vec<i64>) -> Result<(), BatchFailed> {
///     for (index, amount) in amounts.iter().enumerate() {
///         if *amount < 0 {
///             return Err(BatchFailed::at(index, format!("negative amount {amount}")));
///         }
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("record {index} of the batch failed: {source}")]
pub struct BatchFailed {
    /// The failed record's index in the batch.
    pub index: usize,
    /// Why it failed.
    #[source]
    pub source: BoxError,
}

impl BatchFailed {
    /// Record `index` of the batch failed because of `error`.
    pub fn at(index: usize, error: impl Into<BoxError>) -> Self {
        Self {
            index,
            source: error.into(),
        }
    }
}

/// Groups one partition's records into batch messages for its worker (see the module docs).
/// Ends when the backend closes `records`, the worker is gone, or `stop` fires; records it
/// drops unhandled leave `budget`.
pub(crate) async fn assemble(
    config: BatchConfig,
    mut records: mpsc::Receiver<Message>,
    batches: mpsc::Sender<Message>,
    budget: Arc<BufferBudget>,
    stop: CancellationToken,
) {
    let max_records = config.max_records.max(1);
    'batches: loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            next = records.recv() => match next {
                Some(record) => record,
                None => break,
            },
        };
        let deadline = Instant::now() + config.timeout;
        let mut batch = Vec::with_capacity(max_records.min(1024));
        batch.push(first);
        while batch.len() < max_records {
            match records.try_recv() {
                Ok(record) => {
                    batch.push(record);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) if config.timeout.is_zero() => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    release(&budget, &batch);
                    break 'batches;
                }
                () = tokio::time::sleep_until(deadline) => break,
                next = records.recv() => match next {
                    Some(record) => batch.push(record),
                    None => break,
                },
            }
        }
        let Some(message) = Message::batch_of(batch) else {
            continue;
        };
        let held = message.held_bytes();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                budget.release(held);
                break;
            }
            sent = batches.send(message) => {
                if sent.is_err() {
                    budget.release(held);
                    break;
                }
            }
        }
    }
    // What the backend queued and no batch took no longer counts against the budget.
    records.close();
    while let Ok(record) = records.try_recv() {
        budget.release(record.held_bytes());
    }
}

fn release(budget: &BufferBudget, records: &[Message]) {
    budget.release(records.iter().map(Message::held_bytes).sum());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64) -> Message {
        let mut m = Message::new("in", offset.to_string());
        m.offset = offset;
        m
    }

    fn offsets(message: &Message) -> Vec<i64> {
        message
            .batch
            .as_ref()
            .map(|b| b.iter().map(|m| m.offset).collect())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_close_at_max_records_or_after_the_timeout() {
        let (tx, rx) = mpsc::channel(16);
        let (batch_tx, mut batches) = mpsc::channel(1);
        let budget = Arc::new(BufferBudget::new(1 << 20));
        let stop = CancellationToken::new();
        let config = BatchConfig {
            max_records: 3,
            timeout: Duration::from_millis(500),
        };
        let task = tokio::spawn(assemble(
            config,
            rx,
            batch_tx,
            Arc::clone(&budget),
            stop.clone(),
        ));
        for offset in 0..5 {
            tx.send(record(offset)).await.unwrap();
        }
        let full = batches.recv().await.unwrap();
        assert_eq!(offsets(&full), [0, 1, 2], "closed at max_records");
        assert_eq!(full.offset, 2, "progress counts at the last offset");
        let started = Instant::now();
        let partial = batches.recv().await.unwrap();
        assert_eq!(offsets(&partial), [3, 4]);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(500),
            "closed by the timeout"
        );
        // A stop drops the batch being built and releases its bytes.
        budget.hold(record(5).held_bytes());
        tx.send(record(5)).await.unwrap();
        tokio::task::yield_now().await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_timeout_delivers_what_is_queued() {
        let (tx, rx) = mpsc::channel(16);
        let (batch_tx, mut batches) = mpsc::channel(1);
        let config = BatchConfig {
            max_records: 100,
            timeout: Duration::ZERO,
        };
        let budget = Arc::new(BufferBudget::new(1 << 20));
        tokio::spawn(assemble(
            config,
            rx,
            batch_tx,
            budget,
            CancellationToken::new(),
        ));
        tx.send(record(7)).await.unwrap();
        tx.send(record(8)).await.unwrap();
        let batch = batches.recv().await.unwrap();
        assert!(!offsets(&batch).is_empty());
        assert_eq!(offsets(&batch)[0], 7);
    }

    #[test]
    fn positions_name_a_batch_by_its_offsets() {
        let batch = Message::batch_of(vec![record(3), record(4)]).unwrap();
        assert_eq!(batch.position().to_string(), "in[0]@3..=4");
        assert_eq!(record(9).position().to_string(), "in[0]@9");
        let rest = batch.batch.as_ref().unwrap().rest_from(1).unwrap();
        assert_eq!(offsets(&rest), [4]);
        assert!(batch.batch.as_ref().unwrap().rest_from(2).is_none());
    }
}
