//! The ecosystem file (`*.pactown.yaml`): services, ports, health checks, replicas, env and
//! `depends_on`, with the reference's fields, types and defaults (REFERENCE.md §2).
//!
//! Unknown fields are errors with a suggestion; every value is checked for its type and range;
//! `${VAR}` is interpolated from the host environment.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use super::decode::{Decoder, EnvLookup};
use super::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use super::service::ServiceSource;
use super::source::normalize;
use super::yaml::Node;

/// Top-level fields.
const ECOSYSTEM_FIELDS: &[&str] = &[
    "name",
    "version",
    "description",
    "base_port",
    "sandbox_root",
    "registry",
    "network",
    "services",
    "profiles",
];

/// Fields of a service.
const SERVICE_FIELDS: &[&str] = &[
    "readme",
    "port",
    "health_check",
    "timeout",
    "replicas",
    "auto_restart",
    "env",
    "depends_on",
    "sandbox_path",
    "version",
    "stop_grace_period",
    "runtime",
    "limits",
    "dirs",
    "rate_limit",
    "sandbox",
    "user",
    "profile",
];

const PROFILE_FIELDS: &[&str] = &["memory", "cpu", "processes", "open_files", "rate_limit"];

const RATE_FIELDS: &[&str] = &["requests", "per", "burst"];

const LIMIT_FIELDS: &[&str] = &[
    "memory",
    "cpu_time",
    "instances",
    "request_timeout",
    "cpu",
    "processes",
    "open_files",
];
const DIR_FIELDS: &[&str] = &["host", "guest", "write"];

/// The most memory one wasm instance may be given.
pub const MAX_WASM_MEMORY: u64 = 1 << 30;

const DEPENDENCY_FIELDS: &[&str] = &["name", "version", "registry", "endpoint", "env_var"];
const REGISTRY_FIELDS: &[&str] = &["url", "namespace", "auth_token"];
const HEALTH_FIELDS: &[&str] = &["path", "interval"];

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
    /// Requests allowed through its stable address.
    pub rate_limit: Option<RateLimit>,
    /// Confine a native service (`sandbox: off` runs it unconfined, as the reference did).
    pub sandbox: bool,
    /// Run a native service as this user (`name` or `uid:gid`; root only).
    pub user: Option<String>,
    /// The named limit set it uses, with the span of the name.
    pub profile: Option<(String, Range<usize>)>,
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
            rate_limit: None,
            sandbox: true,
            user: None,
            profile: None,
            runtime_span: None,
            content: ServiceSource::default(),
            name_span,
            port_span: None,
            readme_span: None,
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
}

