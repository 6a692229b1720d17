//! Compile-time behaviour of the macros: what compiles, and the errors of what does not.

#[test]
fn ui() {
    // trybuild builds these in a project and target dir of its own, which the workspace's
    // profile does not reach: cargo's default of full debug info would go into every
    // dependency, and neither the errors nor the passing runs need it.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    // trybuild (1.0.122) passes its rustflags as cargo config, in three sets: one for the
    // dependencies' build, one with `--diagnostic-width=140` for each test's build, and the
    // first again to run a passing test. Each set is a different fingerprint, so every
    // dependency was compiled twice and every passing test twice, cold. This variable
    // outranks that config: the one set, with the width the `.stderr` files were written at.
    let flags = [
        "--cfg",
        "trybuild",
        "--verbose",
        "-A",
        "dead_code",
        "--diagnostic-width=140",
    ];
    std::env::set_var("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
