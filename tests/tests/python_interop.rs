//! Across languages on a real Kafka broker, with Python FastStream (0.7.8 and the
//! OpenTelemetry SDK, from PyPI into `target/python-interop/venv` on first use, by the helpers'
//! `python()`): Python answers
//! a faststream-rs request, a faststream-rs subscriber answers a Python request through
//! `reply_to`, one OpenTelemetry trace crosses a Python service traced by FastStream's own
//! middleware, and a Python consumer with aiokafka's `isolation_level="read_committed"` reads
//! an exactly-once app's output without what the app aborted.

use faststream::kafka::KafkaBroker;
use faststream::{Broker, FastStream, Record, SubscriberConfig};
use faststream_integration_tests::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn script() -> PathBuf {
    workspace().join("tests/python/interop.py")
}

/// Runs `interop.py` with `args` to its end (at most 120 s) and returns what it printed;
/// fails with what it printed on stderr when it fails.
async fn run_script(args: &[&str]) -> String {
    let python = tokio::task::spawn_blocking(python).await.expect("venv");
    let mut command = Command::new(python);
    command.arg(script()).args(args);
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("the Python script finishes within 120 s")
    .expect("join")
    .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
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
    let client = KafkaBroker::new(bootstrap());
    let answer: i64 = client
        .request_as(
            Record::encode(topic.as_str(), &5).expect("encode"),
            Duration::from_secs(60),
        )
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
    let stdout = run_script(&["request", &bootstrap(), &topic, &replies, "21"]).await;
    responder.shutdown().await.expect("shutdown");
    // FastStream logs to stdout too: the answer is the one line that is just the payload.
    let answers: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.contains(" - "))
        .collect();
    assert_eq!(answers, ["42"], "{stdout}");
}

/// One span as the Python side printed it: name, trace id, span id, parent span id (hex).
#[derive(Debug, Clone, PartialEq)]
struct PySpan {
    name: String,
    trace: String,
    span: String,
    parent: String,
}

fn py_span(line: &str) -> Option<PySpan> {
    let mut fields = line.strip_prefix("span ")?.split('|');
    Some(PySpan {
        name: fields.next()?.to_owned(),
        trace: fields.next()?.to_owned(),
        span: fields.next()?.to_owned(),
        parent: fields.next()?.trim().to_owned(),
    })
}