/// Defaults of the reference.
pub const DEFAULT_BASE_PORT: u16 = 8000;
/// Startup deadline when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM → SIGKILL, as docker compose.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Liveness interval once ready.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Decode the YAML tree of an ecosystem file. READMEs are not read here.
pub fn decode(
    source: &Arc<SourceFile>,
    root: &Node,
    env: EnvLookup<'_>,
    diags: &mut Diagnostics,
) -> Option<Ecosystem> {
    let dir = source
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut d = Decoder { source, diags, env };
    let entries = d.mapping(root, "the ecosystem file", ECOSYSTEM_FIELDS)?;
    let stem = source
        .path
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".pactown")
                .to_string()
        })
        .unwrap_or_else(|| "ecosystem".into());
    let mut eco = Ecosystem {
        source: source.clone(),
        dir: dir.clone(),
        name: stem,
        version: "0.1.0".into(),
        description: String::new(),
        base_port: DEFAULT_BASE_PORT,
        sandbox_root: normalize(&dir.join(".pactown-sandboxes")),
        registry: Registry::default(),
        network: "pactown-net".into(),
        services: IndexMap::new(),
        state_dir: crate::plan::state_dir(&source.path),
        profiles: builtin_profiles(),
    };
    let mut services_node = None;
    for e in &entries {
        let v = e.value;
        match e.key {
            "name" => {
                if let Some(s) = d.string(v, "name") {
                    eco.name = s;
                }
            }
            "version" => {
                if let Some(s) = d.string(v, "version") {
                    eco.version = s;
                }
            }
            "description" => {
                if let Some(s) = d.opt_string(v, "description") {
                    eco.description = s.unwrap_or_default();
                }
            }
            "base_port" => {
                if let Some(p) = d.int(v, "base_port", 0..=65535, "8000") {
                    eco.base_port = p as u16;
                }
            }
            "sandbox_root" => {
                if let Some(s) = d.string(v, "sandbox_root") {
                    eco.sandbox_root = normalize(&dir.join(s));
                }
            }
            "network" => {
                if let Some(s) = d.string(v, "network") {
                    eco.network = s;
                }
            }
            "registry" => {
                if let Some(r) = registry(&mut d, v) {
                    eco.registry = r;
                }
            }
            "services" => services_node = Some((v, e.key_span.clone())),
            "profiles" => {
                if let Some(entries) = d.mapping(v, "`profiles`", &[]) {
                    for p in entries {
                        let what = format!("profile `{}`", p.key);
                        let Some(fields) = d.mapping(p.value, &what, PROFILE_FIELDS) else {
                            continue;
                        };
                        let mut profile = Profile::default();
                        let rate = fields
                            .iter()
                            .find(|f| f.key == "rate_limit")
                            .map(|f| f.value);
                        profile.rate_limit = rate.and_then(|r| rate_limit(&mut d, r));
                        // The limit fields share their reading with `limits:`.
                        let limit_fields: Vec<(Node, Node)> = fields
                            .iter()
                            .filter(|f| f.key != "rate_limit")
                            .map(|f| {
                                let key = Node {
                                    span: f.key_span.clone(),
                                    kind: super::yaml::NodeKind::Scalar {
                                        value: f.key.to_string(),
                                        plain: true,
                                    },
                                };
                                (key, f.value.clone())
                            })
                            .collect();
                        let map = Node {
                            span: p.value.span.clone(),
                            kind: super::yaml::NodeKind::Map(limit_fields),
                        };
                        if let Some(l) = limits(&mut d, &map) {
                            profile.limits = l;
                        }
                        eco.profiles.insert(p.key.to_string(), profile);
                    }
                }
            }
            _ => unreachable!("unknown fields are filtered by `mapping`"),
        }
    }
    let Some((services, key_span)) = services_node else {
        let end = source.text.len();
        d.error(
            "yaml::no-services",
            end..end,
            "the ecosystem has no `services:`",
            "add a `services:` mapping, e.g.\nservices:\n  api:\n    readme: api/README.md\n    port: 8001",
        );
        return None;
    };
    let entries = d.mapping(services, "`services`", &[])?;
    if entries.is_empty() {
        d.error(
            "yaml::no-services",
            key_span,
            "`services` is empty",
            "add at least one service under `services:`",
        );
        return None;
    }
    for e in entries {
        if let Some(s) = service(&mut d, &dir, e.key, e.key_span.clone(), e.value) {
            eco.services.insert(s.name.clone(), s);
        }
    }
    Some(eco)
}

fn registry(d: &mut Decoder<'_>, node: &Node) -> Option<Registry> {
    let entries = d.mapping(node, "`registry`", REGISTRY_FIELDS)?;
    let mut r = Registry::default();
    for e in entries {
        match e.key {
            "url" => r.url = d.string(e.value, "url")?,
            "namespace" => r.namespace = d.string(e.value, "namespace")?,
            "auth_token" => r.auth_token = d.opt_string(e.value, "auth_token")?,
            _ => unreachable!(),
        }
    }
    Some(r)
}

/// Service names are host names (`http://api/`), directory names and variable prefixes.
fn check_name(d: &mut Decoder<'_>, name: &str, span: Range<usize>) -> bool {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        d.error(
            "yaml::service-name",
            span,
            format!("invalid service name `{name}`"),
            "a name starts with a letter or digit, uses only letters, digits, `-`, `_` and `.`, and is at most 63 characters (it becomes a host name)",
        );
    }
    ok
}

