//! Building the app with cargo and finding its executable.

use crate::error::CliError;
use clap::Args;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Which binary of the cargo project is the app.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// Run this binary target.
    #[arg(long, value_name = "NAME", conflicts_with = "example")]
    pub(crate) bin: Option<String>,
    /// Run this example.
    #[arg(long, value_name = "NAME")]
    pub(crate) example: Option<String>,
    /// Package of the app (in a workspace).
    #[arg(short = 'p', long, value_name = "PACKAGE")]
    pub(crate) package: Option<String>,
    /// Build in release mode.
    #[arg(long)]
    pub(crate) release: bool,
}

/// A built app.
#[derive(Debug, Clone)]
pub(crate) struct BuiltApp {
    /// The executable.
    pub(crate) executable: PathBuf,
    /// Directories and files whose changes call for a rebuild (`--reload`).
    pub(crate) watch: Vec<PathBuf>,
}

/// Runs `cargo build` for `target` (cargo's diagnostics go to stderr) and returns the app.
pub(crate) async fn build(target: &Target) -> Result<BuiltApp, CliError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command.args(["build", "--message-format=json-render-diagnostics"]);
    if let Some(package) = &target.package {
        command.args(["-p", package]);
    }
    if let Some(bin) = &target.bin {
        command.args(["--bin", bin]);
    }
    if let Some(example) = &target.example {
        command.args(["--example", example]);
    }
    if target.release {
        command.arg("--release");
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .map_err(|err| CliError::Build(format!("cannot run cargo: {err}")))?;
    let mut apps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await? {
            if let Some(app) = artifact(&line, target) {
                apps.push(app);
            }
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(CliError::Build(format!("cargo build failed ({status})")));
    }
    match apps.len() {
        1 => Ok(apps.remove(0).1),
        0 => Err(CliError::Build(
            "the build produced no executable: choose one with --bin NAME or --example NAME".into(),
        )),
        _ => {
            let names: Vec<String> = apps.iter().map(|(name, _)| name.clone()).collect();
            Err(CliError::Usage(format!(
                "several executables were built ({}): choose one with --bin NAME or --example NAME (and -p PACKAGE)",
                names.join(", ")
            )))
        }
    }
}

/// An executable from one line of cargo's JSON output: `(description, app)`.
fn artifact(line: &str, target: &Target) -> Option<(String, BuiltApp)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message["reason"] != "compiler-artifact" {
        return None;
    }
    let executable = message["executable"].as_str()?;
    let kinds: Vec<&str> = message["target"]["kind"]
        .as_array()?
        .iter()
        .filter_map(|k| k.as_str())
        .collect();
    let is_example = kinds.contains(&"example");
    if !(kinds.contains(&"bin") || is_example) {
        return None;
    }
    let name = message["target"]["name"].as_str().unwrap_or_default();
    // With --example, cargo also builds the package's binaries: keep the example only.
    if let Some(wanted) = &target.example {
        if !is_example || name != wanted {
            return None;
        }
    }
    if target.bin.as_deref().is_some_and(|wanted| wanted != name) {
        return None;
    }
    let mut watch = Vec::new();
    if let Some(manifest) = message["manifest_path"].as_str().map(PathBuf::from) {
        if let Some(dir) = manifest.parent() {
            let src = dir.join("src");
            if src.is_dir() {
                watch.push(src);
            }
        }
        watch.push(manifest);
    }
    if let Some(dir) = message["target"]["src_path"]
        .as_str()
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        if !watch.iter().any(|w| dir.starts_with(w)) {
            watch.push(dir);
        }
    }
    let kind = if is_example { "example" } else { "bin" };
    Some((
        format!("{name} ({kind})"),
        BuiltApp {
            executable: PathBuf::from(executable),
            watch,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            bin: None,
            example: None,
            package: None,
            release: false,
        }
    }

    #[test]
    fn reads_cargo_artifacts() {
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/p/demo/Cargo.toml","target":{"kind":["bin"],"name":"demo","src_path":"/p/demo/src/main.rs"},"executable":"/p/target/debug/demo"}"#;
        let (name, app) = artifact(line, &target()).unwrap();
        assert_eq!(name, "demo (bin)");
        assert_eq!(app.executable, PathBuf::from("/p/target/debug/demo"));
        assert_eq!(
            app.watch,
            [
                PathBuf::from("/p/demo/Cargo.toml"),
                PathBuf::from("/p/demo/src")
            ]
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"demo"},"executable":null}"#;
        assert!(artifact(lib, &target()).is_none());
        let mut only_example = target();
        only_example.example = Some("other".into());
        assert!(artifact(line, &only_example).is_none());
    }
}
