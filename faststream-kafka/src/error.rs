//! rdkafka errors as framework errors: classified, and kept as the error's `source()`.

use faststream_core::error::{Error, ErrorClass};
use rdkafka::error::{KafkaError, RDKafkaError, RDKafkaErrorCode};

/// The [class](ErrorClass) of an rdkafka error: how the framework (and a transaction) handles it.
///
/// A transactional error ([`KafkaError::Transaction`]) carries librdkafka's own verdict:
/// [`is_fatal`](RDKafkaError::is_fatal) is [`Fatal`](ErrorClass::Fatal),
/// [`txn_requires_abort`](RDKafkaError::txn_requires_abort) is
/// [`Abortable`](ErrorClass::Abortable), [`is_retriable`](RDKafkaError::is_retriable) is
/// [`Retriable`](ErrorClass::Retriable); any other is sorted by its code as below, but never
/// `Retriable`. Other errors are sorted by their [`RDKafkaErrorCode`]:
/// fatal states, fencing, authentication and authorization failures and an invalid client
/// configuration are `Fatal`; requests the broker refuses for good (a record too large, an
/// invalid topic, a policy violation...) are `Abortable`; the rest (brokers down, timeouts,
/// leader changes...) are `Retriable`, as librdkafka itself retries them.
///
/// ```
/// use faststream_core::ErrorClass;
/// use faststream_kafka::classify;
/// use faststream_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
///
/// let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
/// assert_eq!(classify(&timed_out), ErrorClass::Retriable);
/// let fenced = KafkaError::Global(RDKafkaErrorCode::ProducerFenced);
/// assert_eq!(classify(&fenced), ErrorClass::Fatal);
/// ```
pub fn classify(error: &KafkaError) -> ErrorClass {
    match error {
        KafkaError::Transaction(err) => transaction_class(err),
        // `rdkafka_error_code` leaves out an admin operation's code.
        KafkaError::AdminOp(code) => code_class(*code),
        KafkaError::MessageConsumptionFatal(_)
        | KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::Nul(_)
        | KafkaError::Canceled => ErrorClass::Fatal,
        KafkaError::AdminOpCreation(_) | KafkaError::Subscription(_) => ErrorClass::Abortable,
        _ => error
            .rdkafka_error_code()
            .map_or(ErrorClass::Retriable, code_class),
    }
}

/// librdkafka's verdict on a transactional error.
fn transaction_class(error: &RDKafkaError) -> ErrorClass {
    if error.is_fatal() {
        ErrorClass::Fatal
    } else if error.txn_requires_abort() {
        ErrorClass::Abortable
    } else if error.is_retriable() {
        ErrorClass::Retriable
    } else {
        // Not retriable: its code tells a wrong configuration from a refused call.
        match code_class(error.code()) {
            ErrorClass::Retriable => ErrorClass::Abortable,
            class => class,
        }
    }
}

/// The class of an error code outside a transaction.
fn code_class(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode as C;
    if denied(code) {
        return ErrorClass::Fatal;
    }
    match code {
        C::Fatal
        | C::Fenced
        | C::ProducerFenced
        | C::InvalidProducerEpoch
        | C::TransactionCoordinatorFenced
        | C::FencedInstanceId
        | C::InvalidTransactionTimeout
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::SecurityDisabled
        | C::UnsupportedFeature
        | C::NotImplemented
        | C::NotConfigured => ErrorClass::Fatal,
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidMessage
        | C::BadMessage
        | C::InvalidTopic
        | C::TopicAlreadyExists
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::InvalidConfig
        | C::InvalidRequest
        | C::InvalidRequiredAcks
        | C::InvalidTimestamp
        | C::InvalidArgument
        | C::PolicyViolation
        | C::TopicDeletionDisabled
        | C::UnsupportedVersion
        | C::UnsupportedForMessageFormat
        | C::UnsupportedCompressionType
        | C::KeySerialization
        | C::ValueSerialization
        | C::KeyDeserialization
        | C::ValueDeserialization
        | C::InvalidTransactionalState
        | C::InvalidProducerIdMapping
        | C::State => ErrorClass::Abortable,
        _ => ErrorClass::Retriable,
    }
}

/// Whether `code` says the broker refused the client's credentials or permissions.
pub(crate) fn denied(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
    )
}

