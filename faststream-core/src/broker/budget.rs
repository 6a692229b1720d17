//! The memory budget of a subscriber ([`BufferBudget`]) and how a backend holds a record on it
//! from fetch until its worker has it ([`Held`]). Whatever is dropped unhandled is released.

use super::queue::{QueueSender, TrySendError};
use crate::message::Message;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of consumed records a subscriber holds in memory, against its limit
/// ([`SubscriberConfig::max_buffer_bytes`](crate::SubscriberConfig::max_buffer_bytes)). The
/// backend [`hold`](BufferBudget::hold)s a record's [`Message::held_bytes`] when it takes it
/// from the broker and fetches nothing new while the budget [`is_full`](BufferBudget::is_full);
/// the runtime releases them once the record is finished (handled and its publishes
/// acknowledged), and the backend releases those it drops unhandled (those left in a stopped
/// worker's [`partition_queue`](super::partition_queue)). Backends hold each record through
/// [`Held`].
#[derive(Debug)]
pub struct BufferBudget {
    held: AtomicUsize,
    limit: usize,
}

impl BufferBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit: limit.max(1),
        }
    }

    /// Counts `bytes` more as held.
    #[inline]
    pub fn hold(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` as no longer held (never below zero).
    #[inline]
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the limit is reached: fetch nothing more.
    pub fn is_full(&self) -> bool {
        self.held() >= self.limit
    }
}

/// A record taken from the broker, its bytes held on the subscriber's [`BufferBudget`] until
/// it is handed to the partition worker (which releases them once the record is finished).
/// Dropped before that, unhandled, it releases them.
///
/// ```
/// use faststream_core::broker::{BufferBudget, Held};
/// use faststream_core::Message;
///
/// let budget = BufferBudget::new(1 << 20);
/// let (queue, worker) = faststream_core::broker::partition_queue(1);
/// let held = Held::new(&budget, Message::new("t", &b"four"[..]));
/// assert_eq!(budget.held(), 4);
/// held.try_send(&queue).ok().unwrap();
/// assert_eq!(budget.held(), 4, "the worker has it now: it releases it when finished");
///
/// let dropped = Held::new(&budget, Message::new("t", &b"more"[..]));
/// drop(dropped);
/// assert_eq!(budget.held(), 4, "dropped unhandled: released");
/// # drop(worker);
/// ```
#[derive(Debug)]
#[must_use = "a held record dropped unhandled only releases its bytes"]
pub struct Held<'b> {
    budget: &'b BufferBudget,
    /// `None` once handed over.
    message: Option<Message>,
}

impl<'b> Held<'b> {
    /// Holds `message`'s [`held_bytes`](Message::held_bytes) on `budget`.
    #[inline]
    pub fn new(budget: &'b BufferBudget, message: Message) -> Self {
        budget.hold(message.held_bytes());
        Self {
            budget,
            message: Some(message),
        }
    }

    /// The record.
    pub fn message(&self) -> &Message {
        self.message
            .as_ref()
            .expect("a held record has its message")
    }

    /// Hands the record to the worker's `queue` if it has room now (returning how many
    /// records are queued with it); the worker releases its bytes once it finished it. A full
    /// queue or one whose worker is gone gives the record back, still held (drop it to release
    /// it).
    #[inline]
    // The record comes back unboxed, as from `QueueSender::try_send`: boxing it would
    // allocate per record on the fetch path.
    #[allow(clippy::result_large_err)]
    pub fn try_send(self, queue: &QueueSender) -> Result<usize, TrySendError<Self>> {
        let budget = self.budget;
        Self::queue(budget, self.hand_over(), queue)
    }

