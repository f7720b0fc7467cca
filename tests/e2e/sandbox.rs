//! The attack suite: an attacker inside a native service and one inside a wasm service try every
//! door they can reach (see [`crate::attackers`]): the filesystem, other ports, their own proxy
//! with every trick, pactown's admin address and control socket, other services' processes,
//! root's powers and the syscall side doors. Every attempt must be denied or contained, what
//! they may do must still work, the host and the other services keep serving, and what the host
//! can see is in the anomaly log. The test prints the table and `N/N as expected`.

use std::io::{Read, Write};

use crate::attackers::{
    COMMON, NATIVE, NATIVE_CONTROLS, NATIVE_ONLY, WASM, WASM_CONTROLS, WASM_ONLY,
};
use crate::scene::{Scene, assert_all_as_expected};
use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service};

#[test]
fn every_attack_is_denied_or_contained_in_every_sandbox_kind() {
    let env = TestEnv::new();
    let scene = Scene::new(&env);
    let (allowed, alias) = (&scene.allowed, &scene.alias);
    let victim = py_service(
        "import socket as _s\nopen('secret.txt', 'w').write('s3cret')\nA = _s.socket(_s.AF_UNIX); A.bind('\\0pactown-victim-abstract'); A.listen(8)",
        "",
    );
    env.write("victim/README.md", &victim)
        .write("declared/README.md", &py_service("", ""))
        .write("attacker/README.md", NATIVE)
        .write("wattacker/README.md", WASM)
        .write(
            "a.pactown.yaml",
            &format!(
                "base_port: 0\nservices:\n  victim: {{health_check: /health, env: {{VICTIM_SECRET: the-victims-secret}}}}\n  \
                 declared: {{health_check: /health}}\n  \
                 attacker:\n    health_check: /health\n    depends_on: [declared]\n    allowed_hosts: [\"{allowed}\", {alias}]\n    limits: {{memory: 96M, processes: 48}}\n  \
                 wattacker:\n    depends_on: [declared]\n    allowed_hosts: [\"{allowed}\", {alias}]\n    limits: {{memory: 32M, cpu_time: 300ms}}\n"
            ),
        );
    let up = Up::start(&env, "a.pactown.yaml");
    let attacker = up.service("attacker");
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
    assert_eq!(attacker["sandbox"], "full", "{attacker}");
    assert_eq!(up.service("wattacker")["sandbox"], "full");

    let plan = [
        ("native", "attacker", [COMMON, NATIVE_ONLY], NATIVE_CONTROLS),
        ("wasm", "wattacker", [COMMON, WASM_ONLY], WASM_CONTROLS),
    ];
    assert_all_as_expected(&scene.attack(&env, &up, &plan));

    // Nothing was planted or written on the host, nobody reached the host's socket, and
    // everyone still serves.
    assert!(!env.abs(".pactown-sandboxes/victim/planted.txt").exists());
    scene.assert_host_untouched(&env, &up, &["victim", "declared", "attacker", "wattacker"]);
    let (victim_port, admin) = (up.port("victim"), up.gateway_port());
    // The host saw and logged what it could see (the log is written within a tick).
    crate::support_up::wait_until(10, "the denials in the anomaly log", || {
        let a = env.read(".pactown/a/logs/anomalies.log");
        let has = |service: &str, action: &str, target: &str| {
            a.lines().any(|l| {
                l.contains(&format!("\"service\":\"{service}\""))
                    && l.contains(&format!("\"action\":\"{action}\""))
                    && l.contains(target)
            })
        };
        let loopback = format!("127.0.0.1:{victim_port}");
        has("wattacker", "tcp connect", "")
            && has("wattacker", "memory over its limit", "")
            && has("wattacker", "http call", "127.0.0.1")
            && has("wattacker", "http call", alias)
            && has("attacker", "http call", &loopback)
            && has("attacker", "http call", &format!("127.0.0.1:{admin}"))
            && has("attacker", "proxy connect", &loopback)
            && has("attacker", "tcp connect", &loopback)
            && has("attacker", "memory over its limit", "")
            && has("attacker", "syscall", "io_uring_setup")
            && has("attacker", "syscall", "mknodat")
            && has("attacker", "socket", "MPTCP")
    });

    // The planted setuid file is the attacker's own, not root's: run by another user it gives
    // that user no one else's powers, and the next `up` takes its setuid bit away.
    let planted = env.abs(".pactown-sandboxes/attacker/planted-id");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&planted)
        .arg("-u")
        .output()
        .unwrap();
    let euid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && euid != "0",
        "the planted file ran as euid {euid:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    up.down().ok();
    let again = Up::start(&env, "a.pactown.yaml");
    again
        .started
        .stderr_has("removed 1 setuid, setgid or device file(s)");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&planted).unwrap().permissions().mode();
    assert_eq!(mode & 0o6000, 0, "mode {mode:o}");
}

