// Topics from constants, expressions and environment variables (read at registration).
#![deny(warnings)]
use faststream::{publisher, subscriber};

const ORDERS_TOPIC: &str = "orders";

mod topics {
    pub const AUDIT: &str = "audit";
}

#[subscriber(ORDERS_TOPIC, concat!("eu-", "orders"), env = "UI_REFUNDS_TOPIC", default = "refunds")]
#[publisher(topics::AUDIT)]
#[publisher(env = "UI_OUT_TOPIC", default = "out")]
async fn handle(n: i64) -> i64 {
    n
}

#[subscriber(env = "UI_ONLY_ENV_TOPIC", default = "fallback")]
async fn only_env(_body: String) {}

fn main() {
    let config = handle::config();
    assert_eq!(config.backend.topics, ["orders", "eu-orders", "refunds"]);
    let publishers: Vec<&str> = config.publishers.iter().map(|p| &*p.topic).collect();
    assert_eq!(publishers, ["audit", "out"]);
    std::env::set_var("UI_REFUNDS_TOPIC", "refunds-v2");
    std::env::set_var("UI_OUT_TOPIC", "out-v2");
    let config = handle::config();
    assert_eq!(config.backend.topics, ["orders", "eu-orders", "refunds-v2"]);
    assert_eq!(&*config.publishers[1].topic, "out-v2");
    assert_eq!(only_env::config().backend.topics, ["fallback"]);
}
