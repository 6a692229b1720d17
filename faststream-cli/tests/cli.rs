//! The `faststream` command and the CLI every app gets, run as processes: help, docs gen and
//! serve, publish on the real broker, error exits, workers, reload refusal, new projects, and
//! `run --metrics` with the health server, `run --otel` to an OTLP collector.
//!
//! The app under test is `tests/src/bin/cli_app.rs` (built once with cargo).

#[path = "cli/import.rs"]
mod import;

use faststream_integration_tests::{
    bootstrap, collect, create_topic, produce, records_in, unique, wait_until, Input,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_relative() {
                workspace().join(p)
            } else {
                p
            }
        })
        .unwrap_or_else(|| workspace().join("target"))
}

/// Held by tests that run cargo on the shared target directory for long (the new project's
/// build compiles the dependencies whose features differ from the workspace's), so a test that waits for `faststream
/// run` to build and start does not spend its timeout blocked on cargo's lock.
static CARGO_BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cargo_builds() -> std::sync::MutexGuard<'static, ()> {
    CARGO_BUILDS.lock().unwrap_or_else(|p| p.into_inner())
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace());
    command
}

/// The test app, built once: with the features `cargo test --workspace` resolves (the
/// workspace's, dev-dependencies included, which an example asks for), so after that build
/// this one is a no-op; `-p` or `--bin` alone resolves others and rebuilds the crates they
/// change.
fn app() -> &'static Path {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    APP.get_or_init(|| {
        let status = cargo()
            .args([
                "build",
                "--workspace",
                "--bin",
                "cli_app",
                "--example",
                "quickstart",
            ])
            .status()
            .expect("cargo");
        assert!(status.success(), "building cli_app failed");
        target_dir().join("debug/cli_app")
    })
}

