//! The partition worker: runs one subscriber's handler over one partition, in order, and
//! reports a contiguous watermark of finished offsets.
//!
//! Messages are handled one after another (order within a partition), but the worker does not
//! wait for a message's publishes to be acknowledged before handling the next: each processed
//! message leaves a [`PendingAck`] in a FIFO, and offsets are stored only as the head of that
//! FIFO completes. So an offset is never stored while an earlier message of the partition is
//! unfinished, and many produces are in flight at once.

use crate::broker::{OffsetStore, PartitionWorkers, Publish, Record};
use crate::error::PublishError;
use crate::extract::{AckDecision, AckSlot, AppState, ExtractError, MessageContext};
use crate::handler::Handler;
use crate::message::{Message, TopicPartition, CORRELATION_ID};
use crate::reply::{Outgoing, Reply};
use crate::subscriber::{AckPolicy, SubscriberConfig};
use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One subscriber's handler, config and publisher: spawns a [`PartitionWorker`] per partition.
pub(crate) struct SubscriberRuntime<H, T, P> {
    pub(crate) config: Arc<SubscriberConfig>,
    handler: H,
    publisher: P,
    state: Arc<AppState>,
    concurrency: Option<Arc<Semaphore>>,
    runtime: tokio::runtime::Handle,
    _marker: PhantomData<fn() -> T>,
}

impl<H, T, P> SubscriberRuntime<H, T, P> {
    pub(crate) fn new(
        config: Arc<SubscriberConfig>,
        handler: H,
        publisher: P,
        state: Arc<AppState>,
    ) -> Self {
        let concurrency = config.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
        Self {
            config,
            handler,
            publisher,
            state,
            concurrency,
            runtime: tokio::runtime::Handle::current(),
            _marker: PhantomData,
        }
    }
}

impl<H, T, P> PartitionWorkers for SubscriberRuntime<H, T, P>
where
    H: Handler<T>,
    T: Send + 'static,
    P: Publish,
{
    fn spawn(
        self: Arc<Self>,
        partition: TopicPartition,
        messages: mpsc::Receiver<Message>,
        offsets: Arc<dyn OffsetStore>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let runtime = self.runtime.clone();
        let worker = PartitionWorker {
            sub: self,
            partition,
            offsets,
            stop,
        };
        runtime.spawn(worker.run(messages))
    }
}

struct PartitionWorker<H, T, P> {
    sub: Arc<SubscriberRuntime<H, T, P>>,
    partition: TopicPartition,
    offsets: Arc<dyn OffsetStore>,
    stop: CancellationToken,
}

/// What the partition loop does after a message.
enum Flow {
    Continue,
    /// Shutdown or revoke arrived while the message was waiting for redelivery: leave it
    /// uncommitted for the next owner.
    Stopped,
}

