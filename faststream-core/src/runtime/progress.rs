//! The one progress tracker of a partition: which consumed offsets are finished, and what the
//! backend may commit.
//!
//! Every message gets an entry when it is dispatched ([`PartitionProgress::dispatch`]), in
//! offset order, and keeps it until it finishes: its outcome decided
//! ([`PartitionProgress::decide`], in any order: a handler still running, a message waiting
//! to be retried or a deferred ack simply leave their entry undecided) and every publish it
//! caused acknowledged. The watermark moves only as the front entry finishes, so the offset
//! handed on is never past the lowest unfinished message, whatever order messages finish in.
//!
//! The watermark goes to an [`OffsetStore`] in batches (every [`STORE_EVERY`] finished
//! messages, or [`STORE_DELAY`] after it first moved), or is taken by whoever commits it
//! otherwise ([`PartitionProgress::committable`], e.g. into a transaction). When offsets
//! count as finished is the [`CommitMode`]; [`PartitionProgress::reset`] starts over after a
//! seek or an aborted transaction.

use crate::broker::{BufferBudget, OffsetStore};
use crate::error::PublishError;
use crate::message::{Message, TopicPartition};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thin_vec::ThinVec;

/// Store finished offsets at least every this many messages while a partition is busy.
pub(crate) const STORE_EVERY: u32 = 512;
/// And at the latest this long after the watermark moved.
pub(crate) const STORE_DELAY: Duration = Duration::from_millis(50);

/// When a message's offset counts as finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitMode {
    /// At-least-once, the default: once its outcome is decided and its publishes are
    /// acknowledged.
    AfterHandling,
    /// At-most-once (`AckPolicy::AckFirst`): as soon as it is dispatched, before its handler
    /// runs. Its publishes are still tracked, so a shutdown waits for them, but one the
    /// broker refuses does not run the error policy again.
    BeforeHandling,
}

/// A dispatched message's entry in its partition's tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// Whether the partition may still move on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Running,
    /// It stopped at a hole: nothing is committed past it until the app restarts.
    Halted,
}

struct Entry<D> {
    offset: i64,
    /// The message's bytes held against the subscriber's budget until the entry finishes.
    bytes: usize,
    state: EntryState<D>,
}

enum EntryState<D> {
    /// Dispatched, outcome not decided: its handler runs, it waits to be retried, or its ack
    /// is deferred.
    Undecided,
    /// Decided: waiting for its publishes to be acknowledged (finished once none is left).
    Publishing(PendingAck<D>),
    /// The partition stopped here: never finishes.
    Hole,
}

/// Finished and in-flight offsets of one partition.
pub(crate) struct PartitionProgress<D> {
    partition: TopicPartition,
    offsets: Arc<dyn OffsetStore>,
    mode: CommitMode,
    queue: VecDeque<Entry<D>>,
    /// The ticket number of the queue's front entry.
    front_ticket: u64,
    done: Option<i64>,
    unstored: u32,
    /// A decided message whose publish the broker refused, taken by the worker to apply its
    /// policy. Its entry is undecided again until the worker decides it anew.
    failed: Option<FailedHead>,
    /// Exactly-once: the front entry's publish refused inside the open transaction, which
    /// then cannot commit (see [`PartitionProgress::in_transaction`]).
    doomed: Option<DoomedHead>,
    /// The partition's publishes go into the member's open transaction.
    in_transaction: bool,
    flow: Flow,
    budget: Arc<BufferBudget>,
}

/// A message whose publish was refused inside the open transaction, which then cannot
/// commit: the worker has it aborted, and the entry stays undecided until the rewind.
pub(crate) struct DoomedHead {
    pub(crate) offset: i64,
    /// Which of the message's records was refused.
    pub(crate) refused: RefusedRecord,
    pub(crate) error: PublishError,
}

