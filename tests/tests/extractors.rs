//! Extractors that wait, dependencies built from other extractors, values a layer attaches,
//! cleanup after the handler, the start-time checks of parameters against their subscriber,
//! and closures agreeing with `#[subscriber]` functions. Each runs in both modes (in memory,
//! and on the real broker).

use faststream::extract::{
    Extension, ExtractError, Extraction, FromMessageParts, Key, MessageContext, Outcome,
};
use faststream::testing::TestBroker;
use faststream::tower::util::MapRequestLayer;
use faststream::{
    subscriber, Ack, Batch, Broker, ErrorPolicy, FastStream, Message, Record, State,
    SubscriberConfig,
};
use faststream_integration_tests::{both_modes, fast_backoff, unique, wait_for};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[derive(serde::Deserialize)]
struct Order {
    id: i64,
}

/// The customers an async lookup reads (stands in for a database).
#[derive(Default)]
struct Directory(HashMap<String, String>);

/// A dependency that waits and is built from two other extractors: the key names the
/// customer, looked up in the app's `Directory`.
struct Customer {
    name: String,
}

impl FromMessageParts for Customer {
    fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        let key = Key::<String>::from_message_parts(message, cx);
        let directory = State::<Directory>::from_message_parts(message, cx);
        Extraction::pending(async move {
            let (Key(id), directory) = (key.await?, directory.await?);
            // A real lookup would await a database here; this one yields to the runtime so the
            // extraction is really pending when the handler is called.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let State(directory) = directory;
            directory
                .0
                .get(&id)
                .map(|name| Customer { name: name.clone() })
                .ok_or_else(|| ExtractError::Other(format!("no customer `{id}`")))
        })
    }
}

