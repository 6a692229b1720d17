//! An exactly-once subscriber's transactions: when its group member commits, and the
//! barrier that makes the commit exact.
//!
//! Every partition worker of the member publishes into one open transaction (the backend's
//! [`MemberTransactions`]). A commit must carry, for each partition, the offset after the
//! last record whose outputs are in the transaction, and no output of a record past it.
//! So the [`Coordinator`] commits only at a barrier:
//! 1. it closes the gate: workers take no new record and run no redelivery;
//! 2. it waits until every worker finished its handler and its publishes were acknowledged,
//!    and stored its watermark here ([`TransactionalOffsets`]);
//! 3. it commits the transaction with those watermarks;
//! 4. it opens the gate.
//!
//! A commit that fails (the backend aborted the transaction) rewinds every partition that
//! handled anything since the last commit to where that commit left it, through the
//! subscriber's [`Seeker`]: the records run again, and their earlier outputs were never
//! visible. The gate stays closed until the rewind is done.
//!
//! A publish refused inside the transaction (its producer fenced, or a record the broker
//! will not take) dooms it: the worker [`dooms`](TransactionGate::doom) it, every worker
//! stops taking records, and the coordinator aborts at once and rewinds the same way. The
//! record that doomed it is carried over the rewind when its own publish was refused: it
//! counts the attempt, so an output the broker never takes reaches the record's final
//! outcome (a dead letter) in the next transaction, rather than aborting forever. A batch's
//! attempt is carried to the batch after the rewind that holds its last record, however the
//! records are cut into batches again.
//!
//! Commits come every [`TransactionCommits::interval`] or sooner after
//! [`TransactionCommits::max_records`], from [`Coordinator::run`]; and from the backend before
//! a revoke completes and at the stop ([`Coordinator::commit_now`]).

use crate::broker::{MemberTransactions, OffsetStore, TransactionOffset};
use crate::config::subscriber::TransactionCommits;
use crate::error::{BoxError, Error, ErrorClass, PublishError, Result};
use crate::handler::Seeker;
use crate::message::seek::{Seek, StartFrom};
use crate::message::TopicPartition;
use crate::policy::{Decision, ErrorPolicy};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Where the barrier stands, as workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phase {
    /// The number of the last barrier.
    pub(crate) epoch: u64,
    /// Workers must not start a handler.
    pub(crate) closed: bool,
    /// A publish was refused inside the open transaction: it cannot commit, and is aborted
    /// at the next barrier. Workers take nothing new meanwhile.
    pub(crate) doomed: bool,
}

/// What happens to the record that doomed a transaction when it comes again after the
/// rewind.
pub(crate) enum Carried {
    /// It runs again as attempt `attempt`, after `delay`.
    RunAgain { attempt: u32, delay: Duration },
    /// Its policy gave up after `attempts`: its final outcome applies without running it
    /// (`reject`: it is skipped).
    Final {
        attempts: u32,
        error: BoxError,
        reject: bool,
    },
    /// Its dead letter (or retry-topic record) was refused for good: the partition stops at
    /// it, as it does outside a transaction.
    Halt,
}

/// One member's transaction commits (see the module docs).
pub(crate) struct Coordinator {
    subscriber: Arc<str>,
    transactions: Arc<dyn MemberTransactions>,
    commits: TransactionCommits,
    /// Rewinds the member's partitions after an abort.
    seeker: Seeker,
    state: Mutex<State>,
    gate: watch::Sender<Phase>,
    /// A worker quiesced or left.
    changed: Notify,
    /// `max_records` were handled since the last commit.
    due: Notify,
    /// A worker took a record since the last barrier.
    dispatched_since_barrier: AtomicBool,
    /// Some record doomed a transaction and was not claimed yet (read for each record).
    carrying: AtomicBool,
    /// One commit (with its rewind) at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct State {
    next_worker: u64,
    /// Registered workers: the partition of each, and the last barrier it reached.
    workers: HashMap<u64, (TopicPartition, u64)>,
    /// Watermarks stored since the last commit: the next offset to read, per partition,
    /// with the metadata to commit with it.
    pending: HashMap<TopicPartition, (i64, Option<String>)>,
    /// What this member committed last, per partition it still owns (a partition that left
    /// and came back may have been committed further by another member).
    committed: HashMap<TopicPartition, i64>,
    /// The first record each partition handled since the last commit: where an abort
    /// rewinds a partition this member has not committed yet.
    first_since_commit: HashMap<TopicPartition, i64>,
    /// About how many records were handled since the last commit.
    records: usize,
    /// Per partition, the record that doomed an aborted transaction (its offset), until it
    /// comes again.
    carried: HashMap<TopicPartition, (i64, Carried)>,
}

