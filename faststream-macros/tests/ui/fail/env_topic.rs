use faststream::{publisher, subscriber};

const VAR: &str = "ORDERS_TOPIC";

// `env` names the variable with a string literal.
#[subscriber(env = VAR, default = "orders")]
async fn not_a_literal(_body: String) {}

// Without a default the topic would be unknown when the variable is unset.
#[subscriber(env = "ORDERS_TOPIC")]
async fn no_default(_body: String) {}

// A default needs a variable.
#[subscriber("orders", default = "orders")]
async fn default_alone(_body: String) {}

// A publisher has exactly one topic.
#[subscriber("in")]
#[publisher("out", env = "OUT_TOPIC", default = "out")]
async fn two_publisher_topics(_body: String) {}

// Topics are strings.
#[subscriber(42)]
async fn number(_body: String) {}

fn main() {}
