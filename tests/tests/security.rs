//! Secured clusters on the real broker: the seed example through each secured listener of
//! `scripts/kafka-local.sh` (SSL, SASL_SSL with SCRAM-SHA-512, SASL_PLAINTEXT with PLAIN, with
//! OAUTHBEARER, with SCRAM-SHA-256 and with GSSAPI against the script's MIT Kerberos KDC),
//! startup failures that end the process with one error line naming the cause, and every
//! compression codec round-tripping.

use faststream::kafka::{KafkaBroker, OAuthToken, Security, Tls};
use faststream::SubscriberConfig;
use faststream::{publisher, subscriber, Broker, FastStream, IntoSubscriber, Record, Registry};
use faststream_integration_tests::secure::{self, PASSWORD, USER};
use faststream_integration_tests::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

/// Registers the macro's subscriber on this test's own topics and group.
struct OwnTopics<'a, B: faststream::Broker> {
    app: &'a mut FastStream<B>,
    input: String,
    output: String,
    group: String,
}

impl<B: faststream::Broker> Registry for OwnTopics<'_, B> {
    fn add_subscriber<H, T>(&mut self, mut config: SubscriberConfig, handler: H)
    where
        H: faststream::Handler<T>,
        T: Send + 'static,
    {
        config.backend.topics = vec![self.input.clone()];
        for publisher in &mut config.publishers {
            publisher.topic = self.output.clone().into();
        }
        config.backend.group_id = Some(self.group.clone());
        self.app.add_subscriber(config, handler);
    }
}

