//! Validate: checks the parsed attribute arguments and the handler's signature and builds the
//! [`Subscriber`] model that `generate` turns into code. Every problem is collected, each with
//! the span of the offending tokens.
//!
//! # Parameters: classified by trait, not by name
//!
//! A procedural macro sees tokens, not types: it cannot know whether `Message` is the
//! framework's extractor or the user's payload struct of that name. So this module classifies
//! parameters only by what is written *on* them, and leaves "extractor or payload?" to the
//! expansion, where the compiler answers it per parameter from the concrete type's traits
//! (`faststream_core::extract::FromMessageParts` versus `serde::Deserialize`, see
//! `faststream_core::extract::param_probe`):
//!
//! - `#[header("name")]`: one header ([`ParamKind::Header`]);
//! - `#[extract]`: an extractor, whatever its type ([`ParamKind::Extract`]);
//! - `#[payload]`: the whole payload ([`ParamKind::Payload`]); every other unmarked parameter
//!   must then be an extractor, which the expansion checks by trait ([`ParamKind::NotPayload`]);
//! - anything else is a *slot* ([`ParamKind::Slot`]): an extractor or payload, decided by trait.
//!   With one slot ([`Payload::Single`]) that parameter goes through `FromMessage` as it is
//!   (the payload, decoded once, or an extractor). With several ([`Payload::Slots`]) the
//!   expansion counts the payload slots by trait: at most one takes the whole payload, several
//!   are the fields of a JSON object named like the parameters, each decoded once; extractor
//!   slots are never read from the JSON.

use crate::parse::{self, AttrArgs, Errors, KeyValue, Topic};
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, Ident, ItemFn, Lit, LitBool, LitInt, LitStr, Pat, Type,
};

/// Keys accepted by `#[subscriber]`.
const SUBSCRIBER_KEYS: &[(&str, Kind)] = &[
    ("group_id", Kind::Str),
    ("ack_policy", Kind::Choice(ACK_POLICIES)),
    ("auto_offset_reset", Kind::Choice(OFFSET_RESETS)),
    ("max_concurrency", Kind::Int),
    ("title", Kind::Str),
    ("description", Kind::Str),
    ("include_in_schema", Kind::Bool),
    ("no_reply", Kind::Bool),
    ("env", Kind::Str),
    ("default", Kind::Str),
    ("pattern", Kind::Pattern),
    ("batch", Kind::Bool),
    ("max_records", Kind::Int),
    ("batch_timeout_ms", Kind::Millis),
    ("lanes", Kind::Int),
    ("exactly_once", Kind::Bool),
    ("commit_interval_ms", Kind::Millis),
];

/// Keys accepted by `#[publisher]`.
const PUBLISHER_KEYS: &[(&str, Kind)] = &[
    ("title", Kind::Str),
    ("description", Kind::Str),
    ("include_in_schema", Kind::Bool),
    ("env", Kind::Str),
    ("default", Kind::Str),
    ("batch", Kind::Bool),
];

/// `ack_policy` values and their `AckPolicy` variants.
const ACK_POLICIES: &[(&str, &str)] = &[
    ("ack_after", "AckAfter"),
    ("nack_on_error", "NackOnError"),
    ("ack_first", "AckFirst"),
    ("manual", "Manual"),
    ("reject_on_error", "RejectOnError"),
];

/// `auto_offset_reset` values and their `OffsetReset` variants.
const OFFSET_RESETS: &[(&str, &str)] = &[("earliest", "Earliest"), ("latest", "Latest")];

/// The type an option's value must have.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int,
    /// A duration in milliseconds: an integer literal, zero allowed.
    Millis,
    /// A topic template: a string literal (checked here) or an expression evaluated when the
    /// subscriber is registered (a constant, a function call).
    Pattern,
    /// One of these (spelling, enum variant) pairs, as a string literal or a bare identifier.
    Choice(&'static [(&'static str, &'static str)]),
}

/// A checked option value.
enum Value {
    Str(LitStr),
    Bool(LitBool),
    Int(LitInt),
    /// A string literal or another expression, as written.
    Given(Topic),
    /// The enum variant to generate, spanned on the user's value.
    Variant(Ident),
}

/// A subscriber, checked: everything `generate` needs.
pub(crate) struct Subscriber {
    /// The function with the helper attributes removed (its body and signature are reused).
    pub(crate) func: ItemFn,
    /// Topics consumed (none with a pattern).
    pub(crate) topics: Vec<TopicSpec>,
    /// `pattern = "orders-{region}"`: the topic template read instead of topics.
    pub(crate) pattern: Option<Topic>,
    /// `group_id = "..."`.
    pub(crate) group_id: Option<LitStr>,
    /// `AckPolicy` variant.
    pub(crate) ack_policy: Option<Ident>,
    /// `OffsetReset` variant.
    pub(crate) auto_offset_reset: Option<Ident>,
    /// `max_concurrency = N`.
    pub(crate) max_concurrency: Option<LitInt>,
    /// `lanes = N`: key-ordered lanes per partition.
    pub(crate) lanes: Option<LitInt>,
    /// `exactly_once = true`, with `commit_interval_ms = N` when given.
    pub(crate) exactly_once: Option<ExactlyOnceSpec>,
    /// `title = "..."`.
    pub(crate) title: Option<LitStr>,
    /// `description = "..."`, else the doc comment.
    pub(crate) description: Option<String>,
    /// `include_in_schema = bool`.
    pub(crate) include_in_schema: Option<LitBool>,
    /// `no_reply = bool`.
    pub(crate) no_reply: Option<LitBool>,
    /// `batch = true`: a batch subscriber, with its limits.
    pub(crate) batch: Option<BatchSpec>,
    /// Stacked `#[publisher]`s, top to bottom.
    pub(crate) publishers: Vec<Publisher>,
    /// The parameters, in order.
    pub(crate) params: Vec<Param>,
    /// How the payload binds to the plain parameters.
    pub(crate) payload: Payload,
}

