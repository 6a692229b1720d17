//! `schema check`: a codec's own schema against the subject's latest version, under the
//! subject's compatibility level. The registry decides (its compatibility endpoint); when it
//! names no field (Apicurio's verbose answer is a bare `is_compatible`), the breaking fields
//! are found here by reading the two schemas the way the level says records will be read.

use crate::client::{RegistryError, SchemaReference, SchemaRegistry, SchemaType};
use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use faststream_core::codec::SchemaCheck;
use serde_json::Value;

/// Checks `schema` (of `schema_type`) as the next version of `subject`.
pub(crate) async fn check(
    registry: &SchemaRegistry,
    subject: String,
    schema_type: SchemaType,
    schema: String,
    references: &[SchemaReference],
) -> Result<SchemaCheck, String> {
    // The compatibility endpoint answers "compatible" for a subject it does not hold
    // (Apicurio), so the latest version is asked for first.
    let latest = match registry.latest(&subject).await {
        Ok(latest) => latest,
        Err(RegistryError::NotFound(_)) => {
            return Err(format!(
                "subject `{subject}` is not in the schema registry at {}",
                registry.url()
            ))
        }
        Err(err) => return Err(err.to_string()),
    };
    let level = registry
        .compatibility_level(&subject)
        .await
        .map_err(|e| e.to_string())?;
    let verdict = registry
        .check_compatibility(&subject, schema_type, &schema, references)
        .await
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if !verdict.is_compatible {
        problems = verdict.messages;
        if problems.is_empty() {
            problems = breaking_fields(schema_type, &latest.schema, &schema, &level);
        }
        if problems.is_empty() {
            problems.push(format!(
                "incompatible with the latest version (schema id {}); the registry names no field",
                latest.id
            ));
        }
    }
    Ok(SchemaCheck {
        subject,
        level: Some(level),
        problems,
    })
}

/// Which way records are read under `level`: (the new schema reads the latest's records,
/// the latest reads the new schema's records).
fn directions(level: &str) -> (bool, bool) {
    let backward = level.starts_with("BACKWARD") || level.starts_with("FULL");
    let forward = level.starts_with("FORWARD") || level.starts_with("FULL");
    (backward, forward)
}

/// The fields that break reading between the latest schema and the new one, one line each.
fn breaking_fields(schema_type: SchemaType, latest: &str, new: &str, level: &str) -> Vec<String> {
    let (backward, forward) = directions(level);
    match schema_type {
        SchemaType::Avro => {
            let (Ok(latest), Ok(new)) = (Schema::parse_str(latest), Schema::parse_str(new)) else {
                return Vec::new();
            };
            let mut problems = Vec::new();
            if backward {
                problems.extend(avro_problem(&latest, &new, Reader::New));
            }
            if forward {
                problems.extend(avro_problem(&new, &latest, Reader::Latest));
            }
            problems
        }
        SchemaType::Json => {
            let (Ok(latest), Ok(new)) = (
                serde_json::from_str::<Value>(latest),
                serde_json::from_str::<Value>(new),
            ) else {
                return Vec::new();
            };
            let mut problems = Vec::new();
            if backward {
                json_problems(&latest, &new, Reader::New, "", &mut problems);
            }
            if forward {
                json_problems(&new, &latest, Reader::Latest, "", &mut problems);
            }
            problems
        }
        SchemaType::Protobuf => Vec::new(),
    }
}

/// Which schema reads the other's records.
#[derive(Clone, Copy)]
enum Reader {
    /// The new schema reads the latest version's records (BACKWARD).
    New,
    /// The latest version's readers read the new schema's records (FORWARD).
    Latest,
}