fn faststream() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_faststream"));
    command.current_dir(workspace());
    command
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("process starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A running process whose stdout and stderr lines are collected.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("process starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let readers: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for reader in readers {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    eprintln!("  | {line}");
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, lines }
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// How many times `needle` occurs in the output so far.
    fn occurrences(&self, needle: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|l| l.matches(needle).count()).sum()
    }

    fn wait_for_lines(&mut self, needle: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Occurrences, not lines: the workers share one pipe and their lines can interleave.
            if self.occurrences(needle) >= count {
                return self.lines_with(needle);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "exited ({status}) before printing `{needle}`: {:?}",
                    self.lines.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` line within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, signal) };
    }

    fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 GET: (status line, body).
fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

fn served_address(server: &mut Running) -> String {
    let line = server.wait_for_lines(
        "Serving AsyncAPI docs at http://",
        1,
        Duration::from_secs(30),
    );
    line[0]
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("address")
        .to_owned()
}

/// Asserts that `program args` succeeds and prints its usage.
fn assert_help(program: &str, command: &mut Command, args: &[&str]) {
    let out = run(command.args(args));
    assert!(out.status.success(), "{program} {args:?}");
    assert!(
        text(&out.stdout).contains(&format!("Usage: {program}")),
        "{program} {args:?}"
    );
}

#[test]
fn every_command_has_help() {
    // The commands the `faststream` tool and every app's CLI both have.
    let shared: [&[&str]; 5] = [
        &["--help"],
        &["run", "--help"],
        &["docs", "--help"],
        &["docs", "gen", "--help"],
        &["docs", "serve", "--help"],
    ];
    let tool_only: [&[&str]; 4] = [
        &["new", "--help"],
        &["import", "--help"],
        &["publish", "--help"],
        &["request", "--help"],
    ];
    for args in shared.into_iter().chain(tool_only) {
        assert_help("faststream", &mut faststream(), args);
    }
    for args in shared.into_iter().chain([&["publish", "--help"][..]]) {
        assert_help("cli_app", &mut Command::new(app()), args);
    }
    let run_help = text(&run(Command::new(app()).args(["run", "--help"])).stdout);
    for flag in ["--log-level", "--log-format", "--KEY VALUE"] {
        assert!(run_help.contains(flag), "{flag} in {run_help}");
    }
}

#[test]
fn docs_gen_writes_json_yaml_and_out() {
    let dir = temp_dir("docs-gen");
    let channel = unique("gen-in");
    let out = run(Command::new(app())
        .args(["docs", "gen"])
        .env("CLI_IN", &channel)
        .current_dir(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("asyncapi.json"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("asyncapi.json")).unwrap()).unwrap();
    assert_eq!(json["asyncapi"], "3.0.0");
    assert!(json["channels"].to_string().contains(&channel));

    let out = run(Command::new(app())
        .args(["docs", "gen", "--yaml"])
        .env("CLI_IN", &channel)
        .current_dir(&dir));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("asyncapi.yaml"));
    let yaml = std::fs::read_to_string(dir.join("asyncapi.yaml")).unwrap();
    assert!(yaml.starts_with("asyncapi: 3.0.0"), "{yaml}");
    assert!(yaml.contains(&channel));

    let file = dir.join("spec/v2.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = run(Command::new(app())
        .args(["docs", "gen", "--asyncapi-version", "2.6.0", "--out"])
        .arg(&file)
        .env("CLI_IN", &channel));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&file.display().to_string()));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["asyncapi"], "2.6.0");

    // Through `faststream docs gen`, which builds the app first.
    let file = dir.join("through-faststream.yaml");
    let out = run(faststream()
        .args([
            "docs",
            "gen",
            "-p",
            "faststream-integration-tests",
            "--bin",
            "cli_app",
            "--yaml",
            "--out",
        ])
        .arg(&file)
        .env("CLI_IN", &channel));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&file).unwrap().contains(&channel));

    // From a file, no app: YAML to JSON and JSON to YAML, the document unchanged.
    let json_file = dir.join("from-yaml.json");
    let out = run(faststream()
        .args(["docs", "gen"])
        .arg(&file)
        .arg("--out")
        .arg(&json_file));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("from-yaml.json"));
    let from_yaml: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert!(from_yaml["channels"].to_string().contains(&channel));
    let yaml_file = dir.join("again.yaml");
    let out = run(Command::new(app())
        .args(["docs", "gen", "--yaml", "--out"])
        .arg(&yaml_file)
        .arg(&json_file));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(&yaml_file).unwrap()).unwrap();
    assert_eq!(
        again, from_yaml,
        "the app's docs gen FILE converts, not its own document"
    );
    let out = run(faststream()
        .args(["docs", "gen"])
        .arg(dir.join("missing.yaml")));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn docs_serve_answers_http_then_stops() {
    let channel = unique("serve-in");
    let mut server = Running::start(
        Command::new(app())
            .args(["docs", "serve", "--port", "0"])
            .env("CLI_IN", &channel),
    );
    let address = served_address(&mut server);
    let (status, body) = http_get(&address, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("<html") || body.contains("<!DOCTYPE") || body.contains("<!doctype"));
    assert!(body.contains(&channel), "channel name in the page");
    let (status, body) = http_get(&address, "/asyncapi.json");
    assert!(status.contains("200"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["channels"].to_string().contains(&channel));
    let (status, body) = http_get(&address, "/asyncapi.yaml");
    assert!(status.contains("200") && body.contains(&channel));
    assert!(http_get(&address, "/nope").0.contains("404"));
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(10)).success());
}

#[test]
fn docs_serve_a_file_and_an_unreadable_one() {
    let dir = temp_dir("serve-file");
    let file = dir.join("spec.yaml");
    std::fs::write(
        &file,
        "asyncapi: 3.0.0\ninfo:\n  title: From a file\n  version: 1.0.0\nchannels:\n  file-channel-xyz:\n    address: file-channel-xyz\n",
    )
    .unwrap();
    let mut server = Running::start(
        faststream()
            .args(["docs", "serve", "--port", "0"])
            .arg(&file),
    );
    let address = served_address(&mut server);
    let (status, body) = http_get(&address, "/");
    assert!(status.contains("200"));
    assert!(body.contains("file-channel-xyz"));
    server.signal(libc::SIGINT);
    assert!(server.wait(Duration::from_secs(10)).success());

    let missing = dir.join("missing.json");
    for mut command in [faststream(), Command::new(app())] {
        let out = run(command.args(["docs", "serve", "--port", "0"]).arg(&missing));
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("cannot read") && stderr.contains("missing.json"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rpc_prints_the_reply() {
    let topic = unique("cli-rpc");
    create_topic(&topic, 1).await;
    let responder = faststream::FastStream::new(faststream::kafka::KafkaBroker::new(bootstrap()))
        .subscriber(
            faststream::SubscriberConfig::new("square", [topic.as_str()])
                .group_id(unique("g").as_str()),
            |n: i64| async move { n * n },
        )
        .start()
        .await
        .expect("responder starts");
    let app_path = app().to_owned();
    let topic_arg = topic.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new(app_path)
            .args(["publish", &topic_arg, "7", "--rpc", "--rpc-timeout", "60"])
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()))
    })
    .await
    .expect("join");
    responder.shutdown().await.expect("shutdown");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "49");
}

#[tokio::test]
async fn dlt_replay_counts_then_republishes_to_the_original_topics() {
    let (dead, original) = (unique("cli-dlt"), unique("cli-dlt-orig"));
    create_topic(&dead, 1).await;
    create_topic(&original, 1).await;
    produce(
        &dead,
        [
            Input::new("one")
                .key("k1")
                .header("dlt-original-topic", original.as_str())
                .header("dlt-attempts", "3")
                .header("correlation_id", "cid-1")
                .header("trace", "t1"),
            Input::new("two").header("dlt-original-topic", original.as_str()),
            Input::new("stray"),
        ],
    )
    .await;
    let out = run(Command::new(app())
        .args(["dlt", "replay", &dead, "--dry-run"])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.starts_with(&format!("would replay 2 records from {dead}")),
        "{printed}"
    );
    assert!(printed.contains(&format!("{original}: 2")), "{printed}");
    assert!(printed.contains("skipped 1 records"), "{printed}");
    assert_eq!(records_in(&original, 1), 0, "a dry run publishes nothing");

    let out = run(Command::new(app())
        .args(["dlt", "replay", &dead])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("replayed 2 records from {dead}")));
    let replayed =
        tokio::task::spawn_blocking(move || collect(&original, 2, Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(
        replayed
            .iter()
            .map(|r| r.payload.as_str())
            .collect::<Vec<_>>(),
        ["one", "two"]
    );
    let first = &replayed[0];
    assert_eq!(first.key.as_deref(), Some("k1"));
    assert_eq!(first.headers.get("trace").map(String::as_str), Some("t1"));
    assert_eq!(
        first.headers.get("correlation_id").map(String::as_str),
        Some("cid-1")
    );
    assert!(
        !first.headers.keys().any(|name| name.starts_with("dlt-")),
        "{:?}",
        first.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_kafka_with_key_and_header() {
    let topic = unique("cli-publish");
    create_topic(&topic, 2).await;
    let out = run(Command::new(app())
        .args([
            "publish",
            &topic,
            r#"{"user": "John", "user_id": 1}"#,
            "--key",
            "john",
        ])
        .args([
            "--header",
            "source=cli",
            "--header",
            "trace=a=b",
            "--partition",
            "1",
        ])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "partition 1 offset 0");
    let out = run(Command::new(app())
        .args(["publish", &topic, "plain text", "--partition", "1"])
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()));
    assert_eq!(text(&out.stdout).trim(), "partition 1 offset 1");

    let records = tokio::task::spawn_blocking(move || collect(&topic, 2, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
    let json: serde_json::Value = serde_json::from_str(&records[0].payload).unwrap();
    assert_eq!(json, serde_json::json!({"user": "John", "user_id": 1}));
    assert_eq!(records[0].key.as_deref(), Some("john"));
    assert_eq!(records[0].headers["source"], "cli");
    assert_eq!(records[0].headers["trace"], "a=b");
    assert_eq!(records[0].headers["content-type"], "application/json");
    assert_eq!(records[1].payload, "plain text");
    assert_eq!(records[1].headers["content-type"], "text/plain");
}

/// `faststream publish` on any cluster, without an app: over SASL_SSL with SCRAM-SHA-512 and
/// the local CA (the password from the environment), read back on the plain listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faststream_publish_reaches_a_secured_cluster() {
    use faststream_integration_tests::secure;
    let topic = unique("cli-secure-publish");
    create_topic(&topic, 1).await;
    let out = run(faststream()
        .args([
            "publish",
            &topic,
            r#"{"n": 1}"#,
            "--key",
            "k",
            "--header",
            "via=cli",
        ])
        .args([
            "-b",
            &secure::sasl_ssl(),
            "--sasl-mechanism",
            "SCRAM-SHA-512",
        ])
        .args(["--sasl-username", secure::USER, "--ssl-ca-file"])
        .arg(secure::ca_file())
        .args(["-X", "client.id=faststream-cli-test"])
        .env("KAFKA_SASL_PASSWORD", secure::PASSWORD));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "partition 0 offset 0");
    let records = tokio::task::spawn_blocking(move || collect(&topic, 1, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload, r#"{"n":1}"#);
    assert_eq!(records[0].key.as_deref(), Some("k"));
    assert_eq!(records[0].headers["via"], "cli");
    assert_eq!(records[0].headers["content-type"], "application/json");
}

/// A wrong password fails within seconds, with one line naming the cause, and exit code 1.
#[test]
fn faststream_publish_with_a_wrong_password_says_so() {
    use faststream_integration_tests::secure;
    let started = Instant::now();
    let out = run(faststream()
        .args(["publish", "never-written", "x"])
        .args(["-b", &secure::sasl_plaintext(), "--sasl-mechanism", "PLAIN"])
        .args(["--sasl-username", secure::USER, "--sasl-password", "wrong"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error:") && stderr.contains("uthentication"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let out = run(faststream().args(["publish", "t", "x", "--sasl-username", "a"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "a user without a mechanism is a usage error"
    );
}

/// `faststream request` over SASL_PLAINTEXT (PLAIN): a subscriber answers through `reply_to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faststream_request_prints_the_reply_over_sasl() {
    use faststream_integration_tests::secure;
    let topic = unique("cli-secure-request");
    create_topic(&topic, 1).await;
    let responder = faststream::FastStream::new(faststream::kafka::KafkaBroker::new(bootstrap()))
        .subscriber(
            faststream::SubscriberConfig::new("triple", [topic.as_str()])
                .group_id(unique("g").as_str()),
            |n: i64| async move { n * 3 },
        )
        .start()
        .await
        .expect("responder starts");
    let topic_arg = topic.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(faststream()
            .args(["request", &topic_arg, "14", "--rpc-timeout", "60"])
            .args(["--bootstrap-servers", &secure::sasl_plaintext()])
            .args(["--sasl-mechanism", "PLAIN", "--sasl-username", secure::USER])
            .args(["--sasl-password", secure::PASSWORD]))
    })
    .await
    .expect("join");
    responder.shutdown().await.expect("shutdown");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "42");
}

