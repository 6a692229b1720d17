//! The queue from a backend to one partition's worker.
//!
//! Ordered, one receiver, bounded by a capacity (`usize::MAX` for a backend that bounds it
//! itself, as the Kafka consumer does by pausing the partition). It does what `tokio::sync::mpsc` did here for less: the
//! records sit in blocks behind a lock that only the backend's fetch loop and the worker
//! take, with no semaphore; the worker is woken only when the queue goes from empty to not
//! empty. The fetch path moves every record through it, so this is per-record cost (issue
//! 21's profile).
//!
//! Past its first [`BLOCK`] records a queue grows by whole blocks, never by copying what it
//! holds: one `VecDeque` that doubled copied every queued record into its new memory, about
//! one copy per record while a drain filled the memory budget (a `realloc` and a `memcpy`,
//! 190 instructions per record in issue 21's profile). The first block grows as a `VecDeque`
//! does, so an idle partition holds little. One emptied block is kept for the next burst; the
//! rest of a burst's memory goes back block by block as the worker takes it.
//!
//! The worker of an unbounded queue (the Kafka consumer's) takes a whole block at a time,
//! under one lock, and hands its records out without the lock: one lock per record on the
//! worker's side was about 60 instructions of issue 21's drain. What it holds so still counts
//! as queued for the backend ([`QueueSender::progress`]). Dropped, it puts what it held back
//! into the queue, where [`QueueSender::take_all`] finds it, or, for a backend that counts
//! records against a [`BufferBudget`](super::BufferBudget), releases it there
//! ([`QueueReceiver::release_on_drop`]): an aborted worker's task is dropped some time after
//! the abort, possibly after the backend took what was left in the queue.

use crate::message::Message;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// Records per block: a block of 256 records of about 160 bytes each is 40 KiB, allocated
/// once per 256 records while a queue grows (0.004 allocations per record).
const BLOCK: usize = 256;

/// A queue of `capacity` records (at least one) from a backend to a partition worker.
///
/// ```
/// use faststream_core::broker::partition_queue;
/// use faststream_core::Message;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (queue, mut worker) = partition_queue(2);
/// queue.try_send(Message::new("t", "a")).unwrap();
/// queue.try_send(Message::new("t", "b")).unwrap();
/// assert!(queue.try_send(Message::new("t", "c")).is_err(), "full");
/// assert_eq!(worker.recv().await.unwrap().payload, "a");
/// drop(queue);
/// assert_eq!(worker.recv().await.unwrap().payload, "b");
/// assert!(worker.recv().await.is_none(), "every sender is gone");
/// # });
/// ```
pub fn partition_queue(capacity: usize) -> (QueueSender, QueueReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            records: Blocks::default(),
            senders: 1,
            receiver_closed: false,
        }),
        capacity: capacity.max(1),
        taken: AtomicU64::new(0),
        in_hand: AtomicUsize::new(0),
        filled: Notify::new(),
        emptied: Notify::new(),
    });
    (
        QueueSender {
            shared: Arc::clone(&shared),
        },
        QueueReceiver {
            shared,
            in_hand: VecDeque::new(),
            taken: 0,
            release: None,
        },
    )
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Records the receiver took so far, and those it holds in hand (taken out of `state` in
    /// a block, not handed out yet). Written by the receiver only.
    taken: AtomicU64,
    in_hand: AtomicUsize,
    /// The receiver waits on it: notified when the queue stops being empty, or closes.
    filled: Notify,
    /// Senders waiting for room wait on it: notified when a full queue gives up a record, or
    /// the receiver closes.
    emptied: Notify,
}

#[derive(Debug)]
struct State {
    records: Blocks,
    senders: usize,
    receiver_closed: bool,
}

/// A FIFO of records in blocks of [`BLOCK`] (see the module docs).
#[derive(Debug, Default)]
struct Blocks {
    /// Oldest first. None holds more than [`BLOCK`] records, so a block never reallocates;
    /// only the last may be empty (a short queue stays in it, as in one ring buffer).
    blocks: VecDeque<VecDeque<Message>>,
    len: usize,
    /// A block a burst emptied, for the next burst.
    spare: Option<VecDeque<Message>>,
}

