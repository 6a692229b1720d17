use faststream::subscriber;

// At least one lane.
#[subscriber("orders", lanes = 0)]
async fn no_lanes(_order: String) {}

// A count, not a string.
#[subscriber("orders", lanes = "16")]
async fn text_lanes(_order: String) {}

// A batch is a run of consecutive records: lanes would split it.
#[subscriber("orders", batch = true, lanes = 4)]
async fn batch_lanes(_orders: Vec<String>) {}

fn main() {}