/// faststream-rs → Python FastStream (its `KafkaTelemetryMiddleware`) → faststream-rs: one
/// trace across both languages, each side's consumer span the child of what the other sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_python_faststream_both_ways() {
    use faststream::observe::otel::Otel;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use std::sync::{Arc, Mutex};

    let (start, to_python, from_python) = (
        unique("py-otel-start"),
        unique("py-otel-in"),
        unique("py-otel-out"),
    );
    for topic in [&start, &to_python, &from_python] {
        create_topic(topic, 1).await;
    }
    let python = tokio::task::spawn_blocking(python).await.expect("venv");
    let mut child = KillOnDrop(
        Command::new(python)
            .arg(script())
            .args([
                "traced",
                &bootstrap(),
                &to_python,
                &from_python,
                &unique("g"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python relay"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            kept.lock().unwrap().push(line);
        }
    });
    tokio::time::timeout(Duration::from_secs(90), ready_rx)
        .await
        .expect("the Python relay starts within 90 s")
        .expect("the Python relay exited before it was ready");
    logs();

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let otel = Otel::new(provider.tracer("python-interop"));
    let (sent_back, received) = tokio::sync::mpsc::unbounded_channel::<String>();
    let running = FastStream::new(KafkaBroker::new(bootstrap()))
        .otel(&otel)
        .subscriber(
            SubscriberConfig::new("front", [start.as_str()])
                .group_id(unique("g").as_str())
                .publish_to(to_python.as_str()),
            |text: String| async move { format!("rs:{text}") },
        )
        .subscriber(
            SubscriberConfig::new("back", [from_python.as_str()]).group_id(unique("g").as_str()),
            move |text: String| {
                let sent_back = sent_back.clone();
                async move {
                    let _ = sent_back.send(text);
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&start, [Input::new("hello")]).await;
    let mut received = received;
    let back = tokio::time::timeout(Duration::from_secs(60), received.recv())
        .await
        .expect("the record comes back from Python within 60 s");
    assert_eq!(back.as_deref(), Some("py:rs:hello"));
    let process_back = format!("process {from_python}");
    wait_for(Duration::from_secs(30), "the spans of both sides", || {
        let rust_done = exporter
            .get_finished_spans()
            .is_ok_and(|spans| spans.iter().any(|s| s.name == process_back));
        let python_done = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| py_span(l))
            .any(|s| s.name == format!("{to_python} process"));
        rust_done && python_done
    })
    .await;
    running.shutdown().await.expect("shutdown");

    let spans = exporter.get_finished_spans().expect("spans");
    let rust = |name: String| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span `{name}` in {spans:#?}"))
            .clone()
    };
    let process_start = rust(format!("process {start}"));
    let send_to_python = rust(format!("send {to_python}"));
    let process_from_python = rust(process_back);
    let python_spans: Vec<PySpan> = lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| py_span(l))
        .collect();
    let python = |name: String| {
        python_spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no Python span `{name}` in {python_spans:#?}"))
            .clone()
    };
    let python_process = python(format!("{to_python} process"));
    let python_publish = python(format!("{from_python} publish"));

    let trace = process_start.span_context.trace_id().to_string();
    assert_eq!(send_to_python.span_context.trace_id().to_string(), trace);
    assert_eq!(
        python_process.trace, trace,
        "Python continues the Rust trace"
    );
    assert_eq!(python_publish.trace, trace);
    assert_eq!(
        process_from_python.span_context.trace_id().to_string(),
        trace,
        "the trace comes back to Rust"
    );
    assert_eq!(
        python_process.parent,
        send_to_python.span_context.span_id().to_string(),
        "Python's consumer span is the child of the Rust send span"
    );
    assert_eq!(python_publish.parent, python_process.span);
    // FastStream propagates the context a message was created in: inside a handler, that of
    // the message it consumes, so the record Python sent carries the Rust send span's context
    // (not its own publish span's).
    assert_eq!(
        process_from_python.parent_span_id,
        send_to_python.span_context.span_id(),
        "the Rust consumer span's parent is what the Python record carried"
    );
}

/// Downstream of a faststream-rs exactly-once app, a Python FastStream consumer with
/// aiokafka's `isolation_level="read_committed"` reads each output once and nothing of the
/// transaction the app aborted; a `read_uncommitted` one reads the aborted record too (the
/// record is there: what hides it is the isolation level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_faststream_reads_committed_exactly_once_output() {
    let (input, output) = (unique("eo-py-in"), unique("eo-py-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    logs();
    let broker = KafkaBroker::new(bootstrap()).instance_id(unique("py"));
    let running = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("tenfold", [input.as_str()])
                .group_id(unique("g").as_str())
                .publish_to(output.as_str())
                .exactly_once(true),
            |n: i64| async move { n * 10 },
        )
        .start()
        .await
        .expect("app starts");
    // First on the output: a transaction the app aborts, once its record is in the log (an
    // abort drops what is still queued). The high watermark counts it; the end offset a
    // read_committed client is told stops before the open transaction.
    let mut aborted = broker.begin_transaction().await.expect("transaction");
    aborted.publish(-1, output.as_str()).await.expect("publish");
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("watermark reader");
    wait_for(
        Duration::from_secs(10),
        "the record to abort in the log",
        || {
            watermarks
                .fetch_watermarks(&output, 0, Duration::from_secs(5))
                .is_ok_and(|(_, high)| high >= 1)
        },
    )
    .await;
    aborted.abort().await.expect("abort");
    let inputs: Vec<Input> = (1..=5).map(|n: i64| Input::new(n.to_string())).collect();
    produce(&input, inputs).await;

    let stdout = run_script(&["isolation", &bootstrap(), &output, "50"]).await;
    running.shutdown().await.expect("shutdown");
    let read = |level: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|line| line.trim().strip_prefix(level))
            .filter_map(|rest| rest.strip_prefix(' '))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        read("read_committed"),
        ["10", "20", "30", "40", "50"],
        "{stdout}"
    );
    assert_eq!(
        read("read_uncommitted"),
        ["-1", "10", "20", "30", "40", "50"],
        "{stdout}"
    );
}
