//! The request log: one JSON line per request through a stable address (time, caller,
//! service, method, path, status, latency), in `logs/requests.log` of the state dir.

use std::path::Path;
use std::time::Duration;

use crate::jsonlog::JsonLog;

/// A handle to the request log.
#[derive(Clone)]
pub struct RequestLog(JsonLog);

impl RequestLog {
    /// Log to `path` (appending). Must be called within a tokio runtime.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        JsonLog::open(path).map(Self)
    }

    /// A log that writes nothing.
    pub fn disabled() -> Self {
        Self(JsonLog::disabled())
    }

    /// Record one request.
    pub fn record(
        &self,
        caller: &str,
        service: &str,
        method: &http::Method,
        path: &str,
        status: u16,
        latency: Duration,
    ) {
        self.0.write(serde_json::json!({
            "caller": caller,
            "service": service,
            "method": method.as_str(),
            "path": path,
            "status": status,
            "latency_ms": (latency.as_secs_f64() * 1e6).round() / 1e3,
        }));
    }
}
