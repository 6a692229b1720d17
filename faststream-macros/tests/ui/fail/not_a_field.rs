use faststream::subscriber;

struct NotDeserialize;

// Among several parameters, one that is neither payload nor an extractor: one error, on it.
#[subscriber("in")]
async fn handle(_user: String, _body: NotDeserialize) {}

fn main() {}
