//! The development loop: every service starts at once, and a request to a dependency that is
//! still starting is held until it is ready (or released with a 503 when it fails).

use crate::support::{Run, TestEnv};
use crate::support_up::{http_get, wait_until};

/// A dependency that serves at once but is ready (its `/health` passes) only after the test
/// opens it through its internal port, or dies when the test says so. It logs that port.
const GATED: &str = r#"# gated

```python markpact:file path=server.py
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPEN = False

class H(BaseHTTPRequestHandler):
    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global OPEN
        if self.path == "/health":
            self.reply(200 if OPEN else 503, {"open": OPEN})
        elif self.path == "/open":
            OPEN = True
            self.reply(200, {"open": True})
        elif self.path == "/fail":
            self.reply(200, {"failing": True})
            os._exit(3)
        else:
            self.reply(200, {"value": 42})

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print(f"gated listening on {os.environ['PORT']}", flush=True)
server.serve_forever()
```

```bash markpact:run
exec python3 server.py
```
"#;

/// A dependent that asks `gated` for a value while it starts, and serves only once it has it.
const EAGER: &str = r#"# eager

```python markpact:file path=server.py
import json, os, sys, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("eager calling gated", flush=True)
try:
    with urllib.request.urlopen("http://gated/value", timeout=60) as r:
        VALUE = json.loads(r.read())["value"]
        print(f"eager got {VALUE}", flush=True)
except urllib.error.HTTPError as e:
    print(f"eager was refused: {e.code} {e.read().decode()}", flush=True)
    sys.exit(1)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps({"value": VALUE}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
```

```bash markpact:run
exec python3 server.py
```
"#;

fn held() -> TestEnv {
    let env = TestEnv::new();
    env.write("gated/README.md", GATED)
        .write("eager/README.md", EAGER)
        .write(
            "h.pactown.yaml",
            "name: h\nbase_port: 0\nservices:\n  gated: {health_check: /health, auto_restart: false, timeout: 60s}\n  \
             eager: {health_check: /, depends_on: [gated], timeout: 60s}\n",
        );
    env
}

/// `up -d` started in the background; the port `gated` logged once `eager` is calling it.
fn start_until_eager_calls(env: &TestEnv) -> (std::process::Child, u16) {
    let child = env
        .cmd(&["up", "-d", "h.pactown.yaml", "--listen", "127.0.0.1:0"])
        .env("PACTOWN_CACHE_DIR", env.cache_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = |s: &str| {
        std::fs::read_to_string(env.abs(&format!(".pactown/h/logs/{s}.log"))).unwrap_or_default()
    };
    // Both started at once: `eager` calls while `gated` is not ready.
    wait_until(120, "`eager` to call `gated` while it starts", || {
        log("eager").contains("eager calling gated") && log("gated").contains("gated listening on")
    });
    let port = log("gated")
        .lines()
        .find_map(|l| l.split("gated listening on ").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .expect("gated's internal port");
    (child, port)
}

#[test]
fn a_request_to_a_dependency_still_starting_is_held_until_it_is_ready() {
    let env = held();
    let (child, gated) = start_until_eager_calls(&env);
    assert!(
        !std::fs::read_to_string(env.abs(".pactown/h/logs/eager.log"))
            .unwrap()
            .contains("eager got")
    );
    assert_eq!(http_get(gated, "/open").unwrap().0, 200);
    let up = Run::from(child.wait_with_output().unwrap());
    let _down = Down(&env);
    up.ok();
    let log = env.read(".pactown/h/logs/eager.log");
    assert!(log.contains("eager got 42"), "{log}");
    assert!(!log.contains("refused"), "{log}");
}

#[test]
fn a_dependency_that_fails_releases_its_held_requests_with_a_503_naming_it() {
    let env = held();
    let (child, gated) = start_until_eager_calls(&env);
    // A request of our own to `gated`'s stable address (in state.json from the start), held too.
    let state: serde_json::Value =
        serde_json::from_str(&env.read(".pactown/h/state.json")).unwrap();
    let stable = state["ports"]["gated"]
        .as_u64()
        .expect("gated's stable port") as u16;
    let held = std::thread::spawn(move || http_get(stable, "/value").unwrap());
    wait_until(30, "our request to be held", || {
        std::fs::read_to_string(format!("/proc/{}/net/tcp", std::process::id()))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!(":{stable:04X} 01")))
    });
    let _ = http_get(gated, "/fail");
    let (code, body) = held.join().unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("service `gated` has no ready instance (it failed)"),
        "{body}"
    );
    let up = Run::from(child.wait_with_output().unwrap());
    let _down = Down(&env);
    up.code(1).stderr_has("`gated`");
}

