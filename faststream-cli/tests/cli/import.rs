//! `faststream import` on five real Python FastStream apps (`tests/python/import_apps`: the
//! seed example, a router with a prefix, nested and optional pydantic models, a batch
//! subscriber, request/reply), with FastStream 0.7.8 from PyPI (the venv of the interop
//! tests), and a sixth of two subscribers imported without `--app`: each app's `faststream
//! docs gen` document is imported, the crates
//! are built and tested as one cargo workspace (in `target/import-e2e`, into the workspace's
//! target dir: the dependencies, librdkafka among them, are compiled once, and an unchanged
//! import rewrites no file, so a second run rebuilds nothing), and then:
//! - each Rust service's own AsyncAPI document has the Python one's channels, operations and
//!   payload schemas;
//! - pydantic JSON goes through the Rust types and back through `Model.model_validate_json`;
//! - on Kafka, Python FastStream publishes to the Rust services and reads what they answer.

use super::*;
use faststream_integration_tests::{bootstrap, ensure_topic, python};
use serde_json::{json, Map, Value};

/// The apps imported with `--app`, each `tests/python/import_apps/{app}.py` with its `app`.
const APPS: [&str; 5] = ["seed", "router", "models", "batch", "rpc"];

/// The app imported without `--app` (two subscribers and a publisher the document does not
/// tie to either): the defaults' path, built, tested and documented like the others.
const WITHOUT_APP: &str = "multi";

/// The topics the apps use (fixed: the generated crates must not change between runs, or
/// every run would rebuild them; the Kafka check tells its records apart by correlation id).
const TOPICS: [&str; 10] = [
    "import-seed-in",
    "import-seed-out",
    "import-router-users",
    "import-router-welcomed",
    "import-models-orders",
    "import-models-invoices",
    "import-batch-events",
    "import-batch-counts",
    "import-rpc-square",
    "import-rpc-replies",
];

/// The round-trip tool: decodes each `Model<TAB>json` line of stdin into the generated Rust
/// type and prints it encoded again.
const ROUNDTRIP_RS: &str = r#"use serde::{de::DeserializeOwned, Serialize};
use std::io::BufRead;

fn again<T: DeserializeOwned + Serialize>(json: &str) -> String {
    match serde_json::from_str::<T>(json) {
        Ok(value) => serde_json::to_string(&value).unwrap_or_else(|e| format!("error: {e}")),
        Err(e) => format!("error: {e}"),
    }
}

fn main() {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let (model, json) = line.split_once('\t').unwrap_or((&line, ""));
        let out = match model {
            "Order" => again::<imported_models::Order>(json),
            "Invoice" => again::<imported_models::Invoice>(json),
            "Registered" => again::<imported_router::Registered>(json),
            "Event" => again::<imported_batch::Event>(json),
            other => format!("error: no type {other}"),
        };
        println!("{out}");
    }
}
"#;

fn apps_dir() -> PathBuf {
    workspace().join("tests/python/import_apps")
}

fn generated_dir() -> PathBuf {
    target_dir().join("import-e2e")
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, text).expect("write");
}

/// What the shared preparation did: the output of `cargo test` on the generated workspace.
struct Generated {
    cargo_test: String,
}

/// Writes `app`'s document with Python FastStream's `docs gen` into `docs`, and imports it.
fn import_app(app: &str, python: &Path, docs: &Path) {
    let out = run(Command::new(python.with_file_name("faststream"))
        .args(["docs", "gen", &format!("{app}:app"), "--out"])
        .arg(docs.join(format!("{app}.json")))
        .current_dir(apps_dir()));
    assert!(
        out.status.success(),
        "docs gen {app}: {}",
        text(&out.stderr)
    );
    let mut import = faststream();
    import
        .arg("import")
        .arg(docs.join(format!("{app}.json")))
        .arg("--out")
        .arg(generated_dir().join(format!("imported-{app}")))
        .arg("--in-workspace");
    if app != WITHOUT_APP {
        import
            .args(["--app", &format!("{app}:app"), "--python"])
            .arg(python)
            .arg("--app-dir")
            .arg(apps_dir());
    }
    let out = run(&mut import);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "import {app}: {}", text(&out.stderr));
    assert!(
        stdout.contains("Imported ") && !stdout.contains("not translated"),
        "{stdout}"
    );
}

