//! Helpers for the integration tests: unique topics on the local broker, a raw rdkafka
//! producer and collector (independent of the framework under test), committed-offset
//! queries, and a log capture to assert error lines.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The broker the tests use (`FASTSTREAM_TEST_KAFKA`, default `127.0.0.1:9092`).
pub fn bootstrap() -> String {
    std::env::var("FASTSTREAM_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A topic name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates `name` with `partitions` partitions and waits until it is usable.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]).await;
}

/// Creates `name` with `partitions` partitions and topic `configs` (e.g. `max.message.bytes`),
/// and waits until it is usable.
pub async fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create(name, partitions, configs, false).await;
}

/// Creates `name` with `partitions` partitions unless it exists (for the fixed topics of the
/// Python apps the import tests translate), and waits until it is usable.
pub async fn ensure_topic(name: &str, partitions: i32) {
    create(name, partitions, &[], true).await;
}

async fn create(name: &str, partitions: i32, configs: &[(&str, &str)], existing_ok: bool) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        )
        .await
        .expect("create_topics request");
    for result in results {
        match result {
            Ok(_) => {}
            // An earlier run, another test binary or another engineer created it.
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) if existing_ok => {}
            Err((topic, code)) => panic!("topic {topic} not created: {code}"),
        }
    }
    // Wait until metadata shows every partition with a leader.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("probe");
    wait_until(Duration::from_secs(20), "topic metadata", || {
        probe
            .fetch_metadata(Some(name), Duration::from_secs(2))
            .ok()
            .and_then(|m| {
                m.topics().first().map(|t| {
                    let count = t.partitions().len() as i32;
                    t.error().is_none() && (count == partitions || existing_ok && count > 0)
                })
            })
            .unwrap_or(false)
    });
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async version of [`wait_until`].
pub async fn wait_for(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain rdkafka producer for test input.
pub fn raw_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "2")
        .create()
        .expect("producer")
}

/// One record of test input.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Partition.
    pub partition: Option<i32>,
}

impl Input {
    /// A record with this payload.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }
    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Produces `inputs` to `topic` in order and waits for every acknowledgement.
pub async fn produce(topic: &str, inputs: impl IntoIterator<Item = Input>) {
    let producer = raw_producer();
    let mut deliveries = Vec::new();
    for input in inputs {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &input.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .payload(&input.payload[..])
            .headers(headers);
        if let Some(key) = &input.key {
            record = record.key(&key[..]);
        }
        if let Some(partition) = input.partition {
            record = record.partition(partition);
        }
        // Await each enqueue's acknowledgement only at the end, so input is produced fast.
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((err, _)) => panic!("enqueue failed: {err}"),
        }
    }
    for delivery in deliveries {
        delivery.await.expect("delivery").expect("acknowledged");
    }
}

/// A consumed output record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Payload as text (lossy).
    pub payload: String,
    /// Key as text.
    pub key: Option<String>,
    /// Headers as text.
    pub headers: HashMap<String, String>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Reads `topic` from the beginning with a plain rdkafka consumer until `count` records
/// arrived or `timeout` passed; returns what arrived.
pub fn collect(topic: &str, count: usize, timeout: Duration) -> Vec<Output> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("collector"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("collector");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Output {
                payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
                partition: m.partition(),
                offset: m.offset(),
            });
        }
    }
    out
}

/// The committed offset of `group` on each of `topic`'s `partitions` (-1 when none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// Log lines written through `tracing` by the process, for asserting error lines.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// The lines captured so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for LogCapture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        std::io::stderr().write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global `tracing` subscriber that also captures lines.
pub fn logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "info,librdkafka=warn,rdkafka=warn",
                ))
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            capture
        })
        .clone()
}

