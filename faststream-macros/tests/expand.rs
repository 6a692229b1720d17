//! Runs the generated code: configuration through a fake registry, and the registered
//! handler through `faststream::Handler`.

use faststream::extract::{AppState, MessageContext};
use faststream::{
    publisher, subscriber, Handler, IntoSubscriber, Key, Message, Registry, Reply, SubscriberConfig,
};
use std::future::Future;
use std::pin::Pin;

type Call = Box<dyn Fn(Message) -> Pin<Box<dyn Future<Output = Reply> + Send>>>;

/// Records configurations and keeps handlers callable.
#[derive(Default)]
struct FakeRegistry {
    configs: Vec<SubscriberConfig>,
    calls: Vec<Call>,
}

impl Registry for FakeRegistry {
    fn add_subscriber<H, T>(&mut self, config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        self.configs.push(config);
        self.calls.push(Box::new(move |message: Message| {
            let state = AppState::default();
            let future = handler.call(&message, &MessageContext::new(&state, None));
            Box::pin(async move {
                match future {
                    Ok(future) => future.await,
                    Err(error) => panic!("extraction failed: {error}"),
                }
            })
        }));
    }
}

fn registry_of(subscriber: impl IntoSubscriber) -> FakeRegistry {
    let mut registry = FakeRegistry::default();
    subscriber.register(&mut registry);
    registry
}

/// Registers users.
///
///   Second paragraph.
#[subscriber("in-topic", "other-topic", group_id = "g1", ack_policy = "nack_on_error", max_concurrency = 4,
             auto_offset_reset = latest, title = "T")]
#[publisher("out-topic", title = "P", description = "PD", include_in_schema = true)]
#[publisher("audit-topic", include_in_schema = false)]
async fn handle_msg(
    user: String,
    user_id: i64,
    key: Key<Option<String>>,
    #[header("x-tenant")] tenant: Option<String>,
) -> String {
    let _ = (key, tenant);
    format!("User: {user_id} - {user} registered")
}

#[subscriber("numbers", description = "D", include_in_schema = false)]
async fn double(n: i64) -> i64 {
    n * 2
}

#[subscriber("ticks")]
async fn tick(key: Key<String>) {
    let _ = key;
}

fn publisher_summary(
    config: &SubscriberConfig,
) -> Vec<(String, Option<String>, Option<String>, bool)> {
    config
        .publishers
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                p.title.clone(),
                p.description.clone(),
                p.include_in_schema,
            )
        })
        .collect()
}

fn schema_json(config: &SubscriberConfig) -> serde_json::Value {
    let schema_fn = config.payload_schema.expect("payload schema");
    let mut generator = schemars::gen::SchemaGenerator::default();
    serde_json::to_value(schema_fn(&mut generator)).expect("schema serializes")
}

#[test]
fn config_of_a_full_subscriber() {
    let registry = registry_of(handle_msg);
    let [config] = &registry.configs[..] else {
        panic!("one subscriber")
    };
    assert_eq!(config.name, "handle_msg");
    assert_eq!(config.topics, ["in-topic", "other-topic"]);
    assert_eq!(config.group_id.as_deref(), Some("g1"));
    assert_eq!(config.ack_policy, faststream::AckPolicy::NackOnError);
    assert_eq!(
        config.auto_offset_reset,
        Some(faststream::OffsetReset::Latest)
    );
    assert_eq!(config.max_concurrency, Some(4));
    assert_eq!(config.title.as_deref(), Some("T"));
    assert_eq!(
        config.description.as_deref(),
        Some("Registers users.\n\nSecond paragraph.")
    );
    assert!(config.include_in_schema);
    assert_eq!(
        publisher_summary(config),
        [
            (
                "out-topic".to_owned(),
                Some("P".to_owned()),
                Some("PD".to_owned()),
                true
            ),
            ("audit-topic".to_owned(), None, None, false),
        ]
    );
    assert_eq!(handle_msg::config().name, "handle_msg");

    let schema = schema_json(config);
    assert_eq!(schema["title"], "HandleMsg:Message:Payload");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["user"]["type"], "string");
    assert_eq!(schema["properties"]["user_id"]["type"], "integer");
    let mut required: Vec<_> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .collect();
    required.sort_by_key(|v| v.to_string());
    assert_eq!(required, ["user", "user_id"]);
}

#[test]
fn config_of_single_and_no_payload() {
    let config = &registry_of(double).configs[0];
    assert_eq!(config.description.as_deref(), Some("D"));
    assert!(!config.include_in_schema);
    assert_eq!(config.group_id, None);
    assert_eq!(config.ack_policy, faststream::AckPolicy::AckAfter);
    assert!(config.publishers.is_empty());
    assert_eq!(schema_json(config)["type"], "integer");

    let config = &registry_of(tick).configs[0];
    assert!(config.payload_schema.is_none());
    assert_eq!(config.description, None);
}

/// An invoice, published with its schema.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Invoice {
    id: u64,
}

/// Serializable but without a schema.
#[derive(serde::Serialize)]
struct Opaque {
    id: u64,
}