/// Which of a message's records a refusal inside a transaction was: what decides what the
/// message carries over the abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusedRecord {
    /// Its output (a batch's: its handler's), published by attempt `n`.
    Output(u32),
    /// Its dead letter or retry-topic record, which had to land.
    Outcome,
    /// A record whose attempt is not known (a refusal as it was sent).
    Unattributed,
}

/// A handled message whose output the broker finally refused: the worker runs its error
/// policy on it and decides its entry ([`FailedHead::ticket`]) again.
pub(crate) struct FailedHead {
    pub(crate) message: Message,
    pub(crate) attempt: u32,
    pub(crate) error: PublishError,
    pub(crate) ticket: Ticket,
}

/// What the front entry did.
pub(crate) enum HeadEvent {
    /// Finished; the watermark moved.
    Finished,
    /// Its publish was refused and its message retained: see [`PartitionProgress::take_failed`].
    Failed,
    /// A publish that had to succeed (a dead letter) was refused: nothing after it may be
    /// committed.
    Halted,
    /// Its publish was refused inside the transaction: see [`PartitionProgress::take_doomed`].
    Doomed,
}

impl<D, T> PartitionProgress<D>
where
    D: Future<Output = Result<T, PublishError>> + Unpin,
{
    pub(crate) fn new(
        partition: TopicPartition,
        offsets: Arc<dyn OffsetStore>,
        budget: Arc<BufferBudget>,
        mode: CommitMode,
    ) -> Self {
        Self {
            partition,
            offsets,
            mode,
            queue: VecDeque::new(),
            front_ticket: 0,
            done: None,
            unstored: 0,
            failed: None,
            doomed: None,
            in_transaction: false,
            flow: Flow::Running,
            budget,
        }
    }

    /// Makes every refused publish leave its entry undecided and go to the worker as a
    /// [`DoomedHead`], instead of to the message's error policy or a halt: a transaction
    /// holding a refused record cannot commit (Kafka fails its commit), so it is aborted and
    /// the partition rewound, and nothing of it may be committed or retried in it.
    pub(crate) fn in_transaction(mut self) -> Self {
        self.in_transaction = true;
        self
    }

    /// Registers a message taken for handling, at `offset` and holding `bytes` of the budget.
    /// Messages are dispatched in offset order; the returned ticket decides it later.
    #[inline]
    pub(crate) fn dispatch(&mut self, offset: i64, bytes: usize) -> Ticket {
        let ticket = Ticket(self.front_ticket + self.queue.len() as u64);
        self.queue.push_back(Entry {
            offset,
            bytes,
            state: EntryState::Undecided,
        });
        if self.mode == CommitMode::BeforeHandling {
            self.advance(offset);
            self.store();
        }
        ticket
    }

    /// Decides a dispatched message: `ack` tracks the publishes it caused. It finishes once
    /// they are acknowledged and everything dispatched before it finished.
    pub(crate) fn decide(&mut self, ticket: Ticket, mut ack: PendingAck<D>) {
        if self.mode == CommitMode::BeforeHandling {
            ack.forget_retained();
        }
        let Some(index) = self.index(ticket) else {
            return;
        };
        if index == 0 && ack.is_done() {
            // The common case, without a poll: first in line and nothing to wait for.
            self.finish_front();
        } else {
            self.queue[index].state = EntryState::Publishing(ack);
        }
    }

    /// Cuts the last dispatched entry (`ticket`) in two where a batch failed part-way: it now
    /// ends at `offset`, holding `bytes`; the remainder (up to its old offset, with the rest
    /// of its bytes) becomes a new undecided entry, returned. `None` when nothing remains, or
    /// when `ticket` is not the last entry (then it is left whole).
    pub(crate) fn split(&mut self, ticket: Ticket, offset: i64, bytes: usize) -> Option<Ticket> {
        let index = self.index(ticket)?;
        if index + 1 != self.queue.len() {
            return None;
        }
        let entry = &mut self.queue[index];
        if offset >= entry.offset {
            return None;
        }
        let rest = Entry {
            offset: entry.offset,
            bytes: entry.bytes.saturating_sub(bytes),
            state: EntryState::Undecided,
        };
        entry.offset = offset;
        entry.bytes = bytes.min(entry.bytes);
        self.queue.push_back(rest);
        Some(Ticket(ticket.0 + 1))
    }

    /// Whether `ticket` is the last entry dispatched (the only one that can be [`split`]).
    ///
    /// [`split`]: PartitionProgress::split
    pub(crate) fn is_last(&self, ticket: Ticket) -> bool {
        self.index(ticket)
            .is_some_and(|index| index + 1 == self.queue.len())
    }

    /// Stops the partition at `ticket`'s message: its entry becomes a hole nothing is
    /// committed past, and its bytes leave the budget.
    pub(crate) fn halt(&mut self, ticket: Ticket) {
        self.flow = Flow::Halted;
        if let Some(index) = self.index(ticket) {
            let entry = &mut self.queue[index];
            entry.state = EntryState::Hole;
            self.budget.release(std::mem::take(&mut entry.bytes));
        }
    }

    /// A message that will not be handled here (dropped while waiting to be retried): its
    /// bytes leave the budget now; its entry stays undecided, so it is never committed.
    pub(crate) fn abandon(&mut self, ticket: Ticket) {
        if let Some(index) = self.index(ticket) {
            self.budget
                .release(std::mem::take(&mut self.queue[index].bytes));
        }
    }

    /// Forgets every entry and starts again after a seek or an aborted transaction: the next
    /// message dispatched is at `next_offset` (its predecessor counts as the watermark to
    /// store), or, with `None`, wherever the backend resumes, with nothing to store.
    #[cfg_attr(not(test), allow(dead_code))] // the seam seek and transactions plug into
    pub(crate) fn reset(&mut self, next_offset: Option<i64>) {
        // Tickets of before the reset never match again.
        self.front_ticket += self.queue.len() as u64;
        let held: usize = self.queue.drain(..).map(|entry| entry.bytes).sum();
        self.budget.release(held);
        self.failed = None;
        self.doomed = None;
        self.flow = Flow::Running;
        self.done = next_offset.map(|next| next - 1);
        self.unstored = u32::from(next_offset.is_some());
    }

    /// The failed head to run the error policy on, if one failed.
    pub(crate) fn take_failed(&mut self) -> Option<FailedHead> {
        self.failed.take()
    }

    /// The head whose refused publish doomed the open transaction, if one did.
    pub(crate) fn take_doomed(&mut self) -> Option<DoomedHead> {
        self.doomed.take()
    }

    /// The partition whose messages this tracks.
    pub(crate) fn partition(&self) -> &TopicPartition {
        &self.partition
    }

    /// Whether the partition reached a point nothing may be committed past.
    pub(crate) fn is_halted(&self) -> bool {
        self.flow == Flow::Halted
    }

    /// Messages dispatched and not finished yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Resolves when the front entry finished or failed; `None` when nothing is in flight.
    /// An undecided entry or a hole at the front never resolves.
    pub(crate) fn next_ack(&mut self) -> impl Future<Output = Option<HeadEvent>> + '_ {
        std::future::poll_fn(move |cx| self.poll_head(cx))
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Option<HeadEvent>> {
        let Some(front) = self.queue.front_mut() else {
            return Poll::Ready(None);
        };
        let EntryState::Publishing(ack) = &mut front.state else {
            return Poll::Pending;
        };
        let Poll::Ready(refused) = Pin::new(&mut *ack).poll(cx) else {
            return Poll::Pending;
        };
        for error in &refused {
            tracing::error!(
                "publish for message {}@{} was not acknowledged: {error}",
                self.partition,
                ack.offset,
            );
        }
        if let Some(error) = refused.into_iter().next() {
            let on_refused = std::mem::replace(&mut ack.on_refused, OnRefused::CountDone);
            if self.in_transaction {
                let refused = match on_refused {
                    OnRefused::RunPolicy { attempt, .. } | OnRefused::Attempt(attempt) => {
                        RefusedRecord::Output(attempt)
                    }
                    OnRefused::Halt => RefusedRecord::Outcome,
                    _ => RefusedRecord::Unattributed,
                };
                self.doomed = Some(DoomedHead {
                    offset: ack.offset,
                    refused,
                    error,
                });
                front.state = EntryState::Undecided;
                return Poll::Ready(Some(HeadEvent::Doomed));
            }
            match on_refused {
                OnRefused::RunPolicy { message, attempt } => {
                    front.state = EntryState::Undecided;
                    let ticket = Ticket(self.front_ticket);
                    self.failed = Some(FailedHead {
                        message: *message,
                        attempt,
                        error,
                        ticket,
                    });
                    return Poll::Ready(Some(HeadEvent::Failed));
                }
                OnRefused::Halt => {
                    let ticket = Ticket(self.front_ticket);
                    self.halt(ticket);
                    return Poll::Ready(Some(HeadEvent::Halted));
                }
                OnRefused::CountDone | OnRefused::Attempt(_) => {}
            }
        }
        self.finish_front();
        Poll::Ready(Some(HeadEvent::Finished))
    }

    fn finish_front(&mut self) {
        if let Some(finished) = self.queue.pop_front() {
            self.front_ticket += 1;
            self.budget.release(finished.bytes);
            self.advance(finished.offset);
        }
    }

    /// The queue index of `ticket`, while its entry is there.
    fn index(&self, ticket: Ticket) -> Option<usize> {
        let index = usize::try_from(ticket.0.checked_sub(self.front_ticket)?).ok()?;
        (index < self.queue.len()).then_some(index)
    }

    /// Takes every acknowledgement that is already in, without waiting.
    pub(crate) fn collect_ready(&mut self) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(HeadEvent::Finished)) = self.poll_head(&mut cx) {}
    }

    fn advance(&mut self, offset: i64) {
        // Never backwards: under `BeforeHandling` an entry finishing later re-counts an offset
        // that was counted at dispatch.
        if self.done.is_none_or(|done| offset > done) {
            self.done = Some(offset);
            self.unstored += 1;
        }
    }

    /// Releases the bytes of a message that was never dispatched (left in the channel).
    pub(crate) fn release_undispatched(&self, bytes: usize) {
        self.budget.release(bytes);
    }

    /// Finished messages not yet handed on.
    pub(crate) fn unstored(&self) -> u32 {
        self.unstored
    }

    /// The watermark to commit, if it moved since it was last taken: the last offset before
    /// which every message finished.
    pub(crate) fn committable(&mut self) -> Option<i64> {
        if self.unstored == 0 {
            return None;
        }
        self.unstored = 0;
        self.done
    }

    /// The last offset before which every message finished, whether taken or not.
    pub(crate) fn watermark(&self) -> Option<i64> {
        self.done
    }

    /// The partition resumes at `next_offset` (its first message, before any is dispatched):
    /// its predecessor counts as finished, so the watermark has a value from the start.
    pub(crate) fn resumes_at(&mut self, next_offset: i64) {
        if self.queue.is_empty() && self.done.is_none() {
            self.done = Some(next_offset - 1);
        }
    }

    /// The offsets above the watermark that finished out of order: decided, nothing left to
    /// publish, waiting only for an earlier entry.
    pub(crate) fn finished_above(&self) -> impl Iterator<Item = i64> + '_ {
        self.queue.iter().filter_map(|entry| match &entry.state {
            EntryState::Publishing(ack) if ack.is_done() => Some(entry.offset),
            _ => None,
        })
    }

    /// Hands the watermark to the backend if it moved.
    pub(crate) fn store(&mut self) {
        if let Some(offset) = self.committable() {
            self.offsets.store(&self.partition, offset);
        }
    }

    /// Waits for every publish in flight (up to an undecided entry or a hole), then stores
    /// the watermark.
    pub(crate) async fn finish(&mut self) {
        while self
            .queue
            .front()
            .is_some_and(|front| matches!(front.state, EntryState::Publishing(_)))
        {
            if !matches!(self.next_ack().await, Some(HeadEvent::Finished)) {
                break;
            }
        }
        self.store();
    }
}

