//! The schema registry codecs against a real registry (Apicurio Registry 3 with Confluent's
//! API, `scripts/registry-local.sh`, started by `scripts/test.sh`) and the local Kafka: Avro
//! and JSON Schema round trips, keys, subject strategies, one request per schema id, Avro
//! schema resolution both ways, an unknown schema id dead-lettered, an outage waited out, and
//! Python's official serializers (confluent-kafka: Avro, JSON Schema, Protobuf) both ways.

use apache_avro::AvroSchema;
use faststream::codec::{decode_by, Codec};
use faststream::extract::Key;
use faststream::kafka::KafkaBroker;
use faststream::registry::{PublishMode, RegistryCodec, SchemaRegistry, SubjectStrategy};
use faststream::testing::TestBroker;
use faststream::{
    Backoff, Broker, ErrorPolicy, FastStream, PublisherConfig, Record, RunningApp, State,
    SubscriberConfig,
};
use faststream_integration_tests::*;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The registry the tests use (`FASTSTREAM_TEST_REGISTRY`, default the local one), checked
/// to answer: a test fails saying how to start it rather than skipping.
async fn registry() -> SchemaRegistry {
    let url = std::env::var("FASTSTREAM_TEST_REGISTRY")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".to_owned());
    let registry = SchemaRegistry::new(url.as_str()).expect("registry client");
    // A fresh client per test, so that its request count is the test's own; this probe is
    // on a client of its own too.
    let probe = SchemaRegistry::new(url.as_str()).expect("registry client");
    if let Err(err) = probe.latest("faststream-probe-none").await {
        assert!(
            !err.is_outage(),
            "no schema registry answers at {url} ({err}): start it with `scripts/registry-local.sh start` (scripts/test.sh does)"
        );
    }
    registry
}

fn quick(attempts: u32) -> ErrorPolicy {
    ErrorPolicy::retry(attempts).backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema, schemars::JsonSchema)]
struct Order {
    id: i64,
    item: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
struct Invoice {
    order_id: i64,
    total: f64,
}

/// Order's next version: a field added with a default (a backward and forward compatible
/// change).
mod v2 {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    pub(super) struct Order {
        pub(super) id: i64,
        pub(super) item: String,
        pub(super) note: Option<String>,
    }

    pub(super) const SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[
        {"name":"id","type":"long"},{"name":"item","type":"string"},
        {"name":"note","type":["null","string"],"default":null}]}"#;
}

type Seen<T> = Arc<Mutex<Vec<T>>>;

/// Starts an app on Kafka whose subscriber `name` decodes `topic`'s records with `codec`
/// into `Order`s under `policy`, and collects them.
async fn collect_orders(
    name: &str,
    topic: &str,
    group: &str,
    codec: RegistryCodec,
    policy: ErrorPolicy,
) -> (RunningApp<KafkaBroker>, Seen<Order>) {
    let seen: Seen<Order> = Arc::default();
    let running = FastStream::new(KafkaBroker::new(bootstrap()))
        .with_state(Arc::clone(&seen))
        .subscriber(
            SubscriberConfig::new(name, [topic])
                .group_id(group)
                .codec(codec)
                .error_policy(policy),
            |seen: State<Seen<Order>>, order: Order| async move {
                seen.lock().unwrap().push(order);
            },
        )
        .start()
        .await
        .expect("the app starts");
    (running, seen)
}

// ---------------------------------------------------------------------------------------
// Avro through the registry, in both modes: Order decoded from the registry's framing,
// the Invoice reply framed with its own auto-registered schema.

