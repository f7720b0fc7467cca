//! How a service is confined: its sandbox kind and why, the layers this machine gives it (from
//! the facts probed before planning), and the user it runs as.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::limits::LimitsPlan;
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
    pub fn layer_on(&self, name: LayerName) -> bool {
        self.layers.iter().any(|l| l.name == name && l.on)
    }
}

/// The layers a sandbox can have (their names are a contract of `plan --json` and
/// `status --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerName {
    /// wasmtime's isolation of a component.
    Wasm,
    /// A component's preopened directories.
    Filesystem,
    /// A component's virtualized sockets.
    Network,
    /// A component's memory per instance.
    Memory,
    /// A component's CPU time per request.
    Cpu,
    /// Its own session and process group, dying with pactown.
    Session,
    /// Its own PID, mount and IPC namespaces.
    Namespaces,
    /// A dedicated unprivileged user, no capabilities.
    User,
    /// Resource limits of the process.
    Rlimits,
    /// Memory, processes and CPU of the replica.
    Cgroup,
    /// Landlock on the filesystem.
    LandlockFs,
    /// Landlock on TCP.
    LandlockNet,
    /// Landlock's abstract-socket and signal scopes.
    LandlockScopes,
    /// The seccomp filter.
    Seccomp,
    /// `no_new_privs`.
    NoNewPrivs,
    /// The whole sandbox (off: `sandbox: off`).
    Sandbox,
}

impl LayerName {
    /// The name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LayerName::Wasm => "wasm",
            LayerName::Filesystem => "filesystem",
            LayerName::Network => "network",
            LayerName::Memory => "memory",
            LayerName::Cpu => "cpu",
            LayerName::Session => "session",
            LayerName::Namespaces => "namespaces",
            LayerName::User => "user",
            LayerName::Rlimits => "rlimits",
            LayerName::Cgroup => "cgroup",
            LayerName::LandlockFs => "landlock-fs",
            LayerName::LandlockNet => "landlock-net",
            LayerName::LandlockScopes => "landlock-scopes",
            LayerName::Seccomp => "seccomp",
            LayerName::NoNewPrivs => "no-new-privs",
            LayerName::Sandbox => "sandbox",
        }
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
    /// Which layer.
    pub name: LayerName,
    /// Whether it applies.
    pub on: bool,
    /// What it does, or why it is off.
    pub detail: String,
}

