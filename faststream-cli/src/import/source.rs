//! Where the document comes from: a JSON or YAML file, or the URL of a running docs server
//! (`faststream docs serve` of Python FastStream, which embeds the document in its HTML page,
//! or of faststream-rs, which also serves it at `/asyncapi.json`). Plain `http://` only: the
//! docs servers of both are local development servers without TLS.

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long fetching a document may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the document at `source`: a file path or an `http://` URL.
pub(crate) async fn read(source: &str) -> Result<Value, String> {
    if source.starts_with("https://") {
        return Err(format!(
            "`{source}`: https is not supported; save the document (`faststream docs gen`) and import the file"
        ));
    }
    if let Some(rest) = source.strip_prefix("http://") {
        let body = tokio::time::timeout(FETCH_TIMEOUT, get(rest))
            .await
            .map_err(|_| format!("`{source}` did not answer within {FETCH_TIMEOUT:?}"))??;
        if let Some(document) = document_in(&body) {
            return Ok(document);
        }
        // faststream-rs's docs server: the page at `/`, the document beside it.
        let json_url = format!("{}/asyncapi.json", rest.trim_end_matches('/'));
        if let Ok(Ok(body)) = tokio::time::timeout(FETCH_TIMEOUT, get(&json_url)).await {
            if let Some(document) = document_in(&body) {
                return Ok(document);
            }
        }
        return Err(format!(
            "`{source}` answered, but with no AsyncAPI document (neither JSON, YAML, nor a FastStream docs page)"
        ));
    }
    let path = std::path::Path::new(source);
    let text =
        std::fs::read_to_string(path).map_err(|err| format!("cannot read `{source}`: {err}"))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    faststream::asyncapi::parse(&text, is_json)
        .map_err(|err| format!("`{source}` is not a JSON or YAML document: {err}"))
}

/// The document in a response body: the body itself (JSON or YAML), or the one a FastStream
/// docs page embeds (`AsyncApiStandalone.render({"schema": "...", ...})` or
/// `const schema = {...};`).
fn document_in(body: &str) -> Option<Value> {
    let is_document = |value: &Value| value.get("asyncapi").is_some();
    if let Ok(value) = faststream::asyncapi::parse(body, false) {
        if is_document(&value) {
            return Some(value);
        }
    }
    for marker in ["AsyncApiStandalone.render(", "const schema = "] {
        let Some(start) = body.find(marker) else {
            continue;
        };
        let rest = &body[start + marker.len()..];
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let Some(Ok(mut value)) = values.next() else {
            continue;
        };
        if let Some(schema) = value.get_mut("schema").map(Value::take) {
            value = match schema {
                Value::String(text) => serde_json::from_str(&text).ok()?,
                other => other,
            };
        }
        if is_document(&value) {
            return Some(value);
        }
    }
    None
}

/// A plain HTTP/1.1 GET of `host[:port][/path]` (after `http://`): the body of a 200 answer.
async fn get(address: &str) -> Result<String, String> {
    let (authority, path) = match address.find('/') {
        Some(slash) => (&address[..slash], &address[slash..]),
        None => (address, "/"),
    };
    let host_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&host_port)
        .await
        .map_err(|err| format!("cannot connect to {host_port}: {err}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("cannot send the request to {host_port}: {err}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|err| format!("cannot read the answer of {host_port}: {err}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{host_port} did not answer HTTP"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("http://{address} answered `{status}`"));
    }
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    Ok(if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    })
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_document_in_a_faststream_docs_page() {
        let page = r#"<script>
            window.AsyncApiStandalone.render(
                {"schema": "{\"asyncapi\": \"3.0.0\", \"info\": {\"title\": \"T\"}}", "config": {"show": {}}},
                document.getElementById("asyncapi")
            );</script>"#;
        assert_eq!(document_in(page).unwrap()["info"]["title"], "T");
        let page = r#"const schema = {"asyncapi": "3.0.0"};
            const config = {};"#;
        assert_eq!(document_in(page).unwrap()["asyncapi"], "3.0.0");
        assert_eq!(
            document_in("asyncapi: 3.0.0\ninfo: {title: Y}").unwrap()["info"]["title"],
            "Y"
        );
        assert!(document_in("<html>nothing</html>").is_none());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
