//! The partition worker: runs one subscriber's handler pipeline over one partition, in order,
//! and reports finished offsets through the partition's progress tracker.
//!
//! Messages are handled one after another (order within a partition), but the worker does not
//! wait for a message's publishes to be acknowledged before handling the next: many produces
//! are in flight at once, and [`PartitionProgress`] stores offsets only as a contiguous
//! watermark. A message waiting for redelivery (`NackOnError`, a manual nack) waits inside the
//! worker's event loop, so acknowledgements and offset stores of the work before it keep
//! moving meanwhile.

use crate::broker::{BufferBudget, OffsetStore, PartitionWorkers, Publish, Record};
use crate::config::subscriber::{HandlerLayer, SubscriberConfig};
use crate::error::BatchFailed;
use crate::error::{BoxError, Error, Nacked, PublishError};
use crate::handler::extract::AppState;
use crate::handler::reply::{Outgoing, Reply};
use crate::handler::service::{HandlerService, MessageService};
use crate::handler::Handler;
use crate::message::codec;
use crate::message::{Batch, Headers, Message, TopicPartition, CORRELATION_ID};
use crate::middleware::{name_timeout, BoxPublishService, CatchPanicLayer, TraceLayer};
use crate::policy::AckPolicy;
use crate::policy::{error_type, Decision, ErrorPolicy, Exhausted};
use crate::runtime::progress::{
    FailedHead, PartitionProgress, PendingAck, STORE_DELAY, STORE_EVERY,
};
use crate::runtime::stats::{PartitionStats, SubscriberStats};
use bytes::Bytes;
use futures::FutureExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower::util::{BoxCloneService, MapErrLayer};
use tower::{Layer, Service, ServiceBuilder};

/// How a worker hands records to the producer: straight to the backend's publisher, or
/// through the app's publish layers.
pub(crate) enum PublishPath<P: Publish> {
    /// No publish layers: no boxing per record.
    Direct(P),
    /// Through the user's layers.
    Layered(BoxPublishService<P::Delivery>),
}

impl<P: Publish> Clone for PublishPath<P> {
    fn clone(&self) -> Self {
        match self {
            Self::Direct(publisher) => Self::Direct(publisher.clone()),
            Self::Layered(service) => Self::Layered(service.clone()),
        }
    }
}

impl<P: Publish> PublishPath<P> {
    /// Hands `record` to the producer through the pipeline; the delivery tracks the ack.
    pub(crate) async fn enqueue(&mut self, record: Record) -> Result<P::Delivery, PublishError> {
        match self {
            Self::Direct(publisher) => publisher.enqueue(record).await,
            Self::Layered(service) => {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(record).await
            }
        }
    }
}

/// What every subscriber of a starting app shares.
pub(crate) struct StartContext<P: Publish> {
    pub(crate) state: Arc<AppState>,
    pub(crate) publisher: PublishPath<P>,
    pub(crate) layers: Vec<HandlerLayer>,
    pub(crate) tracker: TaskTracker,
    /// The app's error policy for subscribers without their own.
    pub(crate) default_policy: Option<ErrorPolicy>,
}

