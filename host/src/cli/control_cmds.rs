//! Commands that talk to a running `up` from any terminal: `status`, `down`, `restart`,
//! `stop`, `start`, `logs`.

use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ExitStatus, Term, user_error};
use crate::control::status::{self, EcosystemStatus};
use crate::control::{Reply, Request, StateDir};
use crate::orchestrator::logs::{log_path, rotated};
use crate::spec::Ecosystem;

/// Show every service's state, port, pids, health and restarts.
#[derive(Debug, clap::Args)]
pub struct StatusCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// Print JSON (per service: name, port, state, replicas with pid, state, restarts).
    #[arg(long)]
    pub json: bool,
}

/// Stop a running ecosystem (from any terminal) and wait until it is down.
#[derive(Debug, clap::Args)]
pub struct DownCommand {
    /// The ecosystem file.
    pub file: PathBuf,
}

/// One service of a running ecosystem: `restart` (one replica at a time), `stop` (its address
/// answers 503 until `start`), `start` (and wait until it is ready).
#[derive(Debug, clap::Args)]
pub struct ServiceCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// The service.
    pub service: String,
}

/// Show service logs (all services, merged by time, or one).
#[derive(Debug, clap::Args)]
pub struct LogsCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// Only this service.
    pub service: Option<String>,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (per service).
    #[arg(short = 'n', long)]
    pub tail: Option<usize>,
    /// Show each line's time.
    #[arg(short, long)]
    pub timestamps: bool,
}

fn state_of(eco: &Ecosystem) -> StateDir {
    StateDir::new(&eco.state_dir)
}

impl StatusCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        let state = state_of(&eco);
        let status = if state.is_running() {
            match state.request(&Request::Status, Some(Duration::from_secs(10)))? {
                Reply::Status { status } => status,
                other => anyhow::bail!("the running pactown answered {other:?} to `status`"),
            }
        } else {
            stopped_status(&eco)
        };
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &status)?;
            writeln!(out)?;
        } else {
            print!(
                "{}",
                status::table(
                    &status,
                    term.color && std::io::IsTerminal::is_terminal(&std::io::stdout())
                )
            );
            if !status.running {
                term.info(&format!("{} is not running", eco.name));
            }
        }
        Ok(ExitStatus::Success)
    }
}

fn stopped_status(eco: &Ecosystem) -> EcosystemStatus {
    let plan = match crate::spec::graph::DependencyGraph::from_ecosystem(eco) {
        Ok(graph) => crate::plan::Plan::build(
            eco,
            &graph,
            &crate::spec::ecosystem::assign_ports(eco),
            &crate::facts::HostFacts::probe(&crate::facts::cache_root(), &Default::default()),
        ),
        Err(_) => unreachable!("a loaded ecosystem is acyclic"),
    };
    EcosystemStatus::stopped(&plan)
}

impl DownCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        let state = state_of(&eco);
        if !state.is_running() {
            match crate::orchestrator::reap_previous(&state) {
                Some(line) => term.info(&format!("pactown: {line}")),
                None => term.info(&format!("{} is not running", eco.name)),
            }
            return Ok(ExitStatus::Success);
        }
        let pid = state.read_state().map(|s| s.pid);
        if let Reply::Error { error, .. } =
            state.request(&Request::Down, Some(Duration::from_secs(10)))?
        {
            return Err(user_error(
                format!("the running pactown refused `down`: {error}"),
                None,
            ));
        }
        let grace = eco
            .services
            .values()
            .map(|s| s.stop_grace_period)
            .max()
            .unwrap_or_default();
        let deadline = std::time::Instant::now() + grace * 2 + Duration::from_secs(30);
        let gone = state
            .wait_stopped(deadline.saturating_duration_since(std::time::Instant::now()))
            && pid.is_none_or(|p| wait_exited(p, deadline));
        if !gone {
            return Err(user_error(
                format!("{} did not stop in time", eco.name),
                pid.map(|p| format!("the `up` process is pid {p}"))
                    .as_deref(),
            ));
        }
        term.success(&format!("{} stopped", eco.name));
        Ok(ExitStatus::Success)
    }
}

/// Wait until process `pid` has exited (a zombie counts as exited).
fn wait_exited(pid: u32, deadline: std::time::Instant) -> bool {
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        let running = stat.is_ok_and(|s| {
            !s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        });
        if !running {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a [`ServiceCommand`] asks.
#[derive(Debug, Clone, Copy)]
pub enum ServiceAction {
    /// A rolling restart.
    Restart,
    /// Stop it.
    Stop,
    /// Start it again.
    Start,
}

impl ServiceCommand {
    /// Run it.
    pub fn run(self, action: ServiceAction, term: &Term) -> anyhow::Result<ExitStatus> {
        let service = self.service.clone();
        let (request, done) = match action {
            ServiceAction::Restart => (Request::Restart { service }, "restarted and ready"),
            ServiceAction::Stop => (Request::Stop { service }, "stopped"),
            ServiceAction::Start => (Request::Start { service }, "started and ready"),
        };
        one_service(&self.file, &self.service, term, request, done)
    }
}

/// Watch a running ecosystem's files and reload it on each change (as `up --watch` does).
#[derive(Debug, clap::Args)]
pub struct WatchCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// Restart the dependents of a changed service too.
    #[arg(long)]
    pub cascade: bool,
}

impl WatchCommand {
    /// Run it (until interrupted).
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        let state = state_of(&eco);
        if !state.is_running() {
            return Err(user_error(
                format!("{} is not running", eco.name),
                Some(&format!(
                    "start it with `pactown up --watch {}`, or `up -d` and then watch",
                    self.file.display()
                )),
            ));
        }
        let files = crate::orchestrator::watch::sources(&eco);
        term.info(&format!(
            "pactown: watching {} files of {} for changes (Ctrl+C to stop)",
            files.len(),
            eco.name
        ));
        let (cascade, path, term2) = (self.cascade, eco.source.path.clone(), term.clone());
        super::session::block_on(crate::orchestrator::watch::watch(
            files.clone(),
            move || {
                let (state, path, term, previous) =
                    (state.clone(), path.clone(), term2.clone(), files.clone());
                async move {
                    let reply = tokio::task::spawn_blocking(move || {
                        state.request(&Request::Reload { cascade }, None)
                    })
                    .await;
                    match reply {
                        Ok(Ok(Reply::Reloaded { summary })) => {
                            term.info(&format!("pactown: {summary}"))
                        }
                        Ok(Ok(Reply::Error { error, .. })) => term.error(&error),
                        Ok(Ok(other)) => term.error(&format!(
                            "the running pactown answered {other:?} to `reload`"
                        )),
                        Ok(Err(e)) => {
                            term.error(&format!("the running pactown did not answer: {e:#}"))
                        }
                        Err(e) => term.error(&format!("{e}")),
                    }
                    let env = |k: &str| std::env::var(k).ok();
                    crate::spec::load(&path, &env).map_or(previous, |l| {
                        crate::orchestrator::watch::sources(&l.ecosystem)
                    })
                }
            },
        ))?;
        Ok(ExitStatus::Success)
    }
}

