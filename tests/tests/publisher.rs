//! Publisher objects on a real Kafka broker: defaults, publish layers, use from a handler and
//! from outside, the AsyncAPI channel, and the error of one never registered.

use faststream::asyncapi::AsyncApiVersion;
use faststream::kafka::KafkaBroker;
use faststream::tower::util::MapRequestLayer;
use faststream::{FastStream, Publisher, Record, State, SubscriberConfig};
use faststream_integration_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_object_publishes_with_its_defaults_from_a_handler_and_from_outside() {
    let (input, audit) = (unique("pub-in"), unique("pub-audit"));
    create_topic(&input, 1).await;
    create_topic(&audit, 1).await;
    logs();
    let audit_publisher = Publisher::to(audit.as_str())
        .key("billing")
        .header("source", "billing");
    let app = FastStream::new(KafkaBroker::new(bootstrap()))
        .publish_layer(MapRequestLayer::new(|record: Record| {
            record.header("x-layer", "yes")
        }))
        .with_publisher(&audit_publisher)
        .with_state(audit_publisher.clone())
        .subscriber(
            SubscriberConfig::new("bill", [input.as_str()]).group_id(unique("g").as_str()),
            |audit: State<Publisher>, order: i64| async move {
                audit.publish(&format!("billed {order}")).await.map(|_| ())
            },
        );
    let document = app.asyncapi(AsyncApiVersion::V3_0_0);
    assert_eq!(
        document["channels"][format!("{audit}:Publisher")]["address"],
        audit.as_str(),
        "documented like a #[publisher]"
    );
    let running = app.start().await.expect("app starts");
    produce(&input, [Input::new("7")]).await;
    let delivered = audit_publisher
        .publish_record(Record::new("another-topic", "by hand").key("own-key"))
        .await
        .expect("published from outside");
    assert_eq!(&*delivered.topic, audit.as_str(), "always its own topic");
    let mut out = collect(&audit, 2, WAIT);
    running.shutdown().await.expect("shutdown");
    out.sort_by(|a, b| a.payload.cmp(&b.payload));
    assert_eq!(
        out.iter().map(|o| o.payload.as_str()).collect::<Vec<_>>(),
        ["billed 7", "by hand"]
    );
    assert_eq!(out[0].key.as_deref(), Some("billing"), "the default key");
    assert_eq!(
        out[1].key.as_deref(),
        Some("own-key"),
        "a record's own key wins"
    );
    for record in &out {
        assert_eq!(
            record.headers.get("source").map(String::as_str),
            Some("billing")
        );
        assert_eq!(
            record.headers.get("x-layer").map(String::as_str),
            Some("yes"),
            "the app's publish layers apply"
        );
        assert!(record.headers.contains_key("correlation_id"));
    }
}

#[tokio::test]
async fn a_publisher_never_registered_says_so() {
    let err = Publisher::to("nowhere")
        .publish(&1)
        .await
        .expect_err("not bound");
    let text = err.to_string();
    assert!(
        text.contains("`nowhere`") && text.contains("with_publisher"),
        "{text}"
    );
}
