//! What is running, as `status --json` prints it and the status table shows it. The JSON field
//! names are a contract for scripts: `name`, `port`, `state`, and per replica `pid`, `state`,
//! `restarts`.

use serde::{Deserialize, Serialize};

/// A service's or a replica's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, not yet ready (or restarting).
    Starting,
    /// Health check passing; receives traffic.
    Ready,
    /// Exited and not coming back (or never got ready in time).
    Failed,
    /// Stopped by pactown.
    Stopped,
    /// A port-less one-shot service that finished with exit 0.
    Exited,
}

impl State {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Stopped => "stopped",
            State::Exited => "exited",
        }
    }
}

/// One process (or instance) of a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// 1-based index.
    pub index: usize,
    /// The process pactown started: the sandbox shim (the same as `shim_pid`).
    pub pid: Option<i32>,
    /// The sandbox shim.
    #[serde(default)]
    pub shim_pid: Option<i32>,
    /// The service's own main process (what its run command started), as the host sees it.
    #[serde(default)]
    pub main_pid: Option<i32>,
    /// Internal port it listens on, behind the stable address.
    pub port: Option<u16>,
    /// Its state.
    pub state: State,
    /// Times it was restarted.
    pub restarts: u32,
    /// Latency of the last health check, in milliseconds.
    pub health_ms: Option<f64>,
    /// Exit code of the last exit.
    pub last_exit: Option<i32>,
}

/// One service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// Stable address port.
    pub port: Option<u16>,
    /// Overall: ready when every replica is, failed when any failed for good, else starting.
    pub state: State,
    /// Sandbox kind.
    pub kind: crate::spec::RuntimeKind,
    /// How confined: full, partial or none.
    #[serde(default = "unknown_level")]
    pub sandbox: crate::plan::SandboxLevel,
    /// Each sandbox layer, on or off.
    #[serde(default)]
    pub layers: Vec<crate::plan::Layer>,
    /// Health check path.
    pub health_check: Option<String>,
    /// Replicas.
    pub replicas: Vec<ReplicaStatus>,
    /// Sum of restarts.
    pub restarts: u32,
}

/// The whole ecosystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EcosystemStatus {
    /// Name.
    pub ecosystem: String,
    /// Whether an `up` is running.
    pub running: bool,
    /// pid of the `up` process.
    pub pid: Option<u32>,
    /// The admin/gateway address (`/_pactown/services`, `/_pactown/metrics`,
    /// `http://<service>.localhost:<port>/`).
    #[serde(default)]
    pub gateway: Option<String>,
    /// Services in file order.
    pub services: Vec<ServiceStatus>,
}

impl EcosystemStatus {
    /// An ecosystem this process is running, with its services' live status.
    pub fn live(
        ecosystem: &str,
        gateway: Option<std::net::SocketAddr>,
        services: Vec<ServiceStatus>,
    ) -> Self {
        Self {
            ecosystem: ecosystem.to_string(),
            running: true,
            pid: Some(std::process::id()),
            gateway: gateway.map(|g| format!("http://{g}/")),
            services,
        }
    }

    /// A planned ecosystem that is not running.
    pub fn stopped(plan: &crate::plan::Plan) -> Self {
        Self {
            ecosystem: plan.ecosystem.clone(),
            running: false,
            pid: None,
            gateway: None,
            services: plan.services.values().map(ServiceStatus::stopped).collect(),
        }
    }
}

impl ReplicaStatus {
    /// A replica that is not running.
    pub fn stopped(index: usize) -> Self {
        Self {
            index,
            pid: None,
            shim_pid: None,
            main_pid: None,
            port: None,
            state: State::Stopped,
            restarts: 0,
            health_ms: None,
            last_exit: None,
        }
    }
}

impl ServiceStatus {
    /// A planned service that is not running.
    pub fn stopped(plan: &crate::plan::ServicePlan) -> Self {
        let n = plan.replica_slots();
        Self {
            name: plan.name.clone(),
            port: plan.port,
            state: State::Stopped,
            kind: plan.sandbox.kind,
            sandbox: plan.sandbox.level,
            layers: plan.sandbox.layers.clone(),
            health_check: plan.health.check.clone(),
            replicas: (1..=n).map(ReplicaStatus::stopped).collect(),
            restarts: 0,
        }
    }
}

fn unknown_level() -> crate::plan::SandboxLevel {
    crate::plan::SandboxLevel::None
}

impl ServiceStatus {
    /// Aggregate replica states.
    pub fn aggregate(replicas: &[ReplicaStatus]) -> State {
        if replicas.is_empty() {
            return State::Stopped;
        }
        if replicas.iter().all(|r| r.state == State::Ready) {
            State::Ready
        } else if replicas.iter().all(|r| r.state == State::Exited) {
            State::Exited
        } else if replicas.iter().all(|r| r.state == State::Stopped) {
            State::Stopped
        } else if replicas.iter().any(|r| r.state == State::Failed) {
            State::Failed
        } else {
            State::Starting
        }
    }
}

/// The reference's table (Service, Port, Status, PID, Health) plus replicas and restarts.
pub fn table(status: &EcosystemStatus, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let w = status
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:w$}  {:>5}  {:9}  {:>8}  {:16}  {:>8}  {:>8}  {:12}  SANDBOX\n",
        "SERVICE", "PORT", "STATUS", "PID", "HEALTH", "REPLICAS", "RESTARTS", "KIND"
    );
    for s in &status.services {
        let port = s.port.map_or("-".to_string(), |p| p.to_string());
        let pid = match s.replicas.as_slice() {
            [one] => one.pid.map_or("-".to_string(), |p| p.to_string()),
            many => many
                .first()
                .and_then(|r| r.pid)
                .map_or("-".to_string(), |p| format!("{p}+")),
        };
        let ready = s
            .replicas
            .iter()
            .filter(|r| r.state == State::Ready)
            .count();
        let latency = s
            .replicas
            .iter()
            .filter_map(|r| r.health_ms)
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| a.max(x)))
            });
        let health = match (&s.health_check, latency) {
            (Some(path), Some(ms)) => format!("{path} {ms:.1}ms"),
            (None, Some(ms)) => format!("tcp {ms:.1}ms"),
            (Some(path), None) => path.clone(),
            (None, None) => "-".into(),
        };
        let state = format!("{:9}", s.state.as_str());
        let state = match s.state {
            State::Ready | State::Exited => paint("32", &state),
            State::Starting => paint("33", &state),
            State::Failed => paint("31", &state),
            State::Stopped => paint("2", &state),
        };
        out.push_str(&format!(
            "{:w$}  {:>5}  {}  {:>8}  {:16}  {:>8}  {:>8}  {:12}  {}\n",
            s.name,
            port,
            state,
            pid,
            health,
            format!("{ready}/{}", s.replicas.len()),
            s.restarts,
            s.kind.as_str(),
            s.sandbox.as_str()
        ));
    }
    out
}
