//! `faststream`: runs a faststream-rs app (several workers, reload on change), writes or
//! serves its AsyncAPI docs, scaffolds new projects, imports a Python FastStream service as a
//! Rust crate, and publishes or requests on any Kafka cluster.
//!
//! The app itself does the work of `docs gen` / `docs serve`: this command builds it with
//! cargo and runs it with those arguments (every app has them through `FastStream::cli`); a
//! spec file needs no app. `publish` and `request` need no app either: the broker options
//! (`faststream::cli::BrokerArgs`: servers, TLS, SASL) make a `KafkaBroker`, and the facade's
//! `publish_with` sends the record, as an app's own `publish` command does.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod build;
mod error;
mod import;
mod scaffold;
mod supervise;

use build::Target;
use clap::{Args, Parser, Subcommand};
use error::CliError;
use faststream::cli::{BrokerArgs, GenArgs, PublishArgs, ServeArgs};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "faststream",
    version,
    about = "Run faststream-rs apps, their AsyncAPI docs, and new projects."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the app with cargo and run it (several workers, or rebuilt on change).
    Run(RunArgs),
    /// AsyncAPI documentation of the app (or of a spec file).
    #[command(subcommand)]
    Docs(DocsCommand),
    /// The app's payload schemas against the schema registry.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Create a new faststream project in directory NAME.
    New(NewArgs),
    /// Generate a Rust crate from a Python FastStream service's AsyncAPI document.
    Import(import::ImportArgs),
    /// Publish one message to any Kafka cluster and print where it landed.
    Publish(PublishCommand),
    /// Send a request (with `reply_to` and a correlation id) and print the reply's payload.
    #[command(mut_arg("rpc", |arg| arg.hide(true)))]
    Request(PublishCommand),
}

#[derive(Debug, Args)]
struct PublishCommand {
    #[command(flatten)]
    message: PublishArgs,
    #[command(flatten)]
    broker: BrokerArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Run N worker processes (restarted when they die, FASTSTREAM_WORKER_ID=0..N-1).
    #[arg(long, short = 'w', default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// Rebuild and restart on changes to the package's sources (not with --workers > 1).
    #[arg(long, short = 'r')]
    reload: bool,
    /// Arguments for the app (e.g. `-- --log-level debug --env .env`).
    #[arg(last = true, value_name = "APP ARGS")]
    app_args: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// Write the app's AsyncAPI document (or convert a JSON/YAML spec FILE) and print where.
    Gen {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        gen: GenArgs,
    },
    /// Serve the docs page of the app, or of a JSON/YAML spec FILE, until Ctrl-C.
    Serve {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Build the app and run `APP schema check`: each registry codec's schema against its
    /// subject's latest version, under the subject's compatibility level (exit 1 when one
    /// breaks it).
    Check {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
struct NewArgs {
    /// Project (and package) name; the directory is created.
    name: String,
    /// Build into the project's own `target/` rather than the target directory that the
    /// projects created on this machine share (`~/.cache/faststream-rs/target`).
    #[arg(long)]
    local_target: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// `publish` and `request`: the record through a broker made of the options.
async fn publish(command: PublishCommand) -> Result<u8, CliError> {
    let broker = command
        .broker
        .broker()
        .map_err(faststream::cli::CliError::from)?;
    faststream::cli::publish_with(&broker, &command.message).await?;
    Ok(0)
}

async fn dispatch(command: Command) -> Result<u8, CliError> {
    match command {
        Command::Run(run) => {
            if run.reload && run.workers > 1 {
                return Err(CliError::Usage(
                    "--reload cannot be combined with --workers > 1 (reload restarts one process)"
                        .into(),
                ));
            }
            let app = build::build(&run.target).await?;
            supervise::run(
                app,
                run.app_args,
                supervise::Mode {
                    workers: run.workers,
                    reload: run.reload,
                    target: run.target,
                },
            )
            .await
        }
        Command::Docs(DocsCommand::Gen { target, gen }) => {
            if let Some(file) = &gen.file {
                // A spec file needs no app.
                let path = faststream::cli::convert_file(file, &gen)?;
                println!("AsyncAPI document written to {}", path.display());
                return Ok(0);
            }
            let app = build::build(&target).await?;
            let args = gen.to_args(&gen.asyncapi_version.to_string());
            supervise::run_once(&app.executable, &args).await
        }
        Command::Docs(DocsCommand::Serve { target, serve }) => match &serve.file {
            Some(file) => {
                faststream::cli::serve_file(file, &serve.host, serve.port).await?;
                Ok(0)
            }
            None => {
                let app = build::build(&target).await?;
                let args = vec![
                    "docs".to_owned(),
                    "serve".to_owned(),
                    "--host".to_owned(),
                    serve.host.clone(),
                    "--port".to_owned(),
                    serve.port.to_string(),
                    "--asyncapi-version".to_owned(),
                    serve.asyncapi_version.to_string(),
                ];
                supervise::run_once(&app.executable, &args).await
            }
        },
        Command::Schema(SchemaCommand::Check { target }) => {
            let app = build::build(&target).await?;
            let args = ["schema".to_owned(), "check".to_owned()];
            supervise::run_once(&app.executable, &args).await
        }
        Command::Import(import) => import::run(import).await,
        Command::Publish(command) => publish(command).await,
        Command::Request(mut command) => {
            command.message.rpc = true;
            publish(command).await
        }
        Command::New(new) => {
            scaffold::create(&new.name, !new.local_target)?;
            Ok(0)
        }
    }
}