/// The Python of a venv with FastStream 0.7.8 from PyPI (`faststream[kafka,otel,cli]`, the
/// OpenTelemetry SDK), in `target/python-interop/venv`, created and installed on first use.
/// Test binaries running at once take turns through a lock file, so one of them installs.
pub fn python() -> &'static std::path::PathBuf {
    static PYTHON: OnceLock<std::path::PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        use std::process::Command;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .join("target/python-interop");
        std::fs::create_dir_all(&root).expect("target/python-interop");
        let lock = std::fs::File::create(root.join(".lock")).expect("lock file");
        // SAFETY: flock(2) on a descriptor we own; released when `lock` is dropped.
        let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(locked, 0, "locking the venv");
        let venv = root.join("venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3");
            assert!(status.success(), "creating the venv failed");
        }
        // Named after what it holds: a venv from before the CLI extra gets it added.
        let marker = venv.join(".installed-otel-cli");
        if !marker.exists() {
            let status = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "faststream[kafka,otel,cli]==0.7.8",
                    "opentelemetry-sdk==1.45.2",
                ])
                .status()
                .expect("pip");
            assert!(status.success(), "installing FastStream from PyPI failed");
            std::fs::write(&marker, "ok").expect("marker");
        }
        drop(lock);
        python
    })
}

/// The Python of [`python`]'s venv with Confluent's schema registry serializers added
/// (`confluent-kafka[avro,json,protobuf,schemaregistry]` from PyPI), installed on first use
/// under the same lock.
pub fn python_with_registry_serializers() -> &'static std::path::PathBuf {
    static PYTHON: OnceLock<std::path::PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = python();
        let venv = python.parent().and_then(|bin| bin.parent()).expect("venv");
        let lock = std::fs::File::create(venv.join("../.lock")).expect("lock file");
        // SAFETY: flock(2) on a descriptor we own; released when `lock` is dropped.
        let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(locked, 0, "locking the venv");
        let marker = venv.join(".installed-registry-serializers-protobuf");
        if !marker.exists() {
            let status = std::process::Command::new(python)
                .args(["-m", "pip", "install", "-q"])
                .arg("confluent-kafka[avro,json,protobuf,schemaregistry]==2.16.1")
                .status()
                .expect("pip");
            assert!(
                status.success(),
                "installing confluent-kafka from PyPI failed"
            );
            std::fs::write(&marker, "ok").expect("marker");
        }
        drop(lock);
        python.clone()
    })
}

