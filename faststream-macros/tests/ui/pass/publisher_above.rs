// #[publisher] above #[subscriber] (and on both sides): all are collected, in order.
#![deny(warnings)]
use faststream::{publisher, subscriber};

#[publisher("first")]
#[publisher("second")]
#[subscriber("in")]
#[publisher("third")]
async fn relay(body: String) -> String {
    body
}

#[faststream::publisher("out")]
#[faststream::subscriber("in")]
async fn full_paths(body: String) -> String {
    body
}

fn main() {
    let topics: Vec<_> = relay::config()
        .publishers
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(topics, ["first", "second", "third"]);
    assert_eq!(full_paths::config().publishers.len(), 1);
}
