//! The in-memory `TestBroker`: the same apps, the same runtime, no Kafka; and the tests that
//! run in both modes (in memory, and on the real broker).

use faststream::testing::TestBroker;
use faststream::{publisher, subscriber, Broker, FastStream};
use serde_json::json;

#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

/// The seed app, on any broker: `main` would run `app(KafkaBroker::new(..))`.
fn app<B: Broker>(broker: B) -> FastStream<B> {
    FastStream::new(broker).include(handle_msg)
}

#[tokio::test]
async fn seed_example_in_memory() {
    let test = TestBroker::start(app(TestBroker::new())).await.unwrap();
    test.publish(json!({"user": "John", "user_id": 1}), "in-topic")
        .await
        .unwrap();
    test.calls("handle_msg")
        .assert_called_once_with(json!({"user": "John", "user_id": 1}))
        .await;
    let out = test
        .published("out-topic")
        .assert_one("User: 1 - John registered")
        .await;
    assert_eq!(out.headers.get_str("content-type"), Some("text/plain"));
    test.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Tests that run in both modes: each body takes the broker; `_in_memory` runs it on a fresh
// in-memory broker, `_on_kafka` on the local Kafka (its own topics and groups).

use faststream::testing::{partition_for_key, TestApp};
use faststream::{AckPolicy, Key, Record, Response, State, SubscriberConfig};
use faststream_integration_tests::{bootstrap, both_modes, fast_backoff, on_kafka, unique};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(serde::Deserialize)]
struct User {
    user: String,
    user_id: i64,
}

async fn seed_on_own_topics(broker: TestBroker) {
    let (input, output) = (unique("tb-seed-in"), unique("tb-seed-out"));
    broker.create_topic(&input, 1).await.unwrap();
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("register", [input.as_str()])
            .group_id(unique("tb-g"))
            .publish_to(output.as_str()),
        |user: User| async move { format!("User: {} - {} registered", user.user_id, user.user) },
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(json!({"user": "John", "user_id": 1}), input.as_str())
        .await
        .unwrap();
    test.calls("register")
        .assert_called_once_with(json!({"user": "John", "user_id": 1}))
        .await;
    let out = test
        .published(output.as_str())
        .assert_one("User: 1 - John registered")
        .await;
    assert_eq!(out.headers.get_str("content-type"), Some("text/plain"));
    let id = out
        .correlation_id()
        .expect("a correlation id is always written");
    assert_eq!(
        uuid::Uuid::parse_str(id).map(|u| u.get_version_num()),
        Ok(4)
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    seed_example_in_memory_on_own_topics,
    seed_example_on_kafka,
    seed_on_own_topics
);

async fn order_per_partition(broker: TestBroker) {
    const PARTITIONS: i32 = 3;
    const PER_KEY: i64 = 20;
    let input = unique("tb-order");
    broker.create_topic(&input, PARTITIONS).await.unwrap();
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("ordered", [input.as_str()]).group_id(unique("tb-g")),
        |_seq: i64| async move {},
    );
    let test = TestBroker::start(app).await.unwrap();
    let keys = ["alpha", "beta", "gamma", "delta"];
    for seq in 0..PER_KEY {
        for key in keys {
            test.publish_record(Record::encode(input.as_str(), &seq).unwrap().key(key))
                .await
                .unwrap();
        }
    }
    let calls = test
        .calls("ordered")
        .assert_called(keys.len() * PER_KEY as usize)
        .await;
    for key in keys {
        let seen: Vec<(i32, i64)> = calls
            .iter()
            .filter(|c| c.message.key.as_deref() == Some(key.as_bytes()))
            .map(|c| (c.message.partition, c.json().as_i64().unwrap()))
            .collect();
        let expected_partition = partition_for_key(key.as_bytes(), PARTITIONS);
        assert!(
            seen.iter().all(|(p, _)| *p == expected_partition),
            "{key}: {seen:?}"
        );
        let order: Vec<i64> = seen.iter().map(|(_, s)| *s).collect();
        assert_eq!(order, (0..PER_KEY).collect::<Vec<_>>(), "order of {key}");
    }
    test.shutdown().await.unwrap();
}
both_modes!(
    order_is_kept_per_partition_in_memory,
    order_is_kept_per_partition_on_kafka,
    order_per_partition
);

async fn two_groups(broker: TestBroker) {
    let input = unique("tb-groups");
    broker.create_topic(&input, 2).await.unwrap();
    let app = FastStream::new(broker)
        .subscriber(
            SubscriberConfig::new("billing", [input.as_str()]).group_id(unique("tb-billing")),
            |_n: i64| async move {},
        )
        .subscriber(
            SubscriberConfig::new("audit", [input.as_str()]).group_id(unique("tb-audit")),
            |_n: i64| async move {},
        );
    let test = TestBroker::start(app).await.unwrap();
    for n in 0..6 {
        test.publish(n, input.as_str()).await.unwrap();
    }
    for name in ["billing", "audit"] {
        let mut seen: Vec<i64> = test
            .calls(name)
            .assert_called(6)
            .await
            .iter()
            .map(|c| c.json().as_i64().unwrap())
            .collect();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4, 5], "{name} got every record once");
    }
    test.shutdown().await.unwrap();
}
both_modes!(
    two_groups_each_get_every_record_in_memory,
    two_groups_each_get_every_record_on_kafka,
    two_groups
);

