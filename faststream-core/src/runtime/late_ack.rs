//! Manual acknowledgements decided after the handler returned (`AckPolicy::Manual`).
//!
//! Each record of a manual-ack subscriber gets its own [`AckSlot`]. A handler that returns
//! without deciding leaves its record's tracker entry undecided, so the watermark holds there;
//! what the worker needs to decide it later (its ticket, its publishes, its message) waits
//! here under the slot's id until the `Ack` the handler kept decides, or is dropped.

use crate::handler::extract::{AckDecision, AckSlot, LateAck, LateDecision};
use crate::message::TopicPartition;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The undecided records of one partition worker, each a `T`.
pub(crate) struct LateAcks<T> {
    to: mpsc::UnboundedSender<LateDecision>,
    from: mpsc::UnboundedReceiver<LateDecision>,
    next_id: u64,
    waiting: HashMap<u64, T>,
}

impl<T> LateAcks<T> {
    pub(crate) fn new() -> Self {
        let (to, from) = mpsc::unbounded_channel();
        Self {
            to,
            from,
            next_id: 0,
            waiting: HashMap::new(),
        }
    }

    /// A slot for the record at `offset` of `partition`, and its id.
    pub(crate) fn slot(&mut self, partition: &TopicPartition, offset: i64) -> (u64, Arc<AckSlot>) {
        let id = self.next_id;
        self.next_id += 1;
        let slot = AckSlot::deferrable(LateAck {
            id,
            to: self.to.clone(),
            partition: partition.clone(),
            offset,
        });
        (id, Arc::new(slot))
    }

    /// The record of slot `id` returned undecided: `held` waits for its decision.
    pub(crate) fn wait(&mut self, id: u64, held: T) {
        self.waiting.insert(id, held);
    }

    /// Records waiting for a decision.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// The next record decided late, with its decision ([`AckDecision::Undecided`]: its
    /// `Ack` was dropped). Cancel-safe.
    pub(crate) async fn next(&mut self) -> (T, AckDecision) {
        loop {
            // Never `None`: this end holds a sender.
            let Some((id, decision)) = self.from.recv().await else {
                return std::future::pending().await;
            };
            // (A decision for a record not waiting here, e.g. one that failed, is ignored.)
            if let Some(held) = self.waiting.remove(&id) {
                return (held, decision);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::extract::Ack;

    #[tokio::test]
    async fn a_decision_after_the_handler_returned_reaches_the_worker() {
        let mut late = LateAcks::new();
        let tp = TopicPartition::new("in", 0);
        let (id, slot) = late.slot(&tp, 7);
        assert_eq!(slot.wait_for_decision(), AckDecision::Undecided);
        late.wait(id, "record 7");
        let ack = Ack::of(&slot);
        drop(slot);
        tokio::spawn(async move { ack.ack() }).await.unwrap();
        assert_eq!(late.next().await, ("record 7", AckDecision::Ack));
        assert_eq!(late.len(), 0);
    }

    #[tokio::test]
    async fn an_ack_dropped_undecided_is_reported_once() {
        let mut late = LateAcks::new();
        let tp = TopicPartition::new("in", 0);
        let (id, slot) = late.slot(&tp, 3);
        assert_eq!(slot.wait_for_decision(), AckDecision::Undecided);
        late.wait(id, 3);
        drop(slot);
        assert_eq!(late.next().await, (3, AckDecision::Undecided));
        // Decided before the handler returned: nothing waits, nothing is sent.
        let (_, decided) = late.slot(&tp, 4);
        Ack::of(&decided).nack();
        assert_eq!(decided.wait_for_decision(), AckDecision::Nack);
        drop(decided);
        assert!(late.from.try_recv().is_err());
    }
}
