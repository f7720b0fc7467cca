//! Helpers for tests that bring ecosystems up: small Python services, an HTTP client, process
//! checks, and an `up -d` guard that always brings the ecosystem down.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Run, TestEnv};

/// The shared cache for every test run (uv, Python environments): a fresh machine fills it once.
pub fn test_cache() -> String {
    concat!(env!("CARGO_TARGET_TMPDIR"), "/pactown-cache").to_string()
}

/// A README for a Python standard-library HTTP service. `extra` is Python run before serving;
/// `routes` are `elif` branches of `do_GET` (with `self.path`, `reply(code, obj)` available).
pub fn py_service(extra: &str, routes: &str) -> String {
    format!(
        r#"# a test service

```python markpact:file path=server.py
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
{extra}

class H(BaseHTTPRequestHandler):
    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {{"status": "ok"}})
        elif self.path == "/whoami":
            self.reply(200, {{"service": os.environ.get("SERVICE_NAME"), "pid": os.getpid(), "port": os.environ.get("PORT")}})
{routes}
        else:
            self.reply(404, {{"error": "not found"}})

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
```

```bash markpact:run
exec python3 server.py
```
"#
    )
}

/// A minimal HTTP/1.1 GET: status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, None)
}

/// `GET path` on loopback: its status and its body as JSON (a body that is not JSON, as a string).
pub fn get_json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http_get(port, path).unwrap();
    let doc = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    (code, doc)
}

/// A minimal HTTP/1.1 request with an optional JSON body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    http_request_with(port, method, path, &[], body)
}

/// An HTTP/1.1 request with extra headers: status and body.
pub fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    Ok((
        code,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// Decode a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// Is a process alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Every descendant of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                for c in text
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok())
                {
                    out.push(c);
                    stack.push(c);
                }
            }
        }
    }
    out
}

/// Wait for a condition, checking every 20 ms, failing the test after `secs`.
#[track_caller]
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An ecosystem brought up with `up -d`; brought down when dropped, whatever happened.
pub struct Up<'a> {
    pub env: &'a TestEnv,
    pub file: String,
    pub started: Run,
}

impl<'a> Up<'a> {
    /// `pactown up -d FILE`, asserting it succeeds.
    pub fn start(env: &'a TestEnv, file: &str) -> Self {
        let started = env.run_up(&["up", "-d", file, "--listen", "127.0.0.1:0"]);
        let up = Self {
            env,
            file: file.to_string(),
            started,
        };
        up.started.ok();
        up
    }

    /// `status --json`.
    pub fn status(&self) -> serde_json::Value {
        self.env
            .run_up(&["status", &self.file, "--json"])
            .ok()
            .json()
    }

    /// The port of the admin/gateway address (`status --json`'s `gateway`).
    pub fn gateway_port(&self) -> u16 {
        let status = self.status();
        let gateway = status["gateway"].as_str().expect("a gateway address");
        gateway
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the gateway address")
    }

    /// The stable port of a service.
    pub fn port(&self, service: &str) -> u16 {
        let s = self.status();
        let svc = s["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == service)
            .expect("service in status");
        svc["port"].as_u64().expect("a port") as u16
    }

    /// The service entry of `status --json`.
    pub fn service(&self, name: &str) -> serde_json::Value {
        self.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .expect("service")
    }

    /// Every pid the ecosystem runs: shims and all their descendants.
    pub fn all_pids(&self) -> Vec<i32> {
        let s = self.status();
        let mut pids = vec![s["pid"].as_i64().unwrap() as i32];
        for svc in s["services"].as_array().unwrap() {
            for r in svc["replicas"].as_array().unwrap() {
                if let Some(p) = r["pid"].as_i64() {
                    pids.push(p as i32);
                    pids.extend(descendants(p as i32));
                }
            }
        }
        pids
    }

    /// `pactown down FILE`.
    pub fn down(self) -> Run {
        let r = self.env.run_up(&["down", &self.file]);
        std::mem::forget(self);
        r
    }
}

impl Drop for Up<'_> {
    fn drop(&mut self) {
        let _ = self.env.run_up(&["down", &self.file]);
    }
}

impl TestEnv {
    /// Run pactown with the shared test cache.
    pub fn run_up(&self, args: &[&str]) -> Run {
        Run::from(
            self.cmd(args)
                .env("PACTOWN_CACHE_DIR", self.cache_dir())
                .output()
                .expect("spawn pactown"),
        )
    }
}

/// A GET returning the whole raw response (head and body).
pub fn http_raw(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    raw(
        port,
        &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
    )
}

/// A GET with a given Host header, returning the raw response.
pub fn http_raw_host(port: u16, path: &str, host: &str) -> std::io::Result<String> {
    raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"),
    )
}

fn raw(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
