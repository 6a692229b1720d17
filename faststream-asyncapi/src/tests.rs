use super::*;
use schemars::JsonSchema;
use serde_json::json;

/// The struct `#[subscriber]` generates for `handle_msg(user: String, user_id: i64)`.
#[derive(JsonSchema)]
#[schemars(title = "HandleMsg:Message:Payload")]
#[allow(dead_code)]
struct HandleMsgPayload {
    user: String,
    user_id: i64,
}

/// A registered user.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct User {
    /// Display name.
    name: String,
    /// Where they live, when known.
    address: Option<Address>,
    plan: Plan,
    #[serde(default)]
    nickname: Option<String>,
}

/// A postal address.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct Address {
    street: String,
    city: String,
}

/// A subscription plan.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
enum Plan {
    Free,
    Pro,
}

fn quickstart() -> Vec<Arc<SubscriberConfig>> {
    let mut sub = SubscriberConfig::new("handle_msg", ["in-topic"]).publish_to("out-topic");
    sub.docs.payload_schema = Some(HandleMsgPayload::json_schema);
    vec![Arc::new(sub)]
}

fn users() -> Vec<Arc<SubscriberConfig>> {
    let sub = SubscriberConfig::new("on_user", ["users"])
        .description("Stores users.")
        .payload_schema(|g| g.subschema_for::<User>());
    vec![Arc::new(sub)]
}

fn server() -> ServerInfo {
    ServerInfo::new(["localhost:9092"], "kafka")
}

/// Every `$ref` in `doc` resolves inside `doc`; returns how many there were.
fn assert_refs_resolve(doc: &Value) -> usize {
    fn walk(node: &Value, doc: &Value, count: &mut usize) {
        match node {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref") {
                    let r = r.as_str().expect("$ref is a string");
                    let pointer = r.strip_prefix('#').expect("local $ref");
                    assert!(doc.pointer(pointer).is_some(), "unresolvable $ref {r}");
                    *count += 1;
                }
                map.values().for_each(|v| walk(v, doc, count));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc, count)),
            _ => {}
        }
    }
    let mut count = 0;
    walk(doc, doc, &mut count);
    count
}

#[test]
fn quickstart_v3_follows_faststream_naming() {
    let doc = document(
        &AppInfo::default(),
        &server(),
        &quickstart(),
        AsyncApiVersion::V3_0_0,
    );
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(
        doc["info"],
        json!({"title": "FastStream", "version": "0.1.0"})
    );
    assert_eq!(doc["defaultContentType"], "application/json");
    assert_eq!(
        doc["servers"]["development"],
        json!({"host": "localhost:9092", "protocol": "kafka", "protocolVersion": "auto"})
    );
    let channel = &doc["channels"]["in-topic:HandleMsg"];
    assert_eq!(channel["address"], "in-topic");
    assert_eq!(
        channel["bindings"],
        json!({"kafka": {"topic": "in-topic", "bindingVersion": "0.4.0"}})
    );
    assert_eq!(
        channel["messages"]["SubscribeMessage"]["$ref"],
        "#/components/messages/in-topic:HandleMsg:SubscribeMessage"
    );
    let receive = &doc["operations"]["in-topic:HandleMsgSubscribe"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(receive["channel"]["$ref"], "#/channels/in-topic:HandleMsg");
    assert_eq!(
        receive["bindings"]["kafka"]["groupId"]["enum"],
        json!(["handle_msg"])
    );
    let send = &doc["operations"]["out-topic:Publisher"];
    assert_eq!(send["action"], "send");
    assert_eq!(
        doc["channels"]["out-topic:Publisher"]["address"],
        "out-topic"
    );

    let message = &doc["components"]["messages"]["in-topic:HandleMsg:SubscribeMessage"];
    assert_eq!(
        message["correlationId"]["location"],
        "$message.header#/correlation_id"
    );
    assert_eq!(
        message["payload"]["$ref"],
        "#/components/schemas/HandleMsg:Message:Payload"
    );
    let payload = &doc["components"]["schemas"]["HandleMsg:Message:Payload"];
    assert_eq!(payload["title"], "HandleMsg:Message:Payload");
    assert_eq!(payload["type"], "object");
    assert_eq!(payload["required"], json!(["user", "user_id"]));
    assert_eq!(
        payload["properties"]["user_id"],
        json!({"title": "User Id", "type": "integer", "format": "int64"})
    );
    assert_eq!(payload["properties"]["user"]["title"], "User");
    assert!(doc["components"]["messages"]["out-topic:Publisher:Message"].is_object());
    assert!(assert_refs_resolve(&doc) >= 8);
}

#[test]
fn struct_payload_keeps_its_name_and_nested_refs_resolve() {
    for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
        let doc = document(&AppInfo::default(), &server(), &users(), version);
        let schemas = &doc["components"]["schemas"];
        let user = &schemas["User"];
        assert_eq!(user["description"], "A registered user.");
        assert_eq!(user["required"], json!(["name", "plan"]), "{version}");
        assert_eq!(user["properties"]["name"]["description"], "Display name.");
        assert_eq!(
            user["properties"]["nickname"]["type"],
            json!(["string", "null"])
        );
        assert!(schemas["Address"]["properties"]["city"].is_object());
        assert_eq!(schemas["Plan"]["enum"], json!(["free", "pro"]));
        let text = doc.to_string();
        assert!(!text.contains("#/definitions"), "{text}");
        assert!(assert_refs_resolve(&doc) >= 4, "{version}");
    }
    let doc = document(
        &AppInfo::default(),
        &server(),
        &users(),
        AsyncApiVersion::V3_0_0,
    );
    assert_eq!(
        doc["components"]["messages"]["users:OnUser:SubscribeMessage"]["payload"],
        json!({"$ref": "#/components/schemas/User"})
    );
    assert_eq!(
        doc["channels"]["users:OnUser"]["description"],
        "Stores users."
    );
}

