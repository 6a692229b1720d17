//! Routers, declarative routes, filters and topics from constants or the environment: each
//! body runs in the in-memory `TestBroker` and on the local Kafka (its own topics and groups).

use faststream::asyncapi::AsyncApiVersion;
use faststream::filter::{self, Filter, Filtered};
use faststream::testing::TestBroker;
use faststream::{
    publisher, subscriber, AckPolicy, Backoff, Broker, CommitTiming, DeliveryPolicy, ErrorPolicy,
    FastStream, Message, Publisher, Record, Route, Router, State, SubscriberConfig,
};
use faststream_integration_tests::{both_modes, fast_backoff, logs, unique};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

// ---------------------------------------------------------------------------------------
// The seed example under a router.

/// The seed handler (its own group, so that it never shares one with other test binaries).
#[subscriber("in-topic", group_id = "faststream-rs-routing-seed")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

async fn seed_under_router(broker: TestBroker) {
    let prefix = format!("{}-", unique("rt-seed"));
    let (input, output) = (format!("{prefix}in-topic"), format!("{prefix}out-topic"));
    broker.create_topic(&input, 1).await.unwrap();
    let app =
        FastStream::new(broker).include_router(Router::new(prefix.as_str()).include(handle_msg));
    assert_eq!(app.subscribers()[0].backend.topics, [input.as_str()]);
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    assert!(
        doc["channels"][format!("{input}:HandleMsg")].is_object(),
        "{}",
        doc["channels"]
    );
    assert_eq!(
        doc["channels"][format!("{output}:Publisher")]["address"],
        output.as_str()
    );
    let test = TestBroker::start(app).await.unwrap();
    test.publish(json!({"user": "John", "user_id": 1}), input.as_str())
        .await
        .unwrap();
    test.calls("handle_msg")
        .assert_called_once_with(json!({"user": "John", "user_id": 1}))
        .await;
    test.published(output.as_str())
        .assert_one("User: 1 - John registered")
        .await;
    test.shutdown().await.unwrap();
}
both_modes!(
    seed_example_under_a_router_in_memory,
    seed_example_under_a_router_on_kafka,
    seed_under_router
);

// ---------------------------------------------------------------------------------------
// Nested routers: prefixes concatenate, layers nest, policies cascade.

/// A layer that records `{tag}:{topic}@{offset}` for every message it sees.
fn tag(
    seen: &Arc<Mutex<Vec<String>>>,
    tag: &'static str,
) -> faststream::tower::util::MapRequestLayer<impl Fn(Message) -> Message + Clone> {
    let seen = Arc::clone(seen);
    faststream::tower::util::MapRequestLayer::new(move |message: Message| {
        seen.lock()
            .unwrap()
            .push(format!("{tag}:{}@{}", message.topic, message.offset));
        message
    })
}

