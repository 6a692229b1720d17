//! Topic patterns with path parameters, FastStream's `pattern="orders-{region}"` (or a regular
//! expression, `pattern="^orders-.*"`): the subscriber reads every topic the pattern matches
//! (now and, on Kafka, created later), and handlers take the parameters with the [`Path`]
//! extractor.

/// A topic template such as `orders-{region}`: literal text and `{name}` parameters. A
/// parameter matches one or more characters, as few as possible before the literal text that
/// follows it (the last one takes the rest).
///
/// A template starting with `^` is a regular expression instead (librdkafka's rule for topic
/// names), matched from the start of the topic name; its named groups (`(?P<region>\w+)`) are
/// the path parameters.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    template: String,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    Template(Vec<Part>),
    /// A regular expression, or why it does not compile.
    Regex(Result<regex::Regex, String>),
}

impl PartialEq for TopicPattern {
    fn eq(&self, other: &Self) -> bool {
        self.template == other.template
    }
}

impl Eq for TopicPattern {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

impl TopicPattern {
    /// Parses `template`; a `{` without its `}` is literal text.
    ///
    /// ```
    /// use faststream_core::pattern::TopicPattern;
    ///
    /// let pattern = TopicPattern::new("orders-{region}.{kind}");
    /// assert_eq!(pattern.regex(), r"^orders-(.+)\.(.+)$");
    /// assert_eq!(
    ///     pattern.captures("orders-eu.paid"),
    ///     Some(vec![("region", "eu"), ("kind", "paid")])
    /// );
    /// assert_eq!(pattern.captures("invoices-eu"), None);
    /// ```
    pub fn new(template: impl Into<String>) -> Self {
        let template = template.into();
        if template.starts_with('^') {
            let regex = regex::Regex::new(&template).map_err(|err| err.to_string());
            return Self {
                template,
                form: Form::Regex(regex),
            };
        }
        let mut parts = Vec::new();
        let mut rest = template.as_str();
        while !rest.is_empty() {
            match rest.find('{') {
                Some(open) => {
                    let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                        parts.push(Part::Literal(rest.to_owned()));
                        break;
                    };
                    if open > 0 {
                        parts.push(Part::Literal(rest[..open].to_owned()));
                    }
                    parts.push(Part::Param(rest[open + 1..close].to_owned()));
                    rest = &rest[close + 1..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    break;
                }
            }
        }
        Self {
            template,
            form: Form::Template(parts),
        }
    }

    /// Why the pattern cannot be used (a regular expression that does not compile); the app
    /// refuses to start a subscriber with it.
    ///
    /// ```
    /// use faststream_core::pattern::TopicPattern;
    /// assert!(TopicPattern::new("^orders-(").error().is_some());
    /// assert!(TopicPattern::new("^orders-.*").error().is_none());
    /// ```
    pub fn error(&self) -> Option<&str> {
        match &self.form {
            Form::Regex(Err(err)) => Some(err),
            _ => None,
        }
    }

