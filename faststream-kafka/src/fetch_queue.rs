//! The subscriber's fetched records, read from librdkafka in batches.
//!
//! rdkafka's `BaseConsumer::poll` hands out one record per call through librdkafka's event
//! API: per record a queue wait, an event, a latency sample, clock reads and an `Arc`
//! allocated to keep the event alive, about 1,050 instructions in all (issue 21's drain
//! profile). Here the consumer's assigned partitions forward their fetched records to a
//! queue of the subscriber's own ([`FetchQueue`]), which the fetch loop reads many records at
//! a time (`rd_kafka_consume_batch_queue`). Everything else (rebalances, commits, errors,
//! statistics) stays on the consumer's main queue, which the fetch loop serves through rdkafka
//! between batches. An event arriving there cuts a wait for records short
//! (`rd_kafka_queue_yield`), so it is served as soon as it would have been before.
//!
//! Batch reads cannot go through the main queue itself: read that way, librdkafka answers a
//! rebalance event with an assignment of its own instead of returning it, and the
//! subscriber's workers would never start.

use rdkafka::bindings as native;
use rdkafka::error::{IsError, KafkaError};
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Records read per batch, at most.
pub(crate) const BATCH: usize = 64;

/// The address of a subscriber's [`FetchQueue`] while it exists (null before and after), for
/// the rebalance callback that forwards newly assigned partitions to it. Rebalances are served
/// on the fetch loop's thread, which also drops the queue, so the address never dangles there.
///
/// Every assignment must forward its partitions: once a partition was forwarded, librdkafka no
/// longer forwards it to the main queue itself when it is assigned again
/// (`RD_KAFKA_Q_F_FWD_APP`), so its records would reach no one.
#[derive(Debug, Default)]
pub(crate) struct FetchTarget(AtomicPtr<native::rd_kafka_queue_t>);

impl FetchTarget {
    /// Forwards the fetched records of `topic`'s `partition` to the fetch queue (records
    /// already fetched move along with them). Without a queue (the subscriber is closing and
    /// reads no more records) it does nothing.
    pub(crate) fn forward(&self, client: *mut native::rd_kafka_t, topic: &str, partition: i32) {
        let target = self.0.load(Ordering::Acquire);
        if target.is_null() {
            return;
        }
        let Ok(topic) = CString::new(topic) else {
            return;
        };
        // SAFETY: `client` is the live consumer; the partition's queue handle is released
        // right after, and `target` is live (see the type's docs).
        unsafe {
            let queue = native::rd_kafka_queue_get_partition(client, topic.as_ptr(), partition);
            if queue.is_null() {
                return;
            }
            native::rd_kafka_queue_forward(queue, target);
            native::rd_kafka_queue_destroy(queue);
        }
    }
}

/// The queue a subscriber's assigned partitions forward their records to, read in batches.
/// Dropped on the fetch loop's thread, before the consumer it belongs to.
pub(crate) struct FetchQueue {
    queue: NonNull<native::rd_kafka_queue_t>,
    /// A handle to the consumer's main queue, whose non-empty callback wakes this queue's
    /// reader.
    main: NonNull<native::rd_kafka_queue_t>,
    target: Arc<FetchTarget>,
    /// Room for one batch of messages.
    batch: Vec<*mut native::rd_kafka_message_t>,
}

// SAFETY: librdkafka's queues are thread-safe; the pointers are owned handles.
unsafe impl Send for FetchQueue {}

impl std::fmt::Debug for FetchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchQueue").finish_non_exhaustive()
    }
}

/// Called by librdkafka when the consumer's main queue gets an event: ends the fetch loop's
/// wait for records, so that it serves the event.
unsafe extern "C" fn main_queue_nonempty(_client: *mut native::rd_kafka_t, queue: *mut c_void) {
    // SAFETY: the callback is removed before the queue is destroyed (`FetchQueue::drop`), and
    // librdkafka does not run it after its removal returned.
    unsafe { native::rd_kafka_queue_yield(queue.cast()) };
}

impl FetchQueue {
    /// A fetch queue for the consumer `client`, published in `target` for the rebalance
    /// callback. `None` if librdkafka cannot make one.
    pub(crate) fn new(client: *mut native::rd_kafka_t, target: Arc<FetchTarget>) -> Option<Self> {
        // SAFETY: `client` is a live consumer; both handles are owned here and released in
        // `drop`.
        let (queue, main) = unsafe {
            let queue = NonNull::new(native::rd_kafka_queue_new(client))?;
            let Some(main) = NonNull::new(native::rd_kafka_queue_get_consumer(client)) else {
                native::rd_kafka_queue_destroy(queue.as_ptr());
                return None;
            };
            native::rd_kafka_queue_cb_event_enable(
                main.as_ptr(),
                Some(main_queue_nonempty),
                queue.as_ptr().cast(),
            );
            (queue, main)
        };
        target.0.store(queue.as_ptr(), Ordering::Release);
        Some(Self {
            queue,
            main,
            target,
            batch: Vec::with_capacity(BATCH),
        })
    }

