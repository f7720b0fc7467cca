//! The seccomp filters of a native sandbox.
//!
//! One filter holds every rule. What it refuses does not fail in the kernel: it becomes a user
//! notification (`SECCOMP_RET_USER_NOTIF`) answered by the sandbox's supervisor (see
//! [`super::notify`]), which refuses it with the right errno *and* reports it, so each denial is
//! countable in the anomaly log. `connect` is notified too, so a refused connection is logged
//! with its target (Landlock refuses it again in the kernel: the supervisor only ever narrows).
//!
//! - **Socket families are an allow-list**: `AF_UNIX` (unless the sandbox has no mount namespace
//!   to hide the user's sockets), `AF_INET`/`AF_INET6` with `SOCK_STREAM`
//!   and protocol 0 or TCP (no MPTCP, which Landlock's TCP rules do not cover, no UDP or raw),
//!   and `AF_NETLINK` with `NETLINK_ROUTE` (what `getifaddrs` needs; it cannot change anything
//!   without capabilities). A build's fetch phase may also use UDP, for DNS.
//! - **Denied calls**: namespaces and mounts, ptrace and cross-process memory, bpf, keys,
//!   modules, kexec, `io_uring_*` (it makes sockets without `socket(2)`), `mknod*`, clocks,
//!   hostname, `syslog`, `perf_event_open`, `userfaultfd`, swap, reboot, accounting, handles.
//! - `clone3` fails with `ENOSYS` (a separate filter) so libc falls back to `clone`, whose
//!   namespace flags this filter can see.
//!
//! seccompiler compiles the rules; it has no user-notification action, so the compiled program
//! uses a placeholder errno that is rewritten into `SECCOMP_RET_USER_NOTIF` afterwards.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

/// Which rules apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeccompProfile {
    /// Allow UDP sockets (a build fetching packages resolves names).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub udp: bool,
    /// Send every `connect` to the supervisor, which refuses what the policy does not allow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watch_connect: bool,
    /// Refuse `socket(AF_UNIX)` (`socketpair` stays): without a mount namespace of its own, a
    /// named socket anywhere the user can reach (a session bus, an agent, a container engine)
    /// would be open to it, and no later check can close it without a race.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_unix: bool,
}

/// Syscalls no service needs and every escape uses.
pub const DENIED: &[(i64, &str)] = &[
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_mknod, "mknod"),
    (libc::SYS_mknodat, "mknodat"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_sethostname, "sethostname"),
    (libc::SYS_setdomainname, "setdomainname"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie"),
    (libc::SYS_vhangup, "vhangup"),
];

/// Placeholder errno of rules whose action is a user notification.
const NOTIFY_MARK: u32 = 0xfeed;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const BPF_RET_K: u16 = 0x06;

/// The name of a syscall this filter refuses, for reports.
pub fn syscall_name(nr: i64) -> &'static str {
    match nr {
        libc::SYS_socket => "socket",
        libc::SYS_socketpair => "socketpair",
        libc::SYS_connect => "connect",
        libc::SYS_clone => "clone",
        _ => DENIED
            .iter()
            .find(|(n, _)| *n == nr)
            .map_or("syscall", |(_, name)| name),
    }
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, Error> {
    Ok(SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        op,
        value,
    )?)
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, Error> {
    Ok(SeccompRule::new(conds)?)
}

fn arch() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

