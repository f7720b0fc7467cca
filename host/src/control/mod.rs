//! Control from any terminal. A running `up` holds an exclusive lock on `up.lock` in the
//! ecosystem's state dir, records itself in `state.json`, and answers JSON-line requests on a
//! Unix socket there (`status`, `restart`, `down`). Other commands find it through the state dir
//! alone; a crashed `up` leaves a lock nobody holds, which reads as "not running".

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

pub mod status;
use serde::{Deserialize, Serialize};

/// `state.json`: who is running this ecosystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    /// Ecosystem name.
    pub ecosystem: String,
    /// The ecosystem file.
    pub file: PathBuf,
    /// pid of the `up` process.
    pub pid: u32,
    /// The control socket.
    pub socket: PathBuf,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Stable ports, by service.
    pub ports: indexmap::IndexMap<String, Option<u16>>,
}

/// A request on the control socket (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// The live status.
    Status,
    /// Restart a service (rolling).
    Restart {
        /// The service.
        service: String,
    },
    /// Stop one service (its address answers 503 until it is started again).
    Stop {
        /// The service.
        service: String,
    },
    /// Start a stopped service again, and wait until it is ready.
    Start {
        /// The service.
        service: String,
    },
    /// Read the ecosystem file and the READMEs again and apply what changed.
    Reload {
        /// Restart the dependents of what changed too.
        #[serde(default)]
        cascade: bool,
    },
    /// Stop everything and exit.
    Down,
}

/// The answer to a [`Request`] (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The live status.
    Status {
        /// What runs.
        status: status::EcosystemStatus,
    },
    /// A service restarted and is ready again.
    Restarted {
        /// Its status now.
        service: status::ServiceStatus,
    },
    /// A service was stopped, or started and is ready.
    Service {
        /// Its status now.
        service: status::ServiceStatus,
    },
    /// What a reload changed, in one line.
    Reloaded {
        /// What changed, what was rebuilt and restarted, how long it took.
        summary: String,
    },
    /// Everything is being stopped.
    Stopping,
    /// Refused or failed.
    Error {
        /// Why.
        error: String,
        /// The last lines of the service's log, when one is concerned.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tail: Vec<String>,
    },
}

impl Reply {
    /// An error reply.
    pub fn error(error: impl Into<String>) -> Self {
        Reply::Error {
            error: error.into(),
            tail: Vec::new(),
        }
    }

    /// The reply as one line.
    pub fn line(&self) -> String {
        let mut text = serde_json::to_string(self).expect("replies serialize");
        text.push('\n');
        text
    }
}

/// Why a peer of the control socket is refused, if it is: a process in another PID namespace
/// (a sandboxed service), or one this `up` started (a service, even where it shares our
/// namespace). Checked with `SO_PEERCRED`.
pub fn peer_refusal(stream: &tokio::net::UnixStream) -> Option<String> {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => return Some(format!("cannot identify the peer: {e}")),
    };
    let Some(pid) = cred.pid().filter(|p| *p > 0) else {
        // pid 0: the peer is in a PID namespace we cannot see into, i.e. a sandbox.
        return Some("the peer is in another PID namespace (a sandboxed service)".into());
    };
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    if ns(&pid.to_string()) != ns("self") {
        return Some(format!(
            "pid {pid} is in another PID namespace (a sandboxed service)"
        ));
    }
    // Walk up its parents: one of ours is a service's (or a build's) process.
    let me = std::process::id() as i32;
    let mut p = pid;
    for _ in 0..256 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            break;
        };
        let Some(ppid) = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i32>().ok())
        else {
            break;
        };
        if ppid == me {
            return Some(format!("pid {pid} was started by this pactown (a service)"));
        }
        if ppid <= 1 {
            break;
        }
        p = ppid;
    }
    None
}

