//! The confinement of a native process, described by a [`SandboxPolicy`] and applied by the
//! shim (see [`super::shim`]) in this order:
//!
//! 1. cgroups (v1 when root): the shim joins the memory, pids and cpu groups pactown prepared,
//!    before anything forks, so the replica's whole tree is its cgroup;
//! 2. namespaces ([`SandboxPolicy::isolate`]): its own PID, mount and IPC namespaces, with the
//!    filesystem view of a [`RootFs`] (its own `/proc`, `/tmp`, `/dev/shm`; nothing of pactown
//!    or of other services);
//! 3. then, in the service's process just before `execve`: rlimits; the capability sets emptied
//!    (bounding, inheritable, ambient) and a dedicated unprivileged user with no supplementary
//!    groups; `no_new_privs`; Landlock (filesystem, TCP ports, abstract-socket and signal
//!    scopes); seccomp (see [`super::seccomp`]).
//!
//! [`probe`] tells, before anything runs, which layers this kernel and these privileges can
//! give; a layer it cannot give is left out of the policy and reported, never silently skipped.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::rootfs::{Overlay, RootFs, SynthFile};
pub use super::seccomp::SeccompProfile;

/// Landlock filesystem rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FsRules {
    /// Read and execute.
    pub read: Vec<PathBuf>,
    /// Read, write, create, remove.
    pub write: Vec<PathBuf>,
    /// Directories sandboxed services can write, where the rules' paths are the host's own (no
    /// root of the sandbox's to bind them into): a link below one of them is not followed on the
    /// way to a rule's path, since a service may have made it; the sandbox is refused instead
    /// (see [`crate::links`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrusted: Vec<PathBuf>,
}

/// Landlock TCP rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetRules {
    /// Ports it may bind.
    pub bind: Vec<u16>,
    /// Ports it may connect to.
    pub connect: Vec<u16>,
}

/// What to apply. Every field is a layer; `Default` applies only the always-on basics (no core
/// dumps).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SandboxPolicy {
    /// `cgroup.procs` files to join (one per controller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<PathBuf>,
    /// `RLIMIT_NOFILE`: open files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// `RLIMIT_DATA`: the memory limit when no memory cgroup can hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<u64>,
    /// Without a pids cgroup: allow this many processes beyond those the user already runs
    /// (`RLIMIT_NPROC` counts every process of the user; root is not limited by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_processes: Option<u64>,
    /// `RLIMIT_AS`, only when asked for explicitly (it breaks runtimes that reserve address space).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<u64>,
    /// Its own PID, mount and IPC namespaces, seeing this filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolate: Option<RootFs>,
    /// Make those namespaces inside a user namespace of its own, where only the user's uid and
    /// gid exist (each mapped to itself): how pactown run by a user, not root, gets them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user_namespace: bool,
    /// Landlock filesystem rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsRules>,
    /// Landlock TCP rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetRules>,
    /// Landlock scopes: no abstract unix socket and no signal outside the sandbox.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scopes: bool,
    /// The seccomp filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompProfile>,
    /// `PR_SET_NO_NEW_PRIVS`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privs: bool,
    /// Empty every capability set before `execve`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_caps: bool,
    /// Run as this uid/gid, with no supplementary groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<(u32, u32)>,
}