/// Brings the ecosystem down when dropped.
struct Down<'a>(&'a TestEnv);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run_up(&["down", "h.pactown.yaml"]);
    }
}

const WASM_V: &str = r#"# wasm

```rust markpact:file path=src/main.rs
use pactown_guest::http::{Body, Request, Response, Result};

#[wstd::http_server]
async fn main(_req: Request<Body>) -> Result<Response<Body>> {
    Ok(pactown_guest::text(200, "wasm VERSION"))
}
```
"#;

const NATIVE_V: &str = r#"# native

```python markpact:file path=server.py
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        data = f"native VERSION {os.environ.get('GREETING', '')}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
```

```bash markpact:run
exec python3 server.py
```
"#;

fn watched() -> TestEnv {
    let env = TestEnv::new();
    env.write("wasm/README.md", &WASM_V.replace("VERSION", "v1"))
        .write("native/README.md", &NATIVE_V.replace("VERSION", "v1"))
        .write("dep/README.md", &NATIVE_V.replace("VERSION", "dep"))
        .write("w.pactown.yaml", &eco_yaml(""));
    env
}

fn eco_yaml(dep_env: &str) -> String {
    format!(
        "name: w\nbase_port: 0\nservices:\n  wasm: {{}}\n  native: {{health_check: /}}\n  \
         dep: {{health_check: /, depends_on: [native]{dep_env}}}\n"
    )
}

/// GETs a stable address over and over until stopped: every answer it saw.
struct Poller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::thread::JoinHandle<Vec<(u16, String)>>,
}

impl Poller {
    fn start(port: u16) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let seen = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                seen.push(http_get(port, "/").unwrap_or((0, "no answer".into())));
            }
            seen
        });
        Self { stop, seen }
    }

    fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.seen.join().unwrap()
    }
}

fn main_pid(up: &crate::support_up::Up, name: &str) -> i64 {
    up.service(name)["replicas"][0]["main_pid"]
        .as_i64()
        .unwrap_or(0)
}

