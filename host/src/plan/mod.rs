//! The Plan: one serializable description of what `up` will do, per service: sandbox kind and
//! why, files, dependencies, run command, port, environment, health, restart, replicas.
//!
//! A plan is a pure function of a checked ecosystem and the ports its services get, so `pactown
//! plan` shows exactly what `up` runs, and `up` re-plans when a busy port moves a service.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::facts::HostFacts;
use crate::spec::ecosystem::secs;
use crate::spec::graph::DependencyGraph;
use crate::spec::markpact::Loc;
use crate::spec::service::{Installer, Tests};
use crate::spec::{Ecosystem, RuntimeKind, Service};

pub mod calls;
mod env;
mod language;
mod limits;
mod sandbox;

pub use crate::spec::language::{Language, language, runtime_kind};
pub use crate::spec::service::resolve_user;
pub use crate::spec::source::state_dir;
pub use calls::{Call, CallPolicy};
pub use env::{
    Added, HOME_DIR, PARENT_ENV_ALLOWED, REPLICA_PORT_VARS, TMP_DIR, dependency_url,
    is_secret_name, without_credentials,
};
use env::{inherited, service_env};
pub use language::ToolNeed;
pub use limits::*;
use sandbox::sandbox_layers;
pub use sandbox::{
    BUILD_UID, DYNAMIC_UID_BASE, DYNAMIC_UID_RANGE, Layer, LayerName, SandboxLevel, SandboxPlan,
    service_uid,
};

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Ecosystem name.
    pub ecosystem: String,
    /// The ecosystem file.
    pub file: PathBuf,
    /// Where `up` keeps its state, logs and control socket.
    pub state_dir: PathBuf,
    /// Where sandboxes are created.
    pub sandbox_root: PathBuf,
    /// Start waves.
    pub waves: Vec<Vec<String>>,
    /// Stop order.
    pub stop_order: Vec<String>,
    /// Per service, in file order.
    pub services: IndexMap<String, ServicePlan>,
}

/// A file the sandbox will hold.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    /// Relative path.
    pub path: String,
    /// Size in bytes.
    pub bytes: usize,
    /// SHA-256 of the content.
    pub sha256: String,
    /// Filled from the service's env at write time.
    pub template: bool,
    /// Unix permissions, if set (octal, as written).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "octal")]
    pub mode: Option<u32>,
    /// Where the block is.
    pub from: Loc,
}

fn octal<S: serde::Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.collect_str(&format_args!("{m:o}")),
        None => s.serialize_none(),
    }
}

/// A block only the reference acts on, listed so nothing the user wrote goes unmentioned.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceOnly {
    /// Its kind.
    pub kind: crate::spec::markpact::BlockKind,
    /// Where it is.
    pub at: Loc,
}

/// Health settings.
#[derive(Debug, Clone, Serialize)]
pub struct HealthPlan {
    /// `GET` path; without one, ready means the port accepts connections.
    pub check: Option<String>,
    /// Time between liveness checks once ready.
    #[serde(with = "secs")]
    pub interval: std::time::Duration,
    /// Startup deadline.
    #[serde(with = "secs")]
    pub timeout: std::time::Duration,
}

/// Restart policy.
#[derive(Debug, Clone, Serialize)]
pub struct RestartPlan {
    /// Restart on failure.
    pub auto_restart: bool,
    /// First delay.
    pub backoff_initial_ms: u64,
    /// Delay cap.
    pub backoff_max_ms: u64,
    /// Healthy time after which the delay resets.
    pub reset_after_ms: u64,
}

