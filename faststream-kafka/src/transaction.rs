//! Transactions outside handlers: one transactional producer per broker handle, one
//! transaction at a time.

use crate::context::KafkaContext;
use crate::producer::{send, KafkaDelivery, KafkaProducer};
use faststream_core::broker::{OpenTransaction, Transaction};
use faststream_core::{Delivered, Error, ErrorClass, PublishError, Record, Result};
use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The timeout librdkafka is given for each transactional call (`init_transactions`, sending
/// offsets, a commit or an abort), here and in the exactly-once member.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker handle's transactional producer, created (and its transactional id registered
/// with the coordinator) by the first transaction, and again after it was fenced. The lock is
/// held by the open transaction.
pub(crate) type TransactionalSlot = Arc<Mutex<Option<KafkaProducer>>>;

/// Begins a transaction on `slot`'s producer, creating it from `config` first when needed.
pub(crate) async fn begin(
    slot: &TransactionalSlot,
    config: ClientConfig,
    context: KafkaContext,
) -> Result<Transaction> {
    let mut producer_slot = Arc::clone(slot).lock_owned().await;
    if producer_slot.is_none() {
        let producer: KafkaProducer = config
            .create_with_context(context)
            .map_err(|err| crate::error::config("cannot create the transactional producer", err))?;
        let init = producer.clone();
        // Fences an earlier producer with the same id and aborts its open transaction.
        blocking(
            "cannot initialize transactions",
            CALL_TIMEOUT + CALL_GRACE,
            move || init.init_transactions(CALL_TIMEOUT),
        )
        .await?;
        *producer_slot = Some(producer);
    }
    let producer = producer_slot
        .as_ref()
        .cloned()
        .ok_or_else(|| Error::config_msg("the transactional producer is gone"))?;
    if let Err(err) = producer.begin_transaction() {
        forget_if_fatal(&mut producer_slot, &err);
        return Err(crate::error::broker("cannot begin a transaction", err));
    }
    Ok(Transaction::new(Box::new(KafkaTransaction {
        producer,
        slot: producer_slot,
        deliveries: Vec::new(),
    })))
}

/// An open transaction: the producer's lock, and the deliveries the commit awaits.
struct KafkaTransaction {
    producer: KafkaProducer,
    slot: OwnedMutexGuard<Option<KafkaProducer>>,
    deliveries: Vec<KafkaDelivery>,
}

impl OpenTransaction for KafkaTransaction {
    fn send(&mut self, record: Record) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let delivery = send(&self.producer, None, record).await?;
            self.deliveries.push(delivery);
            Ok(())
        })
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<Vec<Delivered>>> {
        Box::pin(async move {
            let mut delivered = Vec::with_capacity(self.deliveries.len());
            let mut refused = None;
            for delivery in std::mem::take(&mut self.deliveries) {
                match delivery.await {
                    Ok(landed) => delivered.push(landed),
                    Err(err) => {
                        refused.get_or_insert(err);
                    }
                }
            }
            if let Some(refused) = refused {
                // A producer in a fatal state (fenced by a newer one with its id) purges what it
                // holds: that state is the error to report, not the purge.
                let fatal = self.producer.client().fatal_error();
                // Whether the abort works or not (a fenced producer cannot abort either; it
                // is forgotten), the refusal is the error to report.
                if let Err(err) = self.abort_now().await {
                    tracing::warn!("aborting the transaction after a refused record failed: {err}");
                }
                return Err(match fatal {
                    Some((_, reason)) => Error::broker_msg(
                        format!("the transaction failed: its producer is unusable: {reason}"),
                        ErrorClass::Fatal,
                    ),
                    None => refused.into(),
                });
            }
            let producer = self.producer.clone();
            let committed = blocking(
                "cannot commit the transaction",
                CALL_TIMEOUT + CALL_GRACE,
                move || producer.commit_transaction(CALL_TIMEOUT),
            )
            .await;
            if let Err(err) = committed {
                if err.class() == ErrorClass::Fatal {
                    // The producer is unusable, or still stuck in the commit that hung: an
                    // abort would fail or wait as long again. It is forgotten; the next
                    // transaction creates a new one, whose start fences it.
                    *self.slot = None;
                } else if let Err(abort) = self.abort_now().await {
                    // An abortable failure leaves the transaction to abort.
                    tracing::warn!(
                        "aborting the transaction after a failed commit failed: {abort}"
                    );
                }
                return Err(err);
            }
            Ok(delivered)
        })
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { self.abort_now().await })
    }
}

