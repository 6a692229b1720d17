//! Retries without blocking (`ErrorPolicy::retry_topics`), each test in both modes: due times
//! kept, the original partition flowing on meanwhile, the final outcome after the last retry,
//! and the input offset committed only once the retry record is acknowledged.

use faststream::testing::{TestBroker, TestDelivery};
use faststream::tower::{Layer, Service};
use faststream::{
    Broker, ErrorPolicy, FastStream, Headers, PublishError, Record, State, SubscriberConfig,
};
use faststream_integration_tests::*;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// One handler call: the number it got, which delivery of its record it was, and when.
#[derive(Debug, Clone)]
struct Seen {
    n: i64,
    delivery: u32,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A handler that notes every call, and fails for 13.
async fn unlucky(log: State<Log>, headers: Headers, n: i64) -> Result<(), std::io::Error> {
    let delivery = headers
        .get_str("retry-attempt")
        .and_then(|d| d.parse().ok())
        .unwrap_or(1);
    log.lock().unwrap().push(Seen {
        n,
        delivery,
        at: Instant::now(),
    });
    if n == 13 {
        Err(std::io::Error::other("unlucky"))
    } else {
        Ok(())
    }
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().unwrap().clone()
}

/// An app whose subscriber `unlucky` on `input` (group `group`) has `policy`.
fn app(
    broker: TestBroker,
    input: &str,
    group: &str,
    policy: ErrorPolicy,
    log: &Log,
) -> FastStream<TestBroker> {
    FastStream::new(broker)
        .with_state(Arc::clone(log))
        .subscriber(
            SubscriberConfig::new("unlucky", [input])
                .group_id(group)
                .error_policy(policy),
            unlucky,
        )
}

const WAIT: Duration = Duration::from_secs(30);

/// Each retry comes no earlier than its delay after the attempt before it, and no later than
/// a second after that; after the last one the record is dead-lettered with its original
/// position. The retry record keeps key, headers and timestamp, and says where it came from.
async fn due_times(broker: TestBroker) {
    let (input, group) = (unique("rt-due"), unique("rt-g"));
    let dead = format!("{input}-dlt");
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&dead, 1).await.unwrap();
    let delays = [Duration::from_secs(1), Duration::from_secs(2)];
    let log = Log::default();
    let policy = ErrorPolicy::retry_topics(delays).then_dead_letter();
    let test = TestBroker::start(app(broker, &input, &group, policy, &log))
        .await
        .unwrap();
    let written_at = faststream::broker::retry::now_ms() - 60_000;
    let record = Record::encode(input.as_str(), &13)
        .unwrap()
        .key("k-13")
        .header("x-trace", "t-1")
        .timestamp(written_at);
    test.publish_record(record).await.unwrap();
    wait_for(WAIT, "three attempts of 13", || seen(&log).len() >= 3).await;
    let letter = test.published(dead.as_str()).assert_one(13).await;
    let calls = seen(&log);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let deliveries: Vec<u32> = calls.iter().map(|c| c.delivery).collect();
    assert_eq!(deliveries, [1, 2, 3]);
    for (pair, delay) in calls.windows(2).zip(delays) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= delay && gap <= delay + Duration::from_secs(1),
            "attempt {} came {gap:?} after the one before, its delay is {delay:?}",
            pair[1].delivery
        );
    }
    // The first retry record: the record as it was, plus where it came from and when it is due.
    let retry_topic = format!("{input}-{group}-retry-1000");
    let retried = test.published(retry_topic.as_str()).assert_one(13).await;
    assert_eq!(retried.key.as_deref(), Some(&b"k-13"[..]));
    assert_eq!(retried.timestamp, Some(written_at), "its timestamp is kept");
    let header = |name: &str| retried.headers.get_str(name).map(str::to_owned);
    assert_eq!(header("x-trace").as_deref(), Some("t-1"));
    assert_eq!(header("retry-attempt").as_deref(), Some("2"));
    assert_eq!(header("retry-original-topic"), Some(input.clone()));
    assert_eq!(header("retry-original-partition").as_deref(), Some("0"));
    assert_eq!(header("retry-original-offset").as_deref(), Some("0"));
    let due: i64 = header("retry-due-at").unwrap().parse().unwrap();
    assert!(
        due > written_at + 60_000,
        "due after the first attempt: {due}"
    );
    // The dead letter names the original position, not the retry topic's.
    let dlt = |name: &str| letter.headers.get_str(name).map(str::to_owned);
    assert_eq!(dlt("dlt-original-topic"), Some(input.clone()));
    assert_eq!(dlt("dlt-original-partition").as_deref(), Some("0"));
    assert_eq!(dlt("dlt-original-offset").as_deref(), Some("0"));
    assert_eq!(dlt("dlt-original-group"), Some(group.clone()));
    assert_eq!(dlt("dlt-attempts").as_deref(), Some("3"));
    assert_eq!(dlt("dlt-exception-message").as_deref(), Some("unlucky"));
    assert_eq!(dlt("x-trace").as_deref(), Some("t-1"));
    assert_eq!(dlt("retry-attempt"), None, "retry headers dropped");
    assert_eq!(letter.key.as_deref(), Some(&b"k-13"[..]));
    test.shutdown().await.unwrap();
}
both_modes!(
    retry_topic_attempts_respect_their_due_times_in_memory,
    retry_topic_attempts_respect_their_due_times_on_kafka,
    due_times
);