    /// The records waiting, up to `most` (at most [`BATCH`]); when none is, waits up to
    /// `timeout` for the first one (a main queue event ends the wait early, with nothing
    /// read). Each is handed to `each` in order, an error (a partition's end, a fetch error)
    /// as such.
    pub(crate) fn read(
        &mut self,
        timeout: Duration,
        most: usize,
        mut each: impl FnMut(Result<&BatchedMessage, KafkaError>),
    ) -> usize {
        // Nothing waiting: wait for one record only, since a batch read waits until its batch
        // is full or the time is up.
        let mut count = self.consume(0, most.max(1));
        if count == 0 && !timeout.is_zero() {
            let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            count = self.consume(millis, 1);
        }
        for message in self.batch.drain(..) {
            let Some(message) = NonNull::new(message).map(BatchedMessage) else {
                continue;
            };
            match message.error() {
                None => each(Ok(&message)),
                Some(err) => each(Err(err)),
            }
        }
        count
    }

    /// Whether the consumer's main queue holds events to serve.
    pub(crate) fn events_waiting(&self) -> bool {
        // SAFETY: the handle is live.
        unsafe { native::rd_kafka_queue_length(self.main.as_ptr()) > 0 }
    }

    /// One `rd_kafka_consume_batch_queue` into `batch`; its count.
    fn consume(&mut self, timeout_ms: i32, size: usize) -> usize {
        self.batch.clear();
        // SAFETY: `batch` has room for `size` (at most `BATCH`) pointers, which librdkafka
        // fills with messages owned by the caller from here on.
        let read = unsafe {
            native::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                self.batch.as_mut_ptr(),
                size.min(self.batch.capacity()),
            )
        };
        let read = usize::try_from(read).unwrap_or(0);
        // SAFETY: librdkafka wrote `read` pointers.
        unsafe { self.batch.set_len(read) };
        read
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        self.target.0.store(std::ptr::null_mut(), Ordering::Release);
        // SAFETY: the handles are owned here. The callback goes first: after its removal
        // returns, librdkafka no longer calls it with this queue.
        unsafe {
            native::rd_kafka_queue_cb_event_enable(self.main.as_ptr(), None, std::ptr::null_mut());
            native::rd_kafka_queue_destroy(self.main.as_ptr());
            native::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// A record read from a [`FetchQueue`], owned until dropped.
pub(crate) struct BatchedMessage(NonNull<native::rd_kafka_message_t>);

impl Drop for BatchedMessage {
    fn drop(&mut self) {
        // SAFETY: the message was handed over by `rd_kafka_consume_batch_queue`, once.
        unsafe { native::rd_kafka_message_destroy(self.0.as_ptr()) };
    }
}

impl BatchedMessage {
    fn error(&self) -> Option<KafkaError> {
        // SAFETY: the message is live.
        let message = unsafe { self.0.as_ref() };
        if !message.err.is_error() {
            return None;
        }
        Some(match message.err {
            native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                KafkaError::PartitionEOF(message.partition)
            }
            err => KafkaError::MessageConsumption(err.into()),
        })
    }
}

/// What the consumer reads of a fetched record, from rdkafka's `BorrowedMessage` or from a
/// [`BatchedMessage`]: each reads librdkafka's message the same way.
pub(crate) trait Fetched {
    /// librdkafka's message, live as long as `self`.
    fn native(&self) -> *mut native::rd_kafka_message_t;

    /// librdkafka's handle of the record's topic.
    fn topic_ptr(&self) -> *mut native::rd_kafka_topic_t {
        // SAFETY: `native` is live.
        unsafe { (*self.native()).rkt }
    }

    /// The topic's name as librdkafka holds it (NUL excluded).
    fn topic_bytes(&self) -> &[u8] {
        // SAFETY: the topic handle of a message stays valid while the message does, and
        // `rd_kafka_topic_name` returns its NUL-terminated name, owned by that handle.
        unsafe { CStr::from_ptr(native::rd_kafka_topic_name(self.topic_ptr())) }.to_bytes()
    }

    /// The topic's name, for log lines.
    fn topic_name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.topic_bytes())
    }

    fn partition(&self) -> i32 {
        // SAFETY: `native` is live.
        unsafe { (*self.native()).partition }
    }

    fn offset(&self) -> i64 {
        // SAFETY: `native` is live.
        unsafe { (*self.native()).offset }
    }

    /// The record's timestamp in milliseconds (create or log-append time), if it has one.
    fn timestamp_millis(&self) -> Option<i64> {
        let mut kind = native::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `native` is live.
        let millis = unsafe { native::rd_kafka_message_timestamp(self.native(), &mut kind) };
        (millis != -1
            && kind != native::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE)
            .then_some(millis)
    }

    fn key(&self) -> Option<&[u8]> {
        // SAFETY: `native` is live; the key lives as long as the message.
        unsafe {
            let message = &*self.native();
            slice(message.key, message.key_len)
        }
    }

    fn payload(&self) -> Option<&[u8]> {
        // SAFETY: `native` is live; the payload lives as long as the message.
        unsafe {
            let message = &*self.native();
            slice(message.payload, message.len)
        }
    }
}

/// The bytes at `data` (`None` for a null pointer).
///
/// # Safety
/// `data` is null or points to `len` readable bytes that outlive `'a`.
unsafe fn slice<'a>(data: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        None
    } else {
        // SAFETY: the caller's promise.
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
    }
}

impl Fetched for BatchedMessage {
    fn native(&self) -> *mut native::rd_kafka_message_t {
        self.0.as_ptr()
    }
}

impl Fetched for rdkafka::message::BorrowedMessage<'_> {
    fn native(&self) -> *mut native::rd_kafka_message_t {
        self.ptr()
    }
}
