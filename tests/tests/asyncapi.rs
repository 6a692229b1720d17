//! AsyncAPI documents and docs pages of the example apps, checked with the official AsyncAPI
//! parser (`tools/asyncapi-validate`, Node) and rendered in headless Chromium. Needs no Kafka:
//! a `KafkaBroker` connects lazily.
//!
//! The example files are compiled in here as modules (`#[path]`), so the documents are those of
//! exactly the apps `cargo run --example ...` runs (each example has `pub fn app(broker)`).
//! Outputs land in `target/asyncapi/`.

#[allow(dead_code)]
#[path = "../../examples/quickstart.rs"]
mod quickstart;

#[allow(dead_code)]
#[path = "../../examples/asyncapi_showcase.rs"]
mod showcase;

#[allow(dead_code)]
#[path = "../../examples/routing.rs"]
mod routing;

use faststream::asyncapi::{AsyncApiVersion, Contact, License, Tag};
use faststream::kafka::KafkaBroker;
use faststream::FastStream;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn out_dir() -> PathBuf {
    let dir = workspace().join("target").join("asyncapi");
    std::fs::create_dir_all(&dir).expect("create target/asyncapi");
    dir
}

fn apps() -> Vec<(&'static str, FastStream<KafkaBroker>)> {
    vec![
        (
            "quickstart",
            quickstart::app(KafkaBroker::new("localhost:9092")),
        ),
        (
            "showcase",
            showcase::app(KafkaBroker::new("localhost:9092")),
        ),
        ("routing", routing::app(KafkaBroker::new("localhost:9092"))),
        ("retries", retries_app()),
    ]
}

/// The quickstart plus a subscriber retrying through retry topics, then dead-lettering.
fn retries_app() -> FastStream<KafkaBroker> {
    let delays = [1, 60].map(std::time::Duration::from_secs);
    quickstart_with_info().subscriber(
        faststream::SubscriberConfig::new("charge", ["payments"])
            .group_id("billing")
            .error_policy(faststream::ErrorPolicy::retry_topics(delays).then_dead_letter()),
        |amount: i64| async move { amount },
    )
}

/// The quickstart with the `info` fields the 2.6.0 rules recommend (contact, license,
/// description, tags): the bare quickstart's 2.6.0 document gets exactly those four warnings
/// (see `bare_quickstart_2_6_only_misses_recommended_info`).
fn quickstart_with_info() -> FastStream<KafkaBroker> {
    with_info(quickstart::app(KafkaBroker::new("localhost:9092")))
        .description("FastStream's seed example.")
        .tag(Tag::new("quickstart"))
}

/// `app` with the contact and license the 2.6.0 rules recommend.
fn with_info(app: FastStream<KafkaBroker>) -> FastStream<KafkaBroker> {
    app.contact(
        Contact::new("faststream-rs")
            .url("https://example.invalid/faststream-rs")
            .email("maintainers@example.invalid"),
    )
    .license(License::new("MIT OR Apache-2.0"))
}

fn validator() -> PathBuf {
    let tool = workspace().join("tools").join("asyncapi-validate");
    // The newest of its packages: an older install lacks it and is brought up to date.
    if !tool
        .join("node_modules")
        .join("@asyncapi")
        .join("protobuf-schema-parser")
        .exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tool)
            .status()
            .expect("npm (Node.js) is needed to validate AsyncAPI documents");
        assert!(status.success(), "npm ci in tools/asyncapi-validate failed");
    }
    tool.join("validate.mjs")
}

/// Runs the validator: (success, stdout).
fn validate(paths: &[PathBuf]) -> (bool, String) {
    validate_with(&[], paths)
}

/// Validates `paths` with the validator's `flags` and asserts each has 0 errors and 0
/// warnings; returns the validator's output.
fn assert_accepted(flags: &[&str], paths: &[PathBuf]) -> String {
    let (ok, stdout) = validate_with(flags, paths);
    assert!(ok, "validation failed:\n{stdout}");
    for path in paths {
        let line = format!("{}: 0 errors, 0 warnings", path.display());
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
    stdout
}

/// [`validate`] with the validator's `flags` (`--payloads`: each message's payload as the
/// parser read it).
fn validate_with(flags: &[&str], paths: &[PathBuf]) -> (bool, String) {
    let output = Command::new("node")
        .arg(validator())
        .args(flags)
        .args(paths)
        .output()
        .expect("node (Node.js) is needed to validate AsyncAPI documents");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprint!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.success(), stdout)
}

