//! Parallelism inside a partition (key-ordered lanes) and manual acknowledgement that means
//! it: each body runs in the in-memory `TestBroker` and on the local Kafka (its own topics and
//! groups).

use faststream::testing::TestBroker;
use faststream::{Ack, AckPolicy, Broker, FastStream, Key, Record, State, SubscriberConfig};
use faststream_integration_tests::{both_modes, logs, unique, wait_for};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(30);

/// Writes `(key, value)` records to partition 0 of `topic`, in this order.
async fn write(broker: &TestBroker, topic: &str, records: &[(String, i64)]) {
    let records = records.iter().map(|(key, n)| {
        Record::encode(topic, n)
            .unwrap()
            .key(key.clone())
            .partition(0)
    });
    broker.publish_batch(records).await.unwrap();
}

/// Waits until the group's committed offset of partition 0 is `offset`.
async fn committed_reaches(broker: &TestBroker, group: &str, topic: &str, offset: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = broker.committed(group, topic, 0).await;
        if now == Some(offset) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed offset {now:?}, never {offset}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Handler calls running now, and the most seen at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Records with the same key keep their order under lanes, whatever each call takes; records
// of different keys run at once, as many as `max_concurrency` allows.

type Seen = Arc<Mutex<HashMap<String, Vec<i64>>>>;

async fn per_key_order(broker: TestBroker) {
    let topic = unique("lanes-order");
    let group = unique("lanes-order-g");
    broker.create_topic(&topic, 1).await.unwrap();
    let (keys, per_key) = (40, 25);
    // Interleaved: key 0's first, key 1's first, ..., key 0's second...
    let records: Vec<(String, i64)> = (0..per_key)
        .flat_map(|n| (0..keys).map(move |k| (format!("key-{k}"), n)))
        .collect();
    write(&broker, &topic, &records).await;
    let seen: Seen = Arc::default();
    let gauge = Arc::new(Gauge::default());
    let app = FastStream::new(broker.clone())
        .with_state((Arc::clone(&seen), Arc::clone(&gauge)))
        .subscriber(
            SubscriberConfig::new("ordered", [topic.as_str()])
                .group_id(group.as_str())
                .lanes(8)
                .max_concurrency(4),
            |key: Key<String>, state: State<(Seen, Arc<Gauge>)>, n: i64| async move {
                let (seen, gauge) = &*state.0;
                gauge.enter();
                // A different delay for each record, 0 to 3 ms: a later record of a key often
                // takes less than an earlier one.
                let spread =
                    (n as u64 * 7 + key.0.len() as u64 * 13 + key.0.as_bytes()[4] as u64) % 4;
                tokio::time::sleep(Duration::from_millis(spread)).await;
                seen.lock()
                    .unwrap()
                    .entry(key.0.clone())
                    .or_default()
                    .push(n);
                gauge.leave();
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    wait_for(WAIT, "every record", || {
        seen.lock().unwrap().values().map(Vec::len).sum::<usize>() == records.len()
    })
    .await;
    committed_reaches(&broker, &group, &topic, records.len() as i64).await;
    test.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), keys);
    for (key, values) in seen.iter() {
        assert_eq!(*values, (0..per_key).collect::<Vec<_>>(), "order of {key}");
    }
    let peak = gauge.peak.load(Ordering::SeqCst);
    assert!(peak > 1, "lanes run records of different keys at once");
    assert!(
        peak <= 4,
        "max_concurrency bounds the lanes: {peak} at once"
    );
}
both_modes!(
    lanes_keep_per_key_order_in_memory,
    lanes_keep_per_key_order_on_kafka,
    per_key_order
);

// ---------------------------------------------------------------------------------------
// The committed offset never passes a record a lane has not finished, while other lanes
// finish the records after it; health shows the held lane's wait.

/// Values handled, and the gate the held record waits at.
type Gated = (Arc<Mutex<Vec<i64>>>, Arc<Semaphore>);

async fn commit_below_unfinished_lane(broker: TestBroker) {
    let topic = unique("lanes-gap");
    let group = unique("lanes-gap-g");
    broker.create_topic(&topic, 1).await.unwrap();
    let mut records = vec![("held".to_owned(), -1)];
    records.extend((0..30).map(|n| (format!("other-{n}"), n)));
    write(&broker, &topic, &records).await;
    let handled: Arc<Mutex<Vec<i64>>> = Arc::default();
    let gate = Arc::new(Semaphore::new(0));
    let app = FastStream::new(broker.clone())
        .with_state((Arc::clone(&handled), Arc::clone(&gate)))
        .subscriber(
            SubscriberConfig::new("gapped", [topic.as_str()])
                .group_id(group.as_str())
                .lanes(4),
            |state: State<Gated>, n: i64| async move {
                let (handled, gate) = &*state.0;
                if n < 0 {
                    gate.acquire().await.unwrap().forget();
                }
                handled.lock().unwrap().push(n);
            },
        );
    let mut test = TestBroker::start(app).await.unwrap();
    // The held record's lane (about a quarter of the keys) waits behind it; the other lanes
    // finish theirs.
    wait_for(WAIT, "records of other lanes", || {
        handled.lock().unwrap().len() >= 15
    })
    .await;
    // Longer than Kafka's auto-commit interval (1 s): had the watermark passed offset 0, it
    // would be committed by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let committed = broker.committed(&group, &topic, 0).await;
    assert!(
        committed.is_none_or(|next| next <= 0),
        "committed {committed:?} past the unfinished record at offset 0"
    );
    assert!(!handled.lock().unwrap().contains(&-1));
    let health = test.running().unwrap().health();
    let lanes = &health.subscribers[0].lanes;
    assert_eq!(lanes.len(), 4, "{lanes:?}");
    assert!(
        lanes
            .iter()
            .any(|lane| lane.oldest_in_flight >= Duration::from_secs(1)),
        "the held lane shows its wait: {lanes:?}"
    );
    gate.add_permits(1);
    committed_reaches(&broker, &group, &topic, records.len() as i64).await;
    assert_eq!(handled.lock().unwrap().len(), records.len());
    test.shutdown().await.unwrap();
}
both_modes!(
    commit_stays_below_an_unfinished_lane_in_memory,
    commit_stays_below_an_unfinished_lane_on_kafka,
    commit_below_unfinished_lane
);

// ---------------------------------------------------------------------------------------
// Under `AckPolicy::Manual`, a record its handler leaves undecided is not committed: it comes
// again after a restart, and an `Ack` moved into another task decides it there.

type Kept = Arc<Mutex<Vec<Ack>>>;
type Calls = Arc<Mutex<Vec<i64>>>;

async fn manual_undecided(broker: TestBroker) {
    logs();
    let topic = unique("manual-late");
    let group = unique("manual-late-g");
    broker.create_topic(&topic, 1).await.unwrap();
    write(&broker, &topic, &[("a".into(), 1), ("b".into(), 2)]).await;
    let calls: Calls = Arc::default();
    let kept: Kept = Arc::default();
    let subscriber = || {
        SubscriberConfig::new("manual", [topic.as_str()])
            .group_id(group.as_str())
            .ack_policy(AckPolicy::Manual)
    };

    // First run: 1 is kept undecided, 2 is acked. Nothing is committed: the watermark holds
    // at 1.
    let app = FastStream::new(broker.clone())
        .with_state((Arc::clone(&calls), Arc::clone(&kept)))
        .subscriber(
            subscriber(),
            |ack: Ack, state: State<(Calls, Kept)>, n: i64| async move {
                let (calls, kept) = &*state.0;
                calls.lock().unwrap().push(n);
                if n == 1 {
                    kept.lock().unwrap().push(ack);
                } else {
                    ack.ack();
                }
            },
        );
    let mut test = TestBroker::start(app).await.unwrap();
    wait_for(WAIT, "both records", || calls.lock().unwrap().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        broker.committed(&group, &topic, 0).await,
        None,
        "the undecided record holds the watermark"
    );
    let health = test.running().unwrap().health();
    let waited = health.subscribers[0].oldest_in_flight;
    assert!(
        waited >= Duration::from_secs(1),
        "health shows the wait: {waited:?}"
    );
    assert!(
        health.subscribers[0].buffered_bytes > 0,
        "the memory budget counts the undecided record"
    );
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &topic, 0).await, None);
    kept.lock().unwrap().clear();
    let dropped = format!("{topic}[0]@0: its `Ack` was dropped undecided");
    assert_eq!(logs().lines_with(&dropped).len(), 1, "one warning line");

    // Second run: both come again; 1 is acked from another task after its handler returned.
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&calls))
        .subscriber(
            subscriber(),
            |ack: Ack, calls: State<Calls>, n: i64| async move {
                calls.lock().unwrap().push(n);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    ack.ack();
                });
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    committed_reaches(&broker, &group, &topic, 2).await;
    test.shutdown().await.unwrap();
    assert_eq!(
        *calls.lock().unwrap(),
        [1, 2, 1, 2],
        "redelivered after the restart"
    );
}
both_modes!(
    manual_undecided_is_not_committed_in_memory,
    manual_undecided_is_not_committed_on_kafka,
    manual_undecided
);

