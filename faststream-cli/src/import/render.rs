//! The generated crate's files: `Cargo.toml`, `src/types.rs` (typify's), `src/lib.rs` (one
//! `#[subscriber]` per subscriber, its `#[publisher]`s, a stub body returning the example
//! output), `src/main.rs`, `tests/handlers.rs` (one TestBroker test per handler) and a README
//! naming what was assumed and what was not translated.

use super::contract::{schema_ref, Contract, Handler};
use super::example::example;
use super::types::{is_synthesized, Types, Uses, ANY_JSON};
use serde_json::Value;
use std::fmt::Write as _;

/// What to generate.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The package name.
    pub(crate) package: String,
    /// The `faststream` dependency (a version or an inline table).
    pub(crate) faststream_dep: String,
    /// Whether the crate is a workspace of its own (`[workspace]`, profile settings).
    pub(crate) own_workspace: bool,
    /// Where the document came from (for the README).
    pub(crate) source: String,
    /// The `--app` read, if any.
    pub(crate) app: Option<String>,
}

/// A handler, ready to print.
#[derive(Debug)]
struct Plan {
    function: String,
    handler: Handler,
    /// `(name, type)` of the payload parameters: one for a whole payload, several for the
    /// fields of a FastStream handler's several parameters.
    params: Vec<(String, String)>,
    /// The Rust type the handler returns and its example, if it returns anything.
    output: Option<(String, Value)>,
    /// The example payload the tests publish.
    input: Value,
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Whether `name` is a Rust keyword (so no parameter, function or crate name).
pub(crate) fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// Whether `name` can be a Rust parameter or function name as it is.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_keyword(name)
}

/// The parameters for a payload schema: the fields of an object FastStream made of a
/// handler's parameters (`X:Message:Payload` with properties), else one parameter.
fn params(
    handler: &Handler,
    schemas: &serde_json::Map<String, Value>,
    types: &mut Types,
) -> Vec<(String, String)> {
    let schema = schemas
        .get(&handler.payload)
        .cloned()
        .unwrap_or(Value::Null);
    let properties = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = properties.filter(|p| {
        is_synthesized(&handler.payload)
            && handler.batch.is_none()
            && p.len() > 1
            && p.keys().all(|name| is_identifier(name))
    }) {
        return properties
            .iter()
            .map(|(name, property)| {
                let rust = types.rust_type(property, &format!("`{name}` of {}", handler.payload));
                let rust = if required.contains(&name.as_str()) || rust.starts_with("Option<") {
                    rust
                } else {
                    format!("Option<{rust}>")
                };
                (name.clone(), rust)
            })
            .collect();
    }
    let reference =
        serde_json::json!({ "$ref": format!("#/components/schemas/{}", handler.payload) });
    let rust = if is_synthesized(&handler.payload) {
        types.rust_type(&schema, &handler.payload)
    } else {
        match types.named.get(&handler.payload) {
            Some(rust) => rust.clone(),
            None => types.rust_type(&reference, &handler.payload),
        }
    };
    let name = match (&handler.batch, schema_ref(&reference)) {
        (Some(_), _) => "batch".to_owned(),
        (None, Some(name)) if !is_synthesized(&name) => {
            heck::ToSnakeCase::to_snake_case(name.as_str())
        }
        _ => "payload".to_owned(),
    };
    let name = if is_identifier(&name) {
        name
    } else {
        "payload".to_owned()
    };
    vec![(name, rust)]
}

/// The Rust type of a published payload: the named type of the schema `name` (or the one it
/// refers to), else the plain type of `schema`.
fn payload_type(name: &str, schema: &Value, types: &mut Types) -> String {
    let named = schema_ref(schema)
        .or_else(|| (!is_synthesized(name)).then(|| name.to_owned()))
        .and_then(|n| types.named.get(&n).cloned());
    named.unwrap_or_else(|| types.rust_type(schema, name))
}

/// The publishers no subscriber owns: `(topic, Rust payload type)`.
fn loose_publishers(contract: &Contract, types: &mut Types) -> Vec<(String, String)> {
    contract
        .loose_publishers
        .iter()
        .map(|publication| {
            let schema = contract
                .schemas
                .get(&publication.payload)
                .cloned()
                .unwrap_or(Value::Null);
            (
                publication.topic.clone(),
                payload_type(&publication.payload, &schema, types),
            )
        })
        .collect()
}

