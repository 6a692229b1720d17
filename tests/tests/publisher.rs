//! Publisher objects on a real Kafka broker: defaults, publish layers, use from a handler and
//! from outside, the AsyncAPI channel, and the error of one never registered.

use faststream::asyncapi::AsyncApiVersion;
use faststream::kafka::KafkaBroker;
use faststream::tower::util::MapRequestLayer;
use faststream::{Broker as _, FastStream, Publisher, Record, State, SubscriberConfig};
use faststream_integration_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_object_publishes_with_its_defaults_from_a_handler_and_from_outside() {
    let (input, audit) = (unique("pub-in"), unique("pub-audit"));
    create_topic(&input, 1).await;
    create_topic(&audit, 1).await;
    logs();
    let audit_publisher = Publisher::to(audit.as_str())
        .key("billing")
        .header("source", "billing");
    let app = FastStream::new(KafkaBroker::new(bootstrap()))
        .publish_layer(MapRequestLayer::new(|record: Record| {
            record.header("x-layer", "yes")
        }))
        .with_publisher(&audit_publisher)
        .with_state(audit_publisher.clone())
        .subscriber(
            SubscriberConfig::new("bill", [input.as_str()]).group_id(unique("g").as_str()),
            |audit: State<Publisher>, order: i64| async move {
                audit.publish(&format!("billed {order}")).await.map(|_| ())
            },
        );
    let document = app.asyncapi(AsyncApiVersion::V3_0_0);
    assert_eq!(
        document["channels"][format!("{audit}:Publisher")]["address"],
        audit.as_str(),
        "documented like a #[publisher]"
    );
    let running = app.start().await.expect("app starts");
    produce(&input, [Input::new("7")]).await;
    let delivered = audit_publisher
        .publish_record(Record::new("another-topic", "by hand").key("own-key"))
        .await
        .expect("published from outside");
    assert_eq!(&*delivered.topic, audit.as_str(), "always its own topic");
    let mut out = collect(&audit, 2, WAIT);
    running.shutdown().await.expect("shutdown");
    out.sort_by(|a, b| a.payload.cmp(&b.payload));
    assert_eq!(
        out.iter().map(|o| o.payload.as_str()).collect::<Vec<_>>(),
        ["billed 7", "by hand"]
    );
    assert_eq!(out[0].key.as_deref(), Some("billing"), "the default key");
    assert_eq!(
        out[1].key.as_deref(),
        Some("own-key"),
        "a record's own key wins"
    );
    for record in &out {
        assert_eq!(
            record.headers.get("source").map(String::as_str),
            Some("billing")
        );
        assert_eq!(
            record.headers.get("x-layer").map(String::as_str),
            Some("yes"),
            "the app's publish layers apply"
        );
        assert!(record.headers.contains_key("correlation_id"));
    }
}

#[tokio::test]
async fn a_publisher_never_registered_says_so() {
    let err = Publisher::to("nowhere")
        .publish(&1)
        .await
        .expect_err("not bound");
    let text = err.to_string();
    assert!(
        text.contains("`nowhere`") && text.contains("with_publisher"),
        "{text}"
    );
}

/// What a record read back from Kafka holds: payload (`None` for a tombstone), key, create
/// time, and headers in order.
type Landed = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<i64>,
    Vec<(String, Vec<u8>)>,
);

/// The first `count` records of `topic`'s `partition`, read with a plain rdkafka consumer.
fn read_partition(topic: &str, partition: i32, count: usize) -> Vec<Landed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers as _, Message as _};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("fields-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + WAIT;
    let mut landed = Vec::new();
    while landed.len() < count && std::time::Instant::now() < deadline {
        let Some(read) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let record = read.expect("a record");
        let headers = record.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        });
        landed.push((
            record.payload().map(<[u8]>::to_vec),
            record.key().map(<[u8]>::to_vec),
            record.timestamp().to_millis(),
            headers,
        ));
    }
    landed
}

/// Every field of a record the broker publishes reaches Kafka as given (producer-side, the
/// record goes to librdkafka with its topic's handle): partition, key, create time, headers in
/// order with a repeated name and an empty value, an empty payload and a tombstone, on two
/// topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_record_lands_with_every_field_as_given() {
    let (first, second) = (unique("pub-fields"), unique("pub-fields-other"));
    create_topic(&first, 3).await;
    create_topic(&second, 1).await;
    let broker = KafkaBroker::new(bootstrap());
    let full = Record::new(first.as_str(), "body")
        .key("k-1")
        .partition(2)
        .timestamp(1_700_000_000_123)
        .correlation_id("cid-1")
        .header("x-a", "1")
        .append_header("x-a", "2")
        .header("x-empty", "");
    let mut tombstone = Record::new(first.as_str(), "").key("k-1").partition(2);
    tombstone.payload = None;
    let empty = Record::new(first.as_str(), "")
        .partition(2)
        .correlation_id("cid-3");
    let mut offsets = Vec::new();
    for record in [full, tombstone, empty] {
        let delivered = broker.publish_record(record).await.expect("published");
        assert_eq!(
            (&*delivered.topic, delivered.partition),
            (first.as_str(), 2)
        );
        offsets.push(delivered.offset);
    }
    assert_eq!(offsets, [0, 1, 2]);
    let other = broker
        .publish_record(Record::new(second.as_str(), "other").correlation_id("cid-4"))
        .await
        .expect("published to a second topic");
    assert_eq!(
        (&*other.topic, other.partition, other.offset),
        (second.as_str(), 0, 0)
    );

    let landed = read_partition(&first, 2, 3);
    let header = |name: &str, value: &str| (name.to_owned(), value.as_bytes().to_vec());
    assert_eq!(landed.len(), 3, "{landed:?}");
    assert_eq!(landed[0].0.as_deref(), Some(&b"body"[..]));
    assert_eq!(landed[0].1.as_deref(), Some(&b"k-1"[..]));
    assert_eq!(landed[0].2, Some(1_700_000_000_123));
    assert_eq!(
        landed[0].3,
        [
            header("correlation_id", "cid-1"),
            header("x-a", "1"),
            header("x-a", "2"),
            header("x-empty", "")
        ]
    );
    assert_eq!(landed[1].0, None, "a tombstone");
    assert_eq!(landed[1].1.as_deref(), Some(&b"k-1"[..]));
    assert!(
        landed[1].2.is_some_and(|ms| ms > 1_700_000_000_123),
        "stamped when sent"
    );
    assert_eq!(
        landed[2].0.as_deref(),
        Some(&b""[..]),
        "an empty payload stays empty"
    );
    assert_eq!(landed[2].1, None);
    assert_eq!(landed[2].3, [header("correlation_id", "cid-3")]);
    let elsewhere = read_partition(&second, 0, 1);
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].0.as_deref(), Some(&b"other"[..]));
}
