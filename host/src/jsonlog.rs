//! Append-only JSON-lines files written by a background task from a bounded queue, so writing
//! never slows the caller (a request, a denial). Lines the queue cannot take are counted.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// A JSON-lines file.
#[derive(Clone)]
pub struct JsonLog {
    tx: Option<mpsc::Sender<String>>,
    dropped: Arc<AtomicU64>,
}

impl JsonLog {
    /// Append to `path`. Must be called within a tokio runtime.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, mut rx) = mpsc::channel::<String>(16 * 1024);
        // An async task (small appends to a local file), so the runtime can drop it at shutdown
        // even while a sender lives on somewhere.
        tokio::spawn(async move {
            let mut out = std::io::BufWriter::new(file);
            while let Some(line) = rx.recv().await {
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

    /// Append one object, stamped with `ts`.
    pub fn write(&self, mut value: serde_json::Value) {
        let Some(tx) = &self.tx else { return };
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "ts".into(),
                humantime::format_rfc3339_millis(std::time::SystemTime::now())
                    .to_string()
                    .into(),
            );
        }
        if tx.try_send(value.to_string() + "\n").is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
