//! Runs the generated code: configuration through a fake registry, and the registered
//! handler through `faststream::Handler`.

use faststream::extract::{AppState, ExtractError, MessageContext};
use faststream::{
    publisher, subscriber, Handler, IntoSubscriber, Key, Message, Registry, Reply, SubscriberConfig,
};
use std::future::Future;
use std::pin::Pin;

type Call = Box<dyn Fn(Message) -> Pin<Box<dyn Future<Output = Reply> + Send>>>;
type TryCall =
    Box<dyn Fn(Message) -> Result<Pin<Box<dyn Future<Output = Reply> + Send>>, ExtractError>>;

/// Records configurations and keeps handlers callable.
#[derive(Default)]
struct FakeRegistry {
    configs: Vec<SubscriberConfig>,
    calls: Vec<Call>,
    /// The same handlers, returning extraction errors instead of panicking on them.
    try_calls: Vec<TryCall>,
}

impl Registry for FakeRegistry {
    fn add_subscriber<H, T>(&mut self, config: SubscriberConfig, handler: H)
    where
        H: Handler<T>,
        T: Send + 'static,
    {
        self.configs.push(config);
        let copy = handler.clone();
        self.try_calls.push(Box::new(move |message: Message| {
            let state = AppState::default();
            let future = copy.call(&message, &MessageContext::new(&state, None))?;
            Ok(Box::pin(future) as Pin<Box<dyn Future<Output = Reply> + Send>>)
        }));
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
    let schema_fn = config.docs.payload_schema.expect("payload schema");
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
    assert_eq!(config.backend.topics, ["in-topic", "other-topic"]);
    assert_eq!(config.backend.group_id.as_deref(), Some("g1"));
    assert_eq!(
        config.delivery.ack_policy,
        Some(faststream::AckPolicy::NackOnError)
    );
    assert_eq!(
        config.backend.auto_offset_reset,
        Some(faststream::OffsetReset::Latest)
    );
    assert_eq!(config.delivery.max_concurrency, Some(4));
    assert_eq!(config.docs.title.as_deref(), Some("T"));
    assert_eq!(
        config.docs.description.as_deref(),
        Some("Registers users.\n\nSecond paragraph.")
    );
    assert!(config.docs.include_in_schema);
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
    assert_eq!(config.docs.description.as_deref(), Some("D"));
    assert!(!config.docs.include_in_schema);
    assert_eq!(config.backend.group_id, None);
    assert_eq!(config.delivery.ack_policy, None, "inherited");
    assert!(config.publishers.is_empty());
    assert_eq!(schema_json(config)["type"], "integer");

    let config = &registry_of(tick).configs[0];
    assert!(config.docs.payload_schema.is_none());
    assert_eq!(config.docs.description, None);
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
) -> Result<faststream::Response<Invoice>, faststream::BoxError> {
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

/// User types named like framework extractors: payload, because they are `Deserialize` and not
/// extractors (`FromMessageParts`). Each counts its decodings, to show a payload is decoded exactly once.
mod named_like_extractors {
    use faststream::{subscriber, Deserialize, JsonSchema};
    use std::cell::Cell;

    thread_local! {
        /// Decodings of `Message` on this thread (tests run in parallel on their own threads).
        pub static MESSAGE_DECODES: Cell<usize> = const { Cell::new(0) };
    }

    #[derive(JsonSchema)]
    #[schemars(crate = "faststream::schemars")]
    pub struct Message {
        pub text: String,
    }

    // Decoding through a counted shadow struct.
    impl<'de> faststream::serde::Deserialize<'de> for Message {
        fn deserialize<D: faststream::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(crate = "faststream::serde")]
            struct Shadow {
                text: String,
            }
            MESSAGE_DECODES.with(|n| n.set(n.get() + 1));
            Shadow::deserialize(d).map(|s| Message { text: s.text })
        }
    }

    #[derive(Deserialize, JsonSchema)]
    #[serde(crate = "faststream::serde")]
    #[schemars(crate = "faststream::schemars")]
    pub struct State {
        pub count: u32,
    }

    /// Payload without `JsonSchema`.
    #[derive(Deserialize)]
    #[serde(crate = "faststream::serde")]
    pub struct Opaque {
        pub id: u64,
    }

