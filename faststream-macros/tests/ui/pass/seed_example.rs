// The seed example's shape, with every option, checked through a recording registry.
#![deny(warnings)]
use faststream::{publisher, subscriber, Handler, IntoSubscriber, Registry, SubscriberConfig};

#[derive(Default)]
struct Recorder(Vec<SubscriberConfig>);

impl Registry for Recorder {
    fn add_subscriber<H: Handler<T>, T: Send + 'static>(&mut self, config: SubscriberConfig, _: H) {
        self.0.push(config);
    }
}

/// Registers users.
#[subscriber(
    "in-topic",
    group_id = "g1",
    ack_policy = "nack_on_error",
    max_concurrency = 4,
    auto_offset_reset = "latest",
    title = "T",
    include_in_schema = false
)]
#[publisher("out-topic", title = "P", description = "PD", include_in_schema = true)]
#[publisher("audit-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

fn main() {
    let mut recorder = Recorder::default();
    handle_msg.register(&mut recorder);
    let config = &recorder.0[0];
    assert_eq!(config.name, "handle_msg");
    assert_eq!(config.backend.topics, ["in-topic"]);
    assert_eq!(config.effective_group_id(), "g1");
    assert_eq!(config.publishers.len(), 2);
    assert_eq!(config.docs.description.as_deref(), Some("Registers users."));
    assert!(!config.docs.include_in_schema);
}
