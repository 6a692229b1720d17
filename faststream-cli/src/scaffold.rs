//! `faststream new NAME`: a project with one subscriber, one publisher, a CLI and a test.

use crate::error::CliError;
use std::path::{Path, PathBuf};

/// This checkout's root, when `faststream` runs from a build of it (then new projects depend
/// on its `faststream` crate by path, and reuse its `Cargo.lock`, so they build offline).
pub(crate) fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    root.join("faststream/Cargo.toml")
        .is_file()
        .then(|| root.to_owned())
}

pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The `faststream` dependency of a new project: this checkout's crate by path when the
/// command runs from a build of it, else the released version.
pub(crate) fn faststream_dependency() -> String {
    match checkout() {
        Some(root) => format!(
            "{{ path = {:?} }}",
            root.join("faststream").display().to_string()
        ),
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

/// The target directory the projects created on this machine share:
/// `$XDG_CACHE_HOME/faststream-rs/target`, or `~/.cache/faststream-rs/target` (where the
/// local Kafka's jars are cached too). `None` when neither variable is set to an absolute path.
pub(crate) fn shared_target_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let cache =
        absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".cache")))?;
    Some(cache.join("faststream-rs").join("target"))
}

/// The project's `.cargo/config.toml`: its builds go to the shared target directory, so the
/// dependencies (librdkafka's C build among them) compile once per machine, not per project.
pub(crate) fn cargo_config(target_dir: &Path) -> Option<String> {
    // A TOML basic string: only `"` and `\` need escaping in a path.
    let path = target_dir
        .to_str()?
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    Some(format!(
        r#"# Written by `faststream new` or `faststream import`: the projects they create on this
# machine build into one shared target directory, so their dependencies (librdkafka, tokio, ...) compile once rather
# than once per project. Delete this file (or use `--local-target`) for a target/ of the
# project's own. Ignored by git: the path is this machine's.
[build]
target-dir = "{path}"
"#
    ))
}

/// Creates directory `name` with the project; prints what to do next. With `shared_target`,
/// the project builds into the machine's shared target directory (`.cargo/config.toml`).
pub(crate) fn create(name: &str, shared_target: bool) -> Result<(), CliError> {
    let dir = Path::new(name);
    let package = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if !valid_name(&package) {
        return Err(CliError::Usage(format!(
            "`{package}` is not a valid package name (a letter, then letters, digits, `-` or `_`)"
        )));
    }
    if dir.exists() {
        return Err(CliError::Scaffold(format!(
            "`{}` already exists",
            dir.display()
        )));
    }
    let krate = package.replace('-', "_");
    let root = checkout();
    let faststream_dep = faststream_dependency();
    let mut files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(&package, &faststream_dep)),
        ("src/lib.rs", LIB_RS.replace("{package}", &package)),
        ("src/main.rs", MAIN_RS.replace("{krate}", &krate)),
        ("tests/handler.rs", TEST_RS.replace("{krate}", &krate)),
        (".gitignore", "/target\n/.cargo/config.toml\n".to_owned()),
    ];
    let target_dir = shared_target
        .then(shared_target_dir)
        .flatten()
        .and_then(|dir| Some((cargo_config(&dir)?, dir)));
    if let Some((config, _)) = &target_dir {
        files.push((".cargo/config.toml", config.clone()));
    }
    let write = |path: &Path, text: &str| -> Result<(), CliError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| {
                CliError::Scaffold(format!("cannot create `{}`: {err}", parent.display()))
            })?;
        }
        std::fs::write(path, text)
            .map_err(|err| CliError::Scaffold(format!("cannot write `{}`: {err}", path.display())))
    };
    for (file, text) in &files {
        write(&dir.join(file), text)?;
    }
    if let Some(root) = &root {
        // The checkout's lock file pins the versions it was tested with (cargo drops the
        // entries the new project does not use), so the project builds offline.
        if let Ok(lock) = std::fs::read_to_string(root.join("Cargo.lock")) {
            write(&dir.join("Cargo.lock"), &lock)?;
        }
    }
    println!("Created `{}` ({package})", dir.display());
    if let Some((_, target_dir)) = &target_dir {
        println!(
            "  builds go to {} (shared by the projects `faststream new` creates; see .cargo/config.toml)",
            target_dir.display()
        );
    }
    println!(
        "  cd {} && cargo test          # the handler's unit test",
        dir.display()
    );
    println!("  cargo run                     # run it (Kafka on localhost:9092, or KAFKA_BOOTSTRAP_SERVERS)");
    println!("  cargo run -- docs gen         # write asyncapi.json");
    println!("  faststream run --workers 2    # two workers");
    Ok(())
}