/// One service of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    /// Name.
    pub name: String,
    /// README.
    pub readme: PathBuf,
    /// What it is written in.
    pub language: Language,
    /// The toolchains it needs, and whether each is there.
    pub toolchains: Vec<ToolNeed>,
    /// How it runs.
    pub sandbox: SandboxPlan,
    /// Files to write.
    pub files: Vec<PlannedFile>,
    /// Dependencies per installer.
    pub deps: BTreeMap<Installer, Vec<String>>,
    /// Build command.
    pub build: Option<String>,
    /// Run command (given to `sh -c` unchanged).
    pub run: Option<String>,
    /// Stable address port, owned by the host's router.
    pub port: Option<u16>,
    /// Environment (pactown's variables, then the service's `env:`), without the per-replica
    /// `PORT`/`MARKPACT_PORT` and the inherited parent variables.
    pub env: IndexMap<String, String>,
    /// What it inherits from pactown's environment (never printed: it is the developer's).
    #[serde(skip)]
    pub inherited: IndexMap<String, String>,
    /// Health.
    pub health: HealthPlan,
    /// Restart.
    pub restart: RestartPlan,
    /// SIGTERM → SIGKILL.
    #[serde(with = "secs")]
    pub stop_grace_period: std::time::Duration,
    /// Replicas.
    pub replicas: u32,
    /// Names it depends on.
    pub depends_on: Vec<String>,
    /// Whom it may call: its dependencies and its `allowed_hosts`, nothing else.
    pub calls: CallPolicy,
    /// Tests from the README.
    pub tests: Vec<Tests>,
    /// Resource limits.
    pub limits: LimitsPlan,
    /// Directories it may see.
    pub dirs: Vec<crate::spec::ecosystem::DirGrant>,
    /// Token bucket on its stable address.
    pub rate_limit: Option<crate::spec::ecosystem::RateLimit>,
    /// Blocks pactown reads but does not act on (`bootstrap`, `publish`, `target`, `workload`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reference_only: Vec<ReferenceOnly>,
}

impl Plan {
    /// `FILE:LINE:COL` of `span` in the ecosystem file, for an error found after it was read
    /// (the file is read again: only on the way to an error).
    pub fn at(&self, span: &std::ops::Range<usize>) -> String {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let (line, col) = crate::spec::SourceFile::new(&self.file, text).line_col(span.start);
        format!("{}:{line}:{col}", self.file.display())
    }

    /// The directories sandboxed services can write: each native service's sandbox dir and
    /// every directory `dirs:` grants read-write, absolute. A link below one of them may be a
    /// service's, so no granted path is looked up through one (`pactown_runtime::links`).
    pub fn writable_by_services(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .services
            .values()
            .flat_map(|s| {
                let own = (s.sandbox.kind == RuntimeKind::Native).then(|| s.sandbox.dir.clone());
                let granted = s.dirs.iter().filter(|d| d.write).map(|d| d.host.clone());
                own.into_iter().chain(granted)
            })
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// How a granted path is looked up on the host: through no link below a directory these
    /// services can write ([`Plan::writable_by_services`]).
    pub fn links(&self) -> pactown_runtime::links::Lookup {
        pactown_runtime::links::Lookup::new(std::path::Path::new("/"), &self.writable_by_services())
    }

    /// How many wasm instances may exist at once in this ecosystem: what its wasm services may
    /// run concurrently (their `limits.instances`, and the one instance a fresh-per-request
    /// service makes ahead for its next request), within the engine's pool of at most
    /// [`MAX_POOL_INSTANCES`]. A pool slot costs address space and a little set-up at start,
    /// so a small ecosystem gets a small pool (unless its engine was begun ahead with room for
    /// any plan: see `orchestrator::engine_start`).
    pub fn wasm_instances(&self) -> u32 {
        pool_size(
            self.services
                .values()
                .map(|s| pool_slots(s.sandbox.kind, &s.limits)),
        )
    }

    /// [`Self::wasm_instances`] of the plan `eco` will have, before it is made (no ports, no
    /// facts needed): the engine can be started while they are found.
    pub fn wasm_instances_of(eco: &Ecosystem) -> u32 {
        pool_size(eco.services.values().map(|s| {
            let kind = runtime_kind(s).0;
            pool_slots(kind, &resolved_limits(eco, s, kind))
        }))
    }

    /// Plan `eco` with the given stable ports (see [`crate::spec::ecosystem::assign_ports`]).
    pub fn build(
        eco: &Ecosystem,
        graph: &DependencyGraph,
        ports: &IndexMap<String, Option<u16>>,
        facts: &HostFacts,
    ) -> Self {
        let state_dir = eco.state_dir.clone();
        let services = eco
            .services
            .values()
            .map(|s| (s.name.clone(), service_plan(eco, s, ports, facts)))
            .collect();
        Plan {
            ecosystem: eco.name.clone(),
            file: eco.source.path.clone(),
            state_dir,
            sandbox_root: eco.sandbox_root.clone(),
            waves: graph.waves(),
            stop_order: graph.stop_order(),
            services,
        }
    }

    /// A copy with secret-looking values replaced, for printing.
    pub fn redacted(&self) -> Self {
        let mut p = self.clone();
        for s in p.services.values_mut() {
            for (k, v) in s.env.iter_mut() {
                if is_secret_name(k) {
                    *v = "<redacted>".into();
                }
            }
        }
        p
    }
}

impl ServicePlan {
    /// How many replicas it reports: its `replicas`, or one for a component instantiated per
    /// request (there are no replicas to count; one entry stands for them).
    pub fn replica_slots(&self) -> usize {
        if self.sandbox.kind == RuntimeKind::WasmHttp {
            1
        } else {
            self.replicas as usize
        }
    }

