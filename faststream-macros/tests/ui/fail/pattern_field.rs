use faststream::subscriber;

// Two payload parameters make the payload a JSON object; `(a, b)` has no field name.
#[subscriber("in")]
async fn handle((a, b): (i64, i64), total: i64, key: faststream::Key<String>) {
    let _ = (a, b, total, key);
}

fn main() {}