impl<H, T, P> PartitionWorker<H, T, P>
where
    H: Handler<T>,
    T: Send + 'static,
    P: Publish,
{
    async fn run(self, mut messages: mpsc::Receiver<Message>) {
        let mut pending: AckQueue<P::Delivery> = AckQueue::default();
        let mut watermark = Watermark::default();
        // One timer for the whole loop, re-armed only when the watermark first moves after a
        // store (a new timer per message would cost a clock read and a timer-wheel insert each).
        let store_timer = tokio::time::sleep(STORE_DELAY);
        tokio::pin!(store_timer);
        let mut store_armed = false;
        let max_pending = self.sub.config.max_pending_per_partition.max(1);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                () = &mut store_timer, if store_armed => {
                    store_armed = false;
                    self.flush(&mut watermark);
                }
                Some((offset, _)) = pending.next(), if !pending.is_empty() => watermark.advance(offset),
                next = messages.recv(), if pending.len() < max_pending => {
                    let Some(message) = next else { break };
                    if let Flow::Stopped = self.process(message, &mut pending, &mut watermark).await {
                        break;
                    }
                    // Fast path: handle what is already queued without going back through
                    // `select!` for every message.
                    let mut stopped = false;
                    for _ in 0..FAST_PATH_BATCH {
                        if pending.len() >= max_pending || self.stop.is_cancelled() {
                            break;
                        }
                        let Ok(message) = messages.try_recv() else { break };
                        if let Flow::Stopped = self.process(message, &mut pending, &mut watermark).await {
                            stopped = true;
                            break;
                        }
                    }
                    if stopped {
                        break;
                    }
                }
            }
            // Take every acknowledgement that is already in, without waiting.
            while let Some(Some((offset, _))) = pending.next().now_or_never() {
                watermark.advance(offset);
            }
            // Hand the watermark to the backend in batches: after a run of messages, or a
            // moment after the last change (the backend commits once a second anyway).
            if watermark.unstored >= STORE_EVERY {
                self.flush(&mut watermark);
            } else if watermark.unstored > 0 && !store_armed {
                store_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + STORE_DELAY);
                store_armed = true;
            }
        }
        // Finish the publishes in flight so their messages count as done.
        while let Some((offset, _)) = pending.next().await {
            watermark.advance(offset);
        }
        self.flush(&mut watermark);
    }

    /// Hands the watermark to the backend if it moved.
    fn flush(&self, watermark: &mut Watermark) {
        if let Some(offset) = watermark.take_unstored() {
            self.offsets.store(&self.partition, offset);
        }
    }

    async fn process(
        &self,
        message: Message,
        pending: &mut AckQueue<P::Delivery>,
        watermark: &mut Watermark,
    ) -> Flow {
        let policy = self.sub.config.ack_policy;
        if policy == AckPolicy::AckFirst && pending.is_empty() {
            // At-most-once: the offset is stored before the handler runs.
            watermark.advance(message.offset);
            self.flush(watermark);
        } else if policy == AckPolicy::AckFirst {
            pending.push_back(PendingAck::done(&message));
        }
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let slot = (policy == AckPolicy::Manual).then(|| Arc::new(AckSlot::default()));
            let mut ack = PendingAck::done(&message);
            let failure = match self.handle(&message, slot.as_ref()).await {
                Ok(Reply::Nothing) => None,
                Ok(Reply::Publish(out)) => self
                    .publish(&message, out, &mut ack)
                    .await
                    .err()
                    .map(|e| e.to_string()),
                Ok(Reply::Failed(err)) => Some(err.to_string()),
                Err(err) => Some(err.to_string()),
            };
            let decision = slot.map_or(AckDecision::Undecided, |s| s.decision());
            if let Some(error) = &failure {
                self.log_failure(&message, attempt, error);
            }
            if decision == AckDecision::Reject {
                tracing::warn!(
                    subscriber = %self.sub.config.name,
                    "message {}[{}]@{} rejected by its handler is skipped",
                    message.topic, message.partition, message.offset
                );
            }
            let mut redeliver = match policy {
                AckPolicy::NackOnError => failure.is_some(),
                AckPolicy::Manual => decision == AckDecision::Nack,
                AckPolicy::AckAfter | AckPolicy::AckFirst => false,
            };
            if !redeliver && policy == AckPolicy::NackOnError && !ack.is_done() {
                // Redelivery needs the outcome now: wait for this message's publishes.
                let (_, delivered) = (&mut ack).await;
                redeliver = !delivered;
            }
            if !redeliver {
                if policy == AckPolicy::AckFirst && ack.is_done() {
                    // Already counted before the handler ran.
                } else if ack.is_done() && pending.is_empty() {
                    // Nothing in flight before it: done now, no need to queue.
                    watermark.advance(message.offset);
                } else {
                    pending.push_back(ack);
                }
                return Flow::Continue;
            }
            let delay = self.sub.config.backoff.delay(attempt);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.cancelled() => return Flow::Stopped,
            }
        }
    }

    async fn handle(
        &self,
        message: &Message,
        slot: Option<&Arc<AckSlot>>,
    ) -> Result<Reply, ExtractError> {
        // Extraction and the synchronous part of a closure run here: a panic there is a
        // failed message too, never a dead partition worker.
        let cx = MessageContext::new(&self.sub.state, slot);
        let call = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.sub.handler.call(message, &cx)
        })) {
            Ok(call) => call?,
            Err(panic) => return Ok(Reply::Failed(panic_message(&*panic).into())),
        };
        let _permit = match &self.sub.concurrency {
            Some(limit) => limit.acquire().await.ok(),
            None => None,
        };
        // A panicking handler is a failed message, not a dead partition.
        match AssertUnwindSafe(call).catch_unwind().await {
            Ok(reply) => Ok(reply),
            Err(panic) => Ok(Reply::Failed(panic_message(&*panic).into())),
        }
    }

    /// Enqueues the reply to every publisher topic and to `reply_to`; the acknowledgements are
    /// tracked by `ack`.
    async fn publish(
        &self,
        message: &Message,
        out: Outgoing,
        ack: &mut PendingAck<P::Delivery>,
    ) -> Result<(), PublishError> {
        // The incoming id when there is one; otherwise the backend writes a fresh uuid.
        let correlation_id = message.headers.get(CORRELATION_ID).cloned();
        let reply_to = message.reply_to().map(Arc::<str>::from);
        let publishers = &self.sub.config.publishers;
        let destinations = publishers.len() + usize::from(reply_to.is_some());
        let mut out = Some(out);
        for index in 0..destinations {
            let topic = match publishers.get(index) {
                Some(publisher) => &publisher.topic,
                None => match &reply_to {
                    Some(topic) => topic,
                    None => break,
                },
            };
            // The last destination takes the body itself; earlier ones share a clone (cloning
            // `Bytes` built from a `Vec` allocates, so the one-publisher case never clones).
            let body = if index + 1 == destinations {
                out.take()
            } else {
                out.clone()
            };
            let Some(body) = body else { break };
            let record = Record {
                topic: Arc::clone(topic),
                payload: Some(body.payload),
                key: body.key,
                content_type: Some(body.content_type),
                correlation_id: correlation_id.clone(),
                headers: body.headers,
                partition: body.partition,
                timestamp: body.timestamp,
            };
            ack.track(self.sub.publisher.enqueue(record).await?);
        }
        Ok(())
    }

    fn log_failure(&self, message: &Message, attempt: u32, error: &str) {
        let key = message.key_for_log();
        tracing::error!(
            subscriber = %self.sub.config.name,
            key = ?key,
            attempt,
            "message {}[{}]@{} failed: {error}",
            message.topic, message.partition, message.offset,
        );
    }
}