/// Writes every app's document in both versions, as JSON and YAML; returns the paths.
fn write_documents() -> Vec<PathBuf> {
    let dir = out_dir();
    let mut paths = Vec::new();
    for (name, app) in apps() {
        for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
            let app = if name == "quickstart" && version == AsyncApiVersion::V2_6_0 {
                &quickstart_with_info()
            } else {
                &app
            };
            for (yaml, ext) in [(false, "json"), (true, "yaml")] {
                let path = dir.join(format!("{name}-{version}.{ext}"));
                app.write_asyncapi(&path, version, yaml)
                    .expect("write the document");
                paths.push(path);
            }
        }
    }
    paths
}

#[test]
fn quickstart_document_uses_faststream_names() {
    let app = quickstart::app(KafkaBroker::new("localhost:9092"));
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    assert_eq!(doc["info"]["title"], "FastStream");
    assert_eq!(doc["servers"]["development"]["host"], "localhost:9092");
    assert_eq!(doc["channels"]["in-topic:HandleMsg"]["address"], "in-topic");
    assert_eq!(
        doc["operations"]["in-topic:HandleMsgSubscribe"]["action"],
        "receive"
    );
    assert_eq!(doc["operations"]["out-topic:Publisher"]["action"], "send");
    let payload = &doc["components"]["schemas"]["HandleMsg:Message:Payload"];
    assert_eq!(payload["required"], serde_json::json!(["user", "user_id"]));
    assert_eq!(payload["properties"]["user_id"]["title"], "User Id");
    assert_eq!(
        doc["channels"]["in-topic:HandleMsg"]["description"],
        "Greets newly registered users."
    );
}

#[test]
fn showcase_document_describes_nested_types() {
    let app = showcase::app(KafkaBroker::new("localhost:9092"));
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    let schemas = &doc["components"]["schemas"];
    for name in ["Order", "Customer", "Address", "OrderLine", "Shipping"] {
        assert!(
            schemas[name].is_object(),
            "schema {name} missing: {schemas}"
        );
    }
    assert_eq!(
        schemas["Order"]["required"],
        serde_json::json!(["customer", "id", "lines"])
    );
    assert_eq!(
        doc["components"]["messages"]["orders:BillOrder:SubscribeMessage"]["payload"]["$ref"],
        "#/components/schemas/Order"
    );
    let stock = &schemas["TrackStock:Message:Payload"];
    assert_eq!(stock["required"], serde_json::json!(["delta", "sku"]));
    assert_eq!(doc["info"]["contact"]["name"], "Billing team");
    assert!(!doc.to_string().contains("heartbeat"));
}

#[test]
fn routing_document_shows_prefixed_names_and_filtered_payloads() {
    let app = routing::app(KafkaBroker::new("localhost:9092"));
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    let channels = &doc["channels"];
    assert_eq!(
        channels["users-in-topic:HandleMsg"]["address"],
        "users-in-topic"
    );
    assert_eq!(
        channels["users-out-topic:Publisher"]["address"],
        "users-out-topic"
    );
    assert_eq!(channels["shop-events:Events"]["address"], "shop-events");
    // The router's dead-letter policy documents the dead-letter topic.
    assert_eq!(
        channels["shop-events-dlt:Publisher"]["address"],
        "shop-events-dlt"
    );
    assert!(channels["shop-quantities:DoubleQuantities"].is_object());
    assert!(channels["measurements:Scale"].is_object());
    // The pattern subscriber's channel is its prefixed template, with the path parameter.
    let regional = &channels["shop-orders-region:RegionalOrders"];
    assert_eq!(regional["address"], "shop-orders-{region}", "{channels}");
    assert!(regional["parameters"]["region"].is_object(), "{regional}");
    // The batch subscriber documents its payload as the array its handler takes.
    assert!(
        channels["shop-ledger:ArchiveLedger"].is_object(),
        "{channels}"
    );
    assert_eq!(
        doc["components"]["schemas"]["ArchiveLedger:Message:Payload"]["type"],
        "array"
    );
    assert_eq!(
        doc["components"]["schemas"]["Events:Message:Payload"]["oneOf"],
        serde_json::json!([
            {"$ref": "#/components/schemas/Refund"},
            {"$ref": "#/components/schemas/Order"},
        ])
    );
}