    /// [`Held::new`] then [`Held::try_send`] in one: the record moves straight into the
    /// queue, and is wrapped only when given back. Each move of a record is a `memcpy` on the
    /// fetch path (issue 21's profile).
    ///
    /// ```
    /// use faststream_core::broker::{BufferBudget, Held};
    /// use faststream_core::Message;
    ///
    /// let budget = BufferBudget::new(1 << 20);
    /// let (queue, worker) = faststream_core::broker::partition_queue(1);
    /// assert_eq!(Held::try_send_new(&budget, Message::new("t", &b"four"[..]), &queue).ok(), Some(1));
    /// let full = Held::try_send_new(&budget, Message::new("t", &b"more"[..]), &queue);
    /// assert_eq!(budget.held(), 8, "the refused record is still held");
    /// drop(full);
    /// assert_eq!(budget.held(), 4, "dropped unhandled: released");
    /// # drop(worker);
    /// ```
    #[inline]
    #[allow(clippy::result_large_err)]
    pub fn try_send_new(
        budget: &'b BufferBudget,
        message: Message,
        queue: &QueueSender,
    ) -> Result<usize, TrySendError<Self>> {
        budget.hold(message.held_bytes());
        Self::queue(budget, message, queue)
    }

    /// Queues a record held on `budget`, giving it back held when refused.
    #[inline(always)]
    #[allow(clippy::result_large_err)]
    fn queue(
        budget: &'b BufferBudget,
        message: Message,
        queue: &QueueSender,
    ) -> Result<usize, TrySendError<Self>> {
        let held = |message| Held {
            budget,
            message: Some(message),
        };
        queue.try_send(message).map_err(|refused| match refused {
            TrySendError::Full(message) => TrySendError::Full(held(message)),
            TrySendError::Closed(message) => TrySendError::Closed(held(message)),
        })
    }

    /// Hands the record to the worker's `queue`, waiting for room. When the worker is gone,
    /// or this future is dropped before the queue had room, the record's bytes are released.
    /// Returns whether the worker got it.
    pub async fn send(self, queue: &QueueSender) -> bool {
        let mut held = self;
        loop {
            match held.try_send(queue) {
                Ok(_) => return true,
                // Dropped here, so released.
                Err(TrySendError::Closed(_)) => return false,
                Err(TrySendError::Full(back)) => held = back,
            }
            queue.room().await;
        }
    }

    /// Takes the record out without releasing its bytes: whoever gets it now answers for them.
    #[inline]
    fn hand_over(mut self) -> Message {
        self.message.take().expect("a held record has its message")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(message) = &self.message {
            self.budget.release(message.held_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &'static [u8]) -> Message {
        Message::new("t", payload)
    }

    #[test]
    fn a_held_record_dropped_unhandled_is_released() {
        let budget = BufferBudget::new(100);
        let held = Held::new(&budget, record(b"12345"));
        assert_eq!(budget.held(), 5);
        assert_eq!(&held.message().payload[..], b"12345");
        drop(held);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_record_handed_over_stays_held_until_the_worker_releases_it() {
        let budget = BufferBudget::new(100);
        let (queue, mut worker) = super::super::partition_queue(1);
        Held::new(&budget, record(b"123")).try_send(&queue).unwrap();
        assert_eq!(budget.held(), 3);
        let full = Held::new(&budget, record(b"45"));
        let Err(TrySendError::Full(full)) = full.try_send(&queue) else {
            panic!("the queue is full");
        };
        assert_eq!(budget.held(), 5, "given back still held");
        drop(full);
        assert_eq!(budget.held(), 3);
        let got = worker.try_recv().unwrap();
        budget.release(got.held_bytes());
        drop(worker);
        let Err(TrySendError::Closed(closed)) = Held::new(&budget, record(b"6")).try_send(&queue)
        else {
            panic!("the worker is gone");
        };
        drop(closed);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_send_given_up_releases_the_record() {
        let budget = BufferBudget::new(100);
        let (queue, worker) = super::super::partition_queue(1);
        assert!(Held::new(&budget, record(b"12")).send(&queue).await);
        // The queue is full: the send waits, and is given up (a stop).
        let waiting = Held::new(&budget, record(b"345")).send(&queue);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        assert_eq!(budget.held(), 2, "only the record the worker got");
        drop(worker);
        assert!(!Held::new(&budget, record(b"6")).send(&queue).await);
        assert_eq!(budget.held(), 2);
    }
}
