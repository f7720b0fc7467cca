//! The attack suite: the same attacks against every sandbox kind. Each attack endpoint answers
//! `{"contained": bool, "detail": "..."}`; every attempt must be denied or contained, and the
//! host and the other services must keep serving. The test prints the table and `N/N contained`.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service};

/// The native attacker: a Python service that tries to escape.
const NATIVE: &str = r#"# attacker (native)

```python markpact:file path=server.py
import ctypes, json, os, socket, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

libc = ctypes.CDLL(None, use_errno=True)

def denied(fn):
    try:
        out = fn()
        return {"contained": False, "detail": f"succeeded: {out!r}"[:200]}
    except OSError as e:
        return {"contained": True, "detail": f"{type(e).__name__}: {e}"}

def syscall_denied(name, rc):
    err = ctypes.get_errno()
    return {"contained": rc != 0, "detail": f"{name} -> {rc}, errno {err} ({os.strerror(err)})"}

def connect(port):
    s = socket.socket(); s.settimeout(2); s.connect(("127.0.0.1", port)); s.close(); return port

def bind_other():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); p = s.getsockname()[1]; s.close(); return p

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", ("127.0.0.1", 9)); return "sent"

FORK_BOMB = "import os, time\nn = 0\ntry:\n    for _ in range(2000):\n        if os.fork() == 0:\n            time.sleep(0.3); os._exit(0)\n        n += 1\n    print('forked', n)\nexcept OSError as e:\n    print('limited after', n, 'processes:', e)\n    raise SystemExit(3)\n"
MEMORY_BOMB = "x = []\nwhile True:\n    x.append(bytearray(8 << 20))\n"

def attack(name, q):
    if name == "shadow":
        return denied(lambda: open("/etc/shadow").read())
    if name == "neighbour":
        return denied(lambda: open("../victim/secret.txt").read())
    if name == "write-outside":
        return denied(lambda: open(f"/tmp/pactown-escape-{os.getpid()}", "w").write("x"))
    if name == "write-sibling":
        return denied(lambda: open("../victim/planted.txt", "w").write("x"))
    if name == "connect-undeclared":
        return denied(lambda: connect(int(q["port"][0])))
    if name == "connect-any":
        return denied(lambda: connect(int(q["port"][0])))
    if name == "bind-other":
        return denied(bind_other)
    if name == "udp":
        return denied(udp)
    if name == "fork-bomb":
        r = subprocess.run([sys.executable, "-c", FORK_BOMB], capture_output=True, text=True, timeout=60)
        return {"contained": r.returncode == 3, "detail": (r.stdout + r.stderr).strip()[-200:]}
    if name == "memory-bomb":
        r = subprocess.run([sys.executable, "-c", MEMORY_BOMB], capture_output=True, text=True, timeout=60)
        return {"contained": r.returncode != 0, "detail": f"exit {r.returncode} {r.stderr.strip()[-120:]}"}
    if name == "ptrace":
        return syscall_denied("ptrace(ATTACH)", libc.ptrace(16, int(q["pid"][0]), None, None))
    if name == "mount":
        return syscall_denied("mount(tmpfs)", libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
    if name == "unshare":
        return syscall_denied("unshare(NEWUSER|NEWNS)", libc.unshare(0x10000000 | 0x00020000))
    return {"contained": False, "detail": "unknown attack"}

class H(BaseHTTPRequestHandler):
    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        u = urlparse(self.path)
        if u.path == "/health":
            return self.reply(200, {"status": "ok"})
        if u.path.startswith("/attack/"):
            return self.reply(200, attack(u.path[len("/attack/"):], parse_qs(u.query)))
        self.reply(404, {})

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
```

```bash markpact:run
exec python3 server.py
```
"#;

/// The wasm attacker: the same attacks, as far as WASI has the calls at all.
const WASM: &str = r#"# attacker (wasm)

```rust markpact:file path=src/main.rs
use pactown_guest::http::{Body, Request, Response, Result};

fn outcome<T: std::fmt::Debug>(r: std::io::Result<T>) -> Response<Body> {
    let (contained, detail) = match r {
        Ok(v) => (false, format!("succeeded: {v:?}")),
        Err(e) => (true, format!("{e}")),
    };
    pactown_guest::json(200, &serde_json::json!({"contained": contained, "detail": detail}))
}

fn absent(what: &str) -> Response<Body> {
    pactown_guest::json(200, &serde_json::json!({"contained": true, "detail": format!("WASI has no {what}")}))
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>> {
    let path = req.uri().path().to_string();
    let port: u16 = req.uri().query().and_then(|q| q.strip_prefix("port=")).and_then(|p| p.parse().ok()).unwrap_or(9);
    Ok(match path.trim_start_matches("/attack/") {
        "/health" => pactown_guest::text(200, "ok"),
        "shadow" => outcome(std::fs::read_to_string("/etc/shadow")),
        "neighbour" => outcome(std::fs::read_to_string("../victim/secret.txt")),
        "write-outside" => outcome(std::fs::write("/tmp/pactown-escape", "x")),
        "write-sibling" => outcome(std::fs::write("../victim/planted.txt", "x")),
        "connect-undeclared" | "connect-any" => outcome(std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| port)),
        "bind-other" => outcome(std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())),
        "udp" => outcome(std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", "127.0.0.1:9"))),
        "fork-bomb" => absent("process creation"),
        "memory-bomb" => {
            let mut hog = Vec::new();
            loop {
                hog.push(vec![1u8; 8 << 20]);
                std::hint::black_box(&hog);
            }
        }
        "ptrace" => absent("ptrace"),
        "mount" => absent("mount"),
        "unshare" => absent("namespaces"),
        _ => pactown_guest::text(404, "unknown attack"),
    })
}
```
"#;

