//! A server under test as a process: started in a process group of its own, timed from the
//! spawn to its first HTTP answer, measured (RSS and PSS of its whole tree, from
//! `/proc/<pid>/smaps_rollup`), and stopped (SIGTERM to the group, SIGKILL after a grace).
//!
//! One server runs at a time, and the bench is a child subreaper ([`adopt_orphans`]): a launcher
//! that starts its service and exits (the Python pactown's `run` does) leaves the service to
//! the bench, so its memory is counted and stopping it leaves nothing behind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

/// A running server.
pub struct Server {
    child: Child,
    /// Where it answers.
    pub addr: SocketAddr,
    /// From the spawn to its first answer.
    pub started_in: Duration,
    /// `CLOCK_MONOTONIC` at the spawn ([`crate::telemetry::start::now_ns`]): the origin of
    /// the stages a pactown marks.
    pub spawned_ns: u64,
    log: std::path::PathBuf,
}

impl Server {
    /// Spawn `cmd` (its output to `log`) and wait until `GET path` at `addr` is answered with a
    /// status below 500 (a stable address answers 503 until its service is ready), for at most
    /// `timeout`.
    pub fn start(
        mut cmd: Command,
        addr: SocketAddr,
        path: &str,
        log: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot write `{}`", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // In this order, so that a stage marked before the first answer is never later after
        // `spawned_ns` than the answer is after `began`.
        let began = Instant::now();
        let spawned_ns = crate::telemetry::start::now_ns();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let mut server = Self {
            child,
            addr,
            started_in: Duration::ZERO,
            spawned_ns,
            log: log.to_path_buf(),
        };
        loop {
            if probe(addr, path).is_some_and(|status| status < 500) {
                server.started_in = began.elapsed();
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait()
                && !status.success()
            {
                bail!(
                    "{cmd:?} exited ({status}) before answering:\n{}",
                    server.log_tail()
                );
            }
            if began.elapsed() > timeout {
                let tail = server.log_tail();
                server.stop();
                bail!("{cmd:?} did not answer within {timeout:?}:\n{tail}");
            }
            std::thread::sleep(Duration::from_micros(250));
        }
    }

    /// The process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now: every process below the bench (the server's tree, and whatever a
    /// launcher left to it).
    pub fn memory(&self) -> Memory {
        if !ADOPTING.load(Ordering::Relaxed) {
            return Memory::of_tree(self.child.id());
        }
        let mut m = Memory::default();
        for c in children(std::process::id()) {
            m.add(Memory::of_tree(c));
        }
        m
    }

    /// The last lines it wrote.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        crate::build::step::tail(&text, 15)
    }

    /// Stop it: SIGTERM to its group (and to what a launcher left), SIGKILL after 10 s; then
    /// every process still below the bench is killed and reaped.
    pub fn stop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signalling a process group we created, and processes below us.
        unsafe { libc::kill(group, libc::SIGTERM) };
        if !ADOPTING.load(Ordering::Relaxed) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            unsafe { libc::kill(group, libc::SIGKILL) };
            let _ = self.child.wait();
            return;
        }
        for orphan in children(std::process::id()) {
            if orphan != self.child.id() {
                unsafe { libc::kill(orphan as i32, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !children(std::process::id()).is_empty() {
            let _ = self.child.try_wait();
            reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        loop {
            let left = descendants(std::process::id());
            if left.is_empty() {
                break;
            }
            for p in left {
                unsafe { libc::kill(p as i32, libc::SIGKILL) };
            }
            let _ = self.child.try_wait();
            reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Whether this process adopts orphans (and so owns every process below it).
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// Make the bench a child subreaper: processes orphaned below it become its children, and
/// every process below it belongs to the server it runs (call it in the bench command only).
pub fn adopt_orphans() {
    // SAFETY: a prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    ADOPTING.store(true, Ordering::Relaxed);
}

/// Reap every exited child that is not a `Child` handle's (an adopted orphan).
fn reap() {
    for c in children(std::process::id()) {
        let mut status = 0;
        // SAFETY: a non-blocking wait for one of our children.
        unsafe { libc::waitpid(c as i32, &mut status, libc::WNOHANG) };
    }
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        todo.extend(children(p));
        out.push(p);
    }
    out
}

/// One `GET` on a fresh connection: its status, if it answered.
pub fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_nodelay(true).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut head[got..]).ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let text = std::str::from_utf8(&head[..got]).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// A free port on loopback, as the OS gives one (bound, then released for the server).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a port")?;
    Ok(l.local_addr()?.port())
}

/// Memory of a process tree, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Memory {
    /// Resident set size, summed over the tree (shared pages counted in each process).
    pub rss_kib: u64,
    /// Proportional set size: shared pages divided among their sharers.
    pub pss_kib: u64,
    /// Processes in the tree.
    pub processes: u32,
}

impl Memory {
    /// Add another's.
    pub fn add(&mut self, other: Memory) {
        self.rss_kib += other.rss_kib;
        self.pss_kib += other.pss_kib;
        self.processes += other.processes;
    }

    /// Of `pid` and all its descendants.
    pub fn of_tree(pid: u32) -> Self {
        let mut m = Memory::default();
        let mut todo = vec![pid];
        while let Some(p) = todo.pop() {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
                continue;
            };
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            m.rss_kib += field("Rss:");
            m.pss_kib += field("Pss:");
            m.processes += 1;
            todo.extend(children(p));
        }
        m
    }
}

/// The children of a process (every thread's).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_of_this_process_is_read() {
        let m = Memory::of_tree(std::process::id());
        assert!(m.processes >= 1 && m.rss_kib > 0 && m.pss_kib > 0, "{m:?}");
    }

    #[test]
    fn a_server_is_timed_to_its_first_answer_and_stopped() {
        let port = free_port().unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir.path());
        let mut s = Server::start(
            cmd,
            addr,
            "/",
            &dir.path().join("log"),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(s.started_in > Duration::ZERO);
        assert_eq!(probe(addr, "/"), Some(200));
        s.stop();
        assert_eq!(probe(addr, "/"), None);
    }
}