/// A panic payload as an error message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {what}")
}

/// Processed messages waiting for their acknowledgements, in consumption order. Only the
/// head is polled (acks arrive roughly in send order), so waiting costs no allocation and
/// wakes the worker once per finished head rather than once per acknowledgement.
struct AckQueue<D> {
    queue: VecDeque<PendingAck<D>>,
}

impl<D> Default for AckQueue<D> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }
}

impl<D, T> AckQueue<D>
where
    D: Future<Output = Result<T, PublishError>> + Unpin,
{
    fn push_back(&mut self, ack: PendingAck<D>) {
        self.queue.push_back(ack);
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    /// The head's offset and outcome once all its publishes are acknowledged; `None` when
    /// nothing is pending.
    fn next(&mut self) -> impl Future<Output = Option<(i64, bool)>> + '_ {
        std::future::poll_fn(move |cx| match self.queue.front_mut() {
            None => Poll::Ready(None),
            Some(front) => match Pin::new(front).poll(cx) {
                Poll::Ready(done) => {
                    self.queue.pop_front();
                    Poll::Ready(Some(done))
                }
                Poll::Pending => Poll::Pending,
            },
        })
    }
}

/// Messages handled straight from the queue before the worker looks at acks, timers and the
/// stop signal again through `select!` (a stop is still checked before each of them).
const FAST_PATH_BATCH: usize = 64;

/// Store finished offsets at least every this many messages while a partition is busy.
const STORE_EVERY: u32 = 512;
/// And at the latest this long after the watermark moved.
const STORE_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// The highest offset finished in order, and whether the backend has been told.
#[derive(Debug, Default)]
struct Watermark {
    done: Option<i64>,
    unstored: u32,
}

