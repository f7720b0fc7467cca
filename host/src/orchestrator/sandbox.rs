//! The policy of a native service's sandbox, made from its plan and this machine: what it may
//! read (system directories, the toolchains on `PATH`, its own environment), write (its sandbox
//! dir, and what `dirs:` grants), bind (its replica's port) and connect to (its dependencies and
//! its proxy); its cgroup limits; its user.

use std::path::{Component, Path, PathBuf};

use pactown_runtime::native::cgroup::CgroupLimits;
use pactown_runtime::native::sandbox::{FsRules, NetRules, SandboxPolicy, probe};

use crate::build;
use crate::plan::{Plan, ServicePlan};

/// System directories every native service may read and execute.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
];

/// The parts of `/etc` programs need; `/etc/shadow`, `/etc/sudoers`, `/etc/ssh` are not here.
const ETC: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/passwd",
    "/etc/group",
    "/etc/os-release",
    "/etc/alternatives",
    "/etc/python3",
    "/etc/xdg",
];

/// Kernel and device files: read-only, except the sinks.
const PROC_DEV: &[&str] = &[
    "/proc",
    "/sys",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/dev/full",
];
const DEV_WRITE: &[&str] = &["/dev/null", "/dev/tty"];

/// Version managers whose whole root a tool on `PATH` needs (a pyenv shim runs pyenv, which
/// reads its versions).
const TOOL_ROOTS: &[&str] = &[
    ".pyenv", ".nvm", ".rbenv", ".asdf", ".volta", ".bun", ".deno", ".rustup",
];

/// The static part of a native service's sandbox; each replica adds its port and cgroup.
#[derive(Debug, Clone)]
pub struct NativeSandbox {
    /// The policy without the replica's port.
    pub policy: SandboxPolicy,
    /// cgroup limits (when this machine can give them).
    pub cgroup: Option<CgroupLimits>,
    /// The cgroup scope (`pactown/<scope>/<service>.<replica>`).
    pub scope: String,
}

/// Make the sandbox of a native service, or `None` when it runs unconfined.
pub fn native_sandbox(
    plan: &Plan,
    sp: &ServicePlan,
    prepared: &build::Prepared,
    proxy: Option<u16>,
    path_var: Option<&str>,
) -> Option<NativeSandbox> {
    if sp.sandbox.level == crate::plan::SandboxLevel::None {
        return None;
    }
    let k = probe();
    let layer_on = |name: &str| sp.sandbox.layers.iter().any(|l| l.name == name && l.on);
    let mut read: Vec<PathBuf> = SYSTEM_DIRS
        .iter()
        .chain(ETC)
        .chain(PROC_DEV)
        .map(PathBuf::from)
        .collect();
    for dir in path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let real = std::fs::canonicalize(&dir).unwrap_or(dir);
        if let Some(root) = tool_root(&real) {
            read.push(root);
        }
        if real.ends_with(".cargo/bin")
            && let Some(home) = real.parent().and_then(Path::parent)
        {
            read.push(home.join(".rustup"));
        }
        read.push(real);
    }
    for env in &prepared.read_only {
        read.push(env.clone());
        // A venv points at its interpreter's installation.
        if let Ok(cfg) = std::fs::read_to_string(env.join("pyvenv.cfg"))
            && let Some(home) = cfg.lines().find_map(|l| l.strip_prefix("home = "))
        {
            let home =
                std::fs::canonicalize(home.trim()).unwrap_or_else(|_| PathBuf::from(home.trim()));
            read.push(
                tool_root(&home)
                    .unwrap_or_else(|| home.parent().map_or(home.clone(), Path::to_path_buf)),
            );
        }
    }
    let mut write: Vec<PathBuf> = DEV_WRITE.iter().map(PathBuf::from).collect();
    write.push(absolute(&sp.sandbox.dir));
    for d in &sp.dirs {
        if d.write {
            write.push(absolute(&d.host))
        } else {
            read.push(absolute(&d.host))
        }
    }
    read.sort();
    read.dedup();
    let connect: Vec<u16> = sp
        .depends_on
        .iter()
        .filter_map(|d| plan.services.get(d).and_then(|s| s.port))
        .chain(proxy)
        .collect();
    let policy = SandboxPolicy {
        cgroups: Vec::new(),
        open_files: Some(sp.limits.open_files),
        data_bytes: (!k.cgroup_v1).then_some(sp.limits.memory),
        more_processes: (!k.cgroup_v1 && !k.root).then_some(sp.limits.processes),
        address_space: None,
        fs: layer_on("landlock-fs").then_some(FsRules { read, write }),
        net: layer_on("landlock-net").then_some(NetRules {
            bind: Vec::new(),
            connect,
        }),
        seccomp: layer_on("seccomp"),
        no_new_privs: true,
        user: sp.sandbox.user.filter(|_| k.root),
    };
    let cgroup = k.cgroup_v1.then_some(CgroupLimits {
        memory: Some(sp.limits.memory),
        pids: Some(sp.limits.processes),
        cpu: sp.limits.cpu,
    });
    let scope = crate::build::cache::digest([std::path::absolute(&plan.state_dir)
        .unwrap_or_default()
        .as_os_str()
        .as_encoded_bytes()])[..12]
        .to_string();
    Some(NativeSandbox {
        policy,
        cgroup,
        scope,
    })
}

/// `/root/.pyenv/shims` → `/root/.pyenv`.
fn tool_root(path: &Path) -> Option<PathBuf> {
    let mut root = PathBuf::new();
    for c in path.components() {
        root.push(c.as_os_str());
        if let Component::Normal(n) = c
            && TOOL_ROOTS.iter().any(|t| n == *t)
        {
            return Some(root);
        }
    }
    None
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_roots() {
        assert_eq!(
            tool_root(Path::new("/root/.pyenv/shims")),
            Some(PathBuf::from("/root/.pyenv"))
        );
        assert_eq!(
            tool_root(Path::new("/home/a/.nvm/versions/node/v20/bin")),
            Some(PathBuf::from("/home/a/.nvm"))
        );
        assert_eq!(tool_root(Path::new("/usr/bin")), None);
    }
}