/// A broker error: `context` says what was being done, `error` (its source) why it failed.
pub(crate) fn broker(context: impl Into<String>, error: KafkaError) -> Error {
    Error::broker(context, classify(&error), error)
}

/// A configuration error: a client could not be created with the settings given.
pub(crate) fn config(context: impl Into<String>, error: KafkaError) -> Error {
    Error::config(context, error)
}

/// A blocking task that runs a client call failed (it panicked, or the runtime is shutting
/// down): the client call's outcome is unknown.
pub(crate) fn task_failed(context: impl Into<String>, error: tokio::task::JoinError) -> Error {
    Error::broker(context, ErrorClass::Fatal, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use std::error::Error as _;
    use std::time::Duration;

    #[test]
    fn codes_are_classified() {
        let cases = [
            (
                KafkaError::Global(RDKafkaErrorCode::Fatal),
                ErrorClass::Fatal,
            ),
            (
                KafkaError::Global(RDKafkaErrorCode::SaslAuthenticationFailed),
                ErrorClass::Fatal,
            ),
            (
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidProducerEpoch),
                ErrorClass::Fatal,
            ),
            (KafkaError::ClientCreation("bad".into()), ErrorClass::Fatal),
            (
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                ErrorClass::Abortable,
            ),
            (
                KafkaError::AdminOp(RDKafkaErrorCode::TopicAlreadyExists),
                ErrorClass::Abortable,
            ),
            (
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                ErrorClass::Retriable,
            ),
            (
                KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
                ErrorClass::Retriable,
            ),
            (
                KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress),
                ErrorClass::Retriable,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&error), class, "{error:?}");
        }
    }

    /// A transactional call on a producer without `transactional.id`: librdkafka answers an
    /// `RDKafkaError` that is neither fatal, retriable nor abortable, and its code says the
    /// configuration is wrong.
    #[test]
    fn transactional_errors_use_librdkafka_verdict() {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .expect("a producer needs no broker to be created");
        let Err(error) = producer.begin_transaction() else {
            panic!("a transaction needs `transactional.id`");
        };
        let KafkaError::Transaction(native) = &error else {
            panic!("not a transactional error: {error:?}");
        };
        assert!(!native.is_fatal() && !native.is_retriable() && !native.txn_requires_abort());
        assert_eq!(native.code(), RDKafkaErrorCode::NotConfigured);
        assert_eq!(classify(&error), ErrorClass::Fatal);
    }

    /// librdkafka's mock cluster refuses a produce request inside a transaction: committing
    /// it fails with an error that requires an abort.
    #[test]
    fn a_refused_transactional_produce_is_abortable() {
        let cluster = MockCluster::new(1).expect("a mock cluster");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("transactional.id", "faststream-error-test")
            .create()
            .expect("a transactional producer");
        let timeout = Duration::from_secs(20);
        producer
            .init_transactions(timeout)
            .expect("transactions start");
        producer.begin_transaction().expect("a transaction begins");
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
        );
        producer
            .send(BaseRecord::<(), str>::to("orders").payload("one"))
            .map_err(|(err, _)| err)
            .expect("the record is queued");
        let Err(error) = producer.commit_transaction(timeout) else {
            panic!("the refused record fails the commit");
        };
        assert!(
            matches!(&error, KafkaError::Transaction(native) if native.txn_requires_abort()),
            "{error:?}"
        );
        assert_eq!(classify(&error), ErrorClass::Abortable);
        producer
            .abort_transaction(timeout)
            .expect("the transaction aborts");
    }

    #[test]
    fn the_rdkafka_error_is_the_source() {
        let error = broker(
            "cannot create topic `orders`",
            KafkaError::AdminOp(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert_eq!(error.class(), ErrorClass::Fatal);
        let text = error.to_string();
        assert!(
            text.starts_with("broker error: cannot create topic `orders`: ")
                && text.contains("Topic authorization failed"),
            "{text}"
        );
        let source = error.source().expect("the rdkafka error is kept");
        assert_eq!(
            source.downcast_ref::<KafkaError>(),
            Some(&KafkaError::AdminOp(
                RDKafkaErrorCode::TopicAuthorizationFailed
            ))
        );
        let config = config(
            "cannot create the producer",
            KafkaError::ClientCreation("no".into()),
        );
        assert_eq!(config.class(), ErrorClass::Fatal);
        assert!(config
            .source()
            .is_some_and(|source| source.is::<KafkaError>()));
    }
}