impl KafkaTransaction {
    /// Aborts, forgetting the producer when it is fenced or otherwise unusable, so the next
    /// transaction creates a new one.
    async fn abort_now(mut self: Box<Self>) -> Result<()> {
        let Some(producer) = self.slot.as_ref().cloned() else {
            return Ok(());
        };
        let aborted = blocking(
            "cannot abort the transaction",
            CALL_TIMEOUT + CALL_GRACE,
            move || producer.abort_transaction(CALL_TIMEOUT),
        )
        .await;
        if let Err(Error::Broker {
            class: ErrorClass::Fatal,
            ..
        }) = &aborted
        {
            *self.slot = None;
        }
        aborted
    }
}

/// What a deadline on a transactional call adds to the timeout librdkafka is given: room for
/// librdkafka to answer with its own timeout error first.
pub(crate) const CALL_GRACE: Duration = Duration::from_secs(5);

/// Runs a blocking librdkafka transaction call off the runtime's threads (see [`within`]).
/// One that did not return within `deadline` is a fatal error: its producer is stuck in the
/// call, so the caller forgets it, and the next one's `init_transactions` fences it.
pub(crate) async fn blocking(
    context: &'static str,
    deadline: Duration,
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<()> {
    match within(deadline, call).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(crate::error::broker(context, err)),
        Err(reason) => Err(Error::broker_msg(
            format!("{context}: {reason}"),
            ErrorClass::Fatal,
        )),
    }
}

/// Runs a blocking transactional call, giving up on it after `deadline`: its result, or why
/// there is none (it hung, see [`hung`]). The call runs on a thread of its own, not in
/// tokio's blocking pool: a runtime waits for its blocking tasks as it shuts down, so a call
/// librdkafka never returns from kept the app from exiting after a graceful stop (chaos
/// scenario 15: "ignored SIGTERM for 60 s" after its log said the shutdown was complete).
pub(crate) async fn within(
    deadline: Duration,
    call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static,
) -> Result<Result<(), KafkaError>, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fs-transaction".into())
        .spawn(move || {
            let _ = answer.send(call());
        })
        .map_err(|err| format!("cannot start a thread for the call: {err}"))?;
    match tokio::time::timeout(deadline, answered).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(_)) => Err("the call's thread ended without an answer".to_owned()),
        Err(_) => Err(hung(deadline)),
    }
}

/// Why a transactional call that did not return within `deadline` counts as hung:
/// librdkafka can ignore its own timeout there (`send_offsets_to_transaction` waits forever
/// for a group coordinator that went down, confluentinc/librdkafka#5456 and #5511, seen in
/// chaos scenario 13). Its thread stays blocked; the producer is replaced, and the new one's
/// start fences it, so nothing the old one does later can commit.
fn hung(deadline: Duration) -> String {
    format!("a transactional call did not return within {deadline:?} (librdkafka can wait past its timeout for a coordinator that went down)")
}

/// A fatal error leaves the producer unusable (fenced by a newer one with the same id, or in
/// a fatal state): the next transaction creates a new one.
fn forget_if_fatal(slot: &mut Option<KafkaProducer>, err: &KafkaError) {
    if crate::classify(err) == ErrorClass::Fatal {
        tracing::error!("transactional producer unusable ({err}); a new one is created for the next transaction");
        *slot = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A call librdkafka never returns from is given up on after its deadline, as a fatal
    /// error, and its blocked thread does not keep the runtime from shutting down (tokio's
    /// blocking pool would: the runtime waits for its blocking tasks as it is dropped).
    #[test]
    fn a_call_past_its_deadline_is_fatal_and_does_not_hold_the_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let outcome = runtime.block_on(blocking(
            "cannot commit the transaction",
            Duration::from_millis(100),
            move || {
                let _ = released.recv();
                Ok(())
            },
        ));
        match outcome {
            Err(Error::Broker {
                class: ErrorClass::Fatal,
                context,
                ..
            }) => {
                assert!(
                    context.starts_with(
                        "cannot commit the transaction: a transactional call did not return within 100ms"
                    ),
                    "{context}"
                );
            }
            other => panic!("a fatal error, got {other:?}"),
        }
        // Releases the call later, so that a runtime waiting for it fails the test rather
        // than hanging it.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            let _ = release.send(());
        });
        let stopping = Instant::now();
        drop(runtime);
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "the runtime waited {:?} for the blocked call",
            stopping.elapsed()
        );
        releaser.join().expect("the releasing thread");
    }
}
