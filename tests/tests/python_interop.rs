//! Request/reply across languages on a real Kafka broker: Python FastStream (0.7.8, from
//! PyPI into `target/python-interop/venv` on first use) answers a faststream-rs request, and a
//! faststream-rs subscriber answers a Python FastStream request through `reply_to`.

use faststream::kafka::KafkaBroker;
use faststream::{FastStream, Record, SubscriberConfig};
use faststream_integration_tests::*;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The venv's python with FastStream installed (once per machine).
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = workspace().join("target/python-interop/venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3");
            assert!(status.success(), "creating the venv failed");
        }
        let marker = venv.join(".installed");
        if !marker.exists() {
            let status = Command::new(&python)
                .args(["-m", "pip", "install", "-q", "faststream[kafka]==0.7.8"])
                .status()
                .expect("pip");
            assert!(status.success(), "installing FastStream from PyPI failed");
            std::fs::write(&marker, "ok").expect("marker");
        }
        python
    })
}

fn script() -> PathBuf {
    workspace().join("tests/python/interop.py")
}

/// Kills the child process when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_faststream_answers_a_rust_request() {
    let topic = unique("py-answers");
    create_topic(&topic, 1).await;
    let python = tokio::task::spawn_blocking(python).await.expect("venv");
    let mut child = KillOnDrop(
        Command::new(python)
            .arg(script())
            .args(["respond", &bootstrap(), &topic, &unique("g")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python responder"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim() == "ready")
    });
    let ready = tokio::time::timeout(Duration::from_secs(90), ready)
        .await
        .expect("the Python responder starts within 90 s")
        .expect("reader");
    assert!(ready, "the Python responder exited before it was ready");
    logs();
    let client = KafkaBroker::new(bootstrap()).request_timeout(Duration::from_secs(60));
    let answer: i64 = client
        .request_as(Record::encode(topic.as_str(), &5).expect("encode"))
        .await
        .expect("Python's reply");
    assert_eq!(answer, 1005);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_subscriber_answers_a_python_faststream_request() {
    let (topic, replies) = (unique("rs-answers"), unique("py-replies"));
    create_topic(&topic, 1).await;
    create_topic(&replies, 1).await;
    logs();
    let responder = FastStream::new(KafkaBroker::new(bootstrap()))
        .subscriber(
            SubscriberConfig::new("double", [topic.as_str()]).group_id(unique("g").as_str()),
            |n: i64| async move { n * 2 },
        )
        .start()
        .await
        .expect("responder starts");
    let python = tokio::task::spawn_blocking(python).await.expect("venv");
    let mut command = Command::new(python);
    command
        .arg(script())
        .args(["request", &bootstrap(), &topic, &replies, "21"]);
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("the Python request finishes within 120 s")
    .expect("join")
    .expect("python");
    responder.shutdown().await.expect("shutdown");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // FastStream logs to stdout too: the answer is the one line that is just the payload.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answers: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.contains(" - "))
        .collect();
    assert_eq!(answers, ["42"], "{stdout}");
}
