//! Which delivery policy a subscriber gets: the most specific setting wins (subscriber over
//! router over app), commit timing and failure handling each resolved on its own. Each body
//! runs in the in-memory `TestBroker` and on the local Kafka (its own topics and groups).

use faststream::testing::TestBroker;
use faststream::{
    Ack, AckPolicy, Broker, ErrorPolicy, FastStream, Router, State, SubscriberConfig,
};
use faststream_integration_tests::{both_modes, fast_backoff, logs, unique, wait_for};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a test waits for its handler to start.
const WAIT: Duration = Duration::from_secs(60);

/// Bounded retries with the fast backoff, then `{topic}-dlt`: the app-wide policy the
/// subscribers below inherit (or override).
fn app_dead_letters(attempts: u32) -> ErrorPolicy {
    ErrorPolicy::retry(attempts)
        .backoff(fast_backoff())
        .then_dead_letter()
}

/// Fails its first two calls, then returns `n + 1`.
async fn flaky(attempts: State<Arc<AtomicUsize>>, n: i64) -> Result<i64, std::io::Error> {
    if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
        Err(std::io::Error::other("not yet"))
    } else {
        Ok(n + 1)
    }
}

/// Fails on 13.
async fn unlucky(n: i64) -> Result<(), std::io::Error> {
    if n == 13 {
        Err(std::io::Error::other("unlucky"))
    } else {
        Ok(())
    }
}

/// The start line of the subscriber consuming `topic`.
fn start_line(topic: &str) -> String {
    let lines = logs().lines_with(&format!("consuming [\"{topic}\"]"));
    assert_eq!(lines.len(), 1, "one start line for {topic}: {lines:?}");
    lines[0].clone()
}

// ---------------------------------------------------------------------------------------
// The case: the app's `retry(1).then_skip()` must not replace a subscriber's own
// NackOnError.

async fn own_ack_policy_over_app_error_policy(broker: TestBroker) {
    logs();
    let (input, output) = (unique("prec-nack"), unique("prec-nack-out"));
    let group = unique("prec-nack-g");
    broker.create_topic(&input, 1).await.unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&attempts))
        .error_policy(ErrorPolicy::retry(1).then_skip())
        .subscriber(
            SubscriberConfig::new("flaky", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::NackOnError)
                .backoff(fast_backoff())
                .publish_to(output.as_str()),
            flaky,
        );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(41, input.as_str()).await.unwrap();
    test.published(output.as_str()).assert_one(42).await;
    let calls = test.calls("flaky").assert_called(3).await;
    assert_eq!(
        calls
            .iter()
            .map(|c| c.outcome.clone().unwrap().is_ok())
            .collect::<Vec<_>>(),
        [false, false, true],
        "the same record ran again until it succeeded, never skipped"
    );
    assert!(calls.iter().all(|c| c.message.offset == 0));
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &input, 0).await, Some(1));
    let line = start_line(&input);
    assert!(
        line.contains("(commit after the handler; on failure: retried until it succeeds"),
        "{line}"
    );
}
both_modes!(
    own_ack_policy_beats_the_app_error_policy_in_memory,
    own_ack_policy_beats_the_app_error_policy_on_kafka,
    own_ack_policy_over_app_error_policy
);

// ---------------------------------------------------------------------------------------
// Subscriber over router over app.

async fn router_between_app_and_subscriber(broker: TestBroker) {
    logs();
    let prefix = format!("{}-", unique("prec-lvl"));
    let (routed, own) = (format!("{prefix}routed"), format!("{prefix}own"));
    let plain = unique("prec-lvl-plain");
    for topic in [&routed, &own, &plain] {
        broker.create_topic(topic, 1).await.unwrap();
        broker
            .create_topic(&format!("{topic}-dlt"), 1)
            .await
            .unwrap();
    }
    let groups: Vec<String> = (0..3).map(|_| unique("prec-lvl-g")).collect();
    let attempts = Arc::new(AtomicUsize::new(0));
    let router = Router::new(prefix.as_str())
        .ack_policy(AckPolicy::NackOnError)
        // The router's NackOnError, over the app's error policy.
        .subscriber(
            SubscriberConfig::new("routed", ["routed"])
                .group_id(groups[0].as_str())
                .backoff(fast_backoff()),
            flaky,
        )
        // Its own error policy, over the router's NackOnError.
        .subscriber(
            SubscriberConfig::new("own", ["own"])
                .group_id(groups[1].as_str())
                .error_policy(ErrorPolicy::retry(1).then_dead_letter()),
            unlucky,
        );
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&attempts))
        .error_policy(app_dead_letters(2))
        .include_router(router)
        // Nothing of its own, no router: the app's error policy.
        .subscriber(
            SubscriberConfig::new("plain", [plain.as_str()]).group_id(groups[2].as_str()),
            unlucky,
        );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(5, routed.as_str()).await.unwrap();
    test.publish(13, own.as_str()).await.unwrap();
    test.publish(13, plain.as_str()).await.unwrap();

    let routed_calls = test.calls("routed").assert_called(3).await;
    assert_eq!(
        routed_calls[2].outcome,
        Some(Ok(())),
        "retried until it passed"
    );
    assert!(routed_calls.iter().all(|c| c.message.offset == 0));
    let letter = test.published(format!("{own}-dlt")).assert_one(13).await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("1"));
    test.calls("own").assert_called(1).await;
    let letter = test.published(format!("{plain}-dlt")).assert_one(13).await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    test.calls("plain").assert_called(2).await;
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&groups[0], &routed, 0).await, Some(1));
    assert!(
        broker.records(&format!("{routed}-dlt")).await.is_empty(),
        "the router's NackOnError has no dead letter"
    );
}
both_modes!(
    subscriber_over_router_over_app_in_memory,
    subscriber_over_router_over_app_on_kafka,
    router_between_app_and_subscriber
);

