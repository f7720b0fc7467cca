//! Append-only JSON-lines files written by a background task from a bounded queue, so writing
//! never slows the caller (a request, a denial). Lines the queue cannot take are counted.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// How long a written line may wait in the buffer.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

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
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
            let mut dirty = false;
            loop {
                // Under load, lines batch into one write per tick; when idle, the file is
                // current within a tick.
                tokio::select! {
                    line = rx.recv() => match line {
                        Some(line) => {
                            let _ = out.write_all(line.as_bytes());
                            dirty = true;
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep(FLUSH_EVERY), if dirty => {
                        let _ = out.flush();
                        dirty = false;
                    }
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

    /// Append one line that is already a JSON object (for hot paths that format it themselves).
    pub fn write_line(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
