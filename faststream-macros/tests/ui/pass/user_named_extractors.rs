// User payload types named like framework extractors (`Message`, `State`) are payload, by trait:
// alone, next to other payload parameters, next to real extractors. A payload type without
// `JsonSchema` compiles too (its schema is "any JSON"). The derives go through the facade only.
#![deny(warnings)]
use faststream::{subscriber, Deserialize, JsonSchema};

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "faststream::serde")]
#[schemars(crate = "faststream::schemars")]
struct Message {
    text: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(crate = "faststream::serde")]
#[schemars(crate = "faststream::schemars")]
struct State {
    count: u32,
}

/// No `JsonSchema`.
#[derive(Deserialize)]
#[serde(crate = "faststream::serde")]
struct Opaque {
    id: u64,
}

#[subscriber("a")]
async fn single(message: Message) -> String {
    message.text
}

#[subscriber("b")]
async fn fields(message: Message, state: State, user_id: i64) -> String {
    format!("{} {} {user_id}", message.text, state.count)
}

#[subscriber("c")]
async fn beside_extractors(
    state: State,
    key: faststream::Key<String>,
    raw: faststream::Message,
) -> String {
    format!("{} {} {}", state.count, key.0, raw.offset)
}

#[subscriber("d")]
async fn opaque(body: Opaque) -> u64 {
    body.id
}

#[subscriber("e")]
async fn opaque_fields(body: Opaque, n: Option<i64>) -> u64 {
    body.id + n.unwrap_or_default() as u64
}

#[subscriber("f")]
async fn pattern_beside_extractor(Opaque { id }: Opaque, meta: faststream::Meta) -> u64 {
    id + meta.offset as u64
}

fn main() {
    for config in [
        single::config(),
        fields::config(),
        beside_extractors::config(),
        opaque::config(),
        opaque_fields::config(),
        pattern_beside_extractor::config(),
    ] {
        assert!(config.docs.payload_schema.is_some(), "{}", config.name);
    }
}
