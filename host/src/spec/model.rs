//! What an ecosystem file says, as data: the ecosystem, its services, their dependencies,
//! limits, health checks, directories and rate limits, with the defaults of the reference. The
//! YAML is read into these by [`super::ecosystem`]; everything after the spec reads them.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::diagnostic::SourceFile;
use super::service::ServiceSource;

/// The most memory one wasm instance may be given: the engine's own cap, so the check and the
/// enforcement cannot disagree.
pub const MAX_WASM_MEMORY: u64 = pactown_runtime::wasm::engine::MAX_MEMORY as u64;

/// Where artifacts are published and pulled.
#[derive(Debug, Clone, Serialize)]
pub struct Registry {
    /// Base URL (`http://localhost:8800`).
    pub url: String,
    /// Namespace (`default`).
    pub namespace: String,
    /// Bearer token; never printed.
    #[serde(skip)]
    pub auth_token: Option<String>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            url: "http://localhost:8800".into(),
            namespace: "default".into(),
            auth_token: None,
        }
    }
}

/// A service's port as the ecosystem file gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortSpec {
    /// No `port:` key: `base_port` + the service's index, moved up past taken ports.
    Auto,
    /// `port: null`: the service listens on nothing (a worker or a one-shot job).
    None,
    /// `port: N`; 0 asks the OS for any free port when the ecosystem starts.
    Fixed(u16),
}

/// How a service is checked for health.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    /// `GET` path.
    pub path: String,
    /// Time between liveness checks once ready.
    #[serde(with = "secs")]
    pub interval: Duration,
}

/// Resource limits of a service. For wasm services they apply per instance (`memory`), per
/// request (`cpu_time`, `request_timeout`) and per service (`instances`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// CPU time per request.
    #[serde(with = "opt_secs")]
    pub cpu_time: Option<Duration>,
    /// Instances at once.
    pub instances: Option<u32>,
    /// Wall-clock time per request.
    #[serde(with = "opt_secs")]
    pub request_timeout: Option<Duration>,
    /// CPU share of a native service (0.5 = half a core).
    pub cpu: Option<f64>,
    /// Processes and threads of a native service.
    pub processes: Option<u64>,
    /// Open files of a native service.
    pub open_files: Option<u64>,
}

impl Limits {
    /// These limits, with unset ones taken from `base`.
    pub fn or(&self, base: &Limits) -> Limits {
        Limits {
            memory: self.memory.or(base.memory),
            cpu_time: self.cpu_time.or(base.cpu_time),
            instances: self.instances.or(base.instances),
            request_timeout: self.request_timeout.or(base.request_timeout),
            cpu: self.cpu.or(base.cpu),
            processes: self.processes.or(base.processes),
            open_files: self.open_files.or(base.open_files),
        }
    }
}

/// A named set of limits (`profile:`), enforced from the ecosystem file only: nothing a
/// request says can change it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Profile {
    /// Limits it sets.
    pub limits: Limits,
    /// Rate limit it sets.
    pub rate_limit: Option<RateLimit>,
}

/// The reference's user tiers as profiles: memory, CPU and requests per minute.
pub fn builtin_profiles() -> IndexMap<String, Profile> {
    [
        ("free", 256u64, 0.25, 20u32),
        ("basic", 512, 0.5, 60),
        ("pro", 2048, 0.8, 120),
        ("enterprise", 8192, 1.0, 500),
        ("admin", 16384, 1.0, 1000),
    ]
    .into_iter()
    .map(|(name, mb, cpu, rpm)| {
        (
            name.to_string(),
            Profile {
                limits: Limits {
                    memory: Some(mb << 20),
                    cpu: Some(cpu),
                    ..Limits::default()
                },
                rate_limit: Some(RateLimit {
                    requests: rpm,
                    per: Duration::from_secs(60),
                    burst: rpm,
                }),
            },
        )
    })
    .collect()
}

/// A token bucket on a service's stable address: `requests` per `per`, bursts up to `burst`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period.
    #[serde(with = "secs")]
    pub per: Duration,
    /// Most requests at once (the bucket's size).
    pub burst: u32,
}

/// A directory a service may see.
#[derive(Debug, Clone, Serialize)]
pub struct DirGrant {
    /// On the host (relative to the ecosystem file).
    pub host: PathBuf,
    /// Where the service sees it.
    pub guest: String,
    /// Writable (read-only otherwise).
    pub write: bool,
    /// Where it is granted.
    #[serde(skip)]
    pub span: Range<usize>,
}

