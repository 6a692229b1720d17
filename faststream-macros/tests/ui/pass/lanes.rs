// Key-ordered lanes per partition.
#![deny(warnings)]
use faststream::subscriber;

#[subscriber("orders", lanes = 16)]
async fn store(order: String) {
    let _ = order.len();
}

fn main() {
    assert_eq!(store::config().delivery.lanes, 16);
}
