//! The shared producer: many sends in flight, each tracked by a [`KafkaDelivery`].
//!
//! librdkafka's delivery report of a send goes to the send's [`DeliverySlot`] (the record's
//! opaque, one reference-counted allocation), which the [`KafkaDelivery`] future reads. That
//! is rdkafka's `FutureProducer` without its per-send oneshot channel and boxed sender, the
//! two allocations and the channel's bookkeeping it spends on every record. A delivery
//! dropped after its report arrived leaves its slot to the next send on the same thread
//! ([`spare_slot`]), so a steady stream of sends allocates no slot at all.

use crate::context::KafkaContext;
pub use crate::produce::KafkaProducer;
use crate::produce::{produce, TopicHandles};
use faststream_core::broker::outgoing_headers;
use faststream_core::message::CORRELATION_ID_LEN;
use faststream_core::{Delivered, Publish, PublishError, Record};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// An exactly-once member's current transactional producer, replaced when fenced (see the
/// `member` module). Its publisher reads it for each record.
pub(crate) type ProducerCell = Arc<std::sync::RwLock<KafkaProducer>>;

/// Where librdkafka's delivery report of one send goes: the producer's polling thread fills
/// it, and the send's [`KafkaDelivery`] takes it. A record sent through
/// [`KafkaPublisher::producer`] directly carries one as its opaque (see
/// [`KafkaDelivery::new`]).
#[derive(Debug, Default)]
pub struct DeliverySlot(Mutex<Report>);

/// Where a record landed (partition, offset), or why it did not: boxed, as it is rare and
/// would make every slot (kept for reuse, see [`spare_slot`]) nearly three times as large.
type Outcome = Result<(i32, i64), Box<KafkaError>>;

/// What a [`DeliverySlot`] holds.
#[derive(Debug, Default)]
enum Report {
    /// No report yet, and no task waiting for it.
    #[default]
    Pending,
    /// No report yet; the waker of the task waiting for it.
    Waiting(Waker),
    /// Where the record landed, or why it did not.
    Arrived(Outcome),
    /// Taken by the delivery future.
    Taken,
}

impl DeliverySlot {
    fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        // A poisoned lock only means a panic elsewhere; the report stays consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores the report and wakes the task waiting for it.
    fn arrive(&self, outcome: Result<(i32, i64), KafkaError>) {
        let outcome = Report::Arrived(outcome.map_err(Box::new));
        let waiting = std::mem::replace(&mut *self.report(), outcome);
        if let Report::Waiting(waker) = waiting {
            waker.wake();
        }
    }

    /// The report; `Pending` (noting `cx`'s waker) while it has not arrived, and `None` once
    /// it was taken before.
    fn take(&self, cx: &Context<'_>) -> Poll<Option<Outcome>> {
        let mut report = self.report();
        match std::mem::replace(&mut *report, Report::Taken) {
            Report::Arrived(outcome) => Poll::Ready(Some(outcome)),
            Report::Waiting(waker) if waker.will_wake(cx.waker()) => {
                *report = Report::Waiting(waker);
                Poll::Pending
            }
            Report::Pending | Report::Waiting(_) => {
                *report = Report::Waiting(cx.waker().clone());
                Poll::Pending
            }
            Report::Taken => Poll::Ready(None),
        }
    }
}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = Arc<DeliverySlot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Arc<DeliverySlot>) {
        slot.arrive(match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((err, _)) => Err(err.clone()),
        });
    }
}

/// Publishes records through one shared, idempotent rdkafka producer.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: KafkaProducer,
    /// librdkafka's handles of the topics `producer` sends to (none for an exactly-once
    /// member, whose producer is replaced when fenced: it sends through rdkafka's path).
    topics: Option<Arc<TopicHandles>>,
    context: KafkaContext,
    /// An exactly-once member's publisher: the member's current transactional producer
    /// (replaced when fenced), read for each record.
    member: Option<ProducerCell>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher").finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    pub(crate) fn new(producer: KafkaProducer, context: KafkaContext) -> Self {
        Self {
            topics: Some(Arc::new(TopicHandles::new(producer.clone()))),
            producer,
            context,
            member: None,
        }
    }

    /// The publisher of an exactly-once member: writes into the open transaction of the
    /// member's current producer (`producer` is the first one).
    pub(crate) fn transactional(
        producer: KafkaProducer,
        context: KafkaContext,
        member: ProducerCell,
    ) -> Self {
        Self {
            producer,
            topics: None,
            context,
            member: Some(member),
        }
    }

    /// The underlying rdkafka producer, for anything the framework does not wrap.
    pub fn producer(&self) -> &KafkaProducer {
        &self.producer
    }

    /// The producer's client context (the one inside [`KafkaPublisher::producer`]).
    pub(crate) fn context(&self) -> &KafkaContext {
        &self.context
    }
}

