//! The runtime on a real Kafka broker: delivery, order, groups, errors, wire format.

use faststream::kafka::KafkaBroker;
use faststream::{
    AckPolicy, Backoff, Broker, FastStream, Headers, Key, Meta, Record, Response, State,
    SubscriberConfig,
};
use faststream_integration_tests::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// What handlers saw, shared with the test through app state.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_output_is_published_with_wire_headers() {
    let (input, output) = (unique("rt-in"), unique("rt-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let app = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("upper", [input.as_str()])
                .group_id(unique("g"))
                .publish_to(output.as_str()),
            |text: String| async move { text.to_uppercase() },
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [
            Input::new("hello").header("correlation_id", "cid-1"),
            Input::new("world"),
        ],
    )
    .await;
    let out = collect(&output, 2, WAIT);
    app.shutdown().await.expect("shutdown");
    assert_eq!(
        out.iter().map(|o| o.payload.as_str()).collect::<Vec<_>>(),
        ["HELLO", "WORLD"]
    );
    assert_eq!(
        out[0].headers.get("content-type").map(String::as_str),
        Some("text/plain")
    );
    assert_eq!(
        out[0].headers.get("correlation_id").map(String::as_str),
        Some("cid-1")
    );
    let generated = out[1]
        .headers
        .get("correlation_id")
        .expect("a correlation id is always written");
    assert_eq!(
        uuid::Uuid::parse_str(generated).map(|u| u.get_version_num()),
        Ok(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_kept_per_partition_and_a_slow_partition_blocks_no_other() {
    const PARTITIONS: i32 = 6;
    const PER_PARTITION: i64 = 100;
    let input = unique("order-in");
    create_topic(&input, PARTITIONS).await;
    // Every record of partition 0 is slow; the others must all finish before it does.
    let seen: Log<(i32, i64, Instant)> = Arc::default();
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&seen))
        .subscriber(
            SubscriberConfig::new("order", [input.as_str()]).group_id(unique("g")),
            |meta: Meta, seen: State<Log<(i32, i64, Instant)>>, seq: i64| async move {
                if meta.partition == 0 {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                seen.lock()
                    .unwrap()
                    .push((meta.partition, seq, Instant::now()));
            },
        )
        .start()
        .await
        .expect("app starts");
    let inputs = (0..PER_PARTITION)
        .flat_map(|seq| (0..PARTITIONS).map(move |p| Input::new(seq.to_string()).partition(p)));
    produce(&input, inputs).await;
    let total = (PARTITIONS as usize) * PER_PARTITION as usize;
    wait_for(WAIT, "all records handled", || {
        seen.lock().unwrap().len() >= total
    })
    .await;
    app.shutdown().await.expect("shutdown");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        total,
        "each record handled exactly once in steady state"
    );
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, seq, _) in &seen {
        per_partition.entry(*p).or_default().push(*seq);
    }
    for (p, seqs) in &per_partition {
        assert_eq!(
            seqs,
            &(0..PER_PARTITION).collect::<Vec<_>>(),
            "partition {p} handled out of order"
        );
    }
    let slow_done = seen
        .iter()
        .filter(|(p, ..)| *p == 0)
        .map(|(.., t)| *t)
        .max()
        .unwrap();
    let fast_done = seen
        .iter()
        .filter(|(p, ..)| *p != 0)
        .map(|(.., t)| *t)
        .max()
        .unwrap();
    assert!(
        fast_done < slow_done,
        "fast partitions finished only after the slow one"
    );
    // 100 x 30 ms on partition 0 takes >= 3 s; the others must not have waited for it.
    let first = seen.iter().map(|(.., t)| *t).min().unwrap();
    assert!(
        fast_done - first < (slow_done - first) / 2,
        "fast partitions were held back by the slow one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_share_partitions_without_double_handling() {
    const PARTITIONS: i32 = 6;
    let input = unique("group-in");
    let group = unique("g");
    create_topic(&input, PARTITIONS).await;
    type Seen = Arc<Mutex<Vec<(usize, i32, i64)>>>;
    let seen: Seen = Arc::default();
    let start = |instance: usize| {
        FastStream::new(broker().consumer_set("session.timeout.ms", "10000"))
            .with_state(Arc::clone(&seen))
            .subscriber(
                SubscriberConfig::new("shared", [input.as_str()]).group_id(group.as_str()),
                move |meta: Meta, seen: State<Seen>, _body: String| async move {
                    seen.lock()
                        .unwrap()
                        .push((instance, meta.partition, meta.offset));
                },
            )
            .start()
    };
    let first = start(1).await.expect("first instance");
    let second = start(2).await.expect("second instance");
    // Steady state: keep sending a warm-up record to every partition until both instances
    // handled some and every partition was handled, i.e. the group settled on two members.
    let deadline = Instant::now() + WAIT;
    loop {
        produce(
            &input,
            (0..PARTITIONS).map(|p| Input::new("warm-up").partition(p)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = seen.lock().unwrap();
        let owners: HashSet<usize> = seen.iter().map(|(i, ..)| *i).collect();
        let recent: HashSet<i32> = seen
            .iter()
            .rev()
            .take(PARTITIONS as usize)
            .map(|(_, p, _)| *p)
            .collect();
        if owners.len() == 2 && recent.len() == PARTITIONS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group never settled on two members"
        );
    }
    wait_for(WAIT, "warm-up drained", || {
        seen.lock()
            .unwrap()
            .len()
            .is_multiple_of(PARTITIONS as usize)
    })
    .await;
    let warm_up = seen.lock().unwrap().len();
    produce(
        &input,
        (0..600).map(|i| Input::new(format!("m{i}")).partition(i % PARTITIONS)),
    )
    .await;
    wait_for(WAIT, "600 records handled", || {
        seen.lock().unwrap().len() >= warm_up + 600
    })
    .await;
    // Nothing more arrives: no record is handled twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.shutdown().await.expect("shutdown 1");
    second.shutdown().await.expect("shutdown 2");
    let seen = seen.lock().unwrap().clone();
    let steady: Vec<_> = seen[warm_up..].to_vec();
    let unique_records: HashSet<(i32, i64)> = steady.iter().map(|(_, p, o)| (*p, *o)).collect();
    assert_eq!(
        steady.len(),
        600,
        "steady-state records handled more than once: {}",
        steady.len()
    );
    assert_eq!(unique_records.len(), 600);
    let mut owners: BTreeMap<i32, HashSet<usize>> = BTreeMap::new();
    for (i, p, _) in &steady {
        owners.entry(*p).or_default().insert(*i);
    }
    assert!(
        owners.values().all(|o| o.len() == 1),
        "a partition was handled by both instances: {owners:?}"
    );
    let per_instance: HashSet<usize> = steady.iter().map(|(i, ..)| *i).collect();
    assert_eq!(per_instance.len(), 2, "both instances take part");
}

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct User {
    user: String,
    user_id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_logged_and_skipped_and_consumption_goes_on() {
    let input = unique("bad-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&handled))
        .subscriber(
            SubscriberConfig::new("users", [input.as_str()]).group_id(group.as_str()),
            |handled: State<Arc<Mutex<Vec<String>>>>, user: User| async move {
                handled.lock().unwrap().push(user.user);
            },
        )
        .start()
        .await
        .expect("app starts");
    let bad = [
        &br#"{"user": "a", "user_id": 1"#[..], // malformed JSON (offset 1)
        br#"{"user": "b", "user_id": "x"}"#,   // wrong type (2)
        br#"{"user": "c"}"#,                   // missing field (3)
        b"",                                   // empty (4)
        &[0xff, 0xfe, 0x00],                   // not UTF-8 / not JSON (5)
    ];
    let inputs = std::iter::once(Input::new(r#"{"user":"first","user_id":1}"#))
        .chain(bad.iter().map(|b| Input::new(b.to_vec())))
        .chain(std::iter::once(Input::new(
            r#"{"user":"last","user_id":2}"#,
        )));
    produce(&input, inputs).await;
    wait_for(WAIT, "good records handled", || {
        handled.lock().unwrap().len() >= 2
    })
    .await;
    wait_for(WAIT, "offsets committed past the bad records", || {
        committed(&group, &input, 1) == vec![7]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert_eq!(*handled.lock().unwrap(), ["first", "last"]);
    let lines = logs().lines_with(&input);
    for (offset, expected) in [
        (1, "EOF while parsing"),
        (2, "(at `user_id`)"),
        (3, "missing field `user_id`"),
        (4, "empty payload"),
        (5, "expected value"),
    ] {
        let needle = format!("{input}[0]@{offset} failed");
        let matching: Vec<_> = lines.iter().filter(|l| l.contains(&needle)).collect();
        assert_eq!(
            matching.len(),
            1,
            "one error line for offset {offset}: {lines:#?}"
        );
        assert!(matching[0].contains("ERROR"), "{}", matching[0]);
        assert!(
            matching[0].contains(expected),
            "offset {offset}: {}",
            matching[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_after_logs_a_failing_handler_and_commits_past_it() {
    let input = unique("ackafter-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .subscriber(
            SubscriberConfig::new("fails", [input.as_str()]).group_id(group.as_str()),
            |calls: State<Arc<AtomicUsize>>, n: i64| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                if n == 2 {
                    Err(std::io::Error::other("boom on two"))
                } else {
                    Ok(())
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, (1..=3).map(|n| Input::new(n.to_string()))).await;
    wait_for(WAIT, "offsets committed", || {
        committed(&group, &input, 1) == vec![3]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "each record handled once, the failing one not retried"
    );
    let lines = logs().lines_with(&format!("{input}[0]@1 failed: boom on two"));
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_on_error_redelivers_with_backoff_before_moving_on() {
    let input = unique("nack-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let calls: Log<(i64, Instant)> = Arc::default();
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .subscriber(
            SubscriberConfig::new("flaky", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::NackOnError)
                .backoff(Backoff {
                    initial: Duration::from_millis(100),
                    max: Duration::from_millis(400),
                }),
            |calls: State<Log<(i64, Instant)>>, n: i64| async move {
                let attempts = {
                    let mut calls = calls.lock().unwrap();
                    calls.push((n, Instant::now()));
                    calls.iter().filter(|(m, _)| *m == n).count()
                };
                if n == 1 && attempts < 3 {
                    Err(std::io::Error::other("not yet"))
                } else {
                    Ok(())
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, [Input::new("1"), Input::new("2")]).await;
    wait_for(WAIT, "offsets committed", || {
        committed(&group, &input, 1) == vec![2]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 1, 1, 2],
        "retried in place, in order"
    );
    let gaps: Vec<Duration> = calls.windows(2).take(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(
        gaps[0] >= Duration::from_millis(100),
        "first backoff {:?}",
        gaps[0]
    );
    assert!(
        gaps[1] >= Duration::from_millis(200),
        "second backoff doubles: {:?}",
        gaps[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_first_commits_before_the_handler_finishes() {
    let input = unique("ackfirst-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let app =
        FastStream::new(broker())
            .with_state(Arc::clone(&release))
            .subscriber(
                SubscriberConfig::new("first", [input.as_str()])
                    .group_id(group.as_str())
                    .ack_policy(AckPolicy::AckFirst),
                |release: State<Arc<tokio::sync::Notify>>, _n: i64| async move {
                    release.notified().await
                },
            )
            .start()
            .await
            .expect("app starts");
    produce(&input, [Input::new("1")]).await;
    // The handler is still blocked, yet the offset is committed: at-most-once.
    wait_for(WAIT, "offset committed while the handler runs", || {
        committed(&group, &input, 1) == vec![1]
    })
    .await;
    release.notify_one();
    app.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_after_does_not_commit_while_the_handler_runs() {
    let input = unique("ackafter-block-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let started = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&release))
        .with_state(Arc::clone(&started))
        .subscriber(
            SubscriberConfig::new("slow", [input.as_str()]).group_id(group.as_str()),
            |release: State<Arc<tokio::sync::Notify>>,
             started: State<Arc<AtomicUsize>>,
             _n: i64| async move {
                started.fetch_add(1, Ordering::SeqCst);
                release.notified().await
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, [Input::new("1")]).await;
    wait_for(WAIT, "handler started", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    // Two auto-commit intervals pass with the handler blocked: nothing may be committed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(committed(&group, &input, 1), vec![-1]);
    release.notify_one();
    wait_for(WAIT, "offset committed after the handler", || {
        committed(&group, &input, 1) == vec![1]
    })
    .await;
    app.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_ack_nack_and_reject() {
    let input = unique("manual-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&calls))
        .subscriber(
            SubscriberConfig::new("manual", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::Manual)
                .backoff(Backoff {
                    initial: Duration::from_millis(50),
                    max: Duration::from_millis(50),
                }),
            |ack: faststream::Ack, calls: State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                let seen_before = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(body.clone());
                    calls.iter().filter(|b| **b == body).count() > 1
                };
                match body.as_str() {
                    "nack-once" if !seen_before => ack.nack(),
                    "reject" => ack.reject(),
                    _ => ack.ack(),
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [
            Input::new("nack-once"),
            Input::new("reject"),
            Input::new("ok"),
        ],
    )
    .await;
    wait_for(WAIT, "offsets committed", || {
        committed(&group, &input, 1) == vec![3]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert_eq!(
        *calls.lock().unwrap(),
        ["nack-once", "nack-once", "reject", "ok"]
    );
    assert_eq!(
        logs()
            .lines_with(&format!("{input}[0]@1 rejected by its handler is skipped"))
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_headers_and_correlation_id_round_trip() {
    let (input, output) = (unique("kh-in"), unique("kh-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 3).await;
    let app = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("echo", [input.as_str()])
                .group_id(unique("g"))
                .publish_to(output.as_str()),
            |key: Key<String>, headers: Headers, body: serde_json::Value| async move {
                let tenant = headers.get_str("tenant").unwrap_or("none").to_owned();
                Response::new(serde_json::json!({"echo": body, "tenant": tenant}))
                    .key(format!("{}-out", key.0))
                    .header("tenant", tenant)
                    .partition(2)
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [Input::new(r#"{"a":1}"#)
            .key("k1")
            .header("tenant", "acme")
            .header("correlation_id", "corr-42")],
    )
    .await;
    let out = collect(&output, 1, WAIT);
    app.shutdown().await.expect("shutdown");
    assert_eq!(out.len(), 1);
    let record = &out[0];
    assert_eq!(record.key.as_deref(), Some("k1-out"));
    assert_eq!(record.partition, 2);
    assert_eq!(record.headers["tenant"], "acme");
    assert_eq!(record.headers["correlation_id"], "corr-42");
    assert_eq!(record.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&record.payload).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"echo": {"a": 1}, "tenant": "acme"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_is_honoured_with_the_request_correlation_id() {
    let (input, replies) = (unique("rpc-in"), unique("rpc-replies"));
    create_topic(&input, 1).await;
    create_topic(&replies, 1).await;
    let broker = broker();
    let app = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("square", [input.as_str()]).group_id(unique("g")),
            |n: i64| async move { n * n },
        )
        .start()
        .await
        .expect("app starts");
    let request = Record::encode(input.as_str(), &7)
        .unwrap()
        .reply_to(replies.clone())
        .correlation_id("req-7");
    let delivered = broker.publish_record(request).await.expect("published");
    assert_eq!((delivered.partition, delivered.offset), (0, 0));
    let out = collect(&replies, 1, WAIT);
    app.shutdown().await.expect("shutdown");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, "49");
    assert_eq!(out[0].headers["correlation_id"], "req-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_api_reports_where_records_landed() {
    let topic = unique("pub");
    create_topic(&topic, 3).await;
    let broker = broker();
    let first = broker
        .publish_record(
            Record::encode(topic.as_str(), "a")
                .unwrap()
                .partition(1)
                .key("k"),
        )
        .await
        .unwrap();
    let second = broker
        .publish_record(Record::encode(topic.as_str(), "b").unwrap().partition(1))
        .await
        .unwrap();
    assert_eq!((first.partition, first.offset), (1, 0));
    assert_eq!((second.partition, second.offset), (1, 1));
    for i in 0..100 {
        broker
            .publish_nowait(Record::encode(topic.as_str(), &i).unwrap().partition(2))
            .await
            .unwrap();
    }
    broker.flush(Duration::from_secs(10)).await.unwrap();
    let out = collect(&topic, 102, WAIT);
    assert_eq!(out.len(), 102);
    let on_two: Vec<_> = out
        .iter()
        .filter(|o| o.partition == 2)
        .map(|o| o.payload.clone())
        .collect();
    assert_eq!(on_two, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        out.iter().find(|o| o.payload == "a").unwrap().headers["content-type"],
        "text/plain"
    );
}

/// An extractor that panics on the payload "boom": a bug in user extraction code.
struct Fragile;

impl faststream::FromMessageParts for Fragile {
    fn from_message_parts(
        message: &faststream::Message,
        _cx: &faststream::extract::MessageContext<'_>,
    ) -> faststream::Extraction<Self> {
        assert!(&message.payload[..] != b"boom", "extractor bug");
        faststream::Extraction::ready(Fragile)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_in_extractors_and_handlers_fail_one_message_not_the_partition() {
    let input = unique("panic-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let handled: Log<String> = Arc::default();
    let app = FastStream::new(broker())
        .with_state(Arc::clone(&handled))
        .subscriber(
            SubscriberConfig::new("fragile", [input.as_str()]).group_id(group.as_str()),
            |_fragile: Fragile, handled: State<Log<String>>, body: String| async move {
                assert!(body != "panic", "handler bug");
                handled.lock().unwrap().push(body);
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, ["a", "boom", "panic", "b"].map(Input::new)).await;
    wait_for(WAIT, "offsets committed past the panics", || {
        committed(&group, &input, 1) == vec![4]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert_eq!(*handled.lock().unwrap(), ["a", "b"]);
    let lines = logs().lines_with(&input);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("@1 failed: handler panicked: extractor bug")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("@2 failed: handler panicked: handler bug")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_run_in_order_and_a_failing_startup_hook_aborts() {
    let input = unique("hooks-in");
    create_topic(&input, 1).await;
    let order: Log<&'static str> = Arc::default();
    let hook = |name: &'static str| {
        let order = Arc::clone(&order);
        move || async move { order.lock().unwrap().push(name) }
    };
    let app = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("hooks", [input.as_str()]).group_id(unique("g")),
            |_body: String| async {},
        )
        .on_startup(hook("on_startup"))
        .after_startup(hook("after_startup"))
        .on_shutdown(hook("on_shutdown"))
        .after_shutdown(hook("after_shutdown"))
        .start()
        .await
        .expect("app starts");
    assert_eq!(*order.lock().unwrap(), ["on_startup", "after_startup"]);
    app.shutdown().await.expect("shutdown");
    assert_eq!(
        *order.lock().unwrap(),
        [
            "on_startup",
            "after_startup",
            "on_shutdown",
            "after_shutdown"
        ]
    );

    let refused = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("never", [input.as_str()]).group_id(unique("g")),
            |_body: String| async {},
        )
        .on_startup(|| async { Err::<(), _>(std::io::Error::other("config missing")) })
        .start()
        .await;
    match refused {
        Err(faststream::Error::Hook { hook, source }) => {
            assert_eq!(hook, "on_startup");
            assert_eq!(source.to_string(), "config missing");
        }
        other => panic!("a failing on_startup hook must abort the start: {other:?}"),
    }
}

/// Names the `x-user-id` header for [`faststream::Header`].
struct UserIdHeader;

impl faststream::HeaderName for UserIdHeader {
    const NAME: &'static str = "x-user-id";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_headers_are_logged_and_skipped() {
    let input = unique("hdr-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let handled: Log<i64> = Arc::default();
    let app =
        FastStream::new(broker())
            .with_state(Arc::clone(&handled))
            .subscriber(
                SubscriberConfig::new("by_header", [input.as_str()]).group_id(group.as_str()),
                |id: faststream::Header<i64, UserIdHeader>,
                 handled: State<Log<i64>>,
                 _body: String| async move {
                    handled.lock().unwrap().push(id.0);
                },
            )
            .start()
            .await
            .expect("app starts");
    produce(
        &input,
        [
            Input::new("a").header("x-user-id", "7"),
            Input::new("b"),
            Input::new("c").header("x-user-id", "seven"),
            Input::new("d").header("x-user-id", "8"),
        ],
    )
    .await;
    wait_for(WAIT, "offsets committed", || {
        committed(&group, &input, 1) == vec![4]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    assert_eq!(*handled.lock().unwrap(), [7, 8]);
    let lines = logs().lines_with(&input);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("@1 failed: missing header `x-user-id`")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("@2 failed: bad header `x-user-id`")),
        "{lines:#?}"
    );
}

/// A record's headers as a handler sees them: names and values, in order.
type SeenHeaders = Vec<(String, Vec<u8>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_headers_arrive_as_written_and_a_bad_name_does_not_stop_the_partition() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let input = unique("fh-in");
    let group = unique("g");
    create_topic(&input, 1).await;
    let seen: Log<(i64, SeenHeaders)> = Arc::default();
    let app =
        FastStream::new(broker())
            .with_state(Arc::clone(&seen))
            .subscriber(
                SubscriberConfig::new("headers", [input.as_str()]).group_id(group.as_str()),
                |meta: Meta,
                 headers: Headers,
                 seen: State<Log<(i64, SeenHeaders)>>,
                 _body: String| async move {
                    let headers = headers
                        .iter()
                        .map(|(name, value)| (name.to_owned(), value.to_vec()))
                        .collect();
                    seen.lock().unwrap().push((meta.offset, headers));
                },
            )
            .start()
            .await
            .expect("app starts");
    let long = vec![b'x'; 5000];
    let header = |key, value| Header { key, value };
    let written = OwnedHeaders::new()
        .insert(header("content-type", Some(&b"text/plain"[..])))
        .insert(header("x-dup", Some(&b"1"[..])))
        .insert(header("x-null", None))
        .insert(header("x-empty", Some(&b""[..])))
        .insert(header("x-dup", Some(&b"2"[..])))
        .insert(header("x-long", Some(&long[..])))
        .insert(header("ключ", Some(&b"v"[..])));
    let bad_name = OwnedHeaders::new().insert(header("x-before", Some(&b"ok"[..])));
    let bad = b"bad\xffname";
    // SAFETY: the list is live and writable; librdkafka copies the name and value.
    let added = unsafe {
        rdkafka::bindings::rd_kafka_header_add(
            std::ptr::from_ref(bad_name.as_borrowed()).cast_mut().cast(),
            bad.as_ptr().cast(),
            bad.len() as isize,
            b"v".as_ptr().cast(),
            1,
        )
    };
    assert_eq!(
        added,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    let producer = raw_producer();
    for headers in [None, Some(written), Some(bad_name), None] {
        let mut record = FutureRecord::<(), str>::to(&input).payload("body");
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("acknowledged");
    }
    wait_for(WAIT, "offsets committed", || {
        committed(&group, &input, 1) == vec![4]
    })
    .await;
    app.shutdown().await.expect("shutdown");
    let text = |pairs: &[(&str, &[u8])]| -> SeenHeaders {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect()
    };
    let expected = vec![
        (0, vec![]),
        (
            1,
            text(&[
                ("content-type", b"text/plain"),
                ("x-dup", b"1"),
                ("x-null", b""),
                ("x-empty", b""),
                ("x-dup", b"2"),
                ("x-long", &long),
                ("ключ", b"v"),
            ]),
        ),
        (2, text(&[("x-before", b"ok"), ("bad\u{fffd}name", b"v")])),
        (3, vec![]),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);
    let lines = logs().lines_with(&format!("{input}[0]@2: a header name is not UTF-8"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
}