// `push_back` and `pop_front` are inlined, so that a record moves once into its block and
// once out: as calls, it moved through their arguments and return values too (issue 21's
// profile).
impl Blocks {
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn push_back(&mut self, message: Message) {
        match self.blocks.back_mut() {
            Some(last) if last.len() < BLOCK => last.push_back(message),
            _ => {
                let mut block = match self.spare.take() {
                    Some(spare) => spare,
                    // The first grows on demand (see the module docs).
                    None if self.blocks.is_empty() => VecDeque::new(),
                    None => VecDeque::with_capacity(BLOCK),
                };
                block.push_back(message);
                self.blocks.push_back(block);
            }
        }
        self.len += 1;
    }

    #[inline(always)]
    fn pop_front(&mut self) -> Option<Message> {
        let first = self.blocks.front_mut()?;
        let message = first.pop_front()?;
        if first.is_empty() && self.blocks.len() > 1 {
            // A burst's blocks are freed as they empty, but one.
            let emptied = self.blocks.pop_front();
            if self.spare.is_none() {
                self.spare = emptied;
            }
        }
        self.len -= 1;
        Some(message)
    }

    /// Takes the oldest block out whole, leaving `empty` (an emptied block, for its memory)
    /// in its place when it was the only one. Empty when the queue is.
    fn take_front_block(&mut self, empty: VecDeque<Message>) -> VecDeque<Message> {
        let taken = if self.blocks.len() > 1 {
            let taken = self.blocks.pop_front().unwrap_or_default();
            if self.spare.is_none() && empty.capacity() > 0 {
                self.spare = Some(empty);
            }
            taken
        } else {
            match self.blocks.front_mut() {
                Some(only) => std::mem::replace(only, empty),
                None => return empty,
            }
        };
        self.len -= taken.len();
        taken
    }

    /// Puts `records`, older than every record queued, back in front.
    fn put_back(&mut self, records: VecDeque<Message>) {
        if !records.is_empty() {
            self.len += records.len();
            self.blocks.push_front(records);
        }
    }

    /// Every record, oldest first; the queue keeps no memory.
    fn take_all(&mut self) -> Vec<Message> {
        let taken = std::mem::take(self);
        let mut all = Vec::with_capacity(taken.len);
        all.extend(taken.blocks.into_iter().flatten());
        all
    }
}

impl Shared {
    #[inline]
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while pushing or popping a `VecDeque`, which leaves
        // it consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The backend's end of a [`partition_queue`]. Cloning adds a sender; the receiver sees the
/// queue end once every sender is dropped and the records left are taken.
#[derive(Debug)]
pub struct QueueSender {
    shared: Arc<Shared>,
}

impl QueueSender {
    /// Queues `message` if there is room now, and returns how many records are queued with
    /// it; gives it back when the queue is full or its receiver is gone.
    #[inline(always)]
    // The message comes back unboxed, like `mpsc::Sender::try_send`'s: boxing would allocate.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, message: Message) -> Result<usize, TrySendError<Message>> {
        let queued = {
            let mut state = self.shared.state();
            if state.receiver_closed {
                return Err(TrySendError::Closed(message));
            }
            if state.records.len() >= self.shared.capacity {
                return Err(TrySendError::Full(message));
            }
            state.records.push_back(message);
            state.records.len()
        };
        // The receiver only ever waits after finding the queue empty.
        if queued == 1 {
            self.shared.filled.notify_one();
        }
        Ok(queued)
    }

    /// Queues `message`, waiting for room. Gives it back when the receiver is gone.
    #[allow(clippy::result_large_err)]
    pub async fn send(&self, mut message: Message) -> Result<(), Message> {
        loop {
            match self.try_send(message) {
                Ok(_) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                Err(TrySendError::Full(back)) => message = back,
            }
            self.room().await;
        }
    }

