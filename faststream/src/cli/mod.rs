//! The command line every app gets with [`FastStream::cli`]: `run` (the default), `docs gen`,
//! `docs serve`, `publish`, `dlt replay` and `schema check`.
//!
//! ```no_run
//! use faststream::kafka::KafkaBroker;
//! use faststream::FastStream;
//!
//! #[tokio::main]
//! async fn main() -> faststream::Result<()> {
//!     FastStream::new(KafkaBroker::new("localhost:9092"))
//!         .on_startup_with(|opts| async move {
//!             println!("worker {:?}, env {:?}", opts.worker_id(), opts.str("env"));
//!         })
//!         .cli()
//!         .await
//! }
//! ```
//!
//! `my-app` runs the app; `my-app run --log-level debug --env .env.dev` too, handing
//! `env = ".env.dev"` to startup hooks; `my-app docs gen --yaml` writes `asyncapi.yaml`;
//! `my-app docs serve --port 8000` serves the docs page; `my-app publish in-topic '{"a": 1}'`
//! publishes one message and prints `partition N offset M`.

pub use crate::asyncapi::AsyncApiVersion;
#[cfg(feature = "kafka")]
pub use broker::{
    BadBrokerOptions, BrokerArgs, SaslOption, BOOTSTRAP_SERVERS_ENV, SASL_PASSWORD_ENV,
};
pub use faststream_core::options::{BadExtraOption, OptionValue, StartupOptions, WORKER_ID_ENV};

#[cfg(feature = "kafka")]
mod broker;
mod schema;

pub use schema::{check_schemas, SchemaReport};

use crate::asyncapi::serve::ServeError;
use crate::asyncapi::DescribeServer;
use crate::observe::RunObservation;
use crate::FastStream;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use faststream_core::broker::{Broker, Publish, Record};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `publish` waits for the broker to answer before giving up.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A command-line failure. [`CliError::exit_code`] is the process exit code to use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Bad command line (clap's message; `--help` and `--version` arrive here too).
    #[error("{0}")]
    Usage(#[from] clap::Error),
    /// An extra option of `run` is not `--key value`.
    #[error(transparent)]
    BadExtra(#[from] BadExtraOption),
    /// The app failed (unreachable broker, failing hook, ...).
    #[error(transparent)]
    App(#[from] faststream_core::Error),
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a JSON or YAML document.
    #[error("`{}` is not a JSON or YAML document: {message}", path.display())]
    BadDocument {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The health server could not listen.
    #[error("cannot serve health on {addr}: {source}")]
    HealthBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The docs server could not serve.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// JSON serialization failed.
    #[error("cannot write JSON: {0}")]
    Json(serde_json::Error),
    /// YAML conversion failed.
    #[error("cannot write YAML: {0}")]
    Yaml(String),
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `schema check` found problems (each printed on its own line).
    #[error("schema check failed: {0} problem(s)")]
    SchemaCheck(usize),
    /// Broker options that do not make a broker (`faststream publish`).
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    BrokerOptions(#[from] BadBrokerOptions),
    /// The OTLP exporter (`run --otel`) could not be set up.
    #[cfg(feature = "otlp")]
    #[error(transparent)]
    Observe(#[from] crate::observe::ObserveError),
}

impl CliError {
    /// The exit code: clap's for usage errors (2; 0 for `--help`), 2 for a bad extra option,
    /// 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(err) => err.exit_code(),
            CliError::BadExtra(_) => 2,
            _ => 1,
        }
    }
}

/// The app command line.
#[derive(Debug, Parser)]
#[command(
    about = "A FastStream application.",
    long_about = "A FastStream application. Without a command it runs (`run`)."
)]
pub struct AppCli {
    /// What to do.
    #[command(subcommand)]
    pub command: AppCommand,
}

/// The app's commands.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Run the app until SIGINT/SIGTERM (the default command).
    Run(RunArgs),
    /// AsyncAPI documentation of the app.
    #[command(subcommand)]
    Docs(DocsCommand),
    /// Publish one message through the app's broker and print where it landed.
    Publish(PublishArgs),
    /// Dead-letter topics of the app's error policies.
    #[command(subcommand)]
    Dlt(DltCommand),
    /// The app's payload schemas and the schema registry.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

/// `schema` commands.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum SchemaCommand {
    /// Check every registry codec's schema (payloads, keys, publishers) against its
    /// subject's latest version under the subject's compatibility level; exit 1 with a line
    /// per breaking field, missing subject or unreachable registry.
    Check,
}

/// `dlt` commands.
#[derive(Debug, Subcommand)]
pub enum DltCommand {
    /// Publish every record of a dead-letter topic again to its original topic (the
    /// `dlt-original-topic` header), with its key, payload and headers, and print the count.
    Replay(ReplayArgs),
}

/// `dlt replay` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The dead-letter topic, e.g. `orders-dlt`.
    pub topic: String,
    /// Count what would be replayed, publish nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Log level or tracing filter: error, warn, info, debug, trace (also warning, critical,
    /// or directives like `info,faststream=debug`). Default: FASTSTREAM_LOG, RUST_LOG, info.
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,
    /// Log line format (default: FASTSTREAM_LOG_FORMAT, else text).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve /health/live, /health/ready and /health (and the app's other HTTP routes, such
    /// as /metrics) on this port.
    #[arg(long, value_name = "PORT", visible_alias = "http-port")]
    pub health_port: Option<u16>,
    /// The address the health server binds to.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub health_host: std::net::IpAddr,
    /// Log every message at LEVEL (error, warn, info, debug, trace): `Received`, then
    /// `Processed` or the failure, with topic, group, partition, offset and correlation id.
    /// Off by default.
    #[arg(long, value_name = "LEVEL", value_parser = parse_access_level)]
    pub access_log: Option<crate::observe::Level>,
    /// Record FastStream's Prometheus metrics (unless the app installed its own) and serve
    /// them on `/metrics` of the health server (`--health-port`).
    #[cfg(feature = "metrics")]
    #[arg(long, requires = "health_port")]
    pub metrics: bool,
    /// Trace every message with OpenTelemetry and export the spans over OTLP, configured by
    /// the standard `OTEL_*` environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`...).
    #[cfg(feature = "otlp")]
    #[arg(long)]
    pub otel: bool,
    /// Extra options handed to startup hooks: `--key value`, `--key=value` or `--flag`
    /// (true/false become booleans, numbers integers or floats, the rest text).
    #[arg(value_name = "--KEY VALUE", num_args = 0.., allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

/// `docs` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DocsCommand {
    /// Write the app's AsyncAPI document to a file and print where.
    Gen(GenArgs),
    /// Serve the docs page (and the document at /asyncapi.json, /asyncapi.yaml) until Ctrl-C.
    Serve(ServeArgs),
}

