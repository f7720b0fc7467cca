//! A session: the lifecycle of one running ecosystem, down the stages once. It takes the
//! ecosystem's lock (reaping what a crashed run left), probes the machine's facts, binds every
//! stable address and plans with the ports it got, builds every service, starts them, serves,
//! and — asked to stop by `down`, a signal, or the end of its checks — stops everything and
//! releases the lock. Whoever drives it (the CLI in the foreground, or a detached `up` talking
//! to its waiting parent) hears about it through a [`Reporter`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checks::{self, CheckResult, Tally};
use super::engine_start::EngineStart;
use super::{BuildStats, Orchestrator, UpOptions};
use crate::build::Cache;
use crate::control::status::EcosystemStatus;
use crate::control::{StateDir, StateFile};
use crate::facts::HostFacts;
use crate::plan::LayerName;
use crate::spec::{Ecosystem, RuntimeKind};

/// What a session tells whoever drives it.
pub trait Reporter: Send + Sync {
    /// Progress (first-use installs, moved ports, the address it serves on).
    fn say(&self, text: &str);
    /// A warning (a sandbox layer this machine cannot give, a run command that ignores `PORT`).
    fn warn(&self, text: &str);
    /// Every service is ready.
    fn ready(&self, ready: &Ready);
    /// One check's result (when the session runs the checks).
    fn check(&self, result: &CheckResult<'_>);
}

/// The moment every service is ready.
#[derive(Debug)]
pub struct Ready {
    /// What runs.
    pub status: EcosystemStatus,
    /// Since the session began.
    pub elapsed: Duration,
    /// What building cost (a warm start builds nothing).
    pub stats: BuildStats,
    /// Where its state, logs and control socket are.
    pub state_dir: PathBuf,
}

/// What the session does once every service is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep serving until `down` or a signal.
    Serve,
    /// Run every `markpact:test` check, then stop.
    Check,
}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Copy service output to stdout with `service |` prefixes.
    pub console: bool,
    /// Colour on the console.
    pub color: bool,
    /// The admin/gateway address (`None`: the default, or the next free port).
    pub listen: Option<SocketAddr>,
    /// Where the services' stable addresses are bound.
    pub bind: std::net::IpAddr,
    /// Serve, or check and stop.
    pub mode: Mode,
    /// Start in dependency waves (else all at once, requests to a service still starting held).
    pub waves: bool,
    /// The dashboard may restart services.
    pub dashboard_actions: bool,
    /// Watch the files and reload on change (`Some(cascade)`).
    pub watch: Option<bool>,
}

/// How a session ended (its failures are errors: [`AlreadyRunning`], or a start that failed,
/// after which everything it started is stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stopped on request.
    Stopped,
    /// Its checks ran.
    Checked(Tally),
    /// A signal arrived while starting or checking.
    Interrupted,
}

/// The ecosystem is already running in another process.
#[derive(Debug)]
pub struct AlreadyRunning {
    /// What to tell the user.
    pub message: String,
}

impl std::fmt::Display for AlreadyRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AlreadyRunning {}

