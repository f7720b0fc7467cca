//! `pactown up FILE [-d]` and `pactown run README.md [--port N]`: bring services up and keep
//! them up until Ctrl+C, SIGTERM or `pactown down`.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::Context;

use super::session::{Relay, RelayMessage, UpHow, block_on, up};
use super::{ExitStatus, Term, user_error};
use crate::control::StateDir;
use crate::control::status;
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
    /// Give a service another stable port than the ecosystem file says (`--port api=9000`;
    /// repeatable; `0` lets the OS pick).
    #[arg(long = "port", value_name = "SERVICE=PORT", value_parser = parse_port_override)]
    pub ports: Vec<(String, u16)>,
    /// Run this many replicas of a service instead of what the ecosystem file says
    /// (`--replicas api=1`; repeatable).
    #[arg(long = "replicas", value_name = "SERVICE=N", value_parser = parse_port_override)]
    pub replicas: Vec<(String, u16)>,
    /// Run only this service here; every other one runs elsewhere and is reached by its name on
    /// the network at its planned port (as each container of `pactown deploy` does).
    #[arg(long, value_name = "SERVICE")]
    pub only: Option<String>,
    /// With `--only`: where another service runs (`db=db.internal:5432`; repeatable).
    #[arg(long, value_name = "SERVICE=HOST:PORT", value_parser = parse_elsewhere, requires = "only")]
    pub elsewhere: Vec<(String, crate::spec::model::Elsewhere)>,
    /// Bind the services' stable addresses on this address (default 127.0.0.1; `0.0.0.0` in a
    /// container).
    #[arg(long, value_name = "IP")]
    pub bind: Option<std::net::IpAddr>,
    /// Internal: the descriptor a detaching parent waits on.
    /// Start the services in dependency waves, each waiting for the one before to be ready
    /// (by default all start at once, and a request to a dependency still starting is held
    /// until it is ready).
    #[arg(long)]
    pub waves: bool,
    /// Let the dashboard (at the `--listen` address) restart services; it is read-only
    /// without this.
    #[arg(long)]
    pub dashboard_actions: bool,
    /// Watch the ecosystem file, every README and its includes; rebuild and roll what changed
    /// (see `pactown watch`).
    #[arg(long)]
    pub watch: bool,
    /// With `--watch`: restart the dependents of a changed service too (by default only those
    /// whose environment changed).
    #[arg(long, requires = "watch")]
    pub cascade: bool,
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

/// `api=9000` → (`api`, 9000).
fn parse_port_override(s: &str) -> Result<(String, u16), String> {
    let (name, port) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not SERVICE=PORT (e.g. `api=9000`)"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{port}` is not a number from 0 to 65535"))?;
    Ok((name.to_string(), port))
}

/// `db=db.internal:5432` → (`db`, its host and port).
fn parse_elsewhere(s: &str) -> Result<(String, crate::spec::model::Elsewhere), String> {
    let (name, at) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not SERVICE=HOST:PORT (e.g. `db=db.internal:5432`)"))?;
    let (host, port) = at
        .rsplit_once(':')
        .ok_or_else(|| format!("`{at}` is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{port}` is not a port (1–65535)"))?;
    Ok((
        name.to_string(),
        crate::spec::model::Elsewhere {
            host: host.to_string(),
            port,
        },
    ))
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
        let mut eco = loaded.ecosystem;
        for (name, port) in &self.ports {
            let Some(service) = eco.services.get_mut(name.as_str()) else {
                return Err(user_error(
                    format!(
                        "`--port {name}={port}`: `{name}` is no service of `{}`",
                        eco.name
                    ),
                    Some(&format!(
                        "its services are {}",
                        eco.services
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                ));
            };
            service.port = crate::spec::PortSpec::Fixed(*port);
        }
        for (name, n) in &self.replicas {
            let Some(service) = eco.services.get_mut(name.as_str()) else {
                return Err(user_error(
                    format!(
                        "`--replicas {name}={n}`: `{name}` is no service of `{}`",
                        eco.name
                    ),
                    None,
                ));
            };
            service.replicas = u32::from(*n).max(1);
        }
        if let Some(here) = &self.only {
            let given = self.elsewhere.iter().cloned().collect();
            eco.run_only(here, &given)
                .map_err(|e| user_error(format!("`--only {here}`: {e}"), None))?;
        }
        if self.detach {
            // The background `up` gets the same flags.
            let mut args: Vec<String> = self
                .listen
                .map(|l| format!("--listen={l}"))
                .into_iter()
                .collect();
            args.extend(self.ports.iter().map(|(n, p)| format!("--port={n}={p}")));
            args.extend(
                self.replicas
                    .iter()
                    .map(|(n, r)| format!("--replicas={n}={r}")),
            );
            args.extend(self.only.iter().map(|o| format!("--only={o}")));
            args.extend(
                self.elsewhere
                    .iter()
                    .map(|(n, e)| format!("--elsewhere={n}={}:{}", e.host, e.port)),
            );
            args.extend(self.bind.map(|b| format!("--bind={b}")));
            args.extend(self.waves.then(|| "--waves".to_string()));
            args.extend(self.watch.then(|| "--watch".to_string()));
            args.extend(self.cascade.then(|| "--cascade".to_string()));
            args.extend(
                self.dashboard_actions
                    .then(|| "--dashboard-actions".to_string()),
            );
            return detach(&self.file, &eco, term, &args);
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
            UpHow {
                console,
                ready: ready.map(Relay::new),
                listen: self.listen,
                bind: self.bind,
                once: false,
                waves: self.waves,
                dashboard_actions: self.dashboard_actions,
                watch: self.watch.then_some(self.cascade),
            },
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
            UpHow {
                console: true,
                listen: self.listen,
                once: self.once,
                ..Default::default()
            },
        ))
    }
}

/// `up -d`: start a detached `up` (own session, output to its log file) and wait on a pipe
/// until it says ready or failed.
fn detach(
    file: &std::path::Path,
    eco: &Ecosystem,
    term: &Term,
    args: &[String],
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
        .args(args)
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
        term.note(&crate::build::step::tail(&log, 20));
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