/// The seed example with `broker` (its consumer and producer on the secured listener): a
/// message published through the same broker comes out on the output topic, and a request
/// through it (reply topic created by its admin client, read by its reader) gets the reply.
async fn seed_through(broker: KafkaBroker, name: &str) {
    logs();
    let (input, output) = (
        unique(&format!("{name}-in")),
        unique(&format!("{name}-out")),
    );
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let mut app = FastStream::new(broker.clone());
    handle_msg.register(&mut OwnTopics {
        app: &mut app,
        input: input.clone(),
        output: output.clone(),
        group: unique(&format!("{name}-g")),
    });
    let app = app
        .start()
        .await
        .expect("the app starts on the secured listener");
    let sent = broker
        .publish(
            serde_json::json!({"user": "John", "user_id": 1}),
            input.as_str(),
        )
        .await
        .expect("published through the secured listener");
    assert_eq!(sent.offset, 0);
    let reply: String = broker
        .request_as(
            Record::encode(
                input.as_str(),
                &serde_json::json!({"user": "Ann", "user_id": 2}),
            )
            .expect("encode"),
            Duration::from_secs(60),
        )
        .await
        .expect("a reply through the secured listener");
    assert_eq!(reply, "User: 2 - Ann registered");
    let out = collect(&output, 2, Duration::from_secs(60));
    app.shutdown().await.expect("shutdown");
    let payloads: Vec<&str> = out.iter().map(|o| o.payload.as_str()).collect();
    assert_eq!(
        payloads,
        ["User: 1 - John registered", "User: 2 - Ann registered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_ssl_with_a_client_certificate() {
    let dir = secure::tls_dir();
    let tls = Tls::new()
        .ca_file(secure::ca_file())
        .client_cert_files(dir.join("client.pem"), dir.join("client.key"));
    let broker = KafkaBroker::new(secure::ssl()).security(Security::ssl(tls));
    seed_through(broker, "sec-ssl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_sasl_ssl_with_scram_sha_512() {
    let security =
        Security::scram512(USER, PASSWORD).with_ssl(Tls::new().ca_file(secure::ca_file()));
    let broker = KafkaBroker::new(secure::sasl_ssl()).security(security);
    seed_through(broker, "sec-scram").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_sasl_plaintext_with_plain() {
    let broker =
        KafkaBroker::new(secure::sasl_plaintext()).security(Security::plain(USER, PASSWORD));
    seed_through(broker, "sec-plain").await;
}

/// SCRAM-SHA-256 is accepted where a listener enables it (the Kerberos listener does; the
/// SASL_SSL one refuses it, below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_sasl_plaintext_with_scram_sha_256() {
    let broker = KafkaBroker::new(secure::kerberos()).security(Security::scram256(USER, PASSWORD));
    seed_through(broker, "sec-scram256").await;
}

/// RFC 4648 base64url without padding, as JWTs use.
fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// An unsecured JWT (`alg: none`) for `subject`, valid for an hour: what the broker's default
/// (test-only) OAUTHBEARER validator accepts.
fn unsecured_jwt(subject: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let header = base64url(br#"{"alg":"none"}"#);
    let claims =
        base64url(format!(r#"{{"sub":"{subject}","iat":{now},"exp":{}}}"#, now + 3600).as_bytes());
    format!("{header}.{claims}.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_sasl_plaintext_with_oauthbearer_tokens_from_a_provider() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let provider = move || -> Result<OAuthToken, std::io::Error> {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(OAuthToken::new(
            unsecured_jwt(USER),
            USER,
            Duration::from_secs(3600),
        ))
    };
    let broker =
        KafkaBroker::new(secure::sasl_plaintext()).security(Security::oauthbearer(provider));
    seed_through(broker, "sec-oauth").await;
    // The producer, the subscriber's consumer, the admin client and the reply reader each
    // asked for a token.
    let calls = calls.load(Ordering::SeqCst);
    assert!(calls >= 4, "the token provider was called {calls} times");
}

/// The `secure_app` binary (the seed example) consuming `input` and publishing to `output`,
/// configured by `env`, its logs at their default level.
fn secure_app(input: &str, output: &str, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_secure_app"));
    command
        .env("APP_IN", input)
        .env("APP_OUT", output)
        .env("APP_GROUP", unique("sec-app-g"))
        .env_remove("FASTSTREAM_LOG")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs the `secure_app` binary with `env` and expects it to fail at startup: exit code 1
/// within 30 s, and exactly one error line, which contains every one of `causes`.
fn expect_startup_failure(env: &[(&str, String)], causes: &[&str]) {
    let started = Instant::now();
    let mut child = secure_app(&unique("sec-fail-in"), &unique("sec-fail-out"), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secure_app starts");
    let deadline = started + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "the app still runs after 30 s; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("secure_app stderr ({:?}):\n{stderr}", started.elapsed());
    assert_eq!(status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(!stderr.contains("secure_app: started"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR") || line.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line; stderr:\n{stderr}");
    for cause in causes {
        assert!(
            errors[0].contains(cause),
            "the error line names `{cause}`: {}",
            errors[0]
        );
    }
    assert!(
        !stderr.contains("wrong-secret"),
        "the password is never shown"
    );
}

/// Runs the app with `mechanism` on `bootstrap` (and the `tls` settings) as alice with a wrong
/// password, and expects one error line naming the refusal and the mechanism.
fn expect_wrong_password_refused(mechanism: &str, bootstrap: String, tls: &[(&str, String)]) {
    let mut env = vec![
        ("SECURE_BOOTSTRAP", bootstrap),
        ("SECURE_MECHANISM", mechanism.to_owned()),
        ("SECURE_USER", USER.to_owned()),
        ("SECURE_PASSWORD", "wrong-secret".to_owned()),
    ];
    env.extend_from_slice(tls);
    expect_startup_failure(
        &env,
        &["authentication failed", "invalid credentials", mechanism],
    );
}

#[test]
fn a_wrong_password_ends_startup_with_one_error_line() {
    let tls = [
        ("SECURE_TLS", "1".to_owned()),
        ("SECURE_CA", secure::ca_file().display().to_string()),
    ];
    expect_wrong_password_refused("SCRAM-SHA-512", secure::sasl_ssl(), &tls);
}

#[test]
fn a_wrong_scram_sha_256_password_ends_startup_with_one_error_line() {
    expect_wrong_password_refused("SCRAM-SHA-256", secure::kerberos(), &[]);
}

/// A Kerberos client's environment for a child process: the script's KDC (`KRB5_CONFIG`) and a
/// credential cache of its own (`KRB5CCNAME`, removed on drop), so that tests running at the
/// same time never share tickets.
struct Kerberos {
    cache: PathBuf,
}

impl Kerberos {
    fn new() -> Self {
        Self {
            cache: std::env::temp_dir().join(unique("faststream-krb5cc")),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KRB5_CONFIG", secure::krb5_conf().display().to_string()),
            ("KRB5CCNAME", format!("FILE:{}", self.cache.display())),
        ]
    }

    /// The app's settings for GSSAPI on the Kerberos listener, asking for `service`'s ticket,
    /// in this environment (the credentials are the caller's to add).
    fn app_env(&self, service: &str) -> Vec<(&'static str, String)> {
        // The listener first: a broker without it fails here, saying how to restart it.
        let mut env = vec![
            ("SECURE_BOOTSTRAP", secure::kerberos()),
            ("SECURE_MECHANISM", "GSSAPI".to_owned()),
            ("SECURE_KERBEROS_SERVICE", service.to_owned()),
        ];
        env.extend(self.env());
        env
    }

    /// Runs MIT's `program` (`kinit`, `klist`) with `args` in this environment: its stdout, or
    /// a panic with its stderr.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = Command::new(program)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap_or_else(|err| panic!("{program} (MIT Kerberos' krb5-user) runs: {err}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The principals of the tickets in the credential cache.
    fn tickets(&self) -> String {
        self.run("klist", &[])
    }
}

impl Drop for Kerberos {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cache);
    }
}

/// The seed example (`secure_app`) with GSSAPI on the Kerberos listener, `login` saying where
/// its Kerberos credentials come from: two users published before it starts come out
/// registered, which its consumer and its producer did through the listener; the credential
/// cache then holds the broker's service ticket.
async fn seed_over_gssapi(kerberos: &Kerberos, login: &[(&str, String)]) {
    let (input, output) = (unique("sec-gssapi-in"), unique("sec-gssapi-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    produce(
        &input,
        [
            Input::new(r#"{"user": "John", "user_id": 1}"#),
            Input::new(r#"{"user": "Ann", "user_id": 2}"#),
        ],
    )
    .await;
    let mut env = kerberos.app_env(secure::KERBEROS_SERVICE);
    env.extend(login.iter().cloned());
    let log = std::env::temp_dir().join(unique("secure-app-gssapi.log"));
    let app = KillOnDrop(
        secure_app(&input, &output, &env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("secure_app starts"),
    );
    let out = collect(&output, 2, Duration::from_secs(60));
    drop(app);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let payloads: Vec<&str> = out.iter().map(|o| o.payload.as_str()).collect();
    assert_eq!(
        payloads,
        ["User: 1 - John registered", "User: 2 - Ann registered"],
        "the app's log:\n{logged}"
    );
    let tickets = kerberos.tickets();
    assert!(
        tickets.contains(&format!(
            "{}/127.0.0.1@FASTSTREAM.TEST",
            secure::KERBEROS_SERVICE
        )),
        "the broker's service ticket is in the cache: {tickets}"
    );
}

/// The app's settings to log in as alice from her keytab: librdkafka runs
/// `kinit -t KEYTAB -k PRINCIPAL` into the credential cache.
fn keytab_login() -> [(&'static str, String); 2] {
    [
        (
            "SECURE_KERBEROS_PRINCIPAL",
            secure::KERBEROS_PRINCIPAL.to_owned(),
        ),
        (
            "SECURE_KERBEROS_KEYTAB",
            secure::client_keytab().display().to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_gssapi_logging_in_from_a_keytab() {
    seed_over_gssapi(&Kerberos::new(), &keytab_login()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_over_gssapi_with_a_ticket_from_kinit() {
    let kerberos = Kerberos::new();
    // The ticket comes from a `kinit` outside the app, as a sidecar would get it.
    let keytab = secure::client_keytab().display().to_string();
    kerberos.run("kinit", &["-k", "-t", &keytab, secure::KERBEROS_PRINCIPAL]);
    assert!(
        !kerberos.tickets().contains("kafka/"),
        "no service ticket yet"
    );
    seed_over_gssapi(&kerberos, &[]).await;
}

#[test]
fn gssapi_without_a_kerberos_ticket_ends_startup_with_one_error_line() {
    // An empty credential cache and no keytab: the client has nothing to authenticate with.
    let kerberos = Kerberos::new();
    expect_startup_failure(
        &kerberos.app_env(secure::KERBEROS_SERVICE),
        &[
            "authentication failed",
            "GSSAPI Error",
            "No Kerberos credentials available",
        ],
    );
}

#[test]
fn a_service_name_the_kdc_does_not_know_ends_startup_with_one_error_line() {
    // Logged in, but asking for the ticket of a service the broker is not.
    let kerberos = Kerberos::new();
    let mut env = kerberos.app_env("kafka-wrong");
    env.extend(keytab_login());
    expect_startup_failure(
        &env,
        &[
            "authentication failed",
            "kafka-wrong/127.0.0.1@FASTSTREAM.TEST not found in Kerberos database",
        ],
    );
}

#[test]
fn an_untrusted_ca_ends_startup_with_one_error_line() {
    // The system's trust store does not know the local CA.
    expect_startup_failure(
        &[
            ("SECURE_BOOTSTRAP", secure::ssl()),
            ("SECURE_TLS", "1".into()),
        ],
        &["TLS handshake failed", "certificate verify failed"],
    );
}

#[test]
fn a_mechanism_the_listener_does_not_enable_ends_startup_with_one_error_line() {
    // The SASL_SSL listener enables SCRAM-SHA-512 only.
    expect_startup_failure(
        &[
            ("SECURE_BOOTSTRAP", secure::sasl_ssl()),
            ("SECURE_MECHANISM", "SCRAM-SHA-256".into()),
            ("SECURE_USER", USER.into()),
            ("SECURE_PASSWORD", "wrong-secret".into()),
            ("SECURE_TLS", "1".into()),
            ("SECURE_CA", secure::ca_file().display().to_string()),
        ],
        &["Unsupported SASL mechanism", "SCRAM-SHA-256"],
    );
}

/// Both topics refuse batches over this size, so the 200 kB record below only gets through
/// compressed: a codec silently left out would fail the test.
const MAX_BATCH: &str = "65536";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    logs();
    // Repetitive records, a 200 kB one (over the topics' batch limit uncompressed) and a
    // pseudo-random one that compresses poorly.
    let mut payloads: Vec<String> = (0..50)
        .map(|i| format!("record {i} {}", "abc".repeat(i * 20)))
        .collect();
    payloads.push("x".repeat(200_000));
    payloads.push(
        (0..8_000u32)
            .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
            .collect(),
    );
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let (input, output) = (
            unique(&format!("codec-{codec}-in")),
            unique(&format!("codec-{codec}-out")),
        );
        create_topic_with(&input, 1, &[("max.message.bytes", MAX_BATCH)]).await;
        create_topic_with(&output, 1, &[("max.message.bytes", MAX_BATCH)]).await;
        // The app's producer compresses both the input published here and its own output.
        let broker = KafkaBroker::new(bootstrap()).producer_set("compression.type", codec);
        let config = SubscriberConfig::new("codec", [input.clone()])
            .group_id(unique("codec-g"))
            .publish_to(output.clone());
        let app = FastStream::new(broker.clone())
            .subscriber(config, |body: String| async move { body })
            .start()
            .await
            .unwrap_or_else(|err| panic!("the app starts with {codec}: {err}"));
        let sends = payloads
            .iter()
            .map(|payload| broker.publish_record(Record::new(input.as_str(), payload.clone())));
        for (i, sent) in futures::future::join_all(sends)
            .await
            .into_iter()
            .enumerate()
        {
            if let Err(err) = sent {
                panic!("{codec}: record {i} refused: {err}");
            }
        }
        let out = collect(&output, payloads.len(), Duration::from_secs(60));
        app.shutdown().await.expect("shutdown");
        let got: Vec<&str> = out.iter().map(|o| o.payload.as_str()).collect();
        let want: Vec<&str> = payloads.iter().map(String::as_str).collect();
        assert!(
            got == want,
            "{codec}: {} records came back, {} of {} equal",
            got.len(),
            got.iter().zip(&want).filter(|(a, b)| a == b).count(),
            want.len()
        );
    }
}

/// The check above has teeth: without compression the same 200 kB record is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncompressed_record_over_the_batch_limit_is_refused() {
    let topic = unique("codec-none");
    create_topic_with(&topic, 1, &[("max.message.bytes", MAX_BATCH)]).await;
    let broker = KafkaBroker::new(bootstrap()).producer_set("compression.type", "none");
    let err = broker
        .publish_record(Record::new(topic.as_str(), "x".repeat(200_000)))
        .await
        .expect_err("refused uncompressed");
    assert!(err.to_string().contains("too large"), "{err}");
}

/// The typed security shows in the AsyncAPI document (no broker needed), without its secrets.
#[test]
fn the_document_describes_the_typed_security() {
    use faststream::asyncapi::AsyncApiVersion;
    let broker = KafkaBroker::new("broker-1:9095,broker-2:9095").security(
        Security::scram512(USER, "doc-pa55").with_ssl(Tls::new().ca_file("/etc/kafka/ca.pem")),
    );
    let app = FastStream::new(broker).include(handle_msg);
    let doc = app.asyncapi(AsyncApiVersion::V3_0_0);
    let server = &doc["servers"]["development"];
    assert_eq!(server["host"], "broker-1:9095,broker-2:9095");
    assert_eq!(server["protocol"], "kafka-secure");
    assert_eq!(
        server["security"][0]["$ref"],
        "#/components/securitySchemes/scram512"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["scram512"]["type"],
        "scramSha512"
    );
    assert!(!doc.to_string().contains("doc-pa55"));
}