impl<D> Drop for PartitionProgress<D> {
    fn drop(&mut self) {
        let held: usize = self.queue.iter().map(|entry| entry.bytes).sum();
        self.budget.release(held);
    }
}

/// What a refused publish of a decided message leads to.
enum OnRefused {
    /// Nothing more: the message counts as finished (its failure is logged).
    CountDone,
    /// The message runs its error policy again (attempt `attempt` produced the output).
    /// Boxed: the tracker moves every entry in and out of its queue, so entries stay small.
    RunPolicy { message: Box<Message>, attempt: u32 },
    /// The partition stops there (a dead letter that did not land).
    Halt,
    /// Counted as finished like `CountDone`; inside a transaction, the attempt that
    /// published, which a refusal carries over the abort (see
    /// [`PartitionProgress::in_transaction`]).
    Attempt(u32),
}

/// The publishes of a decided message, waiting to be acknowledged. Resolves to the refusals,
/// if any, which the tracker logs: it knows the partition, so each message's entry does not
/// hold its topic (a reference count taken and dropped per message, issue 21's profile).
pub(crate) struct PendingAck<D> {
    offset: i64,
    // The first delivery inline, so the common one-publisher case does not allocate. The
    // others and the refusals are thin: one pointer each, and a check inlined where an empty
    // one is dropped, as every message's is (issue 21's profile).
    first: Option<D>,
    rest: ThinVec<D>,
    /// Every refusal, in the order they came (allocated only when one does).
    refused: ThinVec<PublishError>,
    on_refused: OnRefused,
}

