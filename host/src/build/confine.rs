//! The confinement of every native process pactown starts — a service, from its plan, or a
//! build step — as a [`SandboxPolicy`] for the shim: what it may read (system directories, the
//! toolchains on `PATH`, the environments it uses), write (its sandbox dir and what `dirs:`
//! grants; for a build, the cache entry it builds), bind and connect to, its filesystem view,
//! its user, its cgroup limits.

use std::path::{Component, Path, PathBuf};

use pactown_runtime::native::cgroup::CgroupLimits;
use pactown_runtime::native::sandbox::{
    FsRules, NetRules, RootFs, SandboxPolicy, SeccompProfile, SynthFile, probe,
};

use crate::plan::{LayerName, Plan, ServicePlan};

/// System directories every native process may read and execute.
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
    "/etc/lsb-release",
    "/etc/debian_version",
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

/// The cgroup scope of an ecosystem: one per state dir, so a later run finds what an earlier
/// one left behind.
pub fn cgroup_scope(state_dir: &Path) -> String {
    crate::build::cache::digest([std::path::absolute(state_dir)
        .unwrap_or_default()
        .as_os_str()
        .as_encoded_bytes()])[..12]
        .to_string()
}

/// What every native process may read: the system, the parts of `/etc` programs need, kernel
/// and device files, and the toolchains on `path_var` (with the roots of version managers).
fn base_read(path_var: Option<&str>) -> Vec<PathBuf> {
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
    read
}

/// The installation the programs of a `bin` directory belong to, which everything running them
/// reads (an interpreter's standard library, a toolchain's own files): a version manager's root
/// (`~/.pyenv/versions/3.12.1/bin` → `~/.pyenv`), else the directory above (`/opt/node-24/bin`
/// → `/opt/node-24`, `/usr/bin` → `/usr`). For an environment, asked of the interpreter pactown
/// chose, never of what the environment says of itself: a package's build code can rewrite a
/// venv's `pyvenv.cfg` while the venv is built.
pub fn installation(bin: &Path) -> PathBuf {
    tool_root(bin).unwrap_or_else(|| bin.parent().unwrap_or(bin).to_path_buf())
}

/// The filesystem view of a sandbox: the same paths, minus what the root provides itself.
fn root_fs(read: &[PathBuf], write: &[PathBuf], tmp_bytes: u64) -> RootFs {
    // `/proc` and `/dev` are the sandbox's own; `/sys` is bound read-only like the rest.
    let provided =
        |p: &PathBuf| p.starts_with("/proc") || p.starts_with("/dev") || p == Path::new("/tmp");
    RootFs {
        read: read.iter().filter(|p| !provided(p)).cloned().collect(),
        write: write.iter().filter(|p| !provided(p)).cloned().collect(),
        overlays: Vec::new(),
        files: Vec::new(),
        tmp_bytes,
        untrusted: Vec::new(),
    }
}

/// `/etc/passwd` and `/etc/group` that name the sandbox's user (it has no entry on the host).
fn identity_files(name: &str, (uid, gid): (u32, u32), home: &Path) -> Vec<SynthFile> {
    vec![
        SynthFile {
            path: "/etc/passwd".into(),
            extend: true,
            content: format!(
                "{name}:x:{uid}:{gid}:pactown sandbox:{}:/usr/sbin/nologin\n",
                home.display()
            ),
        },
        SynthFile {
            path: "/etc/group".into(),
            extend: true,
            content: format!("{name}:x:{gid}:\n"),
        },
    ]
}

