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
        Some("integer") => {
            let minimum = bound(object, "minimum", "exclusiveMinimum", 1.0);
            json!(minimum.max(1.0).ceil() as i64)
        }
        Some("number") => json!(bound(object, "minimum", "exclusiveMinimum", 0.5).max(1.5)),
        Some("boolean") => json!(true),
        _ => Value::Null,
    }
}

/// The lower bound of a number, or `fallback`.
fn bound(object: &Map<String, Value>, inclusive: &str, exclusive: &str, fallback: f64) -> f64 {
    object
        .get(inclusive)
        .and_then(Value::as_f64)
        .or_else(|| {
            object
                .get(exclusive)
                .and_then(Value::as_f64)
                .map(|b| b + 1.0)
        })
        .unwrap_or(fallback)
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
    let min = object.get("minLength").and_then(Value::as_u64).unwrap_or(0);
    let min = usize::try_from(min).unwrap_or(0);
    if text.chars().count() < min {
        return json!(format!("{text}{}", "x".repeat(min - text.chars().count())));
    }
    json!(text)
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
