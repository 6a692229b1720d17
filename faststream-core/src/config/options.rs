//! Startup options: the extra `--key value` flags an app's `run` command received, typed the
//! way FastStream types them, and the worker id. Parsed here (no CLI crate needed), handed to
//! startup hooks and to handlers as `State<StartupOptions>`.

use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Environment variable carrying a worker's index (set by `faststream run --workers N`).
pub const WORKER_ID_ENV: &str = "FASTSTREAM_WORKER_ID";

/// One extra option's value: `true`/`false` become [`OptionValue::Bool`], integers
/// [`OptionValue::Int`], other numbers [`OptionValue::Float`], anything else
/// [`OptionValue::Str`]; a key given several times collects an [`OptionValue::List`].
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// `true` or `false` (also a flag given without a value: `true`).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A non-integer number.
    Float(f64),
    /// Any other text.
    Str(String),
    /// The values of a key given more than once, in order.
    List(Vec<OptionValue>),
}

impl OptionValue {
    /// Types `text` by FastStream's rules.
    ///
    /// ```
    /// use faststream_core::options::OptionValue;
    /// assert_eq!(OptionValue::parse("true"), OptionValue::Bool(true));
    /// assert_eq!(OptionValue::parse("42"), OptionValue::Int(42));
    /// assert_eq!(OptionValue::parse("0.5"), OptionValue::Float(0.5));
    /// assert_eq!(OptionValue::parse(".env"), OptionValue::Str(".env".into()));
    /// ```
    pub fn parse(text: &str) -> Self {
        match text {
            "true" | "True" => return Self::Bool(true),
            "false" | "False" => return Self::Bool(false),
            _ => {}
        }
        if let Ok(int) = text.parse::<i64>() {
            return Self::Int(int);
        }
        match text.parse::<f64>() {
            Ok(float) if float.is_finite() => Self::Float(float),
            _ => Self::Str(text.to_owned()),
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Bool(b) => (*b).into(),
            Self::Int(i) => (*i).into(),
            Self::Float(f) => (*f).into(),
            Self::Str(s) => s.as_str().into(),
            Self::List(items) => items.iter().map(Self::to_json).collect(),
        }
    }
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// A flag that `run` could not take as an extra option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unexpected argument `{0}`: extra options are written `--key value`, `--key=value` or `--flag`"
)]
pub struct BadExtraOption(pub String);

/// What the CLI hands to startup hooks (see `FastStream::on_startup_with`) and to handlers (as
/// `State<StartupOptions>`): the extra `--key value` flags of `run` and the worker id.
///
/// Keys are stored with dashes turned into underscores (`--env-file` is `env_file`).
///
/// ```
/// use faststream_core::StartupOptions;
/// let opts = StartupOptions::parse(["--env", ".env.dev", "--debug", "--workers-hint=3"]).unwrap();
/// assert_eq!(opts.str("env"), Some(".env.dev"));
/// assert_eq!(opts.bool("debug"), Some(true));
/// assert_eq!(opts.int("workers_hint"), Some(3));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartupOptions {
    values: BTreeMap<String, OptionValue>,
    worker_id: Option<u32>,
}

impl StartupOptions {
    /// No options; the worker id from `FASTSTREAM_WORKER_ID` when set.
    pub fn from_env() -> Self {
        Self {
            values: BTreeMap::new(),
            worker_id: std::env::var(WORKER_ID_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        }
    }

    /// Parses extra flags (`--key value`, `--key=value`, a lone `--flag` is `true`); the worker
    /// id comes from `FASTSTREAM_WORKER_ID`.
    pub fn parse<I, S>(args: I) -> Result<Self, BadExtraOption>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut opts = Self::from_env();
        let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let Some(name) = arg.strip_prefix("--").filter(|n| !n.is_empty()) else {
                return Err(BadExtraOption(arg.clone()));
            };
            let (key, value) = match name.split_once('=') {
                Some((key, value)) => (key, OptionValue::parse(value)),
                None => match args.get(i + 1) {
                    Some(next) if !next.starts_with("--") => {
                        i += 1;
                        (name, OptionValue::parse(next))
                    }
                    _ => (name, OptionValue::Bool(true)),
                },
            };
            if key.is_empty() {
                return Err(BadExtraOption(arg.clone()));
            }
            opts.insert(key.replace('-', "_"), value);
            i += 1;
        }
        Ok(opts)
    }

    /// Adds a value; a key given again collects a list.
    pub fn insert(&mut self, key: impl Into<String>, value: OptionValue) {
        use std::collections::btree_map::Entry;
        match self.values.entry(key.into()) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                OptionValue::List(items) => items.push(value),
                old => {
                    let first = std::mem::replace(old, OptionValue::List(Vec::new()));
                    *old = OptionValue::List(vec![first, value]);
                }
            },
        }
    }

    /// Sets the worker id.
    pub fn with_worker_id(mut self, worker_id: Option<u32>) -> Self {
        self.worker_id = worker_id;
        self
    }

    /// This process's worker index under `faststream run --workers N` (from
    /// `FASTSTREAM_WORKER_ID`, 0-based); `None` when not run as one of several workers.
    pub fn worker_id(&self) -> Option<u32> {
        self.worker_id
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&OptionValue> {
        self.values.get(key)
    }

    /// The value of `key` when it is text (numbers and booleans are not).
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            OptionValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` when it is a boolean.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            OptionValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value of `key` when it is an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            OptionValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of `key` when it is a number (integers included).
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            OptionValue::Float(f) => Some(*f),
            OptionValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The value of `key` converted through serde (e.g. into a `Vec<String>` or an enum).
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.get(key).map(|v| serde_json::from_value(v.to_json()))
    }

    /// Every option, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether no extra option was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_lists() {
        let opts = StartupOptions::parse([
            "--a", "1", "--a", "2", "--flag", "--ratio", "2.5", "--name", "x", "--off", "false",
        ])
        .unwrap();
        assert_eq!(
            opts.get("a"),
            Some(&OptionValue::List(vec![
                OptionValue::Int(1),
                OptionValue::Int(2)
            ]))
        );
        assert_eq!(opts.bool("flag"), Some(true));
        assert_eq!(opts.float("ratio"), Some(2.5));
        assert_eq!(opts.str("name"), Some("x"));
        assert_eq!(opts.bool("off"), Some(false));
        assert_eq!(opts.get_as::<Vec<i64>>("a").unwrap().unwrap(), vec![1, 2]);
    }

    #[test]
    fn rejects_positionals() {
        assert_eq!(
            StartupOptions::parse(["stray"]),
            Err(BadExtraOption("stray".into()))
        );
        assert!(StartupOptions::parse(["--=x"]).is_err());
    }

    #[test]
    fn negative_numbers_are_values() {
        let opts = StartupOptions::parse(["--offset", "-5"]).unwrap();
        assert_eq!(opts.int("offset"), Some(-5));
    }
}
