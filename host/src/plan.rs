//! The Plan: one serializable description of what `up` will do, per service: sandbox kind and
//! why, files, dependencies, run command, port, environment, health, restart, replicas.
//!
//! A plan is a pure function of a checked ecosystem and the ports its services get, so `pactown
//! plan` shows exactly what `up` runs, and `up` re-plans when a busy port moves a service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::facts::{HostFacts, KernelSupport, Tool, ToolStatus};
use crate::graph::DependencyGraph;
use crate::spec::ecosystem::{env_prefix, secs};
use crate::spec::markpact::Loc;
use crate::spec::service::{Installer, Tests};
use crate::spec::{Ecosystem, RuntimeKind, Service};

/// Variables a service inherits from pactown's own environment. Everything else is dropped, so
/// a developer's shell secrets never reach a service.
pub const PARENT_ENV_ALLOWED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "NPM_CONFIG_REGISTRY",
];

/// Does a variable name look like it holds a secret?
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.ends_with("_API_KEY")
        || n == "API_KEY"
        || [
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "TOKEN",
            "PRIVATE_KEY",
            "CREDENTIAL",
        ]
        .iter()
        .any(|s| n.contains(s))
}

/// Variables pactown sets per replica, since each replica has its own internal port.
pub const REPLICA_PORT_VARS: [&str; 2] = ["PORT", "MARKPACT_PORT"];

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

/// Why a service runs the way it does, and how tightly it is confined.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxPlan {
    /// The kind.
    pub kind: RuntimeKind,
    /// Why this kind.
    pub reason: String,
    /// The sandbox directory.
    pub dir: PathBuf,
    /// Full, partial or none.
    pub level: SandboxLevel,
    /// Each layer, on or off, and what it does or why it is off.
    pub layers: Vec<Layer>,
    /// The user a native service runs as (uid, gid), when one is set.
    pub user: Option<(u32, u32)>,
}

impl SandboxPlan {
    /// Is the layer `name` on?
    pub fn layer_on(&self, name: &str) -> bool {
        self.layers.iter().any(|l| l.name == name && l.on)
    }
}

/// How confined a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxLevel {
    /// Every layer of its kind is on.
    Full,
    /// Some layer is off on this machine.
    Partial,
    /// Unconfined (`sandbox: off`).
    None,
}

impl SandboxLevel {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxLevel::Full => "full",
            SandboxLevel::Partial => "partial",
            SandboxLevel::None => "none",
        }
    }
}

/// One layer of a sandbox.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Layer {
    /// Its name (`landlock-fs`, `seccomp`, ...).
    pub name: String,
    /// Whether it applies.
    pub on: bool,
    /// What it does, or why it is off.
    pub detail: String,
}

fn layer(name: &str, on: bool, detail: impl Into<String>) -> Layer {
    Layer {
        name: name.into(),
        on,
        detail: detail.into(),
    }
}

