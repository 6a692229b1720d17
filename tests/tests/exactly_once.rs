//! Exactly-once subscribers (`SubscriberConfig::exactly_once`): outputs and input offsets
//! commit in one transaction, at a barrier. Each body runs on the in-memory broker and on
//! Kafka; what is asserted is what a `read_committed` reader sees (`TestBroker::records`):
//! every output once, whatever aborted.

use faststream::testing::{TestApp, TestBroker};
use faststream::{Broker, ErrorPolicy, FastStream, Record, SubscriberConfig};
use faststream_integration_tests::{both_modes, unique, wait_for};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const PATIENCE: Duration = Duration::from_secs(30);

/// The payloads a `read_committed` reader finds in `topic`, as text, in partition order.
async fn committed_outputs(broker: &TestBroker, topic: &str) -> Vec<String> {
    broker
        .records(topic)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Waits until a `read_committed` reader finds `n` records in `topic`; they are returned.
async fn wait_outputs(broker: &TestBroker, topic: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen = committed_outputs(broker, topic).await;
        if seen.len() >= n || tokio::time::Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_numbers(broker: &TestBroker, topic: &str, numbers: std::ops::Range<usize>) {
    let records =
        numbers.map(|n| Record::new(topic.to_owned(), format!("{n}")).key(format!("k{n}")));
    broker.publish_batch(records).await.unwrap();
}

fn expected(numbers: std::ops::Range<usize>) -> Vec<String> {
    numbers.map(|n| format!("out-{n}")).collect()
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort_by_key(|v| {
        v.trim_start_matches("out-")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    values
}

/// The outputs and the offsets commit together: each output once, the group's committed
/// offset at the end of the input.
async fn outputs_commit_with_their_offsets(broker: TestBroker) {
    let (input, output, group) = (unique("eos-in"), unique("eos-out"), unique("eos-g"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("eos", [input.as_str()])
            .group_id(group.as_str())
            .exactly_once(true)
            .publish_to(output.as_str()),
        |n: String| async move { format!("out-{n}") },
    );
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..30).await;
    let seen = wait_outputs(&broker, &output, 30).await;
    assert_eq!(seen, expected(0..30), "each output once, in order");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while broker.committed(&group, &input, 0).await != Some(30) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the offset commits with the outputs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    test.shutdown().await.unwrap();
    assert_eq!(committed_outputs(&broker, &output).await, expected(0..30));
}
both_modes!(
    outputs_commit_with_their_offsets_in_memory,
    outputs_commit_with_their_offsets_on_kafka,
    outputs_commit_with_their_offsets
);

/// A handler error runs the error policy inside the partition: the failing record waits for
/// its backoff *between* transactions (the outputs before it commit meanwhile), then succeeds;
/// every output is seen once.
async fn a_retry_waits_between_transactions(broker: TestBroker) {
    let (input, output) = (unique("eos-retry-in"), unique("eos-retry-out"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let failures = Arc::new(AtomicUsize::new(0));
    let seen_failures = Arc::clone(&failures);
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("eos-retry", [input.as_str()])
            .group_id(unique("eos-g"))
            .exactly_once(true)
            .error_policy(
                ErrorPolicy::retry(3)
                    .backoff(faststream::Backoff {
                        initial: Duration::from_millis(1500),
                        max: Duration::from_millis(1500),
                    })
                    .jitter(false)
                    .then_skip(),
            )
            .publish_to(output.as_str()),
        move |n: String| {
            let failures = Arc::clone(&failures);
            async move {
                // Record 5 fails twice, then succeeds.
                if n == "5" && failures.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(faststream::Error::config_msg("not yet"));
                }
                Ok(format!("out-{n}"))
            }
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..10).await;
    // While record 5 waits for its retry, the outputs before it are committed.
    let before = wait_outputs(&broker, &output, 5).await;
    assert_eq!(before, expected(0..5));
    assert!(
        seen_failures.load(Ordering::SeqCst) < 3,
        "the first outputs committed while record 5 was still failing"
    );
    let all = wait_outputs(&broker, &output, 10).await;
    assert_eq!(all, expected(0..10), "each output once, in order");
    assert_eq!(
        seen_failures.load(Ordering::SeqCst),
        3,
        "two failures, then the success"
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    a_retry_waits_between_transactions_in_memory,
    a_retry_waits_between_transactions_on_kafka,
    a_retry_waits_between_transactions
);

/// A fenced producer (another producer with its transactional id started) cannot commit: its
/// transaction is aborted, its records are handled again after a rewind, on a new producer;
/// a `read_committed` reader sees each output once.
async fn a_fenced_producer_is_replaced_and_nothing_is_seen_twice(broker: TestBroker) {
    let (input, output, group) = (
        unique("eos-fence-in"),
        unique("eos-fence-out"),
        unique("eos-g"),
    );
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let config = SubscriberConfig::new("eos-fence", [input.as_str()])
        .group_id(group.as_str())
        .exactly_once(true)
        .publish_to(output.as_str());
    let transactional_id = broker.transactional_id(&config);
    // Records 10.. wait here until the producer was fenced.
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (handler_gate, handler_calls) = (Arc::clone(&gate), Arc::clone(&calls));
    let app = FastStream::new(broker.clone()).subscriber(config, move |n: String| {
        let (gate, calls, held) = (
            Arc::clone(&handler_gate),
            Arc::clone(&handler_calls),
            Arc::clone(&held),
        );
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            // Held the first time only: its second run goes through.
            if n == "10" && !held.swap(true, Ordering::SeqCst) {
                drop(gate.acquire().await);
            }
            format!("out-{n}")
        }
    });
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..10).await;
    assert_eq!(wait_outputs(&broker, &output, 10).await, expected(0..10));
    publish_numbers(&broker, &input, 10..20).await;
    wait_for(PATIENCE, "record 10 in its handler", || {
        calls.load(Ordering::SeqCst) >= 11
    })
    .await;
    broker.fence(&transactional_id).await.unwrap();
    gate.add_permits(1);
    let all = wait_outputs(&broker, &output, 20).await;
    assert_eq!(
        all,
        expected(0..20),
        "each output once, whatever was aborted"
    );
    wait_for(PATIENCE, "the aborted record handled again", || {
        calls.load(Ordering::SeqCst) >= 21
    })
    .await;
    // Still running on its new producer.
    publish_numbers(&broker, &input, 20..25).await;
    assert_eq!(wait_outputs(&broker, &output, 25).await, expected(0..25));
    test.shutdown().await.unwrap();
    assert_eq!(
        committed_outputs(&broker, &output).await.len(),
        25,
        "nothing more after the stop"
    );
}
both_modes!(
    a_fenced_producer_is_replaced_and_nothing_is_seen_twice_in_memory,
    a_fenced_producer_is_replaced_and_nothing_is_seen_twice_on_kafka,
    a_fenced_producer_is_replaced_and_nothing_is_seen_twice
);

fn member(name: &str, input: &str, output: &str, group: &str) -> SubscriberConfig {
    SubscriberConfig::new(name, [input])
        .group_id(group)
        .exactly_once(true)
        .publish_to(output)
}

/// A revoke commits the open transaction before the partitions move: with two members
/// joining and leaving mid-stream, every output is seen once.
async fn a_revoke_commits_the_open_transaction_first(broker: TestBroker) {
    let (input, output, group) = (unique("eos-rb-in"), unique("eos-rb-out"), unique("eos-g"));
    broker.create_topic(&input, 4).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let handler = |n: String| async move { format!("out-{n}") };
    let first = TestBroker::start(
        FastStream::new(broker.clone())
            .subscriber(member("eos-a", &input, &output, &group), handler),
    )
    .await
    .unwrap();
    publish_numbers(&broker, &input, 0..100).await;
    wait_outputs(&broker, &output, 40).await;
    // A second member joins: partitions move while the first has work in flight.
    let second: TestApp = TestBroker::start(
        FastStream::new(broker.clone())
            .subscriber(member("eos-b", &input, &output, &group), handler),
    )
    .await
    .unwrap();
    publish_numbers(&broker, &input, 100..200).await;
    let seen = wait_outputs(&broker, &output, 200).await;
    assert_eq!(
        sorted(seen.clone()),
        expected(0..200),
        "each output once across the rebalance"
    );
    // The first leaves: its partitions move to the second.
    first.shutdown().await.unwrap();
    publish_numbers(&broker, &input, 200..260).await;
    let seen = wait_outputs(&broker, &output, 260).await;
    assert_eq!(
        sorted(seen),
        expected(0..260),
        "each output once after the leave"
    );
    second.shutdown().await.unwrap();
}
both_modes!(
    a_revoke_commits_the_open_transaction_first_in_memory,
    a_revoke_commits_the_open_transaction_first_on_kafka,
    a_revoke_commits_the_open_transaction_first
);

/// `request()` from an exactly-once handler is refused: its request would stay invisible
/// until the handler's own transaction committed.
async fn a_request_inside_is_refused(broker: TestBroker) {
    let (input, output) = (unique("eos-req-in"), unique("eos-req-out"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let client = broker.clone();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("eos-req", [input.as_str()])
            .group_id(unique("eos-g"))
            .exactly_once(true)
            .publish_to(output.as_str()),
        move |n: String| {
            let client = client.clone();
            async move {
                let asked = client
                    .request(Record::new("eos-nobody-answers", n), Duration::from_secs(1))
                    .await;
                match asked {
                    Ok(_) => "answered".to_owned(),
                    Err(err) => err.to_string(),
                }
            }
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..1).await;
    let seen = wait_outputs(&broker, &output, 1).await;
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].contains("request() from the exactly-once subscriber `eos-req` is refused"),
        "{seen:?}"
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    a_request_inside_is_refused_in_memory,
    a_request_inside_is_refused_on_kafka,
    a_request_inside_is_refused
);

/// What exactly-once cannot keep is refused at start: manual acknowledgement.
#[tokio::test]
async fn manual_ack_is_refused() {
    let broker = TestBroker::new();
    let config = SubscriberConfig::new("eos-manual", ["t"])
        .exactly_once(true)
        .ack_policy(faststream::AckPolicy::Manual);
    let app = FastStream::new(broker.clone()).subscriber(config, |_n: String| async move {});
    let err = TestBroker::start(app).await.unwrap_err().to_string();
    assert!(err.contains("cannot acknowledge by hand"), "{err}");
}

/// With lanes, every lane reaches the barrier before its router reports the partition's
/// watermark (with the records finished above it as the commit's metadata): each output once,
/// through an abort (a fence) too.
async fn lanes_commit_at_the_barrier(broker: TestBroker) {
    let (input, output, group) = (
        unique("eos-lanes-in"),
        unique("eos-lanes-out"),
        unique("eos-g"),
    );
    broker.create_topic(&input, 2).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let config = SubscriberConfig::new("eos-lanes", [input.as_str()])
        .group_id(group.as_str())
        .transactions(faststream::TransactionCommits::every(
            Duration::from_millis(20),
        ))
        .lanes(8)
        .publish_to(output.as_str());
    let transactional_id = broker.transactional_id(&config);
    let app = FastStream::new(broker.clone()).subscriber(config, |n: String| async move {
        // Lanes run concurrently: some finish ahead of others.
        let n: u64 = n.parse().unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(n % 7)).await;
        format!("out-{n}")
    });
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..200).await;
    wait_outputs(&broker, &output, 100).await;
    broker.fence(&transactional_id).await.unwrap();
    publish_numbers(&broker, &input, 200..300).await;
    let seen = wait_outputs(&broker, &output, 300).await;
    assert_eq!(sorted(seen), expected(0..300), "each output once");
    test.shutdown().await.unwrap();
    assert_eq!(committed_outputs(&broker, &output).await.len(), 300);
    let mut committed = 0;
    for partition in 0..2 {
        committed += broker
            .committed(&group, &input, partition)
            .await
            .unwrap_or_default();
    }
    assert_eq!(committed, 300, "both partitions committed to their ends");
}
both_modes!(
    lanes_commit_at_the_barrier_in_memory,
    lanes_commit_at_the_barrier_on_kafka,
    lanes_commit_at_the_barrier
);

/// An exactly-once member `name` of `group` reading `input` into `output`, committing every
/// `every`, retrying twice then dead-lettering to `{input}-dlt`; the three topics are created.
async fn dead_lettering_member(
    broker: &TestBroker,
    name: &str,
    [input, output, group]: [&String; 3],
    every: Duration,
) -> SubscriberConfig {
    let dead = format!("{input}-dlt");
    for topic in [input, output, &dead] {
        broker.create_topic(topic, 1).await.unwrap();
    }
    SubscriberConfig::new(name, [input.as_str()])
        .group_id(group.as_str())
        .transactions(faststream::TransactionCommits::every(every))
        .error_policy(
            ErrorPolicy::retry(2)
                .backoff(faststream_integration_tests::fast_backoff())
                .then_dead_letter(),
        )
        .publish_to(output.as_str())
}

/// The member of the refused-output tests: [`dead_lettering_member`] committing every 500 ms,
/// whose output topic refuses records over 2,000 bytes (`max.message.bytes`, set as the topic
/// is created). Returns it and its dead-letter topic.
async fn refusing_member(
    broker: &TestBroker,
    name: &str,
    [input, output, group]: [&String; 3],
) -> (SubscriberConfig, String) {
    broker
        .create_topic_with(output, 1, &[("max.message.bytes", "2000")])
        .await
        .unwrap();
    let every = Duration::from_millis(500);
    let config = dead_lettering_member(broker, name, [input, output, group], every).await;
    (config, format!("{input}-dlt"))
}

/// Publishes `payloads` to `topic` in one batch, each with the key `k` (one partition).
async fn publish_keyed(broker: &TestBroker, topic: &str, payloads: &[&str]) {
    let records = payloads
        .iter()
        .map(|payload| Record::new(topic.to_owned(), payload.to_string()).key("k"));
    broker.publish_batch(records).await.unwrap();
}

/// A dead letter joins the transaction: the poison record's dead letter and the other
/// outputs are each seen once, through an abort (a fence after the dead letter was written).
async fn a_dead_letter_joins_the_transaction(broker: TestBroker) {
    let (input, output, group) = (unique("eos-dl-in"), unique("eos-dl-out"), unique("eos-g"));
    let dead = format!("{input}-dlt");
    // Long enough that nothing commits before the fence: the dead letter is in the
    // transaction the fence aborts.
    let every = Duration::from_secs(2);
    let config = dead_lettering_member(&broker, "eos-dl", [&input, &output, &group], every).await;
    let transactional_id = broker.transactional_id(&config);
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (handler_gate, handler_held) = (Arc::clone(&gate), Arc::clone(&held));
    let app = FastStream::new(broker.clone()).subscriber(config, move |n: String| {
        let (gate, held) = (Arc::clone(&handler_gate), Arc::clone(&handler_held));
        async move {
            if n == "3" {
                return Err(faststream::Error::config_msg("poison"));
            }
            // Record 5 waits (once) until the producer was fenced: the transaction holding
            // the dead letter of record 3 and the outputs before 5 is then aborted.
            if n == "5" && !held.swap(true, Ordering::SeqCst) {
                drop(gate.acquire().await);
            }
            Ok(format!("out-{n}"))
        }
    });
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..8).await;
    // The dead letter is written (uncommitted) before record 5 runs.
    wait_for(PATIENCE, "record 5 in its handler", || {
        held.load(Ordering::SeqCst)
    })
    .await;
    broker.fence(&transactional_id).await.unwrap();
    gate.add_permits(1);
    let outputs = wait_outputs(&broker, &output, 7).await;
    let want: Vec<String> = [0, 1, 2, 4, 5, 6, 7]
        .iter()
        .map(|n| format!("out-{n}"))
        .collect();
    assert_eq!(outputs, want, "each output once");
    let dead_letters = wait_outputs(&broker, &dead, 1).await;
    assert_eq!(dead_letters, ["3"], "the dead letter once");
    test.shutdown().await.unwrap();
    assert_eq!(committed_outputs(&broker, &dead).await.len(), 1);
    assert_eq!(broker.committed(&group, &input, 0).await, Some(8));
}
both_modes!(
    a_dead_letter_joins_the_transaction_in_memory,
    a_dead_letter_joins_the_transaction_on_kafka,
    a_dead_letter_joins_the_transaction
);

/// A publish the member's fenced producer refuses (in flight when the fence lands, or sent
/// after it) does not run the error policy: retrying into a transaction that cannot commit,
/// then dead-lettering into it, halted the partition before. The transaction is aborted and
/// the records run again on a new producer: each output once, no dead letter.
async fn a_publish_refused_by_a_fenced_producer_aborts_at_once(broker: TestBroker) {
    let (input, output, group) = (
        unique("eos-refused-in"),
        unique("eos-refused-out"),
        unique("eos-g"),
    );
    let dead = format!("{input}-dlt");
    let every = Duration::from_secs(1);
    let config =
        dead_lettering_member(&broker, "eos-refused", [&input, &output, &group], every).await;
    let transactional_id = broker.transactional_id(&config);
    let gate = Arc::new(Semaphore::new(0));
    let first_calls = Arc::new(AtomicUsize::new(0));
    let (handler_gate, handler_calls) = (Arc::clone(&gate), Arc::clone(&first_calls));
    let app = FastStream::new(broker.clone()).subscriber(config, move |n: String| {
        let (gate, calls) = (Arc::clone(&handler_gate), Arc::clone(&handler_calls));
        async move {
            // Record 0 waits (once) until the producer was fenced: its output is the first
            // publish after the fence.
            if n == "0" && calls.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(gate.acquire().await);
            }
            format!("out-{n}")
        }
    });
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..5).await;
    wait_for(PATIENCE, "record 0 in its handler", || {
        first_calls.load(Ordering::SeqCst) == 1
    })
    .await;
    broker.fence(&transactional_id).await.unwrap();
    gate.add_permits(1);
    assert_eq!(
        wait_outputs(&broker, &output, 5).await,
        expected(0..5),
        "each output once"
    );
    assert_eq!(first_calls.load(Ordering::SeqCst), 2, "record 0 ran again");
    test.shutdown().await.unwrap();
    assert_eq!(
        committed_outputs(&broker, &dead).await,
        Vec::<String>::new()
    );
    assert_eq!(broker.committed(&group, &input, 0).await, Some(5));
}
both_modes!(
    a_publish_refused_by_a_fenced_producer_aborts_at_once_in_memory,
    a_publish_refused_by_a_fenced_producer_aborts_at_once_on_kafka,
    a_publish_refused_by_a_fenced_producer_aborts_at_once
);