    #[subscriber("a")]
    pub async fn single(message: Message) -> String {
        message.text
    }

    #[subscriber("b")]
    pub async fn fields(message: Message, state: State, user_id: i64) -> String {
        format!("{} {} {user_id}", message.text, state.count)
    }

    #[subscriber("c")]
    pub async fn beside_extractors(
        message: Message,
        key: faststream::Key<String>,
        raw: faststream::Message,
        meta: faststream::Meta,
    ) -> String {
        format!("{} {} {} {}", message.text, key.0, raw.topic, meta.offset)
    }

    #[subscriber("d")]
    pub async fn state_only(state: State) -> u32 {
        state.count
    }

    #[subscriber("e")]
    pub async fn opaque(body: Opaque) -> u64 {
        body.id
    }

    #[subscriber("f")]
    pub async fn opaque_fields(body: Opaque, n: Option<u64>, key: faststream::Key<String>) -> u64 {
        let _ = key;
        body.id + n.unwrap_or(100)
    }

    #[subscriber("g")]
    pub async fn pattern(State { count }: State, raw: faststream::Message) -> u32 {
        count + raw.partition as u32
    }

    #[subscriber("h")]
    pub async fn only_extractors(key: faststream::Key<String>, meta: faststream::Meta) {
        let _ = (key, meta);
    }
}

/// The schema and the definitions it refers to.
fn schema_and_definitions(config: &SubscriberConfig) -> (serde_json::Value, serde_json::Value) {
    let schema_fn = config.docs.payload_schema.expect("payload schema");
    let mut generator = schemars::gen::SchemaGenerator::default();
    let schema = serde_json::to_value(schema_fn(&mut generator)).expect("schema serializes");
    let definitions = serde_json::to_value(generator.definitions()).expect("definitions");
    (schema, definitions)
}

