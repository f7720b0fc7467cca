//! The services pactown serves itself (`builtin:` in the ecosystem file): [`discovery`],
//! [`state`] (shared-state) and [`control`] (job-control, over [`model`] and [`journal`]). Each
//! is an HTTP handler the orchestrator serves on a replica's internal port, behind the
//! service's stable address like any other: reachable by name from wasm and native services,
//! `depends_on` enforced, rate limits, logs and metrics as usual. Their data lives in SQLite
//! files in the ecosystem's state dir and survives restarts.

pub mod client;
pub mod control;
pub mod db;
pub mod discovery;
pub mod journal;
pub mod model;
mod run;
pub mod state;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use crate::plan::CallPolicy;
use crate::spec::service::Builtin;

/// A request to a built-in service, its body read.
pub type In = Request<Bytes>;
/// Its answer.
pub type Out = Response<Full<Bytes>>;
/// What a handler returns.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Out> + Send + 'a>>;

/// A built-in service.
pub trait Handler: Send + Sync {
    /// Answer a request.
    fn handle(&self, req: In) -> Answer<'_>;

    /// It is being served (its replica started, so its `depends_on` are ready).
    fn started(&self) {}
}

/// Another service of the ecosystem, as discovery lists it.
#[derive(Debug, Clone)]
pub struct Known {
    /// Its name.
    pub name: String,
    /// Its stable port (none: no address).
    pub port: Option<u16>,
    /// Its health check path.
    pub health: Option<String>,
    /// Its kind (`wasm-http`, `native`, `builtin`).
    pub kind: String,
}

/// Is `kind` (as [`Known::kind`] spells it) one of the built-in services?
pub fn is_builtin_kind(kind: &str) -> bool {
    Builtin::parse(kind).is_some()
}

/// What a built-in service is given.
#[derive(Debug, Clone)]
pub struct Context {
    /// Its name.
    pub name: String,
    /// Its database.
    pub db: PathBuf,
    /// Who it may call (its `depends_on`).
    pub calls: CallPolicy,
    /// Every service of the ecosystem.
    pub services: Vec<Known>,
}

/// Open a built-in service (its database made or reopened; job-control resumes the jobs a
/// previous run left running).
pub fn open(kind: Builtin, ctx: Context) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(match kind {
        Builtin::SharedState => Arc::new(state::SharedState::open(&ctx)?),
        Builtin::Discovery => discovery::Discovery::open(ctx)?,
        Builtin::JobControl => control::JobControl::open(ctx)?,
    })
}

/// The largest request body a built-in service takes.
pub const MAX_BODY: usize = 16 << 20;

/// Serve `handler` on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, handler: Arc<dyn Handler>) {
    handler.started();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let handler = handler.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let answer = match Limited::new(body, MAX_BODY).collect().await {
                        Ok(b) => {
                            handler
                                .handle(Request::from_parts(parts, b.to_bytes()))
                                .await
                        }
                        Err(_) => error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the body is too large or was cut short",
                        ),
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Out {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

/// An error answer: `{"error": …}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Out {
    json(status, &serde_json::json!({"error": message.into()}))
}

/// The request's body as JSON (`null` when empty), or why not.
pub fn body_json(req: &In) -> Result<serde_json::Value, String> {
    if req.body().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(req.body()).map_err(|e| format!("the body is not JSON: {e}"))
}

/// The path's segments.
pub fn segments(req: &In) -> Vec<String> {
    req.uri()
        .path()
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Now, RFC 3339 with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
