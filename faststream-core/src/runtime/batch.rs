//! The batch assembler: groups one partition's records into batch messages for its worker
//! (see [`crate::batch`]).

use crate::broker::{BufferBudget, QueueReceiver, QueueSender, TryRecvError};
use crate::config::batch::BatchConfig;
use crate::message::Message;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Groups one partition's records into batch messages for its worker (see the module docs).
/// Ends when the backend closes `records`, the worker is gone, or `stop` fires; records it
/// drops unhandled leave `budget`.
pub(crate) async fn assemble(
    config: BatchConfig,
    mut records: QueueReceiver,
    batches: QueueSender,
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
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if config.timeout.is_zero() => break,
                Err(TryRecvError::Empty) => {}
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
    use crate::broker::partition_queue;
    use std::time::Duration;

    fn record(offset: i64) -> Message {
        let mut m = Message::new("in", offset.to_string());
        m.offset = offset;
        m
    }

    fn offsets(message: &Message) -> Vec<i64> {
        message
            .batch()
            .map(|b| b.iter().map(|m| m.offset).collect())
            .unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_close_at_max_records_or_after_the_timeout() {
        let (tx, rx) = partition_queue(16);
        let (batch_tx, mut batches) = partition_queue(1);
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
        let (tx, rx) = partition_queue(16);
        let (batch_tx, mut batches) = partition_queue(1);
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
        let rest = batch.batch().unwrap().rest_from(1).unwrap();
        assert_eq!(offsets(&rest), [4]);
        assert!(batch.batch().unwrap().rest_from(2).is_none());
    }

    #[test]
    fn a_batch_takes_its_first_records_correlation_id_as_faststream_does() {
        let mut first = record(3);
        first.headers.insert("correlation_id", "c-3");
        let mut second = record(4);
        second.headers.insert("correlation_id", "c-4");
        let batch = Message::batch_of(vec![first, second]).unwrap();
        assert_eq!(batch.correlation_id(), Some("c-3"));
    }
}
