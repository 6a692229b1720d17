//! The seed example, written with the macros, end to end on the real broker.

use faststream::kafka::KafkaBroker;
use faststream::{publisher, subscriber, FastStream, IntoSubscriber, Registry, SubscriberConfig};
use faststream_integration_tests::*;
use std::time::Duration;

#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

#[tokio::test]
async fn handler_stays_a_plain_async_function() {
    assert_eq!(
        handle_msg::call("John".into(), 1).await,
        "User: 1 - John registered"
    );
}

/// Registers subscribers on this test's own topics: the macro's generated registration
/// (payload struct, adapter, publishers) is used as is; only topic names and group change.
struct OwnTopics<'a, B: faststream::Broker> {
    app: &'a mut FastStream<B>,
    renames: Vec<(&'static str, String)>,
    group: String,
}

impl<B: faststream::Broker> Registry for OwnTopics<'_, B> {
    fn add_subscriber<H, T>(&mut self, mut config: SubscriberConfig, handler: H)
    where
        H: faststream::Handler<T>,
        T: Send + 'static,
    {
        let rename = |topic: &str| {
            self.renames
                .iter()
                .find(|(from, _)| *from == topic)
                .map_or(topic.to_owned(), |(_, to)| to.clone())
        };
        config.backend.topics = config.backend.topics.iter().map(|t| rename(t)).collect();
        for publisher in &mut config.publishers {
            publisher.topic = rename(&publisher.topic).into();
        }
        config.backend.group_id = Some(self.group.clone());
        self.app.add_subscriber(config, handler);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_end_to_end() {
    logs();
    let (input, output) = (unique("seed-in"), unique("seed-out"));
    create_topic(&input, 1).await;
    create_topic(&output, 1).await;
    let config = handle_msg::config();
    assert_eq!(config.backend.topics, ["in-topic"]);
    assert_eq!(&*config.publishers[0].topic, "out-topic");

    let mut app = FastStream::new(KafkaBroker::new(bootstrap()));
    handle_msg.register(&mut OwnTopics {
        app: &mut app,
        renames: vec![("in-topic", input.clone()), ("out-topic", output.clone())],
        group: unique("seed-g"),
    });
    let app = app.start().await.expect("app starts");
    produce(&input, [Input::new(r#"{"user": "John", "user_id": 1}"#)]).await;
    let out = collect(&output, 1, Duration::from_secs(60));
    app.shutdown().await.expect("shutdown");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, "User: 1 - John registered");
    assert_eq!(out[0].headers["content-type"], "text/plain");
}
