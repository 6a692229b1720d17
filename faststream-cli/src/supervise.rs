//! Running the app's processes: one, several workers (restarted when they die), or one that
//! is rebuilt and restarted when its sources change. SIGINT/SIGTERM are forwarded.

use crate::build::{self, BuiltApp, Target};
use crate::error::CliError;
use std::path::{Component, Path};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long stopping children waits before killing them (the app's own graceful timeout is
/// 15 s by default).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// First delay before restarting a worker that died; doubles per quick death.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A worker that ran this long before dying restarts after the first delay again.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Quiet time after a file change before rebuilding.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// How to run.
#[derive(Debug)]
pub(crate) struct Mode {
    pub(crate) workers: u32,
    pub(crate) reload: bool,
    pub(crate) target: Target,
}

/// Waits for SIGINT or SIGTERM; returns the signal number.
async fn signal() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers, never report one.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => libc::SIGINT,
        _ = term.recv() => libc::SIGTERM,
    }
}

fn send_signal(child: &Child, signal: i32) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet; no memory involved.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Stops a child: `signal`, then a kill after [`STOP_TIMEOUT`].
async fn stop(child: &mut Child, signal: i32) -> Option<ExitStatus> {
    send_signal(child, signal);
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            eprintln!("faststream: a process did not stop within {STOP_TIMEOUT:?}: killing it");
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        _ => 1,
    }
}

fn spawn(executable: &Path, args: &[String], worker: Option<u32>) -> Result<Child, CliError> {
    let mut command = Command::new(executable);
    command.args(args);
    if let Some(id) = worker {
        command.env(faststream::cli::WORKER_ID_ENV, id.to_string());
    }
    command
        .spawn()
        .map_err(|err| CliError::Build(format!("cannot start {}: {err}", executable.display())))
}

/// Runs the executable once, forwarding SIGINT/SIGTERM; returns its exit code.
pub(crate) async fn run_once(executable: &Path, args: &[String]) -> Result<u8, CliError> {
    let mut child = spawn(executable, args, None)?;
    tokio::select! {
        status = child.wait() => Ok(exit_code(status?)),
        sig = signal() => Ok(stop(&mut child, sig).await.map_or(1, exit_code)),
    }
}

/// Runs the app as `mode` says.
pub(crate) async fn run(app: BuiltApp, args: Vec<String>, mode: Mode) -> Result<u8, CliError> {
    if mode.reload {
        return reload(app, args, &mode.target).await;
    }
    if mode.workers == 1 {
        return run_once(&app.executable, &args).await;
    }
    workers(&app.executable, &args, mode.workers).await
}

struct Worker {
    id: u32,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
}

/// `--workers N`: N processes, each restarted (with backoff) when it dies, until a signal.
async fn workers(executable: &Path, args: &[String], count: u32) -> Result<u8, CliError> {
    let mut workers = Vec::new();
    for id in 0..count {
        let child = spawn(executable, args, Some(id))?;
        eprintln!(
            "faststream: started worker {id} (pid {})",
            child.id().unwrap_or(0)
        );
        workers.push(Worker {
            id,
            child: Some(child),
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            restart_at: None,
        });
    }
    let stop_signal = signal();
    tokio::pin!(stop_signal);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            sig = &mut stop_signal => {
                eprintln!("faststream: stopping {count} workers");
                let stops = workers.iter_mut().filter_map(|w| w.child.as_mut()).map(|c| stop(c, sig));
                futures::future::join_all(stops).await;
                return Ok(0);
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        for worker in &mut workers {
            if let Some(child) = &mut worker.child {
                if let Ok(Some(status)) = child.try_wait() {
                    worker.child = None;
                    if now.duration_since(worker.started) >= HEALTHY_RUN {
                        worker.backoff = FIRST_BACKOFF;
                    }
                    eprintln!(
                        "faststream: worker {} exited ({status}); restarting in {:?}",
                        worker.id, worker.backoff
                    );
                    worker.restart_at = Some(now + worker.backoff);
                    worker.backoff = (worker.backoff * 2).min(MAX_BACKOFF);
                }
            } else if worker.restart_at.is_some_and(|at| at <= now) {
                worker.restart_at = None;
                match spawn(executable, args, Some(worker.id)) {
                    Ok(child) => {
                        eprintln!(
                            "faststream: restarted worker {} (pid {})",
                            worker.id,
                            child.id().unwrap_or(0)
                        );
                        worker.child = Some(child);
                        worker.started = Instant::now();
                    }
                    Err(err) => {
                        eprintln!("faststream: {err}");
                        worker.restart_at = Some(now + worker.backoff);
                    }
                }
            }
        }
    }
}

/// Whether a changed path is a source change (not build output, VCS data or editor files).
fn relevant(path: &Path) -> bool {
    let hidden_or_target = path.components().any(|c| match c {
        Component::Normal(name) => {
            let name = name.to_string_lossy();
            name == "target" || name.starts_with('.')
        }
        _ => false,
    });
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !hidden_or_target && !name.ends_with('~') && !name.ends_with(".swp")
}

/// `--reload`: one process, rebuilt and restarted when the package's sources change.
async fn reload(mut app: BuiltApp, args: Vec<String>, target: &Target) -> Result<u8, CliError> {
    use notify::{RecursiveMode, Watcher};
    let (changes, mut changed) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let modifies = !matches!(event.kind, notify::EventKind::Access(_));
            if modifies && event.paths.iter().any(|p| relevant(p)) {
                let _ = changes.send(());
            }
        }
    })?;
    for path in &app.watch {
        let mode = if path.is_dir() {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        watcher.watch(path, mode)?;
        eprintln!("faststream: watching {}", path.display());
    }
    let mut child = Some(spawn(&app.executable, &args, None)?);
    let stop_signal = signal();
    tokio::pin!(stop_signal);
    loop {
        let exited = async {
            match child.as_mut() {
                Some(c) => c.wait().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            sig = &mut stop_signal => {
                let code = match child.as_mut() {
                    Some(c) => stop(c, sig).await.map_or(1, exit_code),
                    None => 0,
                };
                return Ok(code);
            }
            status = exited => {
                child = None;
                let status = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
                eprintln!("faststream: the app exited ({status}); waiting for changes");
            }
            Some(()) = changed.recv() => {
                // Debounce: wait until changes stop for a moment.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changed.recv()).await {}
                eprintln!("faststream: sources changed, rebuilding");
                match build::build(target).await {
                    Ok(rebuilt) => {
                        for path in rebuilt.watch.iter().filter(|p| !app.watch.contains(p)) {
                            let _ = watcher.watch(path, RecursiveMode::Recursive);
                        }
                        app = rebuilt;
                        if let Some(mut old) = child.take() {
                            stop(&mut old, libc::SIGTERM).await;
                        }
                        child = Some(spawn(&app.executable, &args, None)?);
                        eprintln!("faststream: restarted the app");
                    }
                    Err(err) => eprintln!("faststream: {err}; keeping the running app"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_build_output_and_editor_files() {
        assert!(relevant(Path::new("/p/demo/src/main.rs")));
        assert!(relevant(Path::new("/p/demo/Cargo.toml")));
        assert!(!relevant(Path::new("/p/demo/target/debug/demo")));
        assert!(!relevant(Path::new("/p/demo/src/.main.rs.swp")));
        assert!(!relevant(Path::new("/p/demo/src/main.rs~")));
    }
}