async fn shared_group(broker: TestBroker) {
    const PARTITIONS: i32 = 4;
    let input = unique("tb-shared");
    let group = unique("tb-shared-g");
    broker.create_topic(&input, PARTITIONS).await.unwrap();
    let app = FastStream::new(broker)
        .subscriber(
            SubscriberConfig::new("first", [input.as_str()]).group_id(group.as_str()),
            |_n: i64| async move {},
        )
        .subscriber(
            SubscriberConfig::new("second", [input.as_str()]).group_id(group.as_str()),
            |_n: i64| async move {},
        );
    let test = TestBroker::start(app).await.unwrap();
    let mut sent: i32 = 0;
    for _ in 0..40 {
        let record = Record::encode(input.as_str(), &sent)
            .unwrap()
            .partition(sent % PARTITIONS);
        test.publish_record(record).await.unwrap();
        sent += 1;
    }
    let (first, second) = (test.calls("first"), test.calls("second"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // On Kafka the second member may join only after the first took every partition and
    // handled all 40: keep publishing (a record per partition at a time) until the group's
    // rebalance has given both members some.
    while first.all().is_empty() || second.all().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both members handle records"
        );
        for _ in 0..PARTITIONS {
            let record = Record::encode(input.as_str(), &sent)
                .unwrap()
                .partition(sent % PARTITIONS);
            test.publish_record(record).await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unique_payloads = || {
        let mut payloads: Vec<i64> = first
            .all()
            .iter()
            .chain(&second.all())
            .map(|c| c.json().as_i64().unwrap())
            .collect();
        payloads.sort();
        payloads.dedup();
        payloads.len()
    };
    while unique_payloads() < sent as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sent} records in all"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let partitions = |calls: Vec<faststream::testing::Call>| {
        calls
            .iter()
            .map(|c| c.message.partition)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (a, b) = (first.all(), second.all());
    let mut payloads: Vec<i64> = a
        .iter()
        .chain(&b)
        .map(|c| c.json().as_i64().unwrap())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(
        payloads.len(),
        sent as usize,
        "every record reached the group"
    );
    let (pa, pb) = (partitions(a.clone()), partitions(b.clone()));
    assert!(
        !pa.is_empty() && !pb.is_empty(),
        "both members got partitions: {pa:?} {pb:?}"
    );
    if !test.is_real() {
        // On Kafka the second member may join after the first started on every partition,
        // so a partition can move mid-test (and, at least once, run a record twice).
        assert_eq!(a.len() + b.len(), sent as usize, "one delivery per group");
        assert!(
            pa.is_disjoint(&pb),
            "partitions are shared out: {pa:?} {pb:?}"
        );
        assert_eq!(pa.len() + pb.len(), PARTITIONS as usize);
    }
    test.shutdown().await.unwrap();
}
both_modes!(
    one_group_shares_partitions_in_memory,
    one_group_shares_partitions_on_kafka,
    shared_group
);

async fn nack_on_error(broker: TestBroker) {
    let (input, output) = (unique("tb-nack"), unique("tb-nack-out"));
    let group = unique("tb-nack-g");
    broker.create_topic(&input, 1).await.unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&attempts))
        .subscriber(
            SubscriberConfig::new("flaky", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::NackOnError)
                .backoff(fast_backoff())
                .publish_to(output.as_str()),
            |attempts: State<Arc<AtomicUsize>>, n: i64| async move {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(std::io::Error::other("not yet"))
                } else {
                    Ok(n + 1)
                }
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(41, input.as_str()).await.unwrap();
    let calls = test.calls("flaky").assert_called(3).await;
    assert_eq!(
        calls
            .iter()
            .map(|c| c.outcome.clone().unwrap().is_ok())
            .collect::<Vec<_>>(),
        [false, false, true],
        "the same record ran again until it succeeded"
    );
    assert!(calls.iter().all(|c| c.message.offset == 0));
    test.published(output.as_str()).assert_one(42).await;
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &input, 0).await, Some(1));
}
both_modes!(
    nack_on_error_redelivers_in_memory,
    nack_on_error_redelivers_on_kafka,
    nack_on_error
);

async fn ack_after(broker: TestBroker) {
    let (input, output) = (unique("tb-ackafter"), unique("tb-ackafter-out"));
    let group = unique("tb-ackafter-g");
    broker.create_topic(&input, 1).await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("strict", [input.as_str()])
            .group_id(group.as_str())
            .publish_to(output.as_str()),
        |n: i64| async move { n * 2 },
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish("not a number", input.as_str()).await.unwrap();
    test.publish(21, input.as_str()).await.unwrap();
    let calls = test.calls("strict").assert_called(2).await;
    let first = calls[0].outcome.clone().unwrap().unwrap_err();
    assert!(first.contains("cannot decode payload"), "{first}");
    assert_eq!(calls[1].outcome, Some(Ok(())));
    test.published(output.as_str()).assert_one(42).await;
    test.shutdown().await.unwrap();
    assert_eq!(
        broker.committed(&group, &input, 0).await,
        Some(2),
        "the failed record was logged and passed"
    );
}
both_modes!(
    ack_after_moves_on_in_memory,
    ack_after_moves_on_on_kafka,
    ack_after
);

async fn reply_to(broker: TestBroker) {
    let (input, replies) = (unique("tb-rpc"), unique("tb-replies"));
    broker.create_topic(&input, 1).await.unwrap();
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("echo", [input.as_str()]).group_id(unique("tb-g")),
        |text: String| async move { text.to_uppercase() },
    );
    let test = TestBroker::start(app).await.unwrap();
    let request = Record::encode(input.as_str(), "ping")
        .unwrap()
        .reply_to(replies.clone())
        .correlation_id("cid-7");
    test.publish_record(request).await.unwrap();
    let reply = test.published(replies.as_str()).assert_one("PING").await;
    assert_eq!(reply.correlation_id(), Some("cid-7"));
    test.shutdown().await.unwrap();
}
both_modes!(
    reply_to_is_answered_in_memory,
    reply_to_is_answered_on_kafka,
    reply_to
);

async fn multiple_topics(broker: TestBroker) {
    let (first, second) = (unique("tb-multi-a"), unique("tb-multi-b"));
    broker.create_topic(&first, 1).await.unwrap();
    broker.create_topic(&second, 1).await.unwrap();
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("both", [first.as_str(), second.as_str()]).group_id(unique("tb-g")),
        |_n: i64| async move {},
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(json!(1), first.as_str()).await.unwrap();
    test.publish(json!(2), second.as_str()).await.unwrap();
    let calls = test.calls("both");
    calls.assert_called(2).await;
    let mut topics: Vec<String> = calls
        .all()
        .iter()
        .map(|c| c.message.topic.to_string())
        .collect();
    topics.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(topics, expected, "one subscriber consumes both topics");
    test.shutdown().await.unwrap();
}
both_modes!(
    one_subscriber_consumes_several_topics_in_memory,
    one_subscriber_consumes_several_topics_on_kafka,
    multiple_topics
);