impl Coordinator {
    pub(crate) fn new(
        subscriber: &str,
        transactions: Arc<dyn MemberTransactions>,
        commits: TransactionCommits,
        seeker: Seeker,
    ) -> Arc<Self> {
        Arc::new(Self {
            subscriber: Arc::from(subscriber),
            transactions,
            commits,
            seeker,
            state: Mutex::default(),
            gate: watch::Sender::new(Phase {
                epoch: 0,
                closed: false,
                doomed: false,
            }),
            changed: Notify::new(),
            due: Notify::new(),
            dispatched_since_barrier: AtomicBool::new(false),
            carrying: AtomicBool::new(false),
            turn: Arc::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The member's transactional id.
    pub(crate) fn transactional_id(&self) -> String {
        self.transactions.id()
    }

    /// Registers a new partition worker. It has nothing in flight, so it counts as having
    /// reached the current barrier.
    pub(crate) fn join(self: &Arc<Self>, partition: TopicPartition) -> TransactionGate {
        let phase = *self.gate.borrow();
        let mut state = self.state();
        let id = state.next_worker;
        state.next_worker += 1;
        state.workers.insert(id, (partition.clone(), phase.epoch));
        drop(state);
        TransactionGate {
            coordinator: Arc::clone(self),
            participant: Participant::Member { id, partition },
            phase: self.gate.subscribe(),
            reached: phase.epoch,
            noted_since_barrier: false,
        }
    }

    /// The gate of a lane worker: the coordinator does not wait for it, its partition's
    /// router does, hearing through `report` (called with the barrier's number) that the lane
    /// reached it after its last watermark.
    pub(crate) fn lane_gate(self: &Arc<Self>, report: LaneReached) -> TransactionGate {
        let phase = *self.gate.borrow();
        TransactionGate {
            coordinator: Arc::clone(self),
            participant: Participant::Lane(report),
            phase: self.gate.subscribe(),
            reached: phase.epoch,
            noted_since_barrier: false,
        }
    }

    /// The offset store of a worker (or lane router): its watermarks wait here for the
    /// commit; the metadata committed before is read from `backend`.
    pub(crate) fn offsets(self: &Arc<Self>, backend: Arc<dyn OffsetStore>) -> Arc<dyn OffsetStore> {
        Arc::new(TransactionalOffsets {
            coordinator: Arc::clone(self),
            backend,
        })
    }

    /// Commits every `interval`, or sooner once `max_records` were handled, until `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let first = tokio::time::Instant::now() + self.commits.interval;
        let mut tick = tokio::time::interval_at(first, self.commits.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                () = self.due.notified() => {}
            }
            let idle = {
                let state = self.state();
                state.pending.is_empty() && state.first_since_commit.is_empty()
            };
            if idle && !self.anything_dispatched() && !self.gate.borrow().doomed {
                continue;
            }
            if let Err(err) = self.commit_now().await {
                tracing::warn!(subscriber = %self.subscriber, "{err}");
            }
        }
    }

    /// Whether a worker dispatched a record it has not reported at a barrier yet. Read
    /// without a barrier; a record dispatched just after it is committed next time.
    fn anything_dispatched(&self) -> bool {
        self.dispatched_since_barrier.load(Ordering::Relaxed)
    }

    /// Commits the open transaction at a barrier (see the module docs). On a failure the
    /// transaction was aborted: the partitions are rewound (in the background when called
    /// from outside the runtime) before workers run again, and the error is returned.
    pub(crate) async fn commit_now(self: &Arc<Self>) -> Result<()> {
        let turn = Arc::clone(&self.turn).lock_owned().await;
        let epoch = self.close_gate();
        self.wait_quiesced(epoch).await;
        self.dispatched_since_barrier
            .store(false, Ordering::Relaxed);
        let offsets: Vec<TransactionOffset> = {
            let state = self.state();
            let mut offsets: Vec<_> = state
                .pending
                .iter()
                .map(|(partition, (next, metadata))| TransactionOffset {
                    partition: partition.clone(),
                    next: *next,
                    metadata: metadata.clone(),
                })
                .collect();
            offsets.sort_by(|a, b| {
                (&a.partition.topic, a.partition.partition)
                    .cmp(&(&b.partition.topic, b.partition.partition))
            });
            offsets
        };
        // (Read after the barrier: no handler runs, every publish was answered.)
        let doomed = self.gate.borrow().doomed;
        let result = if doomed {
            Err(self.abort_doomed().await)
        } else if offsets.is_empty() {
            Ok(())
        } else {
            self.transactions.commit(offsets.clone()).await
        };
        match result {
            Ok(()) => {
                let mut state = self.state();
                state.pending.clear();
                state.records = 0;
                for offset in offsets {
                    // A partition whose head record waits for a retry stays where it was.
                    state.first_since_commit.remove(&offset.partition);
                    if state.owns(&offset.partition) {
                        state.committed.insert(offset.partition, offset.next);
                    }
                }
                // A carried record that will not come again here (its partition moved past
                // it, or to another member) is forgotten.
                let State {
                    carried,
                    committed,
                    workers,
                    ..
                } = &mut *state;
                carried.retain(|partition, (offset, _)| {
                    workers.values().any(|(owned, _)| owned == partition)
                        && committed.get(partition).is_none_or(|next| *offset >= *next)
                });
                self.carrying.store(!carried.is_empty(), Ordering::Relaxed);
                drop(state);
                self.open_gate();
                drop(turn);
                Ok(())
            }
            Err(err) => {
                let targets = self.rewind_targets();
                tracing::error!(
                    subscriber = %self.subscriber,
                    transactional_id = %self.transactions.id(),
                    "transaction commit failed, the transaction is aborted: {err}; rewinding {} partition(s) to their last committed offsets, whose records are handled again",
                    targets.len()
                );
                let this = Arc::clone(self);
                // Seeks are done by the backend's consumer, which may be the caller (a revoke):
                // the rewind must not be awaited here.
                tokio::spawn(async move {
                    this.rewind(targets).await;
                    // The aborted transaction took its doom with it.
                    this.gate.send_modify(|phase| phase.doomed = false);
                    this.open_gate();
                    drop(turn);
                });
                Err(Error::broker_msg(
                    format!(
                        "subscriber `{}`: the transaction was aborted and its partitions rewound: {err}",
                        self.subscriber
                    ),
                    ErrorClass::Abortable,
                ))
            }
        }
    }

    /// Aborts a doomed transaction (see [`TransactionGate::doom`]); the error the commit
    /// reports.
    async fn abort_doomed(&self) -> Error {
        if let Err(err) = self.transactions.abort().await {
            tracing::warn!(subscriber = %self.subscriber, "aborting the doomed transaction: {err}");
        }
        Error::broker_msg(
            "a publish was refused inside the transaction",
            ErrorClass::Abortable,
        )
    }

    /// Dooms the open transaction: workers take nothing new, and the next barrier, at once,
    /// aborts it. `carried`: the record that doomed it, in its partition, and what it does
    /// when it comes again.
    fn doom(&self, carried: Option<(TopicPartition, i64, Carried)>) {
        if let Some((partition, offset, carried)) = carried {
            self.state().carried.insert(partition, (offset, carried));
            self.carrying.store(true, Ordering::Relaxed);
        }
        self.gate
            .send_if_modified(|phase| !std::mem::replace(&mut phase.doomed, true));
        self.due.notify_one();
    }

    /// Takes what the record at an offset in `offsets` of `partition` carried over an abort,
    /// if it doomed the transaction.
    fn claim(&self, partition: &TopicPartition, offsets: RangeInclusive<i64>) -> Option<Carried> {
        if !self.carrying.load(Ordering::Relaxed) {
            return None;
        }
        let mut state = self.state();
        if !offsets.contains(&state.carried.get(partition)?.0) {
            return None;
        }
        let (_, carried) = state.carried.remove(partition)?;
        self.carrying
            .store(!state.carried.is_empty(), Ordering::Relaxed);
        Some(carried)
    }

    /// Where each partition handled since the last commit goes back to after an abort: its
    /// last commit by this member, or the first record it handled since.
    fn rewind_targets(&self) -> Vec<(TopicPartition, i64)> {
        let mut state = self.state();
        let mut touched: Vec<TopicPartition> = state
            .pending
            .keys()
            .chain(state.first_since_commit.keys())
            .cloned()
            .collect();
        touched.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        touched.dedup();
        let targets = touched
            .into_iter()
            .filter_map(|partition| {
                let to = state
                    .committed
                    .get(&partition)
                    .or_else(|| state.first_since_commit.get(&partition))
                    .copied()?;
                Some((partition, to))
            })
            .collect();
        state.pending.clear();
        state.first_since_commit.clear();
        state.records = 0;
        targets
    }

    async fn rewind(&self, targets: Vec<(TopicPartition, i64)>) {
        let seeks = targets
            .into_iter()
            .map(|(partition, offset)| self.rewind_partition(partition, offset));
        futures::future::join_all(seeks).await;
    }

    /// Rewinds `partition` to `offset`, trying again while the seek fails for any reason but
    /// the partition being gone or the subscriber stopped: a partition left where it was would
    /// skip the records of the aborted transaction (chaos scenario 15 lost 38 that way when a
    /// seek's metadata query failed on a dead broker). The gate stays closed meanwhile.
    async fn rewind_partition(&self, partition: TopicPartition, offset: i64) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let seek = Seek::partition(
                Arc::clone(&partition.topic),
                partition.partition,
                StartFrom::Offset(offset),
            );
            match self.seeker.seek(seek).await {
                Ok(_) => {
                    tracing::info!(subscriber = %self.subscriber, "{partition} rewound to {offset} after the abort");
                    return;
                }
                // Revoked meanwhile (its new owner starts at the committed offset), or the
                // subscriber stopped (or cannot seek at all).
                Err(err @ (Error::NotOwned { .. } | Error::Config { .. })) => {
                    tracing::debug!(subscriber = %self.subscriber, "{partition} not rewound: {err}");
                    return;
                }
                Err(err) => {
                    tracing::warn!(subscriber = %self.subscriber, "{partition} not rewound to {offset} yet: {err}; trying again in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn close_gate(&self) -> u64 {
        let mut epoch = 0;
        self.gate.send_modify(|phase| {
            phase.epoch += 1;
            phase.closed = true;
            epoch = phase.epoch;
        });
        epoch
    }

    fn open_gate(&self) {
        self.gate.send_modify(|phase| phase.closed = false);
    }

    /// Waits until every registered worker reached barrier `epoch` (or left).
    async fn wait_quiesced(&self, epoch: u64) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self
                .state()
                .workers
                .values()
                .all(|(_, reached)| *reached >= epoch)
            {
                return;
            }
            changed.await;
        }
    }

    fn stored(&self, partition: &TopicPartition, offset: i64, metadata: Option<&str>) {
        let mut state = self.state();
        let next = offset + 1;
        // Counted from the last watermark stored, else the last commit, else the first record
        // handled since.
        let before = state
            .pending
            .get(partition)
            .map(|(next, _)| next)
            .or_else(|| state.committed.get(partition))
            .or_else(|| state.first_since_commit.get(partition))
            .copied();
        state.records += before.map_or(1, |before| (next - before).max(0) as usize);
        state
            .pending
            .insert(partition.clone(), (next, metadata.map(str::to_owned)));
        let due = state.records >= self.commits.max_records;
        drop(state);
        if due {
            self.due.notify_one();
        }
    }
}

impl State {
    fn owns(&self, partition: &TopicPartition) -> bool {
        self.workers.values().any(|(owned, _)| owned == partition)
    }
}

/// A worker's watermarks, kept for the member's next commit.
struct TransactionalOffsets {
    coordinator: Arc<Coordinator>,
    /// The backend's store of the partition: what was committed before.
    backend: Arc<dyn OffsetStore>,
}

impl OffsetStore for TransactionalOffsets {
    fn store(&self, partition: &TopicPartition, offset: i64) {
        self.coordinator.stored(partition, offset, None);
    }