/// Builds a subscriber's handler pipeline (see [`crate::middleware`] for the order of its
/// layers) and the runtime that spawns its partition workers.
pub(crate) fn subscriber_workers<H, T, P>(
    config: Arc<SubscriberConfig>,
    handler: H,
    cx: &StartContext<P>,
) -> Result<BuiltSubscriber, Error>
where
    H: Handler<T>,
    T: Send + 'static,
    P: Publish,
{
    if let Some(pattern) = &config.pattern {
        if let Some(err) = pattern.error() {
            return Err(Error::Config(format!(
                "subscriber `{}` cannot start: invalid topic pattern `{}`: {err}",
                config.name,
                pattern.template()
            )));
        }
    }
    H::check(&cx.state).map_err(|err| {
        Error::Config(format!("subscriber `{}` cannot start: {err}", config.name))
    })?;
    let manual_ack = config.ack_policy == AckPolicy::Manual;
    let handler = HandlerService::new(handler, Arc::clone(&cx.state), manual_ack)
        .with_pattern(config.pattern.clone());
    let timeout = config.handler_timeout;
    let core = ServiceBuilder::new()
        .layer(CatchPanicLayer)
        .option_layer(config.max_concurrency.map(GlobalConcurrencyLimitLayer::new))
        .option_layer(timeout.map(|limit| MapErrLayer::new(name_timeout(limit))))
        .option_layer(timeout.map(TimeoutLayer::new))
        .service(handler);
    let trace = TraceLayer::new(config.name.as_str());
    let user_layers: Vec<&HandlerLayer> = cx.layers.iter().chain(&config.layers).collect();
    if user_layers.is_empty() {
        let service = trace.layer(core);
        Ok(SubscriberRuntime::new(config, service, cx).into_built())
    } else {
        // Innermost first: the first layer added ends up outermost.
        let mut service = BoxCloneService::new(core);
        for layer in user_layers.iter().rev() {
            service = layer.apply(&config, service);
        }
        let service = trace.layer(service);
        Ok(SubscriberRuntime::new(config, service, cx).into_built())
    }
}

/// A subscriber ready to start: its config, the runtime that spawns its partition workers,
/// and the counters its health is built from.
pub(crate) struct BuiltSubscriber {
    pub(crate) config: Arc<SubscriberConfig>,
    pub(crate) workers: Arc<dyn PartitionWorkers>,
    pub(crate) stats: Arc<SubscriberStats>,
}

/// One subscriber's handler pipeline, config and publisher: spawns a [`PartitionWorker`] per
/// partition, each with its own clone of the pipeline.
struct SubscriberRuntime<S, P: Publish> {
    config: Arc<SubscriberConfig>,
    stats: Arc<SubscriberStats>,
    policy: ErrorPolicy,
    /// Cloned for each partition (services are `Send` but need not be `Sync`).
    template: Mutex<(S, PublishPath<P>)>,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
}

