//! Log set-up: `tracing` with a level from `FASTSTREAM_LOG` (or `RUST_LOG`), `info` by default.

/// Installs a `tracing` subscriber writing to stderr, unless one is installed already.
///
/// The filter comes from `FASTSTREAM_LOG`, else `RUST_LOG`, else `info` (`librdkafka` lines
/// below `warn` are hidden). `FASTSTREAM_LOG_FORMAT=json` switches to JSON lines.
pub fn init_from_env() {
    init(None, None);
}

/// Like [`init_from_env`], with `filter` (a level such as `debug`, or tracing directives)
/// and `json` overriding the environment when given.
pub fn init(filter: Option<&str>, json: Option<bool>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter.map(str::to_owned).unwrap_or_else(|| {
        std::env::var("FASTSTREAM_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_else(|_| "info".to_owned())
    });
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = json.unwrap_or_else(|| {
        std::env::var("FASTSTREAM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An app or test may have installed its own subscriber: keep it.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