impl<D> PendingAck<D> {
    /// The message at `offset` of the tracker's partition, with nothing published yet.
    pub(crate) fn new(offset: i64) -> Self {
        Self {
            offset,
            first: None,
            rest: ThinVec::new(),
            refused: ThinVec::new(),
            on_refused: OnRefused::CountDone,
        }
    }

    /// Keeps `message` so a refused publish runs the error policy on it (attempt `attempt`).
    pub(crate) fn retain(&mut self, message: Message, attempt: u32) {
        self.on_refused = OnRefused::RunPolicy {
            message: Box::new(message),
            attempt,
        };
    }

    /// Notes the attempt that published, for a refusal inside a transaction (see
    /// [`PartitionProgress::in_transaction`]); the message is not kept.
    pub(crate) fn note_attempt(&mut self, attempt: u32) {
        self.on_refused = OnRefused::Attempt(attempt);
    }

    /// Drops a retained message: its refusal must not run the policy again.
    fn forget_retained(&mut self) {
        if matches!(self.on_refused, OnRefused::RunPolicy { .. }) {
            self.on_refused = OnRefused::CountDone;
        }
    }

    /// Makes a refused publish halt the partition instead of counting the message as done.
    pub(crate) fn must_deliver(&mut self) {
        self.on_refused = OnRefused::Halt;
    }