/// Sum of the high watermarks (records written) over `topic`'s `partitions`.
pub fn records_in(topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("watermark reader");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// A plain HTTP/1.0 GET of `path` on `addr`: the status code and the body; `None` while
/// nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// A child process (an app under test) killed and reaped when dropped, so that a failing test
/// leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The local broker's secured listeners (started by `scripts/kafka-local.sh`), for the
/// security tests. Addresses come from environment variables whose defaults match the script.
pub mod secure {
    use std::path::PathBuf;

    /// A listener address from `var`, else `default`; panics, saying how to restart the
    /// broker, when nothing answers there.
    fn listener(var: &str, default: &str, what: &str) -> String {
        let addr = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        let reachable = addr
            .parse::<std::net::SocketAddr>()
            .ok()
            .and_then(|sock| {
                std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2)).ok()
            })
            .is_some();
        assert!(
            reachable,
            "no {what} listener answers on {addr} ({var}): the local broker was started without \
             it (KAFKA_SECURE=0, or by an older scripts/kafka-local.sh). Restart it with \
             `scripts/kafka-local.sh stop && scripts/kafka-local.sh start` (KAFKA_SECURE=1 is the \
             default), or point {var} at one"
        );
        addr
    }

    /// The SSL listener (`FASTSTREAM_TEST_KAFKA_SSL`, default `127.0.0.1:9094`).
    pub fn ssl() -> String {
        listener("FASTSTREAM_TEST_KAFKA_SSL", "127.0.0.1:9094", "SSL")
    }

    /// The SASL_SSL listener with SCRAM-SHA-512 (`FASTSTREAM_TEST_KAFKA_SASL_SSL`, default
    /// `127.0.0.1:9095`).
    pub fn sasl_ssl() -> String {
        listener(
            "FASTSTREAM_TEST_KAFKA_SASL_SSL",
            "127.0.0.1:9095",
            "SASL_SSL",
        )
    }

    /// The SASL_PLAINTEXT listener with PLAIN and OAUTHBEARER
    /// (`FASTSTREAM_TEST_KAFKA_SASL_PLAINTEXT`, default `127.0.0.1:9096`).
    pub fn sasl_plaintext() -> String {
        listener(
            "FASTSTREAM_TEST_KAFKA_SASL_PLAINTEXT",
            "127.0.0.1:9096",
            "SASL_PLAINTEXT",
        )
    }

    /// The SASL_PLAINTEXT listener with GSSAPI (Kerberos) and SCRAM-SHA-256
    /// (`FASTSTREAM_TEST_KAFKA_KERBEROS`, default `127.0.0.1:9097`).
    pub fn kerberos() -> String {
        listener(
            "FASTSTREAM_TEST_KAFKA_KERBEROS",
            "127.0.0.1:9097",
            "Kerberos (GSSAPI and SCRAM-SHA-256)",
        )
    }

    /// The files of the broker the script started: `FASTSTREAM_KAFKA_HOME`, default
    /// `target/kafka-local` in the repository.
    fn home() -> PathBuf {
        std::env::var_os("FASTSTREAM_KAFKA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/kafka-local")
            })
    }

    /// Where the script put its CA and certificates: `home()/tls`.
    pub fn tls_dir() -> PathBuf {
        home().join("tls")
    }

    /// `path`, a file the script generates; panics, saying how to make it, when it is missing.
    fn generated(path: PathBuf) -> PathBuf {
        assert!(
            path.is_file(),
            "no {} (FASTSTREAM_KAFKA_HOME, FASTSTREAM_TEST_KAFKA_CA): start the broker with \
             scripts/kafka-local.sh, which generates it (a broker an older script started: \
             `scripts/kafka-local.sh stop && scripts/kafka-local.sh start`)",
            path.display()
        );
        path
    }

    /// The Kerberos client configuration of the script's KDC (`home()/kerberos/krb5.conf`), for
    /// `KRB5_CONFIG`.
    pub fn krb5_conf() -> PathBuf {
        generated(home().join("kerberos/krb5.conf"))
    }

    /// The keytab of [`KERBEROS_PRINCIPAL`] (`home()/kerberos/alice.keytab`).
    pub fn client_keytab() -> PathBuf {
        generated(home().join("kerberos/alice.keytab"))
    }

    /// The client principal the script's KDC knows.
    pub const KERBEROS_PRINCIPAL: &str = "alice@FASTSTREAM.TEST";
    /// The Kerberos service name of the broker (its principal is `kafka/127.0.0.1@...`).
    pub const KERBEROS_SERVICE: &str = "kafka";

    /// The CA that signed the broker's certificate (`FASTSTREAM_TEST_KAFKA_CA`, default
    /// `tls_dir()/ca.pem`).
    pub fn ca_file() -> PathBuf {
        generated(
            std::env::var_os("FASTSTREAM_TEST_KAFKA_CA")
                .map(PathBuf::from)
                .unwrap_or_else(|| tls_dir().join("ca.pem")),
        )
    }

    /// The SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN user the script creates.
    pub const USER: &str = "alice";
    /// Its password.
    pub const PASSWORD: &str = "alice-secret";
}

/// The TestBroker on the local Kafka, for tests that run one body in both modes.
pub fn on_kafka() -> faststream::testing::TestBroker {
    logs();
    faststream::testing::TestBroker::real(bootstrap())
}

/// Retries fast: 10 ms doubling to 50 ms.
pub fn fast_backoff() -> faststream::Backoff {
    faststream::Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
    }
}

/// Defines `$memory` and `$kafka` tests running `$body(broker)`: on a fresh in-memory
/// `TestBroker`, and on the local Kafka ([`on_kafka`]).
#[macro_export]
macro_rules! both_modes {
    ($memory:ident, $kafka:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $memory() {
            $body(::faststream::testing::TestBroker::new()).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $kafka() {
            $body($crate::on_kafka()).await;
        }
    };
}