const ATTACKS: &[&str] = &[
    "shadow",
    "neighbour",
    "write-outside",
    "write-sibling",
    "connect-undeclared",
    "connect-any",
    "bind-other",
    "udp",
    "fork-bomb",
    "memory-bomb",
    "ptrace",
    "mount",
    "unshare",
];

#[test]
fn every_attack_is_denied_or_contained_in_every_sandbox_kind() {
    let env = TestEnv::new();
    let victim = py_service("open('secret.txt', 'w').write('s3cret')", "");
    env.write("victim/README.md", &victim)
        .write("declared/README.md", &py_service("", ""))
        .write("attacker/README.md", NATIVE)
        .write("wattacker/README.md", WASM)
        .write(
            "a.pactown.yaml",
            "base_port: 0\nservices:\n  victim: {health_check: /health}\n  declared: {health_check: /health}\n  \
             attacker:\n    health_check: /health\n    depends_on: [declared]\n    limits: {memory: 96M, processes: 48}\n  \
             wattacker:\n    depends_on: [declared]\n    limits: {memory: 32M, cpu_time: 300ms}\n",
        );
    let up = Up::start(&env, "a.pactown.yaml");
    let status = up.status();
    let svc = |n: &str| {
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap()
            .clone()
    };
    let attacker = svc("attacker");
    let layers: Vec<String> = attacker["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}={}", l["name"].as_str().unwrap(), l["on"]))
        .collect();
    println!(
        "native sandbox on this machine: {} ({})",
        attacker["sandbox"],
        layers.join(", ")
    );
    assert_eq!(svc("wattacker")["sandbox"], "full");

    let victim_port = up.port("victim");
    let victim_pid = svc("victim")["replicas"][0]["pid"].as_i64().unwrap();
    let outsider = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let any_port = outsider.local_addr().unwrap().port();
    let mut table = Vec::new();
    for (kind, service) in [("native", "attacker"), ("wasm", "wattacker")] {
        let port = up.port(service);
        for attack in ATTACKS {
            let query = match *attack {
                "connect-undeclared" => format!("?port={victim_port}"),
                "connect-any" => format!("?port={any_port}"),
                "ptrace" => format!("?pid={victim_pid}"),
                _ => String::new(),
            };
            let (code, body) = http_get(port, &format!("/attack/{attack}{query}")).unwrap();
            let (contained, detail) = match code {
                200 => {
                    let v: serde_json::Value =
                        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{attack}: {body}"));
                    (
                        v["contained"] == true,
                        v["detail"].as_str().unwrap_or_default().to_string(),
                    )
                }
                // The guest trapped (out of memory): contained by the runtime.
                500 => (true, body.chars().take(120).collect()),
                other => (false, format!("HTTP {other}: {body}")),
            };
            table.push((kind, *attack, contained, detail));
        }
    }
    println!("\n{:7} {:20} {:10} detail", "kind", "attack", "result");
    for (kind, attack, contained, detail) in &table {
        println!(
            "{kind:7} {attack:20} {:10} {}",
            if *contained { "contained" } else { "ESCAPED" },
            detail.replace('\n', " ")
        );
    }
    let n = table.iter().filter(|r| r.2).count();
    println!("\n{n}/{} contained", table.len());
    let escaped: Vec<_> = table.iter().filter(|r| !r.2).collect();
    assert!(escaped.is_empty(), "escaped: {escaped:#?}");

    // Nothing was planted, and everyone still serves.
    assert!(!env.abs(".pactown-sandboxes/victim/planted.txt").exists());
    assert_eq!(
        std::fs::read_to_string(env.abs(".pactown-sandboxes/victim/secret.txt")).unwrap(),
        "s3cret"
    );
    for s in ["victim", "declared", "attacker", "wattacker"] {
        assert_eq!(
            http_get(up.port(s), "/health").unwrap().0,
            200,
            "{s} keeps serving"
        );
    }
    // The host saw and logged what it could see (the log is written within a tick).
    crate::support_up::wait_until(10, "the wasm attacker's denials in the anomaly log", || {
        let a = env.read(".pactown/a/logs/anomalies.log");
        a.contains("\"service\":\"wattacker\"")
            && a.contains("tcp connect")
            && a.contains("memory over its limit")
    });
    if attacker["sandbox"] == "full" {
        crate::support_up::wait_until(
            10,
            "the OOM kill of the native memory bomb in the anomaly log",
            || {
                env.read(".pactown/a/logs/anomalies.log").lines().any(|l| {
                    l.contains("\"service\":\"attacker\"") && l.contains("memory over its limit")
                })
            },
        );
    }
    drop(outsider);
}
