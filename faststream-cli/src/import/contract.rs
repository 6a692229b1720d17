//! What a FastStream service promises, read from its AsyncAPI 3.0.0 document: the
//! subscribers (topic, handler, payload schema), the publishers (topic, payload schema) and
//! the schemas, plus what only the Python app knows (groups, batches, which publisher belongs
//! to which subscriber, reply types), merged in from `--app` when given.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Where the document's components live.
const SCHEMAS: &str = "#/components/schemas/";

/// A document that cannot be imported.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ContractError(pub(crate) String);

/// A service's contract.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contract {
    /// The document's title (`info.title`).
    pub(crate) title: String,
    /// The subscribers, in document order.
    pub(crate) handlers: Vec<Handler>,
    /// Publishers the document does not tie to a subscriber: publisher objects of the app.
    pub(crate) loose_publishers: Vec<Publication>,
    /// `components/schemas`, by name.
    pub(crate) schemas: Map<String, Value>,
    /// The assumptions made where the document is silent (for the generated README).
    pub(crate) defaults_used: Vec<String>,
}

/// One subscriber.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Handler {
    /// The Python function's name, e.g. `handle_msg`.
    pub(crate) function: String,
    /// The topic.
    pub(crate) topic: String,
    /// The consumer group.
    pub(crate) group_id: String,
    /// The payload's schema name (under `components/schemas`).
    pub(crate) payload: String,
    /// `Some(max_records)` for a batch subscriber (`None` inside: no limit).
    pub(crate) batch: Option<Option<u64>>,
    /// How long a batch waits for more records, in milliseconds (FastStream's default 200).
    pub(crate) batch_timeout_ms: u64,
    /// The handler's description (its docstring).
    pub(crate) description: Option<String>,
    /// Where the return value goes.
    pub(crate) publishes: Vec<Publication>,
    /// The schema of what the handler returns when no publisher documents it (a reply).
    pub(crate) reply_schema: Option<Value>,
}

/// One publisher.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Publication {
    /// The topic.
    pub(crate) topic: String,
    /// The payload's schema name (under `components/schemas`).
    pub(crate) payload: String,
    /// Whether each element of a returned list is its own record.
    pub(crate) batch: bool,
}

/// What `--app` read from the Python app itself, one entry per subscriber.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct PythonSubscriber {
    /// The function's name.
    pub(crate) function: String,
    /// Its topics (prefixes applied).
    pub(crate) topics: Vec<String>,
    /// Its group id (`None`: FastStream's default, no group).
    pub(crate) group_id: Option<String>,
    /// Whether it is a batch subscriber.
    pub(crate) batch: bool,
    /// `max_records` of a batch subscriber.
    pub(crate) max_records: Option<u64>,
    /// `batch_timeout_ms` of a batch subscriber.
    pub(crate) batch_timeout_ms: Option<u64>,
    /// The topics of its publishers (`@publisher` stacked on it).
    pub(crate) publishers: Vec<PythonPublisher>,
    /// The JSON Schema of its return annotation, when it has one other than `None`.
    pub(crate) returns: Option<Value>,
}

/// A publisher of a Python subscriber.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub(crate) struct PythonPublisher {
    /// The topic (prefix applied).
    pub(crate) topic: String,
    /// `publisher(batch=True)`.
    pub(crate) batch: bool,
}

fn text<'a>(value: &'a Value, what: &str) -> Result<&'a str, ContractError> {
    value
        .as_str()
        .ok_or_else(|| ContractError(format!("{what} is not a string")))
}

/// The component name a `$ref` points to (`#/components/schemas/Order` -> `Order`).
pub(crate) fn schema_ref(value: &Value) -> Option<String> {
    let reference = value.get("$ref")?.as_str()?;
    let name = reference.strip_prefix(SCHEMAS)?;
    Some(name.replace("~1", "/").replace("~0", "~"))
}

/// Follows a JSON pointer `$ref` (`#/a/b`) inside `document`.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => pointer
            .strip_prefix('#')
            .and_then(|p| document.pointer(p))
            .unwrap_or(value),
        None => value,
    }
}