/// One entry of `depends_on`.
#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    /// The service depended on.
    pub name: String,
    /// Semver requirement on its `version` (`*` when not given).
    pub version: String,
    /// `local` (this ecosystem) or a registry to pull from.
    pub registry: String,
    /// The URL the dependent should use, when given.
    pub endpoint: Option<String>,
    /// An extra variable carrying the dependency's URL.
    pub env_var: Option<String>,
    /// The whole entry.
    #[serde(skip)]
    pub span: Range<usize>,
    /// The name inside it.
    #[serde(skip)]
    pub name_span: Range<usize>,
    /// The version requirement inside it.
    #[serde(skip)]
    pub version_span: Option<Range<usize>>,
}

/// One service of the ecosystem.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    /// Its name, also its host name for other services.
    pub name: String,
    /// The README, relative to the working directory.
    pub readme: PathBuf,
    /// As written in the file.
    pub port: PortSpec,
    /// Liveness/readiness check.
    pub health_check: Option<HealthCheck>,
    /// Startup deadline.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Number of processes/instances.
    pub replicas: u32,
    /// Restart on failure.
    pub auto_restart: bool,
    /// The service's own variables, in file order.
    pub env: IndexMap<String, String>,
    /// Dependencies in file order.
    pub depends_on: Vec<Dependency>,
    /// Where its sandbox lives, if not `<sandbox_root>/<name>`.
    pub sandbox_path: Option<PathBuf>,
    /// The service's own version, checked against dependents' requirements.
    pub version: Option<String>,
    /// Time between SIGTERM and SIGKILL on stop.
    #[serde(with = "secs")]
    pub stop_grace_period: Duration,
    /// `runtime:`, overriding the kind pactown would pick.
    pub runtime: Option<super::service::RuntimeKind>,
    /// Resource limits.
    pub limits: Limits,
    /// Directories it may see (none by default).
    pub dirs: Vec<DirGrant>,
    /// Hosts outside the ecosystem it may reach (none by default).
    pub allowed_hosts: Vec<super::hosts::HostRule>,
    /// Requests allowed through its stable address.
    pub rate_limit: Option<RateLimit>,
    /// Confine a native service (`sandbox: off` runs it unconfined, as the reference did).
    pub sandbox: bool,
    /// Run a native service as this user (`name` or `uid:gid`; root only).
    pub user: Option<String>,
    /// The named limit set it uses, with the span of the name.
    pub profile: Option<(String, Range<usize>)>,
    /// Requests one wasm-http instance serves (1: a fresh instance per request), with the span
    /// of the value.
    #[serde(skip)]
    pub instance_reuse: (u32, Option<Range<usize>>),
    /// The `runtime:` value.
    #[serde(skip)]
    pub runtime_span: Option<Range<usize>>,
    /// What its README says.
    #[serde(skip)]
    pub content: ServiceSource,
    /// The key naming the service.
    #[serde(skip)]
    pub name_span: Range<usize>,
    /// The `port:` value.
    #[serde(skip)]
    pub port_span: Option<Range<usize>>,
    /// The `readme:` value.
    #[serde(skip)]
    pub readme_span: Option<Range<usize>>,
    /// The built-in service it is (`builtin:`), with the span of the value; it has no README.
    #[serde(skip)]
    pub builtin: Option<(super::service::Builtin, Range<usize>)>,
    /// Where it was pulled from, when it came from a registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Pulled>,
}

impl Service {
    /// A service with every default of the reference, its README not yet read.
    pub fn new(name: &str, readme: PathBuf, name_span: Range<usize>) -> Self {
        Service {
            name: name.to_string(),
            readme,
            port: PortSpec::Auto,
            health_check: None,
            timeout: DEFAULT_TIMEOUT,
            replicas: 1,
            auto_restart: true,
            env: IndexMap::new(),
            depends_on: Vec::new(),
            sandbox_path: None,
            version: None,
            stop_grace_period: DEFAULT_STOP_GRACE,
            runtime: None,
            limits: Limits::default(),
            dirs: Vec::new(),
            allowed_hosts: Vec::new(),
            rate_limit: None,
            sandbox: true,
            user: None,
            profile: None,
            instance_reuse: (1, None),
            runtime_span: None,
            content: ServiceSource::default(),
            name_span,
            port_span: None,
            readme_span: None,
            builtin: None,
            pulled: None,
        }
    }

    /// The kind the user asked for, and where: `runtime:` in the ecosystem file wins over
    /// `runtime=` on the README's run block.
    pub fn runtime_override(&self) -> Option<(super::service::RuntimeKind, String)> {
        if let (Some(k), Some(_)) = (self.runtime, &self.runtime_span) {
            return Some((k, "`runtime:` in the ecosystem file".into()));
        }
        let run = self.content.run.as_ref()?;
        run.runtime.map(|k| {
            (
                k,
                format!("`runtime={}` on the run block ({})", k.as_str(), run.loc),
            )
        })
    }
}