/// Generates the Python documents, imports them, and builds and tests the generated
/// workspace, once for the tests below.
fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let python = python();
        let docs = generated_dir().join("python-docs");
        std::fs::create_dir_all(&docs).expect("docs dir");
        let all = APPS.iter().chain([&WITHOUT_APP]);
        // Each app's document and import at once: most of the time is Python starting.
        std::thread::scope(|scope| {
            for app in all.clone().copied() {
                let docs = &docs;
                scope.spawn(move || import_app(app, python, docs));
            }
        });
        let members: Vec<String> = all.map(|a| format!("\"imported-{a}\"")).collect();
        write_if_changed(
            &generated_dir().join("Cargo.toml"),
            &format!(
                "# Written by faststream-cli/tests/cli/import.rs: the imported crates, built once.\n\
                 [workspace]\nresolver = \"2\"\nmembers = [{}, \"roundtrip\"]\n\n\
                 [profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n",
                members.join(", ")
            ),
        );
        let deps: String = APPS
            .iter()
            .map(|a| format!("imported-{a} = {{ path = \"../imported-{a}\" }}\n"))
            .collect();
        write_if_changed(
            &generated_dir().join("roundtrip/Cargo.toml"),
            &format!(
                "[package]\nname = \"roundtrip\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
                 [dependencies]\nserde = \"1\"\nserde_json = \"1\"\n{deps}"
            ),
        );
        write_if_changed(&generated_dir().join("roundtrip/src/main.rs"), ROUNDTRIP_RS);
        let lock = generated_dir().join("Cargo.lock");
        if !lock.exists() {
            std::fs::copy(workspace().join("Cargo.lock"), &lock).expect("Cargo.lock");
        }
        let building = cargo_builds();
        // The services' and the round-trip tool's binaries, then the crates' tests.
        let out = run(cargo()
            .args(["build", "--workspace"])
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(generated_dir()));
        assert!(out.status.success(), "the imported crates do not build:\n{}", text(&out.stderr));
        let out = run(cargo()
            .args(["test", "--workspace"])
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(generated_dir()));
        drop(building);
        let cargo_test = text(&out.stdout);
        assert!(
            out.status.success(),
            "the imported crates' tests fail:\n{cargo_test}\n{}",
            text(&out.stderr)
        );
        Generated { cargo_test }
    })
}

fn binary(app: &str) -> PathBuf {
    target_dir().join("debug").join(format!("imported-{app}"))
}