    fn store_with_metadata(&self, partition: &TopicPartition, offset: i64, metadata: &str) {
        self.coordinator.stored(partition, offset, Some(metadata));
    }

    fn committed_metadata(&self, partition: &TopicPartition) -> Option<String> {
        self.backend.committed_metadata(partition)
    }
}

/// Tells a lane's router that the lane reached a barrier (its number).
pub(crate) type LaneReached = Box<dyn Fn(u64) + Send + Sync>;

/// Who waits for a gate to reach a barrier.
enum Participant {
    /// The coordinator: a partition worker, or a partition's lane router.
    Member { id: u64, partition: TopicPartition },
    /// A lane worker's router.
    Lane(LaneReached),
}

/// A partition worker's side of the barrier.
pub(crate) struct TransactionGate {
    coordinator: Arc<Coordinator>,
    participant: Participant,
    phase: watch::Receiver<Phase>,
    /// The last barrier this worker reached.
    reached: u64,
    /// A record was dispatched since the last barrier (and its partition noted).
    noted_since_barrier: bool,
}

impl TransactionGate {
    /// The subscriber's name (for the marker its handlers run under).
    pub(crate) fn subscriber(&self) -> Arc<str> {
        Arc::clone(&self.coordinator.subscriber)
    }

    /// Whether the worker may start a handler now.
    pub(crate) fn is_open(&self) -> bool {
        let phase = self.phase.borrow();
        !phase.closed && !phase.doomed
    }

