use faststream::subscriber;

// A record acknowledged after its handler returned: the same.
#[subscriber("orders", exactly_once = true, ack_policy = "manual")]
async fn eos_manual(_order: String) {}

// The commit interval belongs to an exactly-once subscriber.
#[subscriber("orders", commit_interval_ms = 50)]
async fn interval_alone(_order: String) {}

// Milliseconds, as an integer.
#[subscriber("orders", exactly_once = true, commit_interval_ms = "50")]
async fn interval_text(_order: String) {}

fn main() {}