#[test]
fn imported_apps_build_and_each_handler_test_passes() {
    let generated = generated();
    let handlers = [
        "handle_msg",
        "register",
        "bill",
        "count_events",
        "square",
        "on_shipment",
        "on_cancellation",
    ];
    for handler in handlers {
        let line = format!("test {handler}_handles_the_schema_example ... ok");
        assert!(
            generated.cargo_test.contains(&line),
            "{line}:\n{}",
            generated.cargo_test
        );
    }
    let passed: usize = generated
        .cargo_test
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split_once(' ')?.0.parse::<usize>().ok())
        .sum();
    assert_eq!(passed, handlers.len(), "{}", generated.cargo_test);
    // Without `--app`, a publisher of an app with several subscribers is a publisher object,
    // and the README says so.
    let lib = std::fs::read_to_string(generated_dir().join("imported-multi/src/lib.rs")).unwrap();
    assert!(
        lib.contains(r#"faststream::Publisher::to("import-multi-notices")"#),
        "{lib}"
    );
    let readme = std::fs::read_to_string(generated_dir().join("imported-multi/README.md")).unwrap();
    assert!(
        readme.contains("each publisher is a `Publisher` object"),
        "{readme}"
    );
    // The generated code: one `#[subscriber]` with the Python group, the batch settings and
    // the publisher the Python handler had (compared with rustfmt's line breaks taken out).
    let source = |file: &str| {
        let text = std::fs::read_to_string(generated_dir().join(file)).unwrap();
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(")
            .replace(", )", ")")
            .replace(" )", ")")
    };
    let lib = source("imported-batch/src/lib.rs");
    assert!(
        lib.contains(r#"#[subscriber("import-batch-events", group_id = "import-audit", batch = true, max_records = 100, batch_timeout_ms = 200)]"#)
            && lib.contains(r#"#[publisher("import-batch-counts")]"#)
            && lib.contains("pub async fn count_events(batch: Vec<Event>) -> i64"),
        "{lib}"
    );
    let lib = source("imported-seed/src/lib.rs");
    assert!(
        lib.contains("pub async fn handle_msg(user: String, user_id: i64) -> String")
            && !lib.contains("todo!"),
        "{lib}"
    );
    let readme =
        std::fs::read_to_string(generated_dir().join("imported-models/README.md")).unwrap();
    assert!(
        readme.contains(
            "| `bill` | `import-models-orders` | `import-billing` | `import-models-invoices` |"
        ),
        "{readme}"
    );
}

/// A schema with what only one side writes taken out: titles and defaults (annotations:
/// pydantic titles every field, schemars drops defaults it would not serialize), the integer
/// and float widths schemars adds as `format`, the order of `required`; and `type: [T, null]`
/// spelled as pydantic does, `anyOf` of `T` and `null`. Numbers compare as floats.
fn normalized(schema: &Value) -> Value {
    const WIDTHS: [&str; 12] = [
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "uint", "int",
        "float", "double",
    ];
    match schema {
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object {
                match key.as_str() {
                    "title" | "default" => {}
                    "format" if value.as_str().is_some_and(|f| WIDTHS.contains(&f)) => {}
                    "required" => {
                        let mut names: Vec<Value> = value.as_array().cloned().unwrap_or_default();
                        names.sort_by_key(|n| n.to_string());
                        out.insert(key.clone(), Value::Array(names));
                    }
                    "type"
                        if value
                            .as_array()
                            .is_some_and(|t| t.len() == 2 && t.contains(&json!("null"))) =>
                    {
                        let kinds = value.as_array().expect("array");
                        let other = kinds.iter().find(|k| **k != json!("null")).expect("type");
                        out.insert(
                            "anyOf".into(),
                            json!([{ "type": other }, { "type": "null" }]),
                        );
                    }
                    _ => {
                        out.insert(key.clone(), normalized(value));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Number(n) => json!(n.as_f64()),
        other => other.clone(),
    }
}

/// The payload schema name of each operation: `operation -> (action, channel, payload)`.
fn operations(document: &Value) -> Vec<(String, String, String, String)> {
    let resolve = |value: &Value| -> Value {
        let pointer = value["$ref"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('#');
        document.pointer(pointer).cloned().unwrap_or(Value::Null)
    };
    let mut out = Vec::new();
    for (name, operation) in document["operations"].as_object().expect("operations") {
        let message = resolve(&resolve(&operation["messages"][0]));
        let payload = message["payload"]["$ref"].as_str().unwrap_or_default();
        out.push((
            name.clone(),
            operation["action"].as_str().unwrap_or_default().to_owned(),
            operation["channel"]["$ref"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            payload.to_owned(),
        ));
    }
    out.sort();
    out
}

#[test]
fn imported_apps_document_the_python_apps_channels_operations_and_payloads() {
    generated();
    for app in APPS.iter().chain([&WITHOUT_APP]) {
        let python_doc: Value = serde_json::from_str(
            &std::fs::read_to_string(generated_dir().join(format!("python-docs/{app}.json")))
                .unwrap(),
        )
        .unwrap();
        let rust_file = generated_dir().join(format!("{app}.rust.json"));
        let out = run(Command::new(binary(app))
            .args(["docs", "gen", "--out"])
            .arg(&rust_file));
        assert!(
            out.status.success(),
            "{app} docs gen: {}",
            text(&out.stderr)
        );
        let rust_doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&rust_file).unwrap()).unwrap();
        let channels = |doc: &Value| -> Vec<(String, Value)> {
            doc["channels"]
                .as_object()
                .expect("channels")
                .iter()
                .map(|(k, c)| (k.clone(), c["address"].clone()))
                .collect()
        };
        assert_eq!(
            channels(&rust_doc),
            channels(&python_doc),
            "{app}: channels"
        );
        assert_eq!(
            operations(&rust_doc),
            operations(&python_doc),
            "{app}: operations"
        );
        let schemas = |doc: &Value| doc["components"]["schemas"].as_object().cloned().unwrap();
        let (python_schemas, rust_schemas) = (schemas(&python_doc), schemas(&rust_doc));
        assert_eq!(
            rust_schemas.keys().collect::<Vec<_>>(),
            python_schemas.keys().collect::<Vec<_>>(),
            "{app}: schema names"
        );
        for (name, schema) in &python_schemas {
            assert_eq!(
                normalized(&rust_schemas[name]),
                normalized(schema),
                "{app}: schema `{name}`"
            );
        }
    }
}

#[test]
fn pydantic_json_round_trips_through_the_imported_types() {
    generated();
    let out = run(Command::new(python())
        .arg(apps_dir().join("roundtrip.py"))
        .arg(target_dir().join("debug/roundtrip"))
        .current_dir(apps_dir()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(stdout.trim(), "roundtrip ok 6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_faststream_feeds_the_imported_services_on_kafka() {
    tokio::task::spawn_blocking(generated)
        .await
        .expect("generated");
    for topic in TOPICS {
        ensure_topic(topic, 1).await;
    }
    let mut services = Vec::new();
    for app in APPS {
        services.push(Running::start(
            Command::new(binary(app))
                .arg("run")
                .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()),
        ));
    }
    let check = tokio::task::spawn_blocking(|| {
        run(Command::new(python())
            .arg(apps_dir().join("kafka_check.py"))
            .arg(bootstrap())
            .current_dir(apps_dir()))
    })
    .await
    .expect("kafka_check");
    let stdout = text(&check.stdout);
    assert!(check.status.success(), "{stdout}\n{}", text(&check.stderr));
    for app in APPS {
        assert!(stdout.contains(&format!("{app} ok")), "{app}: {stdout}");
    }
    // The stubs' outputs, as the Python side decoded them.
    assert!(stdout.contains("seed ok: 'text'"), "{stdout}");
    assert!(stdout.contains("rpc ok: 1"), "{stdout}");
    for service in services {
        service.signal(libc::SIGTERM);
        assert!(service.wait(Duration::from_secs(30)).success());
    }
}

/// `faststream import` from the URL of a running Python `faststream docs serve` (the document
/// embedded in its page), without `--app`: the defaults used are in the generated README.
#[test]
fn import_from_a_python_docs_server_names_the_defaults_it_used() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let _server = Running::start(
        Command::new(python().with_file_name("faststream"))
            .args(["docs", "serve", "seed:app", "--port", &port])
            .current_dir(apps_dir()),
    );
    let address = format!("127.0.0.1:{port}");
    faststream_integration_tests::wait_until(Duration::from_secs(60), "docs server", || {
        std::net::TcpStream::connect(&address).is_ok()
    });
    let dir = temp_dir("import-url").join("from_url");
    let out = run(faststream()
        .args(["import", &format!("http://{address}"), "--out"])
        .arg(&dir)
        .arg("--local-target"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains(r#"#[subscriber("import-seed-in", group_id = "handle_msg")]"#)
            && lib.contains(r#"#[publisher("import-seed-out")]"#)
            && lib.contains("pub async fn handle_msg(user: String, user_id: i64) -> String"),
        "{lib}"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("Group ids: the document has none")
            && readme.contains("with one subscriber, every publisher is taken as its `@publisher`"),
        "{readme}"
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "tests/handlers.rs",
        "src/main.rs",
        ".gitignore",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert!(!dir.join(".cargo/config.toml").exists(), "--local-target");
    // Imported again, nothing changes, so nothing is written (and cargo rebuilds nothing).
    let again = run(faststream()
        .args(["import", &format!("http://{address}"), "--out"])
        .arg(&dir)
        .arg("--local-target"));
    assert!(
        text(&again.stdout).contains(": 0 of 8 files written"),
        "{}",
        text(&again.stdout)
    );
    let _ = std::fs::remove_dir_all(dir.parent().expect("temp dir"));
}