    /// Whether a refused publish doomed the open transaction (it is aborted at the next
    /// barrier, and this worker's partition rewound).
    pub(crate) fn is_doomed(&self) -> bool {
        self.phase.borrow().doomed
    }

    /// A publish refused inside the open transaction (its producer fenced, or a record the
    /// broker refused) dooms it: nothing of it may commit. `carried`: the record whose own
    /// publish was refused, in `partition`, and what it does after the rewind.
    pub(crate) fn doom(&self, partition: &TopicPartition, carried: Option<(i64, Carried)>) {
        self.coordinator
            .doom(carried.map(|(offset, carried)| (partition.clone(), offset, carried)));
    }

    /// What the record at an offset in `offsets` (one record's, or a batch's) of `partition`
    /// carried over an abort it caused.
    pub(crate) fn claim(
        &self,
        partition: &TopicPartition,
        offsets: RangeInclusive<i64>,
    ) -> Option<Carried> {
        self.coordinator.claim(partition, offsets)
    }

    /// Resolves when the gate moved (closed for a barrier, or opened).
    pub(crate) async fn moved(&mut self) {
        if self.phase.changed().await.is_err() {
            // The coordinator is gone: nothing will move again.
            std::future::pending::<()>().await;
        }
    }

    /// Whether a barrier waits for this worker.
    pub(crate) fn barrier_waiting(&self) -> bool {
        let phase = *self.phase.borrow();
        phase.closed && phase.epoch > self.reached
    }