async fn dead_letters(broker: TestBroker) {
    let input = unique("tb-dlt");
    let dead = format!("{input}-dlt");
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&dead, 1).await.unwrap();
    let group = unique("tb-g");
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("picky", [input.as_str()])
            .group_id(group.as_str())
            .error_policy(
                faststream::ErrorPolicy::retry(2)
                    .backoff(fast_backoff())
                    .then_dead_letter(),
            ),
        |n: i64| async move {
            if n == 13 {
                Err(std::io::Error::other("unlucky"))
            } else {
                Ok(())
            }
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    for n in [1, 13, 2] {
        test.publish(json!(n), input.as_str()).await.unwrap();
    }
    let letter = test.published(dead.as_str()).assert_one(json!(13)).await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    assert_eq!(letter.headers.get_str("dlt-original-offset"), Some("1"));
    assert_eq!(
        letter.headers.get_str("dlt-exception-message"),
        Some("unlucky")
    );
    test.calls("picky").assert_called(4).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    dead_letters_after_bounded_retries_in_memory,
    dead_letters_after_bounded_retries_on_kafka,
    dead_letters
);

/// `request` and `request_as` are the `Broker` trait's, as on `KafkaBroker`: in memory too, the
/// app's subscriber answers through `reply_to`, and a request nobody answers times out.
async fn request_reply(broker: TestBroker) {
    let (input, silent) = (unique("tb-rr"), unique("tb-rr-silent"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&silent, 1).await.unwrap();
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("square", [input.as_str()]).group_id(unique("tb-g")),
        |n: i64| async move { n * n },
    );
    let test = TestBroker::start(app).await.unwrap();
    let wait = Duration::from_secs(30);
    let reply = test
        .request(Record::encode(input.as_str(), &7).unwrap(), wait)
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"49");
    let squared: i64 = test
        .request_as(Record::encode(input.as_str(), &12).unwrap(), wait)
        .await
        .unwrap();
    assert_eq!(squared, 144);
    let err = test
        .request(
            Record::new(silent.as_str(), "ping"),
            Duration::from_millis(300),
        )
        .await
        .expect_err("nobody answers");
    assert!(
        matches!(&err, faststream::Error::RequestTimeout { topic, .. } if *topic == silent),
        "{err}"
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    request_reply_in_memory,
    request_reply_on_kafka,
    request_reply
);

async fn headers_and_keys(broker: TestBroker) {
    let (input, output) = (unique("tb-hk"), unique("tb-hk-out"));
    broker.create_topic(&input, 1).await.unwrap();
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("tag", [input.as_str()])
            .group_id(unique("tb-g"))
            .publish_to(output.as_str()),
        |key: Key<String>, headers: faststream::Headers, n: i64| async move {
            let trace = headers.get_str("x-trace").unwrap_or_default().to_owned();
            Response::new(json!({"n": n, "key": key.0}))
                .key(format!("out-{}", key.0))
                .header("x-trace", trace)
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    let record = Record::encode(input.as_str(), &5)
        .unwrap()
        .key("user-9")
        .header("x-trace", "t-1");
    test.publish_record(record).await.unwrap();
    let call = test.calls("tag").assert_called_once_with(5).await;
    assert_eq!(call.message.key.as_deref(), Some(&b"user-9"[..]));
    let names: Vec<&str> = call.message.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["content-type", "correlation_id", "x-trace"],
        "wire order"
    );
    let out = test
        .published(output.as_str())
        .assert_one(json!({"n": 5, "key": "user-9"}))
        .await;
    assert_eq!(out.key.as_deref(), Some(&b"out-user-9"[..]));
    assert_eq!(out.headers.get_str("x-trace"), Some("t-1"));
    assert_eq!(
        out.headers.get_str("content-type"),
        Some("application/json")
    );
    assert_eq!(
        out.correlation_id(),
        call.message.correlation_id(),
        "the reply carries the incoming correlation id"
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    headers_and_keys_round_trip_in_memory,
    headers_and_keys_round_trip_on_kafka,
    headers_and_keys
);

// ---------------------------------------------------------------------------------------
// In memory only.

/// A subscription that restarts in the same group resumes after the committed offset.
#[tokio::test]
async fn restart_resumes_after_committed_offsets() {
    let broker = TestBroker::new();
    let app = |broker: TestBroker| {
        FastStream::new(broker).subscriber(
            SubscriberConfig::new("counter", ["numbers"]).group_id("counters"),
            |_n: i64| async move {},
        )
    };
    let test = TestBroker::start(app(broker.clone())).await.unwrap();
    test.publish(1, "numbers").await.unwrap();
    test.publish(2, "numbers").await.unwrap();
    test.calls("counter").assert_called(2).await;
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed("counters", "numbers", 0).await, Some(2));

    broker.publish(3, "numbers").await.unwrap();
    let test = TestBroker::start(app(broker.clone())).await.unwrap();
    let calls = test.calls("counter").assert_called(3).await;
    assert_eq!(calls[2].message.offset, 2, "only the new record ran");
    assert_eq!(calls[2].json(), json!(3));
    test.shutdown().await.unwrap();
}

