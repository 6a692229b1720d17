// 0, 1 and n payload parameters, #[payload] on a struct, Option fields, Result return.
#![deny(warnings)]
use faststream::{subscriber, Key};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
struct Order {
    id: u64,
}

#[subscriber("a")]
async fn zero() {}

#[subscriber("b")]
async fn one(order: Order) -> Result<u64, std::io::Error> {
    Ok(order.id)
}

#[subscriber("c")]
async fn forced(#[payload] order: Order, key: Key<String>) -> Option<String> {
    Some(format!("{}:{}", key.0, order.id))
}

#[subscriber("d")]
async fn many(name: String, age: Option<u8>, mut tags: Vec<String>) -> Result<(), String> {
    tags.push(name);
    let _ = age;
    Ok(())
}

fn main() {
    let _ = (
        zero::config(),
        one::config(),
        forced::config(),
        many::config(),
    );
}