/// A `user:` value as uid and gid: `uid:gid`, a numeric uid, or a user name.
pub fn resolve_user(spec: &str) -> Option<(u32, u32)> {
    if let Some((u, g)) = spec.split_once(':') {
        return Some((u.trim().parse().ok()?, g.trim().parse().ok()?));
    }
    if let Ok(uid) = spec.trim().parse::<u32>() {
        return Some((uid, uid));
    }
    let name = std::ffi::CString::new(spec.trim()).ok()?;
    // SAFETY: getpwnam reads the password database; we copy the fields out immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null result of getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// The first uid (and gid) of the range pactown gives services and builds, like systemd's
/// `DynamicUser=`: no entry in `/etc/passwd` on the host (each sandbox gets its own view that
/// names it), far above the ranges distributions hand out to people and packages.
pub const DYNAMIC_UID_BASE: u32 = 0x3000_0000;
/// The size of that range.
pub const DYNAMIC_UID_RANGE: u32 = 0x0100_0000;

/// The uid/gid of a service: derived from its ecosystem's state dir and its name, so it is the
/// same on every start (its files stay its own) and differs between services (they cannot
/// signal or read each other, whatever else fails).
pub fn service_uid(state_dir: &Path, service: &str) -> (u32, u32) {
    let abs = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let key = Sha256::digest(
        [
            abs.as_os_str().as_encoded_bytes(),
            b"\0",
            service.as_bytes(),
        ]
        .concat(),
    );
    let n = u32::from_le_bytes([key[0], key[1], key[2], key[3]]) % (DYNAMIC_UID_RANGE - 1);
    let uid = DYNAMIC_UID_BASE + 1 + n;
    (uid, uid)
}

/// The uid/gid builds run as: one for every build, so the shared download caches have one
/// owner, and different from every service's.
pub const BUILD_UID: (u32, u32) = (DYNAMIC_UID_BASE, DYNAMIC_UID_BASE);

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

/// Limits with defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsPlan {
    /// Memory, bytes (per instance for wasm, per replica for native).
    pub memory: u64,
    /// CPU share of a native replica (0.5 = half a core); none means unlimited.
    pub cpu: Option<f64>,
    /// Processes and threads of a native replica.
    pub processes: u64,
    /// Open files of a native process.
    pub open_files: u64,
    /// CPU time per request (wasm-http).
    #[serde(with = "secs")]
    pub cpu_time: std::time::Duration,
    /// Instances at once (wasm-http).
    pub instances: u32,
    /// Wall-clock time per request (wasm-http).
    #[serde(with = "secs")]
    pub request_timeout: std::time::Duration,
}

/// Safe defaults for wasm services.
pub const DEFAULT_WASM_MEMORY: u64 = 128 << 20;
/// Memory of a native replica when none is set: enough for real services, not for a bomb.
pub const DEFAULT_NATIVE_MEMORY: u64 = 1 << 30;
/// Processes and threads of a native replica.
pub const DEFAULT_PROCESSES: u64 = 512;
/// Open files of a native process.
pub const DEFAULT_OPEN_FILES: u64 = 4096;
/// CPU budget of one request.
pub const DEFAULT_CPU_TIME: std::time::Duration = std::time::Duration::from_secs(10);
/// Concurrent instances of one service.
pub const DEFAULT_INSTANCES: u32 = 64;
/// Wall-clock budget of one request.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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