    /// Its complete environment as a native process, given what later stages `added`: the one
    /// place it is composed (see [`env`]).
    pub fn process_env(&self, added: Added<'_>) -> Vec<(String, String)> {
        env::process_env(&self.inherited, &self.env, &self.sandbox, added)
    }
}

/// A service's limits: its own, else its profile's, else the defaults for its kind.
fn resolved_limits(eco: &Ecosystem, s: &Service, kind: RuntimeKind) -> LimitsPlan {
    let profile = s.profile.as_ref().and_then(|(p, _)| eco.profiles.get(p));
    let limits = profile.map_or_else(|| s.limits.clone(), |p| s.limits.or(&p.limits));
    LimitsPlan {
        memory: limits.memory.unwrap_or(if kind == RuntimeKind::Native {
            DEFAULT_NATIVE_MEMORY
        } else {
            DEFAULT_WASM_MEMORY
        }),
        cpu: limits.cpu,
        processes: limits.processes.unwrap_or(DEFAULT_PROCESSES),
        open_files: limits.open_files.unwrap_or(DEFAULT_OPEN_FILES),
        cpu_time: limits.cpu_time.unwrap_or(DEFAULT_CPU_TIME),
        instances: limits.instances.unwrap_or(DEFAULT_INSTANCES),
        request_timeout: limits.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        instance_reuse: s.instance_reuse.0,
    }
}

/// Pool slots a service may hold at once: none unless it runs as wasm; else its concurrent
/// instances, and the one a fresh-per-request service makes ahead for its next request.
fn pool_slots(kind: RuntimeKind, limits: &LimitsPlan) -> u64 {
    if !kind.is_wasm() {
        return 0;
    }
    let ahead = kind == RuntimeKind::WasmHttp && limits.instance_reuse <= 1;
    u64::from(limits.instances.max(1)) + u64::from(ahead)
}

/// The engine's pool for services needing `slots`, within its bounds.
fn pool_size(slots: impl Iterator<Item = u64>) -> u32 {
    slots
        .sum::<u64>()
        .clamp(u64::from(MIN_POOL_INSTANCES), u64::from(MAX_POOL_INSTANCES)) as u32
}

fn service_plan(
    eco: &Ecosystem,
    s: &Service,
    ports: &IndexMap<String, Option<u16>>,
    facts: &HostFacts,
) -> ServicePlan {
    let port = ports.get(&s.name).copied().flatten();
    let dir = s
        .sandbox_path
        .clone()
        .unwrap_or_else(|| eco.sandbox_root.join(&s.name));
    let run = s.content.run.as_ref().map(|r| r.command.clone());
    let language = language(s);
    let (kind, reason) = runtime_kind(s);
    let profile = s.profile.as_ref().and_then(|(p, _)| eco.profiles.get(p));
    let rate_limit = s.rate_limit.or(profile.and_then(|p| p.rate_limit));
    // A native service runs as the user `user:` names, else (when pactown is root and can give
    // it a root filesystem of its own, where the toolchains it needs are reachable by another
    // user) as a dedicated uid of its own; else as the invoking user.
    let user = s.user.as_deref().and_then(resolve_user).or_else(|| {
        (kind == RuntimeKind::Native && s.sandbox && facts.kernel.root && facts.kernel.namespaces)
            .then(|| service_uid(&eco.state_dir, &s.name))
    });
    let limits = resolved_limits(eco, s, kind);
    let (level, layers) = sandbox_layers(s, kind, &limits, user, &facts.kernel);
    let toolchains = crate::facts::tools_of(s, language)
        .into_iter()
        .map(|tool| ToolNeed {
            tool,
            status: facts.tool(tool),
        })
        .collect();
    ServicePlan {
        name: s.name.clone(),
        readme: s.readme.clone(),
        language,
        toolchains,
        sandbox: SandboxPlan {
            kind,
            reason,
            dir,
            level,
            layers,
            user,
        },
        files: s
            .content
            .files
            .iter()
            .map(|f| PlannedFile {
                path: f.path.as_str().to_string(),
                bytes: f.content.len(),
                sha256: hex::encode(Sha256::digest(f.content.as_bytes())),
                template: f.template,
                mode: f.mode,
                from: f.loc.clone(),
            })
            .collect(),
        deps: s
            .content
            .deps
            .iter()
            .map(|(k, v)| (*k, v.iter().map(|d| d.spec.clone()).collect()))
            .collect(),
        build: s.content.build.as_ref().map(|b| b.command.clone()),
        run,
        port,
        env: service_env(eco, s, port, ports),
        inherited: inherited(&facts.env),
        health: HealthPlan {
            // Every built-in service answers `/health`.
            check: s
                .health_check
                .as_ref()
                .map(|h| h.path.clone())
                .or_else(|| s.builtin.as_ref().map(|_| "/health".to_string())),
            interval: s
                .health_check
                .as_ref()
                .map_or(crate::spec::ecosystem::DEFAULT_HEALTH_INTERVAL, |h| {
                    h.interval
                }),
            timeout: s.timeout,
        },
        restart: RestartPlan {
            auto_restart: s.auto_restart,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            reset_after_ms: 60_000,
        },
        stop_grace_period: s.stop_grace_period,
        replicas: s.replicas,
        depends_on: s.depends_on.iter().map(|d| d.name.clone()).collect(),
        calls: CallPolicy {
            caller: s.name.clone(),
            services: s
                .depends_on
                .iter()
                .map(|d| {
                    let at = env::dependency_address(eco, ports, &d.name);
                    (d.name.clone(), at.map(|(_, p)| p))
                })
                .collect(),
            elsewhere: s
                .depends_on
                .iter()
                .filter_map(|d| Some((d.name.clone(), eco.elsewhere.get(&d.name)?.host.clone())))
                .collect(),
            egress: s.allowed_hosts.clone(),
            known: eco
                .services
                .keys()
                .chain(eco.elsewhere.keys())
                .cloned()
                .collect(),
            this_machine: facts.addresses.clone(),
        },
        tests: s.content.tests.clone(),
        limits,
        dirs: s.dirs.clone(),
        rate_limit,
        reference_only: s
            .content
            .extras
            .iter()
            .map(|e| ReferenceOnly {
                kind: e.kind,
                at: e.loc.clone(),
            })
            .collect(),
    }
}