    /// Adds one publish to wait for.
    pub(crate) fn track(&mut self, delivery: D) {
        if self.first.is_none() {
            self.first = Some(delivery);
        } else {
            self.rest.push(delivery);
        }
    }

    /// Whether nothing is left to wait for.
    pub(crate) fn is_done(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn record_outcome<T>(&mut self, outcome: Result<T, PublishError>) {
        if let Err(err) = outcome {
            self.refused.push(err);
        }
    }
}

impl<D, T> Future for PendingAck<D>
where
    D: Future<Output = Result<T, PublishError>> + Unpin,
{
    type Output = Vec<PublishError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(first) = &mut this.first {
            match Pin::new(first).poll(cx) {
                Poll::Ready(outcome) => {
                    this.first = None;
                    this.record_outcome(outcome);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut i = 0;
        while i < this.rest.len() {
            match Pin::new(&mut this.rest[i]).poll(cx) {
                Poll::Ready(outcome) => {
                    this.rest.swap_remove(i);
                    this.record_outcome(outcome);
                }
                Poll::Pending => i += 1,
            }
        }
        if this.rest.is_empty() {
            Poll::Ready(std::mem::take(&mut this.refused).into())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::oneshot;
    use proptest::prelude::*;
    use std::sync::Mutex;

    /// A publish the test acknowledges (`true`) or refuses (`false`).
    struct Delivery(oneshot::Receiver<bool>);

    impl Future for Delivery {
        type Output = Result<(), PublishError>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            Pin::new(&mut self.0).poll(cx).map(|acked| match acked {
                Ok(true) => Ok(()),
                _ => Err(PublishError::new("out", "refused")),
            })
        }
    }

    #[derive(Default)]
    struct Stored(Mutex<Vec<i64>>);

    impl OffsetStore for Stored {
        fn store(&self, _partition: &TopicPartition, offset: i64) {
            self.0.lock().unwrap().push(offset);
        }
    }

    impl Stored {
        fn last(&self) -> Option<i64> {
            self.0.lock().unwrap().last().copied()
        }
    }

    fn tracker(mode: CommitMode) -> (PartitionProgress<Delivery>, Arc<Stored>, Arc<BufferBudget>) {
        let stored = Arc::new(Stored::default());
        let budget = Arc::new(BufferBudget::new(1 << 20));
        let tp = TopicPartition::new("in", 0);
        let progress = PartitionProgress::new(tp, stored.clone(), Arc::clone(&budget), mode);
        (progress, stored, budget)
    }

    fn ack(offset: i64) -> PendingAck<Delivery> {
        PendingAck::new(offset)
    }

    /// An ack waiting for one publish, and the switch that settles it.
    fn publishing(offset: i64) -> (PendingAck<Delivery>, oneshot::Sender<bool>) {
        let (tx, rx) = oneshot::channel();
        let mut pending = ack(offset);
        pending.track(Delivery(rx));
        (pending, tx)
    }

    fn settle(progress: &mut PartitionProgress<Delivery>) {
        progress.collect_ready();
        progress.store();
    }

    #[test]
    fn records_decided_out_of_order_commit_only_up_to_the_first_undecided() {
        let (mut progress, stored, budget) = tracker(CommitMode::AfterHandling);
        budget.hold(30);
        let tickets: Vec<Ticket> = (0..3).map(|o| progress.dispatch(o, 10)).collect();
        progress.decide(tickets[2], ack(2));
        progress.decide(tickets[1], ack(1));
        settle(&mut progress);
        assert_eq!(stored.last(), None, "offset 0 is still undecided");
        assert_eq!(budget.held(), 30);
        progress.decide(tickets[0], ack(0));
        settle(&mut progress);
        assert_eq!(stored.last(), Some(2));
        assert_eq!((progress.in_flight(), budget.held()), (0, 0));
    }

    #[test]
    fn a_refused_publish_hands_the_message_back_under_its_ticket() {
        let (mut progress, stored, _) = tracker(CommitMode::AfterHandling);
        let ticket = progress.dispatch(7, 0);
        let (mut pending, tx) = publishing(7);
        pending.retain(Message::new("in", "x"), 1);
        progress.decide(ticket, pending);
        tx.send(false).unwrap();
        settle(&mut progress);
        let failed = progress.take_failed().expect("the refusal runs the policy");
        assert_eq!((failed.ticket, failed.attempt), (ticket, 1));
        assert_eq!(stored.last(), None);
        progress.decide(failed.ticket, ack(7));
        settle(&mut progress);
        assert_eq!(stored.last(), Some(7));
    }

    #[test]
    fn a_hole_stops_the_watermark_and_releases_its_bytes() {
        let (mut progress, stored, budget) = tracker(CommitMode::AfterHandling);
        budget.hold(3);
        let first = progress.dispatch(0, 1);
        let second = progress.dispatch(1, 1);
        let third = progress.dispatch(2, 1);
        progress.decide(first, ack(0));
        progress.halt(second);
        progress.decide(third, ack(2));
        settle(&mut progress);
        assert!(progress.is_halted());
        assert_eq!(stored.last(), Some(0));
        assert_eq!(
            budget.held(),
            1,
            "the hole's byte left, the entry behind it holds its own"
        );
        drop(progress);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_batch_entry_splits_where_a_record_failed() {
        let (mut progress, stored, budget) = tracker(CommitMode::AfterHandling);
        budget.hold(50);
        // One batch of offsets 10..=14, 10 bytes each.
        let batch = progress.dispatch(14, 50);
        let rest = progress
            .split(batch, 11, 20)
            .expect("records 12..=14 remain");
        progress.decide(batch, ack(11));
        settle(&mut progress);
        assert_eq!((stored.last(), budget.held()), (Some(11), 30));
        let after = progress
            .split(rest, 12, 10)
            .expect("records 13..=14 remain");
        assert_eq!(
            progress.split(after, 14, 0),
            None,
            "nothing after the last record"
        );
        progress.decide(rest, ack(12));
        progress.decide(after, ack(14));
        settle(&mut progress);
        assert_eq!((stored.last(), budget.held()), (Some(14), 0));
    }

    #[test]
    fn only_the_last_entry_splits() {
        let (mut progress, _, _) = tracker(CommitMode::AfterHandling);
        let first = progress.dispatch(4, 0);
        let _second = progress.dispatch(9, 0);
        assert!(!progress.is_last(first));
        assert_eq!(progress.split(first, 2, 0), None);
    }

    #[test]
    fn before_handling_commits_at_dispatch_and_still_waits_for_publishes() {
        let (mut progress, stored, _) = tracker(CommitMode::BeforeHandling);
        let ticket = progress.dispatch(3, 0);
        assert_eq!(
            stored.last(),
            Some(3),
            "at-most-once: stored before the handler runs"
        );
        let (mut pending, tx) = publishing(3);
        pending.retain(Message::new("in", "x"), 1);
        progress.decide(ticket, pending);
        assert_eq!(progress.in_flight(), 1, "a shutdown waits for its publish");
        tx.send(false).unwrap();
        settle(&mut progress);
        assert!(
            progress.take_failed().is_none(),
            "no second run of the policy"
        );
        assert_eq!(progress.in_flight(), 0);
        assert_eq!(stored.0.lock().unwrap().as_slice(), [3]);
    }

    #[test]
    fn reset_forgets_entries_and_old_tickets() {
        let (mut progress, stored, budget) = tracker(CommitMode::AfterHandling);
        budget.hold(20);
        let old = progress.dispatch(0, 10);
        let _ = progress.dispatch(1, 10);
        progress.reset(Some(100));
        assert_eq!((progress.in_flight(), budget.held()), (0, 0));
        progress.store();
        assert_eq!(stored.last(), Some(99));
        let new = progress.dispatch(100, 0);
        progress.decide(old, ack(0));
        assert_eq!(
            progress.in_flight(),
            1,
            "a ticket from before the reset decides nothing"
        );
        progress.decide(new, ack(100));
        settle(&mut progress);
        assert_eq!(stored.last(), Some(100));
    }

    /// One step of a property run: dispatch the next record, decide a dispatched one, or
    /// settle a publish; `pick` chooses which.
    #[derive(Debug, Clone)]
    enum Step {
        Dispatch,
        Decide { pick: usize, publishes: u8 },
        Settle { pick: usize, acked: bool },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Dispatch),
            (any::<usize>(), 0..3_u8)
                .prop_map(|(pick, publishes)| Step::Decide { pick, publishes }),
            (any::<usize>(), any::<bool>()).prop_map(|(pick, acked)| Step::Settle { pick, acked }),
        ]
    }

    /// The model: each record's offset, whether it finished, and the publishes it waits on.
    struct Model {
        offsets: Vec<i64>,
        dispatched: Vec<Ticket>,
        undecided: Vec<usize>,
        publishes: Vec<(usize, oneshot::Sender<bool>)>,
        finished: Vec<bool>,
    }

    impl Model {
        fn lowest_unfinished(&self) -> Option<i64> {
            let index = self.finished.iter().position(|done| !done)?;
            Some(self.offsets[index])
        }

        /// A record is finished once decided and none of its publishes is pending.
        fn update_finished(&mut self) {
            for index in 0..self.dispatched.len() {
                let decided = !self.undecided.contains(&index);
                let pending = self.publishes.iter().any(|(i, _)| *i == index);
                self.finished[index] = decided && !pending;
            }
        }
    }

    proptest! {
        /// The tracker's one invariant: whatever order records are decided and their publishes
        /// acknowledged (or refused), the offset it stores never reaches the lowest unfinished
        /// record, never goes backwards, and reaches the last record once all are finished.
        #[test]
        fn the_stored_offset_never_passes_the_lowest_unfinished_record(
            gaps in proptest::collection::vec(1..4_i64, 1..40),
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let (mut progress, stored, _) = tracker(CommitMode::AfterHandling);
            let offsets: Vec<i64> = gaps.iter().scan(0, |o, gap| { *o += gap; Some(*o) }).collect();
            let mut model = Model {
                finished: vec![false; offsets.len()],
                offsets,
                dispatched: Vec::new(),
                undecided: Vec::new(),
                publishes: Vec::new(),
            };
            let drain = (0..model.offsets.len()).flat_map(|_| [Step::Dispatch]).chain(
                (0..model.offsets.len() * 3).flat_map(|_| [
                    Step::Decide { pick: 0, publishes: 0 },
                    Step::Settle { pick: 0, acked: true },
                ]),
            );
            let mut last_stored = None;
            for step in steps.into_iter().chain(drain) {
                match step {
                    Step::Dispatch if model.dispatched.len() < model.offsets.len() => {
                        let index = model.dispatched.len();
                        model.dispatched.push(progress.dispatch(model.offsets[index], 0));
                        model.undecided.push(index);
                    }
                    Step::Decide { pick, publishes } if !model.undecided.is_empty() => {
                        let index = model.undecided.swap_remove(pick % model.undecided.len());
                        let mut pending = ack(model.offsets[index]);
                        for _ in 0..publishes {
                            let (tx, rx) = oneshot::channel();
                            pending.track(Delivery(rx));
                            model.publishes.push((index, tx));
                        }
                        progress.decide(model.dispatched[index], pending);
                    }
                    Step::Settle { pick, acked } if !model.publishes.is_empty() => {
                        let (_, tx) = model.publishes.swap_remove(pick % model.publishes.len());
                        let _ = tx.send(acked);
                    }
                    _ => {}
                }
                settle(&mut progress);
                model.update_finished();
                let now = stored.last();
                prop_assert!(now >= last_stored, "stored offsets went backwards: {last_stored:?} -> {now:?}");
                if let (Some(now), Some(lowest)) = (now, model.lowest_unfinished()) {
                    prop_assert!(now < lowest, "stored {now} while {lowest} is unfinished");
                }
                last_stored = now;
            }
            prop_assert_eq!(model.lowest_unfinished(), None);
            prop_assert_eq!(stored.last(), model.offsets.last().copied());
            prop_assert_eq!(progress.in_flight(), 0);
        }
    }
}
