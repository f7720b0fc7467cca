//! The request log: one JSON line per request through a stable address (time, caller,
//! service, method, path, status, latency), in `logs/requests.log` of the state dir. Written by
//! a task from a bounded queue, so logging never slows a request; lines the queue cannot take
//! are counted.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

/// A handle to the request log.
#[derive(Clone)]
pub struct RequestLog {
    tx: Option<mpsc::Sender<String>>,
    dropped: Arc<AtomicU64>,
}

impl RequestLog {
    /// Log to `path` (appending). Must be called within a tokio runtime.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, mut rx) = mpsc::channel::<String>(16 * 1024);
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Some(line) = rx.blocking_recv() {
                let _ = out.write_all(line.as_bytes());
                // Flush when the queue is drained, so the file is current when idle.
                if rx.is_empty() {
                    let _ = out.flush();
                }
            }
            let _ = out.flush();
        });
        Ok(Self {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A log that writes nothing.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
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
        let Some(tx) = &self.tx else { return };
        let line = serde_json::json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "caller": caller,
            "service": service,
            "method": method.as_str(),
            "path": path,
            "status": status,
            "latency_ms": (latency.as_secs_f64() * 1e6).round() / 1e3,
        })
        .to_string()
            + "\n";
        if tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
