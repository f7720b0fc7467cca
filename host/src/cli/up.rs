//! `pactown up FILE [-d]` and `pactown run README.md [--port N]`: bring services up and keep
//! them up until Ctrl+C, SIGTERM or `pactown down`.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::{ExitStatus, Term, user_error};
use crate::control::StateDir;
use crate::control::status;
use crate::orchestrator::StartFailure;
use crate::orchestrator::checks::CheckResult;
use crate::orchestrator::session::{
    self, AlreadyRunning, Ended, Mode, Ready, Reporter, SessionOptions,
};
use crate::spec::Ecosystem;

/// Start every service of an ecosystem in dependency order, wait until all are ready, print
/// their status, and keep them running (restarting what fails) until Ctrl+C or `pactown down`.
#[derive(Debug, clap::Args)]
pub struct UpCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// Run in the background; return once every service is ready (or failed).
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where the admin endpoint and the `<service>.localhost` gateway listen (default
    /// 127.0.0.1:7100, or the next free port); `127.0.0.1:0` lets the OS pick.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Internal: the descriptor a detaching parent waits on.
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

/// Run one README as a one-service ecosystem, in the foreground.
#[derive(Debug, clap::Args)]
pub struct RunCommand {
    /// The README.
    pub readme: PathBuf,
    /// The port of its stable address (default: 8000, or the next free one).
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Where the admin endpoint and gateway listen (see `up --listen`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Start it, run its `markpact:test` checks once it is ready, stop it, and exit with their
    /// result (0 when all pass).
    #[arg(long)]
    pub once: bool,
}

impl UpCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let loaded = super::load(&self.file, term)?;
        let eco = loaded.ecosystem;
        if self.detach {
            return detach(&self.file, &eco, term, self.listen);
        }
        let ready = self.ready_fd.map(|fd| {
            // Close-on-exec at once: a service that inherited it would hold the parent's pipe
            // open, and the parent would wait forever.
            // SAFETY: the detaching parent passed us this descriptor, open and ours alone.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
        });
        let console = ready.is_none();
        block_on(up(
            eco,
            term.clone(),
            console,
            ready.map(Relay::new),
            self.listen,
            false,
        ))
    }
}

impl RunCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let loaded = crate::spec::load_readme(&self.readme, self.port)?;
        term.diagnostics(&loaded.warnings);
        block_on(up(
            loaded.ecosystem,
            term.clone(),
            true,
            None,
            self.listen,
            self.once,
        ))
    }
}

/// A multi-threaded runtime for the orchestrator (children are forked from its worker threads,
/// which live as long as it does; see the parent-death signal in the shim).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = rt.block_on(f);
    // Everything was stopped in order already; do not wait on stragglers to exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    out
}

/// What a detached `up` tells the parent waiting for it, one JSON line each.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "relay", rename_all = "snake_case")]
pub(crate) enum RelayMessage {
    /// Progress for the user (`pactown: …`).
    Say {
        /// The text (may span lines).
        text: String,
    },
    /// A warning.
    Warn {
        /// The text.
        text: String,
    },
    /// Every service is ready.
    Ready,
    /// `up` failed; everything it started is stopped.
    Failed {
        /// What went wrong (may span lines).
        text: String,
    },
}

/// The pipe to a detaching parent: [`RelayMessage`]s while starting, then `Ready` or
/// `Failed`. Clones share the pipe.
#[derive(Clone)]
pub(crate) struct Relay(Arc<std::sync::Mutex<Option<std::fs::File>>>);

impl Relay {
    fn new(f: std::fs::File) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(f))))
    }

    fn send(&self, msg: &RelayMessage) {
        if let Ok(mut g) = self.0.lock()
            && let Some(f) = g.as_mut()
            && let Ok(line) = serde_json::to_string(msg)
        {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }

    /// Send the last message and close the pipe.
    fn finish(&self, msg: &RelayMessage) {
        self.send(msg);
        if let Ok(mut g) = self.0.lock() {
            g.take();
        }
    }
}

/// Bring `eco` up; with `once`, run its checks when it is ready and stop, else keep it running
/// until it is told to stop. The lifecycle is the session's; this prints what it reports and
/// relays it to a waiting parent.
pub(crate) async fn up(
    eco: Ecosystem,
    term: Term,
    console: bool,
    ready: Option<Relay>,
    listen: Option<std::net::SocketAddr>,
    once: bool,
) -> anyhow::Result<ExitStatus> {
    let name = eco.name.clone();
    let reporter = Arc::new(CliReporter {
        term: term.clone(),
        relay: ready.clone(),
    });
    let opts = SessionOptions {
        console,
        color: term.color,
        listen,
        mode: if once { Mode::Check } else { Mode::Serve },
    };
    match session::run(eco, opts, reporter).await {
        Ok(Ended::Stopped) => Ok(ExitStatus::Success),
        Ok(Ended::Checked(tally)) => Ok(super::test::summary(&term, &name, tally)),
        Ok(Ended::Interrupted) => {
            notify(
                &ready,
                RelayMessage::Failed {
                    text: "interrupted while starting".into(),
                },
            );
            Ok(ExitStatus::Failure)
        }
        Err(e) => {
            if let Some(running) = e.downcast_ref::<AlreadyRunning>() {
                notify(
                    &ready,
                    RelayMessage::Failed {
                        text: running.message.clone(),
                    },
                );
                return Err(user_error(
                    running.message.clone(),
                    Some("see it with `pactown status`, stop it with `pactown down`"),
                ));
            }
            notify(
                &ready,
                RelayMessage::Failed {
                    text: failure_text(&e),
                },
            );
            report_failure(&term, &e);
            Ok(ExitStatus::Failure)
        }
    }
}