/// Errors building or installing a filter.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The rules whose match is refused (or, for `connect`, checked) by the supervisor.
fn notified_rules(profile: SeccompProfile) -> Result<BTreeMap<i64, Vec<SeccompRule>>, Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|(s, _)| (*s, Vec::new())).collect();
    // clone with any namespace flag: one rule per flag, as (arg & flag) == flag.
    let mut clone = Vec::new();
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ] {
        clone.push(rule(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(flag as u64),
            flag as u64,
        )?])?);
    }
    rules.insert(libc::SYS_clone, clone);

    // socket(family, type, protocol): every combination outside the allow-list.
    let (unix, inet, inet6, netlink) = (
        libc::AF_UNIX as u64,
        libc::AF_INET as u64,
        libc::AF_INET6 as u64,
        libc::AF_NETLINK as u64,
    );
    let mut socket = vec![rule(vec![
        cond(0, SeccompCmpOp::Ne, unix)?,
        cond(0, SeccompCmpOp::Ne, inet)?,
        cond(0, SeccompCmpOp::Ne, inet6)?,
        cond(0, SeccompCmpOp::Ne, netlink)?,
    ])?];
    for family in [inet, inet6] {
        let kind = SeccompCmpOp::MaskedEq(0xf);
        let stream = libc::SOCK_STREAM as u64;
        let dgram = libc::SOCK_DGRAM as u64;
        if profile.udp {
            // Stream or datagram, nothing else (no raw, no packet).
            socket.push(rule(vec![
                cond(0, SeccompCmpOp::Eq, family)?,
                cond(1, kind.clone(), stream)?,
                cond(2, SeccompCmpOp::Ne, 0)?,
                cond(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
            ])?);
            socket.push(rule(vec![
                cond(0, SeccompCmpOp::Eq, family)?,
                cond(1, kind.clone(), dgram)?,
                cond(2, SeccompCmpOp::Ne, 0)?,
                cond(2, SeccompCmpOp::Ne, libc::IPPROTO_UDP as u64)?,
            ])?);
            for other in [libc::SOCK_RAW, libc::SOCK_SEQPACKET, libc::SOCK_RDM] {
                socket.push(rule(vec![
                    cond(0, SeccompCmpOp::Eq, family)?,
                    cond(1, kind.clone(), other as u64)?,
                ])?);
            }
        } else {
            // Anything but a stream, or a stream of another protocol (MPTCP is 262).
            socket.push(rule(vec![
                cond(0, SeccompCmpOp::Eq, family)?,
                cond(1, SeccompCmpOp::MaskedEq(0xf), stream)?,
                cond(2, SeccompCmpOp::Ne, 0)?,
                cond(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
            ])?);
            for other in [
                libc::SOCK_DGRAM,
                libc::SOCK_RAW,
                libc::SOCK_SEQPACKET,
                libc::SOCK_RDM,
                // SOCK_PACKET, the obsolete form of AF_PACKET.
                10,
            ] {
                socket.push(rule(vec![
                    cond(0, SeccompCmpOp::Eq, family)?,
                    cond(1, kind.clone(), other as u64)?,
                ])?);
            }
        }
    }
    socket.push(rule(vec![
        cond(0, SeccompCmpOp::Eq, netlink)?,
        cond(2, SeccompCmpOp::Ne, libc::NETLINK_ROUTE as u64)?,
    ])?);
    if profile.no_unix {
        socket.push(rule(vec![cond(0, SeccompCmpOp::Eq, unix)?])?);
    }
    rules.insert(libc::SYS_socket, socket);
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![cond(0, SeccompCmpOp::Ne, unix)?])?],
    );
    if profile.watch_connect {
        // Every connect: the supervisor checks its address.
        rules.insert(libc::SYS_connect, Vec::new());
    }
    Ok(rules)
}

/// The compiled filters: the notifying one (its refusals go to the supervisor) and the
/// `clone3` one.
pub fn compile(profile: SeccompProfile) -> Result<(BpfProgram, BpfProgram), Error> {
    let notified = SeccompFilter::new(
        notified_rules(profile)?,
        SeccompAction::Allow,
        SeccompAction::Errno(NOTIFY_MARK),
        arch(),
    )?;
    let mut program: BpfProgram = notified.try_into()?;
    let mark = SECCOMP_RET_ERRNO | NOTIFY_MARK;
    let mut rewritten = 0;
    for insn in &mut program {
        if insn.code == BPF_RET_K && insn.k == mark {
            insn.k = SECCOMP_RET_USER_NOTIF;
            rewritten += 1;
        }
    }
    if rewritten == 0 {
        return Err("the compiled filter has no notifying return".into());
    }
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, Vec::new());
    let fallback = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )?;
    Ok((program, fallback.try_into()?))
}

/// Install both filters on the calling thread; returns the notification listener. The caller
/// must have `no_new_privs` set (or `CAP_SYS_ADMIN`).
pub fn install(profile: SeccompProfile) -> Result<OwnedFd, Error> {
    let (notified, fallback) = compile(profile)?;
    // The clone3 filter first: once the notifying filter is in place, nothing refuses it.
    seccompiler::apply_filter(&fallback)?;
    let prog = libc::sock_fprog {
        len: notified.len() as u16,
        filter: notified.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        return Err(Box::new(std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_notifications() {
        for udp in [false, true] {
            let (notified, _) = compile(SeccompProfile {
                udp,
                watch_connect: true,
                no_unix: udp,
            })
            .expect("compiles");
            let notifies = notified
                .iter()
                .filter(|i| i.code == BPF_RET_K && i.k == SECCOMP_RET_USER_NOTIF)
                .count();
            assert!(notifies > 0);
            assert!(
                !notified
                    .iter()
                    .any(|i| i.code == BPF_RET_K && i.k == SECCOMP_RET_ERRNO | NOTIFY_MARK)
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(syscall_name(libc::SYS_io_uring_setup), "io_uring_setup");
        assert_eq!(syscall_name(libc::SYS_socket), "socket");
    }
}
