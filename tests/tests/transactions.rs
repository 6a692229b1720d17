//! Transactions outside handlers (`Broker::begin_transaction`, `publish_transaction`) and the
//! isolation levels that read them. Each body runs on the in-memory broker and on Kafka: the
//! TestBroker models what a `read_committed` reader sees (nothing of an aborted transaction,
//! nothing behind an open one) and the offsets transaction markers take.

use faststream::testing::{TestApp, TestBroker};
use faststream::{Broker, FastStream, IsolationLevel, Record, SubscriberConfig};
use faststream_integration_tests::{both_modes, unique};
use serde_json::{json, Value};

/// An app with two readers of `topic`: `committed` (read_committed, the default) and
/// `uncommitted` (read_uncommitted).
async fn readers(broker: &TestBroker, topic: &str) -> TestApp {
    broker.create_topic(topic, 1).await.unwrap();
    let app = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("committed", [topic]).group_id(unique("tx-g")),
            |_v: Value| async move {},
        )
        .subscriber(
            SubscriberConfig::new("uncommitted", [topic])
                .group_id(unique("tx-g"))
                .isolation_level(IsolationLevel::ReadUncommitted),
            |_v: Value| async move {},
        );
    TestBroker::start(app).await.unwrap()
}

fn payloads(calls: &[faststream::testing::Call]) -> Vec<Value> {
    calls.iter().map(|c| c.json()).collect()
}

async fn a_committed_transaction_is_seen_all_at_once(broker: TestBroker) {
    let (topic, other) = (unique("tx-a"), unique("tx-b"));
    broker.create_topic(&other, 1).await.unwrap();
    let test = readers(&broker, &topic).await;
    let mut tx = broker.begin_transaction().await.unwrap();
    tx.publish(json!({"n": "first"}), topic.as_str())
        .await
        .unwrap();
    tx.publish(json!({"n": "second"}), topic.as_str())
        .await
        .unwrap();
    tx.publish(json!({"n": "elsewhere"}), other.as_str())
        .await
        .unwrap();
    // A read_uncommitted reader sees the open transaction's records as they are written...
    test.calls("uncommitted").wait_for(2).await;
    let plain = broker
        .publish(json!({"n": "plain"}), topic.as_str())
        .await
        .unwrap();
    let seen = test.calls("uncommitted").wait_for(3).await;
    assert_eq!(
        payloads(&seen),
        [
            json!({"n": "first"}),
            json!({"n": "second"}),
            json!({"n": "plain"})
        ]
    );
    // ...a read_committed one nothing yet: not even the plain record behind them.
    test.calls("committed").assert_not_called();
    assert!(
        test.records(&topic).await.is_empty(),
        "the read_committed view is empty"
    );
    let landed = tx.commit().await.unwrap();
    let offsets: Vec<(String, i64)> = landed
        .iter()
        .map(|d| (d.topic.to_string(), d.offset))
        .collect();
    assert_eq!(
        offsets,
        [(topic.clone(), 0), (topic.clone(), 1), (other.clone(), 0)]
    );
    assert_eq!(plain.offset, 2);
    let seen = test.calls("committed").assert_called(3).await;
    assert_eq!(
        payloads(&seen),
        [
            json!({"n": "first"}),
            json!({"n": "second"}),
            json!({"n": "plain"})
        ]
    );
    test.published(other.as_str())
        .assert_one(json!({"n": "elsewhere"}))
        .await;
    // The commit's marker took offset 3, as Kafka's control record does.
    let after = broker
        .publish(json!({"n": "after"}), topic.as_str())
        .await
        .unwrap();
    assert_eq!(after.offset, 4);
    test.calls("committed").assert_called(4).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_committed_transaction_is_seen_all_at_once_in_memory,
    a_committed_transaction_is_seen_all_at_once_on_kafka,
    a_committed_transaction_is_seen_all_at_once
);