async fn nested_routers(broker: TestBroker) {
    let prefix = format!("{}-", unique("rt-nest"));
    let picky_topic = format!("{prefix}inner-picky");
    let flaky_topic = format!("{prefix}retry-flaky");
    let strict_topic = format!("{prefix}retry-strict");
    for topic in [&picky_topic, &flaky_topic, &strict_topic] {
        broker.create_topic(topic, 1).await.unwrap();
    }
    let dead = format!("{picky_topic}-dlt");
    broker.create_topic(&dead, 1).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicUsize::new(0));
    let groups: Vec<String> = (0..3).map(|_| unique("rt-nest-g")).collect();

    let inner = Router::new("inner-").layer(tag(&seen, "inner")).subscriber(
        SubscriberConfig::new("picky", ["picky"])
            .group_id(groups[0].as_str())
            .layer(tag(&seen, "subscriber")),
        |n: i64| async move {
            if n == 13 {
                Err(std::io::Error::other("unlucky"))
            } else {
                Ok(())
            }
        },
    );
    // The outer router's error policy applies to the inner router's subscriber.
    let outer = Router::new(prefix.as_str())
        .layer(tag(&seen, "outer"))
        .error_policy(
            ErrorPolicy::retry(2)
                .backoff(fast_backoff())
                .then_dead_letter(),
        )
        .include_router(inner);
    // A router's ack policy, overridden by a subscriber's own.
    let retrying = Router::new(format!("{prefix}retry-"))
        .ack_policy(AckPolicy::NackOnError)
        .subscriber(
            SubscriberConfig::new("flaky", ["flaky"])
                .group_id(groups[1].as_str())
                .backoff(fast_backoff()),
            |attempts: State<Arc<AtomicUsize>>, n: i64| async move {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(std::io::Error::other("not yet"))
                } else {
                    Ok(n)
                }
            },
        )
        .subscriber(
            SubscriberConfig::new("strict", ["strict"])
                .group_id(groups[2].as_str())
                .ack_policy(AckPolicy::AckAfter),
            |n: i64| async move {
                if n == 1 {
                    Err(std::io::Error::other("no retry for me"))
                } else {
                    Ok(())
                }
            },
        );
    let app = FastStream::new(broker.clone())
        .with_state(Arc::clone(&attempts))
        .layer(tag(&seen, "app"))
        .ack_policy(AckPolicy::RejectOnError)
        .include_router(outer)
        .include_router(retrying);
    let configs = app.subscribers();
    assert_eq!(configs[0].backend.topics, [picky_topic.as_str()]);
    assert_eq!(
        configs[0].delivery_policy().failure,
        ErrorPolicy::retry(2)
            .backoff(fast_backoff())
            .then_dead_letter(),
        "the outer router's, over the app's RejectOnError"
    );
    assert_eq!(
        configs[1].delivery_policy().failure,
        ErrorPolicy::preset(AckPolicy::NackOnError, fast_backoff()),
        "the router's"
    );
    assert_eq!(
        configs[2].delivery.ack_policy,
        Some(AckPolicy::AckAfter),
        "its own"
    );
    assert_eq!(configs[2].delivery_policy().failure, ErrorPolicy::default());

    let test = TestBroker::start(app).await.unwrap();
    for n in [1, 13] {
        test.publish(n, picky_topic.as_str()).await.unwrap();
    }
    test.publish(5, flaky_topic.as_str()).await.unwrap();
    for n in [1, 2] {
        test.publish(n, strict_topic.as_str()).await.unwrap();
    }

    let letter = test.published(dead.as_str()).assert_one(13).await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("2"));
    test.calls("picky").assert_called(3).await;
    let flaky = test.calls("flaky").assert_called(3).await;
    assert!(flaky.iter().all(|c| c.message.offset == 0), "redelivered");
    assert_eq!(flaky[2].outcome, Some(Ok(())));
    let strict = test.calls("strict").assert_called(2).await;
    assert!(strict[0].outcome.clone().unwrap().is_err());
    assert_eq!(strict[1].outcome, Some(Ok(())));

    let order: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.strip_suffix(&format!(":{picky_topic}@0")))
        .map(str::to_owned)
        .collect();
    assert_eq!(order, ["app", "outer", "inner", "subscriber"]);
    let strict_layers = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.contains(&strict_topic))
        .count();
    assert_eq!(strict_layers, 2, "only the app's layer, once per message");
    test.shutdown().await.unwrap();
    assert_eq!(
        broker.committed(&groups[2], &strict_topic, 0).await,
        Some(2)
    );
}
both_modes!(
    nested_routers_in_memory,
    nested_routers_on_kafka,
    nested_routers
);

