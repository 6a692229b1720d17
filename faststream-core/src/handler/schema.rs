//! Payload schemas, for documentation tools such as AsyncAPI generators: the runtime only
//! carries them on subscriber and publisher configurations.

/// Writes the JSON schema of a payload type.
pub type SchemaFn = fn(&mut schemars::r#gen::SchemaGenerator) -> schemars::schema::Schema;
