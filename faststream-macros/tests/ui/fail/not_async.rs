use faststream::subscriber;

#[subscriber("in")]
fn handle(body: String) -> String {
    body
}

fn main() {}
