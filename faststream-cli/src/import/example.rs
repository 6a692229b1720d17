//! An example value of a JSON Schema: the schema's own `examples`/`example`/`default`/`const`
//! when it has one, else a value built from its type, format and bounds. The generated tests
//! publish it, and the stub handlers return the example of their output.

use serde_json::{json, Map, Value};

/// How deep `$ref`s are followed before a recursive schema gets `null`.
const MAX_DEPTH: usize = 12;

/// An example of `schema`, whose `$ref`s point into `schemas`; `hint` names the value (a
/// property name) for example strings.
pub(crate) fn example(schema: &Value, schemas: &Map<String, Value>, hint: &str) -> Value {
    build(schema, schemas, hint, 0)
}

fn build(schema: &Value, schemas: &Map<String, Value>, hint: &str, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    let Some(object) = schema.as_object() else {
        return Value::Null;
    };
    if let Some(first) = object
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["example", "const", "default"] {
        if let Some(value) = object.get(key).filter(|v| !v.is_null()) {
            return value.clone();
        }
    }
    if let Some(first) = object
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(name) = super::contract::schema_ref(schema) {
        return match schemas.get(&name) {
            Some(target) => build(target, schemas, hint, depth + 1),
            None => Value::Null,
        };
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alternatives) = object.get(key).and_then(Value::as_array) {
            // The first alternative that is not `null`: an optional field gets a value.
            let chosen = alternatives
                .iter()
                .find(|a| a.get("type") != Some(&json!("null")))
                .or(alternatives.first());
            return chosen.map_or(Value::Null, |a| build(a, schemas, hint, depth + 1));
        }
    }
    let kind = match object.get("type") {
        Some(Value::Array(kinds)) => kinds.iter().find(|k| *k != "null").cloned(),
        other => other.cloned(),
    };
    match kind.as_ref().and_then(Value::as_str) {
        Some("object") => {
            let mut value = Map::new();
            if let Some(properties) = object.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    value.insert(name.clone(), build(property, schemas, name, depth + 1));
                }
            }
            Value::Object(value)
        }
        Some("array") => {
            let item = object
                .get("items")
                .map_or(Value::Null, |items| build(items, schemas, hint, depth + 1));
            let count = object
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            Value::Array(vec![item; usize::try_from(count).unwrap_or(1)])
        }
        Some("string") => string(object, hint),
        Some("integer") => json!(number(object, 1.0, 1.0) as i64),
        Some("number") => json!(number(object, 1.5, f64::EPSILON)),
        Some("boolean") => json!(true),
        _ => Value::Null,
    }
}

/// A number within the schema's bounds: `preferred` when it is, else the middle of the
/// bounds, else the one bound moved inwards by `step` (1 for integers).
fn number(object: &Map<String, Value>, preferred: f64, step: f64) -> f64 {
    let get = |key: &str| object.get(key).and_then(Value::as_f64);
    let low = get("minimum").or_else(|| get("exclusiveMinimum").map(|b| b + step));
    let high = get("maximum").or_else(|| get("exclusiveMaximum").map(|b| b - step));
    let value = match (low, high) {
        (Some(low), Some(high)) if !(low..=high).contains(&preferred) => low + (high - low) / 2.0,
        (Some(low), None) if preferred < low => low,
        (None, Some(high)) if preferred > high => high,
        _ => preferred,
    };
    if step >= 1.0 {
        // An integer still within the bounds.
        match low {
            Some(low) if value.floor() < low => value.ceil(),
            _ => value.floor(),
        }
    } else {
        value
    }
}

