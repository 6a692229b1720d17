use faststream::subscriber;

#[subscriber(group_id = "g")]
async fn handle(_body: String) {}

fn main() {}