async fn avro_round_trip(broker: TestBroker) {
    let registry = registry().await;
    let (input, output) = (unique("sr-avro-in"), unique("sr-avro-out"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let writer = RegistryCodec::avro_of::<Order>(&registry)
        .publishing(&input, PublishMode::AutoRegister)
        .await
        .expect("Order's schema registered");
    let reply = RegistryCodec::avro_of::<Invoice>(&registry)
        .publishing(&output, PublishMode::AutoRegister)
        .await
        .expect("Invoice's schema registered");
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("bill", [input.as_str()])
            .group_id(unique("sr-avro-g"))
            .codec(RegistryCodec::avro_of::<Order>(&registry))
            .publisher(PublisherConfig::new(output.as_str()).codec(reply)),
        |order: Order| async move {
            Invoice {
                order_id: order.id,
                total: 2.5 * order.item.len() as f64,
            }
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    let order = Order {
        id: 7,
        item: "tea".into(),
    };
    test.publish_record(Record::encode_with(input.as_str(), &order, Some(&writer)).unwrap())
        .await
        .unwrap();
    test.published(output.as_str()).wait_for(1).await;
    let out = test.records(&output).await;
    let invoice_id = registry
        .latest(&format!("{output}-value"))
        .await
        .unwrap()
        .id;
    assert_eq!(out[0].payload[0], 0, "magic byte");
    assert_eq!(out[0].payload[1..5], invoice_id.to_be_bytes(), "schema id");
    let read = RegistryCodec::avro_of::<Invoice>(&registry);
    assert_eq!(
        decode_by::<Invoice>(&read, &out[0].payload).unwrap(),
        Invoice {
            order_id: 7,
            total: 7.5
        }
    );
    test.calls("bill").assert_called(1).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    avro_round_trips_through_the_registry_in_memory,
    avro_round_trips_through_the_registry_on_kafka,
    avro_round_trip
);

// ---------------------------------------------------------------------------------------
// JSON Schema through the registry: Order's schemars schema registered as JSON, the body
// plain JSON after the framing (what Python's JSONSerializer writes and reads).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_round_trips_through_the_registry_on_kafka() {
    let registry = registry().await;
    let topic = unique("sr-json");
    create_topic(&topic, 1).await;
    let writer = RegistryCodec::json_of::<Order>(&registry)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .expect("Order's JSON Schema registered");
    let registered = registry.latest(&format!("{topic}-value")).await.unwrap();
    assert_eq!(
        registered.schema_type,
        faststream::registry::SchemaType::Json
    );
    assert!(
        registered.schema.contains("\"item\""),
        "{}",
        registered.schema
    );
    let (running, seen) = collect_orders(
        "orders",
        &topic,
        &unique("sr-json-g"),
        RegistryCodec::json(&registry),
        ErrorPolicy::default(),
    )
    .await;
    let order = Order {
        id: 3,
        item: "pen".into(),
    };
    let record = Record::encode_with(topic.as_str(), &order, Some(&writer)).unwrap();
    let payload = record.payload.clone().unwrap();
    assert_eq!(payload[0], 0, "magic byte");
    assert_eq!(payload[1..5], registered.id.to_be_bytes(), "schema id");
    assert_eq!(&payload[5..], br#"{"id":3,"item":"pen"}"#);
    running.broker().publish_record(record).await.unwrap();
    wait_for(WAIT, "the order decoded", || {
        seen.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(seen.lock().unwrap()[0], order);
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Keys: an Avro key under `{topic}-key`, decoded by the subscriber's key codec.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
struct CustomerKey {
    customer: String,
    region: i32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_decode_with_a_registry_key_codec_on_kafka() {
    let registry = registry().await;
    let topic = unique("sr-key");
    create_topic(&topic, 1).await;
    let keys = RegistryCodec::avro_of::<CustomerKey>(&registry)
        .for_keys()
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let values = RegistryCodec::avro_of::<Order>(&registry)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let key_id = registry.latest(&format!("{topic}-key")).await.unwrap().id;
    let value_id = registry.latest(&format!("{topic}-value")).await.unwrap().id;
    assert_ne!(
        key_id, value_id,
        "keys and values have subjects of their own"
    );
    let seen: Seen<(CustomerKey, Order)> = Arc::default();
    let running =
        FastStream::new(KafkaBroker::new(bootstrap()))
            .with_state(Arc::clone(&seen))
            .subscriber(
                SubscriberConfig::new("keyed", [topic.as_str()])
                    .group_id(unique("sr-key-g"))
                    .codec(RegistryCodec::avro_of::<Order>(&registry))
                    .key_codec(RegistryCodec::avro_of::<CustomerKey>(&registry).for_keys()),
                |seen: State<Seen<(CustomerKey, Order)>>,
                 Key(key): Key<CustomerKey>,
                 order: Order| async move {
                    seen.lock().unwrap().push((key, order));
                },
            )
            .start()
            .await
            .unwrap();
    let key = CustomerKey {
        customer: "ann".into(),
        region: 4,
    };
    let order = Order {
        id: 1,
        item: "cup".into(),
    };
    let key_bytes = keys.encode(&key).unwrap();
    assert_eq!(key_bytes[1..5], key_id.to_be_bytes());
    let record = Record::encode_with(topic.as_str(), &order, Some(&values))
        .unwrap()
        .key(key_bytes);
    running.broker().publish_record(record).await.unwrap();
    wait_for(WAIT, "the keyed order decoded", || {
        seen.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(seen.lock().unwrap()[0], (key, order));
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Subject strategies: where auto-registration puts a schema.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_strategies_name_the_registered_subjects() {
    let registry = registry().await;
    let topic = unique("sr-subject");
    // A record name of its own, so the RecordName subject is this test's.
    let name = unique("Rec").replace('-', "_");
    let schema = apache_avro::Schema::parse_str(&format!(
        r#"{{"type":"record","name":"{name}","namespace":"shop","fields":[{{"name":"id","type":"long"}}]}}"#
    ))
    .unwrap();
    let codec = |strategy| {
        RegistryCodec::avro(&registry)
            .reader_schema(schema.clone())
            .subject_strategy(strategy)
    };
    let expected = [
        (SubjectStrategy::TopicName, format!("{topic}-value")),
        (SubjectStrategy::RecordName, format!("shop.{name}")),
        (
            SubjectStrategy::TopicRecordName,
            format!("{topic}-shop.{name}"),
        ),
    ];
    for (strategy, subject) in expected {
        assert_eq!(codec(strategy).subject(&topic).unwrap(), subject);
        let writer = codec(strategy)
            .publishing(&topic, PublishMode::AutoRegister)
            .await
            .unwrap();
        let registered = registry.latest(&subject).await.expect("registered there");
        let framed = writer
            .encode(&serde_json::json!({"id": 5}))
            .expect("encodes");
        assert_eq!(framed[1..5], registered.id.to_be_bytes(), "{strategy:?}");
    }
    // A fixed id and the latest version write with the id registered.
    let subject = format!("{topic}-value");
    let id = registry.latest(&subject).await.unwrap().id;
    for mode in [PublishMode::Id(id), PublishMode::Latest] {
        let writer = codec(SubjectStrategy::TopicName)
            .publishing(&topic, mode)
            .await
            .unwrap();
        let framed = writer.encode(&serde_json::json!({"id": 5})).unwrap();
        assert_eq!(framed[1..5], id.to_be_bytes(), "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The cache, and Avro's schema resolution both ways: records written with v1 and v2 of one
// subject over two partitions, read by a v2 reader and a v1 reader; each reader's client asks
// the registry once per schema id, however many records carry it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_schema_id_is_fetched_once_and_v1_and_v2_resolve_both_ways() {
    let writers = registry().await;
    let topic = unique("sr-versions");
    create_topic(&topic, 2).await;
    let v1 = RegistryCodec::avro_of::<Order>(&writers)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let v2_schema = apache_avro::Schema::parse_str(v2::SCHEMA).unwrap();
    let v2 = RegistryCodec::avro(&writers)
        .reader_schema(v2_schema.clone())
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let mut records = Vec::new();
    for i in 0..40_i64 {
        let partition = (i % 2) as i32;
        let record = if i % 4 < 2 {
            Record::encode_with(
                topic.as_str(),
                &Order {
                    id: i,
                    item: format!("v1-{i}"),
                },
                Some(&v1),
            )
        } else {
            let order = v2::Order {
                id: i,
                item: format!("v2-{i}"),
                note: Some("fragile".into()),
            };
            Record::encode_with(topic.as_str(), &order, Some(&v2))
        };
        records.push(record.unwrap().partition(partition));
    }
    let broker = KafkaBroker::new(bootstrap());
    broker.publish_batch(records).await.unwrap();
    let (as_v1, as_v2) = (registry().await, registry().await);
    let seen_v1: Seen<Order> = Arc::default();
    let seen_v2: Seen<v2::Order> = Arc::default();
    let running = FastStream::new(broker)
        .with_state((Arc::clone(&seen_v1), Arc::clone(&seen_v2)))
        .subscriber(
            SubscriberConfig::new("as_v1", [topic.as_str()])
                .group_id(unique("sr-v1-g"))
                .codec(RegistryCodec::avro_of::<Order>(&as_v1)),
            |seen: State<(Seen<Order>, Seen<v2::Order>)>, order: Order| async move {
                seen.0 .0.lock().unwrap().push(order);
            },
        )
        .subscriber(
            SubscriberConfig::new("as_v2", [topic.as_str()])
                .group_id(unique("sr-v2-g"))
                .codec(RegistryCodec::avro(&as_v2).reader_schema(v2_schema)),
            |seen: State<(Seen<Order>, Seen<v2::Order>)>, order: v2::Order| async move {
                seen.0 .1.lock().unwrap().push(order);
            },
        )
        .start()
        .await
        .unwrap();
    wait_for(WAIT, "both readers got all 40 records", || {
        seen_v1.lock().unwrap().len() == 40 && seen_v2.lock().unwrap().len() == 40
    })
    .await;
    running.shutdown().await.unwrap();
    let mut read_v1 = seen_v1.lock().unwrap().clone();
    read_v1.sort_by_key(|o| o.id);
    for order in &read_v1 {
        let version = if order.id % 4 < 2 { "v1" } else { "v2" };
        assert_eq!(
            order.item,
            format!("{version}-{}", order.id),
            "v2 read as v1 drops note"
        );
    }
    let mut read_v2 = seen_v2.lock().unwrap().clone();
    read_v2.sort_by_key(|o| o.id);
    for order in &read_v2 {
        let note = (order.id % 4 >= 2).then(|| "fragile".to_owned());
        assert_eq!(
            order.note, note,
            "v1 read as v2 takes the default: {order:?}"
        );
    }
    assert_eq!(
        as_v1.requests(),
        2,
        "one request per schema id (two ids, 40 records)"
    );
    assert_eq!(
        as_v2.requests(),
        2,
        "one request per schema id (two ids, 40 records)"
    );
}

// ---------------------------------------------------------------------------------------
// Bad data: an id the registry does not know (404), a writer schema that does not resolve
// to the reader's, and a datum cut short (its schema the reader's: the direct decoder's
// error) are decode errors: dead-lettered at once, never retried.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
struct Unrelated {
    colour: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_an_incompatible_writer_and_a_truncated_datum_are_dead_lettered_at_once() {
    let registry = registry().await;
    let topic = unique("sr-bad");
    let dead = format!("{topic}-dlt");
    create_topic(&topic, 1).await;
    create_topic(&dead, 1).await;
    let good = RegistryCodec::avro_of::<Order>(&registry)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let unrelated = RegistryCodec::avro_of::<Unrelated>(&registry)
        .publishing(&unique("sr-bad-other"), PublishMode::AutoRegister)
        .await
        .unwrap();
    let order = Order {
        id: 9,
        item: "ok".into(),
    };
    let unknown_id = [0u8, 0x7f, 0xff, 0xff, 0xf0, 2, 0x61];
    let incompatible = unrelated
        .encode(&Unrelated {
            colour: "red".into(),
        })
        .unwrap();
    let written = good.encode(&order).unwrap();
    let truncated = written[..written.len() - 1].to_vec();
    produce(
        &topic,
        [
            Input::new(unknown_id.to_vec()),
            Input::new(incompatible),
            Input::new(truncated),
            Input::new(written),
        ],
    )
    .await;
    let group = unique("sr-bad-g");
    let (running, seen) = collect_orders(
        "strict",
        &topic,
        &group,
        RegistryCodec::avro_of::<Order>(&registry),
        quick(3).then_dead_letter(),
    )
    .await;
    let dead_letters = collect(&dead, 3, WAIT);
    wait_for(WAIT, "every offset committed", || {
        committed(&group, &topic, 1) == [4]
    })
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [order]);
    assert_eq!(dead_letters.len(), 3);
    for (letter, offset) in dead_letters.iter().zip(["0", "1", "2"]) {
        let header = |name: &str| letter.headers.get(name).map(String::as_str);
        assert_eq!(header("dlt-original-offset"), Some(offset));
        assert_eq!(header("dlt-exception-type"), Some("DecodeError"));
        assert_eq!(header("dlt-attempts"), Some("1"), "never retried");
    }
    let message = |i: usize| dead_letters[i].headers["dlt-exception-message"].clone();
    assert!(message(0).contains("2147483632"), "{}", message(0));
    assert!(message(1).contains("schema id"), "{}", message(1));
    assert!(message(2).contains("schema id"), "{}", message(2));
    assert_ne!(message(2), message(1), "the direct decoder's own error");
}

// ---------------------------------------------------------------------------------------
// An outage: the subscriber's registry refuses connections (a port nothing listens on),
// then answers (a forwarder to the real registry starts there). The record waits, its
// partition paused, and is handled once the registry answers: nothing dead-lettered, nothing
// committed before it was handled.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_pauses_and_retries_and_dead_letters_nothing() {
    let real = registry().await;
    let topic = unique("sr-outage");
    let dead = format!("{topic}-dlt");
    create_topic(&topic, 1).await;
    create_topic(&dead, 1).await;
    let writer = RegistryCodec::avro_of::<Order>(&real)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    // A free port: bound, then released; the subscriber's registry is there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = SchemaRegistry::builder(format!("http://127.0.0.1:{port}/apis/ccompat/v7"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let order = Order {
        id: 11,
        item: "late".into(),
    };
    produce(&topic, [Input::new(writer.encode(&order).unwrap())]).await;
    let group = unique("sr-outage-g");
    let (running, seen) = collect_orders(
        "patient",
        &topic,
        &group,
        RegistryCodec::avro_of::<Order>(&down),
        quick(2).then_dead_letter(),
    )
    .await;
    wait_for(WAIT, "the first refused fetch", || down.requests() >= 1).await;
    let first = std::time::Instant::now();
    wait_for(WAIT, "four refused fetches (the record waiting)", || {
        down.requests() >= 4
    })
    .await;
    // Each run waits 0.5-1 s before the next (not a run per turn of the worker's loop).
    assert!(
        first.elapsed() >= Duration::from_millis(1400),
        "three more fetches {:?} after the first",
        first.elapsed()
    );
    assert!(seen.lock().unwrap().is_empty(), "not handled while down");
    assert_eq!(
        committed(&group, &topic, 1),
        [-1],
        "nothing committed while down"
    );
    assert_eq!(records_in(&dead, 1), 0, "an outage is never dead-lettered");
    // The registry answers on that port from now on: a forwarder to the real one's address.
    let real_addr = real
        .url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let forwarder = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let real_addr = real_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(real_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    wait_for(WAIT, "the record handled once the registry answers", || {
        seen.lock().unwrap().len() == 1
    })
    .await;
    wait_for(WAIT, "its offset committed", || {
        committed(&group, &topic, 1) == [1]
    })
    .await;
    running.shutdown().await.unwrap();
    forwarder.abort();
    assert_eq!(*seen.lock().unwrap(), [order]);
    assert_eq!(records_in(&dead, 1), 0, "an outage is never dead-lettered");
}

// ---------------------------------------------------------------------------------------
// Python's official serializers (confluent-kafka from PyPI: AvroSerializer, JSONSerializer
// and their deserializers) on the same Kafka and registry, both directions.

fn python_orders() -> Vec<Order> {
    [(1, "tea"), (2, "cake"), (3, "jam")]
        .map(|(id, item)| Order {
            id,
            item: item.into(),
        })
        .to_vec()
}

/// Runs `tests/python/registry_interop.py` with `args`; its standard output when it succeeds.
/// The script is killed, and the test fails, when it runs longer than `PYTHON_TIMEOUT`: a
/// registry request that never got its answer once held `.ci/run` for more than ten minutes.
async fn python_serializers(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let python = python_with_registry_serializers();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/registry_interop.py");
        let mut child = std::process::Command::new(python)
            .arg(script)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python");
        // Read both pipes while waiting, so a full pipe never blocks the script.
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        let deadline = std::time::Instant::now() + PYTHON_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for python") {
                break Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let joined = |pipe: Option<std::thread::JoinHandle<String>>| {
            pipe.map(|p| p.join().unwrap_or_default())
                .unwrap_or_default()
        };
        let (stdout, stderr) = (joined(stdout), joined(stderr));
        match status {
            Some(status) if status.success() => stdout,
            Some(status) => panic!("registry_interop.py {args:?} failed ({status}): {stderr}"),
            None => panic!(
                "registry_interop.py {args:?} did not finish within {PYTHON_TIMEOUT:?}: {stderr}"
            ),
        }
    })
    .await
    .expect("python task")
}

/// How long one run of `registry_interop.py` may take (its registry client gives up on a
/// request after 20 s and retries).
const PYTHON_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads a child's pipe to its end on a thread of its own.
fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_serializers_write_what_a_rust_handler_decodes() {
    let registry = registry().await;
    for form in ["avro", "json"] {
        let topic = unique(&format!("sr-py-in-{form}"));
        create_topic(&topic, 1).await;
        let out = python_serializers(
            ["produce", &bootstrap(), registry.url(), &topic, form]
                .map(String::from)
                .to_vec(),
        )
        .await;
        assert_eq!(out.trim(), "done");
        let codec = match form {
            "avro" => RegistryCodec::avro_of::<Order>(&registry),
            _ => RegistryCodec::json(&registry),
        };
        let (running, seen) = collect_orders(
            "from_python",
            &topic,
            &unique("sr-py-in-g"),
            codec,
            ErrorPolicy::default(),
        )
        .await;
        wait_for(WAIT, "Python's three orders decoded", || {
            seen.lock().unwrap().len() == 3
        })
        .await;
        running.shutdown().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), python_orders(), "{form}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_deserializers_read_what_a_rust_app_wrote() {
    let registry = registry().await;
    for form in ["avro", "json"] {
        let topic = unique(&format!("sr-py-out-{form}"));
        create_topic(&topic, 1).await;
        let codec = match form {
            "avro" => RegistryCodec::avro_of::<Order>(&registry),
            _ => RegistryCodec::json_of::<Order>(&registry),
        };
        let writer = codec
            .publishing(&topic, PublishMode::AutoRegister)
            .await
            .unwrap();
        let broker = KafkaBroker::new(bootstrap());
        let records = python_orders()
            .iter()
            .map(|order| Record::encode_with(topic.as_str(), order, Some(&writer)).unwrap())
            .collect::<Vec<_>>();
        broker.publish_batch(records).await.unwrap();
        let out = python_serializers(
            ["consume", &bootstrap(), registry.url(), &topic, form, "3"]
                .map(String::from)
                .to_vec(),
        )
        .await;
        let read: Vec<Order> = out
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(read, python_orders(), "{form}");
    }
}

// ---------------------------------------------------------------------------------------
// TLS: the registry's HTTPS port, its certificate signed by the script's test CA.

/// The CA of the local registry's certificate (`FASTSTREAM_TEST_REGISTRY_CA`, default
/// `FASTSTREAM_REGISTRY_HOME/tls/ca.pem`, itself `target/registry-local` by default).
fn registry_ca() -> Vec<u8> {
    let path = std::env::var_os("FASTSTREAM_TEST_REGISTRY_CA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("FASTSTREAM_REGISTRY_HOME")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../target/registry-local")
                })
                .join("tls/ca.pem")
        });
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "no registry CA at {} ({err}; FASTSTREAM_TEST_REGISTRY_CA): scripts/registry-local.sh start generates it (`scripts/registry-local.sh home` names the running registry's folder)",
            path.display()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_registry_trusts_a_private_ca() {
    let plain = registry().await;
    let url = std::env::var("FASTSTREAM_TEST_REGISTRY_TLS")
        .unwrap_or_else(|_| "https://127.0.0.1:8444/apis/ccompat/v7".to_owned());
    let trusting = SchemaRegistry::builder(url.as_str())
        .ca_pem(registry_ca())
        .build()
        .unwrap();
    let topic = unique("sr-tls");
    let writer = RegistryCodec::avro_of::<Order>(&trusting)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap_or_else(|err| panic!("registering over TLS at {url}: {err}"));
    let order = Order {
        id: 4,
        item: "ink".into(),
    };
    let framed = writer.encode(&order).unwrap();
    let id = plain.latest(&format!("{topic}-value")).await.unwrap().id;
    assert_eq!(
        framed[1..5],
        id.to_be_bytes(),
        "the same registry over HTTP and HTTPS"
    );
    let untrusting = SchemaRegistry::new(url.as_str()).unwrap();
    let err = untrusting.schema_by_id(id).await.unwrap_err();
    assert!(
        err.is_outage(),
        "an untrusted certificate is not the record's fault: {err}"
    );
}

// ---------------------------------------------------------------------------------------
// A batch subscriber: every record of a batch fetched before the batch decodes, in both
// modes.

async fn batch_of_registry_records(broker: TestBroker) {
    let writers = registry().await;
    let topic = unique("sr-batch");
    broker.create_topic(&topic, 1).await.unwrap();
    let writer = RegistryCodec::avro_of::<Order>(&writers)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let orders: Vec<Order> = (0..6)
        .map(|id| Order {
            id,
            item: format!("item-{id}"),
        })
        .collect();
    let records = orders
        .iter()
        .map(|o| Record::encode_with(topic.as_str(), o, Some(&writer)).unwrap())
        .collect::<Vec<_>>();
    broker.publish_batch(records).await.unwrap();
    let reader = registry().await;
    let seen: Seen<Order> = Arc::default();
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&seen))
        .subscriber(
            SubscriberConfig::new("batched", [topic.as_str()])
                .group_id(unique("sr-batch-g"))
                .batch(10, Duration::from_millis(300))
                .codec(RegistryCodec::avro_of::<Order>(&reader)),
            |seen: State<Seen<Order>>, batch: Vec<Order>| async move {
                seen.lock().unwrap().extend(batch);
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    wait_for(WAIT, "the six orders decoded in batches", || {
        seen.lock().unwrap().len() == 6
    })
    .await;
    test.shutdown().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), orders);
    assert_eq!(reader.requests(), 1, "one schema id, one request");
}
both_modes!(
    a_batch_of_registry_records_decodes_in_memory,
    a_batch_of_registry_records_decodes_on_kafka,
    batch_of_registry_records
);

// ---------------------------------------------------------------------------------------
// Protobuf through the registry, in both modes: a `Proto<Ping>` parameter decoded from the
// frame (schema id, message indexes `[0]` as one byte), a `Proto<Pong>` reply framed with
// its own registered `.proto`.

mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Ping {
        #[prost(uint64, tag = "1")]
        pub(super) seq: u64,
        #[prost(string, tag = "2")]
        pub(super) from: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Pong {
        #[prost(uint64, tag = "1")]
        pub(super) seq: u64,
    }

    pub(super) const PING: &str =
        "syntax = \"proto3\";\npackage shop;\n\nmessage Ping {\n  uint64 seq = 1;\n  string from = 2;\n}\n";
    pub(super) const PONG: &str =
        "syntax = \"proto3\";\npackage shop;\n\nmessage Pong {\n  uint64 seq = 1;\n}\n";
}

async fn protobuf_round_trip(broker: TestBroker) {
    use faststream::codec::Proto;
    let writers = registry().await;
    let (input, output) = (unique("sr-proto-in"), unique("sr-proto-out"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let writer = RegistryCodec::protobuf(&writers)
        .proto_schema(proto::PING)
        .publishing(&input, PublishMode::AutoRegister)
        .await
        .expect("Ping's .proto registered");
    let reply = RegistryCodec::protobuf(&writers)
        .proto_schema(proto::PONG)
        .publishing(&output, PublishMode::AutoRegister)
        .await
        .expect("Pong's .proto registered");
    let reader = registry().await;
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("pong", [input.as_str()])
            .group_id(unique("sr-proto-g"))
            .codec(RegistryCodec::protobuf(&reader))
            .publisher(PublisherConfig::new(output.as_str()).codec(reply)),
        |ping: Proto<proto::Ping>| async move {
            assert_eq!(ping.0.from, "rust");
            Proto(proto::Pong {
                seq: ping.0.seq + 1,
            })
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    let ping = Proto(proto::Ping {
        seq: 7,
        from: "rust".into(),
    });
    let record = ping.record_with(input.as_str(), &writer).unwrap();
    let ping_id = writers.latest(&format!("{input}-value")).await.unwrap().id;
    let framed = record.payload.clone().unwrap();
    let expected_head: Vec<u8> = [0]
        .into_iter()
        .chain(ping_id.to_be_bytes())
        .chain([0])
        .collect();
    assert_eq!(
        framed[..6],
        expected_head[..],
        "magic byte, Ping's id, indexes [0]"
    );
    test.publish_record(record).await.unwrap();
    test.published(output.as_str()).wait_for(1).await;
    let out = test.records(&output).await;
    let pong_id = writers.latest(&format!("{output}-value")).await.unwrap().id;
    let payload = &out[0].payload;
    assert_eq!(payload[0], 0, "magic byte");
    assert_eq!(payload[1..5], pong_id.to_be_bytes(), "Pong's schema id");
    assert_eq!(payload[5], 0, "message indexes [0]: one zero byte");
    let pong = <proto::Pong as prost::Message>::decode(&payload[6..]).unwrap();
    assert_eq!(pong, proto::Pong { seq: 8 });
    test.calls("pong").assert_called(1).await;
    test.shutdown().await.unwrap();
    assert_eq!(reader.requests(), 1, "Ping's schema fetched once");
}
both_modes!(
    protobuf_round_trips_through_the_registry_in_memory,
    protobuf_round_trips_through_the_registry_on_kafka,
    protobuf_round_trip
);

// ---------------------------------------------------------------------------------------
// "Latest" is cached for the registry's `latest_ttl`: a newer version is not looked up
// before it passed, and is used once it did.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latest_publisher_looks_the_subject_up_again_after_its_ttl() {
    let plain = registry().await;
    let topic = unique("sr-latest");
    let subject = format!("{topic}-value");
    RegistryCodec::avro_of::<Order>(&plain)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let first = plain.latest(&subject).await.unwrap().id;
    // Long enough for the second version's registration and lookup below on a loaded
    // machine: with 500 ms, a cold registry under a parallel test run took longer once, and
    // the writer looked the subject up again before the assertion "within the TTL".
    let ttl = Duration::from_secs(5);
    let latest = SchemaRegistry::builder(plain.url())
        .latest_ttl(ttl)
        .build()
        .unwrap();
    let writer = RegistryCodec::avro(&latest)
        .publishing(&topic, PublishMode::Latest)
        .await
        .unwrap();
    let order = serde_json::json!({"id": 1, "item": "a", "note": null});
    let written_id = |framed: Vec<u8>| u32::from_be_bytes(framed[1..5].try_into().unwrap());
    assert_eq!(written_id(writer.encode(&order).unwrap()), first);
    // Version 2 of the subject, registered by someone else.
    RegistryCodec::avro(&plain)
        .reader_schema(apache_avro::Schema::parse_str(v2::SCHEMA).unwrap())
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let second = SchemaRegistry::new(plain.url())
        .unwrap()
        .latest(&subject)
        .await
        .unwrap()
        .id;
    assert_ne!(first, second, "a second version");
    let requests = latest.requests();
    assert_eq!(
        written_id(writer.encode(&order).unwrap()),
        first,
        "within the TTL: the cached version, no request"
    );
    assert_eq!(latest.requests(), requests);
    wait_for(WAIT, "the newer version used after the TTL", || {
        written_id(writer.encode(&order).unwrap()) == second
    })
    .await;
}

/// Python's `ProtobufSerializer` writes pings a `Proto<Ping>` handler decodes (its schema
/// registered as Python registers it, a base64 descriptor), and its `ProtobufDeserializer`
/// reads the pings a Rust app framed with its registered `.proto`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_protobuf_serializers_both_ways() {
    use faststream::codec::Proto;
    let registry = registry().await;
    let pings: Vec<proto::Ping> = (1..=3)
        .map(|seq| proto::Ping {
            seq,
            from: "py".into(),
        })
        .collect();
    // Python -> Rust.
    let topic = unique("sr-py-in-protobuf");
    create_topic(&topic, 1).await;
    let args = ["produce", &bootstrap(), registry.url(), &topic, "protobuf"];
    let out = python_serializers(args.map(String::from).to_vec()).await;
    assert_eq!(out.trim(), "done");
    let seen: Seen<proto::Ping> = Arc::default();
    let running = FastStream::new(KafkaBroker::new(bootstrap()))
        .with_state(Arc::clone(&seen))
        .subscriber(
            SubscriberConfig::new("pings_from_python", [topic.as_str()])
                .group_id(unique("sr-py-proto-g"))
                .codec(RegistryCodec::protobuf(&registry)),
            |seen: State<Seen<proto::Ping>>, ping: Proto<proto::Ping>| async move {
                seen.lock().unwrap().push(ping.0);
            },
        )
        .start()
        .await
        .unwrap();
    wait_for(WAIT, "Python's three pings decoded", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), pings);
    // Rust -> Python.
    let topic = unique("sr-py-out-protobuf");
    create_topic(&topic, 1).await;
    let writer = RegistryCodec::protobuf(&registry)
        .proto_schema(proto::PING)
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let records = pings
        .iter()
        .map(|ping| {
            Proto(ping.clone())
                .record_with(topic.as_str(), &writer)
                .unwrap()
        })
        .collect::<Vec<_>>();
    let expected: Vec<_> = pings.iter().map(|p| (p.seq, p.from.clone())).collect();
    assert_eq!(
        python_reads_pings(&registry, &topic, records).await,
        expected
    );
}

/// Publishes `records` (framed pings) to `topic` on Kafka, and the `(seq, from)` of each as
/// Python's `ProtobufDeserializer` read it.
async fn python_reads_pings(
    registry: &SchemaRegistry,
    topic: &str,
    records: Vec<Record>,
) -> Vec<(u64, String)> {
    let count = records.len().to_string();
    KafkaBroker::new(bootstrap())
        .publish_batch(records)
        .await
        .unwrap();
    let args = [
        "consume",
        &bootstrap(),
        registry.url(),
        topic,
        "protobuf",
        &count,
    ];
    let out = python_serializers(args.map(String::from).to_vec()).await;
    out.lines()
        .map(|line| {
            let ping: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let seq = ping["seq"].as_u64().expect("seq");
            (seq, ping["from"].as_str().expect("from").to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// `schema check`: the app's registry schemas against the subjects' latest versions, under
// the compatibility level set on each subject (Apicurio enforces none otherwise).

/// Order with a field added without a default: records of v1 lack it (breaks BACKWARD).
const ORDER_WITH_QTY: &str = r#"{"type":"record","name":"Order","fields":[
    {"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"qty","type":"int"}]}"#;

/// An app whose subscriber reads `topic` with `codec`.
fn app_reading(topic: &str, codec: RegistryCodec) -> FastStream<TestBroker> {
    FastStream::new(TestBroker::new()).subscriber(
        SubscriberConfig::new("check", [topic]).codec(codec),
        |_: Order| async {},
    )
}

/// `APP schema check`'s lines for `app`, and whether the command succeeded.
async fn schema_check(app: FastStream<TestBroker>) -> (Vec<String>, Vec<String>, bool) {
    let report = faststream::cli::check_schemas(app.subscribers()).await;
    let passed = app.cli_from(["app", "schema", "check"]).await;
    if let Err(err) = &passed {
        assert_eq!(err.exit_code(), 1, "{err}");
    }
    (report.checked, report.problems, passed.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_check_passes_a_compatible_change_and_names_a_breaking_field() {
    let registry = registry().await;
    let topic = unique("sr-check");
    let subject = format!("{topic}-value");
    let v1 = serde_json::to_string(&Order::get_schema()).unwrap();
    registry
        .register(&subject, faststream::registry::SchemaType::Avro, &v1)
        .await
        .unwrap();
    registry
        .set_compatibility_level(&subject, "BACKWARD")
        .await
        .unwrap();

    // The same schema, and v2 (a field added with a default): compatible.
    for reader in [v1.as_str(), v2::SCHEMA] {
        let schema = apache_avro::Schema::parse_str(reader).unwrap();
        let codec = RegistryCodec::avro(&registry).reader_schema(schema);
        let (checked, problems, passed) = schema_check(app_reading(&topic, codec)).await;
        assert_eq!(
            checked,
            [format!(
                "ok: subject `{subject}` (payloads of subscriber `check`, topic `{topic}`) under BACKWARD"
            )]
        );
        assert!(problems.is_empty() && passed, "{problems:?}");
    }

    // A field added without a default: the check fails and names it.
    let schema = apache_avro::Schema::parse_str(ORDER_WITH_QTY).unwrap();
    let codec = RegistryCodec::avro(&registry).reader_schema(schema.clone());
    let (checked, problems, passed) = schema_check(app_reading(&topic, codec)).await;
    assert!(checked.is_empty() && !passed);
    assert_eq!(
        problems,
        [format!(
            "subject `{subject}` (payloads of subscriber `check`, topic `{topic}`) under BACKWARD: field `qty` is new and has no default: records of the latest version lack it"
        )]
    );
    // Under NONE the registry lets it through.
    registry
        .set_compatibility_level(&subject, "NONE")
        .await
        .unwrap();
    let codec = RegistryCodec::avro(&registry).reader_schema(schema);
    let (_, problems, passed) = schema_check(app_reading(&topic, codec)).await;
    assert!(problems.is_empty() && passed, "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_check_names_a_json_schema_field_and_a_missing_subject() {
    let registry = registry().await;
    let topic = unique("sr-check-json");
    let subject = format!("{topic}-value");
    // The latest version requires `id` only; Order's JSON Schema requires `item` too.
    let latest = r#"{"title":"Order","type":"object","properties":{"id":{"type":"integer"},"item":{"type":"string"}},"required":["id"]}"#;
    registry
        .register(&subject, faststream::registry::SchemaType::Json, latest)
        .await
        .unwrap();
    registry
        .set_compatibility_level(&subject, "FULL")
        .await
        .unwrap();
    let missing = unique("sr-check-none");
    let app = FastStream::new(TestBroker::new()).subscriber(
        SubscriberConfig::new("check", [topic.as_str()])
            .codec(RegistryCodec::json_of::<Order>(&registry))
            .publisher(PublisherConfig::new(missing.as_str())),
        |order: Order| async move { order },
    );
    let (checked, problems, passed) = schema_check(app).await;
    assert!(checked.is_empty() && !passed, "{checked:?}");
    assert_eq!(
        problems,
        [
            format!(
                "subject `{subject}` (payloads of subscriber `check`, topic `{topic}`) under FULL: field `item` is required now: records of the latest version may lack it"
            ),
            format!(
                "publisher of subscriber `check`, topic `{missing}`: subject `{missing}-value` is not in the schema registry at {}",
                registry.url()
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Protobuf schemas from the message type's descriptor (`RegistryCodec::protobuf_of`, the
// types of tests/proto generated by build.rs with prost-reflect): the message's file
// registered as `.proto` text with its import as a schema reference, a nested message's
// indexes on the wire, and Python's ProtobufDeserializer reading what it wrote.

mod reflected {
    pub(super) use faststream_integration_tests::reflected::shop::v1::{
        envelope::Pong, Origin, Ping,
    };

    /// pings.proto as `protobuf_of` registers it (types named relative to the package, or
    /// fully qualified outside it; the well-known import is no reference, the registry
    /// knows it).
    pub(super) const PINGS_PROTO: &str = r#"syntax = "proto3";
package shop.v1;
import "shop/v1/common.proto";
import "google/protobuf/timestamp.proto";
message Ping {
  uint64 seq = 1;
  string from = 2;
  Origin origin = 3;
  .google.protobuf.Timestamp sent_at = 4;
}
message Envelope {
  oneof body {
    Ping ping = 1;
    Envelope.Pong pong = 2;
  }
  message Pong {
    uint64 seq = 1;
    map<string, string> notes = 2;
  }
}
"#;

    /// common.proto, registered under its import path as the reference.
    pub(super) const COMMON_PROTO: &str = r#"syntax = "proto3";
package shop.v1;
enum Origin {
  ORIGIN_UNSPECIFIED = 0;
  ORIGIN_RUST = 1;
  ORIGIN_PYTHON = 2;
}
"#;
}

async fn reflected_protobuf_round_trip(broker: TestBroker) {
    use faststream::codec::Proto;
    use faststream::registry::{SchemaReference, SchemaType};
    use reflected::{Origin, Ping, Pong};
    let writers = registry().await;
    let (input, output) = (unique("sr-reflect-in"), unique("sr-reflect-out"));
    broker.create_topic(&input, 1).await.unwrap();
    broker.create_topic(&output, 1).await.unwrap();
    let writer = RegistryCodec::protobuf_of::<Ping>(&writers)
        .expect("Ping's file renders")
        .publishing(&input, PublishMode::AutoRegister)
        .await
        .expect("Ping's file registered with its import");
    let reply = RegistryCodec::protobuf_of::<Pong>(&writers)
        .expect("Pong's file renders")
        .publishing(&output, PublishMode::AutoRegister)
        .await
        .expect("Pong's file registered");
    let reader = registry().await;
    let app = FastStream::new(broker.clone()).subscriber(
        SubscriberConfig::new("pong", [input.as_str()])
            .group_id(unique("sr-reflect-g"))
            .codec(RegistryCodec::protobuf(&reader))
            .publisher(PublisherConfig::new(output.as_str()).codec(reply)),
        |ping: Proto<Ping>| async move {
            let notes = [
                ("from".to_owned(), ping.0.from.clone()),
                (
                    "origin".to_owned(),
                    ping.0.origin().as_str_name().to_owned(),
                ),
            ];
            Proto(Pong {
                seq: ping.0.seq + 1,
                notes: notes.into_iter().collect(),
            })
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    let ping = Ping {
        seq: 7,
        from: "rust".into(),
        origin: Origin::Rust.into(),
        sent_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
    };
    let record = Proto(ping).record_with(input.as_str(), &writer).unwrap();
    assert_eq!(
        record.payload.as_deref().map(|p| p[5]),
        Some(0),
        "Ping, the first message of its file: indexes [0] as one zero byte"
    );
    test.publish_record(record).await.unwrap();
    test.published(output.as_str()).wait_for(1).await;
    let out = test.records(&output).await;

    // What the registry holds, read back by a client of its own.
    let fresh = SchemaRegistry::new(writers.url()).unwrap();
    let ping_schema = fresh.latest(&format!("{input}-value")).await.unwrap();
    let pong_schema = fresh.latest(&format!("{output}-value")).await.unwrap();
    assert_eq!(ping_schema.schema_type, SchemaType::Protobuf);
    assert_eq!(ping_schema.schema, reflected::PINGS_PROTO);
    assert_eq!(pong_schema.schema, reflected::PINGS_PROTO, "Pong's file");
    let common = "shop/v1/common.proto";
    let common_version = fresh
        .version_of(common, SchemaType::Protobuf, reflected::COMMON_PROTO, &[])
        .await
        .expect("common.proto registered under its import path");
    let reference = SchemaReference {
        name: common.into(),
        subject: common.into(),
        version: common_version,
    };
    for schema in [&ping_schema, &pong_schema] {
        assert_eq!(schema.references, std::slice::from_ref(&reference));
    }

    // Pong, nested in the file's second message: indexes [1, 0].
    let payload = &out[0].payload;
    assert_eq!(payload[0], 0, "magic byte");
    assert_eq!(
        payload[1..5],
        pong_schema.id.to_be_bytes(),
        "Pong's schema id"
    );
    assert_eq!(
        payload[5..8],
        [4, 2, 0],
        "indexes [1, 0]: their count 2, then 1 and 0, as zig-zag varints"
    );
    let pong = <Pong as prost::Message>::decode(&payload[8..]).unwrap();
    assert_eq!(pong.seq, 8);
    assert_eq!(pong.notes["from"], "rust");
    assert_eq!(pong.notes["origin"], "ORIGIN_RUST");
    test.calls("pong").assert_called(1).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    a_reflect_derived_protobuf_schema_round_trips_in_memory,
    a_reflect_derived_protobuf_schema_round_trips_on_kafka,
    reflected_protobuf_round_trip
);

/// Python's `ProtobufDeserializer` (its shop.Ping has Ping's first two fields) reads the
/// pings a `protobuf_of::<Ping>()` codec framed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_what_a_reflect_derived_protobuf_codec_wrote() {
    use faststream::codec::Proto;
    use reflected::Ping;
    let registry = registry().await;
    let topic = unique("sr-py-out-reflect");
    create_topic(&topic, 1).await;
    let writer = RegistryCodec::protobuf_of::<Ping>(&registry)
        .unwrap()
        .publishing(&topic, PublishMode::AutoRegister)
        .await
        .unwrap();
    let records = (1..=3)
        .map(|seq| {
            let ping = Ping {
                seq,
                from: "rust".into(),
                ..Ping::default()
            };
            Proto(ping).record_with(topic.as_str(), &writer).unwrap()
        })
        .collect::<Vec<_>>();
    let read = python_reads_pings(&registry, &topic, records).await;
    assert_eq!(
        read,
        (1..=3)
            .map(|seq| (seq, "rust".to_owned()))
            .collect::<Vec<_>>()
    );
}
