//! Service output: always drained, so no service ever blocks on a full pipe. Every line goes to
//! the service's log file in the state dir (rotated at 10 MiB, three old files kept) and to an
//! in-memory tail for error reports; the console gets a best-effort copy with a coloured
//! `service |` prefix. A slow or absent console never slows a service: lines it cannot take are
//! counted and dropped from the console only.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// Rotate a log file past this size.
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Old files kept (`.1` … `.3`).
pub const KEEP: usize = 3;
/// Longest line kept whole; longer output is split.
const MAX_LINE: usize = 64 * 1024;
/// Lines kept in memory per service for error reports.
const TAIL: usize = 40;

/// A line for the console.
#[derive(Debug)]
pub struct ConsoleLine {
    /// `api` or `api.2`.
    pub label: String,
    /// Index into the colour palette.
    pub color: usize,
    /// The text, without newline.
    pub text: String,
}

/// The log file path of a service.
pub fn log_path(state_dir: &Path, service: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{service}.log"))
}

/// One service's logs.
pub struct ServiceLog {
    name: String,
    anomalies: crate::jsonlog::JsonLog,
    color: usize,
    file: Mutex<Rotating>,
    tail: Mutex<VecDeque<String>>,
    console: Option<mpsc::Sender<ConsoleLine>>,
    dropped: AtomicU64,
    /// Lines the service itself wrote (not pactown's own events).
    written: AtomicU64,
    /// The latest denials, for error reports.
    denials: Mutex<VecDeque<String>>,
}

/// Denials kept per service for error reports.
const DENIALS: usize = 5;

impl ServiceLog {
    /// Open (append) the service's log file.
    pub fn open(
        state_dir: &Path,
        name: &str,
        color: usize,
        console: Option<mpsc::Sender<ConsoleLine>>,
        anomalies: crate::jsonlog::JsonLog,
    ) -> std::io::Result<Self> {
        let path = log_path(state_dir, name);
        std::fs::create_dir_all(path.parent().expect("log dir"))?;
        Ok(Self {
            name: name.to_string(),
            anomalies,
            color,
            file: Mutex::new(Rotating::open(path)?),
            tail: Mutex::new(VecDeque::with_capacity(TAIL)),
            console,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            denials: Mutex::new(VecDeque::with_capacity(DENIALS)),
        })
    }

    /// The label of a replica: `api` for a single replica, `api.2` among several.
    pub fn label(&self, replica: usize, replicas: usize) -> String {
        if replicas > 1 {
            format!("{}.{replica}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// Record one line.
    pub fn line(&self, label: &str, text: &str) {
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_line(&format!("{ts} {label} | {text}\n"));
        }
        if let Ok(mut t) = self.tail.lock() {
            if t.len() == TAIL {
                t.pop_front();
            }
            t.push_back(format!("{label} | {text}"));
        }
        if let Some(tx) = &self.console {
            let msg = ConsoleLine {
                label: label.to_string(),
                color: self.color,
                text: text.to_string(),
            };
            if tx.try_send(msg).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Something this service tried and was denied: in its log, and in the ecosystem's anomaly
    /// log (`logs/anomalies.log`, JSON lines: time, service, action, target).
    pub fn denied(&self, action: &str, target: &str, detail: &str) {
        if let Ok(mut d) = self.denials.lock() {
            if d.len() == DENIALS {
                d.pop_front();
            }
            d.push_back(format!("{action} {target}"));
        }
        self.event(
            &self.name,
            &format!(
                "denied {action} {target}{}{detail}",
                if detail.is_empty() { "" } else { ": " }
            ),
        );
        self.anomalies.write(serde_json::json!({"service": self.name, "action": action, "target": target, "detail": detail}));
    }

    /// A message from pactown itself about this service.
    pub fn event(&self, label: &str, text: &str) {
        self.line(label, &format!("[pactown] {text}"));
    }

    /// What was denied lately (`tcp connect 104.16.0.35:443`), oldest first.
    pub fn recent_denials(&self) -> Vec<String> {
        self.denials
            .lock()
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many lines the service itself has written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Read a native replica's sandbox reports until the pipe closes: each denial goes to the
    /// service's log and the anomaly log. Returns why its sandbox could not be made, if so.
    pub async fn drain_reports(&self, reports: tokio::net::unix::pipe::Receiver) -> Option<String> {
        use pactown_runtime::native::Report;
        let mut lines = BufReader::new(reports).lines();
        let mut failed = None;
        while let Ok(Some(line)) = lines.next_line().await {
            match Report::parse(&line) {
                Some(Report::Denied {
                    action,
                    target,
                    count,
                }) => {
                    let detail = if count > 1 {
                        format!("refused by its sandbox ({count} times so far)")
                    } else {
                        "refused by its sandbox".to_string()
                    };
                    self.denied(&action, &target, &detail);
                }
                Some(Report::SandboxFailed { error }) => failed = Some(error),
                None => {}
            }
        }
        failed
    }

    /// The last lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let t = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        t[t.len().saturating_sub(n)..].to_vec()
    }

    /// Lines the console could not take.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Drain one output stream of a replica until it closes.
    pub async fn drain(&self, label: String, stream: impl AsyncRead + Unpin) {
        let mut reader = BufReader::with_capacity(64 * 1024, stream);
        let mut buf = Vec::with_capacity(1024);
        loop {
            buf.clear();
            // Read up to a newline, but never hold more than MAX_LINE of one line.
            let n = match read_line_capped(&mut reader, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = n;
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            self.written.fetch_add(1, Ordering::Relaxed);
            self.line(&label, &String::from_utf8_lossy(&buf));
        }
    }
}

async fn read_line_capped<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let room = MAX_LINE - buf.len();
        let (take, done) = match available.iter().take(room).position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None if available.len() >= room => (room, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

/// A log file that rotates itself.
struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
}

impl Rotating {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self { path, file, size })
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        if self.size + line.len() as u64 > ROTATE_BYTES && self.size > 0 {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for i in (1..KEEP).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `api.log.N`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Colours for service prefixes (ANSI SGR codes).
const PALETTE: &[&str] = &["36", "35", "34", "33", "32", "96", "95", "94", "93", "92"];

/// Print console lines until every sender is gone. `width` aligns the prefixes.
pub async fn console(mut rx: mpsc::Receiver<ConsoleLine>, width: usize, color: bool) {
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::stdout();
    while let Some(line) = rx.recv().await {
        let label = format!("{:width$} |", line.label);
        let label = if color {
            format!(
                "\x1b[{}m{label}\x1b[0m",
                PALETTE[line.color % PALETTE.len()]
            )
        } else {
            label
        };
        let text = format!("{label} {}\n", line.text);
        if out.write_all(text.as_bytes()).await.is_err() {
            // The console is gone (closed pipe): keep draining so services never block.
            while rx.recv().await.is_some() {}
            return;
        }
    }
    let _ = out.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_three_files() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        let mut r = Rotating::open(path.clone())?;
        let line = "x".repeat(1024 * 1024) + "\n";
        for _ in 0..45 {
            r.write_line(&line)?;
        }
        assert!(rotated(&path, 3).exists());
        assert!(!rotated(&path, 4).exists());
        assert!(std::fs::metadata(&path)?.len() <= ROTATE_BYTES);
        Ok(())
    }

    #[tokio::test]
    async fn long_lines_are_split_not_buffered_whole() {
        let data = vec![b'a'; MAX_LINE * 2 + 10];
        let mut reader = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf).await.unwrap(),
            MAX_LINE
        );
    }
}
