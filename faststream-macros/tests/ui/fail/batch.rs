use faststream::{publisher, subscriber};

// The limits only apply to a batch subscriber.
#[subscriber("in", max_records = 100, batch_timeout_ms = 200)]
async fn limits_without_batch(_amounts: Vec<i64>) {}

#[subscriber("in", batch = false, max_records = 100)]
async fn limits_with_batch_off(_amounts: Vec<i64>) {}

// Values: a bool, a positive count, milliseconds.
#[subscriber("in", batch = "yes", max_records = 0, batch_timeout_ms = 0.5)]
async fn bad_values(_amounts: Vec<i64>) {}

// A publisher is a batch publisher with a bool; it has no limits.
#[subscriber("in")]
#[publisher("out", batch = 1, max_records = 10)]
async fn bad_publisher(n: i64) -> i64 {
    n
}

fn main() {}