fn service(
    d: &mut Decoder<'_>,
    dir: &Path,
    name: &str,
    name_span: Range<usize>,
    node: &Node,
) -> Option<Service> {
    let named_ok = check_name(d, name, name_span.clone());
    let what = format!("service `{name}`");
    // `api:` with nothing under it takes every default.
    let entries = if node.is_null() {
        Vec::new()
    } else {
        d.mapping(node, &what, SERVICE_FIELDS)?
    };
    let errors_before = d.diags.error_count();
    let mut s = Service::new(
        name,
        normalize(&dir.join(name).join("README.md")),
        name_span,
    );
    for e in entries {
        let v = e.value;
        match e.key {
            "readme" => {
                if let Some(p) = d.string(v, "readme") {
                    s.readme = normalize(&dir.join(p));
                    s.readme_span = Some(v.span.clone());
                }
            }
            "port" => {
                s.port_span = Some(v.span.clone());
                if v.is_null() {
                    s.port = PortSpec::None;
                } else if let Some(p) = d.int(v, "port", 0..=65535, "8001") {
                    s.port = PortSpec::Fixed(p as u16);
                }
            }
            "health_check" => s.health_check = health(d, v),
            "timeout" => {
                if let Some(t) = d.duration(v, "timeout") {
                    s.timeout = t;
                }
            }
            "stop_grace_period" => {
                if let Some(t) = d.duration(v, "stop_grace_period") {
                    s.stop_grace_period = t;
                }
            }
            "replicas" => {
                if let Some(r) = d.int(v, "replicas", 1..=256, "2") {
                    s.replicas = r as u32;
                }
            }
            "auto_restart" => {
                if let Some(b) = d.bool(v, "auto_restart") {
                    s.auto_restart = b;
                }
            }
            "env" => s.env = env_map(d, v),
            "depends_on" => s.depends_on = depends_on(d, v),
            "sandbox_path" => {
                if let Some(p) = d.opt_string(v, "sandbox_path") {
                    s.sandbox_path = p.map(|p| normalize(&dir.join(p)));
                }
            }
            "runtime" => {
                if let Some(text) = d.string(v, "runtime") {
                    match super::service::RuntimeKind::parse(text.trim()) {
                        Some(k) => {
                            s.runtime = Some(k);
                            s.runtime_span = Some(v.span.clone());
                        }
                        None => d.error(
                            "yaml::runtime",
                            v.span.clone(),
                            format!("unknown runtime `{text}`"),
                            "write `native`, `wasm-http` or `wasm-command`",
                        ),
                    }
                }
            }
            "limits" => {
                if let Some(l) = limits(d, v) {
                    s.limits = l;
                }
            }
            "dirs" => s.dirs = dirs(d, dir, v),
            "rate_limit" => s.rate_limit = rate_limit(d, v),
            "sandbox" => {
                let on = match v.as_scalar().map(str::trim) {
                    Some("full" | "on") => Some(true),
                    Some("none" | "off") => Some(false),
                    _ => d.bool(v, "sandbox"),
                };
                if let Some(on) = on {
                    s.sandbox = on;
                }
            }
            "user" => s.user = d.string(v, "user"),
            "profile" => s.profile = d.string(v, "profile").map(|p| (p, v.span.clone())),
            "version" => {
                if let Some(ver) = d.string(v, "version") {
                    match semver::Version::parse(ver.trim()) {
                        Ok(_) => s.version = Some(ver.trim().to_string()),
                        Err(err) => d.error(
                            "yaml::version",
                            v.span.clone(),
                            format!("`{ver}` is not a semantic version: {err}"),
                            "write MAJOR.MINOR.PATCH, e.g. `version: 1.2.0`",
                        ),
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    (named_ok && d.diags.error_count() == errors_before).then_some(s)
}

/// `rate_limit: 100/s` (also `/m`, `/h`), or `{requests: 100, per: 1s, burst: 20}`.
fn rate_limit(d: &mut Decoder<'_>, node: &Node) -> Option<RateLimit> {
    const HELP: &str = "write `rate_limit: 100/s` (or `/m`, `/h`), or `rate_limit: {requests: 100, per: 1s, burst: 20}`";
    if node.as_scalar().is_some() {
        let text = d.string(node, "rate_limit")?;
        let parsed = text.split_once('/').and_then(|(n, unit)| {
            let requests: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
            let per = match unit.trim() {
                "s" | "sec" | "second" => Duration::from_secs(1),
                "m" | "min" | "minute" => Duration::from_secs(60),
                "h" | "hour" => Duration::from_secs(3600),
                other => humantime::parse_duration(other)
                    .ok()
                    .filter(|d| !d.is_zero())?,
            };
            Some(RateLimit {
                requests,
                per,
                burst: requests,
            })
        });
        if parsed.is_none() {
            d.error(
                "yaml::rate-limit",
                node.span.clone(),
                format!("invalid rate limit `{text}`"),
                HELP,
            );
        }
        return parsed;
    }
    let entries = d.mapping(node, "`rate_limit`", RATE_FIELDS)?;
    let (mut requests, mut per, mut burst) = (None, Duration::from_secs(1), None);
    for e in entries {
        match e.key {
            "requests" => {
                requests = Some(d.int(e.value, "requests", 1..=1_000_000_000, "100")? as u32)
            }
            "per" => per = d.duration(e.value, "per")?,
            "burst" => burst = Some(d.int(e.value, "burst", 1..=1_000_000_000, "20")? as u32),
            _ => unreachable!(),
        }
    }
    let Some(requests) = requests else {
        d.error(
            "yaml::rate-limit",
            node.span.clone(),
            "`rate_limit` needs `requests`",
            HELP,
        );
        return None;
    };
    Some(RateLimit {
        requests,
        per,
        burst: burst.unwrap_or(requests),
    })
}

fn limits(d: &mut Decoder<'_>, node: &Node) -> Option<Limits> {
    let entries = d.mapping(node, "`limits`", LIMIT_FIELDS)?;
    let mut l = Limits::default();
    let mut ok = true;
    for e in entries {
        let v = e.value;
        // Read every field, so every mistake is reported in one round.
        match e.key {
            "memory" => match d.byte_size(v, "memory") {
                Some(b) if b < 1 << 20 => {
                    d.error(
                        "yaml::range",
                        v.span.clone(),
                        "`memory` is below 1 MiB",
                        "give at least `memory: 16M`",
                    );
                    ok = false;
                }
                Some(b) => l.memory = Some(b),
                None => ok = false,
            },
            "cpu_time" => match d.duration(v, "cpu_time") {
                Some(t) => l.cpu_time = Some(t),
                None => ok = false,
            },
            "request_timeout" => match d.duration(v, "request_timeout") {
                Some(t) => l.request_timeout = Some(t),
                None => ok = false,
            },
            "instances" => match d.int(v, "instances", 1..=10_000, "32") {
                Some(n) => l.instances = Some(n as u32),
                None => ok = false,
            },
            "cpu" => match d.string(v, "cpu").map(|t| {
                (
                    t.trim().trim_end_matches('%').parse::<f64>(),
                    t.contains('%'),
                )
            }) {
                Some((Ok(n), pct)) if n > 0.0 => l.cpu = Some(if pct { n / 100.0 } else { n }),
                Some(_) => {
                    d.error(
                        "yaml::cpu",
                        v.span.clone(),
                        "`cpu` must be a positive share of one core",
                        "write `cpu: 0.5` (half a core) or `cpu: 50%`",
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "processes" => match d.int(v, "processes", 1..=1_000_000, "64") {
                Some(n) => l.processes = Some(n as u64),
                None => ok = false,
            },
            "open_files" => match d.int(v, "open_files", 16..=1_048_576, "1024") {
                Some(n) => l.open_files = Some(n as u64),
                None => ok = false,
            },
            _ => unreachable!(),
        }
    }
    ok.then_some(l)
}

/// `dirs:` items: `./data` (read-only at `/data`), `./data:/srv/data[:rw|ro]`, or
/// `{host: ./data, guest: /data, write: true}`.
fn dirs(d: &mut Decoder<'_>, base: &Path, node: &Node) -> Vec<DirGrant> {
    let Some(items) = d.seq(node, "dirs", "[./data]") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let (host, guest, write) = if item.as_scalar().is_some() {
            let Some(text) = d.string(item, "dirs") else {
                continue;
            };
            let mut parts = text.split(':');
            let host = parts.next().unwrap_or_default().to_string();
            let guest = parts.next().map(str::to_string);
            let write = match parts.next() {
                None | Some("ro") => false,
                Some("rw") => true,
                Some(other) => {
                    d.error(
                        "yaml::dirs",
                        item.span.clone(),
                        format!("unknown access `{other}`"),
                        "end with `:ro` (the default) or `:rw`",
                    );
                    continue;
                }
            };
            (host, guest, write)
        } else {
            let Some(entries) = d.mapping(item, "a `dirs` entry", DIR_FIELDS) else {
                continue;
            };
            let (mut host, mut guest, mut write) = (None, None, false);
            for e in entries {
                match e.key {
                    "host" => host = d.string(e.value, "host"),
                    "guest" => guest = d.string(e.value, "guest"),
                    "write" => write = d.bool(e.value, "write").unwrap_or(false),
                    _ => unreachable!(),
                }
            }
            let Some(host) = host else {
                d.error(
                    "yaml::dirs",
                    item.span.clone(),
                    "a `dirs` entry needs `host`",
                    "write `{host: ./data, guest: /data}`",
                );
                continue;
            };
            (host, guest, write)
        };
        let name = Path::new(&host)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let guest = guest.unwrap_or_else(|| format!("/{name}"));
        if !guest.starts_with('/') {
            d.error(
                "yaml::dirs",
                item.span.clone(),
                format!("guest path `{guest}` is not absolute"),
                format!("write `/{guest}`"),
            );
            continue;
        }
        let host_path = normalize(&base.join(&host));
        if !write && !host_path.is_dir() {
            d.error(
                "yaml::dirs",
                item.span.clone(),
                format!("directory `{}` does not exist", host_path.display()),
                "create it, or grant it with `:rw` to have pactown create it",
            );
            continue;
        }
        out.push(DirGrant {
            host: host_path,
            guest,
            write,
            span: item.span.clone(),
        });
    }
    out
}

fn health(d: &mut Decoder<'_>, node: &Node) -> Option<HealthCheck> {
    if node.is_null() {
        return None;
    }
    let (path, path_span, interval) = if node.as_scalar().is_some() {
        (
            d.string(node, "health_check")?,
            node.span.clone(),
            DEFAULT_HEALTH_INTERVAL,
        )
    } else {
        let entries = d.mapping(node, "`health_check`", HEALTH_FIELDS)?;
        let mut path = None;
        let mut interval = DEFAULT_HEALTH_INTERVAL;
        for e in entries {
            match e.key {
                "path" => path = Some((d.string(e.value, "path")?, e.value.span.clone())),
                "interval" => interval = d.duration(e.value, "interval")?,
                _ => unreachable!(),
            }
        }
        let Some((p, span)) = path else {
            d.error(
                "yaml::health",
                node.span.clone(),
                "`health_check` has no `path`",
                "write `health_check: /health` or `health_check: {path: /health, interval: 5s}`",
            );
            return None;
        };
        (p, span, interval)
    };
    if !path.starts_with('/') {
        d.error(
            "yaml::health",
            path_span,
            format!("health check `{path}` must be a path starting with `/`"),
            format!("write `health_check: /{}`", path.trim_start_matches('/')),
        );
        return None;
    }
    Some(HealthCheck { path, interval })
}

/// A variable name a shell can use: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn env_map(d: &mut Decoder<'_>, node: &Node) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    let mut set = |d: &mut Decoder<'_>,
                   key: &str,
                   key_span: Range<usize>,
                   value: Option<String>| {
        if !is_env_name(key) {
            d.error(
                "yaml::env-name",
                key_span,
                format!("`{key}` is not a valid variable name"),
                "variable names use letters, digits and `_`, and do not start with a digit",
            );
            return;
        }
        // `KEY:` with no value passes the host's value through, as in docker compose.
        let value = value.or_else(|| (d.env)(key));
        match value {
            Some(v) => {
                out.insert(key.to_string(), v);
            }
            None => {
                let w = Diagnostic::warning(
                    "yaml::env-passthrough",
                    format!("`{key}` has no value here and is not set in the environment; it is left out"),
                    d.source,
                    key_span,
                )
                .with_help(format!("give it a value (`{key}: value`) or set it before running pactown"));
                d.diags.push(w);
            }
        }
    };
    match &node.kind {
        super::yaml::NodeKind::Seq(items) => {
            for item in items {
                if item.as_scalar().is_none() {
                    d.error(
                        "yaml::type",
                        item.span.clone(),
                        format!(
                            "an `env` list item must be `KEY=value`, found {}",
                            item.describe()
                        ),
                        "write `env: [KEY=value]`, or a mapping `env: {KEY: value}`",
                    );
                    continue;
                }
                let Some(text) = d.string(item, "env") else {
                    continue;
                };
                match text.split_once('=') {
                    Some((k, v)) => set(d, k, item.span.clone(), Some(v.to_string())),
                    None => set(d, &text, item.span.clone(), None),
                }
            }
        }
        _ if node.is_null() => {}
        _ => {
            let Some(entries) = d.mapping(node, "`env`", &[]) else {
                return out;
            };
            for e in entries {
                let value = if e.value.is_null() {
                    None
                } else {
                    match d.string(e.value, e.key) {
                        Some(v) => Some(v),
                        None => continue,
                    }
                };
                set(d, e.key, e.key_span, value);
            }
        }
    }
    out
}

fn depends_on(d: &mut Decoder<'_>, node: &Node) -> Vec<Dependency> {
    let Some(items) = d.seq(node, "depends_on", "[database]") else {
        return Vec::new();
    };
    let mut out: Vec<Dependency> = Vec::new();
    for item in items {
        let dep = if item.as_scalar().is_some() {
            // `name` or `name@version`
            let Some(text) = d.string(item, "depends_on") else {
                continue;
            };
            let (name, version) = match text.split_once('@') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (text.clone(), None),
            };
            let span = item.span.clone();
            Dependency {
                name,
                version: version.clone().unwrap_or_else(|| "*".into()),
                registry: "local".into(),
                endpoint: None,
                env_var: None,
                name_span: span.clone(),
                version_span: version.map(|_| span.clone()),
                span,
            }
        } else {
            let Some(entries) = d.mapping(item, "a `depends_on` entry", DEPENDENCY_FIELDS) else {
                continue;
            };
            let mut dep = Dependency {
                name: String::new(),
                version: "*".into(),
                registry: "local".into(),
                endpoint: None,
                env_var: None,
                span: item.span.clone(),
                name_span: item.span.clone(),
                version_span: None,
            };
            let mut ok = true;
            for e in entries {
                let v = e.value;
                let got = match e.key {
                    "name" => d.string(v, "name").map(|s| {
                        dep.name = s;
                        dep.name_span = v.span.clone();
                    }),
                    "version" => d.string(v, "version").map(|s| {
                        dep.version = s;
                        dep.version_span = Some(v.span.clone());
                    }),
                    "registry" => d.string(v, "registry").map(|s| dep.registry = s),
                    "endpoint" => d.opt_string(v, "endpoint").map(|s| {
                        if let Some(url) = &s
                            && !(url.starts_with("http://") || url.starts_with("https://")) {
                                d.error("yaml::endpoint", v.span.clone(), format!("endpoint `{url}` is not an http(s) URL"), "write a URL such as `http://localhost:8003`");
                            }
                        dep.endpoint = s;
                    }),
                    "env_var" => d.opt_string(v, "env_var").map(|s| {
                        if let Some(n) = &s
                            && !is_env_name(n) {
                                d.error("yaml::env-name", v.span.clone(), format!("`{n}` is not a valid variable name"), "variable names use letters, digits and `_`, and do not start with a digit");
                            }
                        dep.env_var = s;
                    }),
                    _ => unreachable!(),
                };
                ok &= got.is_some();
            }
            if dep.name.is_empty() {
                d.error(
                    "yaml::dependency",
                    item.span.clone(),
                    "a `depends_on` entry needs a `name`",
                    "write `- name: database`",
                );
                continue;
            }
            if !ok {
                continue;
            }
            dep
        };
        if let Some(span) = &dep.version_span
            && let Err(e) = semver::VersionReq::parse(dep.version.trim())
        {
            d.error(
                "yaml::version",
                span.clone(),
                format!("`{}` is not a version requirement: {e}", dep.version),
                "write a semver requirement such as `*`, `1`, `^1.2` or `>=1.0, <2`",
            );
            continue;
        }
        if let Some(first) = out.iter().find(|o| o.name == dep.name) {
            let diag = Diagnostic::error(
                "yaml::duplicate-dependency",
                format!("`{}` is listed twice in `depends_on`", dep.name),
                d.source,
                dep.span.clone(),
            )
            .with_secondary(first.span.clone(), "first listed here")
            .with_help("list each dependency once");
            d.diags.push(diag);
            continue;
        }
        out.push(dep);
    }
    out
}

/// Checks across services: dependencies exist and satisfy versions, names do not collide as
/// variables, explicit ports are unique.
pub fn check(eco: &Ecosystem, diags: &mut Diagnostics) {
    let src = &eco.source;
    let mut by_var: IndexMap<String, &Service> = IndexMap::new();
    for s in eco.services.values() {
        let var = env_prefix(&s.name);
        if let Some(other) = by_var.get(&var) {
            diags.push(
                Diagnostic::error(
                    "yaml::name-collision",
                    format!(
                        "services `{}` and `{}` both become `{var}_URL` for their dependents",
                        other.name, s.name
                    ),
                    src,
                    s.name_span.clone(),
                )
                .with_secondary(other.name_span.clone(), "the other service")
                .with_help("rename one of them"),
            );
        } else {
            by_var.insert(var, s);
        }
    }
    for s in eco.services.values() {
        for dep in &s.depends_on {
            if dep.name == s.name {
                diags.push(
                    Diagnostic::error(
                        "graph::cycle",
                        format!("dependency cycle: {} → {}", s.name, s.name),
                        src,
                        dep.name_span.clone(),
                    )
                    .with_label("a service cannot depend on itself")
                    .with_help("remove this entry"),
                );
                continue;
            }
            let Some(target) = eco.services.get(&dep.name) else {
                let mut diag = Diagnostic::error(
                    "yaml::unknown-dependency",
                    format!(
                        "service `{}` depends on `{}`, which is not a service of this ecosystem",
                        s.name, dep.name
                    ),
                    src,
                    dep.name_span.clone(),
                );
                let names = eco.services.keys().map(String::as_str);
                diag = match super::diagnostic::did_you_mean(&dep.name, names) {
                    Some(m) => diag.with_help(format!("did you mean `{m}`?")),
                    None if dep.registry != "local" => diag.with_help("pulling services from a registry is not supported yet; add the service to this ecosystem"),
                    None => diag.with_help(format!(
                        "services here: {}",
                        eco.services.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    )),
                };
                diags.push(diag);
                continue;
            };
            if let (Some(span), Ok(req)) = (
                &dep.version_span,
                semver::VersionReq::parse(dep.version.trim()),
            ) {
                match target.version.as_deref().map(semver::Version::parse) {
                    Some(Ok(v)) if !req.matches(&v) => diags.push(
                        Diagnostic::error(
                            "yaml::version-mismatch",
                            format!(
                                "`{}` needs `{}` {}, but `{}` is version {v}",
                                s.name, dep.name, dep.version, dep.name
                            ),
                            src,
                            span.clone(),
                        )
                        .with_help("change the requirement or the dependency's `version`"),
                    ),
                    None if dep.version.trim() != "*" => diags.push(
                        Diagnostic::warning(
                            "yaml::version-unknown",
                            format!(
                                "`{}` requires version {} of `{}`, which declares no `version`",
                                s.name, dep.version, dep.name
                            ),
                            src,
                            span.clone(),
                        )
                        .with_help(format!(
                            "add `version:` to service `{}` so the requirement can be checked",
                            dep.name
                        )),
                    ),
                    _ => {}
                }
            }
        }
    }
    for s in eco.services.values() {
        check_runtime(s, src, diags);
        if let Some((name, span)) = &s.profile
            && !eco.profiles.contains_key(name)
        {
            let names = eco.profiles.keys().map(String::as_str);
            let help = match super::diagnostic::did_you_mean(name, names) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!(
                    "profiles: {}",
                    eco.profiles
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            diags.push(
                Diagnostic::error(
                    "yaml::profile",
                    format!("unknown profile `{name}`"),
                    src,
                    span.clone(),
                )
                .with_help(help),
            );
        }
        if let Some(user) = &s.user
            && crate::plan::resolve_user(user).is_none()
        {
            diags.push(
                Diagnostic::error(
                    "yaml::user",
                    format!("no user `{user}` on this machine"),
                    src,
                    s.name_span.clone(),
                )
                .with_help("create the user, or give a numeric `uid:gid`"),
            );
        }
    }
    let mut ports: IndexMap<u16, &Service> = IndexMap::new();
    for s in eco.services.values() {
        if let PortSpec::Fixed(p) = s.port {
            if p == 0 {
                continue;
            }
            let span = s.port_span.clone().unwrap_or(s.name_span.clone());
            if let Some(first) = ports.get(&p) {
                diags.push(
                    Diagnostic::error(
                        "yaml::duplicate-port",
                        format!(
                            "port {p} is given to both `{}` and `{}`",
                            first.name, s.name
                        ),
                        src,
                        span,
                    )
                    .with_secondary(
                        first.port_span.clone().unwrap_or(first.name_span.clone()),
                        format!("`{}` has it", first.name),
                    )
                    .with_help(
                        "give each service its own port, or remove `port:` to let pactown pick one",
                    ),
                );
            } else {
                ports.insert(p, s);
            }
        }
    }
}

/// A wasm runtime needs a language with a WASM build; memory must fit the engine's pool.
fn check_runtime(s: &Service, src: &Arc<SourceFile>, diags: &mut Diagnostics) {
    let wasm = matches!(
        s.runtime_override(),
        Some((
            super::service::RuntimeKind::WasmHttp | super::service::RuntimeKind::WasmCommand,
            _
        ))
    );
    if wasm && !crate::build::rust::is_rust(s) {
        diags.push(
            Diagnostic::error(
                "yaml::runtime",
                format!(
                    "`{}` has no Rust source, and only Rust services build to WebAssembly yet",
                    s.name
                ),
                src,
                s.runtime_span.clone().unwrap_or(s.name_span.clone()),
            )
            .with_help(
                "use `runtime: native`, or write the service in Rust (a `src/main.rs` file block)",
            ),
        );
    }
    if let Some(m) = s.limits.memory
        && m > MAX_WASM_MEMORY
        && (wasm || s.runtime.is_none() && crate::build::rust::is_rust(s))
    {
        diags.push(
            Diagnostic::error(
                "yaml::range",
                format!(
                    "`{}` asks for {} MiB per instance; wasm instances may have at most 1024 MiB",
                    s.name,
                    m >> 20
                ),
                src,
                s.name_span.clone(),
            )
            .with_help("lower `limits.memory` to `1G` or less"),
        );
    }
}

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
