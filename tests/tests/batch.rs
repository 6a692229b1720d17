//! Batch subscribers and batch publishers: each body runs in the in-memory `TestBroker` and on
//! the local Kafka (its own topics and groups).

use faststream::testing::TestBroker;
use faststream::{
    Batch, BatchFailed, Broker, ErrorPolicy, FastStream, PublisherConfig, Record, State,
    SubscriberConfig,
};
use faststream_integration_tests::{both_modes, fast_backoff, unique, wait_for};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What a batch handler saw: each call's values and the offsets of its records.
type Seen = Arc<Mutex<Vec<(Vec<i64>, Vec<i64>)>>>;

/// Writes `values` to partition 0 of `topic` as one producer batch, before any subscriber
/// runs (so a subscriber starting from the beginning finds them all at once).
async fn write(broker: &TestBroker, topic: &str, values: &[i64]) {
    let records = values
        .iter()
        .map(|n| Record::encode(topic, n).unwrap().partition(0));
    broker.publish_batch(records).await.unwrap();
}

fn batches(seen: &Seen) -> Vec<Vec<i64>> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(v, _)| v.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Records arrive as `Vec<T>` in batches of at most `max_records`; offsets advance per batch.

async fn batches_of_max_records(broker: TestBroker) {
    let topic = unique("bt-max");
    let group = unique("bt-max-g");
    broker.create_topic(&topic, 1).await.unwrap();
    write(&broker, &topic, &(0..7).collect::<Vec<_>>()).await;
    let seen: Seen = Arc::default();
    // The second batch waits for a permit: meanwhile the first one is committed whole.
    let gate = Arc::new(Semaphore::new(1));
    let app = FastStream::new(broker.clone())
        .with_state((Arc::clone(&seen), Arc::clone(&gate)))
        .subscriber(
            SubscriberConfig::new("sum", [topic.as_str()])
                .group_id(group.as_str())
                .batch(3, Duration::from_millis(500)),
            |batch: Batch, state: State<(Seen, Arc<Semaphore>)>, values: Vec<i64>| async move {
                let (seen, gate) = &*state.0;
                gate.acquire().await.unwrap().forget();
                let offsets = batch.iter().map(|m| m.offset).collect();
                seen.lock().unwrap().push((values, offsets));
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    wait_for(Duration::from_secs(30), "the first batch", || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [(vec![0, 1, 2], vec![0, 1, 2])],
        "three records, the batch's maximum, in order with their offsets"
    );
    // The first batch is committed as a whole while the second is held in its handler.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while broker.committed(&group, &topic, 0).await != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first batch never committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate.add_permits(10);
    wait_for(Duration::from_secs(30), "every record", || {
        batches(&seen).concat().len() == 7
    })
    .await;
    assert_eq!(batches(&seen), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &topic, 0).await, Some(7));
}
both_modes!(
    batches_hold_at_most_max_records_in_memory,
    batches_hold_at_most_max_records_on_kafka,
    batches_of_max_records
);

// ---------------------------------------------------------------------------------------
// A handler naming the failed record: those before it are done, it follows the policy alone,
// those after it come again.

async fn failed_record(broker: TestBroker) {
    let topic = unique("bt-rec");
    let dead = format!("{topic}-dlt");
    let group = unique("bt-rec-g");
    broker.create_topic(&topic, 1).await.unwrap();
    broker.create_topic(&dead, 1).await.unwrap();
    write(&broker, &topic, &[1, 2, 13, 4, 5]).await;
    let seen: Seen = Arc::default();
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&seen))
        .subscriber(
            SubscriberConfig::new("store", [topic.as_str()])
                .group_id(group.as_str())
                .batch(10, Duration::from_millis(500))
                .error_policy(
                    ErrorPolicy::retry(2)
                        .backoff(fast_backoff())
                        .then_dead_letter(),
                ),
            |batch: Batch, seen: State<Seen>, values: Vec<i64>| async move {
                let offsets = batch.iter().map(|m| m.offset).collect();
                seen.lock().unwrap().push((values.clone(), offsets));
                match values.iter().position(|n| *n == 13) {
                    Some(index) => Err(BatchFailed::at(index, "13 is unlucky")),
                    None => Ok(()),
                }
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    let letter = test.published(dead.as_str()).assert_one(13).await;
    assert_eq!(letter.headers.get_str("dlt-original-offset"), Some("2"));
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    assert_eq!(
        letter.headers.get_str("dlt-exception-message"),
        Some("13 is unlucky"),
        "the record's own error, not the batch wrapper"
    );
    wait_for(Duration::from_secs(30), "the records after 13", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (vec![1, 2, 13, 4, 5], vec![0, 1, 2, 3, 4]),
            (vec![13, 4, 5], vec![2, 3, 4]),
            (vec![4, 5], vec![3, 4]),
        ],
        "13 retried with the records after it, then dead-lettered; 4 and 5 once more"
    );
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &topic, 0).await, Some(5));
}
both_modes!(
    a_failed_record_follows_the_policy_alone_in_memory,
    a_failed_record_follows_the_policy_alone_on_kafka,
    failed_record
);

