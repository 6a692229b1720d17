//! The app's small HTTP server (feature `cli`): health probes, and any route an app or a
//! middleware crate adds (a Prometheus `/metrics`, for one).
//!
//! `my-app run --health-port 8080` serves, on 127.0.0.1 unless `--health-host` says
//! otherwise:
//! - `/health/live`: 200 while nothing fatal happened, else 503;
//! - `/health/ready`: 200 when every subscriber is assigned and consuming, no message is in
//!   flight longer than [`FastStream::stuck_after`](crate::FastStream::stuck_after) and the
//!   producer is connected, else 503 with the reasons;
//! - `/health`: the whole [`AppHealth`] as JSON.
//!
//! ```no_run
//! use faststream::http::{HttpResponse, HttpServer};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let server = HttpServer::new()
//!     .route("/version", || HttpResponse::text(200, "1.2.3\n"))
//!     .bind("127.0.0.1:0".parse().unwrap())
//!     .await?;
//! println!("listening on {}", server.local_addr());
//! server.stop().await;
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use faststream_core::{AppHealth, HealthProbe};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: String,
}

impl HttpResponse {
    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: body.into(),
        }
    }

    /// An answer with its own content type (`application/json`, Prometheus' text format...).
    pub fn with_type(
        status: u16,
        content_type: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Self {
            status,
            content_type: content_type.into(),
            body: body.into(),
        }
    }
}

/// A route's handler: called for every GET of its path.
pub type RouteHandler = Arc<dyn Fn() -> HttpResponse + Send + Sync>;

/// A small HTTP/1 server over a fixed set of GET routes.
#[derive(Clone, Default)]
pub struct HttpServer {
    routes: Vec<(String, RouteHandler)>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field(
                "routes",
                &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl HttpServer {
    /// A server with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers GET `path` with `handler` (a later route for the same path wins).
    pub fn route(
        mut self,
        path: impl Into<String>,
        handler: impl Fn() -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.routes.push((path.into(), Arc::new(handler)));
        self
    }

    /// Adds already boxed routes.
    pub fn routes(mut self, routes: impl IntoIterator<Item = (String, RouteHandler)>) -> Self {
        self.routes.extend(routes);
        self
    }

    /// Adds `/health/live`, `/health/ready` and `/health` answered from `probe`.
    pub fn health(self, probe: HealthProbe) -> Self {
        let full = probe.clone();
        self.route(
            "/health/live",
            probe_answer(probe.clone(), AppHealth::is_live, "live"),
        )
        .route(
            "/health/ready",
            probe_answer(probe, AppHealth::is_ready, "ready"),
        )
        .route("/health", move || {
            let health = full.health();
            let status = if health.is_ready() { 200 } else { 503 };
            match serde_json::to_string_pretty(&health) {
                Ok(json) => HttpResponse::with_type(status, "application/json", json + "\n"),
                Err(err) => HttpResponse::text(500, format!("{err}\n")),
            }
        })
    }

    /// Listens on `addr` (port 0 picks a free one) and serves in the background until
    /// [`RunningServer::stop`] (or until it is dropped).
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let routes: Arc<[(String, RouteHandler)]> = self.routes.into();
        let task = tokio::spawn(accept_loop(listener, routes, stop.clone()));
        Ok(RunningServer {
            local_addr,
            stop,
            task: Some(task),
        })
    }
}

/// A server listening in the background.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the listener to close.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // A panicked accept loop has nothing left to stop.
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A probe route: 200 and `ok` when `check` passes, else 503 and the reasons.
fn probe_answer(
    probe: HealthProbe,
    check: fn(&AppHealth) -> bool,
    ok: &'static str,
) -> impl Fn() -> HttpResponse + Send + Sync + 'static {
    move || {
        let health = probe.health();
        if check(&health) {
            HttpResponse::text(200, format!("{ok}\n"))
        } else {
            HttpResponse::text(503, format!("{}\n", health.not_ready_reasons().join("\n")))
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    routes: Arc<[(String, RouteHandler)]>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!("HTTP server: accepting a connection failed: {err}");
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let routes = Arc::clone(&routes);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let routes = Arc::clone(&routes);
                async move { Ok::<_, Infallible>(respond(&routes, &req)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => if let Err(err) = served {
                    tracing::debug!("HTTP connection ended: {err}");
                },
                () = stop.cancelled() => {}
            }
        });
    }
}

fn respond(routes: &[(String, RouteHandler)], req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let answer = if req.method() != Method::GET && req.method() != Method::HEAD {
        HttpResponse::text(405, "only GET\n")
    } else {
        match routes
            .iter()
            .rev()
            .find(|(path, _)| path == req.uri().path())
        {
            Some((_, handler)) => handler(),
            None => HttpResponse::text(404, "not found\n"),
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = hyper::header::HeaderValue::from_str(&answer.content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