/// The first field Avro's schema resolution stops at (apache-avro reports one).
fn avro_problem(writer: &Schema, reader: &Schema, who: Reader) -> Option<String> {
    let mut err = SchemaCompatibility::can_read(writer, reader).err()?;
    let mut path = Vec::new();
    while let CompatibilityError::FieldTypeMismatch(field, inner) = err {
        path.push(field);
        err = *inner;
    }
    let field = |last: Option<&str>| {
        let mut names: Vec<&str> = path.iter().map(String::as_str).collect();
        names.extend(last);
        names.join(".")
    };
    Some(match (err, who) {
        (CompatibilityError::MissingDefaultValue(name), Reader::New) => format!(
            "field `{}` is new and has no default: records of the latest version lack it",
            field(Some(&name))
        ),
        (CompatibilityError::MissingDefaultValue(name), Reader::Latest) => format!(
            "field `{}` was removed and has no default in the latest version: its readers need it",
            field(Some(&name))
        ),
        (other, _) if !path.is_empty() => format!("field `{}` changed: {other}", field(None)),
        (other, _) => other.to_string(),
    })
}

/// JSON Schema objects: a property the reader requires that the writer may leave out, or
/// whose type the writer may write otherwise; nested objects too.
fn json_problems(writer: &Value, reader: &Value, who: Reader, at: &str, out: &mut Vec<String>) {
    let required = |schema: &Value, name: &str| {
        schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name))
    };
    let Some(properties) = reader["properties"].as_object() else {
        return;
    };
    for (name, read) in properties {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        let written = &writer["properties"][name];
        if required(reader, name) && !required(writer, name) {
            out.push(match who {
                Reader::New => format!(
                    "field `{path}` is required now: records of the latest version may lack it"
                ),
                Reader::Latest => format!(
                    "field `{path}` is not required any more: the latest version's readers require it"
                ),
            });
        } else if written.is_object() && !types_read(written, read) {
            out.push(format!(
                "field `{path}` changed type: {} written, {} read",
                written["type"], read["type"]
            ));
        } else if written.is_object() {
            json_problems(written, read, who, &path, out);
        }
    }
}

/// Whether a reader of type `read` accepts every value of type `written` (`type` a name or a
/// list of names; an integer is a number; no `type` accepts anything).
fn types_read(written: &Value, read: &Value) -> bool {
    let names = |schema: &Value| -> Option<Vec<String>> {
        match &schema["type"] {
            Value::String(name) => Some(vec![name.clone()]),
            Value::Array(names) => Some(
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        }
    };
    let (Some(written), Some(read)) = (names(written), names(read)) else {
        return true;
    };
    written
        .iter()
        .all(|w| read.contains(w) || (w == "integer" && read.iter().any(|r| r == "number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}"#;

    #[test]
    fn avro_names_the_field_that_breaks_each_direction() {
        let added = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"qty","type":"int"}]}"#;
        let problems = breaking_fields(SchemaType::Avro, V1, added, "BACKWARD");
        assert_eq!(
            problems,
            ["field `qty` is new and has no default: records of the latest version lack it"]
        );
        assert!(breaking_fields(SchemaType::Avro, V1, added, "FORWARD").is_empty());
        let retyped =
            r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
        let problems = breaking_fields(SchemaType::Avro, V1, retyped, "FULL");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("field `id` changed"),
            "{problems:?}"
        );
    }

    #[test]
    fn json_schema_names_required_and_retyped_fields() {
        let v1 = r#"{"type":"object","properties":{"id":{"type":"integer"},"item":{"type":"string"}},"required":["id"]}"#;
        let v2 = r#"{"type":"object","properties":{"id":{"type":"number"},"item":{"type":"string"}},"required":["id","item"]}"#;
        assert_eq!(
            breaking_fields(SchemaType::Json, v1, v2, "BACKWARD"),
            ["field `item` is required now: records of the latest version may lack it"]
        );
        assert_eq!(
            breaking_fields(SchemaType::Json, v1, v2, "FORWARD"),
            ["field `id` changed type: \"number\" written, \"integer\" read"]
        );
        assert!(breaking_fields(SchemaType::Json, v1, v2, "NONE").is_empty());
    }
}
