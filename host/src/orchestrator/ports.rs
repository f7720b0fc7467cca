//! Ports for replicas to bind.
//!
//! The OS hands a port out again as soon as it is closed, and a native replica binds its port
//! only once it has started, so between the two any other bind to port 0 may be given the same
//! port: a built-in and a native service starting together in one pactown (seen in CI: a
//! request for the second was answered by the first), or the replicas of two pactown processes
//! starting at the same moment. So every port handed to a replica is reserved for a minute,
//! machine-wide, by holding an abstract Unix socket named after it (`pactown/port/N`): no file
//! to clean up, released by the kernel when the process ends however it ends, and seen by every
//! pactown on the machine, whoever runs it, as TCP ports are.

use std::collections::HashMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a port handed out stays reserved: a replica has bound it long before.
const KEPT: Duration = Duration::from_secs(60);

/// How many ports the OS offers before giving up: all of them reserved by someone.
const ASKS: usize = 64;

/// A port this process handed out: when, and the socket reserving it (none where the machine
/// has no abstract Unix sockets: then only this process knows).
type Handed = (Instant, Option<UnixDatagram>);

/// The ports this process handed out.
static HANDED: Mutex<Option<HashMap<u16, Handed>>> = Mutex::new(None);

/// A port the OS says is free now, for a replica to bind, that no pactown on this machine
/// handed to another replica in the last minute.
pub(super) fn free_port() -> std::io::Result<u16> {
    pick(|| {
        Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port())
    })
}

/// The first port `offer` gives that is not reserved, now reserved by this process.
fn pick(mut offer: impl FnMut() -> std::io::Result<u16>) -> std::io::Result<u16> {
    for _ in 0..ASKS {
        let port = offer()?;
        let mut handed = HANDED.lock().expect("handed ports");
        let handed = handed.get_or_insert_with(Default::default);
        handed.retain(|_, (at, _)| at.elapsed() < KEPT);
        if handed.contains_key(&port) {
            continue;
        }
        match reserve(port) {
            Ok(socket) => {
                handed.insert(port, (Instant::now(), socket));
                return Ok(port);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "each of the {ASKS} free ports the OS offered was handed to another replica \
             in the last minute"
        ),
    ))
}

/// Hold `port`'s name: `AddrInUse` when another holds it; `None` when the kernel has no
/// abstract Unix sockets (the port is then reserved in this process only).
fn reserve(port: u16) -> std::io::Result<Option<UnixDatagram>> {
    let name = SocketAddr::from_abstract_name(name(port))?;
    match UnixDatagram::bind_addr(&name) {
        Ok(socket) => Ok(Some(socket)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(e),
        Err(_) => Ok(None),
    }
}

/// The abstract socket name that reserves `port`.
fn name(port: u16) -> String {
    format!("pactown/port/{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Bound and closed at once, the OS offers ports again within a few hundred asks: none of
    /// them is handed out twice.
    #[test]
    fn no_port_is_handed_out_twice_within_a_minute() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            assert!(seen.insert(free_port().unwrap()));
        }
    }

    /// Ports below the range the OS hands out for port 0 (no pactown reserves them), a pair
    /// per test and per test process, so that tests running at once do not meet.
    fn ports(test: u16) -> (u16, u16) {
        let base = 10_000 + (std::process::id() % 1_000) as u16 * 8 + test * 2;
        (base, base + 1)
    }

    /// The same port offered twice: handed out once, the next offer the second time.
    #[test]
    fn a_port_is_handed_out_once() {
        let (port, next) = ports(0);
        let mut offers = [port, port, next].into_iter();
        assert_eq!(pick(|| Ok(offers.next().unwrap())).unwrap(), port);
        assert_eq!(pick(|| Ok(offers.next().unwrap())).unwrap(), next);
    }

    /// Another process (another pactown) holding a port's name: that port is passed over
    /// while it holds it, and handed out once it has ended.
    #[test]
    fn a_port_another_process_reserved_is_passed_over() {
        let (taken, other) = ports(1);
        let holder = format!(
            "import socket, sys\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             s.bind('\\0{}')\n\
             print('held', flush=True)\n\
             sys.stdin.read()\n",
            name(taken)
        );
        let mut child = Command::new("python3")
            .args(["-c", &holder])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");

        let mut offers = [taken, other].into_iter();
        assert_eq!(pick(|| Ok(offers.next().unwrap())).unwrap(), other);
        // This process holds `other` now: another pactown would pass it over too.
        assert_eq!(
            reserve(other).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );

        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        let mut offers = [taken].into_iter();
        assert_eq!(pick(|| Ok(offers.next().unwrap())).unwrap(), taken);
    }

    /// Every offer reserved: an error saying so, not a port in use.
    #[test]
    fn all_offers_reserved_is_an_error() {
        let (port, _) = ports(2);
        let _held = reserve(port).unwrap().expect("abstract sockets");
        let err = pick(|| Ok(port)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("64 free ports"), "{err}");
    }
}