/// Send a request about one service to the running ecosystem and say how it went.
fn one_service(
    file: &Path,
    service: &str,
    term: &Term,
    request: Request,
    done: &str,
) -> anyhow::Result<ExitStatus> {
    let eco = super::load(file, term)?.ecosystem;
    if !eco.services.contains_key(service) {
        let names = eco.services.keys().map(String::as_str);
        let hint = crate::spec::diagnostic::did_you_mean(service, names)
            .map(|s| format!("did you mean `{s}`?"));
        return Err(user_error(
            format!("no service `{service}` in {}", eco.name),
            hint.as_deref(),
        ));
    }
    let state = state_of(&eco);
    if !state.is_running() {
        return Err(user_error(
            format!("{} is not running", eco.name),
            Some("start it with `pactown up`"),
        ));
    }
    match state.request(&request, None)? {
        Reply::Restarted { .. } | Reply::Service { .. } => {
            term.success(&format!("`{service}` {done}"));
            Ok(ExitStatus::Success)
        }
        Reply::Error { error, tail } => {
            term.error(&error);
            for l in tail {
                term.note(&l);
            }
            Ok(ExitStatus::Failure)
        }
        other => anyhow::bail!("the running pactown answered {other:?} to {request:?}"),
    }
}

impl LogsCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        let names: Vec<String> = match &self.service {
            Some(s) if !eco.services.contains_key(s) => {
                return Err(user_error(
                    format!("no service `{s}` in {}", eco.name),
                    None,
                ));
            }
            Some(s) => vec![s.clone()],
            None => eco.services.keys().cloned().collect(),
        };
        let dir = eco.state_dir.clone();
        let mut lines: Vec<String> = Vec::new();
        for n in &names {
            let mut own = read_all(&log_path(&dir, n));
            if let Some(t) = self.tail {
                own = own.split_off(own.len().saturating_sub(t));
            }
            lines.extend(own);
        }
        // Lines start with an RFC 3339 timestamp: sorting merges services by time.
        if names.len() > 1 {
            lines.sort();
        }
        let mut out = std::io::stdout().lock();
        for l in &lines {
            writeln!(out, "{}", self.show(l))?;
        }
        out.flush()?;
        drop(out);
        if self.follow {
            self.follow_files(&dir, &names)?;
        }
        Ok(ExitStatus::Success)
    }

    fn show<'a>(&self, line: &'a str) -> &'a str {
        if self.timestamps {
            line
        } else {
            line.split_once(' ').map_or(line, |(_, rest)| rest)
        }
    }

    /// Print lines as they are appended, across rotations, until interrupted.
    fn follow_files(&self, dir: &Path, names: &[String]) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut files: Vec<(PathBuf, Option<(u64, u64)>)> = names
            .iter()
            .map(|n| {
                let p = log_path(dir, n);
                let pos = std::fs::metadata(&p).ok().map(|m| (m.ino(), m.len()));
                (p, pos)
            })
            .collect();
        loop {
            let mut any = false;
            for (path, pos) in files.iter_mut() {
                let Ok(meta) = std::fs::metadata(&*path) else {
                    continue;
                };
                let (ino, mut offset) = pos.unwrap_or((meta.ino(), 0));
                if ino != meta.ino() || meta.len() < offset {
                    offset = 0; // rotated or truncated: the new file from its start
                }
                if meta.len() > offset {
                    let mut f = std::fs::File::open(&*path)?;
                    f.seek(std::io::SeekFrom::Start(offset))?;
                    let mut reader = std::io::BufReader::new(f);
                    let mut out = std::io::stdout().lock();
                    let mut line = String::new();
                    while reader.read_line(&mut line)? > 0 {
                        if !line.ends_with('\n') {
                            break; // a partial line: read it whole next time
                        }
                        offset += line.len() as u64;
                        write!(out, "{}", self.show(&line))?;
                        line.clear();
                    }
                    out.flush()?;
                    any = true;
                }
                *pos = Some((meta.ino(), offset));
            }
            if !any {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// All lines of a service's log, oldest rotated file first.
fn read_all(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for i in (1..=crate::orchestrator::logs::KEEP).rev() {
        if let Ok(t) = std::fs::read_to_string(rotated(path, i)) {
            out.extend(t.lines().map(str::to_string));
        }
    }
    if let Ok(t) = std::fs::read_to_string(path) {
        out.extend(t.lines().map(str::to_string));
    }
    out
}