/// Make the sandbox of a native service. Unconfined (`sandbox: off`), it still gets a cgroup
/// where the machine has them: a replica is its cgroup, whatever its processes do.
pub fn service_sandbox(
    plan: &Plan,
    sp: &ServicePlan,
    prepared: &super::native::Prepared,
    proxy: Option<u16>,
    path_var: Option<&str>,
) -> NativeSandbox {
    let k = probe();
    if sp.sandbox.level == crate::plan::SandboxLevel::None {
        return NativeSandbox {
            policy: SandboxPolicy::default(),
            cgroup: k.cgroup_v1.then_some(CgroupLimits::default()),
            scope: cgroup_scope(&plan.state_dir),
        };
    }
    let layer_on = |name: LayerName| sp.sandbox.layer_on(name);
    let mut read = base_read(path_var);
    read.extend(prepared.read_only.iter().cloned());
    let mut write: Vec<PathBuf> = DEV_WRITE.iter().map(PathBuf::from).collect();
    let dir = absolute(&sp.sandbox.dir);
    write.push(dir.clone());
    for d in &sp.dirs {
        if d.write {
            write.push(absolute(&d.host))
        } else {
            read.push(absolute(&d.host))
        }
    }
    read.sort();
    read.dedup();
    // The call policy's dependencies, and its proxy (which applies the rest of the policy).
    let connect: Vec<u16> = sp
        .calls
        .dependency_ports()
        .into_iter()
        .chain(proxy)
        .collect();
    // Every decision here is the plan's (its layers); the kernel is asked nothing again.
    let user = sp.sandbox.user.filter(|_| layer_on(LayerName::User));
    let cgroups = layer_on(LayerName::Cgroup);
    if layer_on(LayerName::Namespaces) {
        // Its own /tmp and /dev/shm (private tmpfs, bounded by its memory).
        write.extend(["/tmp", "/dev/shm"].map(PathBuf::from));
    }
    // Granted paths are looked up through no link these may hold: as binds into its own root,
    // or, without one, as its Landlock rules' paths (the host's).
    let untrusted = plan.writable_by_services();
    let isolate = layer_on(LayerName::Namespaces).then(|| {
        let mut root = root_fs(&read, &write, sp.limits.memory);
        root.overlays = prepared.overlays.clone();
        root.untrusted = untrusted.clone();
        if let Some(id) = user {
            root.files = identity_files(
                &format!("pactown-{}", sp.name),
                id,
                &dir.join(super::native::HOME_DIR),
            );
        }
        root
    });
    let policy = SandboxPolicy {
        cgroups: Vec::new(),
        open_files: Some(sp.limits.open_files),
        data_bytes: (!cgroups).then_some(sp.limits.memory),
        more_processes: (!cgroups && (!k.root || user.is_some())).then_some(sp.limits.processes),
        address_space: None,
        user_namespace: isolate.is_some() && k.user_namespace,
        isolate,
        fs: layer_on(LayerName::LandlockFs).then_some(FsRules {
            read,
            write,
            untrusted: if layer_on(LayerName::Namespaces) {
                Vec::new()
            } else {
                untrusted
            },
        }),
        net: layer_on(LayerName::LandlockNet).then_some(NetRules {
            bind: Vec::new(),
            connect,
        }),
        scopes: layer_on(LayerName::LandlockScopes),
        seccomp: layer_on(LayerName::Seccomp).then_some(SeccompProfile {
            udp: false,
            watch_connect: true,
            no_unix: !layer_on(LayerName::Namespaces),
        }),
        no_new_privs: true,
        drop_caps: true,
        user,
    };
    let cgroup = cgroups.then_some(CgroupLimits {
        memory: Some(sp.limits.memory),
        pids: Some(sp.limits.processes),
        cpu: sp.limits.cpu,
    });
    NativeSandbox {
        policy,
        cgroup,
        scope: cgroup_scope(&plan.state_dir),
    }
}