pub(super) fn layer(name: LayerName, on: bool, detail: impl Into<String>) -> Layer {
    Layer {
        name,
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
    if kind == RuntimeKind::Builtin {
        return (
            SandboxLevel::Full,
            vec![layer(
                LayerName::Network,
                true,
                "in-process, pactown's own code: it calls only its dependencies",
            )],
        );
    }
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
                LayerName::Wasm,
                true,
                "wasmtime: no system calls, memory-safe isolation",
            ),
            layer(LayerName::Filesystem, true, fs),
            layer(
                LayerName::Network,
                true,
                "virtualized: its own port and its dependencies only",
            ),
            layer(LayerName::Memory, true, format!("{mib} MiB per instance")),
        ];
        if kind == RuntimeKind::WasmHttp {
            layers.push(layer(
                LayerName::Cpu,
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
                    LayerName::Session,
                    true,
                    "own session and process group; dies with pactown",
                ),
                layer(
                    LayerName::Sandbox,
                    false,
                    "`sandbox: off` in the ecosystem file",
                ),
            ],
        );
    }
    let abi = k.landlock_abi.unwrap_or(0);
    let cpu = limits
        .cpu
        .map_or("unlimited cpu".to_string(), |c| format!("cpu {c}"));
    let layers = vec![
        layer(
            LayerName::Session,
            true,
            "own session and process group; dies with pactown",
        ),
        layer(
            LayerName::Namespaces,
            k.namespaces,
            match (k.namespaces, k.user_namespace, k.root) {
                (true, false, _) => {
                    "own PID, mount and IPC namespaces: its own /proc, /tmp and /dev/shm, a read-only root with only what it needs; nothing of pactown or other services visible"
                }
                (true, true, _) => {
                    "own user (only the invoking user's uid and gid, as themselves), PID, mount and IPC namespaces: its own /proc, /tmp and /dev/shm, a read-only root with only what it needs; nothing of pactown or other services visible"
                }
                (false, _, true) => {
                    "this kernel cannot make PID and mount namespaces; it sees the host's /proc and filesystem (Landlock still confines what it opens)"
                }
                (false, _, false) => {
                    "pactown is not root and this kernel lets a user make no user namespace to mount in (as AppArmor's restrict_unprivileged_userns does); it sees the host's /proc and filesystem (Landlock still confines what it opens)"
                }
            },
        ),
        match user {
            Some((uid, gid)) if k.root => layer(
                LayerName::User,
                true,
                format!("runs as {uid}:{gid}, no supplementary groups, no capabilities"),
            ),
            _ if !k.root => layer(
                LayerName::User,
                false,
                "pactown is not root: it runs as the invoking user (no capabilities), since only root can switch users",
            ),
            _ => layer(
                LayerName::User,
                false,
                "no namespaces here: it runs as root with no capabilities (another user could not reach toolchains under a private home); set `user:` to pick one",
            ),
        },
        layer(
            LayerName::Rlimits,
            true,
            format!("{} open files, no core dumps", limits.open_files),
        ),
        if k.cgroup_v1 {
            layer(
                LayerName::Cgroup,
                true,
                format!("memory {mib} MiB, {} processes, {cpu}", limits.processes),
            )
        } else {
            layer(
                LayerName::Cgroup,
                false,
                format!(
                    "needs root (cgroup v1) or a delegated cgroup v2; memory falls back to RLIMIT_DATA {mib} MiB, processes to RLIMIT_NPROC ({} {}){}, cpu unlimited",
                    limits.processes,
                    // A user namespace counts its own processes.
                    if k.user_namespace {
                        "in its user namespace"
                    } else {
                        "more than the user runs"
                    },
                    if k.root { ", which root ignores" } else { "" }
                ),
            )
        },
        layer(
            LayerName::LandlockFs,
            abi >= 1,
            if abi >= 1 {
                "read-only system and toolchains, read-write only its sandbox dir".to_string()
            } else {
                "Landlock is not enabled in this kernel".to_string()
            },
        ),
        layer(
            LayerName::LandlockNet,
            abi >= 4,
            if abi >= 4 {
                "bind only its own port; connect only to its dependencies and its proxy".to_string()
            } else {
                format!("needs Landlock ABI 4, this kernel has {abi}")
            },
        ),
        layer(
            LayerName::LandlockScopes,
            abi >= 6,
            if abi >= 6 {
                "no abstract unix socket and no signal outside its sandbox".to_string()
            } else {
                format!("needs Landlock ABI 6, this kernel has {abi}")
            },
        ),
        layer(
            LayerName::Seccomp,
            k.seccomp,
            if !k.seccomp {
                "seccomp with user notifications is not available".to_string()
            } else {
                let sockets = if k.namespaces {
                    "unix, TCP (no MPTCP) and netlink route only"
                } else {
                    "TCP (no MPTCP) and netlink route only, no unix socket (without a mount namespace the user's own, a session bus or an agent, would be in reach; socketpair stays; not logged: glibc tries one on every lookup)"
                };
                format!(
                    "sockets: {sockets}; io_uring, mknod, clocks, hostname, syslog, namespaces, mount, ptrace, bpf, keys, modules denied; each denial and refused connect logged"
                )
            },
        ),
        layer(
            LayerName::NoNewPrivs,
            true,
            "no privilege gain through exec",
        ),
    ];
    let level = if layers.iter().all(|l| l.on) {
        SandboxLevel::Full
    } else {
        SandboxLevel::Partial
    };
    (level, layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_on_the_wire() {
        for name in [
            LayerName::Wasm,
            LayerName::Filesystem,
            LayerName::Network,
            LayerName::Memory,
            LayerName::Cpu,
            LayerName::Session,
            LayerName::Namespaces,
            LayerName::User,
            LayerName::Rlimits,
            LayerName::Cgroup,
            LayerName::LandlockFs,
            LayerName::LandlockNet,
            LayerName::LandlockScopes,
            LayerName::Seccomp,
            LayerName::NoNewPrivs,
            LayerName::Sandbox,
        ] {
            let wire = serde_json::to_string(&name).unwrap();
            assert_eq!(wire, format!("\"{}\"", name.as_str()));
            assert_eq!(serde_json::from_str::<LayerName>(&wire).unwrap(), name);
        }
        let kind = serde_json::to_string(&RuntimeKind::WasmHttp).unwrap();
        assert_eq!(kind, "\"wasm-http\"");
        assert_eq!(
            serde_json::from_str::<RuntimeKind>(&kind).unwrap(),
            RuntimeKind::WasmHttp
        );
    }
}
