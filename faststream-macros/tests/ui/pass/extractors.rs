// Every extractor, a header parameter, a custom #[extract] type, and no payload at all.
#![deny(warnings)]
use faststream::extract::MessageContext;
use faststream::{subscriber, Extraction, FromMessageParts, Headers, Key, Message, Meta, State};

struct Tenant(String);

impl FromMessageParts for Tenant {
    fn from_message_parts(message: &Message, _cx: &MessageContext<'_>) -> Extraction<Self> {
        Extraction::ready(Tenant(
            message
                .headers
                .get_str("tenant")
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

struct Db;

#[subscriber("events")]
async fn no_payload(
    key: Key<Option<String>>,
    headers: Headers,
    meta: Meta,
    db: State<Db>,
    message: faststream::Message,
    #[extract] tenant: Tenant,
    #[header("x-trace")] trace: Option<String>,
    #[header("x-count")] count: i64,
) {
    let _ = (
        key.0,
        headers,
        meta.offset,
        &*db,
        message.offset,
        tenant.0,
        trace,
        count,
    );
}

#[subscriber("events")]
async fn with_header_and_payload(#[header("x-tenant")] tenant: String, body: String) -> String {
    format!("{tenant}: {body}")
}

fn main() {
    assert!(no_payload::config().docs.payload_schema.is_none());
    assert!(with_header_and_payload::config().docs.payload_schema.is_some());
}
