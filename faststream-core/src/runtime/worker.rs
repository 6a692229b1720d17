//! The partition worker: runs one subscriber's handler pipeline over one partition, in order,
//! and reports finished offsets through the partition's progress tracker.
//!
//! Messages are handled one after another (order within a partition), but the worker does not
//! wait for a message's publishes to be acknowledged before handling the next: many produces
//! are in flight at once, and [`PartitionProgress`] stores offsets only as a contiguous
//! watermark. A message waiting for redelivery (`NackOnError`, a manual nack) waits inside the
//! worker's event loop, so acknowledgements and offset stores of the work before it keep
//! moving meanwhile.

use crate::broker::in_transaction;
use crate::broker::{
    partition_queue, BufferBudget, MemberTransactions, OffsetStore, PartitionWorkers, Publish,
    QueueReceiver, Record,
};
use crate::config::subscriber::{HandlerLayer, SubscriberConfig};
use crate::error::{BatchFailed, BoxError, Error, Nacked, PublishError, Rejected};
use crate::handler::extract::{AckDecision, AppState, CheckContext};
use crate::handler::reply::{Outgoing, Reply};
use crate::handler::service::{HandlerService, MessageService};
use crate::handler::{Handler, Seeker};
use crate::message::{Batch, Message, TopicPartition, CORRELATION_ID};
use crate::middleware::{name_timeout, BoxPublishService, PublishLayer, TraceLayer};
use crate::policy::{CommitTiming, Decision, DeliveryPolicy, ErrorPolicy, Exhausted};
use crate::runtime::dead_letter::DeadLetter;
use crate::runtime::exactly_once::{
    carried_over, dooms_transaction, gate_moved, halted_over, Carried, Coordinator, TransactionGate,
};
use crate::runtime::fan_out::{fan_out, Destinations};
use crate::runtime::lanes::{lane_queue_capacity, lane_reports, Lane, LaneRouter, LaneTask};
use crate::runtime::late_ack::LateAcks;
use crate::runtime::progress::{
    CommitMode, DoomedHead, FailedHead, PartitionProgress, PendingAck, RefusedRecord, Ticket,
    STORE_DELAY, STORE_EVERY,
};
use crate::runtime::retry_topic::{delivery_of, retry_record, Provenance};
use crate::runtime::stats::{PartitionStats, SubscriberStats};
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

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
    /// The publish pipeline: the publisher itself, or the publisher wrapped in the app's
    /// publish layers (the first added outermost).
    pub(crate) fn new(publisher: P, layers: &[PublishLayer<P::Delivery>]) -> Self {
        if layers.is_empty() {
            return Self::Direct(publisher);
        }
        // Shared behind one `Arc`: the call's future owns its publisher, and a backend's
        // publisher may be several reference counts to clone (Kafka's is five or more).
        let publisher = Arc::new(publisher);
        let base = tower::service_fn(move |record: Record| {
            let publisher = Arc::clone(&publisher);
            async move { publisher.enqueue(record).await }
        });
        let mut service: BoxPublishService<P::Delivery> = BoxCloneService::new(base);
        for layer in layers.iter().rev() {
            service = layer.apply(service);
        }
        Self::Layered(service)
    }

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
    /// The app's publish layers, for the publish path of an exactly-once subscriber.
    pub(crate) publish_layers: Vec<PublishLayer<P::Delivery>>,
    pub(crate) layers: Vec<HandlerLayer>,
    pub(crate) tracker: TaskTracker,
    /// An exactly-once subscriber's member transactions (its `publisher` writes into them).
    pub(crate) transactions: Option<Arc<dyn MemberTransactions>>,
}

impl<P: Publish> StartContext<P> {
    /// The context of an exactly-once subscriber: its member's transactional `publisher`.
    pub(crate) fn exactly_once(
        &self,
        publisher: P,
        transactions: Arc<dyn MemberTransactions>,
    ) -> Self {
        Self {
            state: Arc::clone(&self.state),
            publisher: PublishPath::new(publisher, &self.publish_layers),
            publish_layers: self.publish_layers.clone(),
            layers: self.layers.clone(),
            tracker: self.tracker.clone(),
            transactions: Some(transactions),
        }
    }
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
    let seeker = Seeker::unbound(&config.name);
    if let Some(pattern) = &config.backend.pattern {
        if let Some(err) = pattern.error() {
            return Err(Error::config_msg(format!(
                "subscriber `{}` cannot start: invalid topic pattern `{}`: {err}",
                config.name,
                pattern.template()
            )));
        }
    }
    if config.delivery.lanes > 1 && config.backend.batch.is_some() {
        return Err(Error::config_msg(format!(
            "subscriber `{}` cannot start: a batch subscriber cannot have lanes (a batch is a run of consecutive records of a partition; lanes would split it by key): remove `lanes` or `batch`",
            config.name
        )));
    }
    // Resolved here, once: everything below (the `Ack` extractor, the tracker's commit mode,
    // the failure handling, the start line) follows this one value.
    let mut delivery = config.delivery_policy();
    delivery.failure = delivery.failure.expecting_outages(config.codec.may_wait());
    let manual_ack = delivery.commit == CommitTiming::ByHandler;
    let coordinator = exactly_once_coordinator(&config, manual_ack, cx, &seeker)?;
    let offered = CheckContext::new(&cx.state)
        .with_manual_ack(manual_ack)
        .with_batch(config.backend.batch.is_some())
        .with_pattern(config.backend.pattern.as_deref());
    H::check(&offered)
        .map_err(|err| Error::config(format!("subscriber `{}` cannot start", config.name), err))?;
    let handler = HandlerService::new(handler, Arc::clone(&cx.state), manual_ack)
        .with_pattern(config.backend.pattern.clone())
        .with_seeker(seeker.clone())
        .with_codecs(
            config.codec.effective().cloned(),
            config.reply_codec().cloned(),
        )
        .with_key_codec(config.codec.key.clone())
        .with_tracker(cx.tracker.clone());
    let timeout = config.delivery.handler_timeout;
    let max_concurrency = config.delivery.max_concurrency;
    if timeout.is_none() && max_concurrency.is_none() {
        // Without either limit the handler is not wrapped in an `Either` per optional layer:
        // each was a move of the message and of the call's future per record.
        return Ok(with_layers(
            config,
            delivery,
            handler,
            cx,
            coordinator,
            seeker,
        ));
    }
    let core = ServiceBuilder::new()
        .option_layer(max_concurrency.map(GlobalConcurrencyLimitLayer::new))
        .option_layer(timeout.map(|limit| MapErrLayer::new(name_timeout(limit))))
        .option_layer(timeout.map(TimeoutLayer::new))
        .service(handler);
    Ok(with_layers(config, delivery, core, cx, coordinator, seeker))
}

/// The runtime of a subscriber whose handler pipeline is `core`, wrapped in the app's and the
/// subscriber's layers, and in tracing outermost.
fn with_layers<S, P>(
    config: Arc<SubscriberConfig>,
    delivery: DeliveryPolicy,
    core: S,
    cx: &StartContext<P>,
    coordinator: Option<Arc<Coordinator>>,
    seeker: Seeker,
) -> BuiltSubscriber
where
    S: MessageService + Clone + Send + 'static,
    P: Publish,
{
    let trace = TraceLayer::new(config.name.as_str());
    let user_layers: Vec<&HandlerLayer> = cx.layers.iter().chain(&config.delivery.layers).collect();
    if user_layers.is_empty() {
        let service = trace.layer(core);
        SubscriberRuntime::new(config, delivery, service, cx, coordinator).into_built(seeker)
    } else {
        // Innermost first: the first layer added ends up outermost.
        let mut service = BoxCloneService::new(core);
        for layer in user_layers.iter().rev() {
            service = layer.apply(&config, service);
        }
        let service = trace.layer(service);
        SubscriberRuntime::new(config, delivery, service, cx, coordinator).into_built(seeker)
    }
}

