//! How a service is confined: its sandbox kind and why, the layers this machine gives it (from
//! the facts probed before planning), and the user it runs as.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::LimitsPlan;
use crate::facts::KernelSupport;
use crate::spec::{RuntimeKind, Service};

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

pub(super) fn layer(name: &str, on: bool, detail: impl Into<String>) -> Layer {
    Layer {
        name: name.into(),
        on,
        detail: detail.into(),
    }
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

/// The layers a service gets on this machine, and the level they add up to.
pub(super) fn sandbox_layers(
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