#[test]
fn primitive_payloads_get_a_named_schema_and_text_content_type() {
    let sub = SubscriberConfig::new("echo", ["t"]).payload_schema(|g| g.subschema_for::<String>());
    let doc = document(
        &AppInfo::default(),
        &server(),
        &[Arc::new(sub)],
        AsyncApiVersion::V3_0_0,
    );
    assert_eq!(
        doc["components"]["schemas"]["Echo:Message:Payload"],
        json!({"type": "string", "title": "Echo:Message:Payload"})
    );
    assert_eq!(
        doc["components"]["messages"]["t:Echo:SubscribeMessage"]["contentType"],
        "text/plain"
    );
}

#[test]
fn excluded_subscribers_and_publishers_are_omitted() {
    let hidden = SubscriberConfig::new("hidden", ["secret"])
        .include_in_schema(false)
        .publish_to("secret-out");
    let shown = SubscriberConfig::new("shown", ["public"])
        .publisher(PublisherConfig::new("internal").include_in_schema(false))
        .publisher(
            PublisherConfig::new("audit")
                .title("audit-log")
                .description("Every decision."),
        );
    let doc = document(
        &AppInfo::default(),
        &server(),
        &[Arc::new(hidden), Arc::new(shown)],
        AsyncApiVersion::V3_0_0,
    );
    let channels: Vec<_> = doc["channels"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(channels, ["audit-log", "public:Shown"]);
    assert_eq!(doc["channels"]["audit-log"]["address"], "audit");
    assert_eq!(
        doc["channels"]["audit-log"]["description"],
        "Every decision."
    );
    assert_eq!(doc["operations"]["audit-log"]["action"], "send");
    assert!(!doc.to_string().contains("secret"));
    assert_refs_resolve(&doc);
}

#[test]
// The exact `&`s select the impls (autoref specialization), whatever clippy sees for `User`.
#[allow(clippy::needless_borrow)]
fn publisher_schema_from_a_return_type_resolves() {
    use faststream_core::reply::schema_probe::{Probe, StripResponse, StripResult, ToSchema};
    use faststream_core::Response;
    // What `#[subscriber]` generates for `-> Result<Response<User>, std::io::Error>`.
    let probe = Probe::<Result<Response<User>, std::io::Error>>::new();
    let probe = (&&probe).strip_result();
    let probe = (&&probe).strip_response();
    let schema = (&&&probe).schema().expect("User is JsonSchema");
    let sub = SubscriberConfig::new("on_user", ["users"])
        .publisher(PublisherConfig::new("users-out").schema(schema));
    for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
        let doc = document(
            &AppInfo::default(),
            &server(),
            &[Arc::new(sub.clone())],
            version,
        );
        assert_eq!(
            doc["components"]["messages"]["users-out:Publisher:Message"]["payload"],
            json!({"$ref": "#/components/schemas/User"}),
            "{version}"
        );
        assert!(doc["components"]["schemas"]["User"]["properties"]["plan"].is_object());
        assert!(doc["components"]["schemas"]["Address"].is_object());
        assert_refs_resolve(&doc);
    }
}

