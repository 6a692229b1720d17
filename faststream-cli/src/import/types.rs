//! Rust types from the document's JSON Schemas, by [typify]: one type per named schema
//! (pydantic models, enums), deriving serde and `schemars::JsonSchema`; the schemas FastStream
//! names after a handler (`HandleMsg:Message:Payload`) become plain types (`i64`, `Vec<Event>`)
//! or, for an object of a handler's several parameters, one Rust parameter per property.
//!
//! A schema typify cannot translate is left out with typify's reason, and whatever uses it
//! is `serde_json::Value`: the import still builds, and the README names it.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use typify::{TypeSpace, TypeSpacePatch, TypeSpaceSettings};

/// The type a schema falls back to when it cannot be translated.
pub(crate) const ANY_JSON: &str = "serde_json::Value";

/// A schema that was not translated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untranslated {
    /// The schema's name, or where it is used.
    pub(crate) schema: String,
    /// typify's reason.
    pub(crate) reason: String,
}

/// The generated types.
#[derive(Debug)]
pub(crate) struct Types {
    space: TypeSpace,
    /// Named schemas that became types: schema name -> Rust type name.
    pub(crate) named: BTreeMap<String, String>,
    /// What was not translated.
    pub(crate) untranslated: Vec<Untranslated>,
}

/// The crates the generated code uses beyond serde, serde_json and schemars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Uses {
    pub(crate) chrono: bool,
    pub(crate) uuid: bool,
    pub(crate) regress: bool,
}

/// Whether a schema name is one FastStream makes up for a handler or publisher
/// (`X:Message:Payload`, `topic:Publisher:Message:Payload`) rather than a model's own.
pub(crate) fn is_synthesized(name: &str) -> bool {
    name.contains(':')
}

fn settings(patches: &BTreeMap<String, Vec<String>>) -> TypeSpaceSettings {
    let mut settings = TypeSpaceSettings::default();
    settings
        .with_derive("schemars::JsonSchema".to_owned())
        .with_struct_builder(false);
    for (rust, attributes) in patches {
        let mut patch = TypeSpacePatch::default();
        for attribute in attributes {
            patch.with_attr(attribute);
        }
        settings.with_patch(rust, &patch);
    }
    settings
}

/// The `schemars` attributes that make a type's schema carry the Python one's name and title:
/// `rename` when Rust spells the name differently, `title` when the schema has one.
fn schema_attributes(schema_name: &str, rust: &str, schema: &Value) -> Vec<String> {
    let mut attributes = Vec::new();
    if schema_name != rust {
        attributes.push(format!("#[schemars(rename = {schema_name:?})]"));
    }
    if let Some(title) = schema.get("title").and_then(Value::as_str) {
        attributes.push(format!("#[schemars(title = {title:?})]"));
    }
    attributes
}

/// typify's doc comments without the schema it copies into each (`<details>...</details>`)
/// and the bare type name it starts with: what is left is the schema's own description, so
/// the type's JsonSchema describes it as the Python one did.
fn without_schema_copies(code: &str) -> String {
    let mut out = Vec::new();
    let mut in_details = false;
    for line in code.lines() {
        let doc = line.trim_start().strip_prefix("///");
        match doc.map(str::trim) {
            Some("<details><summary>JSON schema</summary>") => {
                in_details = true;
                // The empty doc line before the details.
                if out.last().is_some_and(|l: &&str| l.trim() == "///") {
                    out.pop();
                }
            }
            Some("</details>") if in_details => in_details = false,
            _ if in_details => {}
            Some(text)
                if text.len() > 1
                    && text.starts_with('`')
                    && text.ends_with('`')
                    && !text[1..text.len() - 1].contains('`') => {}
            _ => out.push(line),
        }
    }
    helpers_after_derives(&out)
}

/// Moves typify's patch attributes (`#[schemars(...)]`, placed above the type's
/// `#[derive(...)]`) below the derive that introduces them, where rustc wants derive helpers.
fn helpers_after_derives(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut held: Vec<&str> = Vec::new();
    let mut in_derive = false;
    for line in lines {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[schemars(") && !in_derive {
            held.push(line);
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if trimmed.starts_with("#[derive(") {
            in_derive = true;
        }
        if in_derive && trimmed.ends_with(")]") {
            in_derive = false;
            for helper in held.drain(..) {
                out.push_str(helper);
                out.push('\n');
            }
        }
    }
    out
}

/// Runs typify, turning its panics (it has a few on odd input) into errors.
fn guarded<T>(work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
    std::panic::set_hook(hook);
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "typify failed".to_owned())),
    }
}

fn to_schema(value: &Value) -> Result<schemars::schema::Schema, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("not a JSON Schema: {e}"))
}