// ---------------------------------------------------------------------------------------
// Filters.

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Order {
    id: i64,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Refund {
    order_id: i64,
}

async fn filters(broker: TestBroker) {
    let capture = logs();
    let (events, dlt_events, defaulted) = (
        unique("rt-events"),
        unique("rt-events-dlt-policy"),
        unique("rt-events-default"),
    );
    let output = unique("rt-events-out");
    for topic in [&events, &dlt_events, &defaulted, &output] {
        broker.create_topic(topic, 1).await.unwrap();
    }
    let dead = format!("{dlt_events}-dlt");
    broker.create_topic(&dead, 1).await.unwrap();
    let group = unique("rt-events-g");

    let handlers = Filtered::new()
        .when(
            filter::header("type", "refund").and(filter::payload::<Refund>()),
            |refund: Refund| async move { format!("refund {}", refund.order_id) },
        )
        .when(filter::payload::<Order>(), |order: Order| async move {
            format!("order {}", order.id)
        })
        .when(
            filter::content_type("text/plain"),
            |text: String| async move { format!("text {text}") },
        );
    let app = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("events", [events.as_str()])
                .group_id(group.as_str())
                .publish_to(output.as_str()),
            handlers.clone(),
        )
        .subscriber(
            SubscriberConfig::new("strict_events", [dlt_events.as_str()])
                .group_id(unique("rt-events-g"))
                .error_policy(
                    ErrorPolicy::retry(3)
                        .backoff(fast_backoff())
                        .then_dead_letter(),
                ),
            handlers.clone(),
        )
        .subscriber(
            SubscriberConfig::new("any_event", [defaulted.as_str()])
                .group_id(unique("rt-events-g"))
                .publish_to(output.as_str()),
            Filtered::new()
                .when(filter::key("vip"), |order: Order| async move {
                    format!("vip order {}", order.id)
                })
                .otherwise(
                    |message: Message| async move { format!("other at {}", message.offset) },
                ),
        );
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    assert_eq!(
        doc["components"]["schemas"]["Events:Message:Payload"]["oneOf"],
        json!([
            {"$ref": "#/components/schemas/Refund"},
            {"$ref": "#/components/schemas/Order"},
        ])
    );

    let test = TestBroker::start(app).await.unwrap();
    test.publish(json!({"id": 1}), events.as_str())
        .await
        .unwrap();
    test.publish_record(
        Record::encode(events.as_str(), &json!({"order_id": 7}))
            .unwrap()
            .header("type", "refund"),
    )
    .await
    .unwrap();
    test.publish("hello", events.as_str()).await.unwrap();
    test.publish(json!([1, 2]), events.as_str()).await.unwrap();
    test.publish(json!({"id": 2}), events.as_str())
        .await
        .unwrap();

    let calls = test.calls("events").assert_called(5).await;
    let unmatched = calls[3].outcome.clone().unwrap().unwrap_err();
    assert!(unmatched.contains("no handler accepts"), "{unmatched}");
    let out: Vec<_> = test.published(output.as_str()).wait_for(4).await;
    let payloads: Vec<String> = out
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["order 1", "refund 7", "text hello", "order 2"]);
    let lines = capture.lines_with(&format!("{events}[0]@3"));
    assert_eq!(lines.len(), 1, "logged once: {lines:#?}");
    assert!(
        lines[0].contains("failed: no handler accepts"),
        "{}",
        lines[0]
    );

    // Under a dead-letter policy: not retried (it cannot get better), dead-lettered at once.
    test.publish(json!({"other": true}), dlt_events.as_str())
        .await
        .unwrap();
    let letter = test
        .published(dead.as_str())
        .assert_one(json!({"other": true}))
        .await;
    assert_eq!(letter.headers.get_str("dlt-attempts"), Some("1"));
    assert_eq!(
        letter.headers.get_str("dlt-exception-type"),
        Some("NoMatchingHandler")
    );
    test.calls("strict_events").assert_called(1).await;

    // With a default handler nothing is unmatched.
    test.publish_record(
        Record::encode(defaulted.as_str(), &json!({"id": 3}))
            .unwrap()
            .key("vip"),
    )
    .await
    .unwrap();
    test.publish(json!({"id": 4}), defaulted.as_str())
        .await
        .unwrap();
    test.published(output.as_str()).wait_for(6).await;
    test.published(output.as_str())
        .assert_any("vip order 3")
        .await;
    test.published(output.as_str())
        .assert_any("other at 1")
        .await;
    test.shutdown().await.unwrap();
    assert_eq!(broker.committed(&group, &events, 0).await, Some(5));
}
both_modes!(filters_in_memory, filters_on_kafka, filters);

// ---------------------------------------------------------------------------------------
// Topics from constants and the environment, declarative routes, router publishers.

const ORDERS_TOPIC: &str = "orders";

mod topics {
    pub const TOTALS: &str = "totals";
}

/// Set once per process, before anything registers `from_env`.
fn env_topic() -> &'static str {
    static TOPIC: OnceLock<String> = OnceLock::new();
    TOPIC.get_or_init(|| {
        let topic = unique("rt-env");
        // Set before any subscriber reads it; no other test reads this variable.
        std::env::set_var("FASTSTREAM_ROUTING_TEST_TOPIC", &topic);
        topic
    })
}

#[subscriber(
    env = "FASTSTREAM_ROUTING_TEST_TOPIC",
    default = "routing-test-unset",
    group_id = "faststream-rs-routing-env"
)]
async fn from_env(n: i64) -> i64 {
    n + 1
}

#[subscriber(ORDERS_TOPIC, group_id = "faststream-rs-routing-const")]
#[publisher(topics::TOTALS)]
async fn total(amounts: Vec<i64>) -> i64 {
    amounts.iter().sum()
}