/// While 13 waits in its retry topic, the records after it in its partition are handled;
/// its retry comes after them. Everything is committed in the end.
async fn flows_on(broker: TestBroker) {
    let (input, group) = (unique("rt-flow"), unique("rt-g"));
    broker.create_topic(&input, 1).await.unwrap();
    let log = Log::default();
    let policy = ErrorPolicy::retry_topics([Duration::from_secs(1)]).then_skip();
    let test = TestBroker::start(app(broker, &input, &group, policy, &log))
        .await
        .unwrap();
    test.publish_batch([13, 1, 2, 3, 4, 5].map(|n| Record::encode(input.as_str(), &n).unwrap()))
        .await
        .unwrap();
    wait_for(WAIT, "13 retried", || seen(&log).len() >= 7).await;
    let calls = seen(&log);
    let order: Vec<i64> = calls.iter().map(|c| c.n).collect();
    assert_eq!(
        order,
        [13, 1, 2, 3, 4, 5, 13],
        "the retry comes after later records"
    );
    let flowed = calls[5].at - calls[0].at;
    assert!(
        flowed < Duration::from_millis(900),
        "1..=5 did not wait for 13's retry: {flowed:?}"
    );
    assert!(calls[6].at - calls[0].at >= Duration::from_secs(1));
    test.calls("unlucky").assert_called(7).await;
    let retry_topic = format!("{input}-{group}-retry-1000");
    let broker = test.broker().clone();
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &input, 0).await, Some(6));
    assert_eq!(broker.committed(&group, &retry_topic, 0).await, Some(1));
}
both_modes!(
    the_original_partition_flows_on_while_a_record_waits_in_memory,
    the_original_partition_flows_on_while_a_record_waits_on_kafka,
    flows_on
);

/// A publish layer refusing every retry record at its acknowledgement (as Kafka refuses a
/// record over the topic's size limit): the handler's record was handed over, its delivery
/// then fails.
#[derive(Clone)]
struct RefuseRetryRecords<S>(S);

impl<S> Service<Record> for RefuseRetryRecords<S>
where
    S: Service<Record, Response = TestDelivery, Error = PublishError>,
    S::Future: Send + 'static,
{
    type Response = TestDelivery;
    type Error = PublishError;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<TestDelivery, PublishError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PublishError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, record: Record) -> Self::Future {
        if !record.topic.contains("-retry-") {
            return futures::future::Either::Left(self.0.call(record));
        }
        let refused = PublishError::new(record.topic.to_string(), "refused by the test");
        futures::future::Either::Right(futures::future::ready(Ok(TestDelivery::Memory(Some(Err(
            refused,
        ))))))
    }
}

#[derive(Clone)]
struct RefuseRetryRecordsLayer;

impl<S> Layer<S> for RefuseRetryRecordsLayer {
    type Service = RefuseRetryRecords<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RefuseRetryRecords(inner)
    }
}