/// A whole ecosystem file, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Ecosystem {
    /// The file itself.
    #[serde(skip)]
    pub source: Arc<SourceFile>,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// Ecosystem name.
    pub name: String,
    /// Ecosystem version.
    pub version: String,
    /// Free text.
    pub description: String,
    /// First port for services without one.
    pub base_port: u16,
    /// Where sandboxes are created.
    pub sandbox_root: PathBuf,
    /// Registry settings.
    pub registry: Registry,
    /// Network name for deploy targets.
    pub network: String,
    /// Services in file order.
    pub services: IndexMap<String, Service>,
    /// Where `up` keeps state, logs and its control socket.
    pub state_dir: PathBuf,
    /// Named limit sets: the built-in tiers and the file's own `profiles:`.
    #[serde(skip)]
    pub profiles: IndexMap<String, Profile>,
    /// Services of the ecosystem that run elsewhere (see [`Ecosystem::run_only`]), by name.
    #[serde(skip)]
    pub elsewhere: IndexMap<String, Elsewhere>,
}

/// A service that runs elsewhere, reached on the network by host name (a cluster's DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    /// Its host name.
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl Ecosystem {
    /// Keep only `here` to run in this pactown; every other service runs elsewhere, at the
    /// `host:port` given for it, else by its own name at the port planned for it (as each
    /// container of a deployment runs one service). Its dependencies are then reached by name
    /// on the network.
    pub fn run_only(
        &mut self,
        here: &str,
        given: &IndexMap<String, Elsewhere>,
    ) -> Result<(), String> {
        if !self.services.contains_key(here) {
            return Err(format!(
                "`{here}` is no service of `{}`; it has {}",
                self.name,
                self.services
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(unknown) = given.keys().find(|k| !self.services.contains_key(*k)) {
            return Err(format!("`{unknown}` is no service of `{}`", self.name));
        }
        let planned = assign_ports(self);
        let others: Vec<String> = self
            .services
            .keys()
            .filter(|k| k.as_str() != here)
            .cloned()
            .collect();
        for name in others {
            self.services.shift_remove(&name);
            let at = match (given.get(&name), planned.get(&name).copied().flatten()) {
                (Some(e), _) => e.clone(),
                (None, Some(port)) if port != 0 => Elsewhere {
                    host: name.clone(),
                    port,
                },
                // No address of its own: nothing can call it.
                _ => continue,
            };
            self.elsewhere.insert(name, at);
        }
        Ok(())
    }
}

/// Defaults of the reference.
pub const DEFAULT_BASE_PORT: u16 = 8000;
/// Startup deadline when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM → SIGKILL, as docker compose.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Liveness interval once ready.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// `my-api` → `MY_API`: the prefix of a dependency's variables.
pub fn env_prefix(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Preferred ports: fixed ones as given, `Auto` ones from `base_port + index` upward, never
/// colliding with any other service's port. With `base_port: 0`, `Auto` ports are 0 too: the OS
/// picks each when the ecosystem starts.
pub fn assign_ports(eco: &Ecosystem) -> IndexMap<String, Option<u16>> {
    let taken: std::collections::HashSet<u16> = eco
        .services
        .values()
        .filter_map(|s| match s.port {
            PortSpec::Fixed(p) if p != 0 => Some(p),
            _ => None,
        })
        .collect();
    let mut used = taken.clone();
    let mut out = IndexMap::new();
    for (i, s) in eco.services.values().enumerate() {
        let port = match s.port {
            PortSpec::Fixed(p) => Some(p),
            PortSpec::None => None,
            PortSpec::Auto if eco.base_port == 0 => Some(0),
            PortSpec::Auto => {
                let mut p = u32::from(eco.base_port) + i as u32;
                while p <= 65535 && used.contains(&(p as u16)) {
                    p += 1;
                }
                (p <= 65535).then(|| {
                    used.insert(p as u16);
                    p as u16
                })
            }
        };
        out.insert(s.name.clone(), port);
    }
    out
}

/// Serialize optional durations as fractional seconds.
pub mod opt_secs {
    use std::time::Duration;

    /// Serialize as seconds or null.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// Serialize durations as fractional seconds.
pub mod secs {
    use std::time::Duration;

    /// Serialize as seconds.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// One pulled service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Locked {
    /// Its namespace in the registry.
    pub namespace: String,
    /// Its name there.
    pub name: String,
    /// The version pulled.
    pub version: String,
    /// The requirement it was pulled for (`*`, `^1.2`).
    pub requirement: String,
    /// The registry's URL.
    pub registry: String,
    /// `sha256:<hex>` of its README bundle.
    pub readme: String,
    /// `sha256:<hex>` of its component, when it was published with one.
    pub component: Option<String>,
}

/// Where a pulled service came from, and its published component.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    /// Its lock entry.
    pub locked: Locked,
    /// Its component, as published (its digest is checked when it is built).
    pub component: Option<PathBuf>,
}