/// Options of `docs gen`.
#[derive(Debug, Clone, Args)]
pub struct GenArgs {
    /// Write YAML instead of JSON.
    #[arg(long)]
    pub yaml: bool,
    /// Output file [default: asyncapi.json, or asyncapi.yaml with --yaml].
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// AsyncAPI version: 3.0.0 or 2.6.0.
    #[arg(long, value_name = "VERSION", default_value = "3.0.0", value_parser = parse_version)]
    pub asyncapi_version: AsyncApiVersion,
    /// Write this JSON or YAML document instead of the app's (as it is, in JSON, or YAML with
    /// --yaml: e.g. a Python FastStream service's document, converted).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl GenArgs {
    /// These options as command-line arguments (to forward them to an app).
    pub fn to_args(&self, version: &str) -> Vec<String> {
        let mut args = vec!["docs".to_owned(), "gen".to_owned()];
        if self.yaml {
            args.push("--yaml".into());
        }
        if let Some(out) = &self.out {
            args.push("--out".into());
            args.push(out.display().to_string());
        }
        args.push("--asyncapi-version".into());
        args.push(version.to_owned());
        args
    }
}

/// Options of `docs serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// AsyncAPI version of the app's document: 3.0.0 or 2.6.0.
    #[arg(long, value_name = "VERSION", default_value = "3.0.0", value_parser = parse_version)]
    pub asyncapi_version: AsyncApiVersion,
    /// Serve this JSON or YAML document instead of the app's.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Options of `publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Destination topic.
    pub topic: String,
    /// The message: sent as JSON when it parses as JSON, else as text.
    pub message: String,
    /// Record key.
    #[arg(long)]
    pub key: Option<String>,
    /// A header `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Target partition (the partitioner chooses otherwise).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Send it as a request and print the reply's payload instead of where it landed.
    #[arg(long)]
    pub rpc: bool,
    /// With `--rpc`: how long to wait for the reply, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub rpc_timeout: f64,
}

