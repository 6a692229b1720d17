//! The middleware seam on a real Kafka broker: the three layers of `examples/middleware.rs`,
//! layer order, per-subscriber layers and the per-message timeout.

#[path = "../../examples/middleware.rs"]
#[allow(dead_code)]
mod example;

use faststream::kafka::KafkaBroker;
use faststream::middleware::{BoxError, HandlerPanicked, HandlerTimedOut};
use faststream::tower::util::MapResultLayer;
use faststream::{AckPolicy, FastStream, Reply, SubscriberConfig};
use faststream_integration_tests::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn broker() -> KafkaBroker {
    logs();
    KafkaBroker::new(bootstrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_example_layers_time_add_a_header_and_map_errors() {
    let (input, output) = (unique("mw-in"), unique("mw-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let timing = example::Timing::default();
    let running = example::app(broker(), &input, &output, timing.clone())
        .start()
        .await
        .expect("app starts");
    produce(
        &input,
        [
            Input::new(r#"{"user": "John", "user_id": 1}"#),
            Input::new(r#"{"user": "Ghost", "user_id": -1}"#),
            Input::new(r#"{"user": 7}"#),
            Input::new(r#"{"user": "Ann", "user_id": 2}"#),
        ],
    )
    .await;
    let out = collect(&output, 3, WAIT);
    running.shutdown().await.expect("shutdown");
    let payloads: Vec<_> = out.iter().map(|o| o.payload.as_str()).collect();
    // The error-mapping layer turned UnknownUser into a reply; the bad payload stays a failure.
    assert_eq!(
        payloads,
        [
            "User: 1 - John registered",
            "User: -1 unknown",
            "User: 2 - Ann registered"
        ]
    );
    // The publish layer added the header to every record, next to the wire headers.
    for record in &out {
        assert_eq!(
            record.headers.get("x-service").map(String::as_str),
            Some("users")
        );
        assert!(record.headers.contains_key("correlation_id"));
    }
    // The timing layer (outermost) saw every message, and the mapped error as a success.
    assert_eq!(timing.stats.handled.load(Ordering::SeqCst), 3);
    assert_eq!(timing.stats.failed.load(Ordering::SeqCst), 1);
    assert!(timing.stats.micros.load(Ordering::SeqCst) > 0);
}

/// Records which layers saw a message, outermost first.
fn tag(
    name: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
) -> impl Fn(Result<Reply, BoxError>) -> Result<Reply, BoxError> + Clone {
    move |outcome| {
        let what = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(err) if err.is::<HandlerPanicked>() => "panicked".to_owned(),
            Err(err) if err.is::<HandlerTimedOut>() => "timed out".to_owned(),
            Err(err) => format!("error: {err}"),
        };
        seen.lock().unwrap().push(format!("{name}: {what}"));
        outcome
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_layers_wrap_subscriber_layers_and_see_panics_and_timeouts() {
    let input = unique("mw-order");
    create_topic(&input, 1).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let group = unique("g");
    let running = FastStream::new(broker())
        .layer(MapResultLayer::new(tag("app", Arc::clone(&seen))))
        .subscriber(
            SubscriberConfig::new("layered", [input.as_str()])
                .group_id(group.as_str())
                .ack_policy(AckPolicy::AckAfter)
                .handler_timeout(Duration::from_millis(300))
                .layer(MapResultLayer::new(tag("subscriber", Arc::clone(&seen)))),
            |text: String| async move {
                match text.as_str() {
                    "panic" => panic!("asked to"),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(())
                    }
                    "fail" => Err(std::io::Error::other("asked to fail")),
                    _ => Ok(()),
                }
            },
        )
        .start()
        .await
        .expect("app starts");
    produce(&input, ["fine", "panic", "slow", "fail"].map(Input::new)).await;
    wait_for(WAIT, "four messages through both layers", || {
        seen.lock().unwrap().len() == 8
    })
    .await;
    running.shutdown().await.expect("shutdown");
    let seen = seen.lock().unwrap().clone();
    // Map-result layers see the outcome on the way out: the inner (subscriber) one first.
    assert_eq!(
        seen,
        [
            "subscriber: ok",
            "app: ok",
            "subscriber: panicked",
            "app: panicked",
            "subscriber: timed out",
            "app: timed out",
            "subscriber: error: asked to fail",
            "app: error: asked to fail",
        ]
    );
    // Every failure was handled by the ack policy (AckAfter): all four are committed.
    wait_for(WAIT, "offsets committed", || {
        committed(&group, &input, 1) == [4]
    })
    .await;
}