/// An output the broker refuses (over the topic's `max.message.bytes`) dooms its
/// transaction, which is aborted; the record's attempt counts across the abort, so after
/// `retry(2)` its dead letter goes into the next transaction rather than the record aborting
/// every transaction forever, and the records after it commit once.
async fn an_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction(broker: TestBroker) {
    let (input, output, group) = (unique("eos-big-in"), unique("eos-big-out"), unique("eos-g"));
    let (config, dead) = refusing_member(&broker, "eos-big", [&input, &output, &group]).await;
    let big_calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = Arc::clone(&big_calls);
    let app = FastStream::new(broker.clone()).subscriber(config, move |size: usize| {
        let calls = Arc::clone(&handler_calls);
        async move {
            if size > 2000 {
                calls.fetch_add(1, Ordering::SeqCst);
            }
            "x".repeat(size)
        }
    });
    let test = TestBroker::start(app).await.unwrap();
    // The refused record goes first, alone: the broker refuses the whole produce request
    // holding a record over the limit, so outputs sent with it would be refused too.
    publish_keyed(&broker, &input, &["5000"]).await;
    let dead_letters = wait_outputs(&broker, &dead, 1).await;
    assert_eq!(
        dead_letters,
        ["5000"],
        "the refused record's dead letter, once"
    );
    publish_keyed(&broker, &input, &["10", "20"]).await;
    let sizes: Vec<usize> = wait_outputs(&broker, &output, 2)
        .await
        .iter()
        .map(String::len)
        .collect();
    assert_eq!(sizes, [10, 20], "the outputs around it, once");
    test.shutdown().await.unwrap();
    assert_eq!(
        big_calls.load(Ordering::SeqCst),
        2,
        "its two attempts, across the abort"
    );
    let letter = &broker.records(&dead).await[0];
    let header = |name: &str| {
        letter
            .headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    assert_eq!(header("dlt-attempts").as_deref(), Some("2"));
    assert_eq!(
        header("dlt-exception-type").as_deref(),
        Some("PublishRefused")
    );
    assert_eq!(committed_outputs(&broker, &output).await.len(), 2);
    assert_eq!(broker.committed(&group, &input, 0).await, Some(3));
}
both_modes!(
    an_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction_in_memory,
    an_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction_on_kafka,
    an_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction
);

/// The same for a batch subscriber: a batch whose output the broker refuses for good aborts
/// its transaction, and its attempt counts across the abort (the batch after the rewind that
/// holds the refused batch's last record takes it), so after `retry(2)` its records are dead
/// lettered rather than the batch aborting every transaction forever.
async fn a_batch_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction(
    broker: TestBroker,
) {
    let (input, output, group) = (
        unique("eos-bbig-in"),
        unique("eos-bbig-out"),
        unique("eos-g"),
    );
    let (config, dead) = refusing_member(&broker, "eos-bbig", [&input, &output, &group]).await;
    let config = config.batch(10, Duration::from_millis(200));
    let big_calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = Arc::clone(&big_calls);
    let app = FastStream::new(broker.clone()).subscriber(config, move |sizes: Vec<usize>| {
        let calls = Arc::clone(&handler_calls);
        async move {
            let size: usize = sizes.iter().sum();
            if size > 2000 {
                calls.fetch_add(1, Ordering::SeqCst);
            }
            "x".repeat(size)
        }
    });
    let test = TestBroker::start(app).await.unwrap();
    publish_keyed(&broker, &input, &["5000"]).await;
    let dead_letters = wait_outputs(&broker, &dead, 1).await;
    assert_eq!(
        dead_letters,
        ["5000"],
        "the refused batch's record, dead lettered once"
    );
    publish_keyed(&broker, &input, &["10", "20"]).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut written = 0;
    while written < 30 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        written = committed_outputs(&broker, &output)
            .await
            .iter()
            .map(String::len)
            .sum();
    }
    assert_eq!(written, 30, "the batches after it, their outputs once");
    test.shutdown().await.unwrap();
    assert_eq!(
        big_calls.load(Ordering::SeqCst),
        2,
        "its two attempts, across the abort"
    );
    let letter = &broker.records(&dead).await[0];
    assert_eq!(
        letter.headers.get_str("dlt-attempts"),
        Some("2"),
        "the attempts of the batch"
    );
    assert_eq!(broker.committed(&group, &input, 0).await, Some(3));
}
both_modes!(
    a_batch_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction_in_memory,
    a_batch_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction_on_kafka,
    a_batch_output_the_broker_refuses_is_dead_lettered_in_the_next_transaction
);