/// Acknowledgement of one record; resolves once Kafka acknowledged or refused it.
#[must_use = "a delivery does nothing unless awaited; drop it to publish fire-and-forget"]
pub struct KafkaDelivery {
    /// Handed to the [`Delivered`] it resolves to (`None` after): moved rather than cloned,
    /// as every worker publishing to the topic shares its reference count.
    topic: Option<Arc<str>>,
    /// Always `Some` until dropped (then, if nobody else holds it, kept for a later send).
    slot: Option<Arc<DeliverySlot>>,
}

/// Slots kept per thread for reuse, at most (a slot is a 48-byte allocation: 192 KiB).
///
/// A slot comes back only when its delivery completes, so a thread's sends reuse slots only
/// if it keeps as many as it has deliveries in flight. In the pipeline benchmark (1,000,000
/// records, 2 worker threads, 4,096 records in flight per partition, the default then) the
/// sends took a spare slot 16 % of the time with 256 kept, 49 % with 1,024 and 96 % with
/// 4,096. With 1,024 in flight per partition (the default since), fewer deliveries are
/// outstanding per thread than slots kept: that pipeline allocates 5.03 times per record,
/// 5.06 before.
const SPARE_SLOTS: usize = 4096;

thread_local! {
    /// Slots of completed deliveries dropped on this thread, each reset and held only here.
    static SPARES: RefCell<Vec<Arc<DeliverySlot>>> = const { RefCell::new(Vec::new()) };
}

/// A slot for a new send: one a completed delivery left on this thread, else a new one. The
/// pipeline's steady state drops each delivery on the worker's thread right after its report
/// arrived, so the next send reuses its slot instead of allocating (issue 21: one allocation
/// per published record).
fn spare_slot() -> Arc<DeliverySlot> {
    SPARES
        .try_with(|spares| spares.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Drop for KafkaDelivery {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        // Only a slot nobody else holds: librdkafka's reference is gone once the report
        // arrived, and a slot made by the user may still be theirs too.
        let Some(unique) = Arc::get_mut(&mut slot) else {
            return;
        };
        *unique.0.get_mut().unwrap_or_else(PoisonError::into_inner) = Report::Pending;
        // A thread being torn down keeps nothing.
        let _ = SPARES.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < SPARE_SLOTS {
                spares.push(slot);
            }
        });
    }
}

impl KafkaDelivery {
    /// The acknowledgement of a record sent through [`KafkaPublisher::producer`] with `slot`
    /// as its opaque.
    ///
    /// ```no_run
    /// # async fn publish(publisher: &faststream_kafka::KafkaPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// use faststream_kafka::rdkafka::producer::BaseRecord;
    /// use faststream_kafka::{DeliverySlot, KafkaDelivery};
    /// use std::sync::Arc;
    ///
    /// let slot = Arc::new(DeliverySlot::default());
    /// let record = BaseRecord::with_opaque_to("audit", Arc::clone(&slot))
    ///     .key("user-1")
    ///     .payload("signed in");
    /// publisher.producer().send(record).map_err(|(err, _)| err)?;
    /// let delivered = KafkaDelivery::new("audit", slot).await?;
    /// println!("at offset {}", delivered.offset);
    /// # Ok(()) }
    /// ```
    pub fn new(topic: impl Into<Arc<str>>, slot: Arc<DeliverySlot>) -> Self {
        Self {
            topic: Some(topic.into()),
            slot: Some(slot),
        }
    }
}

