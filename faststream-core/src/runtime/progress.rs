//! The one progress tracker of a partition: which consumed offsets are finished, and what the
//! backend may commit.
//!
//! Messages of a partition are handled in order, but their publishes are acknowledged later.
//! Each handled message leaves a [`PendingAck`] in a FIFO; the watermark moves only as the
//! head of that FIFO completes, so an offset is never stored while an earlier message of the
//! partition is unfinished. The watermark is handed to the backend ([`OffsetStore`]) in
//! batches: every [`STORE_EVERY`] finished messages, or [`STORE_DELAY`] after it first moved.

use crate::broker::{BufferBudget, OffsetStore};
use crate::error::PublishError;
use crate::message::{Message, TopicPartition};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Store finished offsets at least every this many messages while a partition is busy.
pub(crate) const STORE_EVERY: u32 = 512;
/// And at the latest this long after the watermark moved.
pub(crate) const STORE_DELAY: Duration = Duration::from_millis(50);

/// Finished and in-flight offsets of one partition.
pub(crate) struct PartitionProgress<D> {
    partition: TopicPartition,
    offsets: Arc<dyn OffsetStore>,
    queue: VecDeque<PendingAck<D>>,
    done: Option<i64>,
    unstored: u32,
    /// A head whose publish the broker refused, taken by the worker to apply its policy.
    failed: Option<FailedHead>,
    /// A head that must not be passed: the partition stopped there.
    halted: bool,
    /// The subscriber's memory budget: a message's bytes are released when its entry leaves
    /// the queue finished (or the tracker is dropped).
    budget: Arc<BufferBudget>,
}

/// A handled message whose output the broker finally refused: the worker runs its error
/// policy on it. Its queue entry stays at the head, as a hole nothing is committed past,
/// until [`PartitionProgress::replace_head`].
pub(crate) struct FailedHead {
    pub(crate) message: Message,
    pub(crate) attempt: u32,
    pub(crate) error: PublishError,
}

/// What the head of the queue did.
pub(crate) enum HeadEvent {
    /// Finished; the watermark moved.
    Finished,
    /// Its publish was refused and its message retained: see [`PartitionProgress::take_failed`].
    Failed,
    /// A publish that had to succeed (a dead letter) was refused: nothing after it may be
    /// committed.
    Halted,
}

impl<D, T> PartitionProgress<D>
where
    D: Future<Output = Result<T, PublishError>> + Unpin,
{
    pub(crate) fn new(
        partition: TopicPartition,
        offsets: Arc<dyn OffsetStore>,
        budget: Arc<BufferBudget>,
    ) -> Self {
        Self {
            budget,
            partition,
            offsets,
            queue: VecDeque::new(),
            done: None,
            unstored: 0,
            failed: None,
            halted: false,
        }
    }

    /// The failed head to run the error policy on, if one failed.
    pub(crate) fn take_failed(&mut self) -> Option<FailedHead> {
        self.failed.take()
    }

    /// Whether the partition reached a point nothing may be committed past.
    pub(crate) fn is_halted(&self) -> bool {
        self.halted
    }

    /// Puts the outcome of running a failed head's message again in the head's place.
    pub(crate) fn replace_head(&mut self, ack: PendingAck<D>) {
        if self.queue.front().is_some_and(|front| front.hole) {
            if let Some(hole) = self.queue.pop_front() {
                self.budget.release(hole.bytes);
            }
        }
        if ack.is_done() && ack.all_delivered {
            self.budget.release(ack.bytes);
            self.advance(ack.offset);
        } else {
            self.queue.push_front(ack);
        }
    }

    /// Stops the partition at the next unfinished message: a hole at the back of the queue
    /// (or the failed head, left as it is) that nothing is committed past.
    pub(crate) fn halt(&mut self, partition: &TopicPartition, offset: i64, at_head: bool) {
        self.halted = true;
        if !at_head {
            let mut hole = PendingAck::new(partition, offset);
            hole.hole = true;
            self.queue.push_back(hole);
        }
    }

    /// Messages handled whose publishes are not all acknowledged yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// A handled message: finished now when nothing before it is in flight and it has no
    /// publishes of its own, else queued behind what is.
    pub(crate) fn handled(&mut self, ack: PendingAck<D>) {
        if ack.is_done() && self.queue.is_empty() {
            self.budget.release(ack.bytes);
            self.advance(ack.offset);
        } else {
            self.queue.push_back(ack);
        }
    }

    /// At-most-once: counts `offset` as finished before its handler runs, storing it at once
    /// when nothing before it is in flight.
    pub(crate) fn finish_before_handling(&mut self, offset: i64) {
        if self.queue.is_empty() {
            self.advance(offset);
            self.store();
        } else {
            self.queue
                .push_back(PendingAck::new(&self.partition, offset));
        }
    }

    /// Resolves when the head of the queue finished or failed; `None` when nothing is in
    /// flight. A hole at the head never resolves.
    pub(crate) fn next_ack(&mut self) -> impl Future<Output = Option<HeadEvent>> + '_ {
        std::future::poll_fn(move |cx| self.poll_head(cx))
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Option<HeadEvent>> {
        let Some(front) = self.queue.front_mut() else {
            return Poll::Ready(None);
        };
        if front.hole {
            return Poll::Pending;
        }
        let Poll::Ready((offset, delivered)) = Pin::new(&mut *front).poll(cx) else {
            return Poll::Pending;
        };
        if !delivered {
            if let Some((message, attempt)) = front.retained.take() {
                front.hole = true;
                let error = front.first_error.take().unwrap_or_else(|| PublishError {
                    topic: message.topic.to_string(),
                    message: "refused".into(),
                });
                self.failed = Some(FailedHead {
                    message,
                    attempt,
                    error,
                });
                return Poll::Ready(Some(HeadEvent::Failed));
            }
            if front.must_deliver {
                front.hole = true;
                self.halted = true;
                return Poll::Ready(Some(HeadEvent::Halted));
            }
        }
        if let Some(finished) = self.queue.pop_front() {
            self.budget.release(finished.bytes);
        }
        self.advance(offset);
        Poll::Ready(Some(HeadEvent::Finished))
    }

    /// Takes every acknowledgement that is already in, without waiting.
    pub(crate) fn collect_ready(&mut self) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(HeadEvent::Finished)) = self.poll_head(&mut cx) {}
    }

    fn advance(&mut self, offset: i64) {
        self.done = Some(offset);
        self.unstored += 1;
    }

    /// Releases `bytes` of the budget held by a message that never enters the queue.
    pub(crate) fn release(&self, bytes: usize) {
        self.budget.release(bytes);
    }

    /// Finished messages not yet handed to the backend.
    pub(crate) fn unstored(&self) -> u32 {
        self.unstored
    }

    /// Hands the watermark to the backend if it moved.
    pub(crate) fn store(&mut self) {
        if self.unstored == 0 {
            return;
        }
        self.unstored = 0;
        if let Some(offset) = self.done {
            self.offsets.store(&self.partition, offset);
        }
    }

    /// Waits for every publish in flight (up to a hole), then stores the watermark.
    pub(crate) async fn finish(&mut self) {
        while self.queue.front().is_some_and(|front| !front.hole) {
            if !matches!(self.next_ack().await, Some(HeadEvent::Finished)) {
                break;
            }
        }
        self.store();
    }
}

