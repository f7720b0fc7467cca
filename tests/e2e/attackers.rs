//! The attackers of the attack suite: a native (Python) and a wasm (Rust) service that try every
//! door they can reach. Each attack answers `{"contained": bool, "detail": "..."}`; each control
//! (something the service is allowed to do) answers `{"reached": bool, "detail": "..."}`.
//! Every attack takes the same query: `victim`, `admin` (ports), `outside`, `allowed`
//! (`ip:port` of two servers outside the ecosystem, the second in `allowed_hosts`), `alias` (a
//! name that resolves to loopback, also in `allowed_hosts`), `ctl` (pactown's control socket),
//! `sock` (a unix socket of the host), `vpid` (the victim's main pid, as the host sees it),
//! `port` (a port to connect to), `host_file` (a path of the host outside every sandbox).

/// The native attacker.
pub const NATIVE: &str = r##"# attacker (native)

```python markpact:file path=server.py
import ctypes, json, os, shutil, socket, stat, struct, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

libc = ctypes.CDLL(None, use_errno=True)

def denied(fn):
    try:
        out = fn()
        return {"contained": False, "detail": f"succeeded: {out!r}"[:200]}
    except OSError as e:
        return {"contained": True, "detail": f"{type(e).__name__}: {e}"}

def syscall_denied(name, rc, ok=lambda rc: rc != 0):
    err = ctypes.get_errno()
    return {"contained": ok(rc), "detail": f"{name} -> {rc}, errno {err} ({os.strerror(err)})"}

def connect(port):
    s = socket.socket(); s.settimeout(2); s.connect(("127.0.0.1", port)); s.close(); return port

def bind_other():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); p = s.getsockname()[1]; s.close(); return p

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", ("127.0.0.1", 9)); return "sent"

def unix(path):
    s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(path); s.close(); return path

def get(url, host):
    return f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"

def connect_req(target):
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"

def proxy(raw):
    p = urlparse(os.environ["HTTP_PROXY"])
    s = socket.create_connection((p.hostname, p.port), timeout=5)
    s.sendall(raw.encode())
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.settimeout(1)
        if not raw.startswith("CONNECT"):
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    s.close()
    text = data.decode(errors="replace")
    status = int(text.split()[1]) if text.startswith("HTTP/") else 0
    head, _, body = text.partition("\r\n\r\n")
    return status, f"{head.splitlines()[0] if head else '(nothing)'} {body[:160]}"

def through_proxy(raw):
    status, detail = proxy(raw)
    return {"contained": status in (403, 502), "detail": detail}

def reached_through_proxy(raw):
    status, detail = proxy(raw)
    return {"reached": status == 200, "detail": detail}

def procs():
    return [p for p in os.listdir("/proc") if p.isdigit()]

FORK_BOMB = "import os, time\nn = 0\ntry:\n    for _ in range(2000):\n        if os.fork() == 0:\n            time.sleep(0.3); os._exit(0)\n        n += 1\n    print('forked', n)\nexcept OSError as e:\n    print('limited after', n, 'processes:', e)\n    raise SystemExit(3)\n"
MEMORY_BOMB = "x = []\nwhile True:\n    x.append(bytearray(8 << 20))\n"

def attack(name, q):
    v = q.get("victim", [""])[0]
    admin = q.get("admin", [""])[0]
    if name == "shadow":
        return denied(lambda: open("/etc/shadow").read())
    if name == "neighbour":
        return denied(lambda: open("../victim/secret.txt").read())
    if name == "write-outside":
        return denied(lambda: open(q["host_file"][0], "w").write("x"))
    if name == "write-sibling":
        return denied(lambda: open("../victim/planted.txt", "w").write("x"))
    if name in ("connect-undeclared", "connect-any"):
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
        return syscall_denied("ptrace(ATTACH)", libc.ptrace(16, int(q["vpid"][0]), None, None))
    if name == "mount":
        return syscall_denied("mount(tmpfs)", libc.mount(b"none", b"/mnt", b"tmpfs", 0, None))
    if name == "unshare":
        return syscall_denied("unshare(NEWUSER|NEWNS)", libc.unshare(0x10000000 | 0x00020000))
    # Through its own proxy: only its dependencies and its allowed_hosts.
    if name == "proxy-absolute":
        return through_proxy(get(f"http://127.0.0.1:{v}/health", f"127.0.0.1:{v}"))
    if name == "proxy-name":
        return through_proxy(get("http://victim/health", "victim"))
    if name == "proxy-host-header":
        return through_proxy(get("/health", "victim"))
    if name == "proxy-connect":
        return through_proxy(connect_req(f"127.0.0.1:{v}"))
    if name == "proxy-admin":
        return through_proxy(get(f"http://127.0.0.1:{admin}/_pactown/services", f"127.0.0.1:{admin}"))
    if name == "proxy-gateway":
        return through_proxy(get(f"http://victim.localhost:{admin}/health", f"victim.localhost:{admin}"))
    if name == "proxy-ipv6":
        return through_proxy(get(f"http://[::1]:{v}/health", f"[::1]:{v}"))
    if name == "proxy-alias":
        return through_proxy(get(f"http://127.0.0.2:{v}/health", f"127.0.0.2:{v}"))
    if name == "proxy-dns-loopback":
        alias = q["alias"][0]
        return through_proxy(get(f"http://{alias}:{v}/health", f"{alias}:{v}"))
    if name == "proxy-outside":
        o = q["outside"][0]
        return through_proxy(get(f"http://{o}/", o))
    if name == "proxy-connect-outside":
        return through_proxy(connect_req(q["outside"][0]))
    if name == "proxy-connect-alias":
        return through_proxy(connect_req(f"{q['alias'][0]}:{v}"))
    # Other services' processes, pactown's control socket, the host's sockets.
    if name == "proc-environ":
        found = []
        for p in procs():
            try:
                if b"VICTIM_SECRET" in open(f"/proc/{p}/environ", "rb").read():
                    found.append(p)
            except OSError:
                pass
        return {"contained": not found, "detail": f"{len(procs())} processes visible; the secret in {found}"}
    if name == "proc-cmdline":
        seen = []
        for p in procs():
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ")
            except OSError:
                continue
            if b"sandbox-exec" in cmd or b"victim" in cmd or b"pactown" in cmd:
                seen.append(cmd[:60].decode(errors="replace"))
        return {"contained": not seen, "detail": f"{len(procs())} processes visible: {seen[:3]}"}
    if name == "signal":
        return denied(lambda: os.kill(int(q["vpid"][0]), 9))
    if name == "control-socket":
        try:
            s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(q["ctl"][0])
            s.sendall(b'{"cmd":"down"}\n'); reply = s.recv(300); s.close()
            return {"contained": b'"reply":"error"' in reply, "detail": f"connected; answer {reply[:160]!r}"}
        except OSError as e:
            return {"contained": True, "detail": f"{type(e).__name__}: {e}"}
    if name == "host-unix-socket":
        return denied(lambda: unix(q["sock"][0]))
    if name == "abstract-unix":
        return denied(lambda: unix("\0pactown-victim-abstract"))
    # No root, no capabilities, and the syscall side doors closed.
    if name == "capabilities":
        eff = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]
        bnd = [l for l in open("/proc/self/status") if l.startswith("CapBnd")][0].split()[1]
        # None held, and none to gain: an empty bounding set, or no_new_privs (started by a user,
        # pactown cannot empty the set, and an execve grants nothing under no_new_privs).
        status = {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if ":" in l and len(l.split()) > 1}
        held = all(int(status[c], 16) == 0 for c in ("CapEff", "CapPrm", "CapInh", "CapAmb"))
        gain = int(bnd, 16) != 0 and status.get("NoNewPrivs") != "1"
        return {"contained": held and not gain, "detail": f"CapEff {eff} CapBnd {bnd} NoNewPrivs {status.get('NoNewPrivs')}"}
    if name == "root":
        return {"contained": os.getuid() != 0 and os.geteuid() != 0, "detail": f"uid {os.getuid()} euid {os.geteuid()}"}
    if name == "mknod":
        return denied(lambda: os.mknod("kvm", stat.S_IFCHR | 0o600, os.makedev(10, 232)))
    if name == "kmsg":
        return denied(lambda: open("/dev/kmsg", "rb").read(100))
    if name == "syslog":
        buf = ctypes.create_string_buffer(4096)
        return syscall_denied("klogctl(READ_ALL)", libc.klogctl(3, buf, 4096), ok=lambda rc: rc < 0)
    if name == "clock":
        return syscall_denied("clock_settime", libc.clock_settime(0, struct.pack("qq", 0, 0)))
    if name == "hostname":
        return syscall_denied("sethostname", libc.sethostname(b"pwned", 5))
    if name == "sched-fifo":
        return denied(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1)))
    if name == "nice":
        return denied(lambda: os.nice(-20))
    if name == "lo-address":
        ip = shutil.which("ip") or "/usr/sbin/ip"
        r = subprocess.run([ip, "addr", "add", "10.99.0.1/32", "dev", "lo"], capture_output=True, text=True)
        return {"contained": r.returncode != 0, "detail": f"exit {r.returncode} {r.stderr.strip()[:120]}"}
    if name == "mptcp":
        def go():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262); s.settimeout(2)
            s.connect(("127.0.0.1", int(v))); return "connected"
        return denied(go)
    if name == "io-uring":
        params = ctypes.create_string_buffer(120)
        return syscall_denied("io_uring_setup", libc.syscall(425, 8, params), ok=lambda rc: rc < 0)
    if name == "raw-socket":
        return denied(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    if name == "setuid-plant":
        shutil.copy("/usr/bin/id", "planted-id"); os.chmod("planted-id", 0o4755)
        st = os.stat("planted-id")
        return {"contained": st.st_uid != 0, "detail": f"planted, owner uid {st.st_uid}, mode {oct(st.st_mode)}"}
    # Controls: what it may do.
    if name == "allowed-host":
        o = q["allowed"][0]
        return reached_through_proxy(get(f"http://{o}/", o))
    if name == "allowed-host-connect":
        status, detail = proxy(connect_req(q["allowed"][0]))
        return {"reached": status == 200, "detail": detail}
    if name == "declared":
        return reached_through_proxy(get("http://declared/health", "declared"))
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
"##;

/// The wasm attacker: the same attacks, as far as WASI has the calls at all.
pub const WASM: &str = r##"# attacker (wasm)

```rust markpact:file path=src/main.rs
use pactown_guest::http::{Body, Client, Request, Response, Result};

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

