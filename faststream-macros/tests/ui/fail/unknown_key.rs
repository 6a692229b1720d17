use faststream::subscriber;

#[subscriber(
    "in",
    group = "g",
    ack_policy = "sometimes",
    max_concurrency = "4",
    group_id = "a",
    group_id = "b"
)]
async fn handle(_body: String) {}

fn main() {}
