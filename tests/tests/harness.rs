//! The integration tests, one module per file of this folder, linked into one test binary:
//! each separate binary linked rdkafka, tokio and the rest again, and cargo built them one
//! after another. `scripts/run-tests.py` still runs each module in a process of its own, as
//! when they were binaries (`harness -- --exact <the module's tests>`), with a log each.
//!
//! A new file `X.rs` here needs its `mod X;` line below; `every_file_is_a_module` fails
//! until it has one.

mod asyncapi;
mod batch;
mod codecs;
mod exactly_once;
mod extractors;
mod health;
mod lanes;
mod middleware;
mod observe;
mod policy;
mod precedence;
mod process;
mod publisher;
mod python_interop;
mod registry;
mod request;
mod retry_topics;
mod routing;
mod runtime;
mod security;
mod seed;
mod seek;
mod shutdown;
mod testing;
mod transactions;

/// A test file without its `mod` line above would silently never compile or run.
#[test]
fn every_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let root = std::fs::read_to_string(dir.join("harness.rs")).expect("harness.rs");
    let entries = std::fs::read_dir(&dir).expect("the tests folder");
    let mut missing = Vec::new();
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs")
            && name != "harness"
            && !root.lines().any(|line| line == format!("mod {name};"))
        {
            missing.push(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "tests/tests/harness.rs lacks `mod X;` for {missing:?}"
    );
}