#[tokio::test]
async fn latest_skips_what_was_there_before() {
    let broker = TestBroker::new();
    broker.publish("old", "events").await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("fresh", ["events"])
            .auto_offset_reset(faststream::OffsetReset::Latest),
        |_text: String| async move {},
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish("new", "events").await.unwrap();
    test.calls("fresh").assert_called_once_with("new").await;
    test.published("events").assert_count(2).await;
    test.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_use_kafkas_partitioner_and_keyless_records_round_robin() {
    let broker = TestBroker::new();
    broker.create_topic("spread", 5).await.unwrap();
    for key in ["21", "foobar", "abc", "user-1", "user-2"] {
        let at = broker
            .publish_record(Record::new("spread", "x").key(key))
            .await
            .unwrap();
        assert_eq!(at.partition, partition_for_key(key.as_bytes(), 5), "{key}");
    }
    let mut keyless = Vec::new();
    for _ in 0..5 {
        keyless.push(broker.publish("x", "spread").await.unwrap().partition);
    }
    keyless.sort();
    assert_eq!(keyless, [0, 1, 2, 3, 4]);
    let wrong = broker
        .publish_record(Record::new("spread", "x").partition(9))
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("unknown partition 9"), "{wrong}");
}

/// Lifecycle hooks run on the test broker as on Kafka.
#[tokio::test]
async fn hooks_run() {
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, b, c) = (ran.clone(), ran.clone(), ran.clone());
    let app = app(TestBroker::new())
        .on_startup(move || async move { a.lock().unwrap().push("on_startup") })
        .after_startup(move || async move { b.lock().unwrap().push("after_startup") })
        .after_shutdown(move || async move { c.lock().unwrap().push("after_shutdown") });
    let test: TestApp = TestBroker::start(app).await.unwrap();
    test.shutdown().await.unwrap();
    assert_eq!(
        *ran.lock().unwrap(),
        ["on_startup", "after_startup", "after_shutdown"]
    );
}

// ---------------------------------------------------------------------------------------
// Parity with the real broker.

/// A key's partition in memory is the one Kafka's murmur2 partitioner picks on the real
/// broker (rdkafka with `partitioner=murmur2_random`, as Java clients and aiokafka).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_partitions_match_the_real_broker() {
    use faststream::kafka::rdkafka::config::ClientConfig;
    use faststream::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    const PARTITIONS: i32 = 7;
    let topic = unique("tb-parity");
    let real = on_kafka();
    real.create_topic(&topic, PARTITIONS).await.unwrap();
    let memory = TestBroker::new();
    memory.create_topic(&topic, PARTITIONS).await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let keys: Vec<String> = (0..40)
        .map(|i| format!("key-{i}"))
        .chain(["21".into(), "foobar".into()])
        .collect();
    for key in &keys {
        let partition = producer
            .send(
                FutureRecord::to(&topic).key(key.as_str()).payload("x"),
                Duration::from_secs(10),
            )
            .await
            .unwrap()
            .partition;
        let in_memory = memory
            .publish_record(Record::new(topic.as_str(), "x").key(key.clone()))
            .await
            .unwrap();
        assert_eq!(in_memory.partition, partition, "key {key}");
        let through_real = real
            .publish_record(Record::new(topic.as_str(), "x").key(key.clone()))
            .await
            .unwrap();
        assert_eq!(
            through_real.partition, partition,
            "the real test broker's producer, key {key}"
        );
    }
    let used: std::collections::BTreeSet<i32> = keys
        .iter()
        .map(|k| partition_for_key(k.as_bytes(), PARTITIONS))
        .collect();
    assert!(used.len() > 3, "the keys spread over partitions: {used:?}");
}

/// Calls are told apart per subscriber, whatever the registration order.
#[tokio::test]
async fn calls_are_recorded_per_subscriber() {
    let app = FastStream::new(TestBroker::new())
        .subscriber(SubscriberConfig::new("one", ["a"]), |_n: i64| async move {})
        .include(handle_msg)
        .subscriber(
            SubscriberConfig::new("three", ["c"]),
            |_n: i64| async move {},
        );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(1, "a").await.unwrap();
    for n in 0..3 {
        test.publish(n, "c").await.unwrap();
    }
    test.calls("one").assert_called_once_with(1).await;
    test.calls("three").assert_called(3).await;
    test.calls("handle_msg").assert_not_called();
    test.published("out-topic").assert_count(0).await;
    test.shutdown().await.unwrap();
}

/// A second app joining a group takes a share of the partitions; when it leaves, the first
/// takes them back, resuming after what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_rebalance_the_group() {
    let broker = TestBroker::new();
    broker.create_topic("jobs", 4).await.unwrap();
    let app = |name: &str| {
        FastStream::new(broker.clone()).subscriber(
            SubscriberConfig::new(name, ["jobs"]).group_id("workers"),
            |_n: i64| async move {},
        )
    };
    let first = TestBroker::start(app("first")).await.unwrap();
    let second = TestBroker::start(app("second")).await.unwrap();
    for n in 0..8 {
        let record = Record::encode("jobs", &n).unwrap().partition(n % 4);
        broker.publish_record(record).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.calls("first").all().len() + broker.calls("second").all().len() < 8 {
        assert!(tokio::time::Instant::now() < deadline, "8 calls in all");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        broker.calls("first").all().len(),
        4,
        "half the partitions each"
    );
    assert_eq!(broker.calls("second").all().len(), 4);
    second.shutdown().await.unwrap();
    for n in 8..12 {
        let record = Record::encode("jobs", &n).unwrap().partition(n % 4);
        broker.publish_record(record).await.unwrap();
    }
    let calls = broker.calls("first").assert_called(8).await;
    let late: Vec<i64> = calls[4..]
        .iter()
        .map(|c| c.json().as_i64().unwrap())
        .collect();
    let mut late_sorted = late.clone();
    late_sorted.sort();
    assert_eq!(
        late_sorted,
        [8, 9, 10, 11],
        "nothing the second member handled ran again"
    );
    first.shutdown().await.unwrap();
    for partition in 0..4 {
        assert_eq!(
            broker.committed("workers", "jobs", partition).await,
            Some(3)
        );
    }
}

/// The one-switch form: in memory by default, on Kafka with `FASTSTREAM_TEST_REAL=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_from_env() {
    seed_on_own_topics(TestBroker::from_env()).await;
}

/// What one app's rebalance callbacks saw: the partitions it owns now, and every event.
#[derive(Default)]
struct Ownership {
    owned: std::collections::BTreeSet<i32>,
    events: Vec<String>,
}

type Owned = Arc<std::sync::Mutex<Ownership>>;

