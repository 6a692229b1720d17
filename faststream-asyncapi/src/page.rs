//! An offline HTML page of an AsyncAPI document (3.0.0 or 2.6.0): one self-contained string
//! with inline CSS and a few lines of inline JavaScript, loading nothing from the network.
//!
//! ```
//! use faststream_asyncapi::{self as asyncapi, AppInfo, AsyncApiVersion, ServerInfo};
//! use faststream_core::SubscriberConfig;
//! use std::sync::Arc;
//!
//! let subscribers = [Arc::new(SubscriberConfig::new("handle_msg", ["in-topic"]))];
//! let document = asyncapi::document(
//!     &AppInfo::default(),
//!     &ServerInfo::new(["localhost:9092"], "kafka"),
//!     &subscribers,
//!     AsyncApiVersion::V3_0_0,
//! );
//! let html = faststream_asyncapi::page::render_page(&document);
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! assert!(html.contains("in-topic:HandleMsg"));
//! ```

use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt::Write as _;

/// How deep `$ref`s are followed and nested schemas expanded.
const MAX_DEPTH: usize = 12;

/// Escapes text for HTML element content and attribute values.
///
/// ```
/// assert_eq!(faststream_asyncapi::page::escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A string field of `value`, if any.
fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// Follows a local `$ref` (`#/...`) chain; the value itself when it is not a reference.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..MAX_DEPTH {
        match text(current, "$ref")
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| doc.pointer(pointer))
        {
            Some(target) => current = target,
            None => break,
        }
    }
    current
}

/// The last segment of a `$ref`, unescaped: the referenced component's name.
fn ref_name(reference: &str) -> String {
    reference
        .rsplit('/')
        .next()
        .unwrap_or(reference)
        .replace("~1", "/")
        .replace("~0", "~")
}

/// An id usable in `href="#..."`: letters, digits, `-` and `_`.
fn anchor(prefix: &str, name: &str) -> String {
    let body: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{prefix}-{body}")
}

fn object(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flat_map(Map::iter)
}

/// Renders `document` as one self-contained HTML page: info, servers, channels with their
/// operations, bindings and messages, payload schemas as field tables (nested types in
/// expandable `<details>`), all schemas, and the raw document. All text is escaped.
pub fn render_page(document: &Value) -> String {
    let page = Page { doc: document };
    page.render()
}

struct Page<'a> {
    doc: &'a Value,
}

/// An operation on a channel, normalised across 2.6.0 and 3.0.0.
struct Operation<'a> {
    name: String,
    action: &'static str,
    body: &'a Value,
    messages: Vec<(String, &'a Value)>,
}