#[subscriber("in")]
#[publisher("text")]
async fn returns_string(n: i64) -> String {
    n.to_string()
}

#[subscriber("in")]
#[publisher("text")]
async fn returns_str(n: i64) -> &'static str {
    if n > 0 {
        "positive"
    } else {
        "other"
    }
}

#[subscriber("in")]
#[publisher("invoices")]
#[publisher("audit")]
async fn returns_struct(id: u64) -> Invoice {
    Invoice { id }
}

#[subscriber("in")]
#[publisher("invoices")]
async fn returns_result(id: u64) -> Result<Invoice, std::io::Error> {
    Ok(Invoice { id })
}

#[subscriber("in")]
#[publisher("invoices")]
async fn returns_response(id: u64) -> faststream::Response<Invoice> {
    faststream::Response::new(Invoice { id }).key(id.to_string())
}

#[subscriber("in")]
#[publisher("invoices")]
async fn returns_result_response(
    id: u64,
) -> Result<faststream::Response<Invoice>, faststream::HandlerError> {
    Ok(faststream::Response::new(Invoice { id }))
}

#[subscriber("in")]
#[publisher("nothing")]
async fn returns_unit(id: u64) {
    let _ = id;
}

#[subscriber("in")]
#[publisher("nothing")]
async fn returns_unit_result(id: u64) -> Result<(), std::io::Error> {
    let _ = id;
    Ok(())
}

#[subscriber("in")]
#[publisher("opaque")]
async fn returns_opaque(id: u64) -> Opaque {
    Opaque { id }
}

#[subscriber("in")]
#[publisher("opaque")]
async fn returns_opaque_result(id: u64) -> Result<faststream::Response<Opaque>, std::io::Error> {
    Ok(faststream::Response::new(Opaque { id }))
}

#[subscriber("in")]
#[publisher("opaque")]
async fn returns_impl_trait(id: u64) -> impl serde::Serialize {
    id
}

/// A user type named like the generated code's probe.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Probe {
    id: u64,
}

#[subscriber("in")]
#[publisher("probes")]
async fn returns_probe(id: u64) -> Probe {
    Probe { id }
}

/// The schema of every publisher of `subscriber` (all the same), as JSON, with the
/// definitions the generator collected; `None` when the publishers have no schema.
fn publisher_schema(
    subscriber: impl IntoSubscriber,
) -> Option<(serde_json::Value, serde_json::Value)> {
    let config = &registry_of(subscriber).configs[0];
    let mut schemas = config.publishers.iter().map(|publisher| {
        let schema_fn = publisher.schema?;
        let mut generator = schemars::gen::SchemaGenerator::default();
        let schema = serde_json::to_value(schema_fn(&mut generator)).expect("schema serializes");
        let definitions = serde_json::to_value(generator.definitions()).expect("definitions");
        Some((schema, definitions))
    });
    let first = schemas.next().expect("a publisher");
    assert!(schemas.all(|other| other == first));
    first
}

#[test]
fn publisher_schema_follows_the_return_type() {
    let text = serde_json::json!({"type": "string"});
    assert_eq!(publisher_schema(returns_string).unwrap().0, text);
    assert_eq!(publisher_schema(returns_str).unwrap().0, text);

    let invoice_ref = serde_json::json!({"$ref": "#/definitions/Invoice"});
    for subscriber in [
        publisher_schema(returns_struct),
        publisher_schema(returns_result),
        publisher_schema(returns_response),
        publisher_schema(returns_result_response),
    ] {
        let (schema, definitions) = subscriber.expect("a schema");
        assert_eq!(schema, invoice_ref);
        assert_eq!(
            definitions["Invoice"]["properties"]["id"]["type"],
            "integer"
        );
    }

    assert_eq!(publisher_schema(returns_unit), None);
    assert_eq!(publisher_schema(returns_unit_result), None);
    assert_eq!(publisher_schema(returns_opaque), None);
    assert_eq!(publisher_schema(returns_opaque_result), None);
    assert_eq!(publisher_schema(returns_impl_trait), None);
    assert_eq!(
        publisher_schema(returns_probe).unwrap().0,
        serde_json::json!({"$ref": "#/definitions/Probe"})
    );
}

#[tokio::test]
async fn registered_handler_decodes_the_payload() {
    let registry = registry_of(handle_msg);
    let message = Message::new("in-topic", r#"{"user":"John","user_id":1}"#);
    match (registry.calls[0])(message).await {
        Reply::Publish(out) => assert_eq!(out.payload, "User: 1 - John registered"),
        other => panic!("unexpected reply {other:?}"),
    }

    let registry = registry_of(double);
    match (registry.calls[0])(Message::new("numbers", "21")).await {
        Reply::Publish(out) => assert_eq!(out.payload, "42"),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test]
async fn call_is_a_plain_function() {
    assert_eq!(
        handle_msg::call("John".into(), 1, Key(None), None).await,
        "User: 1 - John registered"
    );
    assert_eq!(double::call(2).await, 4);
}