#[test]
fn v2_uses_subscribe_and_publish_operations() {
    let info = AppInfo::default()
        .title("Users")
        .description("User service.")
        .tag(Tag::new("users"))
        .external_docs(ExternalDocs::new("https://example.com/docs"));
    let doc = document(&info, &server(), &quickstart(), AsyncApiVersion::V2_6_0);
    assert_eq!(doc["asyncapi"], "2.6.0");
    assert_eq!(doc["servers"]["development"]["url"], "localhost:9092");
    assert_eq!(doc["tags"][0]["name"], "users");
    assert_eq!(doc["externalDocs"]["url"], "https://example.com/docs");
    assert!(doc["info"].get("tags").is_none());
    assert!(doc.get("operations").is_none());
    let sub = &doc["channels"]["in-topic:HandleMsg"];
    assert_eq!(sub["servers"], json!(["development"]));
    assert_eq!(
        sub["subscribe"]["message"]["$ref"],
        "#/components/messages/in-topic:HandleMsg:Message"
    );
    assert_eq!(
        doc["channels"]["out-topic:Publisher"]["publish"]["message"]["$ref"],
        "#/components/messages/out-topic:Publisher:Message"
    );
    assert_refs_resolve(&doc);
}

#[test]
fn info_and_security_are_written() {
    let info = AppInfo::default()
        .version("2.0.0")
        .contact(
            Contact::new("Team")
                .email("team@example.com")
                .url("https://example.com"),
        )
        .license(License::new("MIT").url("https://opensource.org/licenses/MIT"))
        .tag(Tag::new("users").description("User things"));
    let server = ServerInfo::new(["h:9093"], "kafka-secure")
        .security(SecurityScheme::new("scram512", "scramSha512"));
    let v3 = document(&info, &server, &quickstart(), AsyncApiVersion::V3_0_0);
    assert_eq!(v3["info"]["contact"]["email"], "team@example.com");
    assert_eq!(v3["info"]["license"]["name"], "MIT");
    assert_eq!(v3["info"]["tags"][0]["description"], "User things");
    assert_eq!(
        v3["servers"]["development"]["security"],
        json!([{"$ref": "#/components/securitySchemes/scram512"}])
    );
    assert_eq!(
        v3["components"]["securitySchemes"]["scram512"],
        json!({"type": "scramSha512"})
    );
    assert_refs_resolve(&v3);
    let v2 = document(&info, &server, &quickstart(), AsyncApiVersion::V2_6_0);
    assert_eq!(
        v2["servers"]["development"]["security"],
        json!([{"scram512": []}])
    );
}

#[test]
fn versions_parse_and_yaml_renders() {
    assert_eq!(
        "3.0.0".parse::<AsyncApiVersion>().unwrap(),
        AsyncApiVersion::V3_0_0
    );
    assert_eq!(AsyncApiVersion::default().to_string(), "3.0.0");
    assert!(matches!(
        "4.0".parse::<AsyncApiVersion>(),
        Err(AsyncApiError::UnknownVersion(v)) if v == "4.0"
    ));
    let doc = document(
        &AppInfo::default(),
        &server(),
        &quickstart(),
        AsyncApiVersion::V3_0_0,
    );
    let yaml = to_yaml(&doc).unwrap();
    assert!(yaml.contains("asyncapi: 3.0.0"), "{yaml}");
    let back: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(back, doc);
}

#[test]
fn camel_case_names() {
    assert_eq!(camel_case("handle_msg"), "HandleMsg");
    assert_eq!(camel_case("on__user_"), "OnUser");
    assert_eq!(camel_case("Already"), "Already");
    assert_eq!(field_title("user_id"), "User Id");
}