    /// Waits until the queue has room or its receiver is gone (either may have changed again
    /// by the time the caller looks).
    pub async fn room(&self) {
        loop {
            // Registered before looking, so that a close (which wakes only registered
            // waiters) between the look and the wait is not missed.
            let notified = self.shared.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.shared.state();
                if state.receiver_closed || state.records.len() < self.shared.capacity {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Whether the receiver is gone: nothing sent reaches a worker any more.
    pub fn is_closed(&self) -> bool {
        self.shared.state().receiver_closed
    }

    /// Records queued now (those the receiver holds in hand included), and how many the
    /// receiver took so far (a count that stands still while records wait means the worker
    /// makes no progress).
    pub fn progress(&self) -> (usize, u64) {
        let queued = self.shared.state().records.len();
        let in_hand = self.shared.in_hand.load(Ordering::Relaxed);
        (queued + in_hand, self.shared.taken.load(Ordering::Relaxed))
    }

    /// Takes every queued record out, oldest first (for a receiver that is gone without
    /// taking them).
    pub fn take_all(&self) -> Vec<Message> {
        self.shared.state().records.take_all()
    }
}

impl Clone for QueueSender {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.state();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.filled.notify_one();
        }
    }
}

/// The worker's end of a [`partition_queue`]. Dropping it closes the queue: senders get
/// their records back as [`TrySendError::Closed`], and what it held in hand goes back into
/// the queue (or is released: [`QueueReceiver::release_on_drop`]).
#[derive(Debug)]
pub struct QueueReceiver {
    shared: Arc<Shared>,
    /// Records taken out of an unbounded queue in a block, oldest first (see the module docs).
    in_hand: VecDeque<Message>,
    /// Records handed out so far (`Shared::taken` mirrors it).
    taken: u64,
    /// Releases the held bytes of what it holds in hand when it is dropped (else that goes
    /// back into the queue).
    release: Option<ReleaseHeld>,
}

/// What a dropped [`QueueReceiver`] calls with the held bytes of the records it held.
struct ReleaseHeld(Box<dyn Fn(usize) + Send + Sync>);

impl std::fmt::Debug for ReleaseHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseHeld")
    }
}