async fn fetch(url: &str) -> (u16, String) {
    let req = match Request::get(url).body(Body::empty()) {
        Ok(r) => r,
        Err(e) => return (0, format!("{e}")),
    };
    match Client::new().send(req).await {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r.body_mut().str_contents().await.map(|s| s.to_string()).unwrap_or_default();
            (status, body.chars().take(160).collect())
        }
        Err(e) => (0, format!("{e}")),
    }
}

async fn refused(url: &str) -> Response<Body> {
    let (status, body) = fetch(url).await;
    let contained = status == 403 || status == 502 || status == 0;
    pactown_guest::json(200, &serde_json::json!({"contained": contained, "detail": format!("{status} {body}")}))
}

async fn reached(url: &str) -> Response<Body> {
    let (status, body) = fetch(url).await;
    pactown_guest::json(200, &serde_json::json!({"reached": status == 200, "detail": format!("{status} {body}")}))
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>> {
    let path = req.uri().path().to_string();
    let query: std::collections::HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let q = |k: &str| query.get(k).cloned().unwrap_or_default();
    let port: u16 = q("port").parse().unwrap_or(9);
    let (v, admin) = (q("victim"), q("admin"));
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
        "http-loopback" => refused(&format!("http://127.0.0.1:{v}/health")).await,
        "http-name" => refused("http://victim/health").await,
        "http-admin" => refused(&format!("http://127.0.0.1:{admin}/_pactown/services")).await,
        "http-gateway" => refused(&format!("http://victim.localhost:{admin}/health")).await,
        "http-ipv6" => refused(&format!("http://[::1]:{v}/health")).await,
        "http-alias" => refused(&format!("http://127.0.0.2:{v}/health")).await,
        "http-dns-loopback" => refused(&format!("http://{}:{v}/health", q("alias"))).await,
        "http-outside" => refused(&format!("http://{}/", q("outside"))).await,
        "socket-outside" => outcome(std::net::TcpStream::connect(q("outside").as_str()).map(|_| "connected")),
        "allowed-host" => reached(&format!("http://{}/", q("allowed"))).await,
        "declared" => reached("http://declared/health").await,
        _ => pactown_guest::text(404, "unknown attack"),
    })
}
```
"##;

/// Attacks both kinds face (the suite's first 13, from before the proxy and namespace work).
pub const COMMON: &[&str] = &[
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

/// Native only: the proxy, other services' processes, pactown's sockets, root and the syscall
/// side doors.
pub const NATIVE_ONLY: &[&str] = &[
    "proxy-absolute",
    "proxy-name",
    "proxy-host-header",
    "proxy-connect",
    "proxy-admin",
    "proxy-gateway",
    "proxy-ipv6",
    "proxy-alias",
    "proxy-dns-loopback",
    "proxy-outside",
    "proxy-connect-outside",
    "proxy-connect-alias",
    "proc-environ",
    "proc-cmdline",
    "signal",
    "control-socket",
    "host-unix-socket",
    "abstract-unix",
    "capabilities",
    "root",
    "mknod",
    "kmsg",
    "syslog",
    "clock",
    "hostname",
    "sched-fifo",
    "nice",
    "lo-address",
    "mptcp",
    "io-uring",
    "raw-socket",
    "setuid-plant",
];

/// Wasm only: outgoing HTTP and sockets to everything but its dependencies and allowed hosts.
pub const WASM_ONLY: &[&str] = &[
    "http-loopback",
    "http-name",
    "http-admin",
    "http-gateway",
    "http-ipv6",
    "http-alias",
    "http-dns-loopback",
    "http-outside",
    "socket-outside",
];

/// What each kind may do, and must still be able to.
pub const NATIVE_CONTROLS: &[&str] = &["allowed-host", "allowed-host-connect", "declared"];
/// The same for wasm.
pub const WASM_CONTROLS: &[&str] = &["allowed-host", "declared"];
