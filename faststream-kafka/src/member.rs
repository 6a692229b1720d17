//! An exactly-once subscriber's group member: one transactional producer, whose
//! transactions carry the member's outputs and, through `send_offsets_to_transaction` with
//! the consumer's group metadata (KIP-447), its input offsets.
//!
//! The `transactional.id` is `{group}-{subscriber}-{instance}` (the subscriber's name is left
//! out when it is the group's name), stable across restarts: a restarted instance's
//! `init_transactions` fences its dead predecessor and aborts the transaction it left open at
//! once, so `read_committed` readers do not wait for the 15 s `transaction.timeout.ms`. The
//! instance id is [`KafkaBroker::instance_id`](crate::KafkaBroker::instance_id), else
//! `FASTSTREAM_INSTANCE_ID`, else the host name. Two instances running at once with the same
//! id fence each other: give each its own.
//!
//! A fenced producer (fatal in librdkafka: another producer with the same id started) is
//! replaced by a new one, once, with a log line; the coordinator rewinds the partitions of
//! the lost transaction.

use crate::context::KafkaContext;
use crate::producer::{KafkaProducer, KafkaPublisher, ProducerCell};
use crate::transaction::{blocking, within, CALL_GRACE, CALL_TIMEOUT};
use faststream_core::broker::{MemberTransactions, TransactionOffset};
use faststream_core::{Error, ErrorClass, Result};
use futures::future::BoxFuture;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// How long a commit (sending the offsets, then committing: each within [`CALL_TIMEOUT`])
/// may take before the member gives up on it as hung (see [`within`]).
const COMMIT_DEADLINE: Duration = Duration::from_secs(65);

/// Reads the member's consumer's group metadata (its generation changes with each rebalance).
pub(crate) type GroupMetadataSource = Box<dyn Fn() -> Option<ConsumerGroupMetadata> + Send + Sync>;