impl Watermark {
    fn advance(&mut self, offset: i64) {
        self.done = Some(offset);
        self.unstored += 1;
    }

    /// The offset to store, if it moved since the last call.
    fn take_unstored(&mut self) -> Option<i64> {
        if self.unstored == 0 {
            return None;
        }
        self.unstored = 0;
        self.done
    }
}

/// A processed message waiting for its publishes to be acknowledged. Resolves to the
/// message's offset and whether every publish succeeded; failures are logged here.
struct PendingAck<D> {
    offset: i64,
    topic: Arc<str>,
    partition: i32,
    // The first delivery inline, so the common one-publisher case does not allocate.
    first: Option<D>,
    rest: Vec<D>,
    all_delivered: bool,
}

impl<D> PendingAck<D> {
    fn done(message: &Message) -> Self {
        Self {
            offset: message.offset,
            topic: Arc::clone(&message.topic),
            partition: message.partition,
            first: None,
            rest: Vec::new(),
            all_delivered: true,
        }
    }

    fn track(&mut self, delivery: D) {
        if self.first.is_none() {
            self.first = Some(delivery);
        } else {
            self.rest.push(delivery);
        }
    }

    fn is_done(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }
}

impl<D> PendingAck<D> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Delivered, Publish, Record};
    use crate::error::PublishError;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// Records handed to the publisher, each with the switch that acknowledges it.
    type Sent = Arc<Mutex<Vec<(Record, oneshot::Sender<bool>)>>>;

    /// A publisher whose acknowledgements the test releases one by one.
    #[derive(Clone, Default)]
    struct ManualPublisher {
        sent: Sent,
    }

    struct ManualDelivery(oneshot::Receiver<bool>, Arc<str>);

    impl Future for ManualDelivery {
        type Output = Result<Delivered, PublishError>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            Pin::new(&mut self.0).poll(cx).map(|ok| match ok {
                Ok(true) => Ok(Delivered {
                    topic: Arc::clone(&self.1),
                    partition: 0,
                    offset: 0,
                }),
                _ => Err(PublishError {
                    topic: self.1.to_string(),
                    message: "refused".into(),
                }),
            })
        }
    }

    impl Publish for ManualPublisher {
        type Delivery = ManualDelivery;
        async fn enqueue(&self, record: Record) -> Result<ManualDelivery, PublishError> {
            let (tx, rx) = oneshot::channel();
            let topic = Arc::clone(&record.topic);
            self.sent.lock().unwrap().push((record, tx));
            Ok(ManualDelivery(rx, topic))
        }
        async fn flush(&self, _timeout: Duration) -> Result<(), PublishError> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct RecordedOffsets(Mutex<Vec<i64>>);

    impl OffsetStore for RecordedOffsets {
        fn store(&self, _partition: &TopicPartition, offset: i64) {
            self.0.lock().unwrap().push(offset);
        }
    }

    fn message(offset: i64, partition: i32) -> Message {
        let mut m = Message::new("in", offset.to_string());
        m.offset = offset;
        m.partition = partition;
        m
    }

    /// Lets the worker run, and its delayed offset store happen.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(STORE_DELAY * 2).await;
    }

    /// A worker on partition 0 of `in` whose handler publishes `n * 10` to `out`.
    struct EchoWorker {
        publisher: ManualPublisher,
        offsets: Arc<RecordedOffsets>,
        tx: mpsc::Sender<Message>,
        stop: CancellationToken,
        task: JoinHandle<()>,
    }

    fn echo_worker() -> EchoWorker {
        let publisher = ManualPublisher::default();
        let config = Arc::new(SubscriberConfig::new("echo", ["in"]).publish_to("out"));
        let runtime = Arc::new(SubscriberRuntime::new(
            config,
            |n: i64| async move { n * 10 },
            publisher.clone(),
            Arc::new(AppState::default()),
        ));
        let offsets = Arc::new(RecordedOffsets::default());
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = runtime.spawn(
            TopicPartition::new("in", 0),
            rx,
            offsets.clone(),
            stop.clone(),
        );
        EchoWorker {
            publisher,
            offsets,
            tx,
            stop,
            task,
        }
    }

    #[tokio::test]
    async fn offsets_advance_only_as_a_contiguous_watermark() {
        let EchoWorker {
            publisher,
            offsets,
            tx,
            stop,
            task,
        } = echo_worker();
        for offset in 0..3 {
            tx.send(message(offset, 0)).await.unwrap();
        }
        settle().await;
        assert_eq!(
            publisher.sent.lock().unwrap().len(),
            3,
            "handling does not wait for acks"
        );
        let mut acks: Vec<_> = publisher
            .sent
            .lock()
            .unwrap()
            .drain(..)
            .map(|(_, ack)| ack)
            .collect();
        let third = acks.pop().unwrap();
        let second = acks.pop().unwrap();
        let first = acks.pop().unwrap();
        third.send(true).unwrap();
        settle().await;
        assert!(
            offsets.0.lock().unwrap().is_empty(),
            "offset 2 done but 0 and 1 are not: nothing stored"
        );
        first.send(true).unwrap();
        settle().await;
        assert_eq!(*offsets.0.lock().unwrap(), [0]);
        second.send(true).unwrap();
        settle().await;
        assert_eq!(*offsets.0.lock().unwrap(), [0, 2]);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stop_finishes_publishes_in_flight_before_storing() {
        let EchoWorker {
            publisher,
            offsets,
            tx,
            stop,
            task,
        } = echo_worker();
        tx.send(message(0, 0)).await.unwrap();
        tx.send(message(1, 0)).await.unwrap();
        settle().await;
        let acks: Vec<_> = publisher
            .sent
            .lock()
            .unwrap()
            .drain(..)
            .map(|(_, ack)| ack)
            .collect();
        stop.cancel();
        let mut acks = acks.into_iter();
        acks.next().unwrap().send(true).unwrap();
        // The second publish fails: its message must not count as done.
        acks.next().unwrap().send(false).unwrap();
        task.await.unwrap();
        let stored = offsets.0.lock().unwrap().clone();
        assert_eq!(
            stored.last(),
            Some(&1),
            "AckAfter logs a failed publish and moves on: {stored:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_concurrency_bounds_handlers_across_partitions() {
        for (limit, expected) in [(Some(1), 1), (None, 3)] {
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let mut state = AppState::default();
            state.insert((Arc::clone(&running), Arc::clone(&peak)));
            let mut config = SubscriberConfig::new("c", ["in"]);
            if let Some(limit) = limit {
                config = config.max_concurrency(limit);
            }
            type Gauges = (Arc<AtomicUsize>, Arc<AtomicUsize>);
            let runtime = Arc::new(SubscriberRuntime::new(
                Arc::new(config),
                |_n: i64, gauges: crate::State<Gauges>| async move {
                    let now = (gauges.0).0.fetch_add(1, AtomicOrdering::SeqCst) + 1;
                    (gauges.0).1.fetch_max(now, AtomicOrdering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (gauges.0).0.fetch_sub(1, AtomicOrdering::SeqCst);
                },
                ManualPublisher::default(),
                Arc::new(state),
            ));
            let offsets = Arc::new(RecordedOffsets::default());
            let stop = CancellationToken::new();
            let mut tasks = Vec::new();
            for partition in 0..3 {
                let (tx, rx) = mpsc::channel(4);
                tx.send(message(0, partition)).await.unwrap();
                drop(tx);
                tasks.push(Arc::clone(&runtime).spawn(
                    TopicPartition::new("in", partition),
                    rx,
                    offsets.clone(),
                    stop.clone(),
                ));
            }
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(
                peak.load(AtomicOrdering::SeqCst),
                expected,
                "limit {limit:?}"
            );
            assert_eq!(
                offsets.0.lock().unwrap().len(),
                3,
                "every partition stored its offset"
            );
        }
    }
}