// ---------------------------------------------------------------------------------------
// A failing record retries inside its lane: the other lanes go on meanwhile; once exhausted
// it is dead-lettered alone, and everything is committed.

type Events = Arc<Mutex<Vec<String>>>;

async fn retry_inside_its_lane(broker: TestBroker) {
    let topic = unique("lanes-retry");
    let dead = format!("{topic}-dlt");
    let group = unique("lanes-retry-g");
    broker.create_topic(&topic, 1).await.unwrap();
    broker.create_topic(&dead, 1).await.unwrap();
    // The poison record first: without lanes, nothing after it runs before its retry.
    let mut records = vec![("poison".to_owned(), -1)];
    records.extend((0..20).map(|n| (format!("k{n}"), n)));
    write(&broker, &topic, &records).await;
    let events: Events = Arc::default();
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&events))
        .subscriber(
            SubscriberConfig::new("retried", [topic.as_str()])
                .group_id(group.as_str())
                .lanes(4)
                .error_policy(
                    faststream::ErrorPolicy::retry(2)
                        .backoff(faststream::Backoff {
                            initial: Duration::from_millis(800),
                            max: Duration::from_millis(800),
                        })
                        .then_dead_letter(),
                ),
            |events: State<Events>, n: i64| async move {
                if n < 0 {
                    events.lock().unwrap().push("attempt".into());
                    return Err(std::io::Error::other("poison"));
                }
                events.lock().unwrap().push(format!("done {n}"));
                Ok(())
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    let letter = test.published(dead.as_str()).assert_one(-1).await;
    assert_eq!(letter.headers.get_str("dlt-original-offset"), Some("0"));
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    committed_reaches(&broker, &group, &topic, records.len() as i64).await;
    test.shutdown().await.unwrap();
    let events = events.lock().unwrap().clone();
    let attempts: Vec<usize> = (0..events.len())
        .filter(|&i| events[i] == "attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{events:?}");
    // Without lanes nothing after the poison record runs before its second attempt.
    let before_retry = events[..attempts[1]]
        .iter()
        .filter(|e| e.starts_with("done"))
        .count();
    assert!(
        before_retry >= 10,
        "the other lanes ran while the poison record waited for its retry: {events:?}"
    );
    assert_eq!(events.len(), 22, "every other record once: {events:?}");
}
both_modes!(
    a_retry_waits_inside_its_lane_in_memory,
    a_retry_waits_inside_its_lane_on_kafka,
    retry_inside_its_lane
);

// ---------------------------------------------------------------------------------------
// A stop that leaves one lane's record unfinished commits below it, naming in the commit's
// metadata the records the other lanes finished above it: after a restart every record has
// run exactly once.

async fn restart_skips_finished(broker: TestBroker) {
    let topic = unique("lanes-resume");
    let group = unique("lanes-resume-g");
    broker.create_topic(&topic, 1).await.unwrap();
    let mut records = vec![("held".to_owned(), -1)];
    records.extend((0..30).map(|n| (format!("other-{n}"), n)));
    write(&broker, &topic, &records).await;
    let handled: Arc<Mutex<Vec<i64>>> = Arc::default();
    let app = |hold: bool| {
        FastStream::new(broker.clone())
            .graceful_timeout(Duration::from_millis(500))
            .with_state(Arc::clone(&handled))
            .subscriber(
                SubscriberConfig::new("resumed", [topic.as_str()])
                    .group_id(group.as_str())
                    .lanes(4),
                move |handled: State<Arc<Mutex<Vec<i64>>>>, n: i64| async move {
                    if n < 0 && hold {
                        // Never finishes: cancelled at the graceful timeout.
                        std::future::pending::<()>().await;
                    }
                    handled.lock().unwrap().push(n);
                },
            )
    };
    let test = TestBroker::start(app(true)).await.unwrap();
    wait_for(WAIT, "records of other lanes", || {
        handled.lock().unwrap().len() >= 15
    })
    .await;
    // Past Kafka's auto-commit interval: the metadata is committed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    test.shutdown().await.unwrap();
    let first = handled.lock().unwrap().clone();
    let committed = broker.committed(&group, &topic, 0).await;
    assert!(
        committed.is_none_or(|next| next <= 0),
        "committed {committed:?} past the unfinished record at offset 0"
    );

    let test = TestBroker::start(app(false)).await.unwrap();
    committed_reaches(&broker, &group, &topic, records.len() as i64).await;
    test.shutdown().await.unwrap();
    let all = handled.lock().unwrap().clone();
    let second = &all[first.len()..];
    assert!(second.contains(&-1), "the unfinished record ran again");
    let again: Vec<&i64> = second.iter().filter(|n| first.contains(n)).collect();
    assert!(
        again.is_empty(),
        "records finished before the restart ran again: {again:?} (first run {first:?})"
    );
    assert_eq!(all.len(), records.len(), "every record exactly once");
}
both_modes!(
    a_restart_skips_what_other_lanes_finished_in_memory,
    a_restart_skips_what_other_lanes_finished_on_kafka,
    restart_skips_finished
);