/// `HandleMsg` -> `handle_msg`: the Python function name FastStream camel-cased.
pub(crate) fn snake_case(camel: &str) -> String {
    heck::ToSnakeCase::to_snake_case(camel)
}

/// The payload schema name of the one message of an operation.
fn operation_payload(
    document: &Value,
    operation: &Value,
    key: &str,
) -> Result<String, ContractError> {
    let messages = operation["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ContractError(format!("operation `{key}` has no message")))?;
    if messages.len() > 1 {
        return Err(ContractError(format!(
            "operation `{key}` has {} messages; one per operation is supported",
            messages.len()
        )));
    }
    let message = resolve(document, resolve(document, &messages[0]));
    let payload = &message["payload"];
    schema_ref(payload).ok_or_else(|| {
        ContractError(format!(
            "the message of operation `{key}` has an inline payload; FastStream documents refer to `{SCHEMAS}...`"
        ))
    })
}

/// A return type's schema (pydantic's `TypeAdapter(...).json_schema()`) as the document
/// would hold it: its `$defs` moved into `schemas`, and a model the document already has (same
/// title) referred to rather than repeated.
fn into_components(mut schema: Value, schemas: &mut Map<String, Value>) -> Value {
    if let Some(Value::Object(definitions)) = schema.as_object_mut().and_then(|s| s.remove("$defs"))
    {
        for (name, definition) in definitions {
            schemas.entry(name).or_insert(definition);
        }
    }
    match schema.get("title").and_then(Value::as_str) {
        Some(title) if schema.get("properties").is_some() => {
            let title = title.to_owned();
            schemas.entry(title.clone()).or_insert(schema);
            serde_json::json!({ "$ref": format!("{SCHEMAS}{}", title.replace('~', "~0").replace('/', "~1")) })
        }
        _ => schema,
    }
}

impl Contract {
    /// Reads an AsyncAPI 3.0.0 document (as `faststream docs gen` writes it).
    pub(crate) fn from_document(document: &Value) -> Result<Self, ContractError> {
        let version = document["asyncapi"].as_str().unwrap_or_default();
        if !version.starts_with("3.") {
            return Err(ContractError(format!(
                "AsyncAPI `{version}` is not supported: import reads 3.0.0 documents \
                 (`faststream docs gen APP` writes 3.0.0 unless told otherwise)"
            )));
        }
        let title = document["info"]["title"]
            .as_str()
            .unwrap_or("FastStream")
            .to_owned();
        let schemas = document["components"]["schemas"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let empty = Map::new();
        let operations = document["operations"].as_object().unwrap_or(&empty);
        let mut handlers = Vec::new();
        let mut publishers = Vec::new();
        for (key, operation) in operations {
            let channel = resolve(document, &operation["channel"]);
            let topic = text(
                &channel["address"],
                &format!("the address of `{key}`'s channel"),
            )?
            .to_owned();
            let payload = operation_payload(document, operation, key)?;
            match operation["action"].as_str() {
                Some("receive") => {
                    // `{topic}:{HandlerName}Subscribe`: the handler's name is FastStream's
                    // camel-cased function name.
                    let channel_key = key.strip_suffix("Subscribe").unwrap_or(key);
                    let camel = channel_key
                        .rsplit_once(':')
                        .map_or(channel_key, |(_, name)| name);
                    let function = snake_case(camel);
                    handlers.push(Handler {
                        group_id: function.clone(),
                        function,
                        topic,
                        payload,
                        batch: None,
                        batch_timeout_ms: 200,
                        description: operation["description"]
                            .as_str()
                            .or(channel["description"].as_str())
                            .map(str::to_owned),
                        publishes: Vec::new(),
                        reply_schema: None,
                    });
                }
                Some("send") => publishers.push(Publication {
                    topic,
                    payload,
                    batch: false,
                }),
                other => {
                    return Err(ContractError(format!(
                        "operation `{key}` has action {other:?}, expected receive or send"
                    )))
                }
            }
        }
        if handlers.is_empty() {
            return Err(ContractError(
                "the document has no subscriber (no `receive` operation)".into(),
            ));
        }
        let mut contract = Contract {
            title,
            handlers,
            loose_publishers: Vec::new(),
            schemas,
            defaults_used: Vec::new(),
        };
        contract.defaults_used.push(
            "Group ids: the document has none (FastStream writes no Kafka operation bindings), \
             so each subscriber's group is its handler's name, faststream-rs's default. \
             Import with `--app module:app` to read the Python app's own."
                .into(),
        );
        if contract.handlers.len() == 1 {
            contract.handlers[0].publishes = publishers;
            contract.defaults_used.push(
                "Publishers: the document does not say which subscriber a publisher belongs to; \
                 with one subscriber, every publisher is taken as its `@publisher`."
                    .into(),
            );
        } else {
            if !publishers.is_empty() {
                contract.defaults_used.push(
                    "Publishers: the document does not say which subscriber a publisher belongs \
                     to; with several subscribers, each publisher is a `Publisher` object of \
                     the app and the handlers return nothing. Import with `--app module:app` \
                     to tie them to their subscribers."
                        .into(),
                );
            }
            contract.loose_publishers = publishers;
        }
        contract.defaults_used.push(
            "Batch subscribers: the document shows a batch subscriber's payload as an array, \
             like a subscriber of JSON arrays; without `--app` each is a plain subscriber of \
             that array."
                .into(),
        );
        Ok(contract)
    }

    /// Merges what the Python app says (`--app`): group ids, batches, which publisher belongs
    /// to which subscriber, reply types. The assumptions it replaces leave the README.
    pub(crate) fn with_app(mut self, app: &[PythonSubscriber]) -> Result<Self, ContractError> {
        let mut all_publishers: Vec<Publication> = self
            .handlers
            .iter_mut()
            .flat_map(|h| std::mem::take(&mut h.publishes))
            .chain(std::mem::take(&mut self.loose_publishers))
            .collect();
        let mut claimed = BTreeSet::new();
        for handler in &mut self.handlers {
            let python = app
                .iter()
                .find(|s| {
                    s.function == handler.function && s.topics.contains(&handler.topic)
                })
                .ok_or_else(|| {
                    ContractError(format!(
                        "the app has no subscriber `{}` on `{}`: is it the app the document was generated from?",
                        handler.function, handler.topic
                    ))
                })?;
            handler.group_id = python
                .group_id
                .clone()
                .unwrap_or_else(|| handler.function.clone());
            if python.batch {
                handler.batch = Some(python.max_records);
                if let Some(timeout) = python.batch_timeout_ms {
                    handler.batch_timeout_ms = timeout;
                }
            }
            for publisher in &python.publishers {
                if let Some(index) = all_publishers
                    .iter()
                    .position(|p| p.topic == publisher.topic)
                {
                    let mut publication = all_publishers[index].clone();
                    publication.batch = publisher.batch;
                    claimed.insert(index);
                    handler.publishes.push(publication);
                }
            }
            if handler.publishes.is_empty() {
                handler.reply_schema = python
                    .returns
                    .clone()
                    .map(|schema| into_components(schema, &mut self.schemas));
            }
        }
        let mut index = 0;
        all_publishers.retain(|_| {
            index += 1;
            !claimed.contains(&(index - 1))
        });
        self.loose_publishers = all_publishers;
        self.defaults_used.clear();
        if self.handlers.iter().any(|h| {
            app.iter()
                .any(|s| s.function == h.function && s.group_id.is_none())
        }) {
            self.defaults_used.push(
                "A subscriber without `group_id` in Python (no consumer group) gets its \
                 handler's name as its group, faststream-rs's default: the Rust service commits \
                 its offsets."
                    .into(),
            );
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({
            "asyncapi": "3.0.0",
            "info": {"title": "FastStream", "version": "0.1.0"},
            "channels": {
                "in:HandleMsg": {"address": "in", "messages": {"SubscribeMessage": {"$ref": "#/components/messages/in:HandleMsg:SubscribeMessage"}}},
                "out:Publisher": {"address": "out", "messages": {"Message": {"$ref": "#/components/messages/out:Publisher:Message"}}}
            },
            "operations": {
                "in:HandleMsgSubscribe": {"action": "receive", "channel": {"$ref": "#/channels/in:HandleMsg"},
                    "messages": [{"$ref": "#/channels/in:HandleMsg/messages/SubscribeMessage"}]},
                "out:Publisher": {"action": "send", "channel": {"$ref": "#/channels/out:Publisher"},
                    "messages": [{"$ref": "#/channels/out:Publisher/messages/Message"}]}
            },
            "components": {
                "messages": {
                    "in:HandleMsg:SubscribeMessage": {"payload": {"$ref": "#/components/schemas/HandleMsg:Message:Payload"}},
                    "out:Publisher:Message": {"payload": {"$ref": "#/components/schemas/out:Publisher:Message:Payload"}}
                },
                "schemas": {
                    "HandleMsg:Message:Payload": {"type": "object", "properties": {"user": {"type": "string"}}},
                    "out:Publisher:Message:Payload": {"type": "string"}
                }
            }
        })
    }

    #[test]
    fn reads_subscribers_and_publishers() {
        let contract = Contract::from_document(&seed()).unwrap();
        assert_eq!(contract.handlers.len(), 1);
        let handler = &contract.handlers[0];
        assert_eq!(handler.function, "handle_msg");
        assert_eq!(handler.topic, "in");
        assert_eq!(handler.group_id, "handle_msg");
        assert_eq!(handler.payload, "HandleMsg:Message:Payload");
        assert_eq!(
            handler.publishes,
            [Publication {
                topic: "out".into(),
                payload: "out:Publisher:Message:Payload".into(),
                batch: false
            }]
        );
        assert_eq!(contract.defaults_used.len(), 3);
    }

    #[test]
    fn the_python_app_fills_in_groups_batches_and_publishers() {
        let app = [PythonSubscriber {
            function: "handle_msg".into(),
            topics: vec!["in".into()],
            group_id: Some("g".into()),
            batch: true,
            max_records: Some(10),
            batch_timeout_ms: Some(50),
            publishers: vec![],
            returns: Some(json!({"type": "integer"})),
        }];
        let contract = Contract::from_document(&seed())
            .unwrap()
            .with_app(&app)
            .unwrap();
        let handler = &contract.handlers[0];
        assert_eq!(handler.group_id, "g");
        assert_eq!(handler.batch, Some(Some(10)));
        assert_eq!(handler.batch_timeout_ms, 50);
        assert!(handler.publishes.is_empty());
        assert_eq!(
            contract.loose_publishers.len(),
            1,
            "`out` is nobody's publisher"
        );
        assert_eq!(handler.reply_schema, Some(json!({"type": "integer"})));
        assert!(contract.defaults_used.is_empty());
    }

    #[test]
    fn a_model_returned_as_a_reply_refers_to_the_documents_schema() {
        let mut schemas = Map::new();
        let reply = into_components(
            json!({"title": "Answer", "type": "object", "properties": {"part": {"$ref": "#/components/schemas/Part"}},
                   "$defs": {"Part": {"type": "string"}}}),
            &mut schemas,
        );
        assert_eq!(reply, json!({"$ref": "#/components/schemas/Answer"}));
        assert_eq!(schemas["Part"], json!({"type": "string"}));
        assert!(schemas["Answer"].get("$defs").is_none());
        assert_eq!(
            into_components(json!({"type": "integer"}), &mut schemas),
            json!({"type": "integer"})
        );
    }

    #[test]
    fn refuses_other_versions_and_apps_that_do_not_match() {
        let err = Contract::from_document(&json!({"asyncapi": "2.6.0"})).unwrap_err();
        assert!(err.0.contains("2.6.0"), "{err}");
        let err = Contract::from_document(&seed())
            .unwrap()
            .with_app(&[])
            .unwrap_err();
        assert!(
            err.0.contains("no subscriber `handle_msg` on `in`"),
            "{err}"
        );
    }
}