impl<'a> Page<'a> {
    fn render(&self) -> String {
        let info = self.doc.get("info").unwrap_or(&Value::Null);
        let title = text(info, "title").unwrap_or("AsyncAPI");
        let version = text(info, "version").unwrap_or("");
        let spec = text(self.doc, "asyncapi").unwrap_or("?");
        let mut body = String::new();
        let channels: Vec<(&String, &Value)> = object(&self.doc["channels"]).collect();

        // Sidebar.
        let mut nav = String::new();
        let _ = write!(
            nav,
            "<nav><div class=\"brand\">{}</div><input id=\"filter\" type=\"search\" placeholder=\"Filter channels\" aria-label=\"Filter channels\"><ul>",
            escape(title)
        );
        let _ = write!(nav, "<li><a href=\"#servers\">Servers</a></li>");
        for (name, channel) in &channels {
            let kind = self.channel_kind(name, channel);
            let _ = write!(
                nav,
                "<li class=\"nav-channel\" data-name=\"{n}\"><a href=\"#{a}\"><span class=\"dot {kind}\"></span>{n}</a></li>",
                n = escape(name),
                a = anchor("channel", name)
            );
        }
        let _ = write!(
            nav,
            "<li><a href=\"#schemas\">Schemas</a></li><li><a href=\"#raw\">Raw document</a></li></ul></nav>"
        );

        // Header.
        let _ = write!(
            body,
            "<header><h1>{}</h1><div class=\"meta\"><span class=\"pill\">version {}</span><span class=\"pill\">AsyncAPI {}</span>",
            escape(title),
            escape(version),
            escape(spec)
        );
        if let Some(ct) = text(self.doc, "defaultContentType") {
            let _ = write!(body, "<span class=\"pill\">{}</span>", escape(ct));
        }
        body.push_str("</div>");
        if let Some(description) = text(info, "description") {
            let _ = write!(body, "<p class=\"desc\">{}</p>", escape(description));
        }
        body.push_str(&self.info_extras(info));
        body.push_str("</header>");

        body.push_str(&self.servers());

        body.push_str("<section id=\"channels\"><h2>Channels</h2>");
        if channels.is_empty() {
            body.push_str("<p class=\"muted\">No channels.</p>");
        }
        for (name, channel) in &channels {
            body.push_str(&self.channel(name, channel));
        }
        body.push_str("</section>");

        body.push_str(&self.schemas());

        let raw = serde_json::to_string_pretty(self.doc).unwrap_or_default();
        let _ = write!(
            body,
            "<section id=\"raw\"><h2>Raw document</h2><details><summary>Show the AsyncAPI document (JSON)</summary><pre class=\"raw\">{}</pre></details></section>",
            escape(&raw)
        );
        let _ = write!(
            body,
            "<footer>Generated by faststream-rs &middot; works offline</footer>"
        );

        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} {version} &middot; AsyncAPI</title><style>{STYLE}</style></head><body><div class=\"layout\">{nav}<main>{body}</main></div><script>{SCRIPT}</script></body></html>\n",
            title = escape(title),
            version = escape(version),
        )
    }

    fn info_extras(&self, info: &Value) -> String {
        let mut out = String::new();
        let mut items = Vec::new();
        if let Some(contact) = info.get("contact") {
            let mut parts = Vec::new();
            if let Some(name) = text(contact, "name") {
                parts.push(escape(name));
            }
            if let Some(email) = text(contact, "email") {
                parts.push(format!("<a href=\"mailto:{e}\">{e}</a>", e = escape(email)));
            }
            if let Some(url) = text(contact, "url") {
                parts.push(link(url));
            }
            items.push(format!(
                "<dt>Contact</dt><dd>{}</dd>",
                parts.join(" &middot; ")
            ));
        }
        if let Some(license) = info.get("license") {
            let name = escape(text(license, "name").unwrap_or(""));
            let value = match text(license, "url") {
                Some(url) if safe_url(url) => {
                    format!("<a href=\"{}\">{name}</a>", escape(url))
                }
                _ => name,
            };
            items.push(format!("<dt>License</dt><dd>{value}</dd>"));
        }
        if let Some(terms) = text(info, "termsOfService") {
            items.push(format!("<dt>Terms</dt><dd>{}</dd>", link(terms)));
        }
        let tags = info.get("tags").or_else(|| self.doc.get("tags"));
        if let Some(tags) = tags.and_then(Value::as_array).filter(|t| !t.is_empty()) {
            let list: Vec<String> = tags
                .iter()
                .map(|tag| {
                    let name = escape(text(tag, "name").unwrap_or(""));
                    match text(tag, "description") {
                        Some(d) => {
                            format!("<span class=\"tag\" title=\"{}\">{name}</span>", escape(d))
                        }
                        None => format!("<span class=\"tag\">{name}</span>"),
                    }
                })
                .collect();
            items.push(format!("<dt>Tags</dt><dd>{}</dd>", list.join(" ")));
        }
        let docs = info
            .get("externalDocs")
            .or_else(|| self.doc.get("externalDocs"));
        if let Some(url) = docs.and_then(|d| text(d, "url")) {
            let label = docs.and_then(|d| text(d, "description")).unwrap_or(url);
            let value = if safe_url(url) {
                format!("<a href=\"{}\">{}</a>", escape(url), escape(label))
            } else {
                escape(label)
            };
            items.push(format!("<dt>Docs</dt><dd>{value}</dd>"));
        }
        if let Some(id) = text(self.doc, "id") {
            items.push(format!("<dt>Id</dt><dd><code>{}</code></dd>", escape(id)));
        }
        if !items.is_empty() {
            let _ = write!(out, "<dl class=\"info\">{}</dl>", items.concat());
        }
        out
    }

    fn servers(&self) -> String {
        let mut out = String::from("<section id=\"servers\"><h2>Servers</h2>");
        let servers: Vec<_> = object(&self.doc["servers"]).collect();
        if servers.is_empty() {
            out.push_str("<p class=\"muted\">No servers.</p>");
        }
        for (name, server) in servers {
            let server = resolve(self.doc, server);
            let host = text(server, "host")
                .or_else(|| text(server, "url"))
                .unwrap_or("");
            let protocol = text(server, "protocol").unwrap_or("");
            let _ = write!(
                out,
                "<div class=\"card server\"><div class=\"row\"><span class=\"badge server\">{}</span><code class=\"big\">{}</code><span class=\"pill\">{}{}</span></div>",
                escape(name),
                escape(host),
                escape(protocol),
                text(server, "protocolVersion")
                    .map(|v| format!(" {}", escape(v)))
                    .unwrap_or_default()
            );
            if let Some(description) = text(server, "description") {
                let _ = write!(out, "<p class=\"desc\">{}</p>", escape(description));
            }
            let security: Vec<String> = server
                .get("security")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|item| self.security_names(item))
                .collect();
            if !security.is_empty() {
                let _ = write!(out, "<p>Security: {}</p>", security.join(", "));
            }
            out.push_str("</div>");
        }
        out.push_str("</section>");
        out
    }

    /// `name (type)` of each scheme a server security item refers to (3.0 `$ref`, 2.6 map).
    fn security_names(&self, item: &Value) -> Vec<String> {
        let schemes = &self.doc["components"]["securitySchemes"];
        if let Some(reference) = text(item, "$ref") {
            let scheme = resolve(self.doc, item);
            let kind = text(scheme, "type").unwrap_or("?");
            return vec![format!(
                "<code>{}</code> ({})",
                escape(&ref_name(reference)),
                escape(kind)
            )];
        }
        if let Some(kind) = text(item, "type") {
            return vec![format!("<code>{}</code>", escape(kind))];
        }
        object(item)
            .map(|(name, _)| {
                let kind = text(&schemes[name.as_str()], "type").unwrap_or("?");
                format!("<code>{}</code> ({})", escape(name), escape(kind))
            })
            .collect()
    }

    /// `receive`, `send` or `both` (for the sidebar dot).
    fn channel_kind(&self, name: &str, channel: &Value) -> &'static str {
        let ops = self.operations(name, channel);
        let receive = ops.iter().any(|o| o.action == "receive");
        let send = ops.iter().any(|o| o.action == "send");
        match (receive, send) {
            (true, true) => "both",
            (false, true) => "send",
            _ => "receive",
        }
    }

    fn operations(&self, name: &str, channel: &'a Value) -> Vec<Operation<'a>> {
        let mut ops = Vec::new();
        // 2.x: operations live in the channel.
        for (key, action) in [("subscribe", "receive"), ("publish", "send")] {
            if let Some(op) = channel.get(key) {
                let message = op.get("message").unwrap_or(&Value::Null);
                let mut messages = Vec::new();
                if let Some(list) = message.get("oneOf").and_then(Value::as_array) {
                    for m in list {
                        messages.push((self.message_name(m), resolve(self.doc, m)));
                    }
                } else if !message.is_null() {
                    messages.push((self.message_name(message), resolve(self.doc, message)));
                }
                ops.push(Operation {
                    name: text(op, "operationId").unwrap_or(key).to_owned(),
                    action,
                    body: op,
                    messages,
                });
            }
        }
        // 3.x: operations refer to the channel.
        let target = format!("#/channels/{}", name.replace('~', "~0").replace('/', "~1"));
        for (op_name, op) in object(&self.doc["operations"]) {
            if text(&op["channel"], "$ref") != Some(target.as_str()) {
                continue;
            }
            let action = if text(op, "action") == Some("send") {
                "send"
            } else {
                "receive"
            };
            let mut messages: Vec<(String, &Value)> = op
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|m| (self.message_name(m), resolve(self.doc, m)))
                .collect();
            if messages.is_empty() {
                messages = object(&channel["messages"])
                    .map(|(k, m)| (k.clone(), resolve(self.doc, m)))
                    .collect();
            }
            ops.push(Operation {
                name: op_name.clone(),
                action,
                body: op,
                messages,
            });
        }
        ops
    }

    fn message_name(&self, message: &Value) -> String {
        let resolved = resolve(self.doc, message);
        text(resolved, "name")
            .or_else(|| text(resolved, "title"))
            .map(str::to_owned)
            .or_else(|| text(message, "$ref").map(ref_name))
            .unwrap_or_else(|| "message".to_owned())
    }

    fn channel(&self, name: &str, channel: &'a Value) -> String {
        let mut out = String::new();
        let address = text(channel, "address").unwrap_or(name);
        let _ = write!(
            out,
            "<article class=\"card channel\" id=\"{}\" data-name=\"{}\"><h3>{}</h3><div class=\"row\"><span class=\"label\">address</span><code>{}</code></div>",
            anchor("channel", name),
            escape(name),
            escape(name),
            escape(address)
        );
        if let Some(title) = text(channel, "title") {
            let _ = write!(out, "<p class=\"subtitle\">{}</p>", escape(title));
        }
        if let Some(description) = text(channel, "description") {
            let _ = write!(out, "<p class=\"desc\">{}</p>", escape(description));
        }
        if let Some(bindings) = channel.get("bindings").filter(|b| !b.is_null()) {
            out.push_str(&bindings_view("Bindings", bindings));
        }
        let ops = self.operations(name, channel);
        if ops.is_empty() {
            // A channel no operation uses: still show its messages.
            for (key, message) in object(&channel["messages"]) {
                out.push_str(&self.message(key, resolve(self.doc, message)));
            }
        }
        for op in ops {
            let _ = write!(
                out,
                "<div class=\"operation\"><div class=\"row\"><span class=\"badge {a}\">{a}</span><span class=\"op-name\">{}</span></div>",
                escape(&op.name),
                a = op.action
            );
            if let Some(description) =
                text(op.body, "description").filter(|d| Some(*d) != text(channel, "description"))
            {
                let _ = write!(out, "<p class=\"desc\">{}</p>", escape(description));
            }
            if let Some(bindings) = op.body.get("bindings").filter(|b| !b.is_null()) {
                out.push_str(&bindings_view("Operation bindings", bindings));
            }
            for (message_name, message) in &op.messages {
                out.push_str(&self.message(message_name, message));
            }
            out.push_str("</div>");
        }
        out.push_str("</article>");
        out
    }

    fn message(&self, name: &str, message: &Value) -> String {
        let mut out = String::new();
        let content_type = text(message, "contentType")
            .or_else(|| text(self.doc, "defaultContentType"))
            .unwrap_or("");
        let _ = write!(
            out,
            "<div class=\"message\"><div class=\"row\"><span class=\"label\">message</span><strong>{}</strong><span class=\"pill\">{}</span></div>",
            escape(name),
            escape(content_type)
        );
        if let Some(description) = text(message, "description") {
            let _ = write!(out, "<p class=\"desc\">{}</p>", escape(description));
        }
        if let Some(location) = message
            .get("correlationId")
            .map(|c| resolve(self.doc, c))
            .and_then(|c| text(c, "location"))
        {
            let _ = write!(
                out,
                "<div class=\"row small\"><span class=\"label\">correlation id</span><code>{}</code></div>",
                escape(location)
            );
        }
        if let Some(payload) = message.get("payload") {
            let type_name = text(payload, "$ref").map(ref_name);
            let _ = write!(
                out,
                "<div class=\"payload\"><div class=\"row small\"><span class=\"label\">payload</span><code>{}</code></div>",
                escape(type_name.as_deref().unwrap_or(&self.type_label(payload)))
            );
            let mut seen = HashSet::new();
            out.push_str(&self.schema_body(payload, 0, &mut seen));
            out.push_str("</div>");
        }
        out.push_str("</div>");
        out
    }

    fn schemas(&self) -> String {
        let mut out = String::from("<section id=\"schemas\"><h2>Schemas</h2>");
        let schemas: Vec<_> = object(&self.doc["components"]["schemas"]).collect();
        if schemas.is_empty() {
            out.push_str("<p class=\"muted\">No schemas.</p>");
        }
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<details class=\"card schema\" id=\"{}\"><summary><code>{}</code> <span class=\"muted\">{}</span></summary>",
                anchor("schema", name),
                escape(name),
                escape(&self.type_label(schema))
            );
            let mut seen = HashSet::from([name.clone()]);
            out.push_str(&self.schema_body(schema, 0, &mut seen));
            out.push_str("</details>");
        }
        out.push_str("</section>");
        out
    }

    /// A short type label: `string`, `integer (int64)`, `Address`, `array of OrderLine`,
    /// `string | null`, `enum`...
    fn type_label(&self, schema: &Value) -> String {
        if let Some(reference) = text(schema, "$ref") {
            return ref_name(reference);
        }
        if schema == &Value::Bool(true) {
            return "any".to_owned();
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = schema.get(key).and_then(Value::as_array) {
                let parts: Vec<String> = list.iter().map(|s| self.type_label(s)).collect();
                let joiner = if key == "allOf" { " & " } else { " | " };
                return parts.join(joiner);
            }
        }
        let base = match schema.get("type") {
            Some(Value::String(t)) if t == "array" => match schema.get("items") {
                Some(items) => format!("array of {}", self.type_label(items)),
                None => "array".to_owned(),
            },
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(types)) => {
                let parts: Vec<String> = types
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|t| {
                        if t == "array" {
                            schema
                                .get("items")
                                .map(|i| format!("array of {}", self.type_label(i)))
                                .unwrap_or_else(|| "array".to_owned())
                        } else {
                            t.to_owned()
                        }
                    })
                    .collect();
                parts.join(" | ")
            }
            _ if schema.get("enum").is_some() => "enum".to_owned(),
            _ if schema.get("properties").is_some() => "object".to_owned(),
            _ if schema.get("const").is_some() => "const".to_owned(),
            _ => "any".to_owned(),
        };
        match text(schema, "format") {
            Some(format) => format!("{base} ({format})"),
            None => base,
        }
    }

    /// The named component types a schema refers to directly (through `$ref`, arrays, unions).
    fn nested_refs<'s>(&self, schema: &'s Value, out: &mut Vec<&'s str>) {
        if let Some(reference) = text(schema, "$ref") {
            out.push(reference);
            return;
        }
        if let Some(items) = schema.get("items") {
            self.nested_refs(items, out);
        }
        if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            self.nested_refs(additional, out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for s in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.nested_refs(s, out);
            }
        }
    }

    /// A schema's details: a field table for objects, enum values, constraints; nested named
    /// types expandable.
    fn schema_body(&self, schema: &Value, depth: usize, seen: &mut HashSet<String>) -> String {
        if depth > MAX_DEPTH {
            return "<p class=\"muted\">(nested too deep)</p>".to_owned();
        }
        let mut out = String::new();
        let mut resolved = schema;
        if let Some(reference) = text(schema, "$ref") {
            let name = ref_name(reference);
            if !seen.insert(name.clone()) {
                return format!(
                    "<p class=\"muted\">recursive: <a href=\"#{}\">{}</a></p>",
                    anchor("schema", &name),
                    escape(&name)
                );
            }
            resolved = resolve(self.doc, schema);
            out.push_str(&self.schema_body(resolved, depth + 1, seen));
            seen.remove(&name);
            return out;
        }
        if let Some(description) = text(resolved, "description") {
            if depth > 0 || resolved.get("properties").is_some() {
                let _ = write!(out, "<p class=\"desc\">{}</p>", escape(description));
            }
        }
        if let Some(values) = resolved.get("enum").and_then(Value::as_array) {
            let list: Vec<String> = values
                .iter()
                .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                .collect();
            let _ = write!(out, "<p>One of: {}</p>", list.join(" "));
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(variants) = resolved.get(key).and_then(Value::as_array) {
                let all_simple = variants
                    .iter()
                    .all(|v| v.get("properties").is_none() && text(v, "$ref").is_none());
                if all_simple {
                    let list: Vec<String> = variants
                        .iter()
                        .map(|v| {
                            let label = match v.get("enum").or_else(|| v.get("const")) {
                                Some(values) => values.to_string(),
                                None => self.type_label(v),
                            };
                            match text(v, "description") {
                                Some(d) => format!(
                                    "<li><code>{}</code> &mdash; {}</li>",
                                    escape(&label),
                                    escape(d)
                                ),
                                None => format!("<li><code>{}</code></li>", escape(&label)),
                            }
                        })
                        .collect();
                    let _ = write!(out, "<ul class=\"variants\">{}</ul>", list.concat());
                }
            }
        }
        if let Some(properties) = resolved.get("properties").and_then(Value::as_object) {
            let required: HashSet<&str> = resolved
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            out.push_str("<table class=\"fields\"><thead><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr></thead><tbody>");
            for (field, property) in properties {
                let mut description = String::new();
                let prop = if text(property, "$ref").is_some() {
                    resolve(self.doc, property)
                } else {
                    property
                };
                // A field's own doc comment first (schemars wraps `$ref`s with one in
                // `allOf`), else the referenced type's.
                let own_description =
                    text(property, "description").or_else(|| text(prop, "description"));
                if let Some(d) = own_description {
                    description.push_str(&escape(d));
                }
                if let Some(default) = property.get("default") {
                    let _ = write!(
                        description,
                        " <span class=\"default\">default <code>{}</code></span>",
                        escape(&default.to_string())
                    );
                }
                if let Some(values) = property.get("enum").and_then(Value::as_array) {
                    let list: Vec<String> = values
                        .iter()
                        .map(|v| format!("<code>{}</code>", escape(&v.to_string())))
                        .collect();
                    let _ = write!(
                        description,
                        " <span class=\"enum\">one of {}</span>",
                        list.join(" ")
                    );
                }
                let mut refs = Vec::new();
                self.nested_refs(property, &mut refs);
                let is_inline_object = property.get("properties").is_some();
                let req = required.contains(field.as_str());
                let _ = write!(
                    out,
                    "<tr><td class=\"field\"><code>{}</code></td><td class=\"type\">{}</td><td>{}</td><td>{}",
                    escape(field),
                    escape(&self.type_label(property)),
                    if req {
                        "<span class=\"req\">required</span>"
                    } else {
                        "<span class=\"opt\">optional</span>"
                    },
                    description
                );
                for reference in refs {
                    let name = ref_name(reference);
                    let referenced = self
                        .doc
                        .pointer(reference.strip_prefix('#').unwrap_or(""))
                        .unwrap_or(&Value::Null);
                    if referenced.is_null() {
                        continue;
                    }
                    let _ = write!(
                        out,
                        "<details class=\"nested\"><summary><code>{}</code></summary>",
                        escape(&name)
                    );
                    out.push_str(&self.schema_body(
                        &serde_json::json!({ "$ref": reference }),
                        depth + 1,
                        seen,
                    ));
                    out.push_str("</details>");
                }
                if is_inline_object {
                    out.push_str("<details class=\"nested\"><summary>object</summary>");
                    out.push_str(&self.schema_body(property, depth + 1, seen));
                    out.push_str("</details>");
                }
                out.push_str("</td></tr>");
            }
            out.push_str("</tbody></table>");
        } else if depth == 0 && resolved.get("enum").is_none() {
            let _ = write!(
                out,
                "<p class=\"muted\">{}</p>",
                escape(&self.type_label(resolved))
            );
        }
        if let Some(items) = resolved.get("items").filter(|_| depth == 0) {
            if text(items, "$ref").is_some() {
                out.push_str(&self.schema_body(items, depth + 1, seen));
            }
        }
        out
    }
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