impl<D> Drop for PartitionProgress<D> {
    fn drop(&mut self) {
        let held: usize = self.queue.iter().map(|ack| ack.bytes).sum();
        self.budget.release(held);
    }
}

/// A handled message waiting for its publishes to be acknowledged. Resolves to the message's
/// offset and whether every publish succeeded; failures are logged here.
pub(crate) struct PendingAck<D> {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    // The first delivery inline, so the common one-publisher case does not allocate.
    first: Option<D>,
    rest: Vec<D>,
    all_delivered: bool,
    first_error: Option<PublishError>,
    /// The message and its attempt number, kept when a refused publish must run the error
    /// policy on it.
    retained: Option<(Message, u32)>,
    /// A refused publish halts the partition (a dead letter that did not land).
    must_deliver: bool,
    /// Stands for a message that is not finished and is not in flight either.
    hole: bool,
    /// The message's bytes held against the subscriber's budget until this entry finishes.
    bytes: usize,
}

impl<D> PendingAck<D> {
    /// The message at `offset` of `partition`, with nothing published yet.
    pub(crate) fn new(partition: &TopicPartition, offset: i64) -> Self {
        Self {
            topic: Arc::clone(&partition.topic),
            partition: partition.partition,
            offset,
            first: None,
            rest: Vec::new(),
            all_delivered: true,
            first_error: None,
            retained: None,
            must_deliver: false,
            hole: false,
            bytes: 0,
        }
    }

    /// Keeps `message` so a refused publish runs the error policy on it (attempt `attempt`).
    pub(crate) fn retain(&mut self, message: Message, attempt: u32) {
        self.retained = Some((message, attempt));
    }

    /// Makes this entry carry the budget bytes of its message (released when it finishes).
    pub(crate) fn hold_bytes(&mut self, bytes: usize) {
        self.bytes = bytes;
    }

    /// Makes a refused publish halt the partition instead of counting the message as done.
    pub(crate) fn must_deliver(&mut self) {
        self.must_deliver = true;
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
            self.all_delivered = false;
            if self.first_error.is_none() {
                self.first_error = Some(err.clone());
            }
            tracing::error!(
                "publish for message {}[{}]@{} was not acknowledged: {err}",
                self.topic,
                self.partition,
                self.offset,
            );
        }
    }
}

impl<D, T> Future for PendingAck<D>
where
    D: Future<Output = Result<T, PublishError>> + Unpin,
{
    type Output = (i64, bool);

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
            Poll::Ready((this.offset, this.all_delivered))
        } else {
            Poll::Pending
        }
    }
}
