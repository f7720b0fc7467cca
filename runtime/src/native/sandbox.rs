//! The confinement of a native service, applied by the shim in the forked child just before
//! `execve`, in this order:
//!
//! 1. cgroups (v1 when root): the child joins the memory, pids and cpu groups pactown prepared;
//! 2. rlimits, always: no core dumps, open files, and the data segment when no memory cgroup;
//! 3. Landlock filesystem: read/execute on system and toolchain directories and the service's
//!    own environment, read/write only on its sandbox dir (where `HOME` and `TMPDIR` point);
//! 4. Landlock TCP: bind only its own port, connect only to its dependencies and its proxy;
//! 5. seccomp: a deny-list (namespaces, mount, ptrace, bpf, keyrings, modules, kexec, ... and
//!    UDP and raw sockets, which Landlock does not cover here), answered with `EPERM`;
//! 6. `no_new_privs`; and, when asked and root, a dedicated user with no supplementary groups.
//!
//! The policy travels from pactown to the shim as JSON on its command line, so what a service
//! runs under is visible in `ps` and reproducible by hand. [`probe`] tells, before anything
//! runs, which layers this kernel can give; a layer it cannot give is left out of the policy
//! and reported, never silently skipped.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Landlock filesystem rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FsRules {
    /// Read and execute.
    pub read: Vec<PathBuf>,
    /// Read, write, create, remove.
    pub write: Vec<PathBuf>,
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

/// What to apply before exec. Every field is a layer; `Default` applies only the always-on
/// basics (no core dumps).
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
    /// Landlock filesystem rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsRules>,
    /// Landlock TCP rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetRules>,
    /// The seccomp deny-list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seccomp: bool,
    /// `PR_SET_NO_NEW_PRIVS`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privs: bool,
    /// Run as this uid/gid, with no supplementary groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<(u32, u32)>,
}

impl SandboxPolicy {
    /// Apply in the forked child. Runs in a single-threaded process between fork and exec; any
    /// layer that was asked for and cannot be applied is an error (the service does not start).
    pub fn apply_in_child(&self) -> io::Result<()> {
        for procs in &self.cgroups {
            std::fs::write(procs, b"0")
                .map_err(|e| with_context(e, &format!("join cgroup {}", procs.display())))?;
        }
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
            set_rlimit(libc::RLIMIT_NPROC, processes_of_this_user() + n)?;
        }
        if self.no_new_privs || self.fs.is_some() || self.net.is_some() || self.seccomp {
            // SAFETY: prctl on our own process.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if self.fs.is_some() || self.net.is_some() {
            self.landlock()
                .map_err(|e| io::Error::other(format!("landlock: {e}")))?;
        }
        if self.seccomp {
            seccomp::install().map_err(|e| io::Error::other(format!("seccomp: {e}")))?;
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
        Ok(())
    }

    fn landlock(&self) -> Result<(), landlock::RulesetError> {
        use landlock::{
            ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset,
            RulesetAttr, RulesetCreatedAttr, path_beneath_rules,
        };
        let abi = ABI::V4;
        let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        if self.fs.is_some() {
            ruleset = ruleset.handle_access(AccessFs::from_all(ABI::V3))?;
        }
        if self.net.is_some() {
            ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
        }
        let mut created = ruleset.create()?;
        if let Some(fs) = &self.fs {
            // Missing paths are skipped: a toolchain dir that does not exist grants nothing.
            created = created
                .set_compatibility(CompatLevel::BestEffort)
                .add_rules(path_beneath_rules(&fs.read, AccessFs::from_read(ABI::V3)))?
                .add_rules(path_beneath_rules(&fs.write, AccessFs::from_all(ABI::V3)))?;
        }
        if let Some(net) = &self.net {
            for p in &net.bind {
                created = created.add_rule(NetPort::new(*p, AccessNet::BindTcp))?;
            }
            for p in &net.connect {
                created = created.add_rule(NetPort::new(*p, AccessNet::ConnectTcp))?;
            }
        }
        created.restrict_self()?;
        Ok(())
    }
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

fn with_context(e: io::Error, what: &str) -> io::Error {
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
    /// seccomp filters.
    pub seccomp: bool,
    /// cgroup v1 memory/pids/cpu controllers we can write (root).
    pub cgroup_v1: bool,
    /// Running as root (dedicated users possible).
    pub root: bool,
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
        // SAFETY: asks for our own seccomp mode.
        let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
        // SAFETY: no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let cgroup_v1 = root
            && ["memory", "pids", "cpu"].iter().all(|c| {
                let p = std::path::Path::new("/sys/fs/cgroup").join(c);
                p.join("cgroup.procs").exists()
            });
        KernelSupport {
            landlock_abi: (abi > 0).then_some(abi as u32),
            seccomp,
            cgroup_v1,
            root,
        }
    })
}

mod seccomp {
    //! The deny-list. Everything listed fails with `EPERM` (`clone3` with `ENOSYS`, so libc
    //! falls back to `clone`, whose flags we can inspect).

    use std::collections::BTreeMap;

    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    /// Syscalls no service needs and every escape uses.
    const DENIED: &[i64] = &[
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
    ];

    fn cond(
        arg: u8,
        op: SeccompCmpOp,
        value: u64,
    ) -> Result<SeccompCondition, seccompiler::BackendError> {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
    }

    fn arch() -> TargetArch {
        if cfg!(target_arch = "aarch64") {
            TargetArch::aarch64
        } else {
            TargetArch::x86_64
        }
    }

    pub fn install() -> Result<(), Box<dyn std::error::Error>> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|s| (*s, Vec::new())).collect();
        // clone with any namespace flag: one rule per flag, as (arg & flag) == flag.
        let mut clone_rules = Vec::new();
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
        ] {
            clone_rules.push(SeccompRule::new(vec![cond(
                0,
                SeccompCmpOp::MaskedEq(flag as u64),
                flag as u64,
            )?])?);
        }
        rules.insert(libc::SYS_clone, clone_rules);
        // UDP and raw/packet sockets: socket(AF_INET[6], SOCK_DGRAM|SOCK_RAW, …), socket(AF_PACKET, …).
        let mut socket_rules = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            for kind in [libc::SOCK_DGRAM, libc::SOCK_RAW] {
                socket_rules.push(SeccompRule::new(vec![
                    cond(0, SeccompCmpOp::Eq, family as u64)?,
                    cond(1, SeccompCmpOp::MaskedEq(0xf), kind as u64)?,
                ])?);
            }
        }
        socket_rules.push(SeccompRule::new(vec![cond(
            0,
            SeccompCmpOp::Eq,
            libc::AF_PACKET as u64,
        )?])?);
        rules.insert(libc::SYS_socket, socket_rules);
        let deny = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch(),
        )?;
        let mut clone3 = BTreeMap::new();
        clone3.insert(libc::SYS_clone3, Vec::new());
        let fallback = SeccompFilter::new(
            clone3,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch(),
        )?;
        for filter in [deny, fallback] {
            let program: seccompiler::BpfProgram = filter.try_into()?;
            seccompiler::apply_filter(&program)?;
        }
        Ok(())
    }
}