#[test]
fn with_watch_an_edited_readme_rebuilds_and_rolls_that_service_alone_with_no_error_at_its_address()
{
    let env = watched();
    let started = env.run_up(&[
        "up",
        "-d",
        "w.pactown.yaml",
        "--listen",
        "127.0.0.1:0",
        "--watch",
    ]);
    let up = crate::support_up::Up {
        env: &env,
        file: "w.pactown.yaml".into(),
        started,
    };
    up.started.ok();
    let (wasm, native) = (up.port("wasm"), up.port("native"));
    assert_eq!(http_get(wasm, "/").unwrap(), (200, "wasm v1".into()));
    let (native_pid, dep_pid) = (main_pid(&up, "native"), main_pid(&up, "dep"));
    let log = || env.read(".pactown/w/logs/pactown.log");
    wait_until(30, "the watch to start", || log().contains("watching"));

    // A wasm README: its component rebuilt and swapped; nothing else restarts.
    let polling = Poller::start(wasm);
    env.write("wasm/README.md", &WASM_V.replace("VERSION", "v2"));
    wait_until(300, "the new wasm version to answer", || {
        http_get(wasm, "/").is_ok_and(|r| r.1 == "wasm v2")
    });
    let seen = polling.stop();
    assert!(
        seen.iter().all(|(code, _)| *code == 200),
        "{:?}",
        seen.iter().filter(|s| s.0 != 200).collect::<Vec<_>>()
    );
    assert_eq!(
        (main_pid(&up, "native"), main_pid(&up, "dep")),
        (native_pid, dep_pid)
    );
    wait_until(30, "the reload's line", || {
        log().contains("`wasm` rebuilt and rolled")
    });

    // A native README: its process restarted with the new files, requests held meanwhile;
    // its dependent's environment did not change, so it keeps running.
    let polling = Poller::start(native);
    env.write("native/README.md", &NATIVE_V.replace("VERSION", "v2"));
    wait_until(120, "the new native version to answer", || {
        http_get(native, "/").is_ok_and(|r| r.1.starts_with("native v2"))
    });
    let seen = polling.stop();
    assert!(
        seen.iter().all(|(code, _)| *code == 200),
        "{:?}",
        seen.iter().filter(|s| s.0 != 200).collect::<Vec<_>>()
    );
    assert_ne!(main_pid(&up, "native"), native_pid);
    assert_eq!(
        main_pid(&up, "dep"),
        dep_pid,
        "the dependent restarted though its environment did not change"
    );

    // A broken edit keeps the running version and names the line.
    env.write(
        "native/README.md",
        &NATIVE_V
            .replace("VERSION", "v3")
            .replace("path=server.py", "path=../server.py"),
    );
    wait_until(60, "the diagnostic", || {
        log().contains("the running version stays") && log().contains("native/README.md:3:")
    });
    assert!(http_get(native, "/").unwrap().1.starts_with("native v2"));

    // The ecosystem file: the dependent's environment changed, so it alone restarts.
    env.write("native/README.md", &NATIVE_V.replace("VERSION", "v2"));
    let native_pid = main_pid(&up, "native");
    env.write("w.pactown.yaml", &eco_yaml(", env: {GREETING: hello}"));
    let dep = up.port("dep");
    wait_until(120, "the dependent's new environment", || {
        http_get(dep, "/").is_ok_and(|r| r.1 == "native dep hello")
    });
    assert_ne!(main_pid(&up, "dep"), dep_pid);
    assert_eq!(main_pid(&up, "native"), native_pid);

    // A service added to the ecosystem file comes up at an address of its own; removed, it stops.
    env.write("extra/README.md", &NATIVE_V.replace("VERSION", "extra"));
    env.write(
        "w.pactown.yaml",
        &(eco_yaml(", env: {GREETING: hello}") + "  extra: {health_check: /}\n"),
    );
    wait_until(120, "the added service in the status", || {
        up.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra" && s["state"] == "ready")
    });
    let extra = up.port("extra");
    assert_eq!(http_get(extra, "/").unwrap(), (200, "native extra ".into()));
    assert_eq!(
        main_pid(&up, "native"),
        native_pid,
        "adding a service restarted another"
    );
    env.write("w.pactown.yaml", &eco_yaml(", env: {GREETING: hello}"));
    wait_until(60, "the removed service gone", || {
        !up.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra")
    });
    assert_eq!(http_get(extra, "/").unwrap().0, 503);
    wait_until(30, "the reload lines", || {
        log().contains("`extra` added and started") && log().contains("`extra` removed")
    });

    // One added and left running stops with the rest.
    env.write(
        "w.pactown.yaml",
        &(eco_yaml(", env: {GREETING: hello}") + "  extra: {health_check: /}\n"),
    );
    wait_until(120, "the added service again", || {
        up.status()["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra" && s["state"] == "ready")
    });
    let extra_pid = main_pid(&up, "extra") as i32;
    assert!(extra_pid > 0 && crate::support_up::alive(extra_pid));
    up.down().ok();
    assert!(
        !crate::support_up::alive(extra_pid),
        "an added service outlived `down`"
    );
}
