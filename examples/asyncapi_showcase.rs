//! A shop's billing service, written to show what the AsyncAPI document and the docs page
//! describe: app info, a struct payload with nested structs, an enum, optional fields and doc
//! comments, a multi-parameter handler, a publisher, and a subscriber left out of the docs.
//!
//! `cargo run --example asyncapi_showcase -- asyncapi [3.0.0|2.6.0]` prints the document
//! without connecting to Kafka; without arguments the app runs against
//! `KAFKA_BOOTSTRAP_SERVERS` (default localhost:9092).
use faststream::asyncapi::{AsyncApiVersion, Contact, ExternalDocs, License, Tag};
use faststream::kafka::KafkaBroker;
use faststream::{publisher, subscriber, FastStream, Key};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An order placed in the shop.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Order {
    /// Unique order number.
    pub id: u64,
    /// Who placed the order.
    pub customer: Customer,
    /// What was ordered (at least one line).
    pub lines: Vec<OrderLine>,
    /// How fast it must ship.
    #[serde(default)]
    pub shipping: Shipping,
    /// A note from the customer, if any.
    pub note: Option<String>,
}

/// The person paying.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Customer {
    /// Full name.
    pub name: String,
    /// Where the invoice is mailed; none for pickup orders.
    pub email: Option<String>,
    /// Billing address.
    pub address: Address,
}

/// A postal address.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// One product line of an order.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct OrderLine {
    /// Stock keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price of one unit, in cents.
    pub unit_price_cents: u64,
}

/// Shipping speed.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shipping {
    /// Three to five days.
    #[default]
    Standard,
    /// Next day.
    Express,
}

/// The invoice for an order.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct Invoice {
    /// The order billed.
    pub order_id: u64,
    /// Total in cents, shipping included.
    pub total_cents: u64,
}

/// Bills an order: sums its lines, adds shipping, publishes the invoice.
#[subscriber("orders", group_id = "billing")]
#[publisher("invoices", description = "One invoice per billed order.")]
async fn bill_order(order: Order) -> Invoice {
    let lines: u64 = order
        .lines
        .iter()
        .map(|line| u64::from(line.quantity) * line.unit_price_cents)
        .sum();
    let shipping = match order.shipping {
        Shipping::Standard => 0,
        Shipping::Express => 990,
    };
    Invoice {
        order_id: order.id,
        total_cents: lines + shipping,
    }
}

/// Applies a stock movement reported by a warehouse.
#[subscriber("stock-movements", description = "Stock changes, keyed by SKU.")]
async fn track_stock(sku: String, delta: i32, warehouse: Option<String>, key: Key<String>) {
    let _ = (sku, delta, warehouse, key);
}

/// Internal health probe: not part of the documented API.
#[subscriber("billing-heartbeat", include_in_schema = false)]
async fn heartbeat(beat: u64) {
    let _ = beat;
}

/// The app on `broker` (also what its AsyncAPI document describes).
pub fn app(broker: KafkaBroker) -> FastStream<KafkaBroker> {
    FastStream::new(broker)
        .title("Shop billing")
        .version("1.4.0")
        .description("Bills the shop's orders and keeps stock levels current.")
        .contact(
            Contact::new("Billing team")
                .email("billing@example.com")
                .url("https://example.com/billing"),
        )
        .license(License::new("Apache-2.0").url("https://www.apache.org/licenses/LICENSE-2.0"))
        .tag(Tag::new("billing").description("Money in"))
        .external_docs(ExternalDocs::new("https://example.com/billing/docs").description("Runbook"))
        // Failed messages go to `{topic}-dlt` after 3 attempts: documented as channels too.
        .error_policy(faststream::ErrorPolicy::retry(3).then_dead_letter())
        .include(bill_order)
        .include(track_stock)
        .include(heartbeat)
        // Every `refunds-{region}` topic: the channel's address keeps the parameter.
        .subscriber(
            faststream::SubscriberConfig::new("refunds", Vec::<String>::new())
                .pattern("refunds-{region}")
                .description("Refunds of one region's orders."),
            |faststream::pattern::Path(region): faststream::pattern::Path<String>,
             order_id: String| async move {
                tracing::info!("refund of {order_id} in {region}");
            },
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "localhost:9092".into());
    let app = app(KafkaBroker::new(servers));
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("asyncapi") {
        let version: AsyncApiVersion = args.next().as_deref().unwrap_or("3.0.0").parse()?;
        println!("{}", serde_json::to_string_pretty(&app.asyncapi(version))?);
        return Ok(());
    }
    Ok(app.run().await?)
}