/// The transaction coordinator of an exactly-once subscriber, refusing what exactly-once
/// cannot keep: a record acknowledged by hand after its handler returned would let the
/// outputs of the records after it into a commit before its offset.
fn exactly_once_coordinator<P: Publish>(
    config: &SubscriberConfig,
    manual_ack: bool,
    cx: &StartContext<P>,
    seeker: &Seeker,
) -> Result<Option<Arc<Coordinator>>, Error> {
    let Some(commits) = config.delivery.exactly_once else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Error::config_msg(format!(
            "subscriber `{}` cannot start: an exactly-once subscriber {why}",
            config.name
        ))
    };
    if manual_ack {
        return Err(refuse("cannot acknowledge by hand (`AckPolicy::Manual`): a record acknowledged after its handler returned lets the outputs of the records after it commit before its offset"));
    }
    let transactions = cx.transactions.clone().ok_or_else(|| {
        refuse("needs its broker's transactional producer, and the app has none for it")
    })?;
    Ok(Some(Coordinator::new(
        &config.name,
        transactions,
        commits,
        seeker.clone(),
    )))
}

/// A subscriber ready to start: its config, the runtime that spawns its partition workers,
/// and the counters its health is built from.
pub(crate) struct BuiltSubscriber {
    pub(crate) config: Arc<SubscriberConfig>,
    /// Its resolved delivery policy, for its start line.
    pub(crate) delivery: DeliveryPolicy,
    pub(crate) workers: Arc<dyn PartitionWorkers>,
    pub(crate) stats: Arc<SubscriberStats>,
    /// Its handlers' [`Seeker`], bound to the subscription once it started.
    pub(crate) seeker: Seeker,
    /// An exactly-once subscriber's transaction commits: the app runs their timer.
    pub(crate) transactions: Option<Arc<Coordinator>>,
}

/// One subscriber's handler pipeline, config and publisher: spawns a [`PartitionWorker`] per
/// partition, each with its own clone of the pipeline.
struct SubscriberRuntime<S, P: Publish> {
    config: Arc<SubscriberConfig>,
    stats: Arc<SubscriberStats>,
    delivery: DeliveryPolicy,
    /// Cloned for each partition (services are `Send` but need not be `Sync`).
    template: Mutex<(S, PublishPath<P>)>,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    /// Exactly-once only: where workers' watermarks go, and their barrier.
    coordinator: Option<Arc<Coordinator>>,
}

