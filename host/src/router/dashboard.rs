//! The live dashboard at the host's address (`/`): one page, its script and style embedded in
//! the binary (no CDN: it works offline), fed by the JSON and server-sent events below. It is
//! read-only unless `up --dashboard-actions`; its Content-Security-Policy lets it reach its own
//! origin only.
//!
//! | path | |
//! |---|---|
//! | `/` | the page |
//! | `/_pactown/ui/app.js`, `/_pactown/ui/app.css` | its script and style |
//! | `/_pactown/graph` | each service's `depends_on` |
//! | `/_pactown/stats` | per service: requests, 5xx, latency sum and histogram (the page turns two into rates) |
//! | `/_pactown/logs/stream[?service=NAME]` | log lines as server-sent events: the last 50, then each new one |
//! | `/_pactown/anomalies` | the last 100 entries of the anomaly log |
//! | `/_pactown/jobs` | each job-control service's latest jobs, with their steps |
//! | `POST /_pactown/actions/restart/NAME` | a rolling restart (with `--dashboard-actions` only) |

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::{Body, BoxError, Router, full, json_response};

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/app.css");

/// The page's policy: its own origin, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the dashboard may do besides looking.
pub trait Actions: Send + Sync {
    /// Restart a service, one replica at a time.
    fn restart(
        &self,
        service: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

/// What the dashboard knows beyond the router: the plan's edges, where logs are, the
/// job-control services.
pub struct Dashboard {
    /// The ecosystem's name.
    pub ecosystem: String,
    /// The logs directory (`<state dir>/logs`).
    pub logs: PathBuf,
    /// Each service and its `depends_on`, in file order.
    pub edges: Vec<(String, Vec<String>)>,
    /// The job-control services and their stable ports.
    pub jobs: Vec<(String, u16)>,
    /// Restart buttons (`--dashboard-actions`).
    pub actions: Option<Arc<dyn Actions>>,
}

fn asset(kind: &'static str, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full(text));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

impl Dashboard {
    /// Answer a dashboard path (`None`: not one).
    pub async fn handle(&self, router: &Router, req: &Request<Incoming>) -> Option<Response<Body>> {
        let path = req.uri().path();
        Some(match (req.method().clone(), path) {
            (Method::GET, "/") => asset("text/html; charset=utf-8", PAGE),
            (Method::GET, "/_pactown/ui/app.js") => asset("text/javascript; charset=utf-8", SCRIPT),
            (Method::GET, "/_pactown/ui/app.css") => asset("text/css; charset=utf-8", STYLE),
            (Method::GET, "/_pactown/graph") => json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "ecosystem": self.ecosystem,
                    "actions": self.actions.is_some(),
                    "services": self.edges.iter().map(|(n, d)| serde_json::json!({"name": n, "depends_on": d})).collect::<Vec<_>>(),
                }),
            ),
            (Method::GET, "/_pactown/stats") => json_response(StatusCode::OK, &stats(router)),
            (Method::GET, "/_pactown/logs/stream") => self.logs_stream(req, router),
            (Method::GET, "/_pactown/anomalies") => {
                let lines = tail_lines(&self.logs.join("anomalies.log"), 100);
                let entries: Vec<serde_json::Value> = lines
                    .iter()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                json_response(StatusCode::OK, &serde_json::json!({"anomalies": entries}))
            }
            (Method::GET, "/_pactown/jobs") => json_response(StatusCode::OK, &self.jobs().await),
            (Method::POST, p) if p.starts_with("/_pactown/actions/restart/") => {
                let service = p
                    .trim_start_matches("/_pactown/actions/restart/")
                    .to_string();
                self.restart(req, router, service).await
            }
            _ => return None,
        })
    }