#[test]
fn unreachable_broker_is_named() {
    for args in [&["publish", "some-topic", "hi"][..], &["run"]] {
        let out = run(Command::new(app())
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("cannot reach Kafka at 127.0.0.1:1"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_flags_exit_2() {
    let app_cases: [&[&str]; 5] = [
        &["docs", "gen", "--bogus"],
        &["docs", "gen", "--asyncapi-version", "9.9"],
        &["publish", "only-topic"],
        &["publish", "t", "m", "--header", "no-equals"],
        &["run", "stray-positional"],
    ];
    for args in app_cases {
        let out = run(Command::new(app()).args(args));
        assert_eq!(
            out.status.code(),
            Some(2),
            "cli_app {args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    for args in [
        &["run", "--workers", "0"][..],
        &["docs", "gen", "--bogus"],
        &["nope"],
    ] {
        let out = run(faststream().args(args));
        assert_eq!(out.status.code(), Some(2), "faststream {args:?}");
    }
}

#[test]
fn reload_with_several_workers_is_refused() {
    let out = run(faststream().args(["run", "--reload", "--workers", "2"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--reload cannot be combined with --workers"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_both_consume_and_a_killed_one_restarts() {
    app(); // built once, so `faststream run` only links
    let (input, output, group) = (unique("cli-w-in"), unique("cli-w-out"), unique("cli-w"));
    create_topic(&input, 2).await;
    create_topic(&output, 1).await;
    let building = cargo_builds();
    let mut supervisor = Running::start(
        faststream()
            .args([
                "run",
                "-p",
                "faststream-integration-tests",
                "--bin",
                "cli_app",
                "--workers",
                "2",
            ])
            .args(["--", "--log-level", "warn", "--env", "test"])
            .env("CLI_IN", &input)
            .env("CLI_OUT", &output)
            .env("CLI_GROUP", &group)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()),
    );
    supervisor.wait_for_lines("cli_app: started", 2, Duration::from_secs(120));
    drop(building);
    // Extra options reach both workers' hooks. The two processes share one pipe, so their
    // lines can interleave: count occurrences, not lines.
    let deadline = Instant::now() + Duration::from_secs(30);
    while supervisor.occurrences(r#"env=Str("test")"#) < 2 {
        assert!(Instant::now() < deadline, "extra options reach both hooks");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Keep producing to both partitions until both workers answered.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut sent = 0;
    loop {
        let batch = (0..2).map(|p| Input::new(format!("m{}", sent + p)).partition(p));
        produce(&input, batch).await;
        sent += 2;
        let topic = output.clone();
        let records = tokio::task::spawn_blocking(move || {
            collect(&topic, usize::MAX, Duration::from_secs(2))
        })
        .await
        .unwrap();
        let zero = records.iter().any(|r| r.payload.starts_with("0:"));
        let one = records.iter().any(|r| r.payload.starts_with("1:"));
        if zero && one {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both workers did not consume: {records:?}"
        );
    }

    let started = supervisor.lines_with("started worker 0 (pid ");
    let pid: i32 = started[0]
        .rsplit("pid ")
        .next()
        .and_then(|s| s.trim_end_matches(')').parse().ok())
        .expect("worker pid");
    // SAFETY: kill(2) on a worker process of our supervisor.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    supervisor.wait_for_lines("restarted worker 0", 1, Duration::from_secs(30));
    supervisor.wait_for_lines("cli_app: started", 3, Duration::from_secs(60));

    supervisor.signal(libc::SIGTERM);
    let status = supervisor.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}");
}

/// The user ids in `output`'s greetings, by greeting text prefix (`Hello`, `Hi`).
fn greetings(output: &str) -> Vec<(String, i64)> {
    collect(output, usize::MAX, Duration::from_secs(2))
        .iter()
        .filter_map(|r| {
            let json: serde_json::Value = serde_json::from_str(&r.payload).ok()?;
            let text = json["text"].as_str()?;
            Some((
                text.split(',').next()?.to_owned(),
                json["user_id"].as_i64()?,
            ))
        })
        .collect()
}

async fn greet_users(input: &str, ids: std::ops::Range<i64>) {
    let inputs = ids.map(|id| Input::new(format!(r#"{{"user": "u{id}", "user_id": {id}}}"#)));
    produce(input, inputs).await;
}

/// `faststream run --reload` end to end: a new project runs on Kafka; its handler is edited
/// while messages keep coming; the app is rebuilt and restarted, the new handler answers what
/// comes after, and no message is lost across the restart.
#[test]
fn reload_rebuilds_and_restarts_on_an_edit_and_loses_nothing() {
    // Synchronous: it holds the cargo-builds lock while `faststream run` builds.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (input, output, group) = (unique("cli-r-in"), unique("cli-r-out"), unique("cli-r"));
    runtime.block_on(create_topic(&input, 1));
    runtime.block_on(create_topic(&output, 1));
    let dir = temp_dir("reload");
    let out = run(faststream().args(["new", "reload_demo"]).current_dir(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let project = dir.join("reload_demo");
    let lib = project.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let source = source
        .replace(
            r#"#[subscriber("users")]"#,
            &format!(r#"#[subscriber("{input}", group_id = "{group}")]"#),
        )
        .replace(
            r#"#[publisher("greetings")]"#,
            &format!(r#"#[publisher("{output}")]"#),
        );
    std::fs::write(&lib, &source).unwrap();

    let building = cargo_builds();
    let mut app = Running::start(
        faststream()
            .args(["run", "--reload"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", target_dir())
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()),
    );
    app.wait_for_lines("partitions assigned", 1, Duration::from_secs(300));
    runtime.block_on(greet_users(&input, 1..6));
    wait_until(Duration::from_secs(60), "five greetings", || {
        greetings(&output).len() >= 5
    });

    // The edit; messages keep coming while the app rebuilds and restarts.
    std::fs::write(
        &lib,
        source.replace(r#"format!("Hello, {user}!")"#, r#"format!("Hi, {user}!")"#),
    )
    .unwrap();
    runtime.block_on(greet_users(&input, 6..11));
    app.wait_for_lines("faststream: restarted the app", 1, Duration::from_secs(300));
    app.wait_for_lines("partitions assigned", 2, Duration::from_secs(120));
    drop(building);
    runtime.block_on(greet_users(&input, 11..16));
    let mut answered = Vec::new();
    wait_until(Duration::from_secs(60), "every user greeted", || {
        answered = greetings(&output);
        (1..16).all(|id| answered.iter().any(|(_, user)| *user == id))
    });
    for id in 1..6 {
        assert!(
            answered.contains(&("Hello".to_owned(), id)),
            "{id}: {answered:?}"
        );
    }
    for id in 11..16 {
        assert!(
            answered.contains(&("Hi".to_owned(), id)),
            "{id}: {answered:?}"
        );
    }
    assert_eq!(app.occurrences("sources changed, rebuilding"), 1);
    app.signal(libc::SIGTERM);
    assert!(app.wait(Duration::from_secs(60)).success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn new_project_builds_tests_and_generates_docs() {
    let dir = temp_dir("new");
    let out = run(faststream().args(["new", "demo_app"]).current_dir(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let project = dir.join("demo_app");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "tests/handler.rs",
        ".cargo/config.toml",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    // The shared target dir (HOME is set here); the build below overrides it with
    // CARGO_TARGET_DIR, so that it reuses what the workspace's build has compiled.
    let config = std::fs::read_to_string(project.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("faststream-rs/target"), "{config}");
    let again = run(faststream().args(["new", "demo_app"]).current_dir(&dir));
    assert_eq!(
        again.status.code(),
        Some(1),
        "refuses an existing directory"
    );

    let building = cargo_builds();
    let out = run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["test", "--offline"])
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(&project),
    );
    drop(building);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the new project's tests fail:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("test greets_the_user ... ok"), "{stdout}");
    let out = run(Command::new(target_dir().join("debug/demo_app"))
        .args(["docs", "gen"])
        .current_dir(&project));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = std::fs::read_to_string(project.join("asyncapi.json")).unwrap();
    assert!(
        doc.contains("users:Greet") && doc.contains("greetings:Publisher"),
        "{doc}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The value of the Prometheus sample whose name is `name` and whose labels include every one
/// of `labels` (`key="value"`), from a `/metrics` text.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|label| set.split(',').any(|l| l == *label))
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_metrics_serves_health_and_prometheus_counts() {
    let (input, output, group) = (unique("cli-m-in"), unique("cli-m-out"), unique("cli-m"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let mut server = Running::start(
        Command::new(app())
            .args(["run", "--metrics", "--health-port", "0"])
            .env("CLI_IN", &input)
            .env("CLI_OUT", &output)
            .env("CLI_GROUP", &group)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap()),
    );
    let line = server.wait_for_lines("health at http://", 1, Duration::from_secs(60));
    let address = line[0]
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("address")
        .to_owned();
    // Ready once the partition is assigned and consuming.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(&address, "/health/ready");
        if status.contains(" 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {status}\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    produce(&input, ["a", "bb", "ccc"].map(Input::new)).await;
    let topic = output.clone();
    let records = tokio::task::spawn_blocking(move || collect(&topic, 3, Duration::from_secs(30)))
        .await
        .unwrap();
    let payloads: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
    assert_eq!(payloads, ["-:a", "-:bb", "-:ccc"]);

    let handler = format!("handler=\"{input}\"");
    let acked = [handler.as_str(), "status=\"acked\""];
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (status, text) = http_get(&address, "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        if sample(
            &text,
            "faststream_received_processed_messages_total",
            &acked,
        ) == Some(3.0)
        {
            break text;
        }
        assert!(Instant::now() < deadline, "never counted 3 acked:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(&text, "faststream_received_messages_total", &[&handler]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "faststream_received_messages_size_bytes_sum",
            &[&handler]
        ),
        Some(6.0),
        "{text}"
    );
    let destination = format!("destination=\"{output}\"");
    assert_eq!(
        sample(
            &text,
            "faststream_published_messages_total",
            &[&destination, "status=\"success\""]
        ),
        Some(3.0),
        "{text}"
    );
    let (_, health) = http_get(&address, "/health");
    assert!(
        health.contains(&input),
        "the report names the partition's topic: {health}"
    );

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).success());
}

/// The requests a stand-in collector received: `(path, body)`.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A stand-in OTLP/HTTP collector: answers every POST with 200 and keeps `(path, body)`.
fn otlp_collector() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("collector binds");
    let address = listener.local_addr().expect("address").to_string();
    let received = Received::default();
    let kept = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            kept.lock().unwrap().push((path, body));
            let _ = reader.get_mut().write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (address, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_otel_exports_process_and_send_spans_over_otlp() {
    let (input, output, group) = (unique("cli-o-in"), unique("cli-o-out"), unique("cli-o"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let (collector, received) = otlp_collector();
    let server = Running::start(
        Command::new(app())
            .args(["run", "--otel"])
            .env("CLI_IN", &input)
            .env("CLI_OUT", &output)
            .env("CLI_GROUP", &group)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_SERVICE_NAME", "cli-otel-test"),
    );
    produce(&input, [Input::new("traced")]).await;
    let topic = output.clone();
    let records = tokio::task::spawn_blocking(move || collect(&topic, 1, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(records[0].payload, "-:traced");
    let traceparent = records[0].headers.get("traceparent").cloned();
    assert!(
        traceparent.as_deref().is_some_and(|t| t.starts_with("00-")),
        "the published record carries the W3C context: {:?}",
        records[0].headers
    );

    // SIGTERM: the app stops and exports what its batch processor still holds.
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).success());
    let received = received.lock().unwrap();
    let traces: Vec<&Vec<u8>> = received
        .iter()
        .filter(|(path, _)| path == "/v1/traces")
        .map(|(_, body)| body)
        .collect();
    // Protobuf keeps strings as their bytes: the span names and the service name are there.
    let holds = |needle: &str| {
        traces
            .iter()
            .any(|body| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(!traces.is_empty(), "no POST to /v1/traces: {received:?}");
    assert!(holds(&format!("process {input}")), "no CONSUMER span");
    assert!(holds(&format!("send {output}")), "no PRODUCER span");
    assert!(
        holds("cli-otel-test"),
        "the service name from OTEL_SERVICE_NAME"
    );
    // The trace id the record carried is the one exported (as 16 raw bytes).
    let trace_id = traceparent.unwrap()[3..35].to_owned();
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        traces
            .iter()
            .any(|body| body.windows(16).any(|w| w == bytes)),
        "trace {trace_id} not exported"
    );
}