fn string(object: &Map<String, Value>, hint: &str) -> Value {
    let text = match object.get("format").and_then(Value::as_str) {
        Some("date-time") => "2024-05-06T07:08:09Z".to_owned(),
        Some("date") => "2024-05-06".to_owned(),
        Some("time") => "07:08:09".to_owned(),
        Some("uuid") => "0b6f9d2e-4c3a-4e8b-9f1d-2a5c7e9b1d3f".to_owned(),
        Some("email") => "user@example.com".to_owned(),
        Some("uri") => "https://example.com/".to_owned(),
        Some("ipv4") => "192.0.2.1".to_owned(),
        _ if hint.is_empty() => "text".to_owned(),
        _ => hint.to_owned(),
    };
    let length = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    let (min, max) = (length("minLength").unwrap_or(0), length("maxLength"));
    let mut text: String = text.chars().take(max.unwrap_or(usize::MAX)).collect();
    while text.chars().count() < min {
        text.push('x');
    }
    match object.get("pattern").and_then(Value::as_str) {
        Some(pattern) => json!(matching(pattern, &text, min, max).unwrap_or(text)),
        None => json!(text),
    }
}

/// A string matching `pattern` (ECMA regex, read by the `regex` crate): `preferred` if it
/// does, else the first of a few plain candidates (digits, letters, both, of the lengths the
/// schema allows) that does; `None` when none does (the example then misses the pattern, and
/// the generated test shows it).
fn matching(pattern: &str, preferred: &str, min: usize, max: Option<usize>) -> Option<String> {
    let regex = regex::Regex::new(pattern).ok()?;
    if regex.is_match(preferred) {
        return Some(preferred.to_owned());
    }
    let shortest = min.max(1);
    let lengths = shortest..=max.unwrap_or(32).clamp(shortest, 32);
    let alphabets = [
        "0123456789",
        "abcdefghij",
        "ABCDEFGHIJ",
        "a1b2c3d4e5",
        "A1B2C3D4E5",
    ];
    lengths
        .flat_map(|n| {
            alphabets
                .iter()
                .map(move |alphabet| alphabet.chars().cycle().take(n).collect::<String>())
        })
        .find(|candidate| regex.is_match(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_follow_types_formats_bounds_and_refs() {
        let schemas = json!({
            "Status": {"enum": ["new", "paid"], "type": "string"},
            "Item": {"type": "object", "properties": {
                "sku": {"type": "string"},
                "quantity": {"type": "integer", "minimum": 3},
                "price": {"type": "number"}
            }}
        });
        let schemas = schemas.as_object().unwrap();
        let order = json!({"type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"},
            "at": {"type": "string", "format": "date-time"},
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "status": {"$ref": "#/components/schemas/Status", "default": "paid"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
            "code": {"type": "string", "minLength": 8}
        }});
        assert_eq!(
            example(&order, schemas, ""),
            json!({
                "id": "0b6f9d2e-4c3a-4e8b-9f1d-2a5c7e9b1d3f",
                "at": "2024-05-06T07:08:09Z",
                "items": [{"sku": "sku", "quantity": 3, "price": 1.5}],
                "status": "paid",
                "note": "note",
                "code": "codexxxx"
            })
        );
        assert_eq!(example(&json!({"examples": [7]}), schemas, ""), json!(7));
        let bounded = |schema: Value| example(&schema, schemas, "");
        let number = json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1});
        assert_eq!(bounded(number), json!(0.5));
        let negative = json!({"type": "integer", "minimum": -5, "maximum": -1});
        assert_eq!(bounded(negative), json!(-3));
        let above = json!({"type": "integer", "exclusiveMinimum": 10});
        assert_eq!(bounded(above), json!(11));
        let digits = json!({"type": "string", "pattern": "^[0-9]{4}$"});
        assert_eq!(bounded(digits), json!("0123"));
        let code = json!({"type": "string", "pattern": "^[A-Z][0-9][A-Z][0-9]$"});
        assert_eq!(bounded(code), json!("A1B2"));
        assert_eq!(
            bounded(json!({"type": "string", "maxLength": 3})),
            json!("tex")
        );
        assert_eq!(example(&json!({"type": "integer"}), schemas, ""), json!(1));
    }

    #[test]
    fn recursive_schemas_end() {
        let schemas = json!({"Node": {"type": "object", "properties": {
            "next": {"$ref": "#/components/schemas/Node"}
        }}});
        let value = example(
            &json!({"$ref": "#/components/schemas/Node"}),
            schemas.as_object().unwrap(),
            "",
        );
        assert!(value["next"]["next"].is_object());
    }
}