/// `<dir>/.pactown/<file name without .pactown.yaml>`: one state dir per ecosystem file, so two
/// files in one folder never share state.
pub fn state_dir(ecosystem_file: &Path) -> PathBuf {
    let dir = ecosystem_file.parent().unwrap_or(Path::new(""));
    let name = ecosystem_file
        .file_name()
        .map(|n| {
            let n = n.to_string_lossy();
            n.trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".pactown")
                .to_string()
        })
        .unwrap_or_else(|| "ecosystem".into());
    crate::spec::source::normalize(&dir.join(".pactown").join(name))
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
    let (kind, reason) = sandbox_kind(s, language);
    let profile = s.profile.as_ref().and_then(|(p, _)| eco.profiles.get(p));
    let limits = profile.map_or_else(|| s.limits.clone(), |p| s.limits.or(&p.limits));
    let rate_limit = s.rate_limit.or(profile.and_then(|p| p.rate_limit));
    // A native service runs as the user `user:` names, else (when pactown is root) as a
    // dedicated uid of its own; without root, as the invoking user.
    let user = s.user.as_deref().and_then(resolve_user).or_else(|| {
        (kind == RuntimeKind::Native && s.sandbox && facts.kernel.root)
            .then(|| service_uid(&eco.state_dir, &s.name))
    });
    let limits = LimitsPlan {
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
    };
    let (level, layers) = sandbox_layers(s, kind, &limits, user, &facts.kernel);
    let toolchains = tools_of(s, language)
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
        health: HealthPlan {
            check: s.health_check.as_ref().map(|h| h.path.clone()),
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

/// The layers a service gets on this machine, and the level they add up to.
fn sandbox_layers(
    s: &Service,
    kind: RuntimeKind,
    limits: &LimitsPlan,
    user: Option<(u32, u32)>,
    k: &KernelSupport,
) -> (SandboxLevel, Vec<Layer>) {
    let mib = limits.memory >> 20;
    if kind != RuntimeKind::Native {
        let fs = if s.dirs.is_empty() {
            "no filesystem".to_string()
        } else {
            s.dirs
                .iter()
                .map(|d| format!("{} ({})", d.guest, if d.write { "rw" } else { "ro" }))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut layers = vec![
            layer(
                "wasm",
                true,
                "wasmtime: no system calls, memory-safe isolation",
            ),
            layer("filesystem", true, fs),
            layer(
                "network",
                true,
                "virtualized: its own port and its dependencies only",
            ),
            layer("memory", true, format!("{mib} MiB per instance")),
        ];
        if kind == RuntimeKind::WasmHttp {
            layers.push(layer(
                "cpu",
                true,
                format!(
                    "{} per request",
                    humantime::format_duration(limits.cpu_time)
                ),
            ));
        }
        return (SandboxLevel::Full, layers);
    }
    if !s.sandbox {
        return (
            SandboxLevel::None,
            vec![
                layer(
                    "session",
                    true,
                    "own session and process group; dies with pactown",
                ),
                layer("sandbox", false, "`sandbox: off` in the ecosystem file"),
            ],
        );
    }
    let abi = k.landlock_abi.unwrap_or(0);
    let cpu = limits
        .cpu
        .map_or("unlimited cpu".to_string(), |c| format!("cpu {c}"));
    let layers = vec![
        layer(
            "session",
            true,
            "own session and process group; dies with pactown",
        ),
        layer(
            "namespaces",
            k.namespaces,
            if k.namespaces {
                "own PID, mount and IPC namespaces: its own /proc, /tmp and /dev/shm, a read-only root with only what it needs; nothing of pactown or other services visible"
            } else {
                "needs root to make PID and mount namespaces; it sees the host's /proc and filesystem (Landlock still confines what it opens)"
            },
        ),
        match user {
            Some((uid, gid)) if k.root => layer(
                "user",
                true,
                format!("runs as {uid}:{gid}, no supplementary groups, no capabilities"),
            ),
            _ => layer(
                "user",
                false,
                "pactown is not root: it runs as the invoking user (no capabilities), since only root can switch users",
            ),
        },
        layer(
            "rlimits",
            true,
            format!("{} open files, no core dumps", limits.open_files),
        ),
        if k.cgroup_v1 {
            layer(
                "cgroup",
                true,
                format!("memory {mib} MiB, {} processes, {cpu}", limits.processes),
            )
        } else {
            layer(
                "cgroup",
                false,
                format!(
                    "needs root (cgroup v1) or a delegated cgroup v2; memory falls back to RLIMIT_DATA {mib} MiB, processes to RLIMIT_NPROC ({} more than the user runs){}, cpu unlimited",
                    limits.processes,
                    if k.root { ", which root ignores" } else { "" }
                ),
            )
        },
        layer(
            "landlock-fs",
            abi >= 1,
            if abi >= 1 {
                "read-only system and toolchains, read-write only its sandbox dir".to_string()
            } else {
                "Landlock is not enabled in this kernel".to_string()
            },
        ),
        layer(
            "landlock-net",
            abi >= 4,
            if abi >= 4 {
                "bind only its own port; connect only to its dependencies and its proxy".to_string()
            } else {
                format!("needs Landlock ABI 4, this kernel has {abi}")
            },
        ),
        layer(
            "landlock-scopes",
            abi >= 6,
            if abi >= 6 {
                "no abstract unix socket and no signal outside its sandbox".to_string()
            } else {
                format!("needs Landlock ABI 6, this kernel has {abi}")
            },
        ),
        layer(
            "seccomp",
            k.seccomp,
            if k.seccomp {
                "sockets: unix, TCP (no MPTCP) and netlink route only; io_uring, mknod, clocks, hostname, syslog, namespaces, mount, ptrace, bpf, keys, modules denied; each denial and refused connect logged"
            } else {
                "seccomp with user notifications is not available"
            },
        ),
        layer("no-new-privs", true, "no privilege gain through exec"),
    ];
    let level = if layers.iter().all(|l| l.on) {
        SandboxLevel::Full
    } else {
        SandboxLevel::Partial
    };
    (level, layers)
}

fn sandbox_kind(s: &Service, language: Language) -> (RuntimeKind, String) {
    if let Some((k, by)) = s.runtime_override() {
        return (k, format!("{} as set by {by}", k.as_str()));
    }
    if crate::build::rust::is_rust(s) {
        return crate::build::rust::kind_from_source(s);
    }
    if s.content.run.is_none() {
        return (
            RuntimeKind::Native,
            "no run block: nothing is started".into(),
        );
    }
    (
        RuntimeKind::Native,
        format!(
            "{} service started by its run command as a process",
            language.as_str()
        ),
    )
}

/// What a service is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python.
    Python,
    /// JavaScript or TypeScript on Node.js.
    Node,
    /// Go.
    Go,
    /// Rust.
    Rust,
    /// A shell command, or something pactown does not know.
    Shell,
}

impl Language {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
            Language::Go => "go",
            Language::Rust => "rust",
            Language::Shell => "shell",
        }
    }
}