async fn an_aborted_transaction_is_never_seen(broker: TestBroker) {
    let topic = unique("tx-abort");
    let test = readers(&broker, &topic).await;
    let mut tx = broker.begin_transaction().await.unwrap();
    tx.publish(json!({"n": "doomed-1"}), topic.as_str())
        .await
        .unwrap();
    tx.publish(json!({"n": "doomed-2"}), topic.as_str())
        .await
        .unwrap();
    // Written to the log before the abort (librdkafka drops what it has not sent yet).
    test.calls("uncommitted").wait_for(2).await;
    tx.abort().await.unwrap();
    broker
        .publish(json!({"n": "after"}), topic.as_str())
        .await
        .unwrap();
    // The aborted records come first in the log: a reader that saw them would see them first.
    let seen = test.calls("committed").assert_called(1).await;
    assert_eq!(payloads(&seen), [json!({"n": "after"})]);
    let seen = test.calls("uncommitted").assert_called(3).await;
    assert_eq!(
        payloads(&seen),
        [
            json!({"n": "doomed-1"}),
            json!({"n": "doomed-2"}),
            json!({"n": "after"})
        ]
    );
    test.published(topic.as_str())
        .assert_one(json!({"n": "after"}))
        .await;
    test.shutdown().await.unwrap();
}
both_modes!(
    an_aborted_transaction_is_never_seen_in_memory,
    an_aborted_transaction_is_never_seen_on_kafka,
    an_aborted_transaction_is_never_seen
);

async fn a_dropped_transaction_is_aborted(broker: TestBroker) {
    let topic = unique("tx-drop");
    let test = readers(&broker, &topic).await;
    {
        let mut tx = broker.begin_transaction().await.unwrap();
        tx.publish(json!({"n": "dropped"}), topic.as_str())
            .await
            .unwrap();
        test.calls("uncommitted").wait_for(1).await;
    }
    // The next transaction waits for the dropped one's abort, then goes through.
    let mut tx = broker.begin_transaction().await.unwrap();
    tx.publish(json!({"n": "kept"}), topic.as_str())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let seen = test.calls("committed").assert_called(1).await;
    assert_eq!(payloads(&seen), [json!({"n": "kept"})]);
    test.calls("uncommitted").assert_called(2).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_dropped_transaction_is_aborted_in_memory,
    a_dropped_transaction_is_aborted_on_kafka,
    a_dropped_transaction_is_aborted
);

async fn publish_transaction_is_all_or_nothing(broker: TestBroker) {
    let topic = unique("tx-all");
    let test = readers(&broker, &topic).await;
    let records = [
        Record::encode(topic.as_str(), &json!({"n": "fine"})).unwrap(),
        // The topic has one partition: this one is refused.
        Record::encode(topic.as_str(), &json!({"n": "refused"}))
            .unwrap()
            .partition(5),
    ];
    let err = broker.publish_transaction(records).await.unwrap_err();
    assert!(err.to_string().contains(&topic), "{err}");
    let landed = broker
        .publish_transaction([
            Record::encode(topic.as_str(), &json!({"n": "one"})).unwrap(),
            Record::encode(topic.as_str(), &json!({"n": "two"})).unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(landed.len(), 2);
    let seen = test.calls("committed").assert_called(2).await;
    assert_eq!(payloads(&seen), [json!({"n": "one"}), json!({"n": "two"})]);
    test.shutdown().await.unwrap();
}
both_modes!(
    publish_transaction_is_all_or_nothing_in_memory,
    publish_transaction_is_all_or_nothing_on_kafka,
    publish_transaction_is_all_or_nothing
);

/// Fencing is Kafka's: a second producer with the same `transactional.id` fences the first,
/// whose next transaction fails; the one after it gets a new producer (which fences the other
/// in turn), without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_transactional_producer_is_replaced_on_kafka() {
    use faststream::kafka::KafkaBroker;
    use faststream_integration_tests::{bootstrap, collect, create_topic};
    let topic = unique("tx-zombie");
    create_topic(&topic, 1).await;
    let id = unique("tx-id");
    let first = KafkaBroker::new(bootstrap()).transactional_id(&id);
    let second = KafkaBroker::new(bootstrap()).transactional_id(&id);
    let record = |n: &str| Record::encode(topic.as_str(), &json!({ "n": n })).unwrap();
    first.publish_transaction([record("a1")]).await.unwrap();
    second.publish_transaction([record("b1")]).await.unwrap();
    let err = first
        .publish_transaction([record("a2")])
        .await
        .expect_err("the first producer was fenced");
    assert_eq!(err.class(), faststream::ErrorClass::Fatal, "{err}");
    assert!(err.to_string().contains("fenced"), "{err}");
    first.publish_transaction([record("a3")]).await.unwrap();
    first
        .publish(json!({"n": "end"}), topic.as_str())
        .await
        .unwrap();
    let read: Vec<String> = collect(&topic, 4, std::time::Duration::from_secs(20))
        .into_iter()
        .map(|o| o.payload)
        .collect();
    assert_eq!(
        read,
        [
            r#"{"n":"a1"}"#,
            r#"{"n":"b1"}"#,
            r#"{"n":"a3"}"#,
            r#"{"n":"end"}"#
        ],
        "a2 never visible"
    );
}