impl PublishArgs {
    /// The record to send.
    pub fn record(&self) -> Result<Record, faststream_core::Error> {
        let mut record = match serde_json::from_str::<serde_json::Value>(&self.message) {
            Ok(json) => {
                let mut record = Record::new(
                    self.topic.as_str(),
                    serde_json::to_vec(&json)
                        .map_err(|e| faststream_core::codec::EncodeError(e.to_string()))?,
                );
                record.content_type = Some(faststream_core::codec::APPLICATION_JSON);
                record
            }
            Err(_) => {
                let mut record = Record::new(self.topic.as_str(), self.message.clone());
                record.content_type = Some(faststream_core::codec::TEXT_PLAIN);
                record
            }
        };
        if let Some(key) = &self.key {
            record = record.key(key.clone());
        }
        for (name, value) in &self.headers {
            // Each `--header` given is sent, a repeated name too (Kafka allows it).
            record = record.append_header(name.clone(), value.clone());
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        Ok(record)
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

fn parse_version(text: &str) -> Result<AsyncApiVersion, String> {
    text.parse::<AsyncApiVersion>().map_err(|e| e.to_string())
}

/// Accepts tracing levels, FastStream's (Python) level names and numbers, and filter directives.
fn parse_log_level(text: &str) -> Result<String, String> {
    let lower = text.trim().to_ascii_lowercase();
    let filter = match lower.as_str() {
        "critical" | "fatal" | "50" | "40" => "error".to_owned(),
        "warning" | "30" => "warn".to_owned(),
        "20" => "info".to_owned(),
        "10" => "debug".to_owned(),
        "notset" | "0" => "trace".to_owned(),
        "error" | "warn" | "info" | "debug" | "trace" | "off" => lower.clone(),
        _ if text.contains('=') || text.contains(',') => text.trim().to_owned(),
        _ => {
            return Err(
                "expected error, warn, info, debug, trace (or tracing directives)".to_owned(),
            )
        }
    };
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map(|_| filter)
        .map_err(|e| format!("not a log level or filter: {e}"))
}

/// `access_log`'s levels.
fn parse_access_level(text: &str) -> Result<crate::observe::Level, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected error, warn, info, debug or trace".to_owned())
}

const COMMANDS: &[&str] = &["run", "docs", "publish", "dlt", "schema", "help"];
/// `run`'s own options (each takes a value); any other option goes to the startup hooks.
const RUN_OPTIONS: &[&str] = &[
    "--log-level",
    "--log-format",
    "--health-port",
    "--http-port",
    "--health-host",
    "--access-log",
];

/// `run`'s own switches (no value).
const RUN_SWITCHES: &[&str] = &["--metrics", "--otel", "-h", "--help"];

/// Makes `run` the default command and moves `run`'s own flags in front of the extra options,
/// so that `app --log-level debug --env x` and `app run --env x --log-level debug` both parse.
fn normalize(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.is_empty() {
        args.push("app".into());
    }
    let first = args.get(1).and_then(|a| a.to_str());
    let explicit = first.is_some_and(|a| {
        COMMANDS.contains(&a) || matches!(a, "-h" | "--help" | "-V" | "--version")
    });
    if !explicit {
        args.insert(1, "run".into());
    }
    if args.get(1).and_then(|a| a.to_str()) != Some("run") {
        return args;
    }
    let rest = args.split_off(2);
    let mut known = Vec::new();
    let mut extra = Vec::new();
    let mut iter = rest.into_iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_str().unwrap_or_default();
        if text == "--" {
            extra.extend(iter.by_ref());
            break;
        }
        let flag = text.split_once('=').map_or(text, |(name, _)| name);
        if RUN_OPTIONS.contains(&text) {
            known.push(arg);
            known.extend(iter.next());
        } else if (flag != text && RUN_OPTIONS.contains(&flag)) || RUN_SWITCHES.contains(&text) {
            known.push(arg);
        } else {
            extra.push(arg);
        }
    }
    args.extend(known);
    if !extra.is_empty() {
        args.push("--".into());
        args.extend(extra);
    }
    args
}

/// Parses an app command line (`args[0]` is the program name).
pub fn parse_args<I, T>(args: I) -> Result<AppCli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args = normalize(args.into_iter().map(Into::into).collect());
    // clap names the program after `args[0]`'s file name.
    let mut command = AppCli::command();
    let matches = command.try_get_matches_from_mut(args)?;
    AppCli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// `docs gen FILE`: reads a JSON or YAML document and writes it as `docs gen` does (JSON, or
/// YAML with `--yaml`); returns the path written.
pub fn convert_file(path: &Path, args: &GenArgs) -> Result<PathBuf, CliError> {
    let document = read_document(path)?;
    write_document(&document, args)
}

/// Writes the document as `docs gen` does; returns the path written.
pub fn write_document(document: &serde_json::Value, args: &GenArgs) -> Result<PathBuf, CliError> {
    let path = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.yaml {
            "asyncapi.yaml"
        } else {
            "asyncapi.json"
        })
    });
    let text = if args.yaml {
        crate::asyncapi::to_yaml(document).map_err(|e| CliError::Yaml(e.to_string()))?
    } else {
        let mut text = serde_json::to_string_pretty(document).map_err(CliError::Json)?;
        text.push('\n');
        text
    };
    std::fs::write(&path, text).map_err(|source| CliError::WriteFile {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Serves `document` as `docs serve` does: prints the URL, stops on SIGINT/SIGTERM.
pub async fn serve_until_signal(
    document: &serde_json::Value,
    host: &str,
    port: u16,
) -> Result<(), CliError> {
    use std::io::Write;
    let stop = async {
        let _ = faststream_core::app::shutdown_signal().await;
    };
    crate::asyncapi::serve::serve_document(
        document,
        host,
        port,
        |addr| {
            println!("Serving AsyncAPI docs at http://{addr} (Ctrl-C to stop)");
            let _ = std::io::stdout().flush();
        },
        stop,
    )
    .await
    .map_err(CliError::from)
}

/// Reads an AsyncAPI document from a `.json`, `.yaml` or `.yml` file (content decides when
/// the extension does not).
pub fn read_document(path: &Path) -> Result<serde_json::Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    crate::asyncapi::parse(&text, is_json).map_err(|message| CliError::BadDocument {
        path: path.to_owned(),
        message,
    })
}

/// `docs serve FILE`: serves a JSON or YAML document from a file.
pub async fn serve_file(path: &Path, host: &str, port: u16) -> Result<(), CliError> {
    let document = read_document(path)?;
    serve_until_signal(&document, host, port).await
}

/// `publish` (and `publish --rpc`, the `request` of the `faststream` command): sends the
/// record through `broker` and prints where it landed (`partition N offset M`), or the reply's
/// payload.
pub async fn publish_with<B: Broker>(broker: &B, publish: &PublishArgs) -> Result<(), CliError> {
    let record = publish.record()?;
    broker.ping(PING_TIMEOUT).await?;
    if publish.rpc {
        let timeout = Duration::try_from_secs_f64(publish.rpc_timeout.max(0.0))
            .unwrap_or(Duration::from_secs(30));
        let reply = broker.request(record, timeout).await?;
        println!("{}", String::from_utf8_lossy(&reply.payload));
        return Ok(());
    }
    let publisher = broker.publisher()?;
    let delivery = publisher
        .enqueue(record)
        .await
        .map_err(faststream_core::Error::from)?;
    let delivered = delivery.await.map_err(faststream_core::Error::from)?;
    println!(
        "partition {} offset {}",
        delivered.partition, delivered.offset
    );
    publisher
        .flush(Duration::from_secs(5))
        .await
        .map_err(faststream_core::Error::from)?;
    Ok(())
}

/// Installs what `run`'s options ask for: the access log, the metrics (unless the app has its
/// own), OTLP tracing.
fn observe_run<B: Broker>(
    mut app: FastStream<B>,
    run: &RunArgs,
) -> Result<(FastStream<B>, RunObservation), CliError> {
    #[allow(unused_mut)]
    let mut observation = RunObservation::default();
    if let Some(level) = run.access_log {
        app = app.access_log(level);
    }
    #[cfg(feature = "metrics")]
    {
        if run.metrics && app.installed_metrics().is_none() {
            app = app.metrics(&crate::observe::metrics::Metrics::new("faststream"));
        }
        if let Some(metrics) = app.installed_metrics() {
            observation.follow_lag(metrics.clone(), app.subscribers().to_vec());
        }
    }
    #[cfg(feature = "otlp")]
    if run.otel {
        app = app.otel(&observation.otlp()?);
    }
    Ok((app, observation))
}

impl<B: Broker + DescribeServer> FastStream<B> {
    /// Runs the app's command line from the process arguments: `run` (the default), `docs
    /// gen`, `docs serve`, `publish`. Use it in `main` instead of [`FastStream::run`].
    ///
    /// Usage errors exit with code 2 (`--help` with 0); other failures print `error: ...` and
    /// exit with code 1. Returns `Ok(())` when the command succeeded.
    pub async fn cli(self) -> faststream_core::Result<()> {
        match self.cli_from(std::env::args_os()).await {
            Ok(()) => Ok(()),
            Err(CliError::Usage(err)) => err.exit(),
            Err(err) => {
                eprintln!("error: {err}");
                std::process::exit(err.exit_code())
            }
        }
    }

    /// [`FastStream::cli`] on the given arguments (`args[0]` is the program name), returning
    /// errors instead of exiting.
    pub async fn cli_from<I, T>(self, args: I) -> Result<(), CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let cli = parse_args(args)?;
        match cli.command {
            AppCommand::Run(run) => {
                let options = StartupOptions::parse(&run.extra)?;
                crate::logging::init(
                    run.log_level.as_deref(),
                    run.log_format.map(|f| f == LogFormat::Json),
                );
                let (app, observed) = observe_run(self, &run)?;
                let routes = app.http_routes().to_vec();
                let running = app.start_with(options).await?;
                observed.started(&running);
                let server = match run.health_port {
                    Some(port) => {
                        let addr = std::net::SocketAddr::new(run.health_host, port);
                        let bound = crate::http::HttpServer::new()
                            .health(running.health_probe())
                            .routes(routes)
                            .bind(addr)
                            .await;
                        let server = match bound {
                            Ok(server) => server,
                            Err(source) => {
                                running.shutdown().await?;
                                return Err(CliError::HealthBind { addr, source });
                            }
                        };
                        tracing::info!("health at http://{}/health/ready", server.local_addr());
                        Some(server)
                    }
                    None => None,
                };
                let outcome = running.run_until_signal().await;
                if let Some(server) = server {
                    server.stop().await;
                }
                observed.finish().await;
                outcome?;
                Ok(())
            }
            AppCommand::Docs(DocsCommand::Gen(docs)) => {
                let path = match &docs.file {
                    Some(file) => convert_file(file, &docs)?,
                    None => write_document(&self.asyncapi_document(docs.asyncapi_version), &docs)?,
                };
                println!("AsyncAPI document written to {}", path.display());
                Ok(())
            }
            AppCommand::Docs(DocsCommand::Serve(serve)) => {
                let document = match &serve.file {
                    Some(path) => read_document(path)?,
                    None => self.asyncapi_document(serve.asyncapi_version),
                };
                serve_until_signal(&document, &serve.host, serve.port).await
            }
            AppCommand::Dlt(DltCommand::Replay(replay)) => {
                let broker = self.broker();
                broker.ping(PING_TIMEOUT).await?;
                let report = broker
                    .replay_dead_letters(&replay.topic, replay.dry_run)
                    .await?;
                let verb = if replay.dry_run {
                    "would replay"
                } else {
                    "replayed"
                };
                println!("{verb} {} records from {}", report.total(), replay.topic);
                for (topic, count) in &report.replayed {
                    println!("  {topic}: {count}");
                }
                if report.skipped > 0 {
                    println!(
                        "  skipped {} records without a dlt-original-topic header",
                        report.skipped
                    );
                }
                if !replay.dry_run {
                    broker
                        .publisher()?
                        .flush(Duration::from_secs(5))
                        .await
                        .map_err(faststream_core::Error::from)?;
                }
                Ok(())
            }
            AppCommand::Publish(publish) => publish_with(self.broker(), &publish).await,
            AppCommand::Schema(SchemaCommand::Check) => {
                let report = check_schemas(self.subscribers()).await;
                for line in &report.checked {
                    println!("{line}");
                }
                for line in &report.problems {
                    eprintln!("error: {line}");
                }
                if !report.problems.is_empty() {
                    return Err(CliError::SchemaCheck(report.problems.len()));
                }
                if report.checked.is_empty() {
                    println!("no registry schema to check");
                }
                Ok(())
            }
        }
    }

    fn asyncapi_document(&self, version: AsyncApiVersion) -> serde_json::Value {
        self.asyncapi(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn run_is_the_default() {
        assert_eq!(strings(&normalize(vec!["app".into()])), ["app", "run"]);
        let args = normalize(
            ["app", "--env", "x", "--log-level", "debug"]
                .map(OsString::from)
                .to_vec(),
        );
        assert_eq!(
            strings(&args),
            ["app", "run", "--log-level", "debug", "--", "--env", "x"]
        );
        let cli = parse_args(["app", "--env", "x", "--log-format=json"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.extra, ["--env", "x"]);
        assert_eq!(run.log_format, Some(LogFormat::Json));
        let cli = parse_args([
            "app",
            "--env",
            "x",
            "--health-port",
            "8080",
            "--health-host=0.0.0.0",
        ])
        .expect("parses");
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.health_port, Some(8080));
        assert_eq!(run.health_host.to_string(), "0.0.0.0");
        assert_eq!(run.extra, ["--env", "x"]);
    }

    #[test]
    fn observability_options_are_run_options_not_extras() {
        let cli = parse_args(["app", "--env", "x", "--access-log", "info"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.extra, ["--env", "x"]);
        assert_eq!(run.access_log, Some(crate::observe::Level::INFO));
        assert!(parse_args(["app", "--access-log=loud"]).is_err());
        let cli = parse_args(["app", "--access-log=debug"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.access_log, Some(crate::observe::Level::DEBUG));
        assert!(run.extra.is_empty());
    }

    #[test]
    fn health_options_are_run_options_not_extras() {
        let cli = parse_args(["app", "--health-port", "8080", "--env", "x"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.health_port, Some(8080));
        assert_eq!(run.extra, ["--env", "x"]);
        let cli =
            parse_args(["app", "run", "--http-port=9000", "--health-host", "0.0.0.0"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.health_port, Some(9000));
        assert_eq!(run.health_host.to_string(), "0.0.0.0");
        assert!(run.extra.is_empty());
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn metrics_are_served_by_the_health_server() {
        let cli = parse_args(["app", "--metrics", "--health-port", "9100", "--env", "x"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.metrics);
        assert_eq!(run.health_port, Some(9100));
        assert_eq!(run.extra, ["--env", "x"]);
        let err = parse_args(["app", "--metrics"]).unwrap_err();
        assert!(err.to_string().contains("--health-port"), "{err}");
        let cli = parse_args(["app"]).unwrap();
        let AppCommand::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(!run.metrics, "metrics are off by default");
    }

    #[test]
    fn docs_and_publish_parse() {
        let cli = parse_args([
            "app",
            "docs",
            "gen",
            "--yaml",
            "--asyncapi-version",
            "2.6.0",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            AppCommand::Docs(DocsCommand::Gen(GenArgs {
                yaml: true,
                asyncapi_version: AsyncApiVersion::V2_6_0,
                ..
            }))
        ));
        let cli = parse_args([
            "app",
            "publish",
            "t",
            "{\"a\":1}",
            "--key",
            "k",
            "--header",
            "h=v=w",
        ])
        .unwrap();
        let AppCommand::Publish(publish) = cli.command else {
            panic!("not publish")
        };
        let record = publish.record().unwrap();
        assert_eq!(record.content_type, Some("application/json"));
        assert_eq!(record.headers.get_str("h"), Some("v=w"));
        let err = parse_args(["app", "publish", "t", "m", "--header", "novalue"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse_args(["app", "docs", "gen", "--bogus"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse_args(["app", "--log-level", "no such level!"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn text_messages_stay_text() {
        let publish = PublishArgs {
            topic: "t".into(),
            message: "hello world".into(),
            key: None,
            headers: vec![],
            partition: Some(2),
            rpc: false,
            rpc_timeout: 30.0,
        };
        let record = publish.record().unwrap();
        assert_eq!(record.content_type, Some("text/plain"));
        assert_eq!(record.payload.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(record.partition, Some(2));
    }
}