async fn double(n: i64) -> i64 {
    n * 2
}

async fn topics_and_routes(broker: TestBroker) {
    let env_topic = env_topic();
    let prefix = format!("{}-", unique("rt-const"));
    let (orders, totals) = (
        format!("{prefix}{ORDERS_TOPIC}"),
        format!("{prefix}{}", topics::TOTALS),
    );
    broker.create_topic(env_topic, 1).await.unwrap();
    broker.create_topic(&orders, 1).await.unwrap();
    // Routes from "configuration": input and output topics per route.
    let table = [("numbers", "doubled"), ("more-numbers", "more-doubled")];
    let mut routes = Router::new(prefix.as_str()).include(total);
    for (input, output) in table {
        broker
            .create_topic(&format!("{prefix}{input}"), 1)
            .await
            .unwrap();
        let config = SubscriberConfig::new(format!("double_{input}"), [input])
            .group_id(unique("rt-route-g"))
            .publish_to(output);
        routes = routes.include(Route::new(config, double));
    }
    let audit = routes.publisher("audit");
    assert_eq!(audit.topic(), format!("{prefix}audit"));
    let routes = routes.with_publisher(&audit).subscriber(
        SubscriberConfig::new("audited", ["audited"]).group_id(unique("rt-route-g")),
        |audit: State<Publisher>, n: i64| async move { audit.publish(&n).await.map(|_| ()) },
    );
    broker
        .create_topic(&format!("{prefix}audited"), 1)
        .await
        .unwrap();
    let app = FastStream::new(broker)
        .with_state(audit.clone())
        .include(from_env)
        .include_router(routes);
    assert_eq!(app.subscribers()[0].backend.topics, [env_topic.to_owned()]);
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    let channels = &doc["channels"];
    assert!(
        channels[format!("{env_topic}:FromEnv")].is_object(),
        "{channels}"
    );
    assert!(
        channels[format!("{orders}:Total")].is_object(),
        "{channels}"
    );
    assert!(
        channels[format!("{totals}:Publisher")].is_object(),
        "{channels}"
    );
    assert!(channels[format!("{prefix}doubled:Publisher")].is_object());
    assert!(channels[format!("{prefix}audit:Publisher")].is_object());

    let test = TestBroker::start(app).await.unwrap();
    test.publish(41, env_topic).await.unwrap();
    test.publish(json!([1, 2, 3]), orders.as_str())
        .await
        .unwrap();
    for (n, (input, _)) in table.iter().enumerate() {
        test.publish(n as i64 + 1, format!("{prefix}{input}").as_str())
            .await
            .unwrap();
    }
    test.publish(9, format!("{prefix}audited").as_str())
        .await
        .unwrap();
    test.calls("from_env").assert_called_once_with(41).await;
    test.published(totals.as_str()).assert_one(6).await;
    test.published(format!("{prefix}doubled"))
        .assert_one(2)
        .await;
    test.published(format!("{prefix}more-doubled"))
        .assert_one(4)
        .await;
    test.published(format!("{prefix}audit")).assert_one(9).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    topics_from_constants_env_and_routes_in_memory,
    topics_from_constants_env_and_routes_on_kafka,
    topics_and_routes
);

// ---------------------------------------------------------------------------------------
// A router's prefix on topic patterns and explicit partitions.