/// The instance part of a member's transactional id.
pub(crate) fn instance_id(configured: Option<&str>) -> String {
    if let Some(id) = configured {
        return id.to_owned();
    }
    if let Ok(id) = std::env::var("FASTSTREAM_INSTANCE_ID") {
        if !id.trim().is_empty() {
            return id.trim().to_owned();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "instance".to_owned())
}

/// One exactly-once subscriber's transactions on Kafka.
pub(crate) struct KafkaMember {
    producer: MemberProducer,
    /// Set by the subscription once its consumer exists.
    group: OnceLock<GroupMetadataSource>,
}

/// The member's producer and what replacing it takes.
#[derive(Clone)]
struct MemberProducer {
    id: String,
    config: ClientConfig,
    context: KafkaContext,
    cell: ProducerCell,
}

impl KafkaMember {
    /// Creates the member's producer, registers its id (fencing a predecessor and aborting
    /// its open transaction) and opens the first transaction.
    pub(crate) async fn start(
        id: String,
        config: ClientConfig,
        context: KafkaContext,
    ) -> Result<(Arc<Self>, KafkaPublisher)> {
        let producer = fresh_producer(&id, &config, &context).await?;
        let cell: ProducerCell = Arc::new(RwLock::new(producer.clone()));
        let publisher = KafkaPublisher::transactional(producer, context.clone(), Arc::clone(&cell));
        let member = Arc::new(Self {
            producer: MemberProducer {
                id,
                config,
                context,
                cell,
            },
            group: OnceLock::new(),
        });
        Ok((member, publisher))
    }

    /// Gives the member its consumer's group metadata.
    pub(crate) fn bind(&self, group: GroupMetadataSource) {
        let _ = self.group.set(group);
    }
}

impl MemberProducer {
    fn current(&self) -> KafkaProducer {
        self.cell
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// After a failed commit: aborts and opens the next transaction, or replaces a fenced
    /// producer.
    async fn recover(self, failure: KafkaError) -> Error {
        let producer = self.current();
        let fatal = producer.client().fatal_error();
        if fatal.is_none() && crate::classify(&failure) != ErrorClass::Fatal {
            let aborted = abort_and_begin(producer).await;
            if let Err(reason) = aborted {
                tracing::error!(transactional_id = %self.id, "cannot abort the transaction: {reason}; replacing the producer");
                return self.replaced(failure.to_string()).await;
            }
            return crate::error::broker("the transaction commit failed", failure);
        }
        let reason = fatal.map_or_else(|| failure.to_string(), |(_, reason)| reason);
        self.replaced(reason).await
    }

    /// Aborts the open transaction and opens the next; a producer that cannot abort (fenced,
    /// or fatal) is replaced, whose start aborts what the old one left open.
    async fn abort(self) -> Result<()> {
        let producer = self.current();
        if let Some((_, reason)) = producer.client().fatal_error() {
            return self.replace(&reason).await;
        }
        let aborted = abort_and_begin(producer).await;
        match aborted {
            Ok(()) => Ok(()),
            Err(reason) => {
                tracing::error!(transactional_id = %self.id, "cannot abort the transaction: {reason}; replacing the producer");
                self.replace(&reason).await
            }
        }
    }

    /// Replaces an unusable producer; the error a failed commit reports then.
    async fn replaced(self, reason: String) -> Error {
        match self.replace(&reason).await {
            Ok(()) => Error::broker_msg(
                format!("the transactional producer was replaced: {reason}"),
                ErrorClass::Abortable,
            ),
            Err(err) => err,
        }
    }

    /// Replaces a producer that is unusable (fenced by a newer one with its id, or fatal).
    async fn replace(&self, reason: &str) -> Result<()> {
        tracing::error!(
            transactional_id = %self.id,
            "the transactional producer is unusable ({reason}); creating a new producer (it fences the old one), the transaction's partitions are rewound. If it was fenced, another instance with this transactional id may have started: give each instance its own FASTSTREAM_INSTANCE_ID"
        );
        match fresh_producer(&self.id, &self.config, &self.context).await {
            Ok(fresh) => {
                *self
                    .cell
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
                Ok(())
            }
            Err(err) => Err(Error::broker_msg(
                format!("the transactional producer is unusable ({reason}) and a new one cannot start: {err}"),
                ErrorClass::Fatal,
            )),
        }
    }
}

impl MemberTransactions for KafkaMember {
    fn commit(&self, offsets: Vec<TransactionOffset>) -> BoxFuture<'static, Result<()>> {
        let member = self.producer.clone();
        let producer = member.current();
        let group = self.group.get().and_then(|source| source());
        Box::pin(async move {
            let Some(group) = group else {
                return Err(Error::broker_msg(
                    "cannot commit the transaction: the consumer has no group metadata",
                    ErrorClass::Abortable,
                ));
            };
            let list = offset_list(&offsets)
                .map_err(|err| crate::error::broker("cannot list the offsets", err))?;
            let committed = within(COMMIT_DEADLINE, move || {
                producer.send_offsets_to_transaction(&list, &group, CALL_TIMEOUT)?;
                producer.commit_transaction(CALL_TIMEOUT)?;
                producer.begin_transaction()
            })
            .await;
            match committed {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(member.recover(err).await),
                Err(reason) => Err(member.replaced(reason).await),
            }
        })
    }

    fn abort(&self) -> BoxFuture<'static, Result<()>> {
        Box::pin(self.producer.clone().abort())
    }

    fn id(&self) -> String {
        self.producer.id.clone()
    }
}

/// Aborts `producer`'s open transaction and opens the next (see [`within`]).
async fn abort_and_begin(producer: KafkaProducer) -> Result<(), String> {
    within(CALL_TIMEOUT + CALL_GRACE, move || {
        producer.abort_transaction(CALL_TIMEOUT)?;
        producer.begin_transaction()
    })
    .await?
    .map_err(|err| err.to_string())
}

/// The offsets (with their metadata: a partition with lanes names the records it finished
/// above its offset) as librdkafka's list.
fn offset_list(offsets: &[TransactionOffset]) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    for offset in offsets {
        let (topic, partition) = (&offset.partition.topic, offset.partition.partition);
        list.add_partition_offset(topic, partition, Offset::Offset(offset.next))?;
        if let (Some(metadata), Some(mut element)) =
            (&offset.metadata, list.find_partition(topic, partition))
        {
            element.set_metadata(metadata);
        }
    }
    Ok(list)
}

/// Creates a transactional producer, registers its id and opens its first transaction.
async fn fresh_producer(
    id: &str,
    config: &ClientConfig,
    context: &KafkaContext,
) -> Result<KafkaProducer> {
    let producer: KafkaProducer = config.create_with_context(context.clone()).map_err(|err| {
        crate::error::config(
            format!("cannot create the transactional producer `{id}`"),
            err,
        )
    })?;
    let init = producer.clone();
    blocking(
        "cannot initialize transactions",
        CALL_TIMEOUT + CALL_GRACE,
        move || {
            // Fences an earlier producer with the same id and aborts its open transaction.
            init.init_transactions(CALL_TIMEOUT)?;
            init.begin_transaction()
        },
    )
    .await?;
    Ok(producer)
}
