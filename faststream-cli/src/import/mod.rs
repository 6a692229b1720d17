//! `faststream import`: a Rust crate from a Python FastStream service's AsyncAPI document (a
//! file, or the URL of a running docs server), with `--app module:app` filling in what the
//! document leaves out (groups, batches, which publisher belongs to which subscriber).
//!
//! read the document (`source`) -> the contract (`contract`, merged with `python` when
//! `--app` is given) -> the files (`render`, with `types` from typify and `example` values)
//! -> written, each only when its contents changed (so a re-import rebuilds only what moved).

mod contract;
mod example;
mod python;
mod render;
mod source;
mod types;

use crate::error::CliError;
use clap::Args;
use std::path::{Path, PathBuf};

/// `faststream import` arguments.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The AsyncAPI 3.0.0 document: a `.json`/`.yaml` file (`faststream docs gen`), or the
    /// `http://` URL of a running `faststream docs serve`.
    source: String,
    /// The directory of the generated crate (created; files in it are overwritten).
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
    /// The package name [default: the directory's name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The Python app (`module:app`), read for what the document leaves out: group ids,
    /// batch subscribers, which publisher belongs to which subscriber, reply types.
    #[arg(long, value_name = "MODULE:APP")]
    app: Option<String>,
    /// With `--app`: the Python to run it with (a venv's, with the app's dependencies).
    #[arg(long, value_name = "PATH", default_value = "python3", requires = "app")]
    python: PathBuf,
    /// With `--app`: the directory the module is imported from.
    #[arg(long, value_name = "DIR", default_value = ".", requires = "app")]
    app_dir: PathBuf,
    /// The crate joins the cargo workspace it is created in (add it to the workspace's
    /// members) rather than being a workspace of its own.
    #[arg(long)]
    in_workspace: bool,
    /// Build into the crate's own `target/` rather than the target directory that the
    /// projects created on this machine share (`~/.cache/faststream-rs/target`).
    #[arg(long)]
    local_target: bool,
}

fn failed(message: impl Into<String>) -> CliError {
    CliError::Import(message.into())
}

/// Writes `text` to `path` unless it already holds exactly that; whether it wrote.
fn write_if_changed(path: &Path, text: &str) -> Result<bool, CliError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| failed(format!("cannot create `{}`: {err}", parent.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|err| failed(format!("cannot write `{}`: {err}", path.display())))?;
    Ok(true)
}

/// Runs `faststream import`.
pub(crate) async fn run(args: ImportArgs) -> Result<u8, CliError> {
    let package = match &args.name {
        Some(name) => name.clone(),
        None => args
            .out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned(),
    };
    if !crate::scaffold::valid_name(&package) || render::is_keyword(&package.replace('-', "_")) {
        return Err(CliError::Usage(format!(
            "`{package}` is not a valid package name (a letter, then letters, digits, `-` or `_`; not a Rust keyword): choose one with --name"
        )));
    }
    let document = source::read(&args.source).await.map_err(failed)?;
    let mut contract = contract::Contract::from_document(&document).map_err(|e| failed(e.0))?;
    if let Some(app) = &args.app {
        let subscribers = python::inspect(&args.python, &args.app_dir, app)
            .await
            .map_err(failed)?;
        contract = contract.with_app(&subscribers).map_err(|e| failed(e.0))?;
    }
    let options = render::Options {
        package: package.clone(),
        faststream_dep: crate::scaffold::faststream_dependency(),
        own_workspace: !args.in_workspace,
        source: args.source.clone(),
        app: args.app.clone(),
    };
    let (mut files, untranslated) = render::files(&contract, &options);
    let mut document_text = serde_json::to_string_pretty(&document)
        .map_err(|err| failed(format!("cannot write the document: {err}")))?;
    document_text.push('\n');
    // The contract the crate was made from, to compare the Rust service's own document with.
    files.push(("asyncapi.python.json".into(), document_text));
    if !args.in_workspace {
        files.push((".gitignore".into(), "/target\n/.cargo/config.toml\n".into()));
        if !args.local_target {
            if let Some(config) = crate::scaffold::shared_target_dir()
                .and_then(|dir| crate::scaffold::cargo_config(&dir))
            {
                files.push((".cargo/config.toml".into(), config));
            }
        }
        let lock = args.out.join("Cargo.lock");
        if !lock.exists() {
            // The checkout's lock file, as `faststream new` does: the versions it was tested
            // with, so the crate builds offline.
            if let Some(text) = crate::scaffold::checkout()
                .and_then(|root| std::fs::read_to_string(root.join("Cargo.lock")).ok())
            {
                files.push(("Cargo.lock".into(), text));
            }
        }
    }
    let mut changed = 0;
    for (file, text) in &files {
        if write_if_changed(&args.out.join(file), text)? {
            changed += 1;
        }
    }
    println!(
        "Imported {} subscribers into `{}` ({package}): {changed} of {} files written",
        contract.handlers.len(),
        args.out.display(),
        files.len()
    );
    for line in &untranslated {
        println!("  not translated: {line}");
    }
    println!(
        "  cd {} && cargo test    # a TestBroker test per handler",
        args.out.display()
    );
    Ok(0)
}