/// `max_records` commits sooner than the interval: five records with a 600 s interval are
/// committed once five were handled (the count starts at the first record a partition
/// handled, also before its first commit).
async fn max_records_commits_before_the_interval(broker: TestBroker) {
    let (input, output, group) = (unique("eos-max-in"), unique("eos-max-out"), unique("eos-g"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("eos-max", [input.as_str()])
            .group_id(group.as_str())
            .transactions(
                faststream::TransactionCommits::every(Duration::from_secs(600)).max_records(5),
            )
            .publish_to(output.as_str()),
        |n: String| async move { format!("out-{n}") },
    );
    let test = TestBroker::start(app).await.unwrap();
    publish_numbers(&broker, &input, 0..5).await;
    assert_eq!(wait_outputs(&broker, &output, 5).await, expected(0..5));
    assert_eq!(broker.committed(&group, &input, 0).await, Some(5));
    test.shutdown().await.unwrap();
}
both_modes!(
    max_records_commits_before_the_interval_in_memory,
    max_records_commits_before_the_interval_on_kafka,
    max_records_commits_before_the_interval
);

/// A dead letter the broker refuses for good (over its topic's `max.message.bytes`) dooms the
/// transaction like any refused record; the record then stops its partition when it comes
/// again after the abort, as a dead letter that cannot land does outside a transaction,
/// rather than aborting every transaction.
async fn a_dead_letter_the_broker_refuses_stops_the_partition(broker: TestBroker) {
    let logs = faststream_integration_tests::logs();
    let (input, output, group) = (
        unique("eos-dlt-big-in"),
        unique("eos-dlt-big-out"),
        unique("eos-g"),
    );
    let dead = format!("{input}-dlt");
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    broker
        .create_topic_with(&dead, 1, &[("max.message.bytes", "2000")])
        .await
        .unwrap();
    let config = SubscriberConfig::new("eos-dlt-big", [input.as_str()])
        .group_id(group.as_str())
        .transactions(faststream::TransactionCommits::every(
            Duration::from_millis(500),
        ))
        .error_policy(ErrorPolicy::retry(1).then_dead_letter())
        .publish_to(output.as_str());
    let app = FastStream::new(broker.clone()).subscriber(config, |text: String| async move {
        if text.len() > 2000 {
            return Err(faststream::Error::config_msg("too big to handle"));
        }
        Ok(format!("out-{text}"))
    });
    let test = TestBroker::start(app).await.unwrap();
    // Alone first, so that its output commits before the poison record's abort.
    broker
        .publish_batch([Record::new(input.clone(), "a").key("k")])
        .await
        .unwrap();
    assert_eq!(wait_outputs(&broker, &output, 1).await, ["out-a"]);
    let rest = [
        Record::new(input.clone(), "b".repeat(3000)).key("k"),
        Record::new(input.clone(), "c").key("k"),
    ];
    broker.publish_batch(rest).await.unwrap();
    let stopped = format!("consumption of {input}[0] stopped at offset 1");
    wait_for(
        PATIENCE,
        "the partition stopped at the refused record",
        || !logs.lines_with(&stopped).is_empty(),
    )
    .await;
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &input, 0).await, Some(1));
    assert_eq!(committed_outputs(&broker, &output).await, ["out-a"]);
    assert!(committed_outputs(&broker, &dead).await.is_empty());
}
both_modes!(
    a_dead_letter_the_broker_refuses_stops_the_partition_in_memory,
    a_dead_letter_the_broker_refuses_stops_the_partition_on_kafka,
    a_dead_letter_the_broker_refuses_stops_the_partition
);
