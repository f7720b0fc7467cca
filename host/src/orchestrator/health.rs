//! Health probes of one replica: an HTTP `GET` of the health path (2xx or 3xx passes), or, for a
//! service without one, a TCP connection that is accepted.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Probe once; the latency when healthy.
pub async fn probe(port: u16, path: Option<&str>, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let ok = tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let Some(path) = path else {
            return Some(());
        };
        let _ = stream.set_nodelay(true);
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: pactown-health\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        // Read the whole (small) response before closing: hanging up mid-response makes many
        // servers log a broken-pipe traceback on every probe.
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 4096];
        while buf.len() < 64 * 1024 {
            let r = stream.read(&mut chunk).await.ok()?;
            if r == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..r]);
        }
        let line = std::str::from_utf8(&buf[..buf.len().min(32)]).ok()?;
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        (200..400).contains(&code).then_some(())
    })
    .await;
    matches!(ok, Ok(Some(()))).then(|| start.elapsed())
}

/// Probe until healthy, at a fast pace at first (services often become ready within a second)
/// and slower later. Returns the latency of the passing probe; never returns otherwise (the
/// caller races it against the process exiting and its deadline).
pub async fn until_ready(port: u16, path: Option<&str>) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(latency) = probe(port, path, Duration::from_secs(2)).await {
            return latency;
        }
        let pause = if started.elapsed() < Duration::from_secs(2) {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(200)
        };
        tokio::time::sleep(pause).await;
    }
}