impl<S, P: Publish> SubscriberRuntime<S, P> {
    fn new(config: Arc<SubscriberConfig>, service: S, cx: &StartContext<P>) -> Self {
        let policy = config
            .error_policy
            .clone()
            .or_else(|| cx.default_policy.clone())
            .unwrap_or_else(|| ErrorPolicy::preset(config.ack_policy, config.backoff));
        Self {
            stats: Arc::new(SubscriberStats::new(config.max_buffer_bytes)),
            config,
            policy,
            template: Mutex::new((service, cx.publisher.clone())),
            tracker: cx.tracker.clone(),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl<S, P> SubscriberRuntime<S, P>
where
    S: MessageService + Clone + Send + 'static,
    P: Publish,
{
    fn into_built(self) -> BuiltSubscriber {
        BuiltSubscriber {
            config: Arc::clone(&self.config),
            stats: Arc::clone(&self.stats),
            workers: Arc::new(self),
        }
    }
}

/// The backend's offset store, noting each stored watermark in the partition's stats.
struct NotedOffsets {
    inner: Arc<dyn OffsetStore>,
    stats: Arc<PartitionStats>,
}

impl OffsetStore for NotedOffsets {
    fn store(&self, partition: &TopicPartition, offset: i64) {
        self.stats.finished(offset);
        self.inner.store(partition, offset);
    }
}

impl<S, P> PartitionWorkers for SubscriberRuntime<S, P>
where
    S: MessageService + Clone + Send + 'static,
    P: Publish,
{
    fn buffer(&self) -> &Arc<BufferBudget> {
        &self.stats.buffer
    }

    fn spawn(
        self: Arc<Self>,
        partition: TopicPartition,
        messages: mpsc::Receiver<Message>,
        offsets: Arc<dyn OffsetStore>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let (service, publisher) = self
            .template
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let stats = self.stats.partition();
        let offsets = Arc::new(NotedOffsets {
            inner: offsets,
            stats: Arc::clone(&stats),
        });
        let worker = PartitionWorker {
            config: Arc::clone(&self.config),
            policy: self.policy.clone(),
            service,
            publisher,
            progress: PartitionProgress::new(partition, offsets, Arc::clone(&self.stats.buffer)),
            stats,
            stop: stop.clone(),
        };
        // A batch subscriber's records reach the worker grouped: one message per batch.
        let messages = match self.config.batch {
            Some(batch) => {
                let (batches, grouped) = mpsc::channel(1);
                let assembler = super::batch::assemble(
                    batch,
                    messages,
                    batches,
                    Arc::clone(&self.stats.buffer),
                    stop,
                );
                self.tracker.spawn_on(assembler, &self.runtime);
                grouped
            }
            None => messages,
        };
        self.tracker.spawn_on(worker.run(messages), &self.runtime)
    }
}

struct PartitionWorker<S, P: Publish> {
    config: Arc<SubscriberConfig>,
    policy: ErrorPolicy,
    service: S,
    publisher: PublishPath<P>,
    progress: PartitionProgress<P::Delivery>,
    stats: Arc<PartitionStats>,
    stop: CancellationToken,
}

/// A message to run again once its backoff has passed.
struct Redelivery {
    message: Message,
    attempt: u32,
    delay: Duration,
    /// It failed at the head of the in-flight queue (its output was refused): its new outcome
    /// takes the head's place.
    at_head: bool,
}

impl<S, P> PartitionWorker<S, P>
where
    S: MessageService + Send + 'static,
    P: Publish,
{
    async fn run(mut self, mut messages: mpsc::Receiver<Message>) {
        // One timer each for the whole loop, re-armed rather than created per message (a new
        // timer costs a clock read and a timer-wheel insert).
        let store_timer = tokio::time::sleep(STORE_DELAY);
        tokio::pin!(store_timer);
        let mut store_armed = false;
        let retry_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry_timer);
        // Messages waiting for their backoff, oldest first; only the front's timer runs.
        let mut waiting: VecDeque<Redelivery> = VecDeque::new();
        let max_pending = self.config.max_pending_per_partition.max(1);
        let stop = self.stop.clone();
        loop {
            let front_before = waiting.front().map(|r| (r.message.offset, r.attempt));
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                () = &mut store_timer, if store_armed => {
                    store_armed = false;
                    self.progress.store();
                }
                Some(_) = self.progress.next_ack(), if self.progress.in_flight() > 0 => {}
                () = &mut retry_timer, if !waiting.is_empty() => {
                    if let Some(again) = waiting.pop_front() {
                        if let Some(later) = self.process(again.message, again.attempt, again.at_head).await {
                            waiting.push_front(later);
                        }
                    }
                }
                next = messages.recv(), if waiting.is_empty()
                    && !self.progress.is_halted()
                    && self.progress.in_flight() < max_pending => {
                    let Some(message) = next else { break };
                    if let Some(later) = self.process(message, 1, false).await {
                        waiting.push_back(later);
                    }
                    // Fast path: handle what is already queued without going back through
                    // `select!` for every message.
                    for _ in 0..FAST_PATH_BATCH {
                        if !waiting.is_empty()
                            || self.progress.is_halted()
                            || self.progress.in_flight() >= max_pending
                            || stop.is_cancelled()
                        {
                            break;
                        }
                        let Ok(message) = messages.try_recv() else { break };
                        if let Some(later) = self.process(message, 1, false).await {
                            waiting.push_back(later);
                        }
                    }
                }
            }
            self.progress.collect_ready();
            // A handled message whose output the broker refused comes back here: its error
            // policy runs now, ahead of anything waiting (it is older).
            if let Some(failed) = self.progress.take_failed() {
                if let Some(later) = self.refused(failed).await {
                    waiting.push_front(later);
                }
            }
            if self.progress.is_halted() {
                for dropped in waiting.drain(..) {
                    self.release_waiting(&dropped);
                }
            }
            self.stats.set_retrying(!waiting.is_empty());
            let front_after = waiting.front().map(|r| (r.message.offset, r.attempt));
            if front_after.is_some() && front_after != front_before {
                if let Some(again) = waiting.front() {
                    retry_timer.as_mut().reset(Instant::now() + again.delay);
                }
            }
            // Hand the watermark to the backend in batches: after a run of messages, or a
            // moment after the last change (the backend commits once a second anyway).
            if self.progress.unstored() >= STORE_EVERY {
                self.progress.store();
            } else if self.progress.unstored() > 0 && !store_armed {
                store_timer.as_mut().reset(Instant::now() + STORE_DELAY);
                store_armed = true;
            }
        }
        // A message still waiting for redelivery stays uncommitted for the next owner. Finish
        // the publishes in flight so their messages count as done.
        self.progress.finish().await;
        // What is left unhandled no longer counts against the memory budget.
        for dropped in waiting.drain(..) {
            self.release_waiting(&dropped);
        }
        messages.close();
        while let Ok(message) = messages.try_recv() {
            self.progress.release(message.held_bytes());
        }
    }

    /// A redelivery dropped unhandled: its bytes leave the budget (one at the head is
    /// accounted for by the head's entry instead).
    fn release_waiting(&self, dropped: &Redelivery) {
        if !dropped.at_head {
            self.progress.release(dropped.message.held_bytes());
        }
    }

    /// Runs `message` (attempt number `attempt`) through the pipeline, publishes the reply and
    /// applies the error policy to a failure. Returns the message when it must run again.
    async fn process(
        &mut self,
        message: Message,
        attempt: u32,
        at_head: bool,
    ) -> Option<Redelivery> {
        let ack_first = self.config.ack_policy == AckPolicy::AckFirst;
        let offset = message.offset;
        // What the backend held against the budget for this message (a message retried at
        // the head of the queue is accounted for by the head's entry).
        let bytes = if at_head { 0 } else { message.held_bytes() };
        if attempt == 1 && !at_head {
            self.stats.took(offset, self.progress.in_flight() == 0);
        }
        if ack_first && attempt == 1 {
            // At-most-once: the offset counts as done before the handler runs.
            self.progress.finish_before_handling(offset);
        }
        // Only policies that may need the message again keep a copy of it (a batch's copy is
        // cheap, and a failure naming one of its records needs it).
        let mut keep =
            (self.policy.needs_message() || message.batch.is_some()).then(|| message.clone());
        let topic = Arc::clone(&message.topic);
        let partition = message.partition;
        let key = message.key.clone();
        let correlation_id = message.headers.get(CORRELATION_ID).cloned();
        let reply_to = message.reply_to().map(Arc::<str>::from);

        let outcome = match std::future::poll_fn(|cx| self.service.poll_ready(cx)).await {
            Ok(()) => {
                let call = self.service.call(message);
                self.finish_call(std::pin::pin!(call)).await
            }
            Err(err) => Err(err),
        };
        let tp = TopicPartition {
            topic: Arc::clone(&topic),
            partition,
        };
        let mut ack = PendingAck::new(&tp, offset);
        let failure: Option<BoxError> = match outcome {
            Ok(Reply::Nothing) => None,
            Ok(Reply::Publish(out)) => self
                .publish(out, correlation_id, reply_to, &mut ack)
                .await
                .err()
                .map(|err| Box::new(err) as BoxError),
            Ok(Reply::Failed(err)) | Err(err) => Some(err),
        };
        let Some(error) = failure else {
            if let Some(message) = keep.take().filter(|_| !ack.is_done() && !ack_first) {
                // A refused publish of this reply runs the error policy on the message.
                ack.retain(message, attempt);
            }
            self.settle(ack, at_head, bytes);
            return None;
        };
        let error = match error.downcast::<BatchFailed>() {
            Ok(failed) => match keep.as_ref().and_then(|m| m.batch.clone()) {
                // (A batch retried at the head of the queue fails as a whole: its entry there
                // cannot be split.)
                Some(batch) if !at_head => {
                    return self.record_failed(batch, *failed, attempt).await;
                }
                _ => failed as BoxError,
            },
            Err(error) => error,
        };
        let position = keep.as_ref().map(|m| m.position().to_string());
        let position = position.unwrap_or_else(|| format!("{topic}[{partition}]@{offset}"));
        match self.policy.decide(attempt, &error) {
            Decision::Reject => {
                tracing::warn!(
                    subscriber = %self.config.name,
                    "message {position} rejected by its handler is skipped",
                );
                self.settle(ack, at_head, bytes);
                None
            }
            Decision::Retry(delay) => {
                if !error.is::<Nacked>() {
                    tracing::error!(
                        subscriber = %self.config.name,
                        key = ?key.as_deref().map(String::from_utf8_lossy),
                        attempt,
                        "message {position} failed: {error}",
                    );
                }
                match keep {
                    Some(message) => Some(Redelivery {
                        message,
                        attempt: attempt + 1,
                        delay,
                        at_head,
                    }),
                    None => {
                        self.settle(ack, at_head, bytes);
                        None
                    }
                }
            }
            Decision::Exhausted => {
                tracing::error!(
                    subscriber = %self.config.name,
                    key = ?key.as_deref().map(String::from_utf8_lossy),
                    attempt,
                    "message {position} failed: {error}",
                );
                self.exhausted(keep, &error, attempt, ack, at_head, bytes)
                    .await;
                None
            }
        }
    }

    /// A batch handler named the record that failed: the records before it are done, the
    /// failed one follows the error policy alone (a retry redelivers it with the records
    /// after it), and the records after it come again as the next batch.
    async fn record_failed(
        &mut self,
        batch: Batch,
        failed: BatchFailed,
        attempt: u32,
    ) -> Option<Redelivery> {
        let index = failed.index.min(batch.len() - 1);
        let error = failed.source;
        let record = &batch[index];
        let tp = TopicPartition::new(Arc::clone(&record.topic), record.partition);
        if let Some(done) = index.checked_sub(1).map(|last| &batch[..=last]) {
            let bytes = done.iter().map(Message::held_bytes).sum();
            let last = done.last().map_or(record.offset - 1, |m| m.offset);
            self.settle(PendingAck::new(&tp, last), false, bytes);
        }
        // The attempt count is the batch head's: a record after it fails for the first time.
        let attempt = if index == 0 { attempt } else { 1 };
        let key = record.key_for_log();
        let decision = self.policy.decide(attempt, &error);
        if !matches!(decision, Decision::Reject) {
            tracing::error!(
                subscriber = %self.config.name,
                key = ?key,
                attempt,
                "record {} of the batch {}..={} failed: {error}",
                record.position(),
                batch.first_offset(),
                batch.last_offset(),
            );
        }
        let rest = batch.rest_from(index + 1).map(|message| Redelivery {
            message,
            attempt: 1,
            delay: Duration::ZERO,
            at_head: false,
        });
        let bytes = record.held_bytes();
        match decision {
            Decision::Retry(delay) => batch.rest_from(index).map(|message| Redelivery {
                message,
                attempt: attempt + 1,
                delay,
                at_head: false,
            }),
            Decision::Reject => {
                tracing::warn!(
                    subscriber = %self.config.name,
                    "record {} rejected by its batch handler is skipped",
                    record.position(),
                );
                self.settle(PendingAck::new(&tp, record.offset), false, bytes);
                rest
            }
            Decision::Exhausted => {
                let ack = PendingAck::new(&tp, record.offset);
                self.exhausted(Some(record.clone()), &error, attempt, ack, false, bytes)
                    .await;
                rest
            }
        }
    }

    /// The broker refused the output of a handled message: the same policy as a failing
    /// handler (retry the message, then its final outcome).
    async fn refused(&mut self, failed: FailedHead) -> Option<Redelivery> {
        let FailedHead {
            message,
            attempt,
            error,
        } = failed;
        let error: BoxError = Box::new(error);
        match self.policy.decide(attempt, &error) {
            Decision::Retry(delay) => Some(Redelivery {
                message,
                attempt: attempt + 1,
                delay,
                at_head: true,
            }),
            Decision::Exhausted | Decision::Reject => {
                let tp = TopicPartition::new(Arc::clone(&message.topic), message.partition);
                let ack = PendingAck::new(&tp, message.offset);
                self.exhausted(Some(message), &error, attempt, ack, true, 0)
                    .await;
                None
            }
        }
    }

    /// Applies the final outcome to a message that failed for good.
    async fn exhausted(
        &mut self,
        message: Option<Message>,
        error: &BoxError,
        attempts: u32,
        mut ack: PendingAck<P::Delivery>,
        at_head: bool,
        bytes: usize,
    ) {
        let dead_letter = message.as_ref().and_then(|m| {
            self.policy
                .dead_letter_topic(&m.topic)
                .map(|topic| (topic, m))
        });
        let stop = match (&self.policy.exhausted, dead_letter) {
            (Exhausted::DeadLetter { .. }, Some((topic, message))) => {
                // A batch's dead letters are its records, one each.
                let mut refused = false;
                for record in message.records() {
                    let letter = dead_letter_record(&self.config, &topic, record, error, attempts);
                    match self.publisher.enqueue(letter).await {
                        Ok(delivery) => ack.track(delivery),
                        Err(err) => {
                            tracing::error!(
                                subscriber = %self.config.name,
                                "message {} could not be sent to dead-letter topic `{topic}`: {err}",
                                record.position(),
                            );
                            refused = true;
                            break;
                        }
                    }
                }
                if !refused {
                    tracing::warn!(
                        subscriber = %self.config.name,
                        "message {} sent to dead-letter topic `{topic}` after {attempts} attempt(s)",
                        message.position(),
                    );
                    ack.must_deliver();
                }
                refused
            }
            (Exhausted::Stop, _) => true,
            _ => false,
        };
        if stop {
            self.progress.release(bytes);
            self.halt(message.as_ref(), at_head);
        } else {
            self.settle(ack, at_head, bytes);
        }
    }

    /// Stops the partition at `message`: nothing from it on is handled or committed.
    fn halt(&mut self, message: Option<&Message>, at_head: bool) {
        let Some(message) = message else { return };
        // (A batch stops at its first record: none of it is committed.)
        let first = message
            .records()
            .first()
            .map_or(message.offset, |m| m.offset);
        tracing::error!(
            subscriber = %self.config.name,
            "consumption of {}[{}] stopped at offset {first} by the error policy; it stays uncommitted until the app restarts",
            message.topic, message.partition,
        );
        let tp = TopicPartition::new(Arc::clone(&message.topic), message.partition);
        self.progress.halt(&tp, message.offset, at_head);
        self.stats.set_halted();
    }

    /// Counts a message as handled: in its place at the head, or behind what is in flight.
    /// Its `bytes` stay held against the budget until its entry finishes.
    fn settle(&mut self, mut ack: PendingAck<P::Delivery>, at_head: bool, bytes: usize) {
        if at_head {
            self.progress.replace_head(ack);
        } else if self.config.ack_policy != AckPolicy::AckFirst || !ack.is_done() {
            // (Under AckFirst the offset was counted before the handler ran; its publishes
            // are still tracked so a shutdown waits for them.)
            ack.hold_bytes(bytes);
            self.progress.handled(ack);
        } else {
            self.progress.release(bytes);
        }
    }

    /// Waits for a handler call. One that is not done at once is waiting on something (I/O, a
    /// timer): meanwhile the acknowledgements of earlier messages are taken and the watermark
    /// is stored, so a slow or stuck handler holds back only its own offset.
    async fn finish_call<F>(&mut self, mut call: Pin<&mut F>) -> Result<Reply, BoxError>
    where
        F: std::future::Future<Output = Result<Reply, BoxError>>,
    {
        if let Some(outcome) = call.as_mut().now_or_never() {
            return outcome;
        }
        self.progress.collect_ready();
        self.progress.store();
        let store_timer = tokio::time::sleep(STORE_DELAY);
        tokio::pin!(store_timer);
        loop {
            tokio::select! {
                biased;
                outcome = call.as_mut() => return outcome,
                Some(_) = self.progress.next_ack(), if self.progress.in_flight() > 0 => {}
                () = &mut store_timer => {
                    self.progress.store();
                    store_timer.as_mut().reset(Instant::now() + STORE_DELAY);
                }
            }
        }
    }

    /// Enqueues the reply to every publisher topic and to `reply_to`; `ack` tracks the
    /// acknowledgements.
    async fn publish(
        &mut self,
        out: Outgoing,
        correlation_id: Option<Bytes>,
        reply_to: Option<Arc<str>>,
        ack: &mut PendingAck<P::Delivery>,
    ) -> Result<(), PublishError> {
        let publishers = &self.config.publishers;
        // A `no_reply` subscriber ignores `reply_to`.
        let reply_to = reply_to.filter(|_| !self.config.no_reply);
        let destinations = publishers.len() + usize::from(reply_to.is_some());
        let mut out = Some(out);
        for index in 0..destinations {
            let topic = match publishers.get(index) {
                Some(publisher) => Arc::clone(&publisher.topic),
                None => match &reply_to {
                    Some(topic) => Arc::clone(topic),
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
            let batch_publisher = publishers.get(index).is_some_and(|p| p.batch);
            if let Some(parts) = batch_publisher
                .then(|| codec::split_sequence(&body.payload, body.content_type))
                .flatten()
            {
                // A batch publisher sends each element of the returned sequence on its own.
                let correlation_id = body.correlation_id.or_else(|| correlation_id.clone());
                for (payload, content_type) in parts {
                    let record = Record {
                        topic: Arc::clone(&topic),
                        payload: Some(payload),
                        key: body.key.clone(),
                        content_type: Some(content_type),
                        correlation_id: correlation_id.clone(),
                        headers: body.headers.clone(),
                        partition: body.partition,
                        timestamp: body.timestamp,
                    };
                    ack.track(self.publisher.enqueue(record).await?);
                }
                continue;
            }
            let record = Record {
                topic,
                payload: Some(body.payload),
                key: body.key,
                content_type: Some(body.content_type),
                correlation_id: body.correlation_id.or_else(|| correlation_id.clone()),
                headers: body.headers,
                partition: body.partition,
                timestamp: body.timestamp,
            };
            ack.track(self.publisher.enqueue(record).await?);
        }
        Ok(())
    }
}

/// The dead letter of `message`: its key, payload and headers (the correlation id kept), plus
/// where it came from and why it failed.
fn dead_letter_record(
    config: &SubscriberConfig,
    topic: &str,
    message: &Message,
    error: &BoxError,
    attempts: u32,
) -> Record {
    let mut headers = Headers::with_capacity(message.headers.len() + 8);
    for (name, value) in message.headers.iter() {
        if name != CORRELATION_ID {
            headers.append(name, value.clone());
        }
    }
    headers.insert(crate::broker::DLT_ORIGINAL_TOPIC, message.topic.to_string());
    headers.insert("dlt-original-partition", message.partition.to_string());
    headers.insert("dlt-original-offset", message.offset.to_string());
    if let Some(timestamp) = message.timestamp {
        headers.insert("dlt-original-timestamp", timestamp.to_string());
    }
    headers.insert("dlt-original-group", config.effective_group_id().to_owned());
    headers.insert("dlt-exception-type", error_type(error));
    headers.insert("dlt-exception-message", error.to_string());
    headers.insert("dlt-attempts", attempts.to_string());
    Record {
        topic: Arc::from(topic),
        payload: Some(message.payload.clone()),
        key: message.key.clone(),
        // The original `content-type` travels with the other headers.
        content_type: None,
        correlation_id: message.headers.get(CORRELATION_ID).cloned(),
        headers,
        partition: None,
        timestamp: None,
    }
}

/// Messages handled straight from the queue before the worker looks at acks, timers and the
/// stop signal again through `select!` (a stop is still checked before each of them).
const FAST_PATH_BATCH: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Delivered, Publish, Record};
    use crate::error::PublishError;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::task::{Context, Poll};
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

    /// A worker of `runtime` on partition 0 of `in`: where it stores offsets, its queue, its
    /// stop signal and its task.
    fn spawn_on_partition_0(
        runtime: Arc<dyn PartitionWorkers>,
    ) -> (
        Arc<RecordedOffsets>,
        mpsc::Sender<Message>,
        CancellationToken,
        JoinHandle<()>,
    ) {
        let offsets = Arc::new(RecordedOffsets::default());
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = runtime.spawn(
            TopicPartition::new("in", 0),
            rx,
            offsets.clone(),
            stop.clone(),
        );
        (offsets, tx, stop, task)
    }

    /// What every test subscriber shares: no state, no layers, `publisher` direct.
    fn context(publisher: ManualPublisher, state: AppState) -> StartContext<ManualPublisher> {
        StartContext {
            state: Arc::new(state),
            publisher: PublishPath::Direct(publisher),
            layers: Vec::new(),
            tracker: TaskTracker::new(),
            default_policy: None,
        }
    }

    fn echo_worker() -> EchoWorker {
        let publisher = ManualPublisher::default();
        let config = Arc::new(SubscriberConfig::new("echo", ["in"]).publish_to("out"));
        let runtime = subscriber_workers(
            config,
            |n: i64| async move { n * 10 },
            &context(publisher.clone(), AppState::default()),
        )
        .expect("handler needs are met");
        let (offsets, tx, stop, task) = spawn_on_partition_0(runtime.workers);
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

    #[tokio::test]
    async fn a_message_in_backoff_does_not_hold_back_earlier_offsets() {
        let publisher = ManualPublisher::default();
        let attempts = Arc::new(AtomicUsize::new(0));
        let mut state = AppState::default();
        state.insert(Arc::clone(&attempts));
        let config = SubscriberConfig::new("retry", ["in"])
            .publish_to("out")
            .ack_policy(AckPolicy::NackOnError)
            .backoff(crate::Backoff {
                initial: Duration::from_secs(3600),
                max: Duration::from_secs(3600),
            });
        let runtime = subscriber_workers(
            Arc::new(config),
            |n: i64, attempts: crate::State<Arc<AtomicUsize>>| async move {
                if n == 2 {
                    attempts.fetch_add(1, AtomicOrdering::SeqCst);
                    Err(std::io::Error::other("offset 2 always fails"))
                } else {
                    Ok(n)
                }
            },
            &context(publisher.clone(), state),
        )
        .expect("handler needs are met");
        let (offsets, tx, stop, task) = spawn_on_partition_0(runtime.workers);
        for offset in 0..4 {
            tx.send(message(offset, 0)).await.unwrap();
        }
        // NackOnError waits for each message's own publish before the next: acknowledge them
        // as they come.
        let mut acknowledged = 0;
        for _ in 0..50 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            for (_, ack) in publisher.sent.lock().unwrap().drain(..) {
                ack.send(true).unwrap();
                acknowledged += 1;
            }
        }
        assert_eq!(acknowledged, 2, "0 and 1 published; 3 waits behind 2");
        assert_eq!(
            attempts.load(AtomicOrdering::SeqCst),
            1,
            "2 failed once and now sleeps its hour-long backoff"
        );
        // The store timer still runs during the backoff: 0 and 1 are stored, not held back.
        settle().await;
        assert_eq!(offsets.0.lock().unwrap().last(), Some(&1));
        // A stop during the backoff leaves 2 (and 3) uncommitted.
        stop.cancel();
        task.await.unwrap();
        assert_eq!(offsets.0.lock().unwrap().last(), Some(&1));
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
            let runtime = subscriber_workers(
                Arc::new(config),
                |_n: i64, gauges: crate::State<Gauges>| async move {
                    let now = (gauges.0).0.fetch_add(1, AtomicOrdering::SeqCst) + 1;
                    (gauges.0).1.fetch_max(now, AtomicOrdering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (gauges.0).0.fetch_sub(1, AtomicOrdering::SeqCst);
                },
                &context(ManualPublisher::default(), state),
            )
            .expect("handler needs are met");
            let offsets = Arc::new(RecordedOffsets::default());
            let stop = CancellationToken::new();
            let mut tasks = Vec::new();
            for partition in 0..3 {
                let (tx, rx) = mpsc::channel(4);
                tx.send(message(0, partition)).await.unwrap();
                drop(tx);
                tasks.push(Arc::clone(&runtime.workers).spawn(
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