    /// The last barrier's number.
    pub(crate) fn epoch(&self) -> u64 {
        self.phase.borrow().epoch
    }

    /// Notes a record taken for handling (a lane's router notes its partition's records).
    pub(crate) fn dispatched(&mut self, offset: i64) {
        if self.noted_since_barrier {
            return;
        }
        let Participant::Member { partition, .. } = &self.participant else {
            return;
        };
        self.noted_since_barrier = true;
        // Noted at once (the lock once per barrier), so the count of records towards
        // `max_records` starts at the first one (see `Coordinator::stored`); noted for a
        // partition committed before too: it marks it as touched, so an abort rewinds it even
        // when it stored nothing since.
        self.coordinator
            .state()
            .first_since_commit
            .entry(partition.clone())
            .or_insert(offset);
        self.coordinator
            .dispatched_since_barrier
            .store(true, Ordering::Relaxed);
    }

    /// Reports that this worker reached the barrier: no handler runs, every publish was
    /// acknowledged and the watermark stored.
    pub(crate) fn reached(&mut self) {
        let epoch = self.phase.borrow().epoch;
        self.reached = epoch;
        let (id, partition) = match &self.participant {
            Participant::Member { id, partition } => (*id, partition),
            Participant::Lane(report) => return report(epoch),
        };
        self.noted_since_barrier = false;
        let mut state = self.coordinator.state();
        state.workers.insert(id, (partition.clone(), epoch));
        drop(state);
        self.coordinator.changed.notify_waiters();
    }
}

impl Drop for TransactionGate {
    fn drop(&mut self) {
        let Participant::Member { id, partition } = &self.participant else {
            return;
        };
        let mut state = self.coordinator.state();
        state.workers.remove(id);
        if !state.owns(partition) {
            // Revoked, or sought: where it is committed is the backend's to know from now on.
            state.committed.remove(partition);
        }
        drop(state);
        self.coordinator.changed.notify_waiters();
    }
}

/// The refused publish `error` is, or comes from (a handler's own publish returned with
/// `?`, as the framework's [`Error`] or wrapped in another error).
fn refused_publish<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e PublishError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(refused) = error.downcast_ref::<PublishError>() {
            return Some(refused);
        }
        if let Some(Error::Publish(refused)) = error.downcast_ref::<Error>() {
            return Some(refused);
        }
        next = error.source();
    }
    None
}

