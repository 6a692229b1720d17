//! Error policies on a real Kafka broker: bounded retries, dead letters with provenance,
//! non-retriable errors, a refused output publish, and stopping a partition.

use faststream::kafka::KafkaBroker;
use faststream::policy::Permanent;
use faststream::{Backoff, ErrorPolicy, FastStream, Message, State, SubscriberConfig};
use faststream_integration_tests::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

fn quick_retries(attempts: u32) -> ErrorPolicy {
    ErrorPolicy::retry(attempts).backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

/// How many times the handler saw each payload.
type Calls = Arc<Mutex<HashMap<String, usize>>>;

fn count(calls: &Calls, payload: &str) -> usize {
    calls.lock().unwrap().get(payload).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dead_letter_topic_after_bounded_retries() {
    let (input, output) = (unique("pol-in"), unique("pol-out"));
    let dead = format!("{input}-dlt");
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    create_topic(&dead, 1).await;
    let group = unique("g");
    let calls: Calls = Arc::default();
    let running = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .subscriber(
            SubscriberConfig::new("orders", [input.as_str()])
                .group_id(group.as_str())
                .publish_to(output.as_str())
                .error_policy(quick_retries(3).then_dead_letter()),
            |message: Message, calls: State<Calls>| async move {
                let text = String::from_utf8_lossy(&message.payload).into_owned();
                *calls.lock().unwrap().entry(text.clone()).or_default() += 1;
                match text.as_str() {
                    "\"poison\"" => Err(faststream::middleware::BoxError::from("db down")),
                    "\"permanent\"" => Err(Permanent::new("no such customer").into()),
                    _ => Ok(format!("ok {text}")),
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [
            Input::new("\"a\""),
            Input::new("\"poison\"")
                .key("k-poison")
                .header("correlation_id", "cid-poison")
                .header("trace", "t-1"),
            Input::new("\"b\""),
            Input::new("\"permanent\""),
            Input::new("\"c\""),
        ],
    )
    .await;
    let out = collect(&output, 3, WAIT);
    let dead_letters = collect(&dead, 2, WAIT);
    wait_for(WAIT, "every offset committed", || {
        committed(&group, &input, 1) == [5]
    })
    .await;
    running.shutdown().await.expect("shutdown");

    assert_eq!(
        out.iter().map(|o| o.payload.as_str()).collect::<Vec<_>>(),
        ["ok \"a\"", "ok \"b\"", "ok \"c\""]
    );
    assert_eq!(count(&calls, "\"poison\""), 3, "retried up to 3 attempts");
    assert_eq!(
        count(&calls, "\"permanent\""),
        1,
        "a Permanent error is not retried"
    );
    assert_eq!(dead_letters.len(), 2);
    let poison = &dead_letters[0];
    assert_eq!(poison.payload, "\"poison\"");
    assert_eq!(poison.key.as_deref(), Some("k-poison"));
    let header = |name: &str| poison.headers.get(name).map(String::as_str);
    assert_eq!(header("correlation_id"), Some("cid-poison"));
    assert_eq!(header("trace"), Some("t-1"));
    assert_eq!(header("dlt-original-topic"), Some(input.as_str()));
    assert_eq!(header("dlt-original-partition"), Some("0"));
    assert_eq!(header("dlt-original-offset"), Some("1"));
    assert!(header("dlt-original-timestamp").is_some_and(|t| t.parse::<i64>().is_ok()));
    assert_eq!(header("dlt-original-group"), Some(group.as_str()));
    assert_eq!(header("dlt-exception-type"), Some("HandlerError"));
    assert_eq!(header("dlt-exception-message"), Some("db down"));
    assert_eq!(header("dlt-attempts"), Some("3"));
    let permanent = &dead_letters[1];
    assert_eq!(permanent.payload, "\"permanent\"");
    assert_eq!(
        permanent
            .headers
            .get("dlt-exception-type")
            .map(String::as_str),
        Some("Permanent")
    );
    assert_eq!(
        permanent.headers.get("dlt-attempts").map(String::as_str),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decode_errors_are_dead_lettered_without_retries() {
    let input = unique("pol-decode");
    let dead = unique("pol-decode-dead");
    create_topic(&input, 1).await;
    create_topic(&dead, 1).await;
    let group = unique("g");
    let calls: Calls = Arc::default();
    let running = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .error_policy(quick_retries(5).then_dead_letter_to(dead.as_str()))
        .subscriber(
            SubscriberConfig::new("numbers", [input.as_str()]).group_id(group.as_str()),
            |calls: State<Calls>, n: i64| async move {
                *calls.lock().unwrap().entry(n.to_string()).or_default() += 1;
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, ["1", "not a number", "3"].map(Input::new)).await;
    let dead_letters = collect(&dead, 1, WAIT);
    wait_for(WAIT, "every offset committed", || {
        committed(&group, &input, 1) == [3]
    })
    .await;
    running.shutdown().await.expect("shutdown");
    assert_eq!(count(&calls, "1") + count(&calls, "3"), 2);
    assert_eq!(dead_letters.len(), 1);
    let header = |name: &str| dead_letters[0].headers.get(name).map(String::as_str);
    assert_eq!(dead_letters[0].payload, "not a number");
    assert_eq!(header("dlt-exception-type"), Some("DecodeError"));
    assert_eq!(
        header("dlt-attempts"),
        Some("1"),
        "decode errors are not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_output_publish_is_retried_then_dead_lettered() {
    let (input, output) = (unique("pol-big-in"), unique("pol-big-out"));
    let dead = format!("{input}-dlt");
    create_topic(&input, 1).await;
    // The broker refuses records over 2,000 bytes on the output topic.
    create_topic_with(&output, 1, &[("max.message.bytes", "2000")]).await;
    create_topic(&dead, 1).await;
    let group = unique("g");
    let calls: Calls = Arc::default();
    let running = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .subscriber(
            SubscriberConfig::new("inflate", [input.as_str()])
                .group_id(group.as_str())
                .publish_to(output.as_str())
                .error_policy(quick_retries(2).then_dead_letter()),
            |calls: State<Calls>, size: usize| async move {
                *calls.lock().unwrap().entry(size.to_string()).or_default() += 1;
                "x".repeat(size)
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, ["10", "5000", "20"].map(Input::new)).await;
    let dead_letters = collect(&dead, 1, WAIT);
    let out = collect(&output, 2, WAIT);
    wait_for(WAIT, "every offset committed", || {
        committed(&group, &input, 1) == [3]
    })
    .await;
    running.shutdown().await.expect("shutdown");
    assert_eq!(
        out.iter().map(|o| o.payload.len()).collect::<Vec<_>>(),
        [10, 20]
    );
    assert_eq!(count(&calls, "5000"), 2, "the refused message ran twice");
    assert_eq!(dead_letters.len(), 1);
    let header = |name: &str| dead_letters[0].headers.get(name).map(String::as_str);
    assert_eq!(dead_letters[0].payload, "5000");
    assert_eq!(header("dlt-exception-type"), Some("PublishRefused"));
    assert_eq!(header("dlt-attempts"), Some("2"));
    assert_eq!(header("dlt-original-offset"), Some("1"));
    // Each refusal is logged once, naming the input record (the partition's tracker logs it).
    let refused = logs().lines_with(&format!(
        "publish for message {input}[0]@1 was not acknowledged"
    ));
    assert_eq!(refused.len(), 2, "{refused:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_halts_only_its_partition_and_keeps_the_offset_uncommitted() {
    let input = unique("pol-stop");
    create_topic(&input, 2).await;
    let group = unique("g");
    let calls: Calls = Arc::default();
    let running = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .subscriber(
            SubscriberConfig::new("strict", [input.as_str()])
                .group_id(group.as_str())
                .error_policy(quick_retries(2).then_stop()),
            |calls: State<Calls>, text: String| async move {
                *calls.lock().unwrap().entry(text.clone()).or_default() += 1;
                if text.starts_with("bad") {
                    Err(std::io::Error::other("cannot handle"))
                } else {
                    Ok(())
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [
            Input::new("p0-a").partition(0),
            Input::new("bad-p0").partition(0),
            Input::new("p0-c").partition(0),
            Input::new("p1-a").partition(1),
            Input::new("p1-b").partition(1),
            Input::new("p1-c").partition(1),
        ],
    )
    .await;
    wait_for(WAIT, "partition 1 committed", || {
        committed(&group, &input, 2)[1] == 3
    })
    .await;
    wait_for(WAIT, "the bad message tried twice", || {
        count(&calls, "bad-p0") == 2
    })
    .await;
    running.shutdown().await.expect("shutdown");
    assert_eq!(committed(&group, &input, 2), [1, 3]);
    assert_eq!(
        count(&calls, "p0-c"),
        0,
        "nothing after the stop is handled"
    );
}