    async fn restart(
        &self,
        req: &Request<Incoming>,
        router: &Router,
        service: String,
    ) -> Response<Body> {
        let Some(actions) = &self.actions else {
            return json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "the dashboard is read-only: start `up` with --dashboard-actions to restart from it"}),
            );
        };
        // Only the page itself: a custom header a cross-origin form cannot send, and no
        // foreign Origin.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let origin_ok = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|o| o.strip_prefix("http://") == Some(host));
        if !origin_ok || !req.headers().contains_key("x-pactown-action") {
            return json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "actions come from the dashboard's own page"}),
            );
        }
        if router.endpoint(&service).is_none() {
            return json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!("no service `{service}`")}),
            );
        }
        match actions.restart(service.clone()).await {
            Ok(()) => json_response(StatusCode::OK, &serde_json::json!({"restarted": service})),
            Err(e) => json_response(StatusCode::CONFLICT, &serde_json::json!({"error": e})),
        }
    }

    async fn jobs(&self) -> serde_json::Value {
        let http = crate::jobs::client::Http::new();
        let mut out = Vec::new();
        for (name, port) in &self.jobs {
            let base = format!("http://127.0.0.1:{port}");
            let get = |url: String| {
                let http = http.clone();
                async move {
                    http.call(
                        Method::GET,
                        &url,
                        &[],
                        &serde_json::Value::Null,
                        Duration::from_secs(2),
                    )
                    .await
                    .ok()
                    .map(|r| r.body)
                }
            };
            let list = get(format!("{base}/jobs")).await.unwrap_or_default();
            let ids: Vec<String> = list["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .take(10)
                .filter_map(|j| j["id"].as_str().map(str::to_string))
                .collect();
            let jobs = futures_util::future::join_all(
                ids.into_iter().map(|id| get(format!("{base}/jobs/{id}"))),
            )
            .await;
            out.push(serde_json::json!({"service": name, "jobs": jobs.into_iter().flatten().collect::<Vec<_>>()}));
        }
        serde_json::json!({"job_controls": out})
    }

    /// Server-sent events of the services' log files: the last lines, then each new one
    /// as it is written (the files are read every 200 ms; a rotated file is read from its
    /// start).
    fn logs_stream(&self, req: &Request<Incoming>, router: &Router) -> Response<Body> {
        let only = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("service=")))
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            });
        let services: Vec<String> = router
            .endpoints()
            .keys()
            .filter(|n| only.as_ref().is_none_or(|o| o == *n))
            .cloned()
            .collect();
        let files: Vec<(String, PathBuf)> = services
            .into_iter()
            .map(|s| (s.clone(), self.logs.join(format!("{s}.log"))))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(64);
        tokio::spawn(async move {
            let event = |service: &str, line: &str| {
                let data = serde_json::json!({"service": service, "line": line});
                Ok(Frame::data(Bytes::from(format!("data: {data}\n\n"))))
            };
            let mut offsets = Vec::new();
            let mut recent = Vec::new();
            for (service, path) in &files {
                offsets.push(std::fs::metadata(path).map_or(0, |m| m.len()));
                recent.extend(
                    tail_lines(path, 50)
                        .into_iter()
                        .map(|l| (service.as_str(), l)),
                );
            }
            // Every line starts with its RFC 3339 time: merged in time order.
            recent.sort_by(|a, b| a.1.cmp(&b.1));
            for (service, line) in &recent[recent.len().saturating_sub(100)..] {
                if tx.send(event(service, line)).await.is_err() {
                    return;
                }
            }
            if tx
                .send(Ok(Frame::data(Bytes::from_static(b": following\n\n"))))
                .await
                .is_err()
            {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                for ((service, path), offset) in files.iter().zip(offsets.iter_mut()) {
                    let (lines, next) = read_from(path, *offset);
                    *offset = next;
                    for line in lines {
                        if tx.send(event(service, &line)).await.is_err() {
                            return;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut r = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-cache"),
        );
        r
    }
}

/// Every service's counters.
fn stats(router: &Router) -> serde_json::Value {
    let services: Vec<serde_json::Value> = router
        .endpoints()
        .iter()
        .map(|(name, ep)| {
            let mut v = ep.metrics.snapshot();
            v["service"] = serde_json::json!(name);
            v
        })
        .collect();
    serde_json::json!({"services": services, "buckets_s": super::metrics::BUCKETS})
}

/// The last `n` lines of a file (reading at most its last 256 KiB).
fn tail_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(256 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut text = String::new();
    let _ = f.take(256 * 1024).read_to_string(&mut text);
    let mut lines: Vec<String> = text
        .lines()
        .skip(usize::from(start > 0))
        .map(str::to_string)
        .collect();
    lines.drain(..lines.len().saturating_sub(n));
    lines
}

/// Whole lines written since `offset`, and the offset after them (from 0 when the file is
/// shorter: it was rotated).
fn read_from(path: &std::path::Path, offset: u64) -> (Vec<String>, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let from = if len < offset { 0 } else { offset };
    if len == from {
        return (Vec::new(), from);
    }
    let _ = f.seek(SeekFrom::Start(from));
    let mut buf = Vec::new();
    let _ = f.take((len - from).min(1 << 20)).read_to_end(&mut buf);
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return (Vec::new(), from);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    (
        text.lines().map(str::to_string).collect(),
        from + end as u64 + 1,
    )
}