/// Run a session of `eco` to its end.
pub async fn run(
    eco: Ecosystem,
    opts: SessionOptions,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<Ended> {
    let started = Instant::now();
    let cache = Cache::locate();
    // Made while everything before the first build happens (dropped if the lock is taken).
    let engine = EngineStart::spawn(&eco, &cache);
    let state = StateDir::new(&eco.state_dir);
    let Some(lock) = state.try_lock()? else {
        let who = state
            .read_state()
            .map(|s| format!(" (pid {}, since {})", s.pid, s.started_at))
            .unwrap_or_default();
        return Err(AlreadyRunning {
            message: format!("ecosystem `{}` is already running{who}", eco.name),
        }
        .into());
    };
    if let Some(line) = super::reap_previous(&state) {
        reporter.say(&line);
    }
    let facts = HostFacts::for_ecosystem(&eco);
    let say: Arc<dyn Fn(&str) + Send + Sync> = {
        let r = reporter.clone();
        Arc::new(move |m: &str| r.say(m))
    };
    let up_opts = UpOptions {
        console: opts.console,
        color: opts.color,
        listen: opts.listen,
        bind: opts.bind,
    };
    let mut orch = Orchestrator::bind(&eco, &facts, state.clone(), &up_opts, say)?;
    orch.adopt_engine(engine);
    orch.keep_ecosystem(&eco);
    for w in warnings(&orch, &eco) {
        reporter.warn(&w);
    }
    state.write_state(&StateFile {
        ecosystem: eco.name.clone(),
        file: std::path::absolute(&eco.source.path)?,
        pid: std::process::id(),
        socket: orch.socket().to_path_buf(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ports: orch
            .plan
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.port))
            .collect(),
    })?;
    orch.serve_addresses(opts.dashboard_actions)?;
    reporter.say(&format!(
        "Serving HTTP on http://{}/ (the dashboard; status at /_pactown/services, metrics at /_pactown/metrics, services at http://<name>.localhost:{}/)",
        orch.gateway,
        orch.gateway.port()
    ));

    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(());
    });
    let startup = async {
        let prepared = orch.prepare(&eco, &cache).await?;
        orch.start(&prepared, opts.waves).await
    };
    let result = tokio::select! {
        r = startup => Some(r),
        _ = &mut stop_rx => None,
    };
    match result {
        None => {
            reporter.say("interrupted while starting; stopping");
            orch.shutdown().await;
            signals.abort();
            return Ok(Ended::Interrupted);
        }
        Some(Err(e)) => {
            orch.shutdown().await;
            signals.abort();
            // Stopped: whoever looks next finds it not running.
            drop(lock);
            orch.close_console().await;
            return Err(e);
        }
        Some(Ok(())) => {}
    }
    let status = orch.status();
    crate::telemetry::start::mark(crate::telemetry::start::Stage::Ready);
    reporter.ready(&Ready {
        status: status.clone(),
        elapsed: started.elapsed(),
        stats: orch.build_stats(),
        state_dir: state.path().to_path_buf(),
    });

    let ended = match opts.mode {
        Mode::Check => {
            let ports: std::collections::HashMap<String, Option<u16>> = status
                .services
                .iter()
                .map(|s| (s.name.clone(), s.port))
                .collect();
            let port_of = |name: &str| ports.get(name).copied().flatten();
            let report = |r: &CheckResult<'_>| reporter.check(r);
            let ended = tokio::select! {
                t = checks::run(&eco, &port_of, &report) => Ended::Checked(t),
                _ = &mut stop_rx => {
                    reporter.say("interrupted during the checks");
                    Ended::Interrupted
                }
            };
            reporter.say("stopping");
            orch.shutdown().await;
            signals.abort();
            orch.close_console().await;
            ended
        }
        Mode::Serve => {
            let control = orch.take_control().expect("control listener");
            let orch = Arc::new(orch);
            let watching = opts.watch.map(|cascade| {
                let (o, r) = (orch.clone(), reporter.clone());
                reporter.say(&format!("watching {} files for changes", o.sources().len()));
                tokio::spawn(super::watch::watch(o.sources(), move || {
                    let (o, r) = (o.clone(), r.clone());
                    async move {
                        match o.reload(cascade).await {
                            Ok(line) => r.say(&line),
                            Err(e) => r.warn(&e),
                        }
                        o.sources()
                    }
                }))
            });
            let run = orch.run_until_stopped(control, stop_rx).await;
            if let Some(w) = watching {
                // Aborted and gone, so the orchestrator is ours alone again below.
                w.abort();
                let _ = w.await;
            }
            reporter.say("stopping");
            orch.shutdown().await;
            signals.abort();
            for (name, n) in orch.dropped_console_lines() {
                reporter.say(&format!(
                    "{n} lines of `{name}` were not shown on the console (the log file has them all)"
                ));
            }
            if let Ok(mut o) = Arc::try_unwrap(orch) {
                o.close_console().await;
            }
            run?;
            reporter.say(&format!("{} stopped", eco.name));
            Ended::Stopped
        }
    };
    drop(lock);
    Ok(ended)
}

/// What to warn about before starting: each sandbox layer this machine cannot give (never
/// skipped silently), and each native run command that ignores the port pactown gives it
/// (pactown never rewrites commands).
fn warnings(orch: &Orchestrator, eco: &Ecosystem) -> Vec<String> {
    let mut out = Vec::new();
    for (name, sp) in &orch.plan.services {
        let s = &eco.services[name.as_str()];
        if sp.sandbox.kind != RuntimeKind::Native || sp.port.is_none() {
            continue;
        }
        if let Some(run) = &s.content.run {
            let uses = |t: &str| t.contains("PORT");
            if !uses(&run.command) && !s.content.files.iter().any(|f| uses(&f.content)) {
                out.push(format!(
                    "`{name}` ({}) never reads PORT or MARKPACT_PORT; it must listen on the port pactown gives it in those variables",
                    run.loc
                ));
            }
        }
    }
    let mut said = std::collections::HashSet::new();
    for sp in orch.plan.services.values() {
        for l in sp
            .sandbox
            .layers
            .iter()
            .filter(|l| !l.on && l.name != LayerName::Sandbox)
        {
            if said.insert(l.name) {
                out.push(format!(
                    "sandbox layer `{}` is off on this machine: {} (affects `{}` and others like it)",
                    l.name.as_str(),
                    l.detail,
                    sp.name
                ));
            }
        }
    }
    out
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}
