use faststream::subscriber;

struct NotDeserialize;

#[subscriber("in")]
async fn handle(_body: NotDeserialize) {}

fn main() {}