/// A subscriber on `input` in `group` whose rebalance callbacks keep `owned` up to date.
fn rebalance_watcher(name: &str, input: &str, group: &str, owned: &Owned) -> SubscriberConfig {
    let (on_assign, on_revoke) = (Arc::clone(owned), Arc::clone(owned));
    SubscriberConfig::new(name, [input])
        .group_id(group)
        .on_assign(move |partitions| {
            let mut o = on_assign.lock().unwrap();
            o.owned.extend(partitions.iter().map(|tp| tp.partition));
            o.events.push(format!("assign {partitions:?}"));
        })
        .on_revoke(move |partitions| {
            let mut o = on_revoke.lock().unwrap();
            for tp in partitions {
                o.owned.remove(&tp.partition);
            }
            o.events.push(format!("revoke {partitions:?}"));
        })
}

async fn owned_until(owned: &Owned, what: &str, condition: impl Fn(&Ownership) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition(&owned.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            owned.lock().unwrap().events
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rebalance_hooks(broker: TestBroker) {
    let input = unique("tb-rebalance");
    let group = unique("tb-rebalance-g");
    broker.create_topic(&input, 2).await.unwrap();
    let (first, second): (Owned, Owned) = Default::default();
    let a = TestBroker::start(FastStream::new(broker.clone()).subscriber(
        rebalance_watcher("first", &input, &group, &first),
        |_n: i64| async move {},
    ))
    .await
    .unwrap();
    owned_until(&first, "the first app to own both partitions", |o| {
        o.owned.len() == 2
    })
    .await;
    for n in 0..10_i64 {
        let record = Record::encode(input.as_str(), &n)
            .unwrap()
            .partition((n % 2) as i32);
        a.publish_record(record).await.unwrap();
    }
    a.calls("first").wait_for(10).await;

    // A second member joins: the first hands over a partition, committing its work before
    // its revoke callback runs.
    let b = TestBroker::start(FastStream::new(broker.clone()).subscriber(
        rebalance_watcher("second", &input, &group, &second),
        |_n: i64| async move {},
    ))
    .await
    .unwrap();
    owned_until(&second, "the second app to own a partition", |o| {
        !o.owned.is_empty()
    })
    .await;
    owned_until(&first, "the first app to be left with one", |o| {
        o.owned.len() == 1
    })
    .await;
    {
        let (f, s) = (first.lock().unwrap(), second.lock().unwrap());
        assert!(
            f.owned.is_disjoint(&s.owned),
            "{:?} {:?}",
            f.events,
            s.events
        );
        assert_eq!(f.owned.len() + s.owned.len(), 2);
        assert!(
            f.events.iter().any(|e| e.starts_with("revoke")),
            "{:?}",
            f.events
        );
    }
    // The partition that moved was committed before the hand-over: the new owner starts
    // after the first app's five records.
    let moved: Vec<i32> = second.lock().unwrap().owned.iter().copied().collect();
    for partition in moved {
        assert_eq!(
            broker.committed(&group, &input, partition).await,
            Some(5),
            "partition {partition}'s five records were committed by the revoke"
        );
    }
    // Nothing committed is handled again by the new owner.
    b.calls("second").assert_not_called();

    // The second leaves: the first takes everything back; then it stops and revokes all.
    b.shutdown().await.unwrap();
    assert!(
        second.lock().unwrap().owned.is_empty(),
        "a stopping app revokes what it owns"
    );
    owned_until(&first, "the first app to own both again", |o| {
        o.owned.len() == 2
    })
    .await;
    a.shutdown().await.unwrap();
    let f = first.lock().unwrap();
    assert!(f.owned.is_empty(), "{:?}", f.events);
    assert!(
        f.events.first().is_some_and(|e| e.starts_with("assign")),
        "{:?}",
        f.events
    );
}
both_modes!(
    rebalance_hooks_follow_the_group_in_memory,
    rebalance_hooks_follow_the_group_on_kafka,
    rebalance_hooks
);

async fn explicit_partitions(broker: TestBroker) {
    use faststream::StartFrom;
    let input = unique("tb-assign");
    broker.create_topic(&input, 3).await.unwrap();
    let publish = |partition: i32, n: i64| {
        let broker = broker.clone();
        let input = input.clone();
        async move {
            let record = Record::encode(input.as_str(), &n)
                .unwrap()
                .partition(partition);
            broker.publish_record(record).await.unwrap();
        }
    };
    for partition in 0..3 {
        for i in 0..2 {
            publish(partition, i64::from(partition) * 10 + i).await;
        }
    }
    // Records 2 and 3 of partition 0 are written after this time (the pause only makes
    // their timestamps differ from the first two's).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for partition in 0..3 {
        for i in 2..4 {
            publish(partition, i64::from(partition) * 10 + i).await;
        }
    }
    let app = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("picky", [input.as_str()])
                .group_id(unique("tb-g"))
                .partitions([0, 2]),
            |_n: i64| async move {},
        )
        .subscriber(
            SubscriberConfig::new("from-offset", [input.as_str()])
                .group_id(unique("tb-g"))
                .partitions([1])
                .start_from(StartFrom::Offset(2)),
            |_n: i64| async move {},
        )
        .subscriber(
            SubscriberConfig::new("from-time", [input.as_str()])
                .group_id(unique("tb-g"))
                .partitions([0])
                .start_from(StartFrom::Timestamp(cut)),
            |_n: i64| async move {},
        );
    let test = TestBroker::start(app).await.unwrap();
    let payloads = |calls: Vec<faststream::testing::Call>| {
        let mut p: Vec<i64> = calls.iter().map(|c| c.json().as_i64().unwrap()).collect();
        p.sort();
        p
    };
    let from_offset = test.calls("from-offset");
    assert_eq!(payloads(from_offset.wait_for(2).await), [12, 13]);
    let from_time = test.calls("from-time");
    assert_eq!(payloads(from_time.wait_for(2).await), [2, 3]);
    let picky = test.calls("picky");
    assert_eq!(
        payloads(picky.wait_for(8).await),
        [0, 1, 2, 3, 20, 21, 22, 23]
    );
    // One more record on each partition reaches only the subscribers reading it.
    for partition in 0..3 {
        publish(partition, 100 + i64::from(partition)).await;
    }
    assert_eq!(payloads(from_offset.wait_for(3).await), [12, 13, 101]);
    assert_eq!(payloads(picky.wait_for(10).await).len(), 10);
    assert_eq!(payloads(from_time.wait_for(3).await), [2, 3, 100]);
    assert_eq!(
        payloads(picky.all()),
        [0, 1, 2, 3, 20, 21, 22, 23, 100, 102]
    );
    assert_eq!(from_offset.all().len(), 3);
    test.shutdown().await.unwrap();
}
both_modes!(
    explicit_partitions_and_start_positions_in_memory,
    explicit_partitions_and_start_positions_on_kafka,
    explicit_partitions
);