fn plan(contract: &Contract, types: &mut Types) -> Vec<Plan> {
    let mut used = std::collections::BTreeSet::new();
    let mut plans = Vec::new();
    for handler in &contract.handlers {
        let mut function = if is_identifier(&handler.function) {
            handler.function.clone()
        } else {
            format!(
                "handle_{}",
                heck::ToSnakeCase::to_snake_case(handler.function.as_str())
            )
        };
        while !used.insert(function.clone()) {
            function.push_str("_2");
        }
        let params = params(handler, &contract.schemas, types);
        let payload_schema = contract
            .schemas
            .get(&handler.payload)
            .cloned()
            .unwrap_or(Value::Null);
        let input = example(&payload_schema, &contract.schemas, "");
        let output_schema = match handler.publishes.first() {
            Some(publication) => {
                let schema = contract.schemas.get(&publication.payload).cloned();
                schema.map(|s| (publication.payload.clone(), s))
            }
            None => handler
                .reply_schema
                .clone()
                .map(|s| (format!("the reply of {}", handler.function), s)),
        };
        let output = output_schema.map(|(name, schema)| {
            let rust = payload_type(&name, &schema, types);
            let value = example(&schema, &contract.schemas, "");
            (rust, value)
        });
        plans.push(Plan {
            function,
            handler: handler.clone(),
            params,
            output,
            input,
        });
    }
    plans
}

/// A Rust string literal.
fn literal(text: &str) -> String {
    format!("{text:?}")
}

