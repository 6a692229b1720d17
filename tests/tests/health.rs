//! Health on a real Kafka broker: per-subscriber state, assignment, lag and stuck messages;
//! the HTTP probes; and a fatal client error stopping the app with its cause.

use faststream::http::HttpServer;
use faststream::kafka::KafkaBroker;
use faststream::{
    AppHealth, Backoff, Error, ErrorPolicy, FastStream, HealthProbe, Message, RunningApp, State,
    SubscriberConfig, SubscriberState,
};
use faststream_integration_tests::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(60);

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

/// Waits until the app's health satisfies `condition`, returning that health.
async fn health_until(
    probe: &HealthProbe,
    what: &str,
    condition: impl Fn(&AppHealth) -> bool,
) -> AppHealth {
    let mut last = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let health = probe.health();
        if condition(&health) {
            return health;
        }
        last = Some(health);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}; last health: {last:#?}");
}

/// GET `path` from the health server, off the async runtime.
async fn get(addr: std::net::SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(addr, path))
        .await
        .expect("probe task")
        .expect("the health server answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_assignment_lag_and_a_stuck_message_over_http() {
    let input = unique("health-in");
    create_topic(&input, 2).await;
    // Each "block" message takes one permit: it waits until the test adds one.
    let gate = Arc::new(Semaphore::new(0));
    let running: RunningApp<KafkaBroker> = FastStream::new(broker())
        .stuck_after(Duration::from_secs(1))
        .with_state(Arc::clone(&gate))
        .subscriber(
            SubscriberConfig::new("watched", [input.as_str()]).group_id(unique("g")),
            |gate: State<Arc<Semaphore>>, body: String| async move {
                if body == "block" {
                    gate.acquire().await.expect("gate open").forget();
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    let probe = running.health_probe();
    let server = HttpServer::new()
        .health(probe.clone())
        .bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("health server listens");
    let addr = server.local_addr();

    let health = health_until(&probe, "both partitions assigned and ready", |h| {
        h.is_ready() && h.subscribers[0].partitions.len() == 2
    })
    .await;
    let watched = &health.subscribers[0];
    assert_eq!(watched.name, "watched");
    assert_eq!(watched.state, SubscriberState::Consuming);
    assert_eq!(
        watched
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect::<Vec<_>>(),
        [(input.as_str(), 0), (input.as_str(), 1)]
    );
    let live = get(addr, "/health/live").await;
    assert_eq!(live.0, 200, "{live:?}");
    let ready = get(addr, "/health/ready").await;
    assert_eq!(ready, (200, "ready\n".to_owned()));

    // Records pile up behind a blocked handler on partition 0: lag shows them (librdkafka's
    // statistics, every second) and the stuck message makes the app not ready.
    produce(
        &input,
        ["\"block\"", "\"x\"", "\"y\"", "\"z\""].map(|p| Input::new(p).partition(0)),
    )
    .await;
    let health = health_until(&probe, "the blocked message to count as stuck", |h| {
        !h.is_ready() && h.subscribers[0].lag >= 3
    })
    .await;
    let watched = &health.subscribers[0];
    assert!(watched.oldest_in_flight >= Duration::from_secs(1));
    assert_eq!(watched.state, SubscriberState::Consuming);
    assert!(
        health
            .not_ready_reasons()
            .iter()
            .any(|r| r.contains("`watched` has a message in flight")),
        "{:?}",
        health.not_ready_reasons()
    );
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("in flight"), "{body}");
    let (status, json) = get(addr, "/health").await;
    assert_eq!(status, 503);
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON health");
    assert_eq!(json["subscribers"][0]["state"], "consuming");
    assert_eq!(
        json["subscribers"][0]["partitions"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Released: everything is handled, lag drops to zero and the app is ready again.
    gate.add_permits(1);
    let health = health_until(&probe, "ready again with no lag", |h| {
        h.is_ready() && h.subscribers[0].lag == 0 && h.subscribers[0].buffered_bytes == 0
    })
    .await;
    assert_eq!(health.subscribers[0].oldest_in_flight, Duration::ZERO);
    server.stop().await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_then_stopped_by_the_policy_is_reported_and_not_ready() {
    let input = unique("health-stop");
    create_topic(&input, 1).await;
    let running = FastStream::new(broker())
        .subscriber(
            SubscriberConfig::new("failing", [input.as_str()])
                .group_id(unique("g"))
                .error_policy(
                    ErrorPolicy::retry(2)
                        .backoff(Backoff {
                            initial: Duration::from_secs(2),
                            max: Duration::from_secs(2),
                        })
                        .jitter(false)
                        .then_stop(),
                ),
            |_: Message| async move { Err::<(), _>(faststream::middleware::BoxError::from("down")) },
        )
        .start()
        .await
        .expect("app starts");
    let probe = running.health_probe();
    health_until(&probe, "ready", AppHealth::is_ready).await;
    produce(&input, [Input::new("\"m\"")]).await;
    let health = health_until(&probe, "retrying", |h| {
        h.subscribers[0].state == SubscriberState::Retrying
    })
    .await;
    assert!(health.is_ready(), "a retry alone keeps the app ready");
    let health = health_until(&probe, "stopped by the policy", |h| {
        h.subscribers[0].state == SubscriberState::Stopped
    })
    .await;
    assert!(health.is_live());
    assert!(!health.is_ready());
    assert!(health
        .not_ready_reasons()
        .contains(&"subscriber `failing` is Stopped".to_owned()));
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_stops_the_app_and_names_the_cause() {
    let input = unique("health-fatal");
    create_topic(&input, 1).await;
    let broker = broker();
    let running = FastStream::new(broker.clone())
        .subscriber(
            SubscriberConfig::new("victim", [input.as_str()]).group_id(unique("g")),
            |_: String| async move {},
        )
        .start()
        .await
        .expect("app starts");
    let probe = running.health_probe();
    health_until(&probe, "ready", AppHealth::is_ready).await;
    // librdkafka's fault injection: the idempotent producer enters a fatal state, as an
    // out-of-sequence or fenced producer would.
    broker
        .inject_fatal_error("injected out-of-sequence for the test")
        .expect("fault injected");
    let outcome = tokio::time::timeout(WAIT, running.run_until_signal())
        .await
        .expect("the app stops by itself");
    match outcome {
        Err(err @ Error::Fatal { .. }) => {
            assert_eq!(err.class(), faststream::ErrorClass::Fatal);
            let cause = err.to_string();
            assert!(cause.contains("producer"), "{cause}");
            assert!(cause.contains("injected out-of-sequence"), "{cause}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    let health = probe.health();
    assert!(!health.is_live());
    assert!(health.fatal.is_some());
    // The app's command line turns it into exit code 1 with one `error: ...` line.
    let err = faststream::cli::CliError::App(Error::fatal_msg("x"));
    assert_eq!(err.exit_code(), 1);
    assert_eq!(err.to_string(), "fatal broker error: x");
}
