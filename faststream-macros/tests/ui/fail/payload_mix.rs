use faststream::subscriber;

#[subscriber("in")]
async fn handle(#[payload] _body: String, _user_id: i64) {}

fn main() {}
