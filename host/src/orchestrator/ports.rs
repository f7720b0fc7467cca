//! Ports for replicas to bind.

use std::time::{Duration, Instant};

/// A port the OS says is free now, for a replica to bind, and none this process handed to
/// another replica in the last minute: the OS hands a port out again as soon as it is closed,
/// and a native replica binds its port only once it has started, so two replicas (a built-in
/// and a native service starting together, seen in CI) could be given the same one, and a
/// request for the second was answered by the first.
pub(super) fn free_port() -> std::io::Result<u16> {
    static HANDED: std::sync::Mutex<Option<std::collections::HashMap<u16, Instant>>> =
        std::sync::Mutex::new(None);
    const KEPT: Duration = Duration::from_secs(60);
    for _ in 0..64 {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let mut handed = HANDED.lock().expect("handed ports");
        let handed = handed.get_or_insert_with(Default::default);
        handed.retain(|_, at| at.elapsed() < KEPT);
        if let std::collections::hash_map::Entry::Vacant(e) = handed.entry(port) {
            e.insert(Instant::now());
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "every free port the OS offered was handed to another replica in the last minute",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bound and closed at once, the OS offers ports again within a few hundred asks: none of
    /// them is handed out twice.
    #[test]
    fn no_port_is_handed_out_twice_within_a_minute() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            assert!(seen.insert(free_port().unwrap()));
        }
    }
}