/// A pattern subscriber reads `{prefix}-eu` and `{prefix}-us` with their region as `Path`, and
/// not `{prefix}x-eu`; `template` makes the pattern from the prefix.
async fn pattern_reads_matching_topics(broker: TestBroker, template: fn(&str) -> String) {
    use faststream::pattern::Path;
    let prefix = unique("tb-pattern");
    let output = unique("tb-pattern-out");
    for region in ["eu", "us"] {
        broker
            .create_topic(&format!("{prefix}-{region}"), 1)
            .await
            .unwrap();
    }
    broker
        .create_topic(&format!("{prefix}x-eu"), 1)
        .await
        .unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("regional", Vec::<String>::new())
            .group_id(unique("tb-g"))
            .pattern(template(&prefix))
            .publish_to(output.as_str()),
        |Path(region): Path<String>, n: i64| async move { format!("{region}:{n}") },
    );
    let test = TestBroker::start(app).await.unwrap();
    for (topic, n) in [("-eu", 1), ("-us", 2), ("x-eu", 3), ("-eu", 4)] {
        test.publish(n, format!("{prefix}{topic}").as_str())
            .await
            .unwrap();
    }
    let out = test.published(output.as_str());
    let mut texts: Vec<String> = out
        .wait_for(3)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["eu:1", "eu:4", "us:2"]);
    // The topic the pattern does not match was never read.
    test.calls("regional").assert_called(3).await;
    test.shutdown().await.unwrap();
}
async fn topic_pattern(broker: TestBroker) {
    pattern_reads_matching_topics(broker, |prefix| format!("{prefix}-{{region}}")).await;
}
both_modes!(
    topic_pattern_with_path_parameters_in_memory,
    topic_pattern_with_path_parameters_on_kafka,
    topic_pattern
);

/// FastStream's `pattern="^orders-.*"`: a regular expression, its named groups as `Path`.
async fn regex_pattern(broker: TestBroker) {
    pattern_reads_matching_topics(broker, |prefix| format!("^{prefix}-(?P<region>[a-z]+)$")).await;
}
both_modes!(
    regex_pattern_with_named_groups_in_memory,
    regex_pattern_with_named_groups_on_kafka,
    regex_pattern
);

async fn dynamic_subscribers(broker: TestBroker) {
    let (steady, added) = (unique("tb-steady"), unique("tb-added"));
    let group = unique("tb-added-g");
    broker.create_topic(&steady, 1).await.unwrap();
    broker.create_topic(&added, 1).await.unwrap();
    let mut test = TestBroker::start(FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("steady", [steady.as_str()]).group_id(unique("tb-g")),
        |_n: i64| async move {},
    ))
    .await
    .unwrap();
    let config =
        |name: &str| SubscriberConfig::new(name, [added.as_str()]).group_id(group.as_str());
    test.subscribe(config("added"), |_n: i64| async move {})
        .await
        .unwrap();
    let duplicate = test
        .subscribe(config("added"), |_n: i64| async move {})
        .await;
    assert!(duplicate.is_err(), "names stay unique");
    test.publish(1, added.as_str()).await.unwrap();
    test.publish(10, steady.as_str()).await.unwrap();
    test.calls("added").assert_called_once_with(1).await;
    test.calls("steady").assert_called_once_with(10).await;

    // Removed: it commits what it handled and leaves; the other keeps running.
    test.unsubscribe("added").await.unwrap();
    assert!(test.unsubscribe("added").await.is_err());
    test.publish(2, added.as_str()).await.unwrap();
    test.publish(11, steady.as_str()).await.unwrap();
    test.calls("steady").wait_for(2).await;
    assert_eq!(
        test.calls("added").all().len(),
        1,
        "a removed subscriber handles nothing"
    );
    assert_eq!(broker.committed(&group, &added, 0).await, Some(1));
    // A new subscriber in the same group starts after what the removed one committed.
    test.subscribe(config("again"), |_n: i64| async move {})
        .await
        .unwrap();
    test.calls("again").assert_called_once_with(2).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    subscribers_added_and_removed_at_runtime_in_memory,
    subscribers_added_and_removed_at_runtime_on_kafka,
    dynamic_subscribers
);

async fn batch_publish(broker: TestBroker) {
    let topic = unique("tb-batch-pub");
    broker.create_topic(&topic, 2).await.unwrap();
    let records = (0..6_i64).map(|n| {
        Record::encode(topic.as_str(), &n)
            .unwrap()
            .partition((n % 2) as i32)
    });
    let delivered = broker.publish_batch(records).await.unwrap();
    let places: Vec<(i32, i64)> = delivered.iter().map(|d| (d.partition, d.offset)).collect();
    assert_eq!(places, [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]);
    let written: Vec<i64> = broker
        .records(&topic)
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    assert_eq!(written, [0, 2, 4, 1, 3, 5]);
}
both_modes!(
    publish_batch_writes_every_record_in_order_in_memory,
    publish_batch_writes_every_record_in_order_on_kafka,
    batch_publish
);

// ---------------------------------------------------------------------------------------
// Pulling: `get_one` and a stream of decoded messages, through a subscriber added at runtime.

use faststream::{Pull, Pulled};
use futures::StreamExt;