/// The stub's body: the example output, as a literal for plain types, else decoded from JSON.
fn body(plan: &Plan) -> (String, String) {
    let unused = match plan.params.len() {
        0 => String::new(),
        1 => format!("    let _ = {};\n", plan.params[0].0),
        _ => format!(
            "    let _ = ({});\n",
            plan.params
                .iter()
                .map(|(name, _)| format!("&{name}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let Some((rust, value)) = &plan.output else {
        let todo = "    // The Python handler's logic goes here.\n";
        return ("".into(), format!("{todo}{unused}"));
    };
    let todo = "    // The Python handler's logic goes here. Until then: the example output.\n";
    let plain = match (rust.as_str(), value) {
        ("String", Value::String(text)) => Some(format!("{}.to_owned()", literal(text))),
        ("i64" | "u64" | "i32" | "u32", Value::Number(n)) => Some(n.to_string()),
        ("f64" | "f32", Value::Number(n)) => {
            let text = n.to_string();
            Some(if text.contains('.') {
                text
            } else {
                format!("{text}.0")
            })
        }
        ("bool", Value::Bool(b)) => Some(b.to_string()),
        (ANY_JSON, value) => Some(format!("serde_json::json!({value})")),
        _ => None,
    };
    match plain {
        Some(expression) => (
            format!(" -> {rust}"),
            format!("{todo}{unused}    {expression}\n"),
        ),
        None => (
            format!(" -> Result<{rust}, serde_json::Error>"),
            format!(
                "{todo}{unused}    serde_json::from_value(serde_json::json!({}))\n",
                pretty(value, 4)
            ),
        ),
    }
}

/// JSON for `json!`, indented to sit at `indent` spaces.
fn pretty(value: &Value, indent: usize) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let pad = " ".repeat(indent);
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                line.to_owned()
            } else {
                format!("{pad}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn subscriber_attribute(handler: &Handler) -> String {
    let mut args = vec![
        literal(&handler.topic),
        format!("group_id = {}", literal(&handler.group_id)),
    ];
    if let Some(max_records) = handler.batch {
        args.push("batch = true".into());
        if let Some(max) = max_records {
            args.push(format!("max_records = {max}"));
        }
        args.push(format!("batch_timeout_ms = {}", handler.batch_timeout_ms));
    }
    format!("#[subscriber({})]", args.join(", "))
}

fn lib_rs(
    contract: &Contract,
    plans: &[Plan],
    loose: &[(String, String)],
    options: &Options,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! {}: the Rust service of the FastStream app `{}`, generated by `faststream import`\n\
         //! from its AsyncAPI document. The handlers are stubs that return an example output:\n\
         //! write their logic where they say so. `types` holds the payload types.",
        options.package, contract.title
    );
    out.push_str("\npub mod types;\n\npub use types::*;\n\n");
    out.push_str("use faststream::kafka::KafkaBroker;\n");
    let uses_publisher = plans.iter().any(|p| !p.handler.publishes.is_empty());
    out.push_str(if uses_publisher {
        "use faststream::{publisher, subscriber, Broker, FastStream};\n"
    } else {
        "use faststream::{subscriber, Broker, FastStream};\n"
    });
    for plan in plans {
        let handler = &plan.handler;
        out.push('\n');
        if let Some(description) = &handler.description {
            for line in description.lines() {
                let _ = writeln!(out, "/// {line}", line = line.trim_end());
            }
            out.push_str("///\n");
        }
        let _ = write!(
            out,
            "/// Consumes `{}` (group `{}`)",
            handler.topic, handler.group_id
        );
        if handler.batch.is_some() {
            out.push_str(" in batches");
        }
        match (handler.publishes.as_slice(), &plan.output) {
            ([], Some(_)) => out.push_str("; answers requests through their `reply_to`.\n"),
            ([], None) => out.push_str(".\n"),
            (publishes, _) => {
                let topics: Vec<String> =
                    publishes.iter().map(|p| format!("`{}`", p.topic)).collect();
                let _ = writeln!(out, "; publishes to {}.", topics.join(", "));
            }
        }
        out.push_str(&subscriber_attribute(handler));
        out.push('\n');
        for publication in &handler.publishes {
            if publication.batch {
                let _ = writeln!(
                    out,
                    "#[publisher({}, batch = true)]",
                    literal(&publication.topic)
                );
            } else {
                let _ = writeln!(out, "#[publisher({})]", literal(&publication.topic));
            }
        }
        let params: Vec<String> = plan
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        let (returns, body) = body(plan);
        let _ = writeln!(
            out,
            "pub async fn {}({}){returns} {{\n{body}}}",
            plan.function,
            params.join(", ")
        );
    }
    if !loose.is_empty() {
        out.push_str(
            "\n/// The app's publishers the document does not tie to a subscriber, as publisher\n\
             /// objects (`publisher.publish(&value).await`).\n\
             pub fn publishers() -> Vec<faststream::Publisher> {\n    vec![\n",
        );
        for (topic, rust) in loose {
            // Documented with its payload's schema, as the Python publisher was.
            let _ = writeln!(
                out,
                "        faststream::Publisher::to({})\n            \
                 .describe(|c| c.schema(faststream::filter::schema_of::<{rust}>)),",
                literal(topic)
            );
        }
        out.push_str("    ]\n}\n");
    }
    out.push_str(
        "\n/// The app: Kafka at `KAFKA_BOOTSTRAP_SERVERS` (default `localhost:9092`).\n\
         pub fn app() -> FastStream<KafkaBroker> {\n    \
         let servers =\n        \
         std::env::var(\"KAFKA_BOOTSTRAP_SERVERS\").unwrap_or_else(|_| \"localhost:9092\".into());\n    \
         app_on(KafkaBroker::new(servers))\n}\n\n\
         /// The app on any broker: Kafka in `main`, the in-memory `TestBroker` in tests.\n\
         pub fn app_on<B: Broker>(broker: B) -> FastStream<B> {\n",
    );
    if loose.is_empty() {
        out.push_str("    FastStream::new(broker)");
    } else {
        out.push_str("    let mut app = FastStream::new(broker);\n    for publisher in publishers() {\n        app = app.with_publisher(&publisher);\n    }\n    app");
    }
    for plan in plans {
        let _ = write!(out, "\n        .include({})", plan.function);
    }
    out.push_str("\n}\n");
    out
}

fn tests_rs(plans: &[Plan], krate: &str) -> String {
    let requests = plans
        .iter()
        .any(|p| p.handler.publishes.is_empty() && p.output.is_some());
    let mut out =
        format!(
        "//! One test per handler, on the in-memory TestBroker: it publishes the example payload\n\
         //! of the handler's schema and checks the handler took it and answered.\n\
         use faststream::testing::TestBroker;\n\
         use faststream::{};\n\
         use serde_json::json;\n{}\
         use {krate}::app_on;\n",
        if requests { "{Broker, Record}" } else { "Broker" },
        if requests { "use std::time::Duration;\n" } else { "" },
    );
    for plan in plans {
        let handler = &plan.handler;
        let _ = write!(
            out,
            "\n#[tokio::test]\nasync fn {}_handles_the_schema_example() {{\n    \
             let test = TestBroker::start(app_on(TestBroker::new())).await.unwrap();\n",
            plan.function
        );
        let examples: Vec<Value> = match (&handler.batch, &plan.input) {
            (Some(_), Value::Array(items)) => items.clone(),
            _ => vec![plan.input.clone()],
        };
        let topic = literal(&handler.topic);
        if handler.publishes.is_empty() && plan.output.is_some() {
            // Request/reply: the answer comes back through `reply_to`.
            let _ = write!(
                out,
                "    let reply = test\n        .request(\n            \
                 Record::encode({topic}, &json!({}))\n                .unwrap(),\n            \
                 Duration::from_secs(5),\n        )\n        .await\n        .unwrap();\n    \
                 assert!(!reply.payload.is_empty(), \"an empty reply\");\n",
                pretty(&examples[0], 16)
            );
        } else {
            for value in &examples {
                let _ = writeln!(
                    out,
                    "    test.publish(json!({}), {topic})\n        .await\n        .unwrap();",
                    pretty(value, 4)
                );
            }
        }
        let _ = writeln!(
            out,
            "    let call = test.calls({}).assert_called_once().await;\n    \
             assert_eq!(call.outcome, Some(Ok(())), \"the handler failed\");",
            literal(&plan.function)
        );
        for publication in &handler.publishes {
            let _ = writeln!(
                out,
                "    test.published({}).assert_count(1).await;",
                literal(&publication.topic)
            );
        }
        out.push_str("    test.shutdown().await.unwrap();\n}\n");
    }
    out
}

const MAIN_RS: &str = r#"//! Runs the service; `--help` lists the commands (run, docs gen, docs serve, publish).
#[tokio::main]
async fn main() -> faststream::Result<()> {
    {krate}::app().cli().await
}
"#;

fn cargo_toml(options: &Options, uses: Uses) -> String {
    let mut schemars_features = Vec::new();
    let mut extra = String::new();
    if uses.chrono {
        schemars_features.push("\"chrono\"");
        extra.push_str("chrono = { version = \"0.4\", features = [\"serde\"] }\n");
    }
    if uses.uuid {
        schemars_features.push("\"uuid1\"");
        extra.push_str("uuid = { version = \"1\", features = [\"serde\"] }\n");
    }
    if uses.regress {
        extra.push_str("regress = \"0.11\"\n");
    }
    let schemars = if schemars_features.is_empty() {
        "\"0.8\"".to_owned()
    } else {
        format!(
            "{{ version = \"0.8\", features = [{}] }}",
            schemars_features.join(", ")
        )
    };
    let test_dep = crate::scaffold::with_testing_feature(&options.faststream_dep);
    let mut text = format!(
        "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nfaststream = {dep}\n\
         tokio = {{ version = \"1\", features = [\"rt-multi-thread\", \"macros\", \"signal\"] }}\n\
         serde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n\
         # The payload types derive `schemars::JsonSchema`: the AsyncAPI document shows them.\n\
         schemars = {schemars}\n{extra}\n\
         [dev-dependencies]\n# The in-memory TestBroker for tests without Kafka.\nfaststream = {test_dep}\n",
        package = options.package,
        dep = options.faststream_dep,
    );
    if options.own_workspace {
        text.push_str(
            "\n# A project of its own, even when created inside another cargo workspace.\n[workspace]\n\n\
             [profile.dev]\ndebug = \"line-tables-only\"\n\n[profile.dev.package.\"*\"]\ndebug = false\n",
        );
    }
    text
}

fn readme(contract: &Contract, plans: &[Plan], types: &Types, options: &Options) -> String {
    let mut out = format!(
        "# {}\n\nGenerated by `faststream import {}{}` from the AsyncAPI document of the FastStream \
         app `{}`.\n\n",
        options.package,
        options.source,
        options
            .app
            .as_ref()
            .map(|a| format!(" --app {a}"))
            .unwrap_or_default(),
        contract.title
    );
    out.push_str("| handler | topic | group | publishes to |\n|---|---|---|---|\n");
    for plan in plans {
        let h = &plan.handler;
        let publishes = if h.publishes.is_empty() {
            if plan.output.is_some() {
                "the request's `reply_to`".to_owned()
            } else {
                "-".to_owned()
            }
        } else {
            h.publishes
                .iter()
                .map(|p| format!("`{}`", p.topic))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let batch = if h.batch.is_some() { " (batch)" } else { "" };
        let _ = writeln!(
            out,
            "| `{}`{batch} | `{}` | `{}` | {publishes} |",
            plan.function, h.topic, h.group_id
        );
    }
    out.push_str(
        "\n`cargo test` runs one TestBroker test per handler with the example payload of its \
         schema; `cargo run` runs the service (Kafka at `KAFKA_BOOTSTRAP_SERVERS`, default \
         `localhost:9092`); `cargo run -- docs gen` writes its AsyncAPI document.\n\n\
         The handlers are stubs returning an example output: their logic is the Python \
         service's, to be written.\n",
    );
    out.push_str("\n## Defaults used where the document is silent\n\n");
    if contract.defaults_used.is_empty() {
        out.push_str("None: groups, batches and publishers were read from the Python app.\n");
    }
    for line in &contract.defaults_used {
        let _ = writeln!(out, "- {line}");
    }
    out.push_str("\n## Not translated\n\n");
    if types.untranslated.is_empty() {
        out.push_str("Nothing: every schema became a Rust type.\n");
    }
    for untranslated in &types.untranslated {
        let _ = writeln!(
            out,
            "- `{}`: {} (it is `serde_json::Value` here)",
            untranslated.schema, untranslated.reason
        );
    }
    out.push_str(
        "\nNever translated: the handlers' logic, dependencies (`Depends`), middlewares, \
         lifespan hooks and anything else that is Python code rather than contract.\n",
    );
    out
}

/// `code` formatted by rustfmt when it is installed (it comes with rustup's default
/// toolchain), else as it is.
fn rustfmt(code: String) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return code;
    };
    if let Some(mut stdin) = child.stdin.take() {
        if stdin.write_all(code.as_bytes()).is_err() {
            return code;
        }
    }
    match child.wait_with_output() {
        Ok(output) if output.status.success() && !output.stdout.is_empty() => {
            String::from_utf8(output.stdout).unwrap_or(code)
        }
        _ => code,
    }
}

/// The crate's files, `(relative path, contents)`.
pub(crate) fn files(
    contract: &Contract,
    options: &Options,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut types = Types::new(&contract.schemas);
    let plans = plan(contract, &mut types);
    let loose = loose_publishers(contract, &mut types);
    let (types_code, uses) = types.code();
    let krate = options.package.replace('-', "_");
    let types_rs = format!(
        "//! The payload types, generated by typify from the document's JSON Schemas.\n\
         #![allow(missing_docs, clippy::all)]\n\n{types_code}"
    );
    let readme = readme(contract, &plans, &types, options);
    let untranslated = types
        .untranslated
        .iter()
        .map(|u| format!("{}: {}", u.schema, u.reason))
        .collect();
    let files = vec![
        ("Cargo.toml".to_owned(), cargo_toml(options, uses)),
        ("src/types.rs".to_owned(), rustfmt(types_rs)),
        (
            "src/lib.rs".to_owned(),
            rustfmt(lib_rs(contract, &plans, &loose, options)),
        ),
        ("src/main.rs".to_owned(), MAIN_RS.replace("{krate}", &krate)),
        (
            "tests/handlers.rs".to_owned(),
            rustfmt(tests_rs(&plans, &krate)),
        ),
        ("README.md".to_owned(), readme),
    ];
    (files, untranslated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract(payload_schema: Value) -> Contract {
        let document = json!({
            "asyncapi": "3.0.0",
            "info": {"title": "Shop"},
            "channels": {"in:Take": {"address": "in"}},
            "operations": {"in:TakeSubscribe": {"action": "receive",
                "channel": {"$ref": "#/channels/in:Take"},
                "messages": [{"$ref": "#/components/messages/m"}]}},
            "components": {
                "messages": {"m": {"payload": {"$ref": "#/components/schemas/Odd"}}},
                "schemas": {"Odd": payload_schema}
            }
        });
        Contract::from_document(&document).unwrap()
    }

    fn options() -> Options {
        Options {
            package: "shop".into(),
            faststream_dep: "\"0.1.0\"".into(),
            own_workspace: true,
            source: "shop.json".into(),
            app: None,
        }
    }

    fn file<'a>(files: &'a [(String, String)], name: &str) -> &'a str {
        &files.iter().find(|(path, _)| path == name).unwrap().1
    }

    #[test]
    fn an_untranslated_schema_is_any_json_and_named_in_the_readme() {
        let (files, untranslated) = files(
            &contract(json!({"$ref": "elsewhere.json#/Odd"})),
            &options(),
        );
        assert_eq!(untranslated.len(), 1, "{untranslated:?}");
        let lib = file(&files, "src/lib.rs");
        assert!(
            lib.contains("pub async fn take(odd: serde_json::Value)"),
            "{lib}"
        );
        let readme = file(&files, "README.md");
        assert!(readme.contains("- `Odd`: "), "{readme}");
        assert!(
            readme.contains("Group ids: the document has none"),
            "{readme}"
        );
    }

    #[test]
    fn a_translated_schema_is_its_type_and_the_crate_is_a_workspace_of_its_own() {
        let (files, untranslated) = files(
            &contract(
                json!({"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}),
            ),
            &options(),
        );
        assert!(untranslated.is_empty(), "{untranslated:?}");
        assert!(file(&files, "src/lib.rs").contains("pub async fn take(odd: Odd)"));
        let manifest = file(&files, "Cargo.toml");
        assert!(
            manifest.contains("uuid = {")
                && manifest.contains("\"uuid1\"")
                && manifest.contains("[workspace]"),
            "{manifest}"
        );
        assert!(file(&files, "tests/handlers.rs")
            .contains("async fn take_handles_the_schema_example()"));
    }
}