/// The language of a service: from its run command (what it starts), else its dependencies,
/// else its files (`package.json`, `go.mod`, `*.py`, …).
pub fn language(s: &Service) -> Language {
    if crate::build::rust::is_rust(s) {
        return Language::Rust;
    }
    let by_program = |word: &str| -> Option<Language> {
        let prog = word.rsplit('/').next().unwrap_or(word);
        Some(match prog {
            "node" | "npm" | "npx" | "yarn" | "pnpm" | "bun" | "deno" | "tsx" | "ts-node" => {
                Language::Node
            }
            "go" => Language::Go,
            "cargo" => Language::Rust,
            p if p.starts_with("python")
                || matches!(
                    p,
                    "uvicorn"
                        | "gunicorn"
                        | "hypercorn"
                        | "flask"
                        | "pip"
                        | "pip3"
                        | "uv"
                        | "streamlit"
                        | "celery"
                        | "fastapi"
                ) =>
            {
                Language::Python
            }
            _ => return None,
        })
    };
    if let Some(run) = &s.content.run {
        for part in run.command.split(['\n', ';', '&', '|']) {
            let first = part
                .split_whitespace()
                .find(|w| !w.contains('=') && !matches!(*w, "exec" | "env" | "time" | "nohup"));
            if let Some(lang) = first.and_then(by_program) {
                return lang;
            }
        }
    }
    for (installer, lang) in [
        (Installer::Pip, Language::Python),
        (Installer::Npm, Language::Node),
        (Installer::Go, Language::Go),
    ] {
        if s.content.deps.contains_key(&installer) {
            return lang;
        }
    }
    for f in &s.content.files {
        let p = f.path.as_str();
        let lang = if p == "package.json"
            || [".js", ".mjs", ".cjs", ".ts"]
                .iter()
                .any(|e| p.ends_with(e))
        {
            Language::Node
        } else if p == "go.mod" || p.ends_with(".go") {
            Language::Go
        } else if p.ends_with(".py") || p == "requirements.txt" {
            Language::Python
        } else {
            continue;
        };
        return lang;
    }
    Language::Shell
}

/// The toolchains a service of `language` needs.
fn tools_of(s: &Service, language: Language) -> Vec<Tool> {
    match language {
        Language::Python => {
            let deps = s.content.deps.contains_key(&Installer::Pip)
                || s.content.file("requirements.txt").is_some();
            if deps {
                vec![Tool::Python3, Tool::Uv]
            } else {
                vec![Tool::Python3]
            }
        }
        Language::Node => vec![Tool::Node],
        Language::Go => vec![Tool::Go],
        Language::Rust => vec![Tool::Cargo, Tool::WasmTarget],
        Language::Shell => Vec::new(),
    }
}