/// Ports a build may connect to while it fetches: HTTPS, HTTP, DNS over TCP, and the ports of
/// any package index or proxy the environment names.
pub fn fetch_ports(env: &[(String, String)]) -> Vec<u16> {
    let mut ports = vec![443, 80, 53];
    for (k, v) in env {
        let k = k.to_ascii_uppercase();
        let relevant = k.ends_with("_PROXY")
            || k.contains("INDEX")
            || k.ends_with("REGISTRY")
            || k == "GOPROXY";
        if !relevant {
            continue;
        }
        for url in v.split([',', ' ', '|']) {
            if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
                let authority = rest.split('/').next().unwrap_or_default();
                let authority = authority.rsplit('@').next().unwrap_or_default();
                if let Some(p) = authority
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                {
                    ports.push(p);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// What a build step may touch.
#[derive(Debug, Clone, Default)]
pub struct StepAccess {
    /// Read (beyond the system and the toolchains on `PATH`).
    pub read: Vec<PathBuf>,
    /// Read and write: the cache entry it builds, the download caches it fills.
    pub write: Vec<PathBuf>,
    /// Fetching: it may connect to package indexes (and resolve names).
    pub network: bool,
}

/// The policy of a build step: the same layers as a service, as the build user, writing only
/// what `access` grants, with the network only while it fetches.
pub fn build_policy(access: &StepAccess, env: &[(String, String)]) -> SandboxPolicy {
    let k = probe();
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let mut read = base_read(path_var);
    read.extend(access.read.iter().cloned());
    read.sort();
    read.dedup();
    let mut write: Vec<PathBuf> = DEV_WRITE.iter().map(PathBuf::from).collect();
    write.extend(access.write.iter().map(|p| absolute(p)));
    let user = k.root.then_some(crate::plan::BUILD_UID);
    let abi = k.landlock_abi.unwrap_or(0);
    let isolate = k.namespaces.then(|| {
        let mut root = root_fs(&read, &write, 1 << 30);
        if let Some(id) = user {
            let home = env
                .iter()
                .rev()
                .find(|(k, _)| k == "HOME")
                .map_or_else(|| PathBuf::from("/tmp"), |(_, v)| PathBuf::from(v));
            root.files = identity_files("pactown-build", id, &home);
        }
        root
    });
    SandboxPolicy {
        cgroups: Vec::new(),
        open_files: Some(crate::plan::DEFAULT_OPEN_FILES),
        data_bytes: None,
        more_processes: None,
        address_space: None,
        user_namespace: isolate.is_some() && k.user_namespace,
        isolate,
        fs: (abi >= 1).then_some(FsRules {
            read,
            write,
            untrusted: Vec::new(),
        }),
        net: (abi >= 4).then(|| NetRules {
            bind: Vec::new(),
            connect: if access.network {
                fetch_ports(env)
            } else {
                Vec::new()
            },
        }),
        scopes: abi >= 6,
        seccomp: k.seccomp.then_some(SeccompProfile {
            udp: access.network,
            watch_connect: false,
            no_unix: !k.namespaces,
        }),
        no_new_privs: true,
        drop_caps: true,
        user,
    }
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

    #[test]
    fn installations() {
        for (bin, expected) in [
            ("/root/.pyenv/versions/3.12.1/bin", "/root/.pyenv"),
            ("/opt/python/bin", "/opt/python"),
            ("/usr/bin", "/usr"),
            (
                "/cache/npm/abc/node_modules/.bin",
                "/cache/npm/abc/node_modules",
            ),
        ] {
            assert_eq!(installation(Path::new(bin)), PathBuf::from(expected));
        }
    }

    #[test]
    fn fetch_ports_follow_the_configured_indexes() {
        let env = vec![
            (
                "PIP_INDEX_URL".to_string(),
                "http://user:pw@pypi.local:3141/simple".to_string(),
            ),
            ("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string()),
            (
                "UV_DEFAULT_INDEX".to_string(),
                "http://127.0.0.1:8081/simple".to_string(),
            ),
            (
                "UV_INDEX".to_string(),
                "a=http://a.local:8082/simple b=https://b.local/simple".to_string(),
            ),
        ];
        assert_eq!(fetch_ports(&env), vec![53, 80, 443, 3128, 3141, 8081, 8082]);
    }
}