async fn patterns_and_partitions_under_router(broker: TestBroker) {
    use faststream::pattern::Path;
    let prefix = format!("{}-", unique("rt-pp"));
    // Publisher topics are under the prefix too.
    let output = format!("{prefix}out");
    for region in ["eu", "us"] {
        broker
            .create_topic(&format!("{prefix}orders-{region}"), 1)
            .await
            .unwrap();
    }
    let pinned = format!("{prefix}pinned");
    broker.create_topic(&pinned, 2).await.unwrap();
    let router = Router::new(prefix.as_str())
        .subscriber(
            SubscriberConfig::new("regional", Vec::<String>::new())
                .group_id(unique("rt-pp-g"))
                .pattern("orders-{region}")
                .publish_to("out"),
            |Path(region): Path<String>, n: i64| async move { format!("{region}:{n}") },
        )
        .subscriber(
            SubscriberConfig::new("pinned", ["pinned"])
                .group_id(unique("rt-pp-g"))
                .partitions([1]),
            |_n: i64| async move {},
        );
    let app = FastStream::new(broker).include_router(router);
    let regional = &app.subscribers()[0];
    assert_eq!(
        regional
            .backend
            .pattern
            .as_ref()
            .map(|p| p.template().to_owned()),
        Some(format!("{prefix}orders-{{region}}"))
    );
    assert_eq!(
        &*app.subscribers()[1].backend.assignment[0].topic,
        pinned.as_str()
    );
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    assert!(
        doc["channels"][format!("{prefix}orders-region:Regional")]["address"]
            == format!("{prefix}orders-{{region}}").as_str(),
        "{}",
        doc["channels"]
    );

    let test = TestBroker::start(app).await.unwrap();
    test.publish(1, format!("{prefix}orders-eu").as_str())
        .await
        .unwrap();
    test.publish(2, format!("{prefix}orders-us").as_str())
        .await
        .unwrap();
    for (partition, n) in [(0, 10), (1, 11), (0, 20), (1, 21)] {
        test.publish_record(
            Record::encode(pinned.as_str(), &n)
                .unwrap()
                .partition(partition),
        )
        .await
        .unwrap();
    }
    let mut texts: Vec<String> = test
        .published(output.as_str())
        .wait_for(2)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["eu:1", "us:2"]);
    let calls = test.calls("pinned").assert_called(2).await;
    let mut seen: Vec<i64> = calls.iter().map(|c| c.json().as_i64().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, [11, 21], "only partition 1 of the prefixed topic");
    test.calls("regional").assert_called(2).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    patterns_and_partitions_under_a_router_in_memory,
    patterns_and_partitions_under_a_router_on_kafka,
    patterns_and_partitions_under_router
);

// ---------------------------------------------------------------------------------------
// A topic pattern from the macro: `#[subscriber(pattern = "...")]` with a `Path` extractor.

/// Reads every `{prefix}orders-{region}` topic (the prefix is the router's, unique per run)
/// and publishes `{region}:{n}` to `{prefix}regional-out`.
#[subscriber(
    pattern = "orders-{region}",
    group_id = "faststream-rs-routing-macro-pattern"
)]
#[publisher("regional-out")]
async fn regional_orders(
    faststream::pattern::Path(region): faststream::pattern::Path<String>,
    n: i64,
) -> String {
    format!("{region}:{n}")
}

async fn macro_pattern(broker: TestBroker) {
    let prefix = format!("{}-", unique("rt-mp"));
    let output = format!("{prefix}regional-out");
    for region in ["eu", "us-west"] {
        broker
            .create_topic(&format!("{prefix}orders-{region}"), 1)
            .await
            .unwrap();
    }
    let app = FastStream::new(broker)
        .include_router(Router::new(prefix.as_str()).include(regional_orders));
    let config = &app.subscribers()[0];
    assert_eq!(
        config
            .backend
            .pattern
            .as_ref()
            .map(|p| p.template().to_owned()),
        Some(format!("{prefix}orders-{{region}}"))
    );
    assert_eq!(config.backend.topics.len(), 1, "the pattern's regex only");

    let test = TestBroker::start(app).await.unwrap();
    test.publish(1, format!("{prefix}orders-eu").as_str())
        .await
        .unwrap();
    test.publish(2, format!("{prefix}orders-us-west").as_str())
        .await
        .unwrap();
    let mut texts: Vec<String> = test
        .published(output.as_str())
        .wait_for(2)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["eu:1", "us-west:2"]);
    let calls = test.calls("regional_orders").assert_called(2).await;
    let mut topics: Vec<&str> = calls.iter().map(|c| &*c.message.topic).collect();
    topics.sort();
    assert_eq!(
        topics,
        [
            format!("{prefix}orders-eu"),
            format!("{prefix}orders-us-west")
        ]
    );
    test.shutdown().await.unwrap();
}
both_modes!(
    macro_pattern_with_path_in_memory,
    macro_pattern_with_path_on_kafka,
    macro_pattern
);

// ---------------------------------------------------------------------------------------
// A batch subscriber and a batch publisher from the macro.

/// Gets `{prefix}amounts` in batches of at most 3 records; publishes each batch as one JSON
/// array to `{prefix}batch-lists` and its elements one by one to `{prefix}batch-each`.
#[subscriber(
    "amounts",
    batch = true,
    max_records = 3,
    batch_timeout_ms = 500,
    group_id = "faststream-rs-routing-macro-batch"
)]
#[publisher("batch-lists")]
#[publisher("batch-each", batch = true)]
async fn batched(amounts: Vec<i64>) -> Vec<i64> {
    amounts.iter().map(|n| n * 10).collect()
}