/// The state dir's files.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state dir at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("up.lock")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Where the control socket goes: in the state dir, or, when that path is too long for a
    /// Unix socket (108 bytes), in a private per-user directory under the temp dir.
    pub fn socket_path(&self) -> anyhow::Result<PathBuf> {
        let abs = std::path::absolute(&self.dir)?;
        let inside = abs.join("control.sock");
        if inside.as_os_str().len() < 100 {
            return Ok(inside);
        }
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let private = std::env::temp_dir().join(format!("pactown-{uid}"));
        std::fs::create_dir_all(&private)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        use sha2::Digest;
        let key = hex::encode(sha2::Sha256::digest(abs.as_os_str().as_encoded_bytes()));
        Ok(private.join(format!("{}.sock", &key[..16])))
    }

    /// Take the lock that says "this ecosystem is up". `Ok(None)` when another process holds it.
    pub fn try_lock(&self) -> anyhow::Result<Option<File>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the state dir `{}`", self.dir.display()))?;
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_path())
            .with_context(|| format!("cannot open `{}`", self.lock_path().display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an open descriptor.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 { Ok(Some(f)) } else { Ok(None) }
    }

    /// Is an `up` holding the lock right now?
    pub fn is_running(&self) -> bool {
        if !self.lock_path().exists() {
            return false;
        }
        let Ok(f) = File::open(self.lock_path()) else {
            return false;
        };
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an open descriptor; released when `f` closes.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }

    /// Write `state.json` (0600: it names the socket that can stop everything).
    pub fn write_state(&self, state: &StateFile) -> anyhow::Result<()> {
        let tmp = self.dir.join("state.json.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = File::options()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
        }
        std::fs::rename(tmp, self.state_path())?;
        Ok(())
    }

    /// Read `state.json`, if any.
    pub fn read_state(&self) -> Option<StateFile> {
        let text = std::fs::read_to_string(self.state_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Remove `state.json` and the socket after a clean stop.
    pub fn clear(&self, socket: &Path) {
        let _ = std::fs::remove_file(self.state_path());
        let _ = std::fs::remove_file(socket);
    }

    /// Send one request to the running `up` and read its one-line JSON answer.
    pub fn request(&self, req: &Request, timeout: Option<Duration>) -> anyhow::Result<Reply> {
        let state = self
            .read_state()
            .context("no state.json: the ecosystem is not running")?;
        let mut stream = UnixStream::connect(&state.socket)
            .with_context(|| format!("cannot connect to `{}`", state.socket.display()))?;
        stream.set_read_timeout(timeout)?;
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        let mut answer = String::new();
        stream
            .write_all(line.as_bytes())
            .and_then(|()| BufReader::new(&stream).read_line(&mut answer))
            .with_context(|| {
                format!(
                    "the running pactown closed `{}` on us",
                    state.socket.display()
                )
            })?;
        if answer.is_empty() {
            anyhow::bail!("the running pactown closed the connection without answering");
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("the running pactown answered something else: {answer}"))
    }

    /// Wait until no `up` holds the lock.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let lock = match File::open(self.lock_path()) {
            Ok(f) => f,
            Err(_) => return true,
        };
        use std::os::fd::AsRawFd;
        let deadline = std::time::Instant::now() + timeout;
        // A blocking shared lock returns as soon as the `up` releases its exclusive one; a
        // thread with a deadline keeps this bounded.
        let (tx, rx) = std::sync::mpsc::channel();
        let fd = lock.as_raw_fd();
        std::thread::spawn(move || {
            // SAFETY: flock on a descriptor kept open by `lock` until we return.
            let r = unsafe { libc::flock(fd, libc::LOCK_SH) };
            let _ = tx.send(r == 0);
        });
        let ok = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(false);
        drop(lock);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::Restart {
                service: "api".into()
            })
            .unwrap(),
            r#"{"cmd":"restart","service":"api"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"down"}"#).unwrap(),
            Request::Down
        );
        assert_eq!(Reply::Stopping.line(), "{\"reply\":\"stopping\"}\n");
        assert_eq!(
            Reply::error("no").line(),
            "{\"reply\":\"error\",\"error\":\"no\"}\n"
        );
        let back: Reply =
            serde_json::from_str(r#"{"reply":"error","error":"x","tail":["a"]}"#).unwrap();
        assert!(matches!(back, Reply::Error { tail, .. } if tail == ["a"]));
    }
}
