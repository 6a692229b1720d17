use faststream::subscriber;

#[subscriber("in")]
async fn handle(_user: &str, _user_id: i64) {}

fn main() {}