#[test]
fn dead_letter_topics_are_publisher_channels_of_the_payload() {
    let mut sub = SubscriberConfig::new("handle_msg", ["in-topic"])
        .error_policy(faststream_core::ErrorPolicy::retry(3).then_dead_letter());
    sub.docs.payload_schema = Some(HandleMsgPayload::json_schema);
    let doc = document(
        &AppInfo::default(),
        &server(),
        &[Arc::new(sub)],
        AsyncApiVersion::V3_0_0,
    );
    assert_eq!(
        doc["channels"]["in-topic-dlt:Publisher"]["address"],
        "in-topic-dlt"
    );
    assert_eq!(
        doc["operations"]["in-topic-dlt:Publisher"]["action"],
        "send"
    );
    // The dead letter carries the subscriber's payload.
    let schema_of = |message: &str| {
        let reference = doc["components"]["messages"][message]["payload"]["$ref"]
            .as_str()
            .expect("a payload reference")
            .trim_start_matches("#/components/schemas/")
            .to_owned();
        doc["components"]["schemas"][reference.as_str()]["properties"].clone()
    };
    let dead_letter = schema_of("in-topic-dlt:Publisher:Message");
    assert_eq!(
        dead_letter,
        schema_of("in-topic:HandleMsg:SubscribeMessage")
    );
    assert!(dead_letter.get("user_id").is_some());
    // Without a dead-letter policy there is no such channel.
    let plain = document(
        &AppInfo::default(),
        &server(),
        &quickstart(),
        AsyncApiVersion::V3_0_0,
    );
    assert!(plain["channels"].get("in-topic-dlt:Publisher").is_none());
}

#[test]
fn retry_topics_are_subscribed_and_publisher_channels_of_the_payload() {
    let delays = [1, 10].map(std::time::Duration::from_secs);
    let mut sub = SubscriberConfig::new("handle_msg", ["in-topic"])
        .group_id("billing")
        .error_policy(faststream_core::ErrorPolicy::retry_topics(delays).then_dead_letter());
    sub.docs.payload_schema = Some(HandleMsgPayload::json_schema);
    for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
        let doc = document(
            &AppInfo::default(),
            &server(),
            &[Arc::new(sub.clone())],
            version,
        );
        let channels = &doc["channels"];
        for topic in [
            "in-topic-billing-retry-1000",
            "in-topic-billing-retry-10000",
        ] {
            let read = match version {
                AsyncApiVersion::V3_0_0 => &channels[format!("{topic}:HandleMsg")]["address"],
                AsyncApiVersion::V2_6_0 => {
                    &channels[format!("{topic}:HandleMsg")]["subscribe"]["operationId"]
                }
            };
            assert!(!read.is_null(), "{version}: {topic} subscribed: {channels}");
            assert!(
                channels[format!("{topic}:Publisher")].is_object(),
                "{version}: {topic} published to: {channels}"
            );
        }
        assert!(channels["in-topic-dlt:Publisher"].is_object(), "{version}");
        assert!(assert_refs_resolve(&doc) >= 3, "{version}");
        if version == AsyncApiVersion::V3_0_0 {
            let operations = &doc["operations"];
            let action = |name: &str| operations[name]["action"].clone();
            assert_eq!(
                action("in-topic-billing-retry-1000:HandleMsgSubscribe"),
                "receive"
            );
            assert_eq!(action("in-topic-billing-retry-1000:Publisher"), "send");
        }
    }
}

#[test]
fn filtered_subscribers_list_each_payload_as_one_of() {
    let sub = SubscriberConfig::new("events", ["events"])
        .payload_one_of([(|g| g.subschema_for::<User>()) as SchemaFn, |g| {
            g.subschema_for::<i64>()
        }]);
    for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
        let doc = document(
            &AppInfo::default(),
            &server(),
            &[Arc::new(sub.clone())],
            version,
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Events:Message:Payload"]["oneOf"],
            json!([
                {"$ref": "#/components/schemas/User"},
                {"$ref": "#/components/schemas/Events:Message:Payload:1"},
            ]),
            "{version}"
        );
        assert_eq!(schemas["Events:Message:Payload:1"]["type"], "integer");
        assert!(schemas["User"].is_object());
        assert!(assert_refs_resolve(&doc) >= 3, "{version}");
    }
}
