use faststream::subscriber;

const PARTITIONS: u32 = 3;

// A constant topic must convert into a `String`; the error points at it.
#[subscriber(PARTITIONS)]
async fn handle(_body: String) {}

fn main() {}
