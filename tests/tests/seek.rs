//! Seeking a running subscriber (`RunningApp::seek`, the `Seeker` extractor): by timestamp
//! and by offset, dropping in-flight work, committing the sought position, refusing
//! partitions it does not own. Each body runs on the in-memory broker and on Kafka.

use faststream::seek::{Seek, Seeker};
use faststream::testing::{Call, TestBroker};
use faststream::{Broker, Error, FastStream, Record, StartFrom, SubscriberConfig};
use faststream_integration_tests::{both_modes, unique, wait_for};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Publishes `count` numbers to `partition` of `topic`: `partition * 100 + i`, the i-th with
/// the timestamp `base + i` seconds.
async fn fill(broker: &TestBroker, topic: &str, partition: i32, count: i64, base: i64) {
    for i in 0..count {
        let record = Record::encode(topic, &(i64::from(partition) * 100 + i))
            .unwrap()
            .partition(partition)
            .timestamp(base + i * 1_000);
        broker.publish_record(record).await.unwrap();
    }
}

/// Waits until `group` committed `want` on `topic`'s `partition`.
async fn committed_reaches(
    broker: &TestBroker,
    group: &str,
    topic: &str,
    partition: i32,
    want: i64,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = broker.committed(group, topic, partition).await;
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}[{partition}]: committed {now:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The payloads of the finished calls of one partition, in the order they were made.
fn finished_on(calls: &[Call], partition: i32) -> Vec<i64> {
    calls
        .iter()
        .filter(|c| c.outcome.is_some() && c.message.partition == partition)
        .map(|c| c.json().as_i64().unwrap())
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn replay_from_a_timestamp(broker: TestBroker) {
    let (topic, group) = (unique("seek-time"), unique("seek-g"));
    broker.create_topic(&topic, 2).await.unwrap();
    let base = now_ms() - 60_000;
    for partition in 0..2 {
        fill(&broker, &topic, partition, 10, base).await;
    }
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("replayer", [topic.as_str()]).group_id(&group),
        |_n: i64| async move {},
    );
    let mut test = TestBroker::start(app).await.unwrap();
    let calls = test.calls("replayer");
    calls.wait_for(20).await;
    let mut sought = test
        .seek("replayer", Seek::all(StartFrom::Timestamp(base + 6_000)))
        .await
        .unwrap();
    sought.sort_by_key(|s| s.partition.partition);
    let offsets: Vec<(i32, i64)> = sought
        .iter()
        .map(|s| (s.partition.partition, s.offset))
        .collect();
    assert_eq!(
        offsets,
        [(0, 6), (1, 6)],
        "the first record at or after the time"
    );
    let calls = calls.assert_called(28).await;
    for partition in 0..2 {
        let first = i64::from(partition) * 100;
        let expected: Vec<i64> = (first..first + 10).chain(first + 6..first + 10).collect();
        assert_eq!(
            finished_on(&calls, partition),
            expected,
            "partition {partition}"
        );
        committed_reaches(&broker, &group, &topic, partition, 10).await;
    }
    test.shutdown().await.unwrap();
}
both_modes!(
    replay_from_a_timestamp_in_memory,
    replay_from_a_timestamp_on_kafka,
    replay_from_a_timestamp
);

/// A handler stuck on record 2 until dropped, noting that it was.
fn stuck_on_two(
    dropped: Arc<AtomicBool>,
) -> impl Fn(i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    struct NoteDrop(Arc<AtomicBool>);
    impl Drop for NoteDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    move |n: i64| {
        let dropped = Arc::clone(&dropped);
        Box::pin(async move {
            if n == 2 {
                let _note = NoteDrop(dropped);
                std::future::pending::<()>().await;
            }
        })
    }
}

async fn seek_by_offset_drops_in_flight_work(broker: TestBroker) {
    let (topic, group) = (unique("seek-offset"), unique("seek-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    fill(&broker, &topic, 0, 10, now_ms()).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let handler = stuck_on_two(Arc::clone(&dropped));
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("skipper", [topic.as_str()]).group_id(&group),
        move |n: i64| handler(n),
    );
    let mut test = TestBroker::start(app).await.unwrap();
    let calls = test.calls("skipper");
    calls.wait_for(2).await;
    wait_for(Duration::from_secs(10), "the call of record 2", || {
        calls.all().len() == 3
    })
    .await;
    committed_reaches(&broker, &group, &topic, 0, 2).await;
    let sought = test
        .seek(
            "skipper",
            Seek::partition(topic.as_str(), 0, StartFrom::Offset(8)),
        )
        .await
        .unwrap();
    assert_eq!(sought[0].offset, 8);
    let after = calls.wait_for(4).await;
    assert_eq!(finished_on(&after, 0), [0, 1, 8, 9], "3..=7 skipped");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the in-flight handler was dropped"
    );
    assert!(after[2].outcome.is_none(), "record 2 never finished");
    committed_reaches(&broker, &group, &topic, 0, 10).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    seek_by_offset_drops_in_flight_work_in_memory,
    seek_by_offset_drops_in_flight_work_on_kafka,
    seek_by_offset_drops_in_flight_work
);

async fn the_sought_position_is_committed(broker: TestBroker) {
    let (topic, group) = (unique("seek-commit"), unique("seek-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    fill(&broker, &topic, 0, 10, now_ms()).await;
    let handler = stuck_on_two(Arc::new(AtomicBool::new(false)));
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("stuck", [topic.as_str()]).group_id(&group),
        move |n: i64| handler(n),
    );
    let mut test = TestBroker::start(app).await.unwrap();
    let calls = test.calls("stuck");
    wait_for(Duration::from_secs(10), "the call of record 2", || {
        calls.all().len() == 3
    })
    .await;
    // Skips everything there is: nothing is handled, yet the group's position moves.
    let sought = test
        .seek("stuck", Seek::topic(topic.as_str(), StartFrom::Latest))
        .await
        .unwrap();
    assert_eq!(sought[0].offset, 10);
    committed_reaches(&broker, &group, &topic, 0, 10).await;
    test.unsubscribe("stuck").await.unwrap();
    assert_eq!(
        calls.all().iter().filter(|c| c.outcome.is_some()).count(),
        2
    );
    // A new member of the group starts where the seek left it.
    test.subscribe(
        SubscriberConfig::new("after", [topic.as_str()]).group_id(&group),
        |_n: i64| async move {},
    )
    .await
    .unwrap();
    fill(&broker, &topic, 0, 1, now_ms()).await;
    let calls = test.calls("after").assert_called(1).await;
    assert_eq!(
        (calls[0].message.offset, calls[0].json()),
        (10, serde_json::json!(0))
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    the_sought_position_is_committed_in_memory,
    the_sought_position_is_committed_on_kafka,
    the_sought_position_is_committed
);

async fn seeking_what_is_not_owned_is_an_error(broker: TestBroker) {
    let topic = unique("seek-owned");
    broker.create_topic(&topic, 2).await.unwrap();
    fill(&broker, &topic, 1, 1, now_ms()).await;
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("owner", [topic.as_str()])
            .group_id(unique("seek-g"))
            .partitions([1]),
        |_n: i64| async move {},
    );
    let mut test = TestBroker::start(app).await.unwrap();
    test.calls("owner").wait_for(1).await;
    let err = test
        .seek(
            "owner",
            Seek::partitions(
                [
                    faststream::TopicPartition::new(topic.as_str(), 1),
                    faststream::TopicPartition::new(topic.as_str(), 0),
                ],
                StartFrom::Earliest,
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOwned { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{topic}[0]")), "{err}");
    // Nothing moved: partition 1 was not replayed.
    let unknown = test
        .seek("nobody", Seek::all(StartFrom::Earliest))
        .await
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("no running subscriber `nobody`"),
        "{unknown}"
    );
    test.calls("owner").assert_called(1).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    seeking_what_is_not_owned_is_an_error_in_memory,
    seeking_what_is_not_owned_is_an_error_on_kafka,
    seeking_what_is_not_owned_is_an_error
);

async fn a_handler_rewinds_its_own_partition(broker: TestBroker) {
    let topic = unique("seek-self");
    broker.create_topic(&topic, 1).await.unwrap();
    fill(&broker, &topic, 0, 4, now_ms()).await;
    let rewound = Arc::new(AtomicBool::new(false));
    let once = Arc::clone(&rewound);
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("rewinder", [topic.as_str()]).group_id(unique("seek-g")),
        move |seeker: Seeker, n: i64| {
            let once = Arc::clone(&once);
            async move {
                if n == 2 && !once.swap(true, Ordering::SeqCst) {
                    // Ends this call: its own partition's in-flight work is dropped.
                    let _ = seeker.seek(Seek::all(StartFrom::Earliest)).await;
                }
            }
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    let calls = test.calls("rewinder").wait_for(6).await;
    assert_eq!(
        finished_on(&calls, 0),
        [0, 1, 0, 1, 2, 3],
        "2 was dropped, then all again"
    );
    assert!(rewound.load(Ordering::SeqCst));
    test.shutdown().await.unwrap();
}
both_modes!(
    a_handler_rewinds_its_own_partition_in_memory,
    a_handler_rewinds_its_own_partition_on_kafka,
    a_handler_rewinds_its_own_partition
);

async fn a_seek_right_after_the_start_replays(broker: TestBroker) {
    let topic = unique("seek-start");
    broker.create_topic(&topic, 1).await.unwrap();
    fill(&broker, &topic, 0, 5, now_ms()).await;
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("late", [topic.as_str()])
            .group_id(unique("seek-g"))
            .auto_offset_reset(faststream::OffsetReset::Latest),
        |_n: i64| async move {},
    );
    let mut test = TestBroker::start(app).await.unwrap();
    // A seek moves what the subscriber owns: wait for the group to assign the partition.
    let health = test.running().unwrap().health_probe();
    wait_for(Duration::from_secs(20), "the assignment", || {
        !broker.is_real() || health.health().subscribers[0].partitions.len() == 1
    })
    .await;
    // The group starts at the end; before it fetched anything, back to the beginning.
    let sought = test
        .seek("late", Seek::all(StartFrom::Earliest))
        .await
        .unwrap();
    assert_eq!(sought.iter().map(|s| s.offset).collect::<Vec<_>>(), [0]);
    let calls = test.calls("late").assert_called(5).await;
    assert_eq!(finished_on(&calls, 0), [0, 1, 2, 3, 4]);
    test.shutdown().await.unwrap();
}
both_modes!(
    a_seek_right_after_the_start_replays_in_memory,
    a_seek_right_after_the_start_replays_on_kafka,
    a_seek_right_after_the_start_replays
);

async fn a_seek_drops_the_work_of_every_lane(broker: TestBroker) {
    let (topic, group) = (unique("seek-lanes"), unique("seek-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    // Twelve records over four keys in four lanes (by key hash: two keys may share one).
    for i in 0..12_i64 {
        let record = Record::encode(topic.as_str(), &i)
            .unwrap()
            .partition(0)
            .key(format!("k{}", i % 4));
        broker.publish_record(record).await.unwrap();
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let handler = stuck_on_two(Arc::clone(&dropped));
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("laned", [topic.as_str()])
            .group_id(&group)
            .lanes(4),
        move |n: i64| handler(n),
    );
    let mut test = TestBroker::start(app).await.unwrap();
    let calls = test.calls("laned");
    // Record 2 sticks; its lane holds its key's later records (6 and 10) behind it.
    wait_for(
        Duration::from_secs(10),
        "records 0 and 1, and record 2 stuck",
        || {
            let all = calls.all();
            all.iter()
                .filter(|c| c.message.offset < 2 && c.outcome.is_some())
                .count()
                == 2
                && all.iter().any(|c| c.message.offset == 2)
        },
    )
    .await;
    committed_reaches(&broker, &group, &topic, 0, 2).await;
    let sought = test
        .seek("laned", Seek::all(StartFrom::Offset(12)))
        .await
        .unwrap();
    assert_eq!(sought[0].offset, 12);
    wait_for(Duration::from_secs(10), "the stuck handler dropped", || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    committed_reaches(&broker, &group, &topic, 0, 12).await;
    // What comes after the seek runs, in every lane.
    for i in 12..16_i64 {
        let record = Record::encode(topic.as_str(), &i)
            .unwrap()
            .partition(0)
            .key(format!("k{}", i % 4));
        broker.publish_record(record).await.unwrap();
    }
    wait_for(Duration::from_secs(10), "records 12..16", || {
        calls
            .all()
            .iter()
            .filter(|c| c.message.offset >= 12 && c.outcome.is_some())
            .count()
            == 4
    })
    .await;
    let after = calls.all();
    let mut late: Vec<i64> = after
        .iter()
        .filter(|c| c.message.offset >= 12)
        .map(|c| c.json().as_i64().unwrap())
        .collect();
    late.sort_unstable();
    assert_eq!(late, [12, 13, 14, 15]);
    assert!(
        after
            .iter()
            .all(|c| ![6, 10].contains(&c.json().as_i64().unwrap())),
        "k2's records behind the stuck one were dropped with its lane"
    );
    committed_reaches(&broker, &group, &topic, 0, 16).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_seek_drops_the_work_of_every_lane_in_memory,
    a_seek_drops_the_work_of_every_lane_on_kafka,
    a_seek_drops_the_work_of_every_lane
);

async fn a_seek_to_the_committed_offset_replays_what_lanes_finished_above_it(broker: TestBroker) {
    let (topic, group) = (unique("seek-lanes-back"), unique("seek-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    for i in 0..8_i64 {
        let record = Record::encode(topic.as_str(), &i)
            .unwrap()
            .partition(0)
            .key(format!("k{i}"));
        broker.publish_record(record).await.unwrap();
    }
    // Record 2 sticks the first time only; its lane's window lets other lanes finish records
    // above it, which the commit's metadata names.
    let stuck_once = Arc::new(AtomicBool::new(false));
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("laned", [topic.as_str()])
            .group_id(&group)
            .lanes(4),
        move |n: i64| {
            let stuck_once = Arc::clone(&stuck_once);
            async move {
                if n == 2 && !stuck_once.swap(true, Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
            }
        },
    );
    let mut test = TestBroker::start(app).await.unwrap();
    let calls = test.calls("laned");
    wait_for(Duration::from_secs(10), "a record above 2 finished", || {
        calls
            .all()
            .iter()
            .any(|c| c.message.offset > 2 && c.outcome.is_some())
    })
    .await;
    committed_reaches(&broker, &group, &topic, 0, 2).await;
    let before = calls.all().len();
    test.seek("laned", Seek::all(StartFrom::Offset(2)))
        .await
        .unwrap();
    // Everything from 2 runs again, also what lanes had finished above it before the seek.
    wait_for(Duration::from_secs(10), "records 2..8 again", || {
        let again: std::collections::BTreeSet<i64> = calls.all()[before..]
            .iter()
            .filter(|c| c.outcome.is_some())
            .map(|c| c.message.offset)
            .collect();
        again == (2..8).collect()
    })
    .await;
    committed_reaches(&broker, &group, &topic, 0, 8).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_seek_to_the_committed_offset_replays_what_lanes_finished_above_it_in_memory,
    a_seek_to_the_committed_offset_replays_what_lanes_finished_above_it_on_kafka,
    a_seek_to_the_committed_offset_replays_what_lanes_finished_above_it
);