/// The input offset of a failed record is committed only once its retry record is
/// acknowledged: refused, the partition stops at it and nothing from it on is committed,
/// while the record before it is.
async fn commit_after_ack(broker: TestBroker) {
    let (input, group) = (unique("rt-ack"), unique("rt-g"));
    broker.create_topic(&input, 1).await.unwrap();
    let log = Log::default();
    let policy = ErrorPolicy::retry_topics([Duration::from_secs(1)]).then_skip();
    let app = app(broker, &input, &group, policy, &log).publish_layer(RefuseRetryRecordsLayer);
    let test = TestBroker::start(app).await.unwrap();
    for n in [1, 13, 2] {
        test.publish(n, input.as_str()).await.unwrap();
    }
    wait_for(WAIT, "1 and 13 handled", || seen(&log).len() >= 2).await;
    let broker = test.broker().clone();
    test.shutdown().await.unwrap();
    assert_eq!(
        broker.committed(&group, &input, 0).await,
        Some(1),
        "1 committed; 13's offset not, its retry record was refused"
    );
}
both_modes!(
    the_input_offset_waits_for_the_retry_record_ack_in_memory,
    the_input_offset_waits_for_the_retry_record_ack_on_kafka,
    commit_after_ack
);

/// A record waiting in its retry topic when the app stops still waits for its due time in
/// the next app of the group: the partition assigned anew is held again (the paused state is
/// rebuilt from the record, not kept in memory), and the record is handled once, when due.
async fn held_across_restarts(broker: TestBroker) {
    let (input, group) = (unique("rt-restart"), unique("rt-g"));
    broker.create_topic(&input, 1).await.unwrap();
    let delay = Duration::from_secs(2);
    let policy = ErrorPolicy::retry_topics([delay]).then_skip();
    let log = Log::default();
    let first = TestBroker::start(app(broker.clone(), &input, &group, policy.clone(), &log))
        .await
        .unwrap();
    first.publish(13, input.as_str()).await.unwrap();
    let retry_topic = format!("{input}-{group}-retry-2000");
    first.published(retry_topic.as_str()).wait_for(1).await;
    first.shutdown().await.unwrap();
    let second = TestBroker::start(app(broker.clone(), &input, &group, policy, &log))
        .await
        .unwrap();
    wait_for(WAIT, "13 retried", || seen(&log).len() >= 2).await;
    let calls = seen(&log);
    assert_eq!(calls.len(), 2, "handled once in each app: {calls:?}");
    assert_eq!(calls[1].delivery, 2);
    let gap = calls[1].at - calls[0].at;
    assert!(
        gap >= delay && gap <= delay + Duration::from_secs(1),
        "the retry came {gap:?} after the first attempt, its delay is {delay:?}"
    );
    second.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &retry_topic, 0).await, Some(1));
}
both_modes!(
    a_waiting_record_is_held_again_after_a_restart_in_memory,
    a_waiting_record_is_held_again_after_a_restart_on_kafka,
    held_across_restarts
);

/// Two groups read one topic, each with retry topics: a record failing in one group is retried
/// only there (its retry topics are named by the group); the other group sees it once.
async fn groups_apart(broker: TestBroker) {
    let input = unique("rt-groups");
    let (failing, fine) = (unique("rt-g"), unique("rt-g"));
    broker.create_topic(&input, 1).await.unwrap();
    let log = Log::default();
    let policy = || ErrorPolicy::retry_topics([Duration::from_secs(1)]).then_skip();
    let app = app(broker, &input, &failing, policy(), &log).subscriber(
        SubscriberConfig::new("fine", [input.as_str()])
            .group_id(fine.as_str())
            .error_policy(policy()),
        |_n: i64| async {},
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(13, input.as_str()).await.unwrap();
    wait_for(WAIT, "13 retried in its group", || seen(&log).len() >= 2).await;
    test.calls("fine").assert_called_once_with(13).await;
    let others = format!("{input}-{fine}-retry-1000");
    test.published(others.as_str()).assert_count(0).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    two_groups_never_retry_each_others_failures_in_memory,
    two_groups_never_retry_each_others_failures_on_kafka,
    groups_apart
);
