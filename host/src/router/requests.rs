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

    /// Record one request (formatted directly: this runs for every request).
    pub fn record(
        &self,
        caller: &str,
        service: &str,
        method: &http::Method,
        path: &str,
        status: u16,
        latency: Duration,
    ) {
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        // Service names and methods need no escaping; the path and the caller header may.
        let (path, caller) = (
            serde_json::Value::from(path),
            serde_json::Value::from(caller),
        );
        self.0.write_line(format!(
            "{{\"ts\":\"{ts}\",\"caller\":{caller},\"service\":\"{service}\",\"method\":\"{method}\",\"path\":{path},\"status\":{status},\"latency_ms\":{:.3}}}\n",
            latency.as_secs_f64() * 1e3
        ));
    }
}
