//! Routing: the seed example under a router with a prefix, a filtered subscriber with several
//! handlers, routes built from configuration, and policies at router level.
//!
//! `{"user": "John", "user_id": 1}` on `users-in-topic` becomes `User: 1 - John registered` on
//! `users-out-topic`. Order and refund events on `shop-events` are told apart by a header and
//! their payload shape; anything else goes to `shop-events-dlt`.
//!
//! Run with `cargo run --example routing` (Kafka on localhost:9092); `ROUTING_SCALE_TOPIC`
//! renames the input topic of `scale` (read when the app is built).
use faststream::asyncapi::{Contact, License, Tag};
use faststream::filter::{self, Filter, Filtered};
use faststream::kafka::KafkaBroker;
use faststream::{
    publisher, subscriber, AckPolicy, ErrorPolicy, FastStream, Message, Route, Router,
    SubscriberConfig,
};

/// Greets newly registered users.
#[subscriber("in-topic")]
#[publisher("out-topic")]
async fn handle_msg(user: String, user_id: i64) -> String {
    format!("User: {user_id} - {user} registered")
}

/// Scales measurements; its topic comes from the environment.
#[subscriber(env = "ROUTING_SCALE_TOPIC", default = "measurements")]
#[publisher("scaled")]
async fn scale(value: f64) -> f64 {
    value * 1000.0
}

/// An order placed in the shop.
#[derive(faststream::Deserialize, faststream::JsonSchema)]
#[serde(crate = "faststream::serde")]
#[schemars(crate = "faststream::schemars")]
pub struct Order {
    /// Order number.
    pub id: i64,
    /// Total, in cents.
    pub total: i64,
}

/// A refund of an order.
#[derive(faststream::Deserialize, faststream::JsonSchema)]
#[serde(crate = "faststream::serde")]
#[schemars(crate = "faststream::schemars")]
pub struct Refund {
    /// The refunded order.
    pub order_id: i64,
}

async fn on_order(order: Order) -> String {
    format!("order {} for {} cents", order.id, order.total)
}

async fn on_refund(refund: Refund) -> String {
    format!("refund of order {}", refund.order_id)
}

async fn double(n: i64) -> i64 {
    n * 2
}

/// The users' part of the app: the seed handler under `users-`.
pub fn users() -> Router<KafkaBroker> {
    Router::new("users-").include(handle_msg)
}

/// The shop's part: events told apart by filters, with a dead-letter policy for the whole
/// router, and routes built from a table (as read from a configuration file).
pub fn shop() -> Router<KafkaBroker> {
    let events = Filtered::new()
        .when(
            filter::header("type", "refund").and(filter::payload::<Refund>()),
            on_refund,
        )
        .when(filter::payload::<Order>(), on_order)
        .when(
            filter::content_type("text/plain"),
            |note: String| async move { format!("note: {note}") },
        );
    let mut shop = Router::new("shop-")
        .error_policy(ErrorPolicy::retry(3).then_dead_letter())
        .subscriber(
            SubscriberConfig::new("events", ["events"])
                .description("Orders and refunds of the shop.")
                .publish_to("ledger"),
            events,
        );
    let table = [
        ("quantities", "doubled-quantities"),
        ("prices", "doubled-prices"),
    ];
    for (input, output) in table {
        let config = SubscriberConfig::new(format!("double_{input}"), [input])
            .ack_policy(AckPolicy::NackOnError)
            .publish_to(output);
        shop = shop.include(Route::new(config, double));
    }
    shop
}

/// Logs every message that reaches a subscriber of the router it is used in.
fn log_messages(message: Message) -> Message {
    tracing::debug!(
        "{}[{}]@{}",
        message.topic,
        message.partition,
        message.offset
    );
    message
}

/// The app on `broker` (also what its AsyncAPI document describes).
pub fn app(broker: KafkaBroker) -> FastStream<KafkaBroker> {
    FastStream::new(broker)
        .title("Routing example")
        .version("1.0.0")
        .description("The seed example under a router, filters and routes from configuration.")
        .contact(
            Contact::new("faststream-rs")
                .url("https://example.com/faststream-rs")
                .email("maintainers@example.com"),
        )
        .license(License::new("Apache-2.0").url("https://www.apache.org/licenses/LICENSE-2.0"))
        .tag(Tag::new("routing").description("Routers, filters, routes"))
        .include_router(users())
        .include_router(shop().layer(faststream::tower::util::MapRequestLayer::new(log_messages)))
        .include(scale)
}

#[tokio::main]
async fn main() -> faststream::Result<()> {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".into());
    app(KafkaBroker::new(servers)).cli().await
}