/// A client of a stable address cannot pass itself off as a service: every `x-pactown-*`
/// header it sends is removed, and the caller a service sees comes from pactown alone.
#[test]
fn forged_pactown_headers_never_reach_a_service() {
    let env = TestEnv::new();
    let echo = py_service(
        "",
        r#"        elif self.path == "/headers":
            self.reply(200, {k.lower(): v for k, v in self.headers.items()})"#,
    );
    let caller = py_service(
        "import urllib.request",
        r#"        elif self.path == "/via-proxy":
            req = urllib.request.Request("http://echo/headers", headers={"x-pactown-caller": "gateway"})
            with urllib.request.urlopen(req, timeout=5) as r:
                self.reply(200, json.loads(r.read()))"#,
    );
    env.write("echo/README.md", &echo)
        .write("caller/README.md", &caller)
        .write(
            "h.pactown.yaml",
            "base_port: 0\nservices:\n  echo: {health_check: /health}\n  caller: {health_check: /health, depends_on: [echo]}\n",
        );
    let up = Up::start(&env, "h.pactown.yaml");
    let raw = {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", up.port("echo"))).unwrap();
        write!(
            s,
            "GET /headers HTTP/1.1\r\nHost: echo\r\nx-pactown-caller: gateway\r\nx-pactown-proof: guess\r\nx-pactown-hops: 1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    assert!(
        !body.contains("x-pactown"),
        "forged headers reached the service: {body}"
    );
    // Through its proxy, the caller is what pactown knows, whatever it claimed.
    let (code, body) = http_get(up.port("caller"), "/via-proxy").unwrap();
    assert_eq!(code, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["x-pactown-caller"], "caller", "{seen}");
    assert!(seen.get("x-pactown-proof").is_none(), "{seen}");
}

/// Credentials in a package index URL are for builds: no service sees them.
#[test]
fn package_index_credentials_never_reach_a_service() {
    let env = TestEnv::new();
    let svc = py_service(
        "",
        r#"        elif self.path == "/env":
            self.reply(200, dict(os.environ))"#,
    );
    env.write("s/README.md", &svc).write(
        "e.pactown.yaml",
        "base_port: 0\nservices:\n  s: {health_check: /health}\n",
    );
    let started = env
        .cmd(&["up", "-d", "e.pactown.yaml", "--listen", "127.0.0.1:0"])
        .env("PACTOWN_CACHE_DIR", env.cache_dir())
        .env(
            "PIP_INDEX_URL",
            "https://me:hunter2@pypi.internal.example/simple",
        )
        .env(
            "UV_INDEX_URL",
            "https://token:abc123@uv.internal.example/simple",
        )
        .output()
        .unwrap();
    let up = Up {
        env: &env,
        file: "e.pactown.yaml".into(),
        started: started.into(),
    };
    up.started.ok();
    let (_, body) = http_get(up.port("s"), "/env").unwrap();
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seen["PIP_INDEX_URL"],
        "https://pypi.internal.example/simple"
    );
    assert_eq!(seen["UV_INDEX_URL"], "https://uv.internal.example/simple");
    assert!(
        !body.contains("hunter2") && !body.contains("abc123"),
        "{body}"
    );
}
