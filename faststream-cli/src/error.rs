//! The errors of the `faststream` command.

/// Usage errors (clap's convention).
const USAGE: u8 = 2;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A combination of options that is refused.
    #[error("{0}")]
    Usage(String),
    /// Building the app failed or gave no usable binary.
    #[error("{0}")]
    Build(String),
    /// A command run by the facade's CLI code failed (`docs serve FILE`, `publish`...).
    #[error(transparent)]
    Command(#[from] faststream::cli::CliError),
    /// Scaffolding failed.
    #[error("{0}")]
    Scaffold(String),
    /// `faststream import` failed.
    #[error("{0}")]
    Import(String),
    /// Watching files failed.
    #[error("cannot watch the sources: {0}")]
    Watch(#[from] notify::Error),
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code: [`USAGE`] for a refused combination of options, else 1.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => USAGE,
            _ => 1,
        }
    }
}