// ---------------------------------------------------------------------------------------
// Manual sets the commit timing only: the app's dead letter stays.

async fn manual_keeps_the_app_dead_letter(broker: TestBroker) {
    logs();
    let input = unique("prec-manual");
    let group = unique("prec-manual-g");
    broker.create_topic(&input, 1).await.unwrap();
    broker
        .create_topic(&format!("{input}-dlt"), 1)
        .await
        .unwrap();
    let app = FastStream::new(broker.clone())
        .error_policy(app_dead_letters(2))
        .subscriber(
            SubscriberConfig::new("manual", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::Manual),
            |ack: Ack, n: i64| async move {
                if n == 13 {
                    ack.nack();
                } else {
                    ack.ack();
                }
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(13, input.as_str()).await.unwrap();
    test.publish(1, input.as_str()).await.unwrap();
    let letter = test.published(format!("{input}-dlt")).assert_one(13).await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    assert_eq!(letter.headers.get_str("dlt-exception-type"), Some("Nacked"));
    let calls = test.calls("manual").assert_called(3).await;
    assert_eq!(calls[2].outcome, Some(Ok(())), "1 was acked");
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &input, 0).await, Some(2));
    let line = start_line(&input);
    assert!(
        line.contains("(commit by the handler; on failure: up to 2 attempts"),
        "{line}"
    );
    assert!(line.contains("then dead letter to {topic}-dlt)"), "{line}");
}
both_modes!(
    manual_keeps_the_app_dead_letter_in_memory,
    manual_keeps_the_app_dead_letter_on_kafka,
    manual_keeps_the_app_dead_letter
);

// ---------------------------------------------------------------------------------------
// AckFirst commits before the handler, and keeps the inherited failure handling.

async fn ack_first(broker: TestBroker) {
    logs();
    let input = unique("prec-first");
    let group = unique("prec-first-g");
    broker.create_topic(&input, 1).await.unwrap();
    broker
        .create_topic(&format!("{input}-dlt"), 1)
        .await
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&started))
        .error_policy(app_dead_letters(2))
        // The hanging handler is cancelled at shutdown, after this long.
        .graceful_timeout(Duration::from_millis(300))
        .subscriber(
            SubscriberConfig::new("first", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::AckFirst),
            |started: State<Arc<AtomicUsize>>, n: i64| async move {
                match n {
                    13 => Err(std::io::Error::other("unlucky")),
                    0 => {
                        started.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(13, input.as_str()).await.unwrap();
    test.publish(0, input.as_str()).await.unwrap();
    let letter = test.published(format!("{input}-dlt")).assert_one(13).await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    wait_for(WAIT, "the handler of 0 started", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    test.shutdown().await.unwrap();
    assert_eq!(
        broker.committed(&group, &input, 0).await,
        Some(2),
        "0 was committed before its handler, which never finished"
    );
    let line = start_line(&input);
    assert!(
        line.contains("(commit before the handler; on failure: up to 2 attempts"),
        "{line}"
    );
}
both_modes!(
    ack_first_commits_before_and_keeps_the_app_dead_letter_in_memory,
    ack_first_commits_before_and_keeps_the_app_dead_letter_on_kafka,
    ack_first
);

// ---------------------------------------------------------------------------------------
// Configuration only: the AsyncAPI document lists the dead letters of the resolved policies.

#[test]
fn the_document_lists_the_dead_letters_of_the_resolved_policies() {
    let app = FastStream::new(TestBroker::new())
        .error_policy(app_dead_letters(3))
        .subscriber(
            SubscriberConfig::new("retried", ["retried"]).ack_policy(AckPolicy::NackOnError),
            unlucky,
        )
        .subscriber(
            SubscriberConfig::new("manual", ["manual"]).ack_policy(AckPolicy::Manual),
            |ack: Ack, _: i64| async move { ack.ack() },
        )
        .include_router(
            Router::new("r-")
                .ack_policy(AckPolicy::RejectOnError)
                .subscriber(SubscriberConfig::new("routed", ["routed"]), unlucky),
        )
        .subscriber(SubscriberConfig::new("plain", ["plain"]), unlucky);
    let doc = app.asyncapi(faststream::asyncapi::AsyncApiVersion::V3_0_0);
    let channels = &doc["channels"];
    assert!(
        channels.get("retried-dlt:Publisher").is_none(),
        "its own NackOnError has no dead letter: {channels}"
    );
    assert!(
        channels.get("r-routed-dlt:Publisher").is_none(),
        "the router's RejectOnError has none either: {channels}"
    );
    assert_eq!(channels["manual-dlt:Publisher"]["address"], "manual-dlt");
    assert_eq!(channels["plain-dlt:Publisher"]["address"], "plain-dlt");
}