impl<S, P: Publish> SubscriberRuntime<S, P> {
    fn new(
        config: Arc<SubscriberConfig>,
        delivery: DeliveryPolicy,
        service: S,
        cx: &StartContext<P>,
        coordinator: Option<Arc<Coordinator>>,
    ) -> Self {
        Self {
            coordinator,
            stats: Arc::new(SubscriberStats::new(config.delivery.max_buffer_bytes)),
            config,
            delivery,
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
    fn into_built(self, seeker: Seeker) -> BuiltSubscriber {
        BuiltSubscriber {
            seeker,
            transactions: self.coordinator.clone(),
            config: Arc::clone(&self.config),
            delivery: self.delivery.clone(),
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

    fn commit_open_transaction(
        &self,
    ) -> Option<futures::future::BoxFuture<'static, Result<(), Error>>> {
        let coordinator = Arc::clone(self.coordinator.as_ref()?);
        Some(Box::pin(async move { coordinator.commit_now().await }))
    }

    fn spawn(
        self: Arc<Self>,
        partition: TopicPartition,
        messages: QueueReceiver,
        offsets: Arc<dyn OffsetStore>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        if self.config.delivery.lanes > 1 {
            return self.spawn_lanes(partition, messages, offsets, stop);
        }
        let stats = self.stats.partition();
        let (offsets, transaction) = self.transactional(&partition, offsets);
        let worker = self.worker(partition, offsets, stats, stop.clone(), transaction);
        // A batch subscriber's records reach the worker grouped: one message per batch.
        let messages = match self.config.backend.batch {
            Some(batch) => {
                let (batches, grouped) = partition_queue(1);
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

impl<S, P> SubscriberRuntime<S, P>
where
    S: MessageService + Clone + Send + 'static,
    P: Publish,
{
    /// Where the worker (or lane router) of `partition` stores its watermarks, and its part
    /// in the commit barrier: exactly-once, the member's transaction instead of `offsets`.
    fn transactional(
        &self,
        partition: &TopicPartition,
        offsets: Arc<dyn OffsetStore>,
    ) -> (Arc<dyn OffsetStore>, Option<TransactionGate>) {
        match &self.coordinator {
            Some(coordinator) => (
                coordinator.offsets(offsets),
                Some(coordinator.join(partition.clone())),
            ),
            None => (offsets, None),
        }
    }

    /// A worker of `partition` with its own clone of the pipeline, storing finished offsets
    /// into `offsets` and counting into `stats`.
    fn worker(
        &self,
        partition: TopicPartition,
        offsets: Arc<dyn OffsetStore>,
        stats: Arc<PartitionStats>,
        stop: CancellationToken,
        transaction: Option<TransactionGate>,
    ) -> PartitionWorker<S, P> {
        let (service, publisher) = self
            .template
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let offsets = Arc::new(NotedOffsets {
            inner: offsets,
            stats: Arc::clone(&stats),
        });
        let progress = PartitionProgress::new(
            partition,
            offsets,
            Arc::clone(&self.stats.buffer),
            commit_mode(self.delivery.commit),
        );
        PartitionWorker {
            config: Arc::clone(&self.config),
            policy: self.delivery.failure.clone(),
            service,
            publisher,
            progress: match transaction {
                Some(_) => progress.in_transaction(),
                None => progress,
            },
            stats,
            stop,
            late: (self.delivery.commit == CommitTiming::ByHandler).then(LateAcks::new),
            store_every: STORE_EVERY,
            transaction,
            waited: false,
        }
    }

    /// A partition with lanes: a worker per lane, over the records of its keys, behind a
    /// [`LaneRouter`] that commits for them all (see [`crate::runtime::lanes`]).
    fn spawn_lanes(
        &self,
        partition: TopicPartition,
        messages: QueueReceiver,
        offsets: Arc<dyn OffsetStore>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let delivery = &self.config.delivery;
        let capacity = lane_queue_capacity(delivery.max_pending_per_partition, delivery.lanes);
        let (stores, reports) = lane_reports(delivery.lanes);
        let lanes = stores
            .into_iter()
            .enumerate()
            .map(|(index, store)| {
                let (queue, records) = partition_queue(capacity);
                let stats = self.stats.lane(&partition, index);
                // Exactly-once: the router waits for its lanes at the barrier.
                let transaction = self
                    .coordinator
                    .as_ref()
                    .map(|coordinator| coordinator.lane_gate(store.barrier_report()));
                let mut worker = self.worker(
                    partition.clone(),
                    Arc::new(store),
                    stats,
                    stop.child_token(),
                    transaction,
                );
                worker.store_every = 1;
                let task = LaneTask(self.tracker.spawn_on(worker.run(records), &self.runtime));
                Lane { queue, task }
            })
            .collect();
        let buffer = Arc::clone(&self.stats.buffer);
        let (offsets, transaction) = self.transactional(&partition, offsets);
        let router = LaneRouter::new(partition, lanes, reports, offsets, buffer, stop)
            .with_transaction(transaction);
        self.tracker.spawn_on(router.run(messages), &self.runtime)
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
    /// Manual-ack records their handler returned without deciding (`AckPolicy::Manual` only).
    late: Option<LateAcks<Undecided<P::Delivery>>>,
    /// Finished messages after which the watermark is handed on at once: [`STORE_EVERY`] for
    /// the backend, 1 for a lane's router (a channel send), which moves its window with it.
    store_every: u32,
    /// Exactly-once only: the member's commit barrier.
    transaction: Option<TransactionGate>,
    /// Something had to wait (a handler call, a full producer queue, the error policy) since
    /// the fast path last looked at the stop signal.
    waited: bool,
}

/// A manual-ack record whose handler returned undecided: its tracker entry stays undecided
/// (nothing after it is committed) until its `Ack` decides.
struct Undecided<D> {
    ticket: Ticket,
    attempt: u32,
    origin: Origin,
    kept: Option<Message>,
    ack: PendingAck<D>,
}

/// A message to run again once its backoff has passed. Its entry in the progress tracker
/// stays undecided meanwhile, so nothing after it is committed. Boxed where it is returned:
/// the common answer, `None`, then moves in 8 bytes rather than through `memcpy` (issue 21).
struct Redelivery {
    message: Message,
    attempt: u32,
    delay: Duration,
    ticket: Ticket,
}

/// Messages waiting for their backoff, oldest first; only the front's timer runs.
type Waiting = VecDeque<Box<Redelivery>>;

/// What woke the worker's event loop.
enum Turn<D> {
    Stop,
    StoreDue,
    Acked,
    RetryDue,
    Next(Message),
    /// A manual-ack record decided after its handler returned.
    Decided(Box<Undecided<D>>, AckDecision),
    /// The exactly-once barrier closed or opened.
    Gate,
}

/// The event loop's two timers, one each for the whole loop and re-armed rather than created
/// per message (a new timer costs a clock read and a timer-wheel insert).
struct Timers {
    store: Pin<Box<tokio::time::Sleep>>,
    store_state: StoreTimer,
    retry: Pin<Box<tokio::time::Sleep>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreTimer {
    Idle,
    Armed,
}

impl Timers {
    fn new() -> Self {
        Self {
            store: Box::pin(tokio::time::sleep(STORE_DELAY)),
            store_state: StoreTimer::Idle,
            retry: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// Re-arms the retry timer when a different redelivery came to the front (`before` is
    /// `None` after the front ran: it may wait again).
    fn follow_front(&mut self, waiting: &Waiting, before: Option<(i64, u32)>) {
        if front_of(waiting) == before {
            return;
        }
        if let Some(again) = waiting.front() {
            self.retry.as_mut().reset(Instant::now() + again.delay);
        }
    }
}

fn front_of(waiting: &Waiting) -> Option<(i64, u32)> {
    waiting.front().map(|r| (r.message.offset, r.attempt))
}

/// How a message failed, with what its handling needs to apply the policy.
struct Failure {
    error: BoxError,
    attempt: u32,
    ticket: Ticket,
    /// The message, when the policy may need it again.
    kept: Option<Message>,
}

/// Where a message came from and what its reply inherits, taken before the handler consumes
/// the message. Its partition is the worker's (`PartitionProgress::partition`): not taken
/// per message, which cost a reference count on the topic (issue 21's profile).
struct Origin {
    offset: i64,
    key: Option<Bytes>,
    correlation_id: Option<Bytes>,
    reply_to: Option<Arc<str>>,
}

impl Origin {
    fn of(message: &Message) -> Self {
        Self {
            offset: message.offset,
            key: message.key.clone(),
            correlation_id: message.headers.get(CORRELATION_ID).cloned(),
            reply_to: message.reply_to().map(Arc::<str>::from),
        }
    }
}

/// Polls `future` once without a waker to be woken by: a call that finishes at once (nearly
/// every one) never needs the worker's waker. Polled directly rather than through
/// `now_or_never`, whose `Option` moved the outcome once more (issue 21's profile).
#[inline(always)]
fn poll_once<F: std::future::Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// The final outcome applied to a message that failed for good.
enum Final {
    /// Counted as finished (skipped, or its dead letters are on their way).
    Settled,
    /// The partition stops at it.
    Halt,
    /// Exactly-once: its dead letter (or retry-topic record) was refused by a fenced
    /// producer; the transaction is aborted and the message runs again after the rewind.
    Doomed,
}

impl<S, P> PartitionWorker<S, P>
where
    S: MessageService + Send + 'static,
    P: Publish,
{
    async fn run(mut self, mut messages: QueueReceiver) {
        let mut timers = Timers::new();
        let mut waiting = Waiting::new();
        loop {
            let mut front_before = front_of(&waiting);
            match self.next_turn(&mut messages, &mut timers, &waiting).await {
                Turn::Stop => break,
                Turn::StoreDue => {
                    timers.store_state = StoreTimer::Idle;
                    self.progress.store();
                }
                Turn::Acked => {}
                Turn::RetryDue => {
                    self.retry_front(&mut waiting).await;
                    // The front ran: if it waits again its timer is re-armed, even when it
                    // looks the same (waiting out an outage counts no attempt).
                    front_before = None;
                }
                Turn::Next(message) => self.take(message, &mut messages, &mut waiting).await,
                Turn::Decided(held, decision) => {
                    self.decided_late(held, decision, &mut waiting).await;
                }
                Turn::Gate => self.at_barrier().await,
            }
            self.after_turn(&mut waiting).await;
            timers.follow_front(&waiting, front_before);
            self.store_in_batches(&mut timers);
        }
        // A message still waiting for redelivery stays uncommitted for the next owner. Finish
        // the publishes in flight so their messages count as done.
        self.progress.finish().await;
        // What is left unhandled no longer counts against the memory budget (the tracker
        // releases the entries it drops).
        messages.close();
        while let Ok(message) = messages.try_recv() {
            self.progress.release_undispatched(message.held_bytes());
        }
    }

    /// Waits for what the worker does next. A new message is taken only when nothing waits
    /// for redelivery, the partition is not halted and the in-flight queue has room.
    async fn next_turn(
        &mut self,
        messages: &mut QueueReceiver,
        timers: &mut Timers,
        waiting: &Waiting,
    ) -> Turn<P::Delivery> {
        let store_armed = timers.store_state == StoreTimer::Armed;
        let open = self
            .transaction
            .as_ref()
            .is_none_or(TransactionGate::is_open);
        let take_next = open && waiting.is_empty() && self.has_room();
        let undecided = self.late.as_ref().is_some_and(|late| late.len() > 0);
        let gated = self.transaction.is_some();
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Turn::Stop,
            () = gate_moved(&mut self.transaction), if gated => Turn::Gate,
            () = timers.store.as_mut(), if store_armed => Turn::StoreDue,
            Some(_) = self.progress.next_ack(), if self.progress.in_flight() > 0 => Turn::Acked,
            (held, decision) = next_decided(&mut self.late), if undecided => {
                Turn::Decided(Box::new(held), decision)
            }
            () = timers.retry.as_mut(), if open && !waiting.is_empty() => Turn::RetryDue,
            next = messages.recv(), if take_next => next.map_or(Turn::Stop, Turn::Next),
        }
    }

    /// A manual-ack record decided after its handler returned: acked, it finishes as a
    /// handled record; nacked or rejected, the error policy applies as if the handler had
    /// said so; its `Ack` dropped, its entry stays undecided, so it is never committed here.
    async fn decided_late(
        &mut self,
        held: Box<Undecided<P::Delivery>>,
        decision: AckDecision,
        waiting: &mut Waiting,
    ) {
        let Undecided {
            ticket,
            attempt,
            origin,
            kept,
            ack,
        } = *held;
        let error: BoxError = match decision {
            AckDecision::Ack => return self.handled(ticket, kept, attempt, ack),
            AckDecision::Undecided => return,
            AckDecision::Nack => Box::new(Nacked),
            AckDecision::Reject => Box::new(Rejected),
        };
        let failure = Failure {
            error,
            attempt,
            ticket,
            kept,
        };
        if let Some(later) = self.failed(failure, &origin, ack).await {
            waiting.push_back(later);
        }
    }

    /// A message handled without error: its entry is decided, waiting for `ack`'s publishes.
    // Inlined: as a call, the kept message and the pending ack moved into it once more per
    // record (issue 21's profile).
    #[inline]
    fn handled(
        &mut self,
        ticket: Ticket,
        kept: Option<Message>,
        attempt: u32,
        mut ack: PendingAck<P::Delivery>,
    ) {
        match kept.filter(|_| !ack.is_done()) {
            // A refused publish of this reply runs the error policy on the message.
            Some(message) => ack.retain(message, attempt),
            // Exactly-once, a refusal carries the attempt over the abort.
            None if self.transaction.is_some() => ack.note_attempt(attempt),
            None => {}
        }
        self.progress.decide(ticket, ack);
    }

    fn has_room(&self) -> bool {
        !self.progress.is_halted()
            && self.progress.in_flight() < self.config.delivery.max_pending_per_partition.max(1)
    }

    /// Runs the redelivery whose backoff passed.
    async fn retry_front(&mut self, waiting: &mut Waiting) {
        if let Some(again) = waiting.pop_front() {
            if let Some(later) = self
                .process(again.message, again.attempt, again.ticket)
                .await
            {
                waiting.push_front(later);
            }
        }
    }

    /// Takes `message`, then what is already queued behind it without going back through
    /// `select!` for each (the stop signal is still looked at: see below).
    async fn take(
        &mut self,
        mut message: Message,
        messages: &mut QueueReceiver,
        waiting: &mut Waiting,
    ) {
        let mut taken = 0;
        loop {
            // Entered, then processed here rather than in an `async fn` of its own: that
            // moved each record into one more future (issue 21's profile).
            let ticket = self.enter(&message);
            let later = match self.carried(&message) {
                None => self.process(message, 1, ticket).await,
                Some(carried) => self.resume_carried(message, ticket, carried).await,
            };
            if let Some(later) = later {
                waiting.push_back(later);
            }
            taken += 1;
            if taken > FAST_PATH_BATCH || !waiting.is_empty() || !self.has_room() {
                break;
            }
            // Reading the stop signal takes its lock, so it is read before a record only when
            // a call had to wait since, or every few records: calls that finish at once take
            // microseconds, so a stop still starts at most `STOP_LOOK_EVERY` more of them.
            let look = std::mem::take(&mut self.waited) || taken % STOP_LOOK_EVERY == 0;
            if look && self.stop.is_cancelled() {
                break;
            }
            if self
                .transaction
                .as_ref()
                .is_some_and(|gate| !gate.is_open())
            {
                break;
            }
            let Ok(next) = messages.try_recv() else {
                break;
            };
            message = next;
        }
    }

    /// Exactly-once: what `message` carried over the abort it caused, if it did. A batch
    /// takes what the batch before the rewind carried when it holds that batch's last record:
    /// the records after the rewind may be cut into batches differently, and the attempts
    /// must still add up (else a batch whose output is always refused aborts forever).
    #[inline]
    fn carried(&self, message: &Message) -> Option<Carried> {
        let gate = self.transaction.as_ref()?;
        let first = message.batch().map_or(message.offset, Batch::first_offset);
        gate.claim(self.progress.partition(), first..=message.offset)
    }

    /// A record that doomed the transaction comes again after the rewind: it runs again
    /// after its backoff, or takes its final outcome without running.
    async fn resume_carried(
        &mut self,
        message: Message,
        ticket: Ticket,
        carried: Carried,
    ) -> Option<Box<Redelivery>> {
        match carried {
            Carried::RunAgain { attempt, delay } => Some(Box::new(Redelivery {
                message,
                attempt,
                delay,
                ticket,
            })),
            Carried::Final { reject: true, .. } => {
                self.log_rejected(&message.position());
                self.progress
                    .decide(ticket, PendingAck::new(message.offset));
                None
            }
            Carried::Halt => {
                self.halt(&message, ticket);
                None
            }
            Carried::Final {
                attempts, error, ..
            } => {
                let ack = PendingAck::new(message.offset);
                self.exhausted(Some(message), &error, attempts, ticket, ack)
                    .await;
                None
            }
        }
    }

    /// Exactly-once: a publish refused inside the open transaction, for the message at
    /// `offset` (`refused` says which of its records), dooms the transaction (see
    /// [`TransactionGate::doom`]). Its entry stays undecided: the rewind comes before anything
    /// is committed or retried. While the transaction is doomed, other failures wait for the
    /// rewind the same way.
    fn doom_transaction(&mut self, offset: i64, refused: RefusedRecord, error: BoxError) {
        let Some(gate) = &self.transaction else {
            return;
        };
        if gate.is_doomed() {
            tracing::debug!(subscriber = %self.config.name, "message {}@{offset} failed while the transaction is aborted: {error}", self.progress.partition());
            return;
        }
        tracing::error!(
            subscriber = %self.config.name,
            "message {}@{offset}: {error}; its transaction cannot commit and is aborted, and the records since the last commit run again",
            self.progress.partition(),
        );
        let carried = match refused {
            RefusedRecord::Output(attempt) => carried_over(&self.policy, attempt, error),
            RefusedRecord::Outcome => halted_over(&error),
            RefusedRecord::Unattributed => None,
        };
        let carried = carried.map(|carried| (offset, carried));
        gate.doom(self.progress.partition(), carried);
        self.waited = true;
    }

    /// Whether `error` must doom this worker's transaction rather than run the policy.
    fn aborts_transaction(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        self.transaction
            .as_ref()
            .is_some_and(|gate| gate.is_doomed() || dooms_transaction(error))
    }

    /// A message's first attempt: its entry in the tracker, whose ticket its processing
    /// decides.
    #[inline]
    fn enter(&mut self, message: &Message) -> Ticket {
        self.stats.took(message.offset);
        if let Some(gate) = &mut self.transaction {
            // A batch counts at its last offset; an abort rewinds to its first.
            gate.dispatched(message.batch().map_or(message.offset, Batch::first_offset));
        }
        self.progress.dispatch(message.offset, message.held_bytes())
    }

    /// Housekeeping after each turn: takes acknowledgements already in, runs the policy of a
    /// message whose output was refused (ahead of anything waiting: it is older), and drops
    /// what waits once the partition halted.
    async fn after_turn(&mut self, waiting: &mut Waiting) {
        self.progress.collect_ready();
        self.take_doomed();
        if let Some(failed) = self.progress.take_failed() {
            if let Some(later) = self.refused(failed).await {
                waiting.push_front(later);
            }
        }
        if self.progress.is_halted() {
            for dropped in waiting.drain(..) {
                self.progress.abandon(dropped.ticket);
            }
        }
        self.stats.set_retrying(!waiting.is_empty());
    }

    /// Hands the watermark to the backend in batches: after a run of messages, or a moment
    /// after the last change (the backend commits once a second anyway).
    fn store_in_batches(&mut self, timers: &mut Timers) {
        if self.progress.unstored() >= self.store_every {
            self.progress.store();
        } else if self.progress.unstored() > 0 && timers.store_state == StoreTimer::Idle {
            timers.store.as_mut().reset(Instant::now() + STORE_DELAY);
            timers.store_state = StoreTimer::Armed;
        }
    }

    /// Runs `message` (attempt number `attempt`, its tracker entry `ticket`) through the
    /// pipeline, publishes the reply and decides its entry, or applies the error policy to a
    /// failure. Returns the message when it must run again.
    async fn process(
        &mut self,
        mut message: Message,
        attempt: u32,
        ticket: Ticket,
    ) -> Option<Box<Redelivery>> {
        // Only policies that may need the message again keep a copy of it (a batch's copy is
        // cheap, and a failure naming one of its records needs it).
        let kept =
            (self.policy.needs_message() || message.batch().is_some()).then(|| message.clone());
        let origin = Origin::of(&message);
        let late_slot = self.late.as_mut().map(|late| {
            let (id, slot) = late.slot(self.progress.partition(), origin.offset);
            // Held here until the handler returned; the handler's `Ack`s hold it after.
            message.extensions.insert(Arc::downgrade(&slot));
            (id, slot)
        });
        // The plain call is written out here, at one site: each `async fn` level between the
        // worker and the service moved the message in and the reply (a large enum) out once
        // more per record, and a second call site kept the call from being inlined.
        let mut outcome = match self.transaction.as_ref().map(TransactionGate::subscriber) {
            Some(subscriber) => self.call_in_transaction(message, subscriber).await,
            None => match std::future::poll_fn(|cx| self.service.poll_ready(cx)).await {
                Err(err) => Err(err),
                Ok(()) => {
                    let mut call = std::pin::pin!(self.service.call(message));
                    match poll_once(call.as_mut()) {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => self.finish_call(call).await,
                    }
                }
            },
        };
        let undecided =
            late_slot.and_then(|(id, slot)| decided_by_handler(&mut outcome, &slot, id));
        let mut ack = PendingAck::new(origin.offset);
        let error: Option<BoxError> = match outcome {
            Ok(Reply::Nothing) => None,
            Ok(Reply::Publish(out)) => self
                .publish(out, &origin, &mut ack)
                .await
                .err()
                .map(BoxError::from),
            Ok(Reply::Failed(err)) | Err(err) => Some(err),
        };
        let Some(error) = error else {
            match (undecided, &mut self.late) {
                (Some(id), Some(late)) => late.wait(
                    id,
                    Undecided {
                        ticket,
                        attempt,
                        origin,
                        kept,
                        ack,
                    },
                ),
                _ => self.handled(ticket, kept, attempt, ack),
            }
            return None;
        };
        let failure = Failure {
            error,
            attempt,
            ticket,
            kept,
        };
        self.failed(failure, &origin, ack).await
    }

    /// Calls the handler pipeline on `message` as the exactly-once `subscriber` (a
    /// `request()` from the handler is refused).
    async fn call_in_transaction(
        &mut self,
        message: Message,
        subscriber: Arc<str>,
    ) -> Result<Reply, BoxError> {
        std::future::poll_fn(|cx| self.service.poll_ready(cx)).await?;
        let mut call = std::pin::pin!(in_transaction(subscriber, self.service.call(message)));
        match poll_once(call.as_mut()) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => self.finish_call(call).await,
        }
    }

    /// The exactly-once barrier moved. Closed for a commit this worker has not reached: no
    /// handler runs between turns, so the worker waits for its publishes' acknowledgements,
    /// stores its watermark and reports; then it takes nothing until the gate opens.
    async fn at_barrier(&mut self) {
        if !self
            .transaction
            .as_ref()
            .is_some_and(TransactionGate::barrier_waiting)
        {
            return;
        }
        self.progress.finish().await;
        // A publish refused in this transaction dooms it before the barrier commits.
        self.take_doomed();
        if let Some(gate) = &mut self.transaction {
            gate.reached();
        }
    }

    /// Dooms the transaction for a head whose publish was refused inside it.
    fn take_doomed(&mut self) {
        if let Some(DoomedHead {
            offset,
            refused,
            error,
        }) = self.progress.take_doomed()
        {
            self.doom_transaction(offset, refused, Box::new(error));
        }
    }

    /// Applies the error policy to a failed message: skip it, run it again later, or its
    /// final outcome. A batch handler naming the record that failed splits its batch.
    async fn failed(
        &mut self,
        failure: Failure,
        origin: &Origin,
        ack: PendingAck<P::Delivery>,
    ) -> Option<Box<Redelivery>> {
        let Failure {
            error,
            attempt,
            ticket,
            kept,
        } = failure;
        // Backoffs, dead letters and retry topics may wait: the stop is looked at next.
        self.waited = true;
        if self.aborts_transaction(&*error) {
            self.doom_transaction(origin.offset, RefusedRecord::Unattributed, error);
            return None;
        }
        let error = match error.downcast::<BatchFailed>() {
            // (A batch whose output was refused fails as a whole: messages dispatched after
            // it hold entries behind its own, which cannot be split then.)
            Ok(failed) => match kept.as_ref().and_then(|m| m.batch().cloned()) {
                Some(batch) if self.progress.is_last(ticket) => {
                    return self.record_failed(batch, *failed, attempt, ticket).await;
                }
                _ => failed as BoxError,
            },
            Err(error) => error,
        };
        let position = match &kept {
            Some(message) => message.position().to_string(),
            None => format!("{}@{}", self.progress.partition(), origin.offset),
        };
        let key = origin.key.as_deref().map(String::from_utf8_lossy);
        match self.policy.decide(attempt, &error) {
            Decision::Reject => {
                self.log_rejected(&position);
                self.progress.decide(ticket, ack);
                None
            }
            decision @ (Decision::Retry(delay) | Decision::Wait(delay)) => {
                let waits = matches!(decision, Decision::Wait(_));
                if waits {
                    self.log_waiting(&position, delay, &error);
                } else if !error.is::<Nacked>() {
                    self.log_failed(&position, key, attempt, &error);
                }
                let Some(message) = kept else {
                    self.progress.decide(ticket, ack);
                    return None;
                };
                // Waiting out an outage is not an attempt.
                let attempt = if waits { attempt } else { attempt + 1 };
                Some(Box::new(Redelivery {
                    message,
                    attempt,
                    delay,
                    ticket,
                }))
            }
            Decision::Exhausted => {
                // A record of a retry topic counts its earlier deliveries' attempts too.
                let earlier = kept.as_ref().map_or(0, |m| delivery_of(m) - 1);
                self.log_failed(&position, key, attempt + earlier, &error);
                self.exhausted(kept, &error, attempt, ticket, ack).await;
                None
            }
        }
    }

    fn log_failed(
        &self,
        position: &str,
        key: Option<Cow<'_, str>>,
        attempt: u32,
        error: &BoxError,
    ) {
        tracing::error!(
            subscriber = %self.config.name,
            key = ?key,
            attempt,
            "message {position} failed: {error}",
        );
    }

    fn log_waiting(&self, position: &str, delay: Duration, error: &BoxError) {
        tracing::warn!(
            subscriber = %self.config.name,
            "message {position} waits {delay:?} and runs again, its partition paused: {error}",
        );
    }

    fn log_rejected(&self, position: &dyn std::fmt::Display) {
        tracing::warn!(
            subscriber = %self.config.name,
            "message {position} rejected by its handler is skipped",
        );
    }

    /// A batch handler named the record that failed: the records before it are done, the
    /// failed one follows the error policy alone (a retry redelivers it with the records
    /// after it), and the records after it come again as the next batch. The batch's tracker
    /// entry is split along the same lines.
    async fn record_failed(
        &mut self,
        batch: Batch,
        failed: BatchFailed,
        attempt: u32,
        ticket: Ticket,
    ) -> Option<Box<Redelivery>> {
        let index = failed.index.min(batch.len() - 1);
        let error = failed.source;
        let record = &batch[index];
        let ticket = self.finish_records_before(&batch, index, ticket);
        // The attempt count is the batch head's: a record after it fails for the first time.
        let attempt = if index == 0 { attempt } else { 1 };
        let decision = self.policy.decide(attempt, &error);
        if !matches!(decision, Decision::Reject) {
            tracing::error!(
                subscriber = %self.config.name,
                key = ?record.key_for_log(),
                attempt,
                "record {} of the batch {}..={} failed: {error}",
                record.position(),
                batch.first_offset(),
                batch.last_offset(),
            );
        }
        if let Decision::Retry(delay) | Decision::Wait(delay) = decision {
            let message = batch.rest_from(index)?;
            let attempt = match decision {
                Decision::Wait(_) => attempt,
                _ => attempt + 1,
            };
            return Some(Box::new(Redelivery {
                message,
                attempt,
                delay,
                ticket,
            }));
        }
        // The failed record alone takes its final outcome; the records after it come again.
        let rest_ticket = self
            .progress
            .split(ticket, record.offset, record.held_bytes());
        let ack = PendingAck::new(record.offset);
        if matches!(decision, Decision::Reject) {
            self.log_rejected(&record.position());
            self.progress.decide(ticket, ack);
        } else {
            self.exhausted(Some(record.clone()), &error, attempt, ticket, ack)
                .await;
        }
        let rest = batch.rest_from(index + 1)?;
        rest_ticket.map(|ticket| {
            Box::new(Redelivery {
                message: rest,
                attempt: 1,
                delay: Duration::ZERO,
                ticket,
            })
        })
    }

    /// The records of `batch` before `index` are done: the batch's entry (`ticket`) is cut
    /// after them and decided; returns the entry of the records from `index` on.
    fn finish_records_before(&mut self, batch: &Batch, index: usize, ticket: Ticket) -> Ticket {
        let Some(done) = batch[..index].last() else {
            return ticket;
        };
        let bytes = batch[..index].iter().map(Message::held_bytes).sum();
        let Some(rest) = self.progress.split(ticket, done.offset, bytes) else {
            return ticket;
        };
        self.progress.decide(ticket, PendingAck::new(done.offset));
        rest
    }

    /// The broker refused the output of a handled message: the same policy as a failing
    /// handler (retry the message, then its final outcome).
    async fn refused(&mut self, failed: FailedHead) -> Option<Box<Redelivery>> {
        let FailedHead {
            message,
            attempt,
            error,
            ticket,
        } = failed;
        let error: BoxError = Box::new(error);
        match self.policy.decide(attempt, &error) {
            Decision::Retry(delay) | Decision::Wait(delay) => Some(Box::new(Redelivery {
                message,
                attempt: attempt + 1,
                delay,
                ticket,
            })),
            Decision::Exhausted | Decision::Reject => {
                let ack = PendingAck::new(message.offset);
                self.exhausted(Some(message), &error, attempt, ticket, ack)
                    .await;
                None
            }
        }
    }

    /// Applies the final outcome to a message that failed for good: its dead letters, a stop,
    /// or a skip.
    async fn exhausted(
        &mut self,
        message: Option<Message>,
        error: &BoxError,
        attempts: u32,
        ticket: Ticket,
        mut ack: PendingAck<P::Delivery>,
    ) {
        // A record of a retry topic was delivered before: count its earlier attempts too.
        let (delivery, origin_topic) = match &message {
            Some(message) => {
                let origin = Provenance::of(message);
                (origin.delivery, Some(origin.topic.into_owned()))
            }
            None => (1, None),
        };
        let attempts = attempts + delivery - 1;
        let next_retry = self.policy.next_retry_topic(delivery, error);
        let outcome = match (next_retry, &self.policy.exhausted, &message, origin_topic) {
            (Some(delay), _, Some(message), Some(origin)) => {
                self.send_to_retry_topic(&origin, message, delay, attempts, &mut ack)
                    .await
            }
            (None, Exhausted::DeadLetter { .. }, Some(message), Some(origin)) => {
                match self.policy.dead_letter_topic(&origin) {
                    Some(topic) => {
                        self.send_dead_letters(&topic, message, error, attempts, &mut ack)
                            .await
                    }
                    None => Final::Settled,
                }
            }
            (None, Exhausted::Stop, Some(_), _) => Final::Halt,
            _ => Final::Settled,
        };
        match (outcome, message) {
            (Final::Halt, Some(message)) => self.halt(&message, ticket),
            // Its entry stays undecided until the rewind.
            (Final::Doomed, _) => {}
            _ => self.progress.decide(ticket, ack),
        }
    }

    /// Enqueues `message`'s dead letters (a batch's records, one each); `ack` must see them
    /// acknowledged, or the partition halts.
    async fn send_dead_letters(
        &mut self,
        topic: &str,
        message: &Message,
        error: &BoxError,
        attempts: u32,
        ack: &mut PendingAck<P::Delivery>,
    ) -> Final {
        // (The letter borrows the config while the worker publishes.)
        let config = Arc::clone(&self.config);
        let letter = DeadLetter {
            topic,
            group: config.effective_group_id(),
            error,
            attempts,
        };
        let records = message.records().iter().zip(letter.records(message));
        let outcome = self
            .send_for_outcome("dead-letter topic", topic, records, ack)
            .await;
        if matches!(outcome, Final::Settled) {
            tracing::warn!(
                subscriber = %self.config.name,
                "message {} sent to dead-letter topic `{topic}` after {attempts} attempt(s)",
                message.position(),
            );
        }
        outcome
    }

    /// Enqueues the records a failed message becomes on `topic` (its dead-letter or retry
    /// topic, named by `what`), each with the record it comes from; `ack` must see them
    /// acknowledged, or the partition halts.
    async fn send_for_outcome<'m>(
        &mut self,
        what: &str,
        topic: &str,
        records: impl Iterator<Item = (&'m Message, Record)> + Send,
        ack: &mut PendingAck<P::Delivery>,
    ) -> Final {
        for (from, record) in records {
            match self.publisher.enqueue(record).await {
                Ok(delivery) => ack.track(delivery),
                Err(err) if self.aborts_transaction(&err) => {
                    let error = format!("it could not be sent to {what} `{topic}`: {err}");
                    self.doom_transaction(from.offset, RefusedRecord::Unattributed, error.into());
                    return Final::Doomed;
                }
                Err(err) => {
                    tracing::error!(
                        subscriber = %self.config.name,
                        "message {} could not be sent to {what} `{topic}`: {err}",
                        from.position(),
                    );
                    return Final::Halt;
                }
            }
        }
        ack.must_deliver();
        Final::Settled
    }

    /// Republishes `message` (first read from `origin`) to its retry topic of `delay`, due
    /// then; `ack` must see it acknowledged before its offset counts, or the partition halts
    /// (the same rule as a dead letter). The partition goes on at once.
    async fn send_to_retry_topic(
        &mut self,
        origin: &str,
        message: &Message,
        delay: Duration,
        attempts: u32,
        ack: &mut PendingAck<P::Delivery>,
    ) -> Final {
        let group = self.config.effective_group_id();
        let topic = self.policy.retry_topic(origin, group, delay);
        let record = retry_record(message, &topic, delay);
        let outcome = self
            .send_for_outcome(
                "retry topic",
                &topic,
                std::iter::once((message, record)),
                ack,
            )
            .await;
        if matches!(outcome, Final::Settled) {
            tracing::warn!(
                subscriber = %self.config.name,
                "message {} sent to retry topic `{topic}` after {attempts} attempt(s), due in {delay:?}",
                message.position(),
            );
        }
        outcome
    }

    /// Stops the partition at `message`: nothing from it on is handled or committed.
    fn halt(&mut self, message: &Message, ticket: Ticket) {
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
        self.progress.halt(ticket);
        self.stats.set_halted();
    }

    /// Waits for a handler call that was not done at once (its callers try that first): it
    /// is waiting on something (I/O, a timer), so meanwhile the acknowledgements of earlier
    /// messages are taken and the watermark is stored, and a slow or stuck handler holds back
    /// only its own offset.
    async fn finish_call<F>(&mut self, mut call: Pin<&mut F>) -> Result<Reply, BoxError>
    where
        F: std::future::Future<Output = Result<Reply, BoxError>>,
    {
        self.waited = true;
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

    /// Enqueues the reply's records (see [`fan_out`]); `ack` tracks their acknowledgements.
    async fn publish(
        &mut self,
        out: Outgoing,
        origin: &Origin,
        ack: &mut PendingAck<P::Delivery>,
    ) -> Result<(), PublishError> {
        // A `no_reply` subscriber ignores `reply_to`.
        let reply_to = origin
            .reply_to
            .clone()
            .filter(|_| !self.config.delivery.no_reply);
        let destinations = Destinations {
            publishers: &self.config.publishers,
            reply_to,
        };
        for record in fan_out(out, destinations, origin.correlation_id.clone()) {
            let mut enqueue = std::pin::pin!(self.publisher.enqueue(record));
            let delivery = match poll_once(enqueue.as_mut()) {
                Poll::Ready(delivery) => delivery,
                Poll::Pending => {
                    // The producer's queue is full: this can take a while.
                    self.waited = true;
                    enqueue.await
                }
            };
            ack.track(delivery?);
        }
        Ok(())
    }
}

/// The next manual-ack record decided late (never, without a manual ack policy).
async fn next_decided<D>(late: &mut Option<LateAcks<Undecided<D>>>) -> (Undecided<D>, AckDecision) {
    match late {
        Some(late) => late.next().await,
        None => std::future::pending().await,
    }
}

/// A manual-ack handler's call as the worker takes it: a decision the slot got after the
/// handler's future read it (from another task) still counts; a handler that returned
/// without deciding leaves its record waiting under `id` (the second value).
fn decided_by_handler(
    outcome: &mut Result<Reply, BoxError>,
    slot: &crate::handler::extract::AckSlot,
    id: u64,
) -> Option<u64> {
    // The outcome is changed in place: it is a large value, and each move of it was a
    // `memcpy` per record (issue 21's profile).
    if matches!(outcome, Err(_) | Ok(Reply::Failed(_))) {
        return None;
    }
    match slot.wait_for_decision() {
        AckDecision::Undecided => Some(id),
        AckDecision::Ack => None,
        AckDecision::Nack => {
            *outcome = Err(Box::new(Nacked));
            None
        }
        AckDecision::Reject => {
            *outcome = Err(Box::new(Rejected));
            None
        }
    }
}

/// When the tracker counts an offset as finished, for the subscriber's commit timing (a
/// manual ack's entry is decided when its `Ack` decides: see [`LateAcks`]).
fn commit_mode(commit: CommitTiming) -> CommitMode {
    match commit {
        CommitTiming::BeforeHandler => CommitMode::BeforeHandling,
        CommitTiming::AfterHandler | CommitTiming::ByHandler => CommitMode::AfterHandling,
    }
}

/// Messages handled straight from the queue before the worker looks at acks, timers and the
/// stop signal again through `select!` (a stop is still looked at during the run).
const FAST_PATH_BATCH: usize = 64;

/// Records a fast-path run takes, at most, between two reads of the stop signal while its
/// handler calls finish at once (see [`PartitionWorker::take`]).
const STOP_LOOK_EVERY: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Delivered, Publish, QueueSender, Record};
    use crate::error::PublishError;
    use crate::policy::AckPolicy;
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
                _ => Err(PublishError::new(self.1.to_string(), "refused")),
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

    /// Waits until `done` holds, letting the worker run (the offset store is delayed by
    /// `STORE_DELAY`, and a loaded machine may delay anything more); panics naming `what`
    /// after 10 s.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not within 10 s: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The offsets stored so far.
    fn stored(offsets: &RecordedOffsets) -> Vec<i64> {
        offsets.0.lock().unwrap().clone()
    }

    /// Lets the worker run, and its delayed offset store happen (for asserting that something
    /// did not happen; what must happen is waited for with [`eventually`]).
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
        tx: QueueSender,
        stop: CancellationToken,
        task: JoinHandle<()>,
    }

    /// A worker of `runtime` on partition 0 of `in`: where it stores offsets, its queue, its
    /// stop signal and its task.
    fn spawn_on_partition_0(
        runtime: Arc<dyn PartitionWorkers>,
    ) -> (
        Arc<RecordedOffsets>,
        QueueSender,
        CancellationToken,
        JoinHandle<()>,
    ) {
        let offsets = Arc::new(RecordedOffsets::default());
        let (tx, rx) = partition_queue(16);
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
            publish_layers: Vec::new(),
            layers: Vec::new(),
            tracker: TaskTracker::new(),
            transactions: None,
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
        eventually("three publishes", || {
            publisher.sent.lock().unwrap().len() >= 3
        })
        .await;
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
        eventually("offset 0 stored", || !stored(&offsets).is_empty()).await;
        assert_eq!(*offsets.0.lock().unwrap(), [0]);
        second.send(true).unwrap();
        eventually("offset 2 stored", || stored(&offsets).len() > 1).await;
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
        eventually("two publishes", || {
            publisher.sent.lock().unwrap().len() >= 2
        })
        .await;
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
            |attempts: crate::State<Arc<AtomicUsize>>, n: i64| async move {
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
        eventually("offset 1 stored", || stored(&offsets).last() >= Some(&1)).await;
        assert_eq!(offsets.0.lock().unwrap().last(), Some(&1));
        // A stop during the backoff leaves 2 (and 3) uncommitted.
        stop.cancel();
        task.await.unwrap();
        assert_eq!(offsets.0.lock().unwrap().last(), Some(&1));
    }

    #[tokio::test]
    async fn a_message_waiting_out_an_outage_runs_again_about_once_a_second() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut state = AppState::default();
        state.insert(Arc::clone(&calls));
        // NackOnError keeps the message to run it again, as a codec that may wait does.
        let config = SubscriberConfig::new("outage", ["in"]).ack_policy(AckPolicy::NackOnError);
        let runtime = subscriber_workers(
            Arc::new(config),
            |calls: crate::State<Arc<AtomicUsize>>, _n: i64| async move {
                calls.fetch_add(1, AtomicOrdering::SeqCst);
                Err::<(), _>(crate::handler::extract::ExtractError::PayloadUnavailable(
                    "registry down".into(),
                ))
            },
            &context(ManualPublisher::default(), state),
        )
        .expect("handler needs are met");
        let (offsets, tx, stop, task) = spawn_on_partition_0(runtime.workers);
        tx.send(message(0, 0)).await.unwrap();
        // Each wait is jittered between half of OUTAGE_RETRY (1 s) and all of it: in 1.6 s
        // the first run and one to three more, never a run per turn of the event loop.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let runs = calls.load(AtomicOrdering::SeqCst);
        assert!((2..=4).contains(&runs), "{runs} runs in 1.6 s");
        stop.cancel();
        task.await.unwrap();
        assert!(offsets.0.lock().unwrap().is_empty(), "never committed");
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
                |gauges: crate::State<Gauges>, _n: i64| async move {
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
                let (tx, rx) = partition_queue(4);
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

    /// The member's transactions, recording each commit's offsets, and counting aborts.
    #[derive(Default)]
    struct RecordedCommits(Mutex<Vec<Commit>>, AtomicUsize);

    /// One commit's offsets: per partition, the next offset and its metadata.
    type Commit = Vec<(i64, Option<String>)>;

    impl MemberTransactions for RecordedCommits {
        fn commit(
            &self,
            offsets: Vec<crate::broker::TransactionOffset>,
        ) -> futures::future::BoxFuture<'static, Result<(), Error>> {
            self.0
                .lock()
                .unwrap()
                .push(offsets.into_iter().map(|o| (o.next, o.metadata)).collect());
            Box::pin(async { Ok(()) })
        }
        fn abort(&self) -> futures::future::BoxFuture<'static, Result<(), Error>> {
            self.1.fetch_add(1, AtomicOrdering::SeqCst);
            Box::pin(async { Ok(()) })
        }
        fn id(&self) -> String {
            "recorded".into()
        }
    }

    #[tokio::test]
    async fn an_exactly_once_commit_waits_for_the_handler_in_flight_and_its_publishes() {
        let publisher = ManualPublisher::default();
        let commits = Arc::new(RecordedCommits::default());
        let mut cx = context(publisher.clone(), AppState::default());
        cx.transactions = Some(Arc::clone(&commits) as Arc<dyn MemberTransactions>);
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let handler_release = Arc::clone(&release);
        let config = Arc::new(
            SubscriberConfig::new("eos", ["in"])
                .exactly_once(true)
                .publish_to("out"),
        );
        let built = subscriber_workers(
            config,
            move |n: i64| {
                let release = Arc::clone(&handler_release);
                async move {
                    if n == 1 {
                        drop(release.acquire().await);
                    }
                    n * 10
                }
            },
            &cx,
        )
        .expect("handler needs are met");
        let coordinator = built.transactions.clone().expect("exactly-once");
        let (_offsets, tx, stop, task) = spawn_on_partition_0(built.workers);
        tx.send(message(0, 0)).await.unwrap();
        tx.send(message(1, 0)).await.unwrap();
        tx.send(message(2, 0)).await.unwrap();
        settle().await;
        // Record 0 is handled (its output waits for its ack); record 1's handler is running.
        let commit = tokio::spawn({
            let coordinator = Arc::clone(&coordinator);
            async move { coordinator.commit_now().await }
        });
        settle().await;
        assert!(
            !commit.is_finished(),
            "the commit waits for the handler in flight"
        );
        release.add_permits(1);
        eventually("record 1's output", || {
            publisher.sent.lock().unwrap().len() >= 2
        })
        .await;
        settle().await;
        assert!(
            !commit.is_finished(),
            "and for the publishes' acknowledgements"
        );
        assert_eq!(
            publisher.sent.lock().unwrap().len(),
            2,
            "the outputs of records 0 and 1; record 2 is not started during the barrier"
        );
        for (_, ack) in publisher.sent.lock().unwrap().drain(..) {
            ack.send(true).unwrap();
        }
        commit.await.unwrap().unwrap();
        assert_eq!(
            commits.0.lock().unwrap().clone(),
            [vec![(2, None)]],
            "records 0 and 1, with their outputs, and nothing past them"
        );
        // Record 2's output is never acknowledged here: the worker would wait for it.
        stop.cancel();
        task.abort();
    }

    /// A delivery refused inside the transaction dooms it: the handler does not run again
    /// into it (the policy would retry), and the next barrier aborts instead of committing.
    #[tokio::test]
    async fn a_refused_output_dooms_the_transaction_which_aborts_instead_of_retrying() {
        let publisher = ManualPublisher::default();
        let commits = Arc::new(RecordedCommits::default());
        let mut cx = context(publisher.clone(), AppState::default());
        cx.transactions = Some(Arc::clone(&commits) as Arc<dyn MemberTransactions>);
        let calls = Arc::new(AtomicUsize::new(0));
        let handler_calls = Arc::clone(&calls);
        let config = Arc::new(
            SubscriberConfig::new("eos", ["in"])
                .exactly_once(true)
                .error_policy(ErrorPolicy::retry(3).backoff(crate::policy::Backoff {
                    initial: Duration::from_millis(1),
                    max: Duration::from_millis(1),
                }))
                .publish_to("out"),
        );
        let built = subscriber_workers(
            config,
            move |n: i64| {
                handler_calls.fetch_add(1, AtomicOrdering::SeqCst);
                async move { n * 10 }
            },
            &cx,
        )
        .expect("handler needs are met");
        let coordinator = built.transactions.clone().expect("exactly-once");
        let (_offsets, tx, _stop, _task) = spawn_on_partition_0(built.workers);
        tx.send(message(0, 0)).await.unwrap();
        tx.send(message(1, 0)).await.unwrap();
        eventually("both outputs", || publisher.sent.lock().unwrap().len() == 2).await;
        let mut sent = std::mem::take(&mut *publisher.sent.lock().unwrap());
        let (_, refused) = sent.pop().unwrap();
        let (_, acked) = sent.pop().unwrap();
        acked.send(true).unwrap();
        refused.send(false).unwrap();
        settle().await;
        let outcome = tokio::time::timeout(Duration::from_secs(10), coordinator.commit_now())
            .await
            .expect("the barrier is reached");
        assert!(outcome.is_err(), "the doomed transaction is not committed");
        assert_eq!(commits.1.load(AtomicOrdering::SeqCst), 1, "it is aborted");
        assert!(commits.0.lock().unwrap().is_empty(), "nothing committed");
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 2, "no retry into it");
        assert!(
            publisher.sent.lock().unwrap().is_empty(),
            "nothing more sent"
        );
    }
}