impl std::fmt::Debug for KafkaDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDelivery")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Future for KafkaDelivery {
    type Output = Result<Delivered, PublishError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(slot) = &this.slot else {
            return Poll::Ready(Err(this.awaited_again()));
        };
        slot.take(cx).map(|outcome| match outcome {
            Some(Ok((partition, offset))) => match this.topic.take() {
                Some(topic) => Ok(Delivered {
                    topic,
                    partition,
                    offset,
                }),
                None => Err(this.awaited_again()),
            },
            Some(Err(err)) => Err(publish_error(this.topic_name(), &err)),
            None => Err(this.awaited_again()),
        })
    }
}

impl KafkaDelivery {
    /// The topic, while it was not handed over.
    fn topic_name(&self) -> &str {
        self.topic.as_deref().unwrap_or_default()
    }

    fn awaited_again(&self) -> PublishError {
        PublishError::new(
            self.topic_name(),
            "the delivery was awaited again after it completed",
        )
    }
}

fn publish_error(topic: &str, err: &KafkaError) -> PublishError {
    PublishError::new(topic, err.to_string()).with_class(crate::classify(err))
}

/// The record's headers in the kit's wire order, built into rdkafka's list once.
fn headers_of(record: &Record) -> OwnedHeaders {
    // A fresh id is formatted on the stack: librdkafka copies header values anyway.
    let mut fresh_id = [0_u8; CORRELATION_ID_LEN];
    let written = outgoing_headers(record, &mut fresh_id);
    let headers = OwnedHeaders::new_with_capacity(written.len());
    written.fold(headers, |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// Hands `record` to `producer`, waiting only while librdkafka's queue is full; the returned
/// delivery tracks its acknowledgement. With `topics` (`producer`'s topic handles) the record
/// goes to librdkafka with its topic's handle (see the `produce` module); otherwise, or for a
/// topic without a handle, through rdkafka's `send`.
pub(crate) async fn send(
    producer: &KafkaProducer,
    topics: Option<&TopicHandles>,
    record: Record,
) -> Result<KafkaDelivery, PublishError> {
    let slot = spare_slot();
    hand_over(producer, topics, &record, &slot).await?;
    // The record's own reference to its topic moves into the delivery: a clone would change
    // a count that every worker publishing to the topic shares.
    Ok(KafkaDelivery::new(record.topic, slot))
}

/// [`send`]'s hand-over of `record` to librdkafka, its report going to `slot`.
async fn hand_over(
    producer: &KafkaProducer,
    topics: Option<&TopicHandles>,
    record: &Record,
    slot: &Arc<DeliverySlot>,
) -> Result<(), PublishError> {
    // rdkafka's record, made only for a record that takes rdkafka's path, and kept for its
    // retries.
    let mut through_rdkafka = None;
    let mut backoff = Duration::from_micros(200);
    loop {
        let refused = match topics.and_then(|topics| produce(topics, record, slot)) {
            Some(outcome) => outcome.err().map(KafkaError::MessageProduction),
            None => {
                let base = through_rdkafka
                    .take()
                    .unwrap_or_else(|| base_record(record, slot));
                match producer.send(base) {
                    Ok(()) => None,
                    Err((err, returned)) => {
                        through_rdkafka = Some(returned);
                        Some(err)
                    }
                }
            }
        };
        match refused {
            None => return Ok(()),
            // librdkafka's queue is full: wait for deliveries to drain it, then retry.
            Some(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Some(err) => return Err(publish_error(&record.topic, &err)),
        }
    }
}

/// `record` as rdkafka's, its delivery report going to `slot`.
fn base_record<'a>(
    record: &'a Record,
    slot: &Arc<DeliverySlot>,
) -> BaseRecord<'a, [u8], [u8], Arc<DeliverySlot>> {
    let mut base =
        BaseRecord::with_opaque_to(&record.topic, Arc::clone(slot)).headers(headers_of(record));
    if let Some(payload) = &record.payload {
        base = base.payload(&payload[..]);
    }
    if let Some(key) = &record.key {
        base = base.key(&key[..]);
    }
    if let Some(partition) = record.partition {
        base = base.partition(partition);
    }
    if let Some(timestamp) = record.timestamp {
        base = base.timestamp(timestamp);
    }
    base
}

impl Publish for KafkaPublisher {
    type Delivery = KafkaDelivery;

    async fn enqueue(&self, record: Record) -> Result<KafkaDelivery, PublishError> {
        match &self.member {
            None => send(&self.producer, self.topics.as_deref(), record).await,
            Some(member) => {
                let current = member
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                send(&current, None, record).await
            }
        }
    }

    async fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|err| PublishError::new("", format!("flush task failed: {err}")))?
            .map_err(|err| {
                PublishError::new("", format!("flush did not complete: {err}"))
                    .with_class(crate::classify(&err))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delivery(slot: &Arc<DeliverySlot>) -> KafkaDelivery {
        KafkaDelivery::new("orders", Arc::clone(slot))
    }

    fn pending(slot: &Arc<DeliverySlot>) -> bool {
        let waker = Waker::from(Arc::new(Wakes::default()));
        Pin::new(&mut delivery(slot))
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    }

    #[test]
    fn a_completed_delivery_leaves_its_slot_reset_for_the_next_send_on_its_thread() {
        let slot = spare_slot();
        let address = Arc::as_ptr(&slot);
        let mut first = delivery(&slot);
        // librdkafka's reference: taken by the report, then dropped.
        slot.arrive(Ok((1, 7)));
        drop(slot);
        let waker = Waker::from(Arc::new(Wakes::default()));
        assert!(Pin::new(&mut first)
            .poll(&mut Context::from_waker(&waker))
            .is_ready());
        drop(first);
        let reused = spare_slot();
        assert_eq!(Arc::as_ptr(&reused), address, "the slot was not reused");
        // Reset: a delivery on it waits for its own report, not the last one's.
        assert!(pending(&reused));
    }

    #[test]
    fn a_slot_still_held_elsewhere_is_never_reused() {
        // Dropped before its report: librdkafka still holds the slot.
        let slot = spare_slot();
        drop(delivery(&slot));
        let other = spare_slot();
        assert!(!Arc::ptr_eq(&other, &slot));
        // Dropped after its report, while a user still holds the slot they made.
        slot.arrive(Ok((0, 0)));
        let mut done = delivery(&slot);
        let waker = Waker::from(Arc::new(Wakes::default()));
        assert!(Pin::new(&mut done)
            .poll(&mut Context::from_waker(&waker))
            .is_ready());
        drop(done);
        assert!(!Arc::ptr_eq(&spare_slot(), &slot));
        assert_eq!(Arc::strong_count(&slot), 1);
    }

    #[test]
    fn a_report_after_the_first_poll_wakes_the_waiting_task_once() {
        let slot = Arc::new(DeliverySlot::default());
        let mut delivery = delivery(&slot);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut delivery).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut delivery).poll(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        slot.arrive(Ok((3, 41)));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let Poll::Ready(Ok(delivered)) = Pin::new(&mut delivery).poll(&mut cx) else {
            panic!("the delivery did not complete");
        };
        assert_eq!(
            delivered,
            Delivered {
                topic: Arc::from("orders"),
                partition: 3,
                offset: 41
            }
        );
        // Awaited again after it completed: an error, not a hang or a panic.
        let Poll::Ready(Err(again)) = Pin::new(&mut delivery).poll(&mut cx) else {
            panic!("a second poll did not answer");
        };
        assert!(again.message.contains("after it completed"), "{again:?}");
    }

    #[test]
    fn a_report_before_the_first_poll_is_ready_at_once_and_a_refusal_names_the_topic() {
        let slot = Arc::new(DeliverySlot::default());
        slot.arrive(Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        )));
        let mut delivery = delivery(&slot);
        let waker = Waker::from(Arc::new(Wakes::default()));
        let Poll::Ready(Err(refused)) =
            Pin::new(&mut delivery).poll(&mut Context::from_waker(&waker))
        else {
            panic!("the refusal was not reported");
        };
        assert_eq!(refused.topic, "orders");
        assert!(refused.message.contains("too large"), "{refused:?}");
    }

    #[test]
    fn a_new_waker_replaces_the_one_noted_before() {
        let slot = Arc::new(DeliverySlot::default());
        let mut delivery = delivery(&slot);
        let (first, second) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        for wakes in [&first, &second] {
            let waker = Waker::from(Arc::clone(wakes));
            assert!(Pin::new(&mut delivery)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        }
        slot.arrive(Ok((0, 0)));
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