#[test]
fn retry_topics_are_documented_as_read_and_written() {
    let doc = retries_app().asyncapi(AsyncApiVersion::V3_0_0);
    let channels = &doc["channels"];
    for topic in [
        "payments-billing-retry-1000",
        "payments-billing-retry-60000",
    ] {
        assert_eq!(
            channels[format!("{topic}:Charge")]["address"],
            topic,
            "{channels}"
        );
        assert_eq!(channels[format!("{topic}:Publisher")]["address"], topic);
        assert_eq!(
            doc["operations"][format!("{topic}:ChargeSubscribe")]["action"],
            "receive"
        );
    }
    assert_eq!(
        channels["payments-dlt:Publisher"]["address"],
        "payments-dlt"
    );
}

#[test]
fn documents_pass_the_official_asyncapi_parser() {
    let paths = write_documents();
    assert_accepted(&[], &paths);
}

#[test]
fn bare_quickstart_2_6_only_misses_recommended_info() {
    let path = out_dir().join("quickstart-bare-2.6.0.json");
    quickstart::app(KafkaBroker::new("localhost:9092"))
        .write_asyncapi(&path, AsyncApiVersion::V2_6_0, false)
        .expect("write the document");
    let (ok, stdout) = validate(std::slice::from_ref(&path));
    assert!(!ok);
    let mut codes: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": warning [") || l.contains(": error ["))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            "asyncapi-info-contact",
            "asyncapi-info-description",
            "asyncapi-info-license",
            "asyncapi2-tags"
        ],
        "{stdout}"
    );
}

fn chromium() -> Option<PathBuf> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| {
        std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    })
    .find(|path| path.is_file())
}