async fn macro_batch(broker: TestBroker) {
    let prefix = format!("{}-", unique("rt-mb"));
    let input = format!("{prefix}amounts");
    let (lists, each) = (
        format!("{prefix}batch-lists"),
        format!("{prefix}batch-each"),
    );
    broker.create_topic(&input, 1).await.unwrap();
    // Written before the subscriber starts, so its first batch finds them all.
    let records = (1..=5).map(|n| Record::encode(input.as_str(), &n).unwrap().partition(0));
    broker.publish_batch(records).await.unwrap();
    let app = FastStream::new(broker).include_router(Router::new(prefix.as_str()).include(batched));
    let config = &app.subscribers()[0];
    assert_eq!(config.backend.batch.map(|b| b.max_records), Some(3));
    assert!(!config.publishers[0].batch && config.publishers[1].batch);

    let test = TestBroker::start(app).await.unwrap();
    let arrays: Vec<serde_json::Value> = test
        .published(lists.as_str())
        .wait_for(2)
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    assert_eq!(arrays, [json!([10, 20, 30]), json!([40, 50])]);
    let singles: Vec<String> = test
        .published(each.as_str())
        .wait_for(5)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(singles, ["10", "20", "30", "40", "50"]);
    test.calls("batched").assert_called(2).await;
    test.shutdown().await.unwrap();
}
both_modes!(
    macro_batch_subscriber_in_memory,
    macro_batch_subscriber_on_kafka,
    macro_batch
);

// ---------------------------------------------------------------------------------------
// Configuration only (nothing runs).

#[test]
fn policies_cascade_from_app_to_router_to_subscriber() {
    fn app<B: Broker>(broker: B) -> FastStream<B> {
        let inner = Router::new("in-")
            .ack_policy(AckPolicy::Manual)
            .error_policy(ErrorPolicy::retry(4))
            .subscriber(SubscriberConfig::new("a", ["a"]), |_: i64| async {})
            .subscriber(
                SubscriberConfig::new("b", ["b"])
                    .ack_policy(AckPolicy::AckFirst)
                    .error_policy(ErrorPolicy::retry(2)),
                |_: i64| async {},
            );
        let outer = Router::new("out-")
            .ack_policy(AckPolicy::NackOnError)
            .error_policy(ErrorPolicy::retry(9))
            .include_router(inner)
            .subscriber(SubscriberConfig::new("c", ["c"]), |_: i64| async {});
        FastStream::new(broker)
            .subscriber(SubscriberConfig::new("d", ["d"]), |_: i64| async {})
            .include_router(outer)
            .include_router(Router::new("").subscriber(
                SubscriberConfig::new("e", ["e"]).publish_to("x"),
                |n: i64| async move { n },
            ))
            .ack_policy(AckPolicy::RejectOnError)
    }
    let app = app(TestBroker::new());
    let by_name = |name: &str| {
        app.subscribers()
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap()
    };
    let delivery = |commit, failure| DeliveryPolicy { commit, failure };
    let a = by_name("a");
    assert_eq!(a.backend.topics, ["out-in-a"]);
    assert_eq!(a.delivery.ack_policy, None, "its own setting stays unset");
    assert_eq!(
        a.delivery_policy(),
        delivery(CommitTiming::ByHandler, ErrorPolicy::retry(4)),
        "the inner router's"
    );
    let b = by_name("b");
    assert_eq!(
        b.delivery_policy(),
        delivery(CommitTiming::BeforeHandler, ErrorPolicy::retry(2)),
        "its own"
    );
    let c = by_name("c");
    assert_eq!(c.backend.topics, ["out-c"]);
    assert_eq!(
        c.delivery_policy(),
        delivery(CommitTiming::AfterHandler, ErrorPolicy::retry(9)),
        "the outer router's error policy, over its NackOnError"
    );
    let d = by_name("d");
    assert_eq!(d.delivery.error_policy, None);
    assert_eq!(
        d.delivery_policy(),
        delivery(
            CommitTiming::AfterHandler,
            ErrorPolicy::preset(AckPolicy::RejectOnError, Backoff::default())
        ),
        "the app's, set after"
    );
    let e = by_name("e");
    assert_eq!(e.backend.topics, ["e"]);
    assert_eq!(&*e.publishers[0].topic, "x");
    assert_eq!(e.delivery_policy(), d.delivery_policy());
}
