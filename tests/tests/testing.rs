//! The in-memory `TestBroker`: the same apps, the same runtime, no Kafka; and the tests that
//! run in both modes (in memory, and on the real broker).

use faststream::testing::TestBroker;
use faststream::{publisher, subscriber, Broker, FastStream};
use serde_json::json;

#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

/// The seed app, on any broker: `main` would run `app(KafkaBroker::new(..))`.
fn app<B: Broker>(broker: B) -> FastStream<B> {
    FastStream::new(broker).include(handle_msg)
}

#[tokio::test]
async fn seed_example_in_memory() {
    let test = TestBroker::start(app(TestBroker::new())).await.unwrap();
    test.publish(json!({"user": "John", "user_id": 1}), "in-topic")
        .await
        .unwrap();
    test.calls("handle_msg")
        .assert_called_once_with(json!({"user": "John", "user_id": 1}))
        .await;
    let out = test
        .published("out-topic")
        .assert_one("User: 1 - John registered")
        .await;
    assert_eq!(out.headers.get_str("content-type"), Some("text/plain"));
    test.shutdown().await.unwrap();
}