fn cargo_toml(package: &str, faststream_dep: &str) -> String {
    let faststream_test_dep = with_testing_feature(faststream_dep);
    format!(
        r#"[package]
name = "{package}"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
faststream = {faststream_dep}
tokio = {{ version = "1", features = ["rt-multi-thread", "macros", "signal"] }}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
# The in-memory TestBroker for tests without Kafka.
faststream = {faststream_test_dep}
serde_json = "1"

# A project of its own, even when created inside another cargo workspace.
[workspace]

# Line tables are enough for backtraces, and dependencies need no debug info: smaller and
# faster debug builds (the same settings as faststream-rs's own workspace).
[profile.dev]
debug = "line-tables-only"

[profile.dev.package."*"]
debug = false
"#
    )
}

const LIB_RS: &str = r#"//! {package}: a FastStream app on Apache Kafka.
use faststream::kafka::KafkaBroker;
use faststream::{publisher, subscriber, Broker, FastStream};
use serde::Serialize;

/// What `greet` publishes to `greetings`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Greeting {
    /// The user greeted.
    pub user_id: i64,
    /// The greeting.
    pub text: String,
}

/// Greets each registered user: `{"user": "John", "user_id": 1}` on `users` becomes a
/// `Greeting` on `greetings`.
#[subscriber("users")]
#[publisher("greetings")]
pub async fn greet(user: String, user_id: i64) -> Greeting {
    Greeting {
        user_id,
        text: format!("Hello, {user}!"),
    }
}

/// The app: Kafka at `KAFKA_BOOTSTRAP_SERVERS` (default `localhost:9092`).
pub fn app() -> FastStream<KafkaBroker> {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".into());
    app_on(KafkaBroker::new(servers))
}

/// The app on any broker: Kafka in `main`, the in-memory `TestBroker` in tests.
pub fn app_on<B: Broker>(broker: B) -> FastStream<B> {
    FastStream::new(broker)
        .include(greet)
        .on_startup_with(|options| async move {
            if let Some(worker) = options.worker_id() {
                println!("worker {worker} starting");
            }
        })
}
"#;

const MAIN_RS: &str = r#"//! Runs the app; `--help` lists the commands (run, docs gen, docs serve, publish).
#[tokio::main]
async fn main() -> faststream::Result<()> {
    {krate}::app().cli().await
}
"#;

const TEST_RS: &str = r#"//! The handler is a plain async function, and the whole app runs on the in-memory
//! `TestBroker` (no Kafka needed). Publishing is the `Broker` trait's, as on `KafkaBroker`.
use faststream::testing::TestBroker;
use faststream::Broker;
use serde_json::json;
use {krate}::{app_on, greet, Greeting};

#[tokio::test]
async fn greets_through_the_test_broker() {
    let test = TestBroker::start(app_on(TestBroker::new())).await.unwrap();
    test.publish(json!({"user": "John", "user_id": 1}), "users")
        .await
        .unwrap();
    test.calls("greet")
        .assert_called_once_with(json!({"user": "John", "user_id": 1}))
        .await;
    test.published("greetings")
        .assert_one(json!({"user_id": 1, "text": "Hello, John!"}))
        .await;
    test.shutdown().await.unwrap();
}

#[tokio::test]
async fn greets_the_user() {
    let greeting = greet::call("John".into(), 1).await;
    assert_eq!(
        greeting,
        Greeting {
            user_id: 1,
            text: "Hello, John!".into()
        }
    );
}
"#;

/// The `faststream` dependency with the `testing` feature added.
pub(crate) fn with_testing_feature(dep: &str) -> String {
    match dep.strip_suffix('}') {
        Some(table) => format!("{}, features = [\"testing\"] }}", table.trim_end()),
        None => format!("{{ version = {dep}, features = [\"testing\"] }}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_dependency_adds_the_testing_feature() {
        assert_eq!(
            super::with_testing_feature(r#"{ path = "/x/faststream" }"#),
            r#"{ path = "/x/faststream", features = ["testing"] }"#
        );
        assert_eq!(
            super::with_testing_feature(r#""0.1.0""#),
            r#"{ version = "0.1.0", features = ["testing"] }"#
        );
    }

    #[test]
    fn the_cargo_config_points_at_the_shared_target_directory() {
        let config = super::cargo_config(std::path::Path::new("/home/a \"b\"/.cache/t")).unwrap();
        assert!(
            config.contains(r#"target-dir = "/home/a \"b\"/.cache/t""#),
            "{config}"
        );
        let parsed: Vec<&str> = config.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(parsed[0], "[build]");
    }

    #[test]
    fn names() {
        assert!(super::valid_name("demo-app_2"));
        assert!(!super::valid_name("2demo"));
        assert!(!super::valid_name("de mo"));
        assert!(!super::valid_name(""));
    }
}