impl SandboxPolicy {
    /// Apply the per-process layers in the service's process, between fork and exec. Returns
    /// the seccomp notification listener, for the supervisor. Any layer that was asked for
    /// and cannot be applied is an error (the service does not start).
    pub fn apply_in_child(&self) -> io::Result<Option<OwnedFd>> {
        set_rlimit(libc::RLIMIT_CORE, 0)?;
        if let Some(n) = self.open_files {
            set_rlimit(libc::RLIMIT_NOFILE, n)?;
        }
        if let Some(n) = self.data_bytes {
            set_rlimit(libc::RLIMIT_DATA, n)?;
        }
        if let Some(n) = self.address_space {
            set_rlimit(libc::RLIMIT_AS, n)?;
        }
        if let Some(n) = self.more_processes {
            let base = if self.user.is_some() {
                0
            } else {
                processes_of_this_user()
            };
            set_rlimit(libc::RLIMIT_NPROC, base + n)?;
        }
        if self.drop_caps {
            // The bounding set first: emptying it needs CAP_SETPCAP, which goes with the others.
            // Started by a user, the process has no capability to lose and cannot empty it, nor
            // need to: `no_new_privs` (always set with `drop_caps`) keeps an execve from granting
            // any (setuid bits and file capabilities are ignored).
            let clear = |set| {
                caps::clear(None, set)
                    .map_err(|e| io::Error::other(format!("drop capabilities: {e}")))
            };
            if caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
                .map_err(|e| io::Error::other(format!("drop capabilities: {e}")))?
            {
                clear(caps::CapSet::Bounding)?;
            }
            clear(caps::CapSet::Ambient)?;
            clear(caps::CapSet::Inheritable)?;
        }
        if let Some((uid, gid)) = self.user {
            // SAFETY: plain credential syscalls on our own process; no supplementary groups kept.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(with_context(io::Error::last_os_error(), "switch user"));
                }
            }
        }
        if self.drop_caps {
            caps::clear(None, caps::CapSet::Permitted)
                .map_err(|e| io::Error::other(format!("drop capabilities: {e}")))?;
        }
        let nnp = self.no_new_privs
            || self.drop_caps
            || self.fs.is_some()
            || self.net.is_some()
            || self.scopes
            || self.seccomp.is_some();
        if nnp {
            // SAFETY: prctl on our own process.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if self.fs.is_some() || self.net.is_some() || self.scopes {
            self.landlock()?;
        }
        match self.seccomp {
            Some(profile) => super::seccomp::install(profile)
                .map(Some)
                .map_err(|e| io::Error::other(format!("seccomp: {e}"))),
            None => Ok(None),
        }
    }

    fn landlock(&self) -> io::Result<()> {
        use landlock::{
            ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath,
            Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, path_beneath_rules,
        };
        let err = |e: landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
        let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        if self.fs.is_some() {
            ruleset = ruleset
                .handle_access(AccessFs::from_all(ABI::V3))
                .map_err(err)?;
        }
        if self.net.is_some() {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(ABI::V4))
                .map_err(err)?;
        }
        if self.scopes {
            ruleset = ruleset.scope(Scope::from_all(ABI::V6)).map_err(err)?;
        }
        let mut created = ruleset.create().map_err(err)?;
        if let Some(fs) = &self.fs {
            // Missing paths are skipped: a toolchain dir that does not exist grants nothing.
            created = created.set_compatibility(CompatLevel::BestEffort);
            let lookup = crate::links::Lookup::new(Path::new("/"), &fs.untrusted);
            for (paths, access) in [
                (&fs.read, AccessFs::from_read(ABI::V3)),
                (&fs.write, AccessFs::from_all(ABI::V3)),
            ] {
                if fs.untrusted.is_empty() {
                    created = created
                        .add_rules(path_beneath_rules(paths, access))
                        .map_err(err)?;
                    continue;
                }
                for p in paths {
                    let Some((fd, dir)) = granted(&lookup, p)? else {
                        continue;
                    };
                    let access = if dir {
                        access
                    } else {
                        access & AccessFs::from_file(ABI::V3)
                    };
                    created = created
                        .add_rule(PathBeneath::new(fd, access))
                        .map_err(err)?;
                }
            }
        }
        if let Some(net) = &self.net {
            for p in &net.bind {
                created = created
                    .add_rule(NetPort::new(*p, AccessNet::BindTcp))
                    .map_err(err)?;
            }
            for p in &net.connect {
                created = created
                    .add_rule(NetPort::new(*p, AccessNet::ConnectTcp))
                    .map_err(err)?;
            }
        }
        created.restrict_self().map_err(err)?;
        Ok(())
    }
}

/// A rule's path as a descriptor, found through no link a service may have made (the refusal
/// names it), and whether it is a directory; `None` when it cannot be opened (missing, or not
/// the user's to look into), as a rule of a path is skipped then.
fn granted(lookup: &crate::links::Lookup, p: &Path) -> io::Result<Option<(OwnedFd, bool)>> {
    let fd = match lookup
        .resolve(p)
        .and_then(|real| crate::links::open_beneath(&real))
    {
        Ok(fd) => fd,
        Err(e) if crate::links::refused(&e) => return Err(with_context(e, "landlock")),
        Err(_) => return Ok(None),
    };
    let dir = rustix::fs::fstat(&fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
    });
    Ok(Some((fd, dir)))
}

/// Processes (and threads) the real user runs now, from `/proc`.
fn processes_of_this_user() -> u64 {
    // SAFETY: no preconditions.
    let uid = unsafe { libc::getuid() }.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                == Some(uid.as_str())
        })
        .map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1)
        })
        .sum()
}

pub(super) fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit on our own process with a valid struct.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What the running kernel (and our privileges) can give.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelSupport {
    /// Landlock ABI version, when Landlock is enabled.
    pub landlock_abi: Option<u32>,
    /// seccomp filters with user notifications.
    pub seccomp: bool,
    /// cgroup v1 memory/pids/cpu controllers we can write (root).
    pub cgroup_v1: bool,
    /// Running as root (dedicated users possible).
    pub root: bool,
    /// PID, mount and IPC namespaces can be made: by root, or by a user inside a user
    /// namespace of its own ([`KernelSupport::user_namespace`]).
    pub namespaces: bool,
    /// The namespaces are made inside a user namespace (pactown is not root, and this kernel
    /// lets a user make one and mount in it: some distributions forbid it).
    #[serde(default)]
    pub user_namespace: bool,
}

