use faststream::publisher;

#[publisher("out")]
async fn handle(body: String) -> String {
    body
}

fn main() {}
