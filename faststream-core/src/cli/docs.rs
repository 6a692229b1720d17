//! The seam between the CLI and AsyncAPI document generation ([`crate::asyncapi`]) and the
//! docs page ([`crate::docs`]).

use crate::app::FastStream;
use crate::broker::Broker;
use serde_json::Value;

pub use crate::asyncapi::AsyncApiVersion;

/// The app's AsyncAPI document.
pub(crate) fn document<B: Broker>(app: &FastStream<B>, version: AsyncApiVersion) -> Value {
    app.asyncapi(version)
}

/// A document as YAML text.
pub(crate) fn to_yaml(document: &Value) -> Result<String, String> {
    crate::asyncapi::to_yaml(document).map_err(|e| e.to_string())
}

/// A document read from YAML (or JSON, which is YAML too) text.
pub(crate) fn from_yaml(text: &str) -> Result<Value, String> {
    serde_norway::from_str(text).map_err(|e| e.to_string())
}

/// The self-contained HTML page showing `document`.
pub(crate) fn render_page(document: &Value) -> String {
    crate::docs::render_page(document)
}
