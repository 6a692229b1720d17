//! The shared producer: many sends in flight, each tracked by a [`KafkaDelivery`].

use crate::context::KafkaContext;
use faststream_core::broker::outgoing_headers;
use faststream_core::message::CORRELATION_ID_LEN;
use faststream_core::{Delivered, Publish, PublishError, Record};
use futures::channel::oneshot;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// An exactly-once member's current transactional producer, replaced when fenced (see the
/// `member` module). Its publisher reads it for each record.
pub(crate) type ProducerCell = Arc<std::sync::RwLock<FutureProducer<KafkaContext>>>;

/// Publishes records through one shared, idempotent rdkafka producer.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer<KafkaContext>,
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
    pub(crate) fn new(producer: FutureProducer<KafkaContext>, context: KafkaContext) -> Self {
        Self {
            producer,
            context,
            member: None,
        }
    }

    /// The publisher of an exactly-once member: writes into the open transaction of the
    /// member's current producer (`producer` is the first one).
    pub(crate) fn transactional(
        producer: FutureProducer<KafkaContext>,
        context: KafkaContext,
        member: ProducerCell,
    ) -> Self {
        Self {
            producer,
            context,
            member: Some(member),
        }
    }

    /// The underlying rdkafka producer, for anything the framework does not wrap.
    pub fn producer(&self) -> &FutureProducer<KafkaContext> {
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
    topic: Arc<str>,
    inner: DeliveryFuture,
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

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(outcome) => outcome,
        };
        let topic = Arc::clone(&self.topic);
        Poll::Ready(match outcome {
            Ok(Ok(delivery)) => Ok(Delivered {
                topic,
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((err, _message))) => Err(publish_error(&topic, &err)),
            Err(oneshot::Canceled) => Err(PublishError {
                topic: topic.to_string(),
                message: "the producer was closed before the record was acknowledged".into(),
            }),
        })
    }
}

fn publish_error(topic: &str, err: &KafkaError) -> PublishError {
    PublishError {
        topic: topic.to_owned(),
        message: err.to_string(),
    }
}

/// The record's headers in the kit's wire order, built into librdkafka's list once.
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
/// delivery tracks its acknowledgement.
pub(crate) async fn send(
    producer: &FutureProducer<KafkaContext>,
    record: &Record,
) -> Result<KafkaDelivery, PublishError> {
    let headers = headers_of(record);
    let mut future_record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&record.topic).headers(headers);
    if let Some(payload) = &record.payload {
        future_record = future_record.payload(&payload[..]);
    }
    if let Some(key) = &record.key {
        future_record = future_record.key(&key[..]);
    }
    if let Some(partition) = record.partition {
        future_record = future_record.partition(partition);
    }
    if let Some(timestamp) = record.timestamp {
        future_record = future_record.timestamp(timestamp);
    }
    let mut backoff = Duration::from_micros(200);
    loop {
        match producer.send_result(future_record) {
            Ok(inner) => {
                return Ok(KafkaDelivery {
                    topic: Arc::clone(&record.topic),
                    inner,
                })
            }
            // librdkafka's queue is full: wait for deliveries to drain it, then retry.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                future_record = returned;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err((err, _)) => return Err(publish_error(&record.topic, &err)),
        }
    }
}

impl Publish for KafkaPublisher {
    type Delivery = KafkaDelivery;

    async fn enqueue(&self, record: Record) -> Result<KafkaDelivery, PublishError> {
        match &self.member {
            None => send(&self.producer, &record).await,
            Some(member) => {
                let current = member
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                send(&current, &record).await
            }
        }
    }

    async fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|err| PublishError {
                topic: String::new(),
                message: format!("flush task failed: {err}"),
            })?
            .map_err(|err| PublishError {
                topic: String::new(),
                message: format!("flush did not complete: {err}"),
            })
    }
}
