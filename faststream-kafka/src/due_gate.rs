//! Retry-topic partitions held until their head record is due.
//!
//! A record of a retry topic carries the time it is due (`retry-due-at`). When the head of
//! such a partition is not due, the consumer keeps it here and pauses the partition:
//! librdkafka fetches nothing more for it: a pause drops what it prefetched (its op version
//! bump) and sets the next fetch to the record after the last one `poll` returned
//! (`rd_kafka_toppar_pause_resume`), so on resume it goes on right after the kept records. A deadline in the poll loop resumes the
//! partition once the head is due, and the kept records go to the worker in order. So the
//! worker never sleeps, and nothing polls the partition meanwhile. A partition assigned anew
//! (after a rebalance) starts with an empty gate: its first record not due pauses it again.

use faststream_core::broker::retry::not_due_for;
use faststream_core::Message;
use std::collections::VecDeque;
use std::time::Instant;

/// One retry-topic partition's gate.
#[derive(Default)]
pub(crate) struct DueGate {
    /// Records taken from librdkafka but not due yet (the head first), and any that came
    /// after them before the pause took effect.
    kept: VecDeque<Message>,
    /// When the head is due: the partition is paused until then.
    resume_at: Option<Instant>,
}

/// What becomes of a record at the gate.
pub(crate) enum Admit {
    /// Due: to the worker now.
    Pass(Message),
    /// Kept until due; `pause` when the partition must be paused now.
    Kept { pause: bool },
}

impl DueGate {
    /// Lets `message` through, or keeps it until it is due (with everything after it).
    pub(crate) fn admit(&mut self, message: Message) -> Admit {
        if !self.kept.is_empty() {
            self.kept.push_back(message);
            return Admit::Kept { pause: false };
        }
        match not_due_for(&message.headers) {
            None => Admit::Pass(message),
            Some(wait) => {
                self.kept.push_back(message);
                self.resume_at = Some(Instant::now() + wait);
                Admit::Kept { pause: true }
            }
        }
    }

    /// Whether it holds its partition paused.
    pub(crate) fn is_holding(&self) -> bool {
        self.resume_at.is_some()
    }

    /// When the head is due, while holding.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Takes the kept records due at `now`, in order, into `due`. Holding stops once none is
    /// left; otherwise the next deadline is the new head's due time.
    pub(crate) fn release_due(&mut self, now: Instant, due: &mut Vec<Message>) {
        if self.resume_at.is_none_or(|at| at > now) {
            return;
        }
        self.resume_at = None;
        while let Some(head) = self.kept.front() {
            if let Some(wait) = not_due_for(&head.headers) {
                self.resume_at = Some(now + wait);
                return;
            }
            due.extend(self.kept.pop_front());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faststream_core::broker::retry::{now_ms, RETRY_DUE_AT};
    use std::time::Duration;

    fn due_in(offset: i64, millis: i64) -> Message {
        let mut message = Message::new("t-g-retry-1000", "x");
        message.offset = offset;
        message
            .headers
            .insert(RETRY_DUE_AT, (now_ms() + millis).to_string());
        message
    }

    #[test]
    fn the_head_not_due_holds_the_partition_until_it_is() {
        let mut gate = DueGate::default();
        assert!(matches!(gate.admit(due_in(0, -1)), Admit::Pass(_)));
        assert!(matches!(
            gate.admit(due_in(1, 200)),
            Admit::Kept { pause: true }
        ));
        assert!(
            matches!(gate.admit(due_in(2, 0)), Admit::Kept { pause: false }),
            "behind the kept head, in order"
        );
        assert!(gate.is_holding());
        let mut due = Vec::new();
        gate.release_due(Instant::now(), &mut due);
        assert!(due.is_empty(), "not due yet");
        let at = gate.resume_at().unwrap();
        assert!(at > Instant::now() + Duration::from_millis(100));
        std::thread::sleep(at - Instant::now());
        gate.release_due(Instant::now(), &mut due);
        let offsets: Vec<i64> = due.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [1, 2]);
        assert!(!gate.is_holding());
    }
}
