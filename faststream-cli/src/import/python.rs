//! `--app module:app`: what the AsyncAPI document leaves out, read from the Python app itself
//! by a short script run in the given Python (a venv with the app's dependencies): each
//! subscriber's function, topics, group id, batch settings, publishers and return type.

use super::contract::PythonSubscriber;
use std::path::Path;
use std::process::Stdio;

/// The script: prints one JSON list of subscribers.
const INSPECT: &str = r##"
import importlib, inspect, json, sys

module_name, _, attribute = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module_name), attribute or "app")
broker = getattr(app, "broker", app)

from faststream.kafka.publisher.usecase import BatchPublisher

def returns(function):
    annotation = inspect.signature(function).return_annotation
    if annotation in (inspect.Signature.empty, None, type(None)):
        return None
    from pydantic import TypeAdapter
    return TypeAdapter(annotation).json_schema(ref_template="#/components/schemas/{model}")

subscribers = []
for subscriber in broker.subscribers:
    for call in subscriber.calls:
        handler = call.handler
        function = handler._original_call
        subscribers.append({
            "function": function.__name__,
            "topics": list(subscriber.topic_names),
            "group_id": subscriber.group_id,
            "batch": hasattr(subscriber, "max_records"),
            "max_records": getattr(subscriber, "max_records", None),
            "batch_timeout_ms": getattr(subscriber, "batch_timeout_ms", None),
            "publishers": [
                {"topic": publisher.topic, "batch": isinstance(publisher, BatchPublisher)}
                for publisher in handler._publishers
            ],
            "returns": returns(function),
        })
print(json.dumps(subscribers))
"##;

/// Runs the script on `app` (`module:app`) with `python` in `app_dir`.
pub(crate) async fn inspect(
    python: &Path,
    app_dir: &Path,
    app: &str,
) -> Result<Vec<PythonSubscriber>, String> {
    let output = tokio::process::Command::new(python)
        .args(["-c", INSPECT, app])
        .current_dir(app_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| format!("cannot run `{}`: {err}", python.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.trim().lines().last().unwrap_or_default().to_owned();
        return Err(format!(
            "`{}` could not read the app `{app}` ({}): {last}",
            python.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The app may print at import: the list is the last line.
    let line = stdout.trim().lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|err| format!("unexpected answer from the app's inspection: {err}: {line}"))
}
