//! Avro records in the schema registry's wire format (scenario 14): three versions of one
//! record schema, each registered under the input's subject, so the input carries several
//! schema ids and the app must fetch each one from the registry before it decodes its first
//! record of it.

use crate::error::BoxError;
use apache_avro::types::Value;
use apache_avro::Schema;
use faststream::registry::{SchemaRegistry, SchemaType};

/// The record's versions, oldest first; each adds a field with a default to the one before
/// (BACKWARD compatible, as a producer team evolves a schema).
const VERSIONS: [&str; 3] = [
    r#"{"type":"record","name":"ChaosRecord","namespace":"faststream.chaos","fields":[
        {"name":"seq","type":"long"},{"name":"tag","type":"string","default":""}]}"#,
    r#"{"type":"record","name":"ChaosRecord","namespace":"faststream.chaos","fields":[
        {"name":"seq","type":"long"},{"name":"tag","type":"string","default":""},
        {"name":"source","type":"string","default":"filler"}]}"#,
    r#"{"type":"record","name":"ChaosRecord","namespace":"faststream.chaos","fields":[
        {"name":"seq","type":"long"},{"name":"tag","type":"string","default":""},
        {"name":"source","type":"string","default":"filler"},
        {"name":"written_ms","type":"long","default":0}]}"#,
];

/// The schema the app reads every version with (the first: Avro's schema resolution drops
/// the fields the later versions added).
pub fn reader_schema() -> Result<Schema, BoxError> {
    Ok(Schema::parse_str(VERSIONS[0])?)
}

/// What the app reads from a record of any version.
#[derive(Debug, serde::Deserialize)]
pub struct ChaosRecord {
    pub seq: i64,
    pub tag: String,
}

/// Registers every version under `subject` and prints their ids as `v1=ID v2=ID v3=ID`
/// (what `fill --avro` takes; registering a version again gives its id again).
pub async fn register(url: &str, subject: &str) -> Result<(), BoxError> {
    let registry = SchemaRegistry::new(url)?;
    let mut ids = Vec::with_capacity(VERSIONS.len());
    for (index, schema) in VERSIONS.iter().enumerate() {
        let id = registry.register(subject, SchemaType::Avro, schema).await?;
        ids.push(format!("v{}={id}", index + 1));
    }
    println!("{}", ids.join(" "));
    Ok(())
}

/// Which schema versions `fill` writes with, and under which ids: `v1=7,v3=9` (as `register`
/// printed them). The filler knows the ids beforehand, as a producer that cached them does,
/// so it writes while the registry is down.
#[derive(Debug, Clone)]
pub struct Writers {
    /// (schema, id), in the order given.
    versions: Vec<(Schema, u32)>,
}

impl std::str::FromStr for Writers {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let mut versions = Vec::new();
        for pair in list.split(',') {
            let bad = || format!("`{pair}` is not vN=ID (N from 1 to {})", VERSIONS.len());
            let (version, id) = pair.split_once('=').ok_or_else(bad)?;
            let version: usize = version
                .strip_prefix('v')
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            let text = version
                .checked_sub(1)
                .and_then(|i| VERSIONS.get(i))
                .ok_or_else(bad)?;
            let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
            versions.push((schema, id.parse().map_err(|_| bad())?));
        }
        Ok(Writers { versions })
    }
}

impl Writers {
    /// Record `seq` with `tag` in the wire format (the magic byte 0, the id as 4 bytes
    /// big-endian, the Avro datum). Each partition's records take the versions in turn by
    /// offset (`index`), so every partition meets every id.
    pub fn encode(&self, index: u64, seq: u64, tag: &str) -> Result<Vec<u8>, BoxError> {
        let (schema, id) = &self.versions[(index % self.versions.len() as u64) as usize];
        let Schema::Record(record) = schema else {
            return Err("the chaos schemas are records".into());
        };
        let values = record
            .fields
            .iter()
            .map(|field| {
                let value = match field.name.as_str() {
                    "seq" => Value::Long(seq as i64),
                    "tag" => Value::String(tag.to_owned()),
                    "source" => Value::String("chaos-fill".to_owned()),
                    "written_ms" => Value::Long(epoch_ms()),
                    other => return Err(format!("no value for field `{other}`")),
                };
                Ok((field.name.clone(), value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = apache_avro::to_avro_datum(schema, Value::Record(values))?;
        let mut framed = Vec::with_capacity(5 + body.len());
        framed.push(0);
        framed.extend_from_slice(&id.to_be_bytes());
        framed.extend_from_slice(&body);
        Ok(framed)
    }
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