/// What the session reports, on the terminal and to a waiting parent.
struct CliReporter {
    term: Term,
    relay: Option<Relay>,
}

impl Reporter for CliReporter {
    fn say(&self, text: &str) {
        self.term.info(&format!("pactown: {text}"));
        if let Some(r) = &self.relay {
            r.send(&RelayMessage::Say {
                text: text.to_string(),
            });
        }
    }

    fn warn(&self, text: &str) {
        self.term.warn(text);
        if let Some(r) = &self.relay {
            r.send(&RelayMessage::Warn {
                text: text.to_string(),
            });
        }
    }

    fn ready(&self, ready: &Ready) {
        let stats = ready.stats;
        let wasm = if stats.compiled + stats.loaded > 0 {
            format!(
                "; wasm: {} cargo build{}, {} compiled, {} loaded precompiled",
                stats.cargo_builds,
                if stats.cargo_builds == 1 { "" } else { "s" },
                stats.compiled,
                stats.loaded
            )
        } else {
            String::new()
        };
        self.term.info(&format!(
            "\n{}\n{} ready in {} ms (state in {}{wasm})",
            status::table(&ready.status, self.term.color).trim_end(),
            ready.status.ecosystem,
            ready.elapsed.as_millis(),
            ready.state_dir.display()
        ));
        notify(&self.relay, RelayMessage::Ready);
    }

    fn check(&self, result: &CheckResult<'_>) {
        super::test::print_check(&self.term, result);
    }
}

fn failure_text(e: &anyhow::Error) -> String {
    if let Some(d) = e.downcast_ref::<crate::spec::Diagnostics>() {
        let n = d.error_count();
        return format!(
            "{}\n{n} error{} found; nothing was started",
            d.render(false).trim_end(),
            if n == 1 { "" } else { "s" }
        );
    }
    match e.downcast_ref::<StartFailure>() {
        Some(f) => {
            let mut s = f.message.clone();
            for l in &f.tail {
                s.push_str("\n    ");
                s.push_str(l);
            }
            s
        }
        None => format!("{e:#}"),
    }
}

fn report_failure(term: &Term, e: &anyhow::Error) {
    if let Some(d) = e.downcast_ref::<crate::spec::Diagnostics>() {
        term.diagnostics(d);
        let n = d.error_count();
        term.error(&format!(
            "{n} error{} found; nothing was started",
            if n == 1 { "" } else { "s" }
        ));
        return;
    }
    match e.downcast_ref::<StartFailure>() {
        Some(f) => {
            term.error(&f.message);
            if !f.tail.is_empty() {
                term.note("last lines of its log:");
                for l in &f.tail {
                    term.note(&format!("  {l}"));
                }
            }
            term.note(&format!("full log: {}", f.log.display()));
            term.note("everything that was started has been stopped");
        }
        None => {
            term.error(&format!("{e:#}"));
            term.note("everything that was started has been stopped");
        }
    }
}

fn notify(ready: &Option<Relay>, msg: RelayMessage) {
    if let Some(r) = ready {
        r.finish(&msg);
    }
}

/// `up -d`: start a detached `up` (own session, output to its log file) and wait on a pipe
/// until it says ready or failed.
fn detach(
    file: &std::path::Path,
    eco: &Ecosystem,
    term: &Term,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitStatus> {
    let state = StateDir::new(&eco.state_dir);
    if state.is_running() {
        return Err(user_error(
            format!("ecosystem `{}` is already running", eco.name),
            Some("see it with `pactown status`, stop it with `pactown down`"),
        ));
    }
    std::fs::create_dir_all(state.path().join("logs"))?;
    let log_path = state.path().join("logs").join("pactown.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: both descriptors are fresh and ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--color")
        .arg("never")
        .arg("up")
        .arg(file)
        .arg("--ready-fd")
        .arg("3")
        .args(listen.map(|l| format!("--listen={l}")))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let wfd = write.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start the background pactown")?;
    drop(write);
    // Relay progress until the final message.
    let mut outcome = None;
    use std::io::BufRead;
    for line in std::io::BufReader::new(std::fs::File::from(read)).lines() {
        match serde_json::from_str::<RelayMessage>(&line?) {
            Ok(RelayMessage::Say { text }) => term.info(&format!("pactown: {text}")),
            Ok(RelayMessage::Warn { text }) => term.warn(&text),
            Ok(done) => {
                outcome = Some(done);
                break;
            }
            Err(_) => {}
        }
    }
    if outcome == Some(RelayMessage::Ready) {
        if let crate::control::Reply::Status { status: s } = state.request(
            &crate::control::Request::Status,
            Some(std::time::Duration::from_secs(10)),
        )? {
            term.info(status::table(&s, term.color).trim_end());
        }
        term.success(&format!(
            "{} is up in the background (pid {}); `pactown logs {f}` to follow it, `pactown down {f}` to stop it",
            eco.name,
            child.id(),
            f = file.display()
        ));
        return Ok(ExitStatus::Success);
    }
    let answer = match outcome {
        Some(RelayMessage::Failed { text }) => text,
        _ => String::new(),
    };
    let msg = answer.trim_end();
    if msg.is_empty() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        term.error("the background pactown exited before it was ready");
        term.note(&crate::build::tools::tail(&log, 20));
    } else {
        let mut lines = msg.lines();
        term.error(lines.next().unwrap_or_default());
        for l in lines {
            term.note(l.trim_start());
        }
        term.note(&format!(
            "everything that was started has been stopped; log: {}",
            log_path.display()
        ));
    }
    Ok(ExitStatus::Failure)
}