/// The names of the schemas `value` refers to, directly.
fn references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(name) = super::contract::schema_ref(value) {
                found.insert(name);
            }
            object.values().for_each(|v| references(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

/// `name` and every schema it refers to, transitively.
fn closure(name: &str, schemas: &Map<String, Value>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        let mut found = BTreeSet::new();
        if let Some(schema) = schemas.get(&next) {
            references(schema, &mut found);
        }
        todo.extend(found.into_iter().filter(|f| !seen.contains(f)));
    }
    seen
}

fn add_named(settings: &TypeSpaceSettings, named: &[(String, Value)]) -> Result<TypeSpace, String> {
    let definitions = named
        .iter()
        .map(|(name, schema)| Ok((name.clone(), to_schema(schema)?)))
        .collect::<Result<Vec<_>, String>>()?;
    guarded(|| {
        let mut space = TypeSpace::new(settings);
        space
            .add_ref_types(definitions)
            .map_err(|e| e.to_string())?;
        Ok(space)
    })
}

impl Types {
    /// Generates the named schemas of `schemas` (those not [`is_synthesized`]).
    pub(crate) fn new(schemas: &Map<String, Value>) -> Self {
        let mut untranslated = Vec::new();
        let mut named: Vec<(String, Value)> = schemas
            .iter()
            .filter(|(name, _)| !is_synthesized(name))
            .map(|(name, schema)| (name.clone(), schema.clone()))
            .collect();
        // Find the schemas typify refuses, each with what it refers to, and leave them (and
        // whatever refers to them) out.
        if add_named(&settings(&BTreeMap::new()), &named).is_err() {
            let mut bad = BTreeSet::new();
            for (name, _) in &named {
                let own: Vec<(String, Value)> = closure(name, schemas)
                    .into_iter()
                    .filter_map(|n| schemas.get(&n).map(|s| (n, s.clone())))
                    .collect();
                if let Err(reason) = add_named(&settings(&BTreeMap::new()), &own) {
                    untranslated.push(Untranslated {
                        schema: name.clone(),
                        reason,
                    });
                    bad.insert(name.clone());
                }
            }
            named.retain(|(name, _)| !bad.contains(name));
        }
        // Rust names of the types, then the `schemars(rename)` of those that differ.
        let mut space = add_named(&settings(&BTreeMap::new()), &named).unwrap_or_else(|reason| {
            untranslated.push(Untranslated {
                schema: "(all named schemas)".into(),
                reason,
            });
            named.clear();
            TypeSpace::new(&settings(&BTreeMap::new()))
        });
        let mut rust_names = BTreeMap::new();
        for (name, _) in &named {
            if let Ok(rust) = rust_type_of(&mut space, &reference(name)) {
                rust_names.insert(name.clone(), rust);
            }
        }
        let patches: BTreeMap<String, Vec<String>> = rust_names
            .iter()
            .map(|(schema, rust)| {
                let attributes = schema_attributes(schema, rust, &schemas[schema]);
                (rust.clone(), attributes)
            })
            .filter(|(_, attributes)| !attributes.is_empty())
            .collect();
        if !patches.is_empty() {
            if let Ok(patched) = add_named(&settings(&patches), &named) {
                space = patched;
            }
        }
        Types {
            space,
            named: rust_names,
            untranslated,
        }
    }

    /// The Rust type of `schema` (anonymous, e.g. `i64`, `Vec<Event>`, `Option<Address>`);
    /// [`ANY_JSON`] and an [`Untranslated`] entry named `used_in` when typify refuses it.
    pub(crate) fn rust_type(&mut self, schema: &Value, used_in: &str) -> String {
        match rust_type_of(&mut self.space, schema) {
            Ok(rust) => rust,
            Err(reason) => {
                let mut refers_to = BTreeSet::new();
                references(schema, &mut refers_to);
                // A schema that uses one already listed (and left out) is that one's failure.
                let listed = self
                    .untranslated
                    .iter()
                    .any(|u| refers_to.contains(&u.schema));
                if !listed {
                    self.untranslated.push(Untranslated {
                        schema: used_in.to_owned(),
                        reason,
                    });
                }
                ANY_JSON.to_owned()
            }
        }
    }

    /// The code of every type, formatted, and the crates it uses.
    pub(crate) fn code(&self) -> (String, Uses) {
        let tokens = self.space.to_stream();
        let code = match syn::parse2::<syn::File>(tokens.clone()) {
            Ok(file) => without_schema_copies(&prettyplease::unparse(&file)),
            Err(_) => tokens.to_string(),
        };
        let uses = Uses {
            chrono: self.space.uses_chrono(),
            uuid: self.space.uses_uuid(),
            regress: self.space.uses_regress(),
        };
        (code, uses)
    }
}

fn reference(name: &str) -> Value {
    serde_json::json!({ "$ref": format!("#/components/schemas/{}", name.replace('~', "~0").replace('/', "~1")) })
}

fn rust_type_of(space: &mut TypeSpace, schema: &Value) -> Result<String, String> {
    let schema = to_schema(schema)?;
    guarded(|| {
        let id = space.add_type(&schema).map_err(|e| e.to_string())?;
        let rust = space
            .get_type(&id)
            .map_err(|e| e.to_string())?
            .ident()
            .to_string();
        Ok(tidy(&rust))
    })
}

/// `:: std :: vec :: Vec < Event >` -> `Vec<Event>`: the token stream's spelling, readable,
/// with the prelude's and the generated module's paths shortened.
fn tidy(tokens: &str) -> String {
    let compact: String = tokens.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut text = compact
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" < ", "<")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",");
    for (long, short) in [
        ("::std::vec::Vec", "Vec"),
        ("::std::string::String", "String"),
        ("::std::option::Option", "Option"),
        ("::std::collections::HashMap", "std::collections::HashMap"),
        ("::serde_json::Value", ANY_JSON),
        ("::serde_json::Map", "serde_json::Map"),
        ("::chrono::", "chrono::"),
        ("::uuid::Uuid", "uuid::Uuid"),
    ] {
        text = text.replace(long, short);
    }
    if let Some(rest) = text.strip_prefix("types::") {
        text = rest.to_owned();
    }
    text.replace("<types::", "<")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn models_become_types_and_handler_payloads_plain_types() {
        let all = schemas(json!({
            "Item": {"type": "object", "title": "Item", "properties": {
                "sku": {"type": "string", "title": "Sku"},
                "when": {"type": "string", "format": "date-time"}
            }, "required": ["sku", "when"]},
            "Status": {"type": "string", "enum": ["new", "paid"], "title": "Status"},
            "Count:Message:Payload": {"type": "integer", "title": "Count:Message:Payload"}
        }));
        let mut types = Types::new(&all);
        assert_eq!(types.named["Item"], "Item");
        assert_eq!(types.named["Status"], "Status");
        assert!(!types.named.contains_key("Count:Message:Payload"));
        assert_eq!(
            types.rust_type(&all["Count:Message:Payload"], "count"),
            "i64"
        );
        assert_eq!(
            types.rust_type(
                &json!({"type": "array", "items": {"$ref": "#/components/schemas/Item"}}),
                "batch"
            ),
            "Vec<Item>"
        );
        assert_eq!(
            types.rust_type(
                &json!({"anyOf": [{"$ref": "#/components/schemas/Status"}, {"type": "null"}]}),
                "status"
            ),
            "Option<Status>"
        );
        let (code, uses) = types.code();
        assert!(code.contains("pub struct Item"), "{code}");
        assert!(code.contains("schemars::JsonSchema"), "{code}");
        assert!(uses.chrono && !uses.uuid);
        assert!(types.untranslated.is_empty(), "{:?}", types.untranslated);
    }

    #[test]
    fn a_schema_typify_refuses_is_named_and_becomes_any_json() {
        let all = schemas(json!({
            "Good": {"type": "object", "properties": {"a": {"type": "string"}}},
            "Bad": {"$ref": "nowhere"},
            "UsesBad": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/Bad"}}}
        }));
        let mut types = Types::new(&all);
        assert!(types.named.contains_key("Good"));
        let names: Vec<&str> = types
            .untranslated
            .iter()
            .map(|u| u.schema.as_str())
            .collect();
        assert!(
            names.contains(&"Bad") && names.contains(&"UsesBad"),
            "{names:?}"
        );
        assert_eq!(
            types.rust_type(&json!({"$ref": "#/components/schemas/Bad"}), "payload of h"),
            ANY_JSON
        );
    }

    #[test]
    fn names_rust_cannot_spell_keep_their_schema_name() {
        let all = schemas(json!({
            "user-event": {"type": "object", "properties": {"a": {"type": "string"}}}
        }));
        let types = Types::new(&all);
        assert_eq!(types.named["user-event"], "UserEvent");
        let (code, _) = types.code();
        assert!(
            code.contains(r#"#[schemars(rename = "user-event")]"#),
            "{code}"
        );
    }

    #[test]
    fn types_keep_the_schema_title_and_description_not_the_schema_copy() {
        let all = schemas(json!({
            "Item": {"type": "object", "title": "An item", "description": "One line of an order.",
                     "properties": {"a": {"type": "string"}}}
        }));
        let (code, _) = Types::new(&all).code();
        assert!(code.contains(r#"#[schemars(title = "An item")]"#), "{code}");
        assert!(code.contains("///One line of an order."), "{code}");
        assert!(
            !code.contains("<details>") && !code.contains("///`Item`"),
            "{code}"
        );
        let derive = code.find("schemars::JsonSchema").unwrap();
        assert!(
            code.find("#[schemars(title").unwrap() > derive,
            "helpers after the derive: {code}"
        );
    }
}
