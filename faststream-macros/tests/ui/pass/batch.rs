// `batch = true` with its limits, and a batch publisher.
#![deny(warnings)]
use faststream::{publisher, subscriber, Batch};
use std::time::Duration;

#[subscriber("in", batch = true, max_records = 100, batch_timeout_ms = 50)]
#[publisher("out", batch = true)]
#[publisher("totals")]
async fn store(amounts: Vec<i64>, batch: Batch) -> Vec<i64> {
    let _ = batch.len();
    amounts
}

// Defaults: no record limit, FastStream's 200 ms.
#[subscriber("in", batch = true)]
async fn defaults(_amounts: Vec<i64>) {}

#[subscriber("in", batch = false)]
async fn not_a_batch(_amount: i64) {}

fn main() {
    let config = store::config();
    let batch = config.backend.batch.expect("a batch subscriber");
    assert_eq!(batch.max_records, 100);
    assert_eq!(batch.timeout, Duration::from_millis(50));
    assert!(config.publishers[0].batch);
    assert!(!config.publishers[1].batch);
    let batch = defaults::config().backend.batch.expect("a batch subscriber");
    assert_eq!(batch.max_records, usize::MAX);
    assert_eq!(batch.timeout, faststream::batch::BatchConfig::DEFAULT_TIMEOUT);
    assert!(not_a_batch::config().backend.batch.is_none());
}