fn published(reply: Reply) -> String {
    match reply {
        Reply::Publish(out) => String::from_utf8(out.payload.to_vec()).expect("utf-8"),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn payload_types_named_like_extractors_have_their_schema() {
    use named_like_extractors as user;
    let (schema, definitions) = schema_and_definitions(&user::single::config());
    assert_eq!(schema, serde_json::json!({"$ref": "#/definitions/Message"}));
    assert_eq!(
        definitions["Message"]["properties"]["text"]["type"],
        "string"
    );

    let (schema, definitions) = schema_and_definitions(&user::fields::config());
    assert_eq!(schema["title"], "Fields:Message:Payload");
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["properties"]["message"]["$ref"],
        "#/definitions/Message"
    );
    assert_eq!(schema["properties"]["state"]["$ref"], "#/definitions/State");
    assert_eq!(schema["properties"]["user_id"]["type"], "integer");
    assert_eq!(
        schema["required"],
        serde_json::json!(["message", "state", "user_id"])
    );
    assert_eq!(
        definitions["State"]["properties"]["count"]["type"],
        "integer"
    );

    // One payload parameter among extractors: the whole payload, no object around it.
    let (schema, _) = schema_and_definitions(&user::beside_extractors::config());
    assert_eq!(schema, serde_json::json!({"$ref": "#/definitions/Message"}));
    let (schema, _) = schema_and_definitions(&user::state_only::config());
    assert_eq!(schema, serde_json::json!({"$ref": "#/definitions/State"}));
    let (schema, _) = schema_and_definitions(&user::pattern::config());
    assert_eq!(schema, serde_json::json!({"$ref": "#/definitions/State"}));
    assert!(user::only_extractors::config()
        .docs
        .payload_schema
        .is_none());
}

#[test]
fn payload_types_without_json_schema_are_any_json() {
    use named_like_extractors as user;
    let (schema, _) = schema_and_definitions(&user::opaque::config());
    assert_eq!(schema, serde_json::json!({}));

    let (schema, _) = schema_and_definitions(&user::opaque_fields::config());
    assert_eq!(schema["properties"]["body"], serde_json::json!({}));
    assert_eq!(
        schema["properties"]["n"]["type"],
        serde_json::json!(["integer", "null"])
    );
    assert!(schema["properties"].get("key").is_none());
    assert_eq!(schema["required"], serde_json::json!(["body"]));
}

#[tokio::test]
async fn payload_types_named_like_extractors_decode_once() {
    use named_like_extractors as user;
    // A current-thread runtime: everything below runs on this test's thread.
    let before = user::MESSAGE_DECODES.with(|n| n.get());
    let registry = registry_of(user::single);
    let reply = (registry.calls[0])(Message::new("a", r#"{"text":"hi"}"#)).await;
    assert_eq!(published(reply), "hi");

    let registry = registry_of(user::fields);
    let payload = r#"{"user_id":3,"message":{"text":"hi"},"extra":[1],"state":{"count":2}}"#;
    let reply = (registry.calls[0])(Message::new("b", payload)).await;
    assert_eq!(published(reply), "hi 2 3");

    let registry = registry_of(user::beside_extractors);
    let mut message = Message::new("c", r#"{"text":"hi"}"#);
    message.key = Some("k1".into());
    message.offset = 7;
    let reply = (registry.calls[0])(message).await;
    assert_eq!(published(reply), "hi k1 c 7");
    // Three messages, each `Message` payload decoded once.
    assert_eq!(user::MESSAGE_DECODES.with(|n| n.get()) - before, 3);

    let registry = registry_of(user::pattern);
    let reply = (registry.calls[0])(Message::new("g", r#"{"count":4}"#)).await;
    assert_eq!(published(reply), "4");

    let registry = registry_of(user::opaque_fields);
    let mut message = Message::new("f", r#"{"body":{"id":1}}"#);
    message.key = Some("k".into());
    assert_eq!(published((registry.calls[0])(message).await), "101");
}

#[test]
fn field_errors_name_the_field() {
    use named_like_extractors as user;
    let registry = registry_of(user::fields);
    let missing = r#"{"message":{"text":"hi"},"user_id":3}"#;
    let Err(ExtractError::Payload(error)) = (registry.try_calls[0])(Message::new("b", missing))
    else {
        panic!("expected a payload error")
    };
    assert!(error.message.contains("missing field `state`"), "{error}");

    let wrong = r#"{"message":{"text":"hi"},"state":{"count":"x"},"user_id":3}"#;
    let Err(ExtractError::Payload(error)) = (registry.try_calls[0])(Message::new("b", wrong))
    else {
        panic!("expected a payload error")
    };
    assert_eq!(error.path, "state.count");

    let twice = r#"{"user_id":1,"user_id":2,"message":{"text":"hi"},"state":{"count":1}}"#;
    let Err(ExtractError::Payload(error)) = (registry.try_calls[0])(Message::new("b", twice))
    else {
        panic!("expected a payload error")
    };
    assert!(
        error.message.contains("duplicate field `user_id`"),
        "{error}"
    );

    let registry = registry_of(user::opaque_fields);
    let Err(ExtractError::Key(_)) =
        (registry.try_calls[0])(Message::new("f", r#"{"body":{"id":1}}"#))
    else {
        panic!("expected a key error: the key is an extractor, not a field")
    };
}

/// A custom extractor marked by trait, used without `#[extract]` between payload fields.
mod custom_extractor {
    use faststream::extract::{ExtractError, MessageContext};
    use faststream::{subscriber, Extraction, FromMessageParts, Message};

    pub struct Tenant(pub String);

    impl FromMessageParts for Tenant {
        fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
            message
                .headers
                .get_str("tenant")
                .map(|t| Tenant(t.to_owned()))
                .ok_or(ExtractError::MissingHeader("tenant"))
                .into()
        }
    }

    #[subscriber("in")]
    pub async fn register(user: String, tenant: Tenant, user_id: i64) -> String {
        format!("{}/{user}/{user_id}", tenant.0)
    }
}

#[tokio::test]
async fn custom_extractors_are_recognised_by_trait() {
    let config = &registry_of(custom_extractor::register).configs[0];
    let schema = schema_json(config);
    assert_eq!(schema["required"], serde_json::json!(["user", "user_id"]));
    assert!(schema["properties"].get("tenant").is_none());

    let registry = registry_of(custom_extractor::register);
    let mut message = Message::new("in", r#"{"user":"ann","user_id":7,"tenant":"ignored"}"#);
    message.headers.insert("tenant", "acme");
    assert_eq!(published((registry.calls[0])(message).await), "acme/ann/7");
}