async fn async_dependencies(broker: TestBroker) {
    let (input, output) = (unique("ex-dep-in"), unique("ex-dep-out"));
    broker.create_topic(&input, 1).await.unwrap();
    let directory = Directory(HashMap::from([
        ("c1".to_owned(), "Ada".to_owned()),
        ("c2".to_owned(), "Grace".to_owned()),
    ]));
    let runs = Arc::new(AtomicUsize::new(0));
    let app = FastStream::new(broker)
        .with_state(directory)
        .with_state(Arc::clone(&runs))
        .subscriber(
            SubscriberConfig::new("orders", [input.as_str()])
                .group_id(unique("ex-g"))
                .publish_to(output.as_str())
                .error_policy(ErrorPolicy::retry(1).then_skip()),
            |runs: State<Arc<AtomicUsize>>, customer: Customer, order: Order| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                format!("{} ordered {}", customer.name, order.id)
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    for (key, id) in [("c1", 1), ("nobody", 2), ("c2", 3)] {
        test.publish_record(
            Record::encode(input.as_str(), &serde_json::json!({"id": id}))
                .unwrap()
                .key(key),
        )
        .await
        .unwrap();
    }
    let out = test.published(output.as_str()).wait_for(2).await;
    let texts: Vec<String> = out
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    // The unknown customer fails its extraction (after the wait), so its record is skipped
    // and the handler never runs for it; the records around it go through in order.
    assert_eq!(texts, ["Ada ordered 1", "Grace ordered 3"]);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    test.shutdown().await.unwrap();
}
both_modes!(
    async_dependencies_in_memory,
    async_dependencies_on_kafka,
    async_dependencies
);

#[derive(Clone, Debug, PartialEq)]
struct Tenant(String);

async fn extension_from_a_layer(broker: TestBroker) {
    let (input, output) = (unique("ex-ext-in"), unique("ex-ext-out"));
    broker.create_topic(&input, 1).await.unwrap();
    // The layer reads the tenant from a header once; the handler takes it typed.
    let tenant_layer = MapRequestLayer::new(|mut message: Message| {
        let tenant = message
            .headers
            .get_str("tenant")
            .unwrap_or("none")
            .to_uppercase();
        message.extensions.insert(Tenant(tenant));
        message
    });
    let app = FastStream::new(broker).subscriber(
        SubscriberConfig::new("tenanted", [input.as_str()])
            .group_id(unique("ex-g"))
            .publish_to(output.as_str())
            .layer(tenant_layer),
        |Extension(tenant): Extension<Tenant>, body: String| async move {
            format!("{}:{body}", tenant.0)
        },
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish_record(Record::new(input.as_str(), "hello").header("tenant", "eu"))
        .await
        .unwrap();
    test.publish_record(Record::new(input.as_str(), "bare"))
        .await
        .unwrap();
    let out = test.published(output.as_str()).wait_for(2).await;
    let texts: Vec<_> = out.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(texts, ["EU:hello", "NONE:bare"]);
    test.shutdown().await.unwrap();
}
both_modes!(
    extension_from_a_layer_in_memory,
    extension_from_a_layer_on_kafka,
    extension_from_a_layer
);

type Released = Arc<Mutex<Vec<(i64, Outcome)>>>;

/// A dependency with cleanup: it records, after the handler, how the handler ended.
struct Lease;

impl FromMessageParts for Lease {
    fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        let released = cx.state().get::<Released>();
        let offset = message.offset;
        cx.teardown().defer(move |outcome| async move {
            // Cleanup that waits (a rollback, a lease returned over the network).
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Some(released) = released {
                released.lock().unwrap().push((offset, outcome));
            }
        });
        Extraction::ready(Lease)
    }
}

async fn teardown_after_the_handler(broker: TestBroker) {
    let input = unique("ex-td-in");
    broker.create_topic(&input, 1).await.unwrap();
    let released: Released = Arc::default();
    let app = FastStream::new(broker)
        .with_state(Arc::clone(&released))
        .subscriber(
            SubscriberConfig::new("leased", [input.as_str()])
                .group_id(unique("ex-g"))
                .handler_timeout(Duration::from_millis(200))
                .error_policy(ErrorPolicy::retry(1).then_skip().backoff(fast_backoff())),
            |_lease: Lease, body: String| async move {
                match body.as_str() {
                    "fail" => Err(std::io::Error::other("refused")),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            },
        );
    let test = TestBroker::start(app).await.unwrap();
    for body in ["ok", "fail", "slow", "ok"] {
        test.publish_record(Record::new(input.as_str(), body))
            .await
            .unwrap();
    }
    wait_for(WAIT, "four teardowns", || {
        released.lock().unwrap().len() == 4
    })
    .await;
    let mut seen = released.lock().unwrap().clone();
    seen.sort_by_key(|(offset, _)| *offset);
    assert_eq!(
        seen,
        [
            (0, Outcome::Succeeded),
            (1, Outcome::Failed),
            (2, Outcome::Cancelled),
            (3, Outcome::Succeeded),
        ]
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    teardown_after_the_handler_in_memory,
    teardown_after_the_handler_on_kafka,
    teardown_after_the_handler
);

/// The start error of an app whose only subscriber is `config` with `handler`.
async fn start_error<H, T>(broker: TestBroker, config: SubscriberConfig, handler: H) -> String
where
    H: faststream::Handler<T>,
    T: Send + 'static,
{
    let app = FastStream::new(broker).subscriber(config.group_id(unique("ex-g")), handler);
    match TestBroker::start(app).await {
        Ok(_) => panic!("the app started"),
        Err(error) => error.to_string(),
    }
}

async fn parameters_checked_at_start(broker: TestBroker) {
    let input = unique("ex-check");
    broker.create_topic(&input, 1).await.unwrap();
    let ack = start_error(
        broker.clone(),
        SubscriberConfig::new("acks", [input.as_str()]),
        |_ack: Ack, _body: String| async {},
    )
    .await;
    assert!(ack.contains("subscriber `acks` cannot start"), "{ack}");
    assert!(ack.contains("parameter `Ack`"), "{ack}");
    assert!(ack.contains(".ack_policy(AckPolicy::Manual)"), "{ack}");
    assert_eq!(ack.lines().count(), 1, "{ack}");

    let batch = start_error(
        broker.clone(),
        SubscriberConfig::new("batches", [input.as_str()]),
        |batch: Batch| async move { batch.len() },
    )
    .await;
    assert!(
        batch.contains("subscriber `batches` cannot start"),
        "{batch}"
    );
    assert!(
        batch.contains("parameter `Batch` needs a batch subscriber"),
        "{batch}"
    );

    let path = start_error(
        broker,
        SubscriberConfig::new("paths", [input.as_str()]),
        |region: faststream::pattern::Path<String>| async move { region.0 },
    )
    .await;
    assert!(path.contains("subscriber `paths` cannot start"), "{path}");
    assert!(
        path.contains("parameter `Path<String>` needs a pattern subscriber"),
        "{path}"
    );
}
both_modes!(
    parameters_checked_at_start_in_memory,
    parameters_checked_at_start_on_kafka,
    parameters_checked_at_start
);

#[derive(serde::Deserialize)]
struct Pair {
    a: i64,
    b: i64,
}

type Sums = Arc<Mutex<Vec<(&'static str, i64)>>>;

/// The macro handler's topic: one per test process (in memory, each broker has its own).
static SUM_TOPIC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| unique("ex-sum-in"));

#[subscriber(SUM_TOPIC.as_str())]
async fn sum_fields(a: i64, sums: State<Sums>, b: i64) {
    sums.lock().unwrap().push(("macro", a + b));
}

async fn closures_agree_with_macro_handlers(broker: TestBroker) {
    let input = SUM_TOPIC.as_str();
    broker.create_topic(input, 1).await.unwrap();
    let sums: Sums = Arc::default();
    // The macro decodes the fields `a` and `b` by name, wherever they are; a closure says the
    // same with one struct parameter, last (two plain parameters do not compile: see
    // faststream-macros/tests/ui/fail/closure_two_payloads.rs).
    let app = FastStream::new(broker)
        .with_state(Arc::clone(&sums))
        .subscriber(
            SubscriberConfig::new("by-closure", [input]).group_id(unique("ex-g")),
            |sums: State<Sums>, pair: Pair| async move {
                sums.lock().unwrap().push(("closure", pair.a + pair.b));
            },
        )
        .include(sum_fields);
    let test = TestBroker::start(app).await.unwrap();
    test.publish_record(Record::encode(input, &serde_json::json!({"a": 2, "b": 40})).unwrap())
        .await
        .unwrap();
    wait_for(WAIT, "both handlers", || sums.lock().unwrap().len() == 2).await;
    let mut seen = sums.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("closure", 42), ("macro", 42)]);
    test.shutdown().await.unwrap();
}
both_modes!(
    closures_agree_with_macro_handlers_in_memory,
    closures_agree_with_macro_handlers_on_kafka,
    closures_agree_with_macro_handlers
);