/// Whether `error` is a publish refused because the producer is unusable (fenced, or
/// fatal): its open transaction cannot commit. (A record refused as it is sent, e.g. too
/// large for the client, leaves the transaction intact: the error policy runs in it.)
pub(crate) fn dooms_transaction(error: &(dyn std::error::Error + 'static)) -> bool {
    refused_publish(error).is_some_and(|refused| refused.class == ErrorClass::Fatal)
}

/// What a record whose delivery the broker refused for good inside the transaction
/// ([`Abortable`](ErrorClass::Abortable), e.g. too large for the topic) carries over the
/// abort: the attempt it made counts, as its policy decides. Nothing for any other refusal
/// (a fenced producer, a record purged by the abort): that is no fault of the record, which
/// runs again from its first attempt.
pub(crate) fn carried_over(policy: &ErrorPolicy, attempt: u32, error: BoxError) -> Option<Carried> {
    if refused_publish(&*error)?.class != ErrorClass::Abortable {
        return None;
    }
    Some(match policy.decide(attempt, &error) {
        Decision::Retry(delay) => Carried::RunAgain {
            attempt: attempt + 1,
            delay,
        },
        // Waiting out an outage is not an attempt.
        Decision::Wait(delay) => Carried::RunAgain { attempt, delay },
        Decision::Exhausted => Carried::Final {
            attempts: attempt,
            error,
            reject: false,
        },
        Decision::Reject => Carried::Final {
            attempts: attempt,
            error,
            reject: true,
        },
    })
}

/// What a record whose dead letter (or retry-topic record) the broker refused for good
/// inside the transaction carries over the abort: the partition stops at it when it comes
/// again, rather than the record aborting every transaction. Nothing for any other refusal.
pub(crate) fn halted_over(error: &BoxError) -> Option<Carried> {
    (refused_publish(&**error)?.class == ErrorClass::Abortable).then_some(Carried::Halt)
}

/// Resolves when an exactly-once worker's (or router's) barrier gate moved; never without
/// one.
pub(crate) async fn gate_moved(gate: &mut Option<TransactionGate>) {
    match gate {
        Some(gate) => gate.moved().await,
        None => std::future::pending().await,
    }
}