fn chromium_command(binary: &Path, profile: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

#[test]
fn docs_pages_render_in_headless_chromium() {
    let dir = out_dir();
    let mut pages = Vec::new();
    for (name, app) in apps() {
        for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
            let html = faststream::asyncapi::page::render_page(&app.asyncapi(version));
            let suffix = if version == AsyncApiVersion::V3_0_0 {
                ""
            } else {
                "-2.6.0"
            };
            let path = dir.join(format!("{name}{suffix}.html"));
            std::fs::write(&path, html).expect("write the page");
            pages.push((name, version, path));
        }
    }
    let Some(binary) = chromium() else {
        eprintln!(
            "SKIPPED: no chromium found on PATH (apt-get install -y chromium); pages written to {}",
            dir.display()
        );
        return;
    };
    let profile = dir.join(format!("chromium-profile-{}", std::process::id()));
    for (name, version, path) in &pages {
        let output = chromium_command(&binary, &profile)
            .arg("--dump-dom")
            .arg(format!("file://{}", path.display()))
            .output()
            .expect("run chromium");
        let dom = String::from_utf8_lossy(&output.stdout);
        let expected: &[&str] = match *name {
            "quickstart" => &[
                "in-topic:HandleMsg",
                "out-topic:Publisher",
                "user_id",
                "User Id",
            ],
            "routing" => &[
                "users-in-topic:HandleMsg",
                "users-out-topic:Publisher",
                "shop-events:Events",
                "order_id",
                "Routing example",
            ],
            "retries" => &[
                "in-topic:HandleMsg",
                "payments:Charge",
                "payments-billing-retry-1000:Charge",
                "payments-billing-retry-60000:Publisher",
                "payments-dlt:Publisher",
            ],
            _ => &[
                "orders:BillOrder",
                "invoices:Publisher",
                "stock-movements:TrackStock",
                "unit_price_cents",
                "country",
                "express",
                "Shop billing",
            ],
        };
        for needle in expected {
            assert!(
                dom.contains(needle),
                "{name} {version}: `{needle}` not in the rendered DOM ({} bytes; stderr: {})",
                dom.len(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    for name in ["quickstart", "showcase"] {
        let png = dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        let status = chromium_command(&binary, &profile)
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1280,2000")
            .arg(format!(
                "file://{}",
                dir.join(format!("{name}.html")).display()
            ))
            .output()
            .expect("run chromium");
        assert!(
            png.metadata().map(|m| m.len() > 10_000).unwrap_or(false),
            "no screenshot at {}: {}",
            png.display(),
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&profile);
}

// ---------------------------------------------------------------------------------------
// Payload formats: Avro and Protobuf messages carry their own schemas (`schemaFormat`), and
// a MessagePack publisher its content type; the official parser (with the official Avro and
// Protobuf schema parsers) accepts the documents without an error or a warning.

const PING_PROTO: &str = r#"syntax = "proto3";

package shop;

// A ping, answered by a pong.
message Ping {
  uint64 seq = 1;
  string from = 2;
}
"#;

/// An order read as Avro.
#[derive(
    Debug,
    Clone,
    serde::Serialize,
    serde::Deserialize,
    apache_avro::AvroSchema,
    schemars::JsonSchema,
)]
struct AvroOrder {
    id: i64,
    item: String,
    note: Option<String>,
}

fn codecs_app() -> FastStream<KafkaBroker> {
    use faststream::codec::{Avro, FormatSchema, MessagePack};
    use faststream::{Publisher, PublisherConfig, SubscriberConfig};
    let audit = Publisher::to("audit")
        .codec(MessagePack)
        .describe(|c| c.description("Audit trail, in MessagePack."));
    with_info(FastStream::new(KafkaBroker::new("localhost:9092")))
        .title("codecs")
        .description("Payload formats.")
        .tag(Tag::new("codecs"))
        .with_publisher(&audit)
        .codec(Avro::of::<AvroOrder>())
        .subscriber(
            SubscriberConfig::new("store_order", ["orders"])
                .description("Orders in Avro.")
                .payload_schema(faststream::filter::schema_of::<AvroOrder>),
            |order: AvroOrder| async move {
                let _ = order;
            },
        )
        .subscriber(
            SubscriberConfig::new("pong", ["pings"])
                .description("Pings in Protobuf.")
                .payload_format(FormatSchema::protobuf(PING_PROTO))
                .publisher(
                    PublisherConfig::new("pongs")
                        .description("Pongs in Protobuf.")
                        .payload_format(FormatSchema::protobuf(PING_PROTO)),
                ),
            |ping: faststream::codec::Proto<showcase_free::Ping>| async move { ping },
        )
}

/// The prost message the Protobuf subscriber takes (kept out of the examples).
mod showcase_free {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Ping {
        #[prost(uint64, tag = "1")]
        pub seq: u64,
        #[prost(string, tag = "2")]
        pub from: String,
    }
}

#[test]
fn avro_and_protobuf_messages_carry_their_schema_format() {
    let app = codecs_app();
    let v3 = app.asyncapi(AsyncApiVersion::V3_0_0);
    let messages = &v3["components"]["messages"];
    let order = &messages["orders:StoreOrder:SubscribeMessage"];
    assert_eq!(order["contentType"], "avro/binary");
    assert_eq!(
        order["payload"]["schemaFormat"],
        "application/vnd.apache.avro;version=1.9.0"
    );
    assert_eq!(order["payload"]["schema"]["name"], "AvroOrder");
    let ping = &messages["pings:Pong:SubscribeMessage"];
    assert_eq!(ping["contentType"], "application/protobuf");
    assert_eq!(
        ping["payload"]["schemaFormat"],
        "application/vnd.google.protobuf;version=3"
    );
    assert_eq!(ping["payload"]["schema"], PING_PROTO);
    assert_eq!(
        messages["audit:Publisher:Message"]["contentType"],
        "application/msgpack"
    );
    let v2 = app.asyncapi(AsyncApiVersion::V2_6_0);
    let order = &v2["components"]["messages"]["orders:StoreOrder:Message"];
    assert_eq!(
        order["schemaFormat"],
        "application/vnd.apache.avro;version=1.9.0"
    );
    assert_eq!(order["payload"]["type"], "record");

    let dir = out_dir();
    let mut paths = Vec::new();
    for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
        for (yaml, ext) in [(false, "json"), (true, "yaml")] {
            let path = dir.join(format!("codecs-{version}.{ext}"));
            app.write_asyncapi(&path, version, yaml)
                .expect("write the document");
            paths.push(path);
        }
    }
    assert_accepted(&[], &paths);
}

/// A schema registry codec documents its messages as Avro with the reader's schema, under
/// the registry's content type; the official parser accepts the document.
#[test]
fn registry_avro_messages_carry_their_schema_format() {
    use faststream::registry::{RegistryCodec, SchemaRegistry, REGISTRY_AVRO};
    use faststream::SubscriberConfig;
    // Documenting an app asks the registry nothing: no registry needs to answer here.
    let registry = SchemaRegistry::new("http://127.0.0.1:8081/apis/ccompat/v7").unwrap();
    let app = FastStream::new(KafkaBroker::new("localhost:9092"))
        .title("registry")
        .description("Orders in Avro through a schema registry.")
        .subscriber(
            SubscriberConfig::new("store_order", ["orders"])
                .description("Orders in Avro, framed with their schema id.")
                .codec(RegistryCodec::avro_of::<AvroOrder>(&registry)),
            |order: AvroOrder| async move {
                let _ = order;
            },
        );
    let v3 = app.asyncapi(AsyncApiVersion::V3_0_0);
    let order = &v3["components"]["messages"]["orders:StoreOrder:SubscribeMessage"];
    assert_eq!(order["contentType"], REGISTRY_AVRO);
    assert_eq!(
        order["payload"]["schemaFormat"],
        "application/vnd.apache.avro;version=1.9.0"
    );
    assert_eq!(order["payload"]["schema"]["name"], "AvroOrder");
    let path = out_dir().join("registry-3.0.0.json");
    app.write_asyncapi(&path, AsyncApiVersion::V3_0_0, false)
        .expect("write the document");
    assert_accepted(&[], std::slice::from_ref(&path));
}

/// A `.proto` file with several messages, the published one second and used by the first.
const TWO_MESSAGES: &str = r#"syntax = "proto3";
package shop.v1;
message Order { int64 id = 1; Line line = 2; }
message Line { string sku = 1; uint32 quantity = 2; }
"#;

/// Registry Protobuf codecs document the message on the wire alone, as the official parser
/// takes it: `protobuf_of` for a message that imports a project file (Ping) and for a
/// nested one (Envelope.Pong), and `proto_schema` with a text of two messages and the second
/// one's indexes. 0 errors, 0 warnings, and each payload is that message with its fields.
#[test]
fn registry_protobuf_messages_document_their_message_alone() {
    use faststream::codec::Proto;
    use faststream::registry::{RegistryCodec, SchemaRegistry, REGISTRY_PROTOBUF};
    use faststream::SubscriberConfig;
    use faststream_integration_tests::reflected::shop::v1::{envelope::Pong, Ping};
    // Documenting an app asks the registry nothing: no registry needs to answer here.
    let registry = SchemaRegistry::new("http://127.0.0.1:8081/apis/ccompat/v7").unwrap();
    let codecs = [
        (
            "ping",
            "pings",
            "Pings, whose file imports common.proto.",
            RegistryCodec::protobuf_of::<Ping>(&registry).unwrap(),
        ),
        (
            "pong",
            "pongs",
            "Pongs, nested in Envelope.",
            RegistryCodec::protobuf_of::<Pong>(&registry).unwrap(),
        ),
        (
            "line",
            "lines",
            "Lines, the second message of their file.",
            RegistryCodec::protobuf(&registry)
                .proto_schema(TWO_MESSAGES)
                .message_indexes(&[1]),
        ),
    ];
    let app = with_info(FastStream::new(KafkaBroker::new("localhost:9092")))
        .title("registry-protobuf")
        .description("Protobuf messages through a schema registry.")
        .tag(Tag::new("protobuf"));
    // The codec's schema is the payload's, whichever prost type the handler takes.
    let app = codecs
        .into_iter()
        .fold(app, |app, (name, topic, description, codec)| {
            app.subscriber(
                SubscriberConfig::new(name, [topic])
                    .description(description)
                    .codec(codec),
                |ping: Proto<Ping>| async move {
                    let _ = ping;
                },
            )
        });
    let v3 = app.asyncapi(AsyncApiVersion::V3_0_0);
    let messages = &v3["components"]["messages"];
    let ping = &messages["pings:Ping:SubscribeMessage"];
    assert_eq!(ping["contentType"], REGISTRY_PROTOBUF);
    assert_eq!(
        ping["payload"]["schemaFormat"],
        "application/vnd.google.protobuf;version=3"
    );
    let text = ping["payload"]["schema"].as_str().expect("a .proto text");
    assert!(!text.contains("import"), "self-contained: {text}");
    let mut lines = text.lines().map(str::trim);
    assert!(lines.any(|line| line == "// @RootNode"), "{text}");
    assert_eq!(lines.next(), Some("message Ping {"), "the root: {text}");
    assert_eq!(text.matches("@RootNode").count(), 1, "{text}");

    let dir = out_dir();
    let mut paths = Vec::new();
    for version in [AsyncApiVersion::V3_0_0, AsyncApiVersion::V2_6_0] {
        let path = dir.join(format!("registry-protobuf-{version}.yaml"));
        app.write_asyncapi(&path, version, true)
            .expect("write the document");
        paths.push(path);
    }
    let stdout = assert_accepted(&["--payloads"], &paths);
    for path in &paths {
        let prefix = format!("{}: payload ", path.display());
        let mut read: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|line| line.rsplit_once(": ").map(|(_, payload)| payload))
            .collect();
        read.sort_unstable();
        assert_eq!(
            read,
            [
                "Line {sku, quantity}",
                "Ping {seq, from, origin, sent_at}",
                "Pong {seq, notes}"
            ],
            "each message alone, with its fields:\n{stdout}"
        );
    }
}
