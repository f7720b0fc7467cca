//! The load generator: HTTP/1.1 with keep-alive over loopback, in a closed loop (each connection
//! sends its next request when the previous answer is in, as `wrk` does) or an open loop
//! (requests scheduled at a fixed rate, as `wrk2` does, latency measured from the moment a
//! request was due, so a stalled server is charged for every request it held up: no
//! coordinated omission). Latencies go into HDR histograms (3 significant digits). Responses are
//! parsed with `httparse`, bodies read by `Content-Length` or chunked encoding.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// The request path (with its query).
    pub path: String,
}

impl Target {
    /// The bytes of one request.
    fn request(&self) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pactown-bench\r\nAccept: */*\r\n\r\n",
            self.path, self.addr
        )
        .into_bytes()
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "loop", rename_all = "lowercase")]
pub enum Pace {
    /// Each connection sends its next request as soon as the previous one is answered.
    Closed,
    /// `rate` requests per second in all, spread over the connections, each on its schedule.
    Open {
        /// Requests per second.
        rate: f64,
    },
}

/// A load to apply.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Connections, each its own task.
    pub connections: usize,
    /// How long the measured part lasts (unless `requests` ends it first).
    pub duration: Duration,
    /// Load applied first and not measured.
    pub warmup: Duration,
    /// Stop after this many measured requests in all.
    pub requests: Option<u64>,
    /// Closed or open loop.
    pub pace: Pace,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// The slowest.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

impl Percentiles {
    /// Of a histogram recorded in nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: (h.mean() / 100.0).round() / 10.0,
        }
    }
}

/// What a load measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Measured requests answered.
    pub requests: u64,
    /// Answers with a status outside 2xx and 3xx.
    pub non_2xx: u64,
    /// Requests that got no answer (connection reset, refused, malformed).
    pub errors: u64,
    /// How long the measured part took.
    pub elapsed_ms: f64,
    /// Answered requests per second.
    pub throughput_rps: f64,
    /// Latency of the answered requests.
    pub latency_us: Percentiles,
    /// How requests were paced.
    pub pace: Pace,
    /// Connections.
    pub connections: usize,
}

/// One connection's tally.
struct Tally {
    hist: Histogram<u64>,
    non_2xx: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            hist: new_histogram(),
            non_2xx: 0,
            errors: 0,
        }
    }
}

/// A histogram of nanoseconds, from 1 ns to 10 minutes at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds")
}

/// A runtime for the load generator with `threads` workers.
pub fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

/// Apply `spec` to `target` and measure it.
pub async fn run(target: &Target, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    let connections = spec.connections.max(1);
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let until = measure_from + spec.duration;
    let budget = spec
        .requests
        .map(|n| std::sync::Arc::new(std::sync::atomic::AtomicI64::new(n as i64)));
    let interval = match spec.pace {
        Pace::Closed => None,
        Pace::Open { rate } if rate > 0.0 => {
            Some(Duration::from_secs_f64(connections as f64 / rate))
        }
        Pace::Open { .. } => anyhow::bail!("an open-loop rate must be above 0"),
    };
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let target = target.clone();
        let budget = budget.clone();
        // Spread the open-loop schedules over one interval.
        let offset = interval.map(|d| d.mul_f64(i as f64 / connections as f64));
        tasks.push(tokio::spawn(async move {
            connection(&target, measure_from, until, budget, interval, offset).await
        }));
    }
    let mut total = Tally::new();
    for t in tasks {
        let tally = t.await.context("a load connection panicked")?;
        total.hist.add(&tally.hist).expect("same bounds");
        total.non_2xx += tally.non_2xx;
        total.errors += tally.errors;
    }
    // Open-ended by a request count, or cut at the end of the duration.
    let end = match spec.requests {
        Some(_) => Instant::now(),
        None => Instant::now().min(until),
    };
    let elapsed = end.saturating_duration_since(measure_from);
    let requests = total.hist.len();
    Ok(LoadResult {
        requests,
        non_2xx: total.non_2xx,
        errors: total.errors,
        elapsed_ms: (elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
        throughput_rps: if elapsed.is_zero() {
            0.0
        } else {
            (requests as f64 / elapsed.as_secs_f64()).round()
        },
        latency_us: Percentiles::of(&total.hist),
        pace: spec.pace,
        connections,
    })
}

/// One connection's loop: send, await the answer, record; reconnect when the server closes.
async fn connection(
    target: &Target,
    measure_from: Instant,
    until: Instant,
    budget: Option<std::sync::Arc<std::sync::atomic::AtomicI64>>,
    interval: Option<Duration>,
    offset: Option<Duration>,
) -> Tally {
    let request = target.request();
    let mut tally = Tally::new();
    let mut conn: Option<Conn> = None;
    let mut next_due = Instant::now() + offset.unwrap_or_default();
    loop {
        let due = match interval {
            Some(step) => {
                let due = next_due;
                next_due += step;
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                due
            }
            None => Instant::now(),
        };
        if due >= until {
            break;
        }
        let measured = due >= measure_from;
        if measured
            && let Some(b) = &budget
            && b.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) <= 0
        {
            break;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(target.addr).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    if measured {
                        tally.errors += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            },
        };
        match c.exchange(&request).await {
            Ok((status, keep)) => {
                if measured {
                    let ns = Instant::now().saturating_duration_since(due).as_nanos() as u64;
                    let _ = tally.hist.record(ns.max(1));
                    if !(200..400).contains(&status) {
                        tally.non_2xx += 1;
                    }
                }
                if !keep {
                    conn = None;
                }
            }
            Err(_) => {
                if measured {
                    tally.errors += 1;
                }
                conn = None;
            }
        }
    }
    tally
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Send one request and read its whole answer: its status, and whether the connection
    /// stays open.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        // The head.
        let (status, head_len, body, keep) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    let mut keep = resp.version == Some(1);
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            keep = !h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
                        Body::Length(0)
                    } else if chunked {
                        Body::Chunked
                    } else if let Some(n) = length {
                        Body::Length(n)
                    } else {
                        Body::UntilClose
                    };
                    break (status, n, body, keep);
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(e) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            }
        };
        let end = match body {
            Body::Length(n) => {
                while self.buf.len() < head_len + n {
                    self.fill().await?;
                }
                head_len + n
            }
            Body::Chunked => self.chunked_end(head_len).await?,
            Body::UntilClose => {
                while self.fill().await.is_ok() {}
                self.buf.clear();
                return Ok((status, false));
            }
        };
        self.buf.drain(..end);
        Ok((status, keep))
    }

    /// Where a chunked body that starts at `at` ends (its last chunk and trailers read).
    async fn chunked_end(&mut self, mut at: usize) -> std::io::Result<usize> {
        loop {
            match httparse::parse_chunk_size(&self.buf[at..]) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    at += used;
                    // Trailers (rare), then the empty line.
                    loop {
                        if let Some(i) = find(&self.buf[at..], b"\r\n") {
                            at += i + 2;
                            if i == 0 {
                                return Ok(at);
                            }
                        } else {
                            self.fill().await?;
                        }
                    }
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    let next = at + used + size as usize + 2;
                    while self.buf.len() < next {
                        self.fill().await?;
                    }
                    at = next;
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "bad chunk size",
                    ));
                }
            }
        }
    }

    /// Read more into the buffer; the end of the stream is an error.
    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// How an answer's body is delimited.
enum Body {
    Length(usize),
    Chunked,
    UntilClose,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny server answering with a fixed response to every request on a connection.
    async fn serve(response: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(i) = find(&pending, b"\r\n\r\n") {
                            pending.drain(..i + 4);
                            if s.write_all(response).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn load(response: &'static [u8], pace: Pace) -> LoadResult {
        let addr = serve(response).await;
        let target = Target {
            addr,
            path: "/".into(),
        };
        run(
            &target,
            &LoadSpec {
                connections: 2,
                duration: Duration::from_secs(5),
                warmup: Duration::ZERO,
                requests: Some(200),
                pace,
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn length_chunked_and_errors_are_read_and_counted() {
        let r = load(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            Pace::Closed,
        )
        .await;
        assert_eq!((r.requests, r.non_2xx, r.errors), (200, 0, 0));
        assert!(r.latency_us.p50 > 0.0 && r.latency_us.p50 <= r.latency_us.p99);
        assert!(r.latency_us.p99 <= r.latency_us.max);
        let r = load(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n",
            Pace::Closed,
        )
        .await;
        assert_eq!((r.requests, r.errors), (200, 0));
        let r = load(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            Pace::Closed,
        )
        .await;
        assert_eq!((r.requests, r.non_2xx), (200, 200));
    }

    #[tokio::test]
    async fn an_open_loop_keeps_its_rate() {
        let r = load(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Pace::Open { rate: 1000.0 },
        )
        .await;
        assert_eq!(r.requests, 200);
        // 200 requests at 1000/s take about 0.2 s, never much less.
        assert!(r.elapsed_ms >= 150.0, "{r:?}");
    }
}