/// `batch = true, max_records = N, batch_timeout_ms = T`: how a batch subscriber groups
/// records (core's `SubscriberConfig::batch`).
pub(crate) struct BatchSpec {
    /// At most this many records per batch; no limit (`usize::MAX`) when `None`, as
    /// FastStream's `max_records=None`.
    pub(crate) max_records: Option<LitInt>,
    /// How long a batch waits after its first record; core's default (200 ms) when `None`.
    pub(crate) timeout_ms: Option<LitInt>,
}

/// One `#[publisher]`, checked.
pub(crate) struct Publisher {
    /// The attribute's path as written (`publisher`, `faststream::publisher`): the generated
    /// code imports it so the user's `use faststream::publisher` does not look unused.
    pub(crate) path: syn::Path,
    /// Destination topic.
    pub(crate) topic: TopicSpec,
    /// `title = "..."`.
    pub(crate) title: Option<LitStr>,
    /// `description = "..."`.
    pub(crate) description: Option<LitStr>,
    /// `include_in_schema = bool`.
    pub(crate) include_in_schema: Option<LitBool>,
    /// `batch = bool`: publish each element of a returned sequence as its own record.
    pub(crate) batch: Option<LitBool>,
}

/// Where a topic name comes from.
pub(crate) enum TopicSpec {
    /// A literal or an expression, as written.
    Given(Topic),
    /// `env = "VAR", default = "topic"`: the variable's value when the subscriber is
    /// registered, else the default.
    Env {
        /// The variable's name.
        var: LitStr,
        /// The topic when it is not set.
        default: LitStr,
    },
}

/// One handler parameter.
pub(crate) struct Param {
    /// Its type as written.
    pub(crate) ty: Type,
    /// The span of its pattern (the name), for errors about the parameter as a field.
    pub(crate) pat_span: Span,
    /// What it binds to.
    pub(crate) kind: ParamKind,
}

/// What a parameter binds to.
pub(crate) enum ParamKind {
    /// `#[extract]`: an extractor (`FromMessageParts`), passed through unchanged.
    Extract,
    /// `#[header("name")]`: one header, read through `Header<T, Marker>`.
    Header(LitStr),
    /// `#[payload]`: the whole payload, always decoded.
    Payload,
    /// An unmarked parameter next to `#[payload]`: must be an extractor (checked by trait).
    NotPayload,
    /// An unmarked parameter: an extractor or payload, decided by trait in the expansion.
    Slot {
        /// The JSON field name it has if the payload turns out to be an object of several
        /// payload parameters: the parameter's name, `None` for a pattern.
        name: Option<Ident>,
    },
}

/// How the payload binds to the parameters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    /// No `#[payload]` and no slot: the payload is not decoded.
    Ignored,
    /// `#[payload]` on the parameter at this index.
    Forced(usize),
    /// Exactly one slot, at this index: the whole payload or an extractor.
    Single(usize),
    /// Several slots, at these indexes: those that are payload by trait are the fields of a
    /// JSON object (or the whole payload, if only one of them is).
    Slots(Vec<usize>),
}

impl Subscriber {
    /// The handler's name as a string (raw identifiers without `r#`).
    pub(crate) fn name(&self) -> String {
        self.func.sig.ident.unraw().to_string()
    }

    /// The schema title: `{CamelCaseName}:Message:Payload`.
    pub(crate) fn payload_title(&self) -> String {
        format!("{}:Message:Payload", camel_case(&self.name()))
    }
}