    /// The pattern with `prefix` (a router's) in front of the topic names it matches.
    pub fn prefixed(&self, prefix: &str) -> TopicPattern {
        match self.template.strip_prefix('^') {
            Some(regex) => TopicPattern::new(format!("^{}{regex}", regex::escape(prefix))),
            None => TopicPattern::new(format!("{prefix}{}", self.template)),
        }
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The regular expression the broker subscribes with (librdkafka reads a topic name
    /// starting with `^` as one). librdkafka's regex engine knows no named groups, so a
    /// regular-expression pattern's `(?P<name>` and `(?<name>` become plain groups here (the
    /// names still give [`Path`] its parameters).
    pub fn regex(&self) -> String {
        let parts = match &self.form {
            Form::Template(parts) => parts,
            Form::Regex(_) => return without_group_names(&self.template),
        };
        // Greedy and lazy groups match the same topics; only `captures` needs to split.
        let mut regex = String::from("^");
        for part in parts {
            match part {
                Part::Literal(text) => {
                    for c in text.chars() {
                        if r"\.+*?()[]{}^$|".contains(c) {
                            regex.push('\\');
                        }
                        regex.push(c);
                    }
                }
                Part::Param(_) => regex.push_str("(.+)"),
            }
        }
        regex.push('$');
        regex
    }

    /// The parameters of `topic`, in template order, or `None` when it does not match.
    pub fn captures<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        let parts = match &self.form {
            Form::Template(parts) => parts,
            Form::Regex(Ok(regex)) => {
                let found = regex.captures(topic)?;
                let named = regex.capture_names().flatten();
                return Some(
                    named
                        .filter_map(|name| Some((name, found.name(name)?.as_str())))
                        .collect(),
                );
            }
            Form::Regex(Err(_)) => return None,
        };
        let mut captures = Vec::new();
        let mut rest = topic;
        let mut parts = parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(text) => rest = rest.strip_prefix(text.as_str())?,
                Part::Param(name) => {
                    let end = match parts.peek() {
                        // At least one character, then up to the next literal.
                        Some(Part::Literal(next)) => {
                            let first = rest.chars().next()?.len_utf8();
                            first + rest[first..].find(next.as_str())?
                        }
                        // Adjacent parameters: one character each but the last.
                        Some(Part::Param(_)) => rest.chars().next()?.len_utf8(),
                        None => rest.len(),
                    };
                    if end == 0 {
                        return None;
                    }
                    captures.push((name.as_str(), &rest[..end]));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(captures)
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        self.captures(topic).is_some()
    }
}

/// `regex` with its named groups made plain groups: `(?P<name>` and `(?<name>` become `(`.
fn without_group_names(regex: &str) -> String {
    let mut out = String::with_capacity(regex.len());
    let mut rest = regex;
    while let Some(at) = rest.find("(?") {
        let escaped = rest[..at].chars().rev().take_while(|c| *c == '\\').count() % 2 == 1;
        let after = &rest[at + 2..];
        let name_start = after
            .strip_prefix("P<")
            .or_else(|| after.strip_prefix('<'))
            .filter(|n| !n.starts_with(['=', '!']));
        let named = name_start.and_then(|n| {
            let end = n.find('>')?;
            n[..end]
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_')
                .then(|| &n[end + 1..])
        });
        match named.filter(|_| !escaped) {
            Some(tail) => {
                out.push_str(&rest[..at]);
                out.push('(');
                rest = tail;
            }
            None => {
                out.push_str(&rest[..at + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The path parameters of a pattern subscriber's topic (see [`TopicPattern`]), decoded into
/// `T`: a struct with a field per parameter, a `HashMap<String, String>`, or (for a single
/// parameter) the value itself.
///
/// ```
/// use faststream_core::pattern::Path;
/// use faststream_core::SubscriberConfig;
///
/// let config = SubscriberConfig::new("orders", Vec::<String>::new()).pattern("orders-{region}");
/// let handler = |Path(region): Path<String>, body: String| async move {
///     format!("{region}: {body}")
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_are_non_greedy_up_to_the_next_literal() {
        let p = TopicPattern::new("logs.{service}.{level}");
        assert_eq!(
            p.captures("logs.api.v2.error"),
            Some(vec![("service", "api"), ("level", "v2.error")])
        );
        assert_eq!(
            p.captures("logs..error"),
            None,
            "a parameter is never empty"
        );
        assert_eq!(p.captures("logs.api"), None);
        assert_eq!(TopicPattern::new("plain").captures("plain"), Some(vec![]));
        assert_eq!(TopicPattern::new("a{x").regex(), r"^a\{x$");
    }

    #[test]
    fn a_caret_makes_it_a_regular_expression_with_named_groups() {
        let p = TopicPattern::new(r"^orders-(?P<region>[a-z]+)\..*");
        assert_eq!(
            p.regex(),
            r"^orders-([a-z]+)\..*",
            "librdkafka has no named groups"
        );
        assert_eq!(p.captures("orders-eu.paid"), Some(vec![("region", "eu")]));
        assert_eq!(p.captures("orders-EU.paid"), None);
        assert!(TopicPattern::new("^orders-.*").matches("orders-anything"));
        assert!(!TopicPattern::new("^orders-.*").matches("old-orders-x"));
        let under = p.prefixed("eu.");
        assert_eq!(under.template(), r"^eu\.orders-(?P<region>[a-z]+)\..*");
        assert!(under.matches("eu.orders-fr.x") && !under.matches("euXorders-fr.x"));
        assert_eq!(
            TopicPattern::new("orders-{r}").prefixed("eu-").template(),
            "eu-orders-{r}"
        );
        assert_eq!(
            without_group_names(r"^a(?<x>b)\(?P<y>(?:c)"),
            r"^a(b)\(?P<y>(?:c)"
        );
        assert!(TopicPattern::new("^(").error().is_some());
        assert_eq!(TopicPattern::new("^(").captures("("), None);
    }
}
