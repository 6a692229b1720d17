//! Routing: the seed example under a router with a prefix, a filtered subscriber with several
//! handlers, routes built from configuration, policies at router level, a topic pattern with a
//! path parameter and a batch subscriber.
//!
//! `{"user": "John", "user_id": 1}` on `users-in-topic` becomes `User: 1 - John registered` on
//! `users-out-topic`. Order and refund events on `shop-events` are told apart by a header and
//! their payload shape; anything else goes to `shop-events-dlt`. Orders on any
//! `shop-orders-{region}` topic are tagged with their region on `shop-regional-ledger`, and the
//! ledger is archived in batches of up to 100 entries (`shop-archived`).
//!
//! Run with `cargo run --example routing` (Kafka on localhost:9092); `ROUTING_SCALE_TOPIC`
//! renames the input topic of `scale` (read when the app is built).
use faststream::asyncapi::{Contact, License, Tag};
use faststream::filter::{self, schema_of, Filter, Filtered};
use faststream::kafka::KafkaBroker;
use faststream::pattern::Path;
use faststream::{
    publisher, subscriber, AckPolicy, Batch, ErrorPolicy, FastStream, Message, Route, Router,
    SubscriberConfig,
};
use std::time::Duration;

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

/// An order from a regional topic, tagged with the region its topic names.
async fn regional_order(Path(region): Path<String>, order: Order) -> String {
    format!("{region}: order {} for {} cents", order.id, order.total)
}

/// Archives ledger entries in bulk: one call (one write to the archive) per batch.
async fn archive(batch: Batch, entries: Vec<String>) -> String {
    format!(
        "archived {} entries, offsets {}..={}",
        entries.len(),
        batch.first_offset(),
        batch.last_offset()
    )
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
    let shop = Router::new("shop-")
        .error_policy(ErrorPolicy::retry(3).then_dead_letter())
        .subscriber(
            SubscriberConfig::new("events", ["events"])
                .description("Orders and refunds of the shop.")
                .publish_to("ledger"),
            events,
        );
    let shop = shop
        .subscriber(
            SubscriberConfig::new("regional_orders", Vec::<String>::new())
                .pattern("orders-{region}")
                .description("Orders of every region, one topic per region.")
                .payload_schema(schema_of::<Order>)
                .publish_to("regional-ledger"),
            regional_order,
        )
        .subscriber(
            SubscriberConfig::new("archive_ledger", ["ledger"])
                .batch(100, Duration::from_millis(500))
                .description("The ledger, archived in batches of up to 100 entries.")
                .payload_schema(schema_of::<Vec<String>>)
                .publish_to("archived"),
            archive,
        );
    let table = [
        ("quantities", "doubled-quantities"),
        ("prices", "doubled-prices"),
    ];
    table.into_iter().fold(shop, |shop, (input, output)| {
        // Retried until they succeed: a subscriber's own NackOnError wins over the router's
        // error policy (no dead letters for these).
        let config = SubscriberConfig::new(format!("double_{input}"), [input])
            .ack_policy(AckPolicy::NackOnError)
            .publish_to(output);
        shop.include(Route::new(config, double))
    })
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
        .description(
            "The seed example under a router, filters, routes from configuration, a topic \
             pattern and a batch subscriber.",
        )
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