/// `handle_msg` -> `HandleMsg`.
pub(crate) fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Checks a `#[subscriber]` and everything stacked on its function.
pub(crate) fn subscriber(args: AttrArgs, mut func: ItemFn) -> syn::Result<Subscriber> {
    let mut errors = Errors::default();

    // The attribute itself: topics (given or from `env`), or a pattern.
    let has_env = has_key(&args.options, "env");
    let pattern_key = args.options.iter().find(|o| o.key.unraw() == "pattern");
    match pattern_key {
        None if args.topics.is_empty() && !has_env => errors.push(
            Span::call_site(),
            "#[subscriber] needs at least one topic, e.g. #[subscriber(\"orders\")], or a pattern: #[subscriber(pattern = \"orders-{region}\")]",
        ),
        Some(KeyValue { key, value }) if !args.topics.is_empty() || has_env => errors.push_spanned(
            quote::quote!(#key = #value),
            "`pattern` reads every topic its template matches, so it takes no topics: remove the topics (and `env`) or the pattern",
        ),
        _ => {}
    }
    check_topics(&args.topics, &mut errors);
    let mut options = read_options(&args.options, SUBSCRIBER_KEYS, "#[subscriber]", &mut errors);
    let mut topics: Vec<TopicSpec> = args.topics.into_iter().map(TopicSpec::Given).collect();
    topics.extend(env_topic(&args.options, &mut options, &mut errors));
    let pattern = options.remove("pattern").and_then(|v| match v {
        Value::Given(pattern) => Some(pattern),
        _ => None,
    });
    let batch = batch_spec(&args.options, &mut options, &mut errors);
    let lanes = options.remove("lanes").and_then(as_int);
    if let (Some(lanes), Some(_)) = (&lanes, &batch) {
        errors.push(
            lanes.span(),
            "a batch subscriber cannot have `lanes`: a batch is a run of consecutive records of a partition, which lanes would split by key",
        );
    }

    let exactly_once = exactly_once_spec(&args.options, &mut options, &mut errors);
    if exactly_once.is_some() {
        if let Some(manual) = args.options.iter().find(|o| {
            o.key.unraw() == "ack_policy"
                && matches!(&o.value, Expr::Lit(ExprLit { lit: Lit::Str(v), .. }) if v.value() == "manual")
        }) {
            errors.push_spanned(
                &manual.value,
                "an exactly-once subscriber cannot acknowledge by hand: a record acknowledged after its handler returned would let the outputs of the records after it commit before its offset",
            );
        }
    }

    // Stacked attributes: publishers are consumed, a second subscriber is an error.
    let mut publishers = Vec::new();
    let mut kept = Vec::with_capacity(func.attrs.len());
    for attr in std::mem::take(&mut func.attrs) {
        if parse::is_publisher(&attr) {
            match AttrArgs::from_attribute(&attr) {
                Ok(args) => {
                    if let Some(p) = publisher(&attr, args, &mut errors) {
                        publishers.push(p);
                    }
                }
                Err(e) => errors.push_error(e),
            }
        } else {
            if parse::is_subscriber(&attr) {
                errors.push_spanned(&attr, "a function can have only one #[subscriber]");
            }
            kept.push(attr);
        }
    }
    func.attrs = kept;

    // The signature.
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.push(
            sig.fn_token.span,
            "#[subscriber] functions must be `async fn`",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(unsafety.span, "#[subscriber] functions cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.push_spanned(abi, "#[subscriber] functions cannot have an `extern` ABI");
    }
    if !sig.generics.params.is_empty() {
        errors.push_spanned(
            &sig.generics.params,
            "#[subscriber] functions cannot be generic: the payload and extractor types must be known to decode messages",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push_spanned(
            where_clause,
            "#[subscriber] functions cannot have a `where` clause",
        );
    }
    let (params, payload) = params(&mut func, &mut errors);

    let description = options
        .remove("description")
        .and_then(|v| as_str(&v).map(LitStr::value))
        .or_else(|| parse::doc_string(&func.attrs));
    errors.finish(Subscriber {
        topics,
        pattern,
        group_id: options.remove("group_id").and_then(|v| as_str(&v).cloned()),
        ack_policy: options.remove("ack_policy").and_then(as_variant),
        auto_offset_reset: options.remove("auto_offset_reset").and_then(as_variant),
        max_concurrency: options.remove("max_concurrency").and_then(|v| match v {
            Value::Int(i) => Some(i),
            _ => None,
        }),
        lanes,
        exactly_once,
        title: options.remove("title").and_then(|v| as_str(&v).cloned()),
        description,
        include_in_schema: options.remove("include_in_schema").and_then(as_bool),
        no_reply: options.remove("no_reply").and_then(as_bool),
        batch,
        publishers,
        params,
        payload,
        func,
    })
}

/// Checks one stacked `#[publisher]`.
fn publisher(attr: &Attribute, args: AttrArgs, errors: &mut Errors) -> Option<Publisher> {
    check_topics(&args.topics, errors);
    let mut options = read_options(&args.options, PUBLISHER_KEYS, "#[publisher]", errors);
    let env = env_topic(&args.options, &mut options, errors);
    let extra = if env.is_some() { 0 } else { 1 };
    for extra in args.topics.iter().skip(extra) {
        errors.push_spanned(
            extra,
            "a #[publisher] publishes to exactly one topic (a literal, a constant, or `env = \"...\"`); stack several #[publisher(\"...\")] attributes",
        );
    }
    let topic = env.or_else(|| args.topics.first().cloned().map(TopicSpec::Given));
    let Some(topic) = topic else {
        errors.push_spanned(
            attr,
            "#[publisher] needs a topic, e.g. #[publisher(\"invoices\")]",
        );
        return None;
    };
    Some(Publisher {
        path: attr.path().clone(),
        topic,
        title: options.remove("title").and_then(|v| as_str(&v).cloned()),
        description: options
            .remove("description")
            .and_then(|v| as_str(&v).cloned()),
        include_in_schema: options.remove("include_in_schema").and_then(as_bool),
        batch: options.remove("batch").and_then(as_bool),
    })
}

/// The batch settings of a subscriber: `max_records` and `batch_timeout_ms` only with
/// `batch = true` (each an error, on its key, otherwise).
fn batch_spec(
    written: &[KeyValue],
    options: &mut std::collections::HashMap<&'static str, Value>,
    errors: &mut Errors,
) -> Option<BatchSpec> {
    let batch = options.remove("batch").and_then(as_bool);
    let max_records = options.remove("max_records").and_then(as_int);
    let timeout_ms = options.remove("batch_timeout_ms").and_then(as_int);
    let on = batch.as_ref().is_some_and(|b| b.value);
    // `batch` written but unreadable (not a bool): its own error says so; nothing more here.
    let batch_invalid = batch.is_none() && has_key(written, "batch");
    if !on && !batch_invalid {
        for key in written
            .iter()
            .map(|o| &o.key)
            .filter(|k| k.unraw() == "max_records" || k.unraw() == "batch_timeout_ms")
        {
            errors.push(
                key.span(),
                format!(
                    "`{}` only applies to a batch subscriber: add `batch = true`",
                    key.unraw()
                ),
            );
        }
    }
    on.then_some(BatchSpec {
        max_records,
        timeout_ms,
    })
}

/// `exactly_once = true` and its commit interval.
pub(crate) struct ExactlyOnceSpec {
    /// `commit_interval_ms = N`.
    pub(crate) interval_ms: Option<LitInt>,
}

fn exactly_once_spec(
    written: &[KeyValue],
    options: &mut std::collections::HashMap<&'static str, Value>,
    errors: &mut Errors,
) -> Option<ExactlyOnceSpec> {
    let on = options
        .remove("exactly_once")
        .and_then(as_bool)
        .is_some_and(|b| b.value);
    let interval_ms = options.remove("commit_interval_ms").and_then(as_int);
    if !on {
        if let Some(key) = written
            .iter()
            .map(|o| &o.key)
            .find(|k| k.unraw() == "commit_interval_ms")
        {
            errors.push(
                key.span(),
                "`commit_interval_ms` only applies to an exactly-once subscriber: add `exactly_once = true`",
            );
        }
    }
    on.then_some(ExactlyOnceSpec { interval_ms })
}

fn check_topics(topics: &[Topic], errors: &mut Errors) {
    for topic in topics {
        if let Topic::Lit(topic) = topic {
            if topic.value().trim().is_empty() {
                errors.push(topic.span(), "topic names cannot be empty");
            }
        }
    }
}

/// Checks a literal `pattern` template, the syntax `faststream_core::pattern::TopicPattern`
/// reads: literal text and `{name}` parameters. Core reads anything (an unclosed `{` is literal
/// text), but literal text can only match Kafka topic names (letters, digits, `.`, `_`, `-`),
/// so anything else (regex syntax, a stray brace) would match no topic at all. Parameters are
/// named with letters, digits and `_` (FastStream's `{name}`), each name once, so that
/// `Path<T>` can take them as fields. A template starting with `^` is a regular expression
/// (librdkafka's rule for topic names), checked by compiling it. Returns whether the template
/// is fine.
fn check_pattern(template: &LitStr, errors: &mut Errors) -> bool {
    let text = template.value();
    let span = template.span();
    if text.trim().is_empty() {
        errors.push(
            span,
            "a pattern cannot be empty, e.g. pattern = \"orders-{region}\"",
        );
        return false;
    }
    if text.starts_with('^') {
        // The parser the regex crate runs first: its errors are the ones `Regex::new` gives.
        return match regex_syntax::Parser::new().parse(&text) {
            Ok(_) => true,
            Err(err) => {
                errors.push(
                    span,
                    format!("the pattern `{text}` is not a valid regular expression: {err}"),
                );
                false
            }
        };
    }
    let mut ok = true;
    let mut fail = |message: String| {
        errors.push(span, message);
        ok = false;
    };
    let mut names: Vec<&str> = Vec::new();
    let mut illegal: Vec<char> = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let Some(open) = rest.find(['{', '}']) else {
            illegal.extend(rest.chars().filter(|c| !is_topic_char(*c)));
            break;
        };
        illegal.extend(rest[..open].chars().filter(|c| !is_topic_char(*c)));
        if rest[open..].starts_with('}') {
            fail(format!(
                "`}}` without its `{{` in the pattern `{text}`: parameters are written `{{name}}`"
            ));
            rest = &rest[open + 1..];
            continue;
        }
        let Some(close) = rest[open + 1..].find('}').map(|c| open + 1 + c) else {
            fail(format!(
                "unclosed `{{` in the pattern `{text}`: parameters are written `{{name}}`"
            ));
            break;
        };
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            fail(format!(
                "the pattern parameter `{{{name}}}` needs a name of letters, digits and `_`, e.g. `{{region}}`"
            ));
        } else if names.contains(&name) {
            fail(format!(
                "the pattern parameter `{{{name}}}` appears twice; each parameter needs its own name"
            ));
        } else {
            names.push(name);
        }
        rest = &rest[close + 1..];
    }
    if !illegal.is_empty() {
        let mut shown: Vec<String> = Vec::new();
        for c in illegal {
            let c = format!("`{c}`");
            if !shown.contains(&c) {
                shown.push(c);
            }
        }
        fail(format!(
            "{} cannot be part of a Kafka topic name (letters, digits, `.`, `_`, `-`): `pattern` takes a template such as \"orders-{{region}}\", or a regular expression starting with `^`",
            shown.join(", ")
        ));
    }
    ok
}

/// Whether Kafka allows `c` in a topic name.
fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Whether `key = ...` was written (whatever its value).
fn has_key(options: &[KeyValue], key: &str) -> bool {
    options.iter().any(|o| o.key.unraw() == key)
}

/// The topic of `env = "VAR", default = "topic"`, if given: both must be there, as non-empty
/// string literals.
fn env_topic(
    written: &[KeyValue],
    options: &mut std::collections::HashMap<&'static str, Value>,
    errors: &mut Errors,
) -> Option<TopicSpec> {
    let var = options.remove("env");
    let default = options.remove("default");
    let var = var.and_then(|v| as_str(&v).cloned());
    let default = default.and_then(|v| as_str(&v).cloned());
    for lit in var.iter().chain(&default) {
        if lit.value().trim().is_empty() {
            errors.push(lit.span(), "cannot be empty");
        }
    }
    match (var, default) {
        (Some(var), Some(default)) => Some(TopicSpec::Env { var, default }),
        (Some(var), None) if !has_key(written, "default") => {
            errors.push(
                var.span(),
                format!(
                    "`env = \"{}\"` needs `default = \"...\"`: the topic used when the variable is not set",
                    var.value()
                ),
            );
            None
        }
        (None, Some(default)) if !has_key(written, "env") => {
            errors.push(
                default.span(),
                "`default` is the topic used when the `env` variable is not set; add `env = \"VARIABLE\"`",
            );
            None
        }
        _ => None,
    }
}

fn as_str(value: &Value) -> Option<&LitStr> {
    match value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn as_bool(value: Value) -> Option<LitBool> {
    match value {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

fn as_int(value: Value) -> Option<LitInt> {
    match value {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

fn as_variant(value: Value) -> Option<Ident> {
    match value {
        Value::Variant(v) => Some(v),
        _ => None,
    }
}

/// Checks `key = value` options against `spec`: unknown keys, duplicates, value types.
fn read_options(
    options: &[KeyValue],
    spec: &[(&'static str, Kind)],
    what: &str,
    errors: &mut Errors,
) -> std::collections::HashMap<&'static str, Value> {
    let mut seen = std::collections::HashMap::new();
    let mut keys = std::collections::HashSet::new();
    for KeyValue { key, value } in options {
        let name = key.unraw().to_string();
        let Some((name, kind)) = spec.iter().find(|(k, _)| *k == name).copied() else {
            let accepted = spec.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
            errors.push(
                key.span(),
                format!("unknown key `{name}` in {what}; accepted keys: {accepted}"),
            );
            continue;
        };
        if !keys.insert(name) {
            errors.push(key.span(), format!("duplicate key `{name}`"));
            continue;
        }
        if let Some(value) = read_value(name, kind, value, errors) {
            seen.insert(name, value);
        }
    }
    seen
}

fn read_value(name: &str, kind: Kind, value: &Expr, errors: &mut Errors) -> Option<Value> {
    let lit = match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        _ => None,
    };
    match (kind, lit) {
        (Kind::Str, Some(Lit::Str(s))) => return Some(Value::Str(s.clone())),
        (Kind::Bool, Some(Lit::Bool(b))) => return Some(Value::Bool(b.clone())),
        (Kind::Millis, Some(Lit::Int(i))) => match i.base10_parse::<u64>() {
            Ok(_) if i.suffix().is_empty() || i.suffix() == "u64" => {
                return Some(Value::Int(i.clone()))
            }
            Ok(_) => errors.push(
                i.span(),
                format!("`{name}` is in milliseconds (a `u64`); drop the `{}` suffix", i.suffix()),
            ),
            Err(e) => errors.push(
                i.span(),
                format!("`{name}` expects milliseconds, a non-negative integer: {e}"),
            ),
        },
        (Kind::Millis, _) => errors.push_spanned(
            value,
            format!("`{name}` expects an integer literal in milliseconds, e.g. {name} = 200"),
        ),
        (Kind::Pattern, Some(Lit::Str(s))) => {
            return check_pattern(s, errors).then(|| Value::Given(Topic::Lit(s.clone())))
        }
        (Kind::Pattern, Some(_)) => errors.push_spanned(
            value,
            format!("`{name}` expects a string literal or a constant, e.g. {name} = \"orders-{{region}}\""),
        ),
        (Kind::Pattern, None) => return Some(Value::Given(Topic::Expr(Box::new(value.clone())))),
        (Kind::Int, Some(Lit::Int(i))) => match i.base10_parse::<usize>() {
            Ok(0) => errors.push(i.span(), format!("`{name}` must be at least 1")),
            Ok(_) if i.suffix().is_empty() || i.suffix() == "usize" => {
                return Some(Value::Int(i.clone()))
            }
            Ok(_) => errors.push(
                i.span(),
                format!("`{name}` is a `usize`; drop the `{}` suffix", i.suffix()),
            ),
            Err(e) => errors.push(
                i.span(),
                format!("`{name}` expects a positive integer: {e}"),
            ),
        },
        (Kind::Choice(choices), _) => {
            let (spelling, span) = match (value, lit) {
                (_, Some(Lit::Str(s))) => (s.value(), s.span()),
                (Expr::Path(p), _) if p.path.get_ident().is_some() => {
                    let ident = p.path.get_ident()?;
                    (ident.unraw().to_string(), ident.span())
                }
                _ => {
                    let expected = choices
                        .iter()
                        .map(|(s, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ");
                    errors.push_spanned(value, format!("`{name}` expects one of: {expected}"));
                    return None;
                }
            };
            if let Some((_, variant)) = choices.iter().find(|(s, _)| *s == spelling) {
                return Some(Value::Variant(Ident::new(variant, span)));
            }
            let expected = choices
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", ");
            errors.push(
                span,
                format!("unknown {name} `{spelling}`; expected one of: {expected}"),
            );
        }
        (Kind::Str, _) => errors.push_spanned(
            value,
            format!("`{name}` expects a string literal, e.g. {name} = \"...\""),
        ),
        (Kind::Bool, _) => {
            errors.push_spanned(value, format!("`{name}` expects `true` or `false`"))
        }
        (Kind::Int, _) => errors.push_spanned(
            value,
            format!("`{name}` expects an integer literal, e.g. {name} = 4"),
        ),
    }
    None
}

/// Classifies the parameters and removes their marker attributes from `func`.
fn params(func: &mut ItemFn, errors: &mut Errors) -> (Vec<Param>, Payload) {
    let mut params = Vec::new();
    let mut forced: Option<usize> = None;
    for (index, input) in func.sig.inputs.iter_mut().enumerate() {
        let arg = match input {
            FnArg::Receiver(receiver) => {
                errors.push_spanned(
                    &*receiver,
                    "#[subscriber] must be on a free function, not a method: remove `self`",
                );
                continue;
            }
            FnArg::Typed(arg) => arg,
        };
        let mut kind = None::<(ParamKind, Span)>;
        for attr in std::mem::take(&mut arg.attrs) {
            if !parse::is_param_marker(&attr) {
                arg.attrs.push(attr);
                continue;
            }
            let marker = match attr.path().get_ident() {
                Some(ident) => ident.to_string(),
                None => continue,
            };
            let this = match marker.as_str() {
                "header" => match attr.parse_args::<LitStr>() {
                    Ok(name) if name.value().is_empty() => {
                        errors.push(name.span(), "header names cannot be empty");
                        continue;
                    }
                    Ok(name) => ParamKind::Header(name),
                    Err(_) => {
                        errors
                            .push_spanned(&attr, "expected a header name: #[header(\"x-tenant\")]");
                        continue;
                    }
                },
                "payload" | "extract" => {
                    if let Err(e) = attr.meta.require_path_only() {
                        errors.push(e.span(), format!("#[{marker}] takes no arguments"));
                    }
                    if marker == "payload" {
                        match forced {
                            Some(_) => {
                                errors.push_spanned(&attr, "only one parameter can be #[payload]")
                            }
                            None => forced = Some(index),
                        }
                        ParamKind::Payload
                    } else {
                        ParamKind::Extract
                    }
                }
                _ => continue,
            };
            if kind.is_some() {
                errors.push_spanned(
                    &attr,
                    "a parameter takes at most one of #[header(..)], #[payload], #[extract]",
                );
            } else {
                kind = Some((this, attr.span()));
            }
        }
        if let Type::ImplTrait(it) = &*arg.ty {
            errors.push_spanned(
                it,
                "#[subscriber] functions cannot take `impl Trait` parameters; name the type",
            );
        }
        let kind = match kind {
            Some((kind, _)) => kind,
            None => ParamKind::Slot { name: None },
        };
        if let ParamKind::Slot { .. } | ParamKind::Payload = kind {
            if let Type::Reference(r) = &*arg.ty {
                errors.push_spanned(
                    r,
                    "payload parameters must be owned types, e.g. String instead of &str",
                );
            }
        }
        params.push((
            Param {
                ty: (*arg.ty).clone(),
                pat_span: arg.pat.span(),
                kind,
            },
            (*arg.pat).clone(),
        ));
    }

    // `forced` counts receivers; map it to the index among typed parameters.
    let has_receiver = func.sig.receiver().is_some();
    let forced = forced.map(|i| if has_receiver { i.saturating_sub(1) } else { i });
    let slots: Vec<usize> = params
        .iter()
        .enumerate()
        .filter(|(_, (p, _))| matches!(p.kind, ParamKind::Slot { .. }))
        .map(|(i, _)| i)
        .collect();
    let payload = match (forced, slots.len()) {
        (Some(forced), _) => {
            // Whatever is left unmarked must be an extractor; the expansion checks it by trait.
            for &i in &slots {
                params[i].0.kind = ParamKind::NotPayload;
            }
            Payload::Forced(forced)
        }
        (None, 0) => Payload::Ignored,
        (None, 1) => Payload::Single(slots[0]),
        (None, _) => {
            for &i in &slots {
                let (param, pat) = &mut params[i];
                if let Pat::Ident(p) = pat {
                    if p.by_ref.is_none() && p.subpat.is_none() {
                        param.kind = ParamKind::Slot {
                            name: Some(p.ident.clone()),
                        };
                    }
                }
            }
            Payload::Slots(slots)
        }
    };
    (params.into_iter().map(|(p, _)| p).collect(), payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn check(args: proc_macro2::TokenStream, func: ItemFn) -> syn::Result<Subscriber> {
        subscriber(AttrArgs::from_tokens(args).unwrap(), func)
    }

    fn messages(result: syn::Result<Subscriber>) -> Vec<String> {
        match result {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn camel_case_names() {
        assert_eq!(camel_case("handle_msg"), "HandleMsg");
        assert_eq!(camel_case("_private__thing"), "PrivateThing");
        assert_eq!(camel_case("x"), "X");
    }

    #[test]
    fn topics_from_constants_and_env() {
        let sub = check(
            quote!(ORDERS, env = "REFUNDS_TOPIC", default = "refunds"),
            parse_quote! {
                #[publisher(env = "OUT", default = "out")]
                #[publisher(topics::AUDIT)]
                async fn f(n: i64) -> i64 { n }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            sub.topics.as_slice(),
            [TopicSpec::Given(Topic::Expr(_)), TopicSpec::Env { var, default }]
                if var.value() == "REFUNDS_TOPIC" && default.value() == "refunds"
        ));
        assert!(matches!(sub.publishers[0].topic, TopicSpec::Env { .. }));
        assert!(matches!(
            sub.publishers[1].topic,
            TopicSpec::Given(Topic::Expr(_))
        ));
        // Only `env`: the subscriber still has a topic.
        let sub = check(
            quote!(env = "T", default = "t"),
            parse_quote!(
                async fn f() {}
            ),
        );
        assert!(sub.is_ok());
    }

    #[test]
    fn bad_env_topics() {
        let errors = messages(check(
            quote!(env = ORDERS, default = "x"),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert_eq!(
            errors,
            ["`env` expects a string literal, e.g. env = \"...\""]
        );
        let errors = messages(check(
            quote!(env = "T"),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert_eq!(
            errors,
            ["`env = \"T\"` needs `default = \"...\"`: the topic used when the variable is not set"]
        );
        let errors = messages(check(
            quote!("a", default = "b"),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("`default` is the topic used"));
        let errors = messages(check(
            quote!("a"),
            parse_quote! {
                #[publisher("x", env = "O", default = "o")]
                async fn f() {}
            },
        ));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("a #[publisher] publishes to exactly one topic"));
    }

    #[test]
    fn full_subscriber() {
        let sub = check(
            quote!("a", "b", group_id = "g", ack_policy = "nack_on_error", auto_offset_reset = latest,
                   max_concurrency = 4, include_in_schema = false),
            parse_quote! {
                /// Registers users.
                #[publisher("out", title = "P")]
                #[publisher("audit")]
                async fn handle_msg(user: String, user_id: i64, key: faststream::Key<Option<String>>,
                                    #[header("x-tenant")] tenant: Option<String>) -> String { user }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sub.name(), "handle_msg");
        assert_eq!(sub.payload_title(), "HandleMsg:Message:Payload");
        assert_eq!(sub.topics.len(), 2);
        assert_eq!(sub.group_id.unwrap().value(), "g");
        assert_eq!(sub.ack_policy.unwrap(), "NackOnError");
        assert_eq!(sub.auto_offset_reset.unwrap(), "Latest");
        assert_eq!(
            sub.max_concurrency
                .unwrap()
                .base10_parse::<usize>()
                .unwrap(),
            4
        );
        assert!(!sub.include_in_schema.unwrap().value);
        assert_eq!(sub.description.as_deref(), Some("Registers users."));
        assert_eq!(sub.publishers.len(), 2);
        assert!(
            matches!(&sub.publishers[0].topic, TopicSpec::Given(Topic::Lit(l)) if l.value() == "out")
        );
        assert_eq!(sub.publishers[0].title.as_ref().unwrap().value(), "P");
        // No name is trusted: the key is a slot too, classified by trait in the expansion.
        assert_eq!(sub.payload, Payload::Slots(vec![0, 1, 2]));
        assert!(matches!(&sub.params[2].kind, ParamKind::Slot { name: Some(n) } if n == "key"));
        assert!(matches!(&sub.params[3].kind, ParamKind::Header(h) if h.value() == "x-tenant"));
        assert!(sub.func.attrs.iter().all(|a| !parse::is_publisher(a)));
        assert!(sub.func.sig.inputs.iter().all(|i| match i {
            FnArg::Typed(t) => t.attrs.is_empty(),
            FnArg::Receiver(_) => false,
        }));
    }

    #[test]
    fn description_key_wins_over_doc() {
        let sub = check(
            quote!("a", description = "D"),
            parse_quote!(
                /// doc
                async fn f() {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sub.description.as_deref(), Some("D"));
        assert_eq!(sub.payload, Payload::Ignored);
    }

    #[test]
    fn payload_binding() {
        let one = check(
            quote!("a"),
            parse_quote!(
                async fn f(Wrapper(x): Wrapper, m: Meta) {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Two slots; the pattern has no field name (checked by trait in the expansion).
        assert_eq!(one.payload, Payload::Slots(vec![0, 1]));
        assert!(matches!(one.params[0].kind, ParamKind::Slot { name: None }));
        assert!(matches!(&one.params[1].kind, ParamKind::Slot { name: Some(n) } if n == "m"));
        let forced = check(
            quote!("a"),
            parse_quote!(
                async fn f(k: Key<String>, #[payload] body: Vec<u8>) {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(forced.payload, Payload::Forced(1));
        assert!(matches!(forced.params[0].kind, ParamKind::NotPayload));
        let custom = check(
            quote!("a"),
            parse_quote!(
                async fn f(#[extract] t: Tenant, n: i64) {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(custom.payload, Payload::Single(1));
        assert!(matches!(custom.params[0].kind, ParamKind::Extract));
        // A user type named like a framework extractor is not recognised by its name.
        let named = check(
            quote!("a"),
            parse_quote!(
                async fn f(message: Message) {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(named.payload, Payload::Single(0));
    }

    #[test]
    fn every_error_is_reported() {
        let errors = messages(check(
            quote!(
                group_id = 1,
                colour = "red",
                ack_policy = sometimes,
                group_id = "x"
            ),
            parse_quote! {
                #[publisher]
                fn f<T>(&self, #[payload] a: String, b: &str, (c, d): (i64, i64)) where T: Clone {}
            },
        ));
        let expected = [
            "needs at least one topic",
            "`group_id` expects a string literal",
            "unknown key `colour` in #[subscriber]; accepted keys: group_id, ack_policy",
            "unknown ack_policy `sometimes`; expected one of: ack_after, nack_on_error, ack_first, manual",
            "duplicate key `group_id`",
            "#[publisher] needs a topic",
            "must be `async fn`",
            "cannot be generic",
            "cannot have a `where` clause",
            "not a method",
            "must be owned types",
        ];
        for e in expected {
            assert!(
                errors.iter().any(|m| m.contains(e)),
                "missing {e:?} in {errors:#?}"
            );
        }
    }

    #[test]
    fn patterns_are_slots_without_names() {
        // Whether `(b, c)` needs a field name depends on the other slot's traits: the
        // expansion checks it, so validation accepts it.
        let sub = check(
            quote!("a"),
            parse_quote!(
                async fn f(r#type: i64, (b, c): (i64, i64), ref d: String) {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sub.payload, Payload::Slots(vec![0, 1, 2]));
        assert!(matches!(&sub.params[0].kind, ParamKind::Slot { name: Some(n) } if n == "r#type"));
        assert!(matches!(sub.params[1].kind, ParamKind::Slot { name: None }));
        assert!(matches!(sub.params[2].kind, ParamKind::Slot { name: None }));
    }

    #[test]
    fn only_one_payload_marker() {
        let errors = messages(check(
            quote!("a"),
            parse_quote!(
                async fn f(#[payload] a: String, #[payload] b: String) {}
            ),
        ));
        assert_eq!(errors, ["only one parameter can be #[payload]"]);
    }

    #[test]
    fn publisher_options() {
        let errors = messages(check(
            quote!("a"),
            parse_quote! {
                #[publisher("x", "y", group_id = "g", include_in_schema = "yes")]
                async fn f() {}
            },
        ));
        assert!(errors.iter().any(|m| m.contains("exactly one topic")));
        assert!(errors
            .iter()
            .any(|m| m.contains("unknown key `group_id` in #[publisher]")));
        assert!(errors
            .iter()
            .any(|m| m.contains("`include_in_schema` expects `true` or `false`")));
    }

    #[test]
    fn pattern_instead_of_topics() {
        let sub = check(
            quote!(pattern = "orders-{region}.{kind}", group_id = "g"),
            parse_quote!(
                async fn f(n: i64) {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(sub.topics.is_empty());
        assert!(
            matches!(&sub.pattern, Some(Topic::Lit(l)) if l.value() == "orders-{region}.{kind}")
        );
        let sub = check(
            quote!(pattern = patterns::ORDERS),
            parse_quote!(
                async fn f() {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(sub.pattern, Some(Topic::Expr(_))));
        // Adjacent parameters and a template without parameters are fine.
        for template in [
            "{a}{b}",
            "orders",
            "a_b.c-{x_1}",
            "^orders-.*",
            r"^o-(?P<r>\w+)",
        ] {
            let sub = check(
                quote!(pattern = #template),
                parse_quote!(
                    async fn f() {}
                ),
            );
            assert!(sub.is_ok(), "{template}");
        }
    }

    #[test]
    fn pattern_excludes_topics() {
        for args in [
            quote!("orders", pattern = "orders-{region}"),
            quote!(pattern = "orders-{region}", env = "T", default = "t"),
        ] {
            let errors = messages(check(
                args,
                parse_quote!(
                    async fn f() {}
                ),
            ));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("`pattern` reads every topic its template matches"));
        }
        let errors = messages(check(
            quote!(group_id = "g"),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert!(errors[0].contains("or a pattern"), "{errors:?}");
    }

    #[test]
    fn bad_patterns() {
        let cases = [
            ("", "a pattern cannot be empty"),
            ("orders-*", "`*` cannot be part of a Kafka topic name"),
            (
                "^orders-(",
                "the pattern `^orders-(` is not a valid regular expression",
            ),
            ("orders-{region", "unclosed `{`"),
            ("orders-region}", "`}` without its `{`"),
            ("orders-{}", "the pattern parameter `{}` needs a name"),
            (
                "orders-{re gion}",
                "the pattern parameter `{re gion}` needs a name",
            ),
            ("{a}-{a}", "the pattern parameter `{a}` appears twice"),
        ];
        for (template, expected) in cases {
            let errors = messages(check(
                quote!(pattern = #template),
                parse_quote!(
                    async fn f() {}
                ),
            ));
            assert_eq!(errors.len(), 1, "{template}: {errors:?}");
            assert!(errors[0].starts_with(expected), "{template}: {errors:?}");
        }
        let errors = messages(check(
            quote!(pattern = 42),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert_eq!(
            errors,
            ["`pattern` expects a string literal or a constant, e.g. pattern = \"orders-{region}\""]
        );
    }

    #[test]
    fn batch_keys() {
        let sub = check(
            quote!("in", batch = true, max_records = 100, batch_timeout_ms = 0),
            parse_quote! {
                #[publisher("out", batch = true)]
                async fn f(n: Vec<i64>) -> Vec<i64> { n }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let batch = sub.batch.expect("a batch subscriber");
        assert_eq!(
            batch.max_records.unwrap().base10_parse::<usize>().unwrap(),
            100
        );
        assert_eq!(batch.timeout_ms.unwrap().base10_parse::<u64>().unwrap(), 0);
        assert!(sub.publishers[0].batch.as_ref().unwrap().value);
        let sub = check(
            quote!("in", batch = false),
            parse_quote!(
                async fn f() {}
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(sub.batch.is_none());
        for args in [
            quote!("in", max_records = 10),
            quote!("in", batch = false, batch_timeout_ms = 10),
        ] {
            let errors = messages(check(
                args,
                parse_quote!(
                    async fn f() {}
                ),
            ));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].ends_with("only applies to a batch subscriber: add `batch = true`"));
        }
        let errors = messages(check(
            quote!(
                "in",
                batch = "yes",
                max_records = 0,
                batch_timeout_ms = "200"
            ),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert_eq!(
            errors,
            [
                "`batch` expects `true` or `false`",
                "`max_records` must be at least 1",
                "`batch_timeout_ms` expects an integer literal in milliseconds, e.g. batch_timeout_ms = 200",
            ]
        );
    }

    #[test]
    fn max_concurrency_must_be_positive() {
        let errors = messages(check(
            quote!("a", max_concurrency = 0),
            parse_quote!(
                async fn f() {}
            ),
        ));
        assert!(errors[0].contains("at least 1"));
    }
}
