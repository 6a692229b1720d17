// A closure cannot name payload fields: two payload parameters are refused at compile time,
// saying what to write instead.
use faststream::{Broker, FastStream, SubscriberConfig};

fn with_sum<B: Broker>(app: FastStream<B>) -> FastStream<B> {
    app.subscriber(
        SubscriberConfig::new("sum", ["numbers"]),
        |a: i64, b: i64| async move { a + b },
    )
}

fn main() {}
