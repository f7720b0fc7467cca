//! The supervisor's side of the seccomp filter (see [`super::seccomp`]): it answers each
//! notification. A refused call fails with the errno a kernel refusal would give and is
//! reported; a `connect` goes on when its address is a loopback port the policy allows, and is
//! refused and reported otherwise.
//!
//! Letting a call go on after looking at its arguments is racy (another thread may change the
//! address after the check), so this only ever narrows what Landlock allows: Landlock checks
//! the port again in the kernel, where no race is possible.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use super::report::Report;
use super::seccomp::syscall_name;

/// Answers notifications for one sandbox.
pub struct Watcher {
    listener: OwnedFd,
    connect_ports: Vec<u16>,
    seen: HashMap<(String, String), u64>,
}

enum Verdict {
    Continue,
    Refuse(i32, &'static str, String),
    /// Refused without a report: what libc tries on its own and does without.
    RefuseQuietly(i32),
}

impl Watcher {
    /// Watch `listener`, allowing connections to these loopback ports.
    pub fn new(listener: OwnedFd, connect_ports: Vec<u16>) -> Self {
        Self {
            listener,
            connect_ports,
            seen: HashMap::new(),
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> i32 {
        self.listener.as_raw_fd()
    }

    /// Receive and answer one notification. `false` when the listener is done (every process
    /// of the filter has exited).
    pub fn answer_one(&mut self) -> bool {
        // SAFETY: zeroed plain-data structs filled by the kernel.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        let fd = self.listener.as_raw_fd();
        // SAFETY: RECV fills `req`.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            let e = std::io::Error::last_os_error();
            // ENOENT: the caller was interrupted before we got to it. Anything else: gone.
            return matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINTR));
        }
        let verdict = self.judge(&req);
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        match &verdict {
            Verdict::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Verdict::Refuse(errno, _, _) | Verdict::RefuseQuietly(errno) => resp.error = -errno,
        }
        // SAFETY: SEND reads `resp`. A target that died in between makes it fail: fine.
        unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
        if let Verdict::Refuse(_, action, target) = verdict {
            self.report(action, target);
        }
        true
    }

    fn report(&mut self, action: &str, target: String) {
        let count = self
            .seen
            .entry((action.to_string(), target.clone()))
            .or_insert(0);
        *count += 1;
        // 1, 10, 100, …: a loop of refusals cannot flood the log.
        let n = *count;
        let mut m = n;
        while m.is_multiple_of(10) {
            m /= 10;
        }
        if m == 1 {
            Report::Denied {
                action: action.to_string(),
                target,
                count: n,
            }
            .send();
        }
    }

    fn judge(&self, req: &libc::seccomp_notif) -> Verdict {
        let nr = i64::from(req.data.nr);
        let args = req.data.args;
        match nr {
            libc::SYS_connect => self.judge_connect(req),
            // glibc asks nscd (and systemd's user database) over a unix socket on every name
            // or user lookup, and does without when it cannot: not worth a line each time.
            libc::SYS_socket if args[0] == libc::AF_UNIX as u64 => {
                Verdict::RefuseQuietly(libc::EACCES)
            }
            libc::SYS_socket => Verdict::Refuse(
                libc::EACCES,
                "socket",
                describe_socket(args[0], args[1], args[2]),
            ),
            libc::SYS_socketpair => {
                Verdict::Refuse(libc::EACCES, "socket", describe_socket(args[0], args[1], 0))
            }
            libc::SYS_clone => Verdict::Refuse(
                libc::EPERM,
                "syscall",
                "clone with namespace flags".to_string(),
            ),
            _ => Verdict::Refuse(libc::EPERM, "syscall", syscall_name(nr).to_string()),
        }
    }

    fn judge_connect(&self, req: &libc::seccomp_notif) -> Verdict {
        let (ptr, len) = (req.data.args[1], req.data.args[2].min(128) as usize);
        let Some(raw) = read_memory(req.pid, ptr, len) else {
            return Verdict::Continue;
        };
        // The memory we read belongs to the call we are answering only while it is pending.
        // SAFETY: ID_VALID reads the id.
        let mut id = req.id;
        if unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &mut id,
            )
        } != 0
        {
            return Verdict::Continue;
        }
        match parse_sockaddr(&raw) {
            Some(addr) => {
                let loopback = match addr.ip() {
                    IpAddr::V4(ip) => ip.is_loopback(),
                    IpAddr::V6(ip) => {
                        ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v| v.is_loopback())
                    }
                };
                if loopback && self.connect_ports.contains(&addr.port()) {
                    Verdict::Continue
                } else {
                    Verdict::Refuse(libc::EACCES, "tcp connect", addr.to_string())
                }
            }
            // Unix sockets (confined by the mount namespace and Landlock's scope) and the rest.
            None => Verdict::Continue,
        }
    }
}

/// Read `len` bytes at `addr` of process `pid` (its `/proc/<pid>/mem`).
fn read_memory(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; len];
    let n = f.read_at(&mut buf, addr).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// An `AF_INET`/`AF_INET6` address from raw `sockaddr` bytes.
fn parse_sockaddr(raw: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]);
    let port = u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]);
    match i32::from(family) {
        libc::AF_INET => {
            let b = raw.get(4..8)?;
            Some(SocketAddr::from((
                Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                port,
            )))
        }
        libc::AF_INET6 => {
            let b: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::from((Ipv6Addr::from(b), port)))
        }
        _ => None,
    }
}

fn describe_socket(family: u64, kind: u64, protocol: u64) -> String {
    let family = match family as i32 {
        libc::AF_UNIX => "AF_UNIX".to_string(),
        libc::AF_INET => "AF_INET".to_string(),
        libc::AF_INET6 => "AF_INET6".to_string(),
        libc::AF_NETLINK => "AF_NETLINK".to_string(),
        libc::AF_PACKET => "AF_PACKET".to_string(),
        n => format!("family {n}"),
    };
    let kind = match (kind & 0xf) as i32 {
        libc::SOCK_STREAM => "stream".to_string(),
        libc::SOCK_DGRAM => "datagram".to_string(),
        libc::SOCK_RAW => "raw".to_string(),
        libc::SOCK_SEQPACKET => "seqpacket".to_string(),
        n => format!("type {n}"),
    };
    match protocol {
        0 => format!("{family} {kind}"),
        262 => format!("{family} {kind} MPTCP"),
        p => format!("{family} {kind} protocol {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8003u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4), Some("127.0.0.1:8003".parse().unwrap()));
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&80u16.to_be_bytes());
        v6[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(parse_sockaddr(&v6), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_sockaddr(&[1, 0]), None);
    }

    #[test]
    fn sockets_are_named() {
        assert_eq!(
            describe_socket(libc::AF_INET as u64, libc::SOCK_STREAM as u64, 262),
            "AF_INET stream MPTCP"
        );
    }
}