/// Long enough for a message to arrive on the real broker (a group join included).
const ARRIVES: Duration = Duration::from_secs(30);

/// Starts an app with no subscribers and pulls `T` from `topic` as `group`.
async fn pulling<T>(
    broker: &TestBroker,
    topic: &str,
    group: &str,
    policy: AckPolicy,
) -> (TestApp, Pull<T>)
where
    T: serde::de::DeserializeOwned + Send + 'static,
{
    let mut test = TestBroker::start(FastStream::new(broker.clone()))
        .await
        .unwrap();
    let config = SubscriberConfig::new("puller", [topic])
        .group_id(group)
        .ack_policy(policy)
        .backoff(fast_backoff());
    let pull = test.pull::<T>(config).await.unwrap();
    (test, pull)
}

/// Waits until `group` committed `expected` on `topic[partition]`.
async fn committed_reaches(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    partition: i32,
    expected: i64,
) {
    let deadline = tokio::time::Instant::now() + ARRIVES;
    loop {
        let now = broker.committed(group, topic, partition).await;
        if now == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}[{partition}]: committed {now:?}, expected {expected} within {ARRIVES:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pull_get_one(broker: TestBroker) {
    let (topic, group) = (unique("tb-pull-one"), unique("tb-pull-one-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    let (mut test, mut pull) = pulling::<User>(&broker, &topic, &group, AckPolicy::AckAfter).await;
    test.publish(json!({"user": "John", "user_id": 1}), topic.as_str())
        .await
        .unwrap();
    test.publish_record(
        Record::encode(topic.as_str(), &json!({"user": "Ann", "user_id": 2}))
            .unwrap()
            .key("k2")
            .header("source", "test"),
    )
    .await
    .unwrap();
    let john = pull.get_one(ARRIVES).await.expect("the first message");
    assert_eq!((john.user.as_str(), john.user_id), ("John", 1));
    let at = john.message();
    assert_eq!(
        (&*at.topic, at.partition, at.offset),
        (topic.as_str(), 0, 0)
    );
    john.ack();
    let ann = pull.get_one(ARRIVES).await.expect("the second message");
    assert_eq!(ann.value().user, "Ann");
    assert_eq!(ann.message().offset, 1);
    assert_eq!(ann.message().key.as_deref(), Some(&b"k2"[..]));
    assert_eq!(ann.message().headers.get_str("source"), Some("test"));
    let ann = ann.into_inner();
    assert_eq!(ann.user_id, 2);
    committed_reaches(&broker, &group, &topic, 0, 2).await;
    test.close_pull(pull).await.unwrap();
    assert!(test.unsubscribe("puller").await.is_err(), "closed");
    test.shutdown().await.unwrap();
}
both_modes!(
    pull_get_one_returns_the_value_and_its_offset_in_memory,
    pull_get_one_returns_the_value_and_its_offset_on_kafka,
    pull_get_one
);

async fn pull_times_out(broker: TestBroker) {
    let (topic, group) = (unique("tb-pull-empty"), unique("tb-pull-empty-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    let (test, mut pull) = pulling::<i64>(&broker, &topic, &group, AckPolicy::AckAfter).await;
    let wait = Duration::from_millis(300);
    let started = std::time::Instant::now();
    assert!(pull.get_one(wait).await.is_none(), "nothing was published");
    assert!(started.elapsed() >= wait, "it waited the timeout");
    // Still pulling after a timeout.
    test.publish(5, topic.as_str()).await.unwrap();
    assert_eq!(pull.get_one(ARRIVES).await.map(Pulled::into_inner), Some(5));
    test.shutdown().await.unwrap();
}
both_modes!(
    pull_get_one_times_out_on_an_empty_topic_in_memory,
    pull_get_one_times_out_on_an_empty_topic_on_kafka,
    pull_times_out
);

async fn pull_stream(broker: TestBroker) {
    let (topic, group) = (unique("tb-pull-stream"), unique("tb-pull-stream-g"));
    broker.create_topic(&topic, 2).await.unwrap();
    let (test, mut pull) = pulling::<i64>(&broker, &topic, &group, AckPolicy::AckAfter).await;
    let records = (0..10_i64).map(|n| {
        Record::encode(topic.as_str(), &n)
            .unwrap()
            .partition((n % 2) as i32)
    });
    test.publish_batch(records).await.unwrap();
    let pulled: Vec<(i32, i64, i64)> = tokio::time::timeout(
        ARRIVES,
        (&mut pull)
            .map(|n| (n.message().partition, n.message().offset, n.into_inner()))
            .take(10)
            .collect(),
    )
    .await
    .expect("ten messages");
    for partition in 0..2 {
        let mine: Vec<(i64, i64)> = pulled
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, offset, n)| (*offset, *n))
            .collect();
        let expected: Vec<(i64, i64)> = (0..5).map(|i| (i, 2 * i + i64::from(partition))).collect();
        assert_eq!(mine, expected, "partition {partition} in order");
    }
    committed_reaches(&broker, &group, &topic, 0, 5).await;
    committed_reaches(&broker, &group, &topic, 1, 5).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    pull_stream_yields_in_order_per_partition_in_memory,
    pull_stream_yields_in_order_per_partition_on_kafka,
    pull_stream
);

async fn pull_commits_after_ack(broker: TestBroker) {
    let (topic, group) = (unique("tb-pull-commit"), unique("tb-pull-commit-g"));
    broker.create_topic(&topic, 2).await.unwrap();
    let (test, mut pull) = pulling::<String>(&broker, &topic, &group, AckPolicy::AckAfter).await;
    for (text, partition) in [("held", 0), ("done", 1)] {
        test.publish_record(
            Record::encode(topic.as_str(), text)
                .unwrap()
                .partition(partition),
        )
        .await
        .unwrap();
    }
    let first = pull.get_one(ARRIVES).await.expect("one message");
    let second = pull.get_one(ARRIVES).await.expect("the other");
    let (held, done) = if first.message().partition == 0 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!((held.as_str(), done.as_str()), ("held", "done"));
    done.ack();
    // Partition 1's commit went through, so partition 0 would have been committed with it
    // had its message counted as done before the puller acked it.
    committed_reaches(&broker, &group, &topic, 1, 1).await;
    assert_eq!(
        broker.committed(&group, &topic, 0).await,
        None,
        "a message the puller still holds is not committed"
    );
    drop(held);
    committed_reaches(&broker, &group, &topic, 0, 1).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    pull_commits_only_after_the_puller_acked_in_memory,
    pull_commits_only_after_the_puller_acked_on_kafka,
    pull_commits_after_ack
);

async fn pull_nack(broker: TestBroker) {
    let (topic, group) = (unique("tb-pull-nack"), unique("tb-pull-nack-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    let (test, mut pull) = pulling::<i64>(&broker, &topic, &group, AckPolicy::NackOnError).await;
    test.publish(41, topic.as_str()).await.unwrap();
    let first = pull.get_one(ARRIVES).await.expect("the message");
    assert_eq!((*first, first.message().offset), (41, 0));
    first.nack();
    let again = pull.get_one(ARRIVES).await.expect("redelivered");
    assert_eq!((*again, again.message().offset), (41, 0));
    again.ack();
    committed_reaches(&broker, &group, &topic, 0, 1).await;
    let calls = test.calls("puller").assert_called(2).await;
    let nacked = calls[0].outcome.clone().unwrap().unwrap_err();
    assert!(nacked.contains("nacked"), "{nacked}");
    assert_eq!(calls[1].outcome, Some(Ok(())));
    test.shutdown().await.unwrap();
}
both_modes!(
    pull_nack_redelivers_under_nack_on_error_in_memory,
    pull_nack_redelivers_under_nack_on_error_on_kafka,
    pull_nack
);

async fn pull_malformed(broker: TestBroker) {
    let logs = faststream_integration_tests::logs();
    let (topic, group) = (unique("tb-pull-bad"), unique("tb-pull-bad-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    let (test, mut pull) = pulling::<i64>(&broker, &topic, &group, AckPolicy::AckAfter).await;
    test.publish("not a number", topic.as_str()).await.unwrap();
    test.publish(42, topic.as_str()).await.unwrap();
    let good = pull.get_one(ARRIVES).await.expect("the good message");
    assert_eq!((*good, good.message().offset), (42, 1));
    good.ack();
    committed_reaches(&broker, &group, &topic, 0, 2).await;
    let lines = logs.lines_with(&format!("{topic}[0]@0 failed: cannot decode payload"));
    assert_eq!(
        lines.len(),
        1,
        "one error line for the malformed message: {lines:?}"
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    pull_skips_a_malformed_payload_in_memory,
    pull_skips_a_malformed_payload_on_kafka,
    pull_malformed
);

/// The bytes a stored record took as a Kafka record batch of its own (v2 format, no
/// compression): this test's own reading of the format, which the Kafka variant below checks
/// against the broker.
fn batch_of_one_size(record: &faststream::Message) -> usize {
    fn varint(n: i64) -> usize {
        let mut zigzag = ((n << 1) ^ (n >> 63)) as u64;
        let mut bytes = 1;
        while zigzag >= 0x80 {
            zigzag >>= 7;
            bytes += 1;
        }
        bytes
    }
    let field =
        |bytes: Option<&[u8]>| bytes.map_or(varint(-1), |b| varint(b.len() as i64) + b.len());
    let mut body = 3
        + field(record.key.as_deref())
        + field(Some(&record.payload[..]))
        + varint(record.headers.len() as i64);
    for (name, value) in record.headers.iter() {
        body += field(Some(name.as_bytes())) + field(Some(&value[..]));
    }
    61 + varint(body as i64) + body
}

/// `max.message.bytes` in both modes: a record that takes exactly the limit as a batch of its
/// own is written, one byte more is refused for good (`Abortable`), as Kafka refuses it.
async fn max_message_bytes(broker: TestBroker) {
    const LIMIT: usize = 2000;
    let topic = unique("tb-max");
    broker
        .create_topic_with(&topic, 1, &[("max.message.bytes", &LIMIT.to_string())])
        .await
        .unwrap();
    broker
        .publish_record(Record::new(topic.clone(), "p"))
        .await
        .unwrap();
    let probe = broker.records(&topic).await.remove(0);
    // The longest payload whose record fits, with the probe's headers (every record gets
    // the same ones: its content type, and a correlation id of the same length).
    let mut fitting = probe.clone();
    let mut length = LIMIT;
    loop {
        fitting.payload = "x".repeat(length).into();
        if batch_of_one_size(&fitting) <= LIMIT {
            break;
        }
        length -= 1;
    }
    assert_eq!(batch_of_one_size(&fitting), LIMIT, "a payload fits exactly");
    broker
        .publish_record(Record::new(topic.clone(), "x".repeat(length)))
        .await
        .expect("a record of exactly max.message.bytes is written");
    let refused = broker
        .publish_record(Record::new(topic.clone(), "x".repeat(length + 1)))
        .await
        .expect_err("one byte more is refused");
    assert_eq!(
        refused.class(),
        faststream::ErrorClass::Abortable,
        "{refused}"
    );
    assert_eq!(broker.records(&topic).await.len(), 2);
}
both_modes!(
    max_message_bytes_is_kafkas_in_memory,
    max_message_bytes_is_kafkas_on_kafka,
    max_message_bytes
);

/// Topic configs the in-memory broker does not model are refused, not ignored.
#[tokio::test]
async fn an_unmodelled_topic_config_is_refused_in_memory() {
    let broker = TestBroker::new();
    let err = broker
        .create_topic_with("compacted", 1, &[("cleanup.policy", "compact")])
        .await
        .expect_err("not modelled");
    assert!(err.to_string().contains("cleanup.policy"), "{err}");
    let err = broker
        .create_topic_with("limited", 1, &[("max.message.bytes", "lots")])
        .await
        .expect_err("not a number");
    assert!(err.to_string().contains("lots"), "{err}");
}