// ---------------------------------------------------------------------------------------
// A batch failing as a whole: retried as a whole, then each record dead-lettered.

async fn failed_batch(broker: TestBroker) {
    let topic = unique("bt-whole");
    let dead = format!("{topic}-dlt");
    let group = unique("bt-whole-g");
    broker.create_topic(&topic, 1).await.unwrap();
    broker.create_topic(&dead, 1).await.unwrap();
    write(&broker, &topic, &[7, 99, 8]).await;
    let seen: Seen = Arc::default();
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&seen))
        .subscriber(
            SubscriberConfig::new("all_or_nothing", [topic.as_str()])
                .group_id(group.as_str())
                .batch(10, Duration::from_millis(500))
                .error_policy(
                    ErrorPolicy::retry(2)
                        .backoff(fast_backoff())
                        .then_dead_letter(),
                ),
            |seen: State<Seen>, values: Vec<i64>| async move {
                seen.lock().unwrap().push((values.clone(), Vec::new()));
                if values.contains(&99) {
                    Err(std::io::Error::other("the store refused the batch"))
                } else {
                    Ok(())
                }
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    let letters = test.published(dead.as_str()).assert_count(3).await;
    let offsets: Vec<Option<&str>> = letters
        .iter()
        .map(|l| l.headers.get_str("dlt-original-offset"))
        .collect();
    assert_eq!(offsets, [Some("0"), Some("1"), Some("2")]);
    let payloads: Vec<&[u8]> = letters.iter().map(|l| &l.payload[..]).collect();
    assert_eq!(payloads, [&b"7"[..], b"99", b"8"]);
    assert_eq!(batches(&seen), [vec![7, 99, 8], vec![7, 99, 8]]);
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &topic, 0).await, Some(3));
}
both_modes!(
    a_failed_batch_is_dead_lettered_record_by_record_in_memory,
    a_failed_batch_is_dead_lettered_record_by_record_on_kafka,
    failed_batch
);

// ---------------------------------------------------------------------------------------
// A batch publisher sends each element of a returned sequence as its own record.

async fn batch_publisher(broker: TestBroker) {
    let topic = unique("bt-pub");
    let (each, whole) = (format!("{topic}-each"), format!("{topic}-whole"));
    broker.create_topic(&topic, 1).await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("split", [topic.as_str()])
            .group_id(unique("bt-pub-g"))
            .publisher(PublisherConfig::new(each.as_str()).batch(true))
            .publish_to(whole.as_str()),
        |line: String| async move { line.split(' ').map(str::to_owned).collect::<Vec<String>>() },
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish("to be or not", topic.as_str()).await.unwrap();
    let words = test.published(each.as_str()).assert_count(4).await;
    let words: Vec<&str> = words
        .iter()
        .map(|w| std::str::from_utf8(&w.payload).unwrap())
        .collect();
    assert_eq!(words, ["to", "be", "or", "not"]);
    assert_eq!(
        test.published(each.as_str()).records().await[0]
            .headers
            .get_str("content-type"),
        Some("text/plain"),
        "each element encoded on its own"
    );
    test.published(whole.as_str())
        .assert_one(["to", "be", "or", "not"])
        .await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_batch_publisher_sends_each_element_in_memory,
    a_batch_publisher_sends_each_element_on_kafka,
    batch_publisher
);

// ---------------------------------------------------------------------------------------
// What a batch handler publishes carries its first record's correlation id, as FastStream's
// batch parser takes the batch's headers from its first record.

async fn batch_correlation(broker: TestBroker) {
    let topic = unique("bt-cid");
    let out = format!("{topic}-out");
    broker.create_topic(&topic, 1).await.unwrap();
    let records = [("first", 1), ("second", 2)].map(|(id, n)| {
        Record::encode(topic.as_str(), &n)
            .unwrap()
            .partition(0)
            .correlation_id(id)
    });
    broker.publish_batch(records).await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("count", [topic.as_str()])
            .group_id(unique("bt-cid-g"))
            .batch(10, Duration::from_millis(500))
            .publish_to(out.as_str()),
        |values: Vec<i64>| async move { values.len() as i64 },
    );
    let test = TestBroker::start(app).await.unwrap();
    let published = test.published(out.as_str()).assert_one(2).await;
    assert_eq!(published.correlation_id(), Some("first"));
    test.shutdown().await.unwrap();
}
both_modes!(
    a_batch_output_keeps_the_first_records_correlation_id_in_memory,
    a_batch_output_keeps_the_first_records_correlation_id_on_kafka,
    batch_correlation
);
