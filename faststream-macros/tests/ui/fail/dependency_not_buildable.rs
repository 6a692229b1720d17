// A dependency that cannot be built: built from a payload type, which is not a parts
// extractor, and taken by a handler that does not know how to build a `DbConn`.
use faststream::extract::MessageContext;
use faststream::{Extraction, FromMessageParts, Message};

#[derive(serde::Deserialize)]
#[serde(crate = "faststream::serde")]
struct Order {
    id: i64,
}

struct Customer(i64);

impl FromMessageParts for Customer {
    fn from_message_parts(message: &Message, cx: &MessageContext<'_>) -> Extraction<Self> {
        let order = <Order as FromMessageParts>::from_message_parts(message, cx);
        Extraction::pending(async move { Ok(Customer(order.await?.id)) })
    }
}

struct DbConn;

async fn handle(_db: DbConn, order: Order) -> i64 {
    order.id
}

fn subscribe<T>(_handler: impl faststream::Handler<T>) {}

fn main() {
    subscribe(handle);
}
