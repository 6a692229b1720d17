// The handler stays callable as a plain async fn: `name::call(...)`.
#![deny(warnings)]
use faststream::{publisher, subscriber, Key};

/// Greets.
#[subscriber("in")]
#[publisher("out")]
pub async fn greet(
    name: String,
    id: i64,
    key: Key<Option<String>>,
    #[header("x-tenant")] tenant: Option<String>,
) -> String {
    format!("{id}/{name}/{:?}/{tenant:?}", key.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let out = greet::call("John".into(), 1, Key(None), Some("t".into())).await;
    assert_eq!(out, "1/John/None/Some(\"t\")");
    let copy = greet;
    let _ = format!("{copy:?}");
}
