//! `docs serve`: a small HTTP server for the docs page and the raw document.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The three bodies served.
#[derive(Debug)]
struct Pages {
    html: Bytes,
    json: Bytes,
    yaml: Bytes,
}

/// Why the docs server could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The server could not listen.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `host:port`.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The document could not be turned into JSON or YAML.
    #[error(transparent)]
    Document(#[from] crate::AsyncApiError),
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves `document` on `host:port` until `stop` resolves: the HTML page at `/`, the document
/// at `/asyncapi.json` and `/asyncapi.yaml`. `ready` is called with the bound address (port 0
/// picks a free port).
pub async fn serve_document(
    document: &Value,
    host: &str,
    port: u16,
    ready: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let pages = Arc::new(Pages {
        html: Bytes::from(crate::page::render_page(document)),
        json: Bytes::from(crate::to_json(document)?),
        yaml: Bytes::from(crate::to_yaml(document)?),
    });
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|source| ServeError::Bind {
            address: format!("{host}:{port}"),
            source,
        })?;
    ready(listener.local_addr()?);
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!("accepting a connection failed: {err}");
                    continue;
                }
            },
            () = &mut stop => return Ok(()),
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let pages = Arc::clone(&pages);
                async move { Ok::<_, Infallible>(respond(&pages, &req)) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("docs connection ended: {err}");
            }
        });
    }
}

fn respond(pages: &Pages, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let (body, content_type) = match req.uri().path() {
        "/" | "/index.html" => (&pages.html, "text/html; charset=utf-8"),
        "/asyncapi.json" => (&pages.json, "application/json"),
        "/asyncapi.yaml" | "/asyncapi.yml" => (&pages.yaml, "application/yaml"),
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(body.clone()));
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