/// The toolchains one service needs.
pub fn tools_needed_by(s: &Service) -> Vec<Tool> {
    tools_of(s, language(s))
}

/// Every toolchain the services of `eco` need (what to probe before planning).
pub fn tools_needed(eco: &Ecosystem) -> std::collections::BTreeSet<Tool> {
    eco.services
        .values()
        .flat_map(|s| tools_of(s, language(s)))
        .collect()
}

/// A toolchain a service needs, and its state on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct ToolNeed {
    /// The tool.
    pub tool: Tool,
    /// Present, installed by pactown, to be installed, or missing.
    #[serde(flatten)]
    pub status: ToolStatus,
}

/// The environment of REFERENCE.md §2: the service's own address, each dependency's URL, host
/// and port (and its `env_var`), then the service's `env:`, which may override all of them.
fn service_env(
    eco: &Ecosystem,
    s: &Service,
    port: Option<u16>,
    ports: &IndexMap<String, Option<u16>>,
) -> IndexMap<String, String> {
    let mut env = IndexMap::new();
    env.insert("SERVICE_NAME".to_string(), s.name.clone());
    if let Some(p) = port {
        env.insert("SERVICE_URL".to_string(), format!("http://127.0.0.1:{p}"));
    }
    for d in &s.depends_on {
        let dep_port = ports.get(&d.name).copied().flatten();
        let declared = eco.services.get(&d.name).and_then(|t| match t.port {
            crate::spec::PortSpec::Fixed(p) => Some(p),
            _ => None,
        });
        let Some(url) = dependency_url(d.endpoint.as_deref(), dep_port, declared) else {
            continue;
        };
        let prefix = env_prefix(&d.name);
        let (host, port) = host_port(&url);
        env.insert(format!("{prefix}_URL"), url.clone());
        env.insert(format!("{prefix}_HOST"), host);
        if let Some(p) = port {
            env.insert(format!("{prefix}_PORT"), p.to_string());
        }
        if let Some(var) = &d.env_var {
            env.insert(var.clone(), url);
        }
    }
    for (k, v) in &s.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// The URL a dependent uses. An `endpoint` on loopback at the dependency's declared port (or
/// with no port) is rewritten to its stable address, keeping the path, so a moved port never
/// breaks it; any other endpoint (an external service) is used as written.
pub fn dependency_url(
    endpoint: Option<&str>,
    stable: Option<u16>,
    declared: Option<u16>,
) -> Option<String> {
    let Some(ep) = endpoint else {
        return stable.map(|p| format!("http://127.0.0.1:{p}"));
    };
    let Some(stable) = stable else {
        return Some(ep.to_string());
    };
    let Some((_, rest)) = ep.split_once("://") else {
        return Some(ep.to_string());
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()),
        None => (authority, None),
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]");
    if loopback && (port.is_none() || port == declared || port == Some(stable)) {
        Some(format!(
            "http://127.0.0.1:{stable}{}",
            &rest[authority_end..]
        ))
    } else {
        Some(ep.to_string())
    }
}

fn host_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
            (h.to_string(), p.parse().ok())
        }
        _ => {
            let default = if url.starts_with("https://") { 443 } else { 80 };
            (authority.to_string(), Some(default))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            dependency_url(None, Some(9000), None).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        // the declared port moved to 9001: the endpoint follows, keeping its path
        assert_eq!(
            dependency_url(Some("http://localhost:8003/api"), Some(9001), Some(8003)).as_deref(),
            Some("http://127.0.0.1:9001/api")
        );
        assert_eq!(
            dependency_url(Some("https://db.example.com"), Some(9001), Some(8003)).as_deref(),
            Some("https://db.example.com")
        );
    }

    #[test]
    fn secrets() {
        assert!(is_secret_name("OPENAI_API_KEY"));
        assert!(is_secret_name("db_password"));
        assert!(!is_secret_name("DATABASE_URL"));
    }

    #[test]
    fn state_dirs() {
        assert_eq!(
            state_dir(Path::new("x/saas.pactown.yaml")),
            PathBuf::from("x/.pactown/saas")
        );
    }
}
