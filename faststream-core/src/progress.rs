//! The one progress tracker of a partition: which consumed offsets are finished, and what the
//! backend may commit.
//!
//! Messages of a partition are handled in order, but their publishes are acknowledged later.
//! Each handled message leaves a [`PendingAck`] in a FIFO; the watermark moves only as the
//! head of that FIFO completes, so an offset is never stored while an earlier message of the
//! partition is unfinished. The watermark is handed to the backend ([`OffsetStore`]) in
//! batches: every [`STORE_EVERY`] finished messages, or [`STORE_DELAY`] after it first moved.

use crate::broker::OffsetStore;
use crate::error::PublishError;
use crate::message::TopicPartition;
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
}

impl<D, T> PartitionProgress<D>
where
    D: Future<Output = Result<T, PublishError>> + Unpin,
{
    pub(crate) fn new(partition: TopicPartition, offsets: Arc<dyn OffsetStore>) -> Self {
        Self {
            partition,
            offsets,
            queue: VecDeque::new(),
            done: None,
            unstored: 0,
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

    /// Resolves when the head of the queue finished (its offset and whether every publish was
    /// acknowledged), moving the watermark; `None` when nothing is in flight.
    pub(crate) fn next_ack(&mut self) -> impl Future<Output = Option<(i64, bool)>> + '_ {
        std::future::poll_fn(move |cx| self.poll_head(cx))
    }

    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Option<(i64, bool)>> {
        let Some(front) = self.queue.front_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(front).poll(cx) {
            Poll::Ready((offset, delivered)) => {
                self.queue.pop_front();
                self.advance(offset);
                Poll::Ready(Some((offset, delivered)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes every acknowledgement that is already in, without waiting.
    pub(crate) fn collect_ready(&mut self) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(_)) = self.poll_head(&mut cx) {}
    }

    fn advance(&mut self, offset: i64) {
        self.done = Some(offset);
        self.unstored += 1;
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

    /// Waits for every publish in flight, then stores the watermark.
    pub(crate) async fn finish(&mut self) {
        while self.next_ack().await.is_some() {}
        self.store();
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
        }
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