fn link(url: &str) -> String {
    if safe_url(url) {
        format!("<a href=\"{u}\">{u}</a>", u = escape(url))
    } else {
        escape(url)
    }
}

fn bindings_view(label: &str, bindings: &Value) -> String {
    let mut rows = String::new();
    for (protocol, binding) in object(bindings) {
        for (key, value) in object(binding) {
            // Kafka's `groupId`/`clientId` are schemas: show `{"enum": ["g"]}` as `g`.
            let single = value
                .get("enum")
                .and_then(Value::as_array)
                .filter(|values| values.len() == 1)
                .and_then(|values| values[0].as_str());
            let shown = match (value, single) {
                (_, Some(one)) => one.to_owned(),
                (Value::String(s), None) => s.clone(),
                (other, None) => other.to_string(),
            };
            let _ = write!(
                rows,
                "<span class=\"kv\"><span class=\"k\">{}.{}</span> <code>{}</code></span>",
                escape(protocol),
                escape(key),
                escape(&shown)
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<div class=\"bindings\"><span class=\"label\">{}</span>{rows}</div>",
        escape(label)
    )
}

const STYLE: &str = r#"
:root{--bg:#f7f8fa;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e4e7ec;--accent:#3b5bdb;
--recv:#0f9d58;--send:#c2410c;--code:#f1f3f7;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);font-size:15px;line-height:1.55}
.layout{display:grid;grid-template-columns:260px 1fr;min-height:100vh}
nav{position:sticky;top:0;height:100vh;overflow:auto;background:#111827;color:#d0d5dd;padding:20px 14px}
nav .brand{font-weight:700;font-size:17px;color:#fff;margin:0 6px 14px}
nav input{width:100%;padding:7px 10px;border-radius:6px;border:1px solid #344054;background:#1f2937;color:#fff;margin-bottom:10px}
nav ul{list-style:none;margin:0;padding:0}nav li a{display:block;padding:5px 8px;border-radius:6px;color:#d0d5dd;text-decoration:none;font-size:13.5px;word-break:break-all}
nav li a:hover{background:#1f2937;color:#fff}
.dot{display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:8px;vertical-align:middle}
.dot.receive{background:var(--recv)}.dot.send{background:var(--send)}.dot.both{background:var(--accent)}
main{padding:32px 44px;max-width:1100px}
header h1{margin:0 0 8px;font-size:30px;letter-spacing:-.01em}
h2{font-size:20px;margin:36px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{margin:0 0 8px;font-size:17px;word-break:break-all}
.meta{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:8px}
.pill{display:inline-block;background:var(--code);border:1px solid var(--line);border-radius:999px;padding:1px 10px;font-size:12.5px;color:var(--muted)}
.desc{white-space:pre-wrap;margin:6px 0 10px;color:#344054}.subtitle{margin:0 0 6px;color:var(--muted)}
.muted{color:var(--muted)}
dl.info{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:12px 0 0}
dl.info dt{color:var(--muted);font-size:13px}dl.info dd{margin:0}
.tag{display:inline-block;background:#eef2ff;color:var(--accent);border-radius:4px;padding:0 8px;font-size:13px}
a{color:var(--accent)}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:12px 0;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.row{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:4px 0}.row.small{font-size:13.5px}
.label{font-size:11.5px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);min-width:64px}
code{font-family:"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:.9em;background:var(--code);padding:1px 5px;border-radius:4px}
code.big{font-size:14px}
.badge{font-size:11.5px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;padding:2px 9px;border-radius:4px;color:#fff}
.badge.receive{background:var(--recv)}.badge.send{background:var(--send)}.badge.server{background:var(--accent)}
.op-name{font-weight:600;word-break:break-all}
.operation{border-top:1px dashed var(--line);margin-top:12px;padding-top:10px}
.message{margin:10px 0 0 4px;padding:10px 14px;border-left:3px solid var(--line);background:#fcfcfd;border-radius:0 8px 8px 0}
.bindings{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;margin:6px 0;font-size:13px}
.kv .k{color:var(--muted)}
table.fields{width:100%;border-collapse:collapse;margin:8px 0;font-size:13.5px;background:#fff}
table.fields th{text-align:left;font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em;border-bottom:1px solid var(--line);padding:6px 8px}
table.fields td{border-bottom:1px solid var(--line);padding:6px 8px;vertical-align:top}
td.field code{font-weight:600;background:none;padding:0}td.type{color:#6941c6;font-family:Menlo,Consolas,monospace;font-size:12.5px;white-space:nowrap}
.req{color:#b42318;font-weight:600;font-size:12px}.opt{color:var(--muted);font-size:12px}
.default,.enum{color:var(--muted);font-size:12.5px}
details.nested{margin:6px 0 2px;border:1px solid var(--line);border-radius:6px;padding:2px 10px;background:#fafbfc}
details>summary{cursor:pointer;padding:3px 0}
details.schema summary{font-size:14.5px}
ul.variants{margin:4px 0;padding-left:20px}
pre.raw{background:#0f172a;color:#e2e8f0;padding:16px;border-radius:8px;overflow:auto;max-height:600px;font-size:12.5px}
footer{margin:40px 0 10px;color:var(--muted);font-size:12.5px}
.hidden{display:none}
@media (max-width:800px){.layout{grid-template-columns:1fr}nav{position:static;height:auto}main{padding:20px}}
"#;

const SCRIPT: &str = r#"
(function(){var f=document.getElementById('filter');if(!f)return;
f.addEventListener('input',function(){var q=f.value.toLowerCase();
document.querySelectorAll('[data-name]').forEach(function(e){
e.classList.toggle('hidden',q!==''&&e.getAttribute('data-name').toLowerCase().indexOf(q)<0);});});})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "asyncapi": "3.0.0",
            "info": {"title": "Shop <script>alert(1)</script>", "version": "1.0.0",
                     "description": "Bills & ships"},
            "defaultContentType": "application/json",
            "servers": {"development": {"host": "localhost:9092", "protocol": "kafka", "protocolVersion": "auto"}},
            "channels": {
                "orders:BillOrder": {
                    "address": "orders",
                    "messages": {"SubscribeMessage": {"$ref": "#/components/messages/orders:BillOrder:SubscribeMessage"}},
                    "bindings": {"kafka": {"topic": "orders", "bindingVersion": "0.4.0"}}
                }
            },
            "operations": {
                "orders:BillOrderSubscribe": {
                    "action": "receive",
                    "channel": {"$ref": "#/channels/orders:BillOrder"},
                    "messages": [{"$ref": "#/channels/orders:BillOrder/messages/SubscribeMessage"}]
                }
            },
            "components": {
                "messages": {"orders:BillOrder:SubscribeMessage": {
                    "title": "orders:BillOrder:SubscribeMessage",
                    "correlationId": {"location": "$message.header#/correlation_id"},
                    "payload": {"$ref": "#/components/schemas/Order"}}},
                "schemas": {
                    "Order": {"type": "object", "required": ["id", "customer"], "properties": {
                        "id": {"type": "integer", "format": "uint64"},
                        "customer": {"$ref": "#/components/schemas/Customer"},
                        "note": {"type": ["string", "null"], "description": "<b>bold</b>"}}},
                    "Customer": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "boss": {"anyOf": [{"$ref": "#/components/schemas/Customer"}, {"type": "null"}]}}}
                }
            }
        })
    }

    #[test]
    fn renders_channels_operations_and_fields() {
        let html = render_page(&sample());
        assert!(html.contains("orders:BillOrder"));
        assert!(html.contains("orders:BillOrderSubscribe"));
        assert!(html.contains("badge receive"));
        assert!(html.contains("<code>customer</code>"));
        assert!(html.contains("<code>note</code>"));
        assert!(html.contains("string | null"));
        assert!(html.contains("<summary><code>Customer</code></summary>"));
        assert!(html.contains("recursive"), "cycles are cut");
        assert!(html.contains("kafka.topic"));
        assert!(html.contains("$message.header#/correlation_id"));
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    }

    #[test]
    fn escapes_everything() {
        let html = render_page(&sample());
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("Shop &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<b>bold</b>"));
        assert!(html.contains("Bills &amp; ships"));
    }

    #[test]
    fn renders_v2_documents() {
        let doc = json!({
            "asyncapi": "2.6.0",
            "info": {"title": "T", "version": "1"},
            "servers": {"development": {"url": "h:9092", "protocol": "kafka"}},
            "channels": {"in:Handle": {
                "subscribe": {"operationId": "in:HandleSubscribe",
                    "message": {"$ref": "#/components/messages/in:Handle:Message"}},
            }, "out:Publisher": {"publish": {"message": {"$ref": "#/components/messages/out:Publisher:Message"}}}},
            "components": {"messages": {
                "in:Handle:Message": {"name": "in:Handle:Message", "payload": {"type": "object", "properties": {"user_id": {"type": "integer"}}, "required": ["user_id"]}},
                "out:Publisher:Message": {"payload": {}}
            }}
        });
        let html = render_page(&doc);
        assert!(html.contains("in:HandleSubscribe"));
        assert!(html.contains("<code>user_id</code>"));
        assert!(html.contains("badge send"));
        assert!(html.contains("h:9092"));
    }

    #[test]
    fn survives_garbage() {
        for doc in [
            json!(null),
            json!([]),
            json!({"channels": 3, "components": {"schemas": {"X": {"$ref": "#/nowhere"}}}}),
        ] {
            assert!(render_page(&doc).contains("</html>"));
        }
    }
}