impl QueueReceiver {
    /// The next record, waiting for one; `None` once every sender is gone and the queue is
    /// empty.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.try_recv() {
                Ok(message) => return Some(message),
                Err(TryRecvError::Disconnected) => return None,
                // A sender notifies after pushing onto an empty queue; a notification that
                // came before this wait is kept as a permit, so none is lost.
                Err(TryRecvError::Empty) => self.shared.filled.notified().await,
            }
        }
    }

    /// The next record if one is queued.
    #[inline(always)]
    pub fn try_recv(&mut self) -> Result<Message, TryRecvError> {
        if self.in_hand.is_empty() {
            self.take_more()?;
        }
        let Some(message) = self.in_hand.pop_front() else {
            return Err(TryRecvError::Empty);
        };
        self.taken += 1;
        self.shared.taken.store(self.taken, Ordering::Relaxed);
        self.shared
            .in_hand
            .store(self.in_hand.len(), Ordering::Relaxed);
        Ok(message)
    }

    /// Takes records in hand under the lock: the oldest block of an unbounded queue, one
    /// record of a bounded one (whose senders wait for the room it leaves).
    #[inline(never)]
    fn take_more(&mut self) -> Result<(), TryRecvError> {
        let mut state = self.shared.state();
        if state.records.len() == 0 {
            return Err(if state.senders == 0 {
                TryRecvError::Disconnected
            } else {
                TryRecvError::Empty
            });
        }
        if self.shared.capacity == usize::MAX {
            let empty = std::mem::take(&mut self.in_hand);
            self.in_hand = state.records.take_front_block(empty);
            // Set under the lock, so that `progress` never misses the records in between.
            self.shared
                .in_hand
                .store(self.in_hand.len(), Ordering::Relaxed);
            return Ok(());
        }
        let was_full = state.records.len() >= self.shared.capacity;
        self.in_hand.extend(state.records.pop_front());
        drop(state);
        if was_full {
            self.shared.emptied.notify_one();
        }
        Ok(())
    }

    /// When dropped, calls `release` with the [`Message::held_bytes`] of the records it holds
    /// in hand (and drops them) instead of putting them back into the queue: for a backend
    /// that holds each queued record's bytes on a budget and releases what it takes back with
    /// [`QueueSender::take_all`], which may run before a worker's aborted task is dropped.
    ///
    /// ```
    /// use faststream_core::broker::{partition_queue, BufferBudget, Held};
    /// use faststream_core::Message;
    /// use std::sync::Arc;
    ///
    /// let budget = Arc::new(BufferBudget::new(1 << 20));
    /// let (queue, mut worker) = partition_queue(usize::MAX);
    /// let held = Arc::clone(&budget);
    /// worker.release_on_drop(move |bytes| held.release(bytes));
    /// for payload in ["a", "b"] {
    ///     Held::try_send_new(&budget, Message::new("t", payload), &queue).unwrap();
    /// }
    /// let first = worker.try_recv().unwrap();
    /// budget.release(first.held_bytes());
    /// drop(worker); // "b" was in its hand
    /// assert_eq!(budget.held(), 0);
    /// assert!(queue.take_all().is_empty());
    /// ```
    pub fn release_on_drop(&mut self, release: impl Fn(usize) + Send + Sync + 'static) {
        self.release = Some(ReleaseHeld(Box::new(release)));
    }

    /// Refuses further records; those already queued can still be taken with
    /// [`try_recv`](Self::try_recv).
    pub fn close(&mut self) {
        self.shared.state().receiver_closed = true;
        self.shared.emptied.notify_waiters();
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        self.close();
        let in_hand = std::mem::take(&mut self.in_hand);
        if in_hand.is_empty() {
            return;
        }
        match &self.release {
            Some(ReleaseHeld(release)) => release(in_hand.iter().map(Message::held_bytes).sum()),
            None => self.shared.state().records.put_back(in_hand),
        }
        self.shared.in_hand.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(payload: &'static str) -> Message {
        Message::new("t", payload)
    }

    #[tokio::test]
    async fn records_come_out_in_order_and_a_full_queue_refuses() {
        let (tx, mut rx) = partition_queue(3);
        for p in ["1", "2", "3"] {
            tx.try_send(message(p)).unwrap();
        }
        let Err(TrySendError::Full(back)) = tx.try_send(message("4")) else {
            panic!("a full queue takes nothing more");
        };
        assert_eq!(back.payload, "4", "the refused record comes back");
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m.payload);
        }
        assert_eq!(out, ["1", "2", "3"]);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }

    #[test]
    fn sends_report_the_queue_length_and_the_sender_sees_what_was_taken() {
        let (tx, mut rx) = partition_queue(usize::MAX);
        assert_eq!(tx.try_send(message("1")).unwrap(), 1);
        assert_eq!(tx.try_send(message("2")).unwrap(), 2);
        assert_eq!(tx.progress(), (2, 0));
        rx.try_recv().unwrap();
        assert_eq!(
            tx.progress(),
            (1, 1),
            "what the receiver holds in hand counts"
        );
        drop(rx);
        let left = tx.take_all();
        assert_eq!(left.len(), 1, "a dropped receiver puts what it held back");
        assert_eq!(left[0].payload, "2");
        assert_eq!(tx.progress(), (0, 1));
    }

    #[test]
    fn the_receiver_of_an_unbounded_queue_takes_a_block_at_once_and_keeps_the_order() {
        let (tx, mut rx) = partition_queue(usize::MAX);
        for i in 0..BLOCK + 10 {
            tx.try_send(Message::new("t", i.to_string())).unwrap();
        }
        assert_eq!(rx.try_recv().unwrap().payload, "0");
        assert_eq!(rx.in_hand.len(), BLOCK - 1, "the first block is in hand");
        assert_eq!(rx.shared.state().records.len(), 10);
        // Records sent meanwhile come after those in hand.
        tx.try_send(Message::new("t", "last")).unwrap();
        for i in 1..BLOCK + 10 {
            assert_eq!(rx.try_recv().unwrap().payload, i.to_string());
        }
        assert_eq!(rx.try_recv().unwrap().payload, "last");
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        assert_eq!(tx.progress(), (0, BLOCK as u64 + 11));
    }

    #[test]
    fn a_bounded_queue_gives_its_senders_room_record_by_record() {
        let (tx, mut rx) = partition_queue(2);
        tx.try_send(message("1")).unwrap();
        tx.try_send(message("2")).unwrap();
        rx.try_recv().unwrap();
        assert!(rx.in_hand.is_empty(), "one record at a time");
        tx.try_send(message("3")).unwrap();
        assert!(matches!(
            tx.try_send(message("4")),
            Err(TrySendError::Full(_))
        ));
    }

    /// The blocks' capacities, in records.
    fn capacities(rx: &QueueReceiver) -> Vec<usize> {
        let state = rx.shared.state();
        state
            .records
            .blocks
            .iter()
            .map(VecDeque::capacity)
            .collect()
    }

    #[test]
    fn a_burst_grows_by_blocks_in_order_and_gives_them_back_as_it_is_taken() {
        let (tx, mut rx) = partition_queue(usize::MAX);
        let burst = 20 * BLOCK + 3;
        for i in 0..burst {
            tx.try_send(Message::new("t", i.to_string())).unwrap();
        }
        let held = capacities(&rx);
        assert_eq!(held.len(), 21);
        // The first block grew to a block's size, and no other grew past its allocation.
        assert!(
            held.iter().all(|&c| (BLOCK..2 * BLOCK).contains(&c)),
            "{held:?}"
        );
        for i in 0..10 * BLOCK {
            assert_eq!(rx.try_recv().unwrap().payload, i.to_string());
        }
        assert_eq!(
            capacities(&rx).len(),
            11,
            "the ten emptied blocks left the queue"
        );
        assert!(
            rx.shared.state().records.spare.is_some(),
            "one kept for the next burst"
        );
        for i in 10 * BLOCK..burst {
            assert_eq!(rx.try_recv().unwrap().payload, i.to_string());
        }
        let state = rx.shared.state();
        assert_eq!(state.records.len(), 0);
        assert_eq!(state.records.blocks.len(), 1, "the last block stays, empty");
    }

    #[test]
    fn a_short_queue_holds_little() {
        let (tx, rx) = partition_queue(usize::MAX);
        tx.try_send(message("x")).unwrap();
        assert!(capacities(&rx)[0] < BLOCK / 8, "{:?}", capacities(&rx));
    }

    #[test]
    fn a_steady_flow_stays_in_one_block() {
        let (tx, mut rx) = partition_queue(usize::MAX);
        for i in 0..10 * BLOCK {
            tx.try_send(message("a")).unwrap();
            tx.try_send(message("b")).unwrap();
            assert_eq!(rx.try_recv().unwrap().payload, "a");
            assert_eq!(rx.try_recv().unwrap().payload, "b", "{i}");
            let state = rx.shared.state();
            assert_eq!(state.records.blocks.len(), 1);
            assert!(state.records.spare.is_none(), "no second block was needed");
        }
        assert_eq!(rx.shared.taken.load(Ordering::Relaxed), 20 * BLOCK as u64);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = partition_queue(4);
        let receiver = tokio::spawn(async move { rx.recv().await.map(|m| m.payload) });
        tokio::task::yield_now().await;
        tx.try_send(message("x")).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"x"[..]));
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_when_the_receiver_takes_one() {
        let (tx, mut rx) = partition_queue(1);
        tx.try_send(message("a")).unwrap();
        let sender = tokio::spawn(async move { tx.send(message("b")).await.is_ok() });
        tokio::task::yield_now().await;
        assert!(!sender.is_finished(), "no room yet");
        assert_eq!(rx.recv().await.unwrap().payload, "a");
        let sent = tokio::time::timeout(Duration::from_secs(5), sender)
            .await
            .expect("woken")
            .unwrap();
        assert!(sent);
        assert_eq!(rx.recv().await.unwrap().payload, "b");
        assert!(rx.recv().await.is_none(), "the sender is gone");
    }

    #[tokio::test]
    async fn closing_refuses_senders_but_keeps_what_was_queued() {
        let (tx, mut rx) = partition_queue(1);
        tx.try_send(message("kept")).unwrap();
        let waiting = tx.clone();
        let blocked = tokio::spawn(async move { waiting.send(message("late")).await });
        tokio::task::yield_now().await;
        rx.close();
        let refused = tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("woken by the close")
            .unwrap();
        assert_eq!(refused.map_err(|m| m.payload), Err("late".into()));
        assert!(tx.is_closed());
        assert!(matches!(
            tx.try_send(message("x")),
            Err(TrySendError::Closed(_))
        ));
        assert_eq!(rx.try_recv().unwrap().payload, "kept");
    }
}