/// Probe the kernel once.
pub fn probe() -> &'static KernelSupport {
    static SUPPORT: std::sync::OnceLock<KernelSupport> = std::sync::OnceLock::new();
    SUPPORT.get_or_init(|| {
        // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only asks.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32,
            )
        };
        // SAFETY: asks for our own seccomp mode; and whether user notifications exist.
        let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0 && {
            let mut sizes: libc::seccomp_notif_sizes = unsafe { std::mem::zeroed() };
            let r = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_GET_NOTIF_SIZES,
                    0,
                    &mut sizes as *mut libc::seccomp_notif_sizes,
                )
            };
            r == 0
        };
        // SAFETY: no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let cgroup_v1 = root
            && ["memory", "pids", "cpu"].iter().all(|c| {
                let p = std::path::Path::new("/sys/fs/cgroup").join(c);
                p.join("cgroup.procs").exists()
            });
        let namespaces = can_unshare(!root);
        KernelSupport {
            landlock_abi: (abi > 0).then_some(abi as u32),
            seccomp,
            cgroup_v1,
            root,
            namespaces,
            user_namespace: namespaces && !root,
        }
    })
}

/// Can a child make PID, mount and IPC namespaces (inside a user namespace of its own when
/// `as_user`), and mount in them what a sandbox mounts (a tmpfs, and the new namespace's `/proc`,
/// by its first process)? Tried in a forked child, which exits at once: a kernel may let a user
/// make a user namespace and give it no capability to mount with (AppArmor's
/// `restrict_unprivileged_userns`), and a host whose `/proc` is partly covered (a container's)
/// lets no namespace of a user mount another.
fn can_unshare(as_user: bool) -> bool {
    let maps = UserMaps::of_this_process();
    // SAFETY: the children make raw syscalls only (no allocation: the maps are written before
    // the fork), then `_exit`.
    match unsafe { libc::fork() } {
        -1 => false,
        0 => unsafe {
            let ok = (!as_user || maps.enter().is_ok())
                && libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    std::ptr::null(),
                ) == 0
                && match libc::fork() {
                    -1 => false,
                    0 => {
                        let r = libc::mount(
                            c"proc".as_ptr(),
                            c"/tmp".as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            c"hidepid=invisible".as_ptr().cast(),
                        );
                        libc::_exit(if r == 0 { 0 } else { 1 })
                    }
                    init => exited_ok(init),
                };
            libc::_exit(if ok { 0 } else { 1 })
        },
        pid => exited_ok(pid),
    }
}

/// Reap our child `pid`: did it exit with 0?
fn exited_ok(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// The uid and gid maps of a user namespace where only this process's user and group exist,
/// each as itself, made ahead: they are written in a forked child too, where nothing may
/// allocate.
pub(super) struct UserMaps {
    uid: String,
    gid: String,
}

impl UserMaps {
    /// The maps for this process's real uid and gid.
    pub(super) fn of_this_process() -> Self {
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            uid: format!("{uid} {uid} 1\n"),
            gid: format!("{gid} {gid} 1\n"),
        }
    }

    /// Move this (single-threaded) process into a new user namespace with these maps. It holds
    /// every capability there, and none outside: enough to make and mount its other
    /// namespaces. Supplementary groups cannot be dropped in it (`setgroups` is denied, as a
    /// user's gid map requires); the service keeps none anyway. Raw syscalls and no allocation
    /// (it runs in forked children): a failure is the step and its `errno`.
    pub(super) fn enter(&self) -> Result<(), (&'static str, io::Error)> {
        // SAFETY: unshare of our own process.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
            return Err(("user namespace", io::Error::last_os_error()));
        }
        for (file, text, step) in [
            (
                c"/proc/self/setgroups",
                "deny",
                "user namespace: deny setgroups",
            ),
            (
                c"/proc/self/uid_map",
                self.uid.as_str(),
                "user namespace: map the uid",
            ),
            (
                c"/proc/self/gid_map",
                self.gid.as_str(),
                "user namespace: map the gid",
            ),
        ] {
            // SAFETY: a valid path, and a buffer of its length.
            let written = unsafe {
                let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    -1
                } else {
                    let n = libc::write(fd, text.as_ptr().cast(), text.len());
                    libc::close(fd);
                    n
                }
            };
            if written != text.len() as isize {
                return Err((step, io::Error::last_os_error()));
            }
        }
        Ok(())
    }
}
