//! Payload formats: FastStream's text-is-text rule in batches, and each codec (MessagePack,
//! CBOR, Avro, Protobuf) typed both ways through a subscriber, on the in-memory `TestBroker`
//! and on the local Kafka.

use apache_avro::AvroSchema;
use faststream::codec::{self, Avro, Cbor, Codec, MessagePack, Proto};
use faststream::testing::TestBroker;
use faststream::{
    Broker, FastStream, Message, PublisherConfig, Record, Router, State, SubscriberConfig,
};
use faststream_integration_tests::{both_modes, unique, wait_for};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ARRIVES: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// FastStream's rule: `publish_batch(1, "hi")` read by a batch subscriber of `list[Any]` gets
// `[1, "hi"]`; `"hi"` went out as `text/plain` and is its text, not malformed JSON.

async fn number_and_text(broker: TestBroker) {
    let (topic, group) = (unique("cd-text"), unique("cd-text-g"));
    broker.create_topic(&topic, 1).await.unwrap();
    let records = [
        Record::encode(topic.as_str(), &1).unwrap(),
        Record::encode(topic.as_str(), "hi").unwrap(),
    ];
    assert_eq!(records[1].content_type, Some("text/plain"));
    broker
        .publish_batch(records.map(|r| r.partition(0)))
        .await
        .unwrap();
    type Seen = Arc<Mutex<Vec<Value>>>;
    let (batched, single): (Seen, Seen) = Default::default();
    let app = FastStream::new(broker.clone())
        .with_state((Arc::clone(&batched), Arc::clone(&single)))
        .subscriber(
            SubscriberConfig::new("batched", [topic.as_str()])
                .group_id(group.as_str())
                .batch(10, Duration::from_millis(300)),
            |seen: State<(Seen, Seen)>, values: Vec<Value>| async move {
                seen.0 .0.lock().unwrap().extend(values);
            },
        )
        .subscriber(
            SubscriberConfig::new("single", [topic.as_str()]).group_id(format!("{group}-1")),
            |seen: State<(Seen, Seen)>, value: Value| async move {
                seen.0 .1.lock().unwrap().push(value);
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    wait_for(ARRIVES, "both subscribers saw both records", || {
        batched.lock().unwrap().len() == 2 && single.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(*batched.lock().unwrap(), [json!(1), json!("hi")]);
    assert_eq!(*single.lock().unwrap(), [json!(1), json!("hi")]);
    test.calls("batched")
        .assert_called_once_with(json!([1, "hi"]))
        .await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_batch_of_a_number_and_text_reads_as_values_in_memory,
    a_batch_of_a_number_and_text_reads_as_values_on_kafka,
    number_and_text
);

// ---------------------------------------------------------------------------------------
// Each serde codec, set at one level (subscriber, router, app): the handler decodes a typed
// order and returns a typed invoice, published with the codec's content type.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
struct Order {
    id: i64,
    item: String,
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
struct Invoice {
    order_id: i64,
    lines: Vec<String>,
}

/// Where the codec is set.
#[derive(Clone, Copy)]
enum Level {
    Subscriber,
    Router,
    App,
}

/// Runs `order -> invoice` with `decode` set at `level` and `encode` (when given) on the
/// publisher; checks the input's and output's content types and values, and that a record
/// the codec cannot decode is reported on one line and skipped.
async fn round_trip<D, E>(
    broker: TestBroker,
    name: &str,
    level: Level,
    decode: D,
    encode: Option<E>,
) where
    D: Codec + Clone,
    E: Codec + Clone,
{
    let (input, output) = (
        unique(&format!("cd-{name}")),
        unique(&format!("cd-{name}-out")),
    );
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let logs = faststream_integration_tests::logs();
    let mut publisher = PublisherConfig::new(output.as_str());
    if let Some(encode) = encode.clone() {
        publisher = publisher.codec(encode);
    }
    let mut config = SubscriberConfig::new(format!("invoice-{name}"), [input.as_str()])
        .group_id(unique("cd-g"))
        .publisher(publisher);
    if matches!(level, Level::Subscriber) {
        config = config.codec(decode.clone());
    }
    let handler = |order: Order| async move {
        Invoice {
            order_id: order.id,
            lines: vec![order.item, order.note.unwrap_or_default()],
        }
    };
    let mut app = FastStream::new(broker.clone());
    app = match level {
        Level::Router => app.include_router(
            Router::new("")
                .codec(decode.clone())
                .subscriber(config, handler),
        ),
        Level::App => app.codec(decode.clone()).subscriber(config, handler),
        Level::Subscriber => app.subscriber(config, handler),
    };
    let test = TestBroker::start(app).await.unwrap();

    let mut garbage = Record::new(input.as_str(), &b"\xc1\xff\x00"[..]).partition(0);
    garbage.content_type = Some(decode.content_type());
    test.publish_record(garbage).await.unwrap();
    let order = Order {
        id: 7,
        item: "tea".into(),
        note: Some("green".into()),
    };
    let record = Record::encode_with(input.as_str(), &order, Some(&decode)).unwrap();
    assert_eq!(record.content_type, Some(decode.content_type()));
    test.publish_record(record.partition(0)).await.unwrap();

    let out = test.published(output.as_str()).wait_for(1).await;
    let encoder: &dyn Codec = match &encode {
        Some(encode) => encode,
        None => &decode,
    };
    assert_eq!(
        out[0].headers.get_str("content-type"),
        Some(encoder.content_type())
    );
    let invoice: Invoice = codec::decode_by(encoder, &out[0].payload).unwrap();
    assert_eq!(
        invoice,
        Invoice {
            order_id: 7,
            lines: vec!["tea".into(), "green".into()]
        }
    );
    let lines = logs.lines_with(&format!("{input}[0]@0 failed: cannot decode payload: "));
    assert_eq!(
        lines.len(),
        1,
        "one error line for the bad record: {lines:?}"
    );
    assert!(
        lines[0].contains(decode.name()),
        "the codec's own message: {}",
        lines[0]
    );
    test.calls(format!("invoice-{name}")).assert_called(2).await;
    test.shutdown().await.unwrap();
}

async fn messagepack(broker: TestBroker) {
    round_trip(
        broker,
        "msgpack",
        Level::Subscriber,
        MessagePack,
        None::<MessagePack>,
    )
    .await;
}
both_modes!(
    messagepack_on_a_subscriber_round_trips_in_memory,
    messagepack_on_a_subscriber_round_trips_on_kafka,
    messagepack
);

async fn cbor(broker: TestBroker) {
    round_trip(broker, "cbor", Level::Router, Cbor, None::<Cbor>).await;
}
both_modes!(
    cbor_on_a_router_round_trips_in_memory,
    cbor_on_a_router_round_trips_on_kafka,
    cbor
);

async fn avro(broker: TestBroker) {
    // The order's schema derived from the type; the invoice's given as Avro JSON.
    let invoice = Avro::parse(&Invoice::get_schema().canonical_form()).unwrap();
    round_trip(
        broker,
        "avro",
        Level::App,
        Avro::of::<Order>(),
        Some(invoice),
    )
    .await;
}
both_modes!(
    avro_on_the_app_with_a_publisher_schema_round_trips_in_memory,
    avro_on_the_app_with_a_publisher_schema_round_trips_on_kafka,
    avro
);

// ---------------------------------------------------------------------------------------
// Protobuf: `Proto<T>` of a prost message, in and out.

#[derive(Clone, PartialEq, prost::Message)]
struct Ping {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(string, tag = "2")]
    from: String,
}

async fn protobuf(broker: TestBroker) {
    let (input, output) = (unique("cd-proto"), unique("cd-proto-out"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("pong", [input.as_str()])
            .group_id(unique("cd-proto-g"))
            .publish_to(output.as_str()),
        |ping: Proto<Ping>| async move {
            Proto(Ping {
                seq: ping.0.seq + 1,
                from: format!("pong to {}", ping.0.from),
            })
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    let logs = faststream_integration_tests::logs();
    let garbage = Record::new(input.as_str(), &b"\xff\xff"[..]).partition(0);
    test.publish_record(garbage).await.unwrap();
    let ping = Ping {
        seq: 41,
        from: "ann".into(),
    };
    test.publish_record(Proto(ping).record(input.as_str()).partition(0))
        .await
        .unwrap();
    let out: Vec<Message> = test.published(output.as_str()).wait_for(1).await;
    assert_eq!(
        out[0].headers.get_str("content-type"),
        Some(codec::APPLICATION_PROTOBUF)
    );
    let pong = Proto::<Ping>::decode(&out[0].payload).unwrap().0;
    assert_eq!(
        pong,
        Ping {
            seq: 42,
            from: "pong to ann".into()
        }
    );
    let lines = logs.lines_with(&format!(
        "{input}[0]@0 failed: cannot decode payload: protobuf: "
    ));
    assert_eq!(
        lines.len(),
        1,
        "one error line for the bad record: {lines:?}"
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    protobuf_messages_round_trip_in_memory,
    protobuf_messages_round_trip_on_kafka,
    protobuf
);

// ---------------------------------------------------------------------------------------
// A publisher object with a codec: what it publishes is in that format, with its content type.

async fn publisher_object(broker: TestBroker) {
    let topic = unique("cd-audit");
    broker.create_topic(&topic, 1).await.unwrap();
    let audit = faststream::Publisher::to(topic.as_str()).codec(MessagePack);
    let app = FastStream::new(broker.clone()).with_publisher(&audit);
    let test = TestBroker::start(app).await.unwrap();
    let order = Order {
        id: 3,
        item: "cup".into(),
        note: None,
    };
    audit.publish(&order).await.unwrap();
    audit.publish("plain text").await.unwrap();
    let out = test.published(topic.as_str()).wait_for(2).await;
    assert_eq!(
        out[0].headers.get_str("content-type"),
        Some(codec::APPLICATION_MSGPACK)
    );
    assert_eq!(
        codec::decode_by::<Order>(&MessagePack, &out[0].payload).unwrap(),
        order
    );
    assert_eq!(out[1].headers.get_str("content-type"), Some("text/plain"));
    assert_eq!(&out[1].payload[..], b"plain text");
    test.shutdown().await.unwrap();
}
both_modes!(
    a_publisher_object_publishes_with_its_codec_in_memory,
    a_publisher_object_publishes_with_its_codec_on_kafka,
    publisher_object
);
