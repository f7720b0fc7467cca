//! Every build step is sandboxed: a package's install script, a build backend, a `build.rs`
//! run as the build user with no capabilities, see none of the host's secrets, write nothing
//! outside the cache entry they build, and (where fetching and running package code can be
//! split) reach no network. What pactown writes into a sandbox comes from the README, never
//! from what a service left there.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::support::TestEnv;
use crate::support_up::{Up, http_get};

/// Paths a build must not be able to write (checked on the host afterwards).
const ESCAPES: &[&str] = &["/root/pactown-build-escape", "/etc/pactown-build-escape"];

fn assert_no_escape(report: &serde_json::Value) {
    assert!(
        report["uid"].as_u64().is_some_and(|u| u != 0),
        "the build ran as root: {report}"
    );
    assert_ne!(report["shadow"], "read", "{report}");
    for (k, v) in report.as_object().unwrap() {
        assert!(!k.starts_with("wrote"), "{k}: {v} in {report}");
    }
    for p in ESCAPES {
        assert!(!Path::new(p).exists(), "{p} was written by a build");
    }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if e.file_type().ok()?.is_dir()
            && let Some(found) = find(&p, name)
        {
            return Some(found);
        }
    }
    None
}

const NODE_EVIL: &str = r#"# app with an install script

```json markpact:file path=package.json
{"name": "app", "version": "1.0.0", "dependencies": {"evil": "file:./evil"}}
```

```json markpact:file path=evil/package.json
{"name": "evil", "version": "1.0.0", "scripts": {"install": "node install.js"}}
```

```javascript markpact:file path=evil/install.js
const fs = require("fs"), net = require("net"), path = require("path");
const r = { uid: process.getuid(), marker: "npm-install-script" };
try { fs.readFileSync("/etc/shadow"); r.shadow = "read"; } catch (e) { r.shadow = e.code; }
for (const p of ["/root/pactown-build-escape", "/etc/pactown-build-escape", path.join(process.env.HOME, "..", "..", "pactown-build-escape")]) {
  try { fs.writeFileSync(p, "x"); r["wrote " + p] = true; } catch (e) { r["write " + p] = e.code; }
}
const s = net.connect({ host: "1.1.1.1", port: 443, timeout: 3000 });
const done = (how) => { r.net = how; fs.writeFileSync(path.join(__dirname, "report.json"), JSON.stringify(r)); s.destroy(); };
s.on("connect", () => done("connected"));
s.on("error", (e) => done(e.code));
s.on("timeout", () => done("timeout"));
```

```javascript markpact:file path=server.js
require("http").createServer((req, res) => res.end("ok")).listen(process.env.PORT, "127.0.0.1");
```

```bash markpact:run
node server.js
```
"#;

/// A package's install script runs in the build sandbox, offline; and what the service leaves
/// in its sandbox (a rewritten package.json, a symlink in its place) is never trusted.
#[test]
fn npm_install_scripts_run_sandboxed_and_offline() {
    let env = TestEnv::with_empty_cache();
    env.write("app/README.md", NODE_EVIL).write(
        "n.pactown.yaml",
        "base_port: 0\nservices:\n  app: {timeout: 120}\n",
    );
    let up = Up::start(&env, "n.pactown.yaml");
    assert_eq!(http_get(up.port("app"), "/").unwrap().0, 200);
    let report_path = find(&env.cache_dir().join("node"), "report.json").expect("the script ran");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_path).unwrap()).unwrap();
    println!("npm install script: {report}");
    assert_eq!(report["marker"], "npm-install-script");
    assert_no_escape(&report);
    // `npm rebuild` runs the scripts with no network at all: refused, not unreachable.
    assert_eq!(report["net"], "EACCES", "{report}");
    up.down().ok();

    // As the service, rewrite its package.json to run something at the next install, and
    // plant a symlink to a file of the host in place of another file pactown writes.
    let sandbox = env.abs(".pactown-sandboxes/app");
    std::fs::write(
        sandbox.join("package.json"),
        r#"{"name":"app","scripts":{"preinstall":"touch /root/pactown-preinstall"},"dependencies":{"evil":"file:./evil"}}"#,
    )
    .unwrap();
    let outside = env.abs("host-file.txt");
    std::fs::write(&outside, "the host's").unwrap();
    std::fs::remove_file(sandbox.join("package-lock.json")).unwrap();
    std::os::unix::fs::symlink(&outside, sandbox.join("package-lock.json")).unwrap();
    let again = Up::start(&env, "n.pactown.yaml");
    assert!(!Path::new("/root/pactown-preinstall").exists());
    assert_eq!(
        std::fs::read_to_string(sandbox.join("package.json")).unwrap(),
        "{\"name\": \"app\", \"version\": \"1.0.0\", \"dependencies\": {\"evil\": \"file:./evil\"}}\n"
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "the host's");
    assert!(
        !std::fs::symlink_metadata(sandbox.join("package-lock.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    again.down().ok();
}

const RUST_EVIL: &str = r#"# a guest with a build script

```rust markpact:file path=build.rs
fn main() {
    let mut r = Vec::new();
    let uid = std::fs::read_to_string("/proc/self/status").unwrap_or_default().lines()
        .find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next().map(str::to_string)).unwrap_or_default();
    r.push(format!("\"uid\": {uid}"));
    let shadow = match std::fs::read_to_string("/etc/shadow") { Ok(_) => "read".to_string(), Err(e) => format!("{:?}", e.kind()) };
    r.push(format!("\"shadow\": \"{shadow}\""));
    let home = std::env::var("HOME").unwrap_or_default();
    for p in ["/root/pactown-build-escape".to_string(), "/etc/pactown-build-escape".to_string(), format!("{home}/../../pactown-build-escape")] {
        match std::fs::write(&p, "x") {
            Ok(()) => r.push(format!("\"wrote {p}\": true")),
            Err(e) => r.push(format!("\"write {p}\": \"{:?}\"", e.kind())),
        }
    }
    let net = std::net::TcpStream::connect_timeout(&"1.1.1.1:443".parse().unwrap(), std::time::Duration::from_secs(3));
    let net = match net { Ok(_) => "connected".to_string(), Err(e) => format!("{:?}", e.kind()) };
    r.push(format!("\"net\": \"{net}\""));
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(format!("{out}/report.json"), format!("{{{}}}", r.join(", "))).unwrap();
}
```

```rust markpact:file path=src/main.rs
use pactown_guest::http::{Body, Request, Response, Result};

#[wstd::http_server]
async fn main(_req: Request<Body>) -> Result<Response<Body>> {
    Ok(pactown_guest::text(200, include_str!(concat!(env!("OUT_DIR"), "/report.json"))))
}
```
"#;

/// A `build.rs` runs in the build sandbox, offline (crates are fetched before it runs).
#[test]
fn a_build_script_runs_sandboxed_and_offline() {
    let env = TestEnv::new();
    env.write("g/README.md", RUST_EVIL)
        .write("r.pactown.yaml", "base_port: 0\nservices:\n  g: {}\n");
    let up = Up::start(&env, "r.pactown.yaml");
    let (code, body) = http_get(up.port("g"), "/").unwrap();
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    println!("build.rs: {report}");
    assert_no_escape(&report);
    assert_eq!(report["net"], "PermissionDenied", "{report}");
}

/// A PEP 517 backend, in the package's own sdist, that records what it could do, and rewrites
/// the `home` of the environment it is built into (found in its installer's command line) to the
/// directory named in its `target.txt`: an attempt to widen what the service will read.
const BACKEND: &str = r#"import os, socket, zipfile, hashlib, base64

HERE = os.path.dirname(os.path.abspath(__file__))

def _probe():
    r = {"uid": os.getuid()}
    try:
        open("/etc/shadow").read(); r["shadow"] = "read"
    except OSError as e:
        r["shadow"] = type(e).__name__
    home = os.environ.get("HOME", "/")
    for p in ["/root/pactown-build-escape", "/etc/pactown-build-escape", os.path.join(home, "..", "..", "pactown-build-escape")]:
        try:
            open(p, "w").write("x"); r["wrote " + p] = True
        except OSError as e:
            r["write " + p] = type(e).__name__
    r["planted"] = _plant()
    return r

def _plant():
    target = open(os.path.join(HERE, "target.txt")).read().strip()
    pid = os.getpid()
    while pid > 1:
        args = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
        for a, b in zip(args, args[1:]):
            if a == b"--python" and b.endswith(b"/bin/python"):
                cfg = os.path.join(os.path.dirname(os.path.dirname(b.decode())), "pyvenv.cfg")
                try:
                    lines = open(cfg).read().splitlines()
                    lines = ["home = " + target if l.startswith("home = ") else l for l in lines]
                    open(cfg, "w").write("\n".join(lines) + "\n")
                    return cfg
                except OSError as e:
                    return type(e).__name__
        pid = int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])
    return "no environment being built"

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = os.path.join(metadata_directory, "evilpkg-1.0.dist-info")
    os.makedirs(info)
    open(os.path.join(info, "METADATA"), "w").write("Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n")
    return "evilpkg-1.0.dist-info"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {
        "evil_report.py": "REPORT = " + repr(_probe()) + "\n",
        "evilpkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n",
        "evilpkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: evil\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    name = "evilpkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, text in files.items():
            data = text.encode()
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append("evilpkg-1.0.dist-info/RECORD,,")
        z.writestr("evilpkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return name
"#;

/// An index with one package, `evilpkg`, served on loopback; returns its `/simple` URL. Its
/// backend points the environment it is built into at `target`.
fn evil_index(dir: &Path, target: &Path) -> String {
    let src = dir.join("evilpkg-1.0");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("evil_backend.py"), BACKEND).unwrap();
    std::fs::write(
        src.join("target.txt"),
        target.as_os_str().as_encoded_bytes(),
    )
    .unwrap();
    std::fs::write(
        src.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"evil_backend\"\nbackend-path = [\".\"]\n\n[project]\nname = \"evilpkg\"\nversion = \"1.0\"\n",
    )
    .unwrap();
    std::fs::write(
        src.join("PKG-INFO"),
        "Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n",
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, tarfile; t = tarfile.open(sys.argv[1], 'w:gz'); t.add(sys.argv[2], 'evilpkg-1.0'); t.close()",
        ])
        .arg(dir.join("evilpkg-1.0.tar.gz"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success());
    let sdist = std::fs::read(dir.join("evilpkg-1.0.tar.gz")).unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, ctype, body): (&str, &str, Vec<u8>) = if path
                .starts_with("/simple/evilpkg")
            {
                (
                    "200 OK",
                    "text/html",
                    b"<html><body><a href=\"/files/evilpkg-1.0.tar.gz\">evilpkg-1.0.tar.gz</a></body></html>".to_vec(),
                )
            } else if path == "/files/evilpkg-1.0.tar.gz" {
                ("200 OK", "application/octet-stream", sdist.clone())
            } else {
                ("404 Not Found", "text/plain", b"no".to_vec())
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/simple")
}

/// A package's build backend runs in the build sandbox, as the build user; and what it rewrites
/// in the environment it is built into (its `pyvenv.cfg`, whose `home` once chose a directory
/// the service could read) widens nothing the service sees.
#[test]
fn a_python_build_backend_runs_sandboxed() {
    let env = TestEnv::with_empty_cache();
    let secret = env.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token.txt"), "s3cret").unwrap();
    for (p, mode) in [(env.path(), 0o755), (&secret, 0o755)] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let index = evil_index(env.path(), &secret.join("bin"));
    let token = secret.join("token.txt");
    env.write(
        "p/README.md",
        &format!(
            "# p\n\n```python markpact:deps\nevilpkg\n```\n\n{}",
            crate::support_up::py_service(
                "import evil_report",
                &format!(
                    r#"        elif self.path == "/report":
            self.reply(200, evil_report.REPORT)
        elif self.path == "/secret":
            try:
                self.reply(200, {{"read": open({token:?}).read()}})
            except OSError as e:
                self.reply(200, {{"error": type(e).__name__}})"#
                ),
            )
            .split_once('\n')
            .unwrap()
            .1
        ),
    )
    .write(
        "p.pactown.yaml",
        "base_port: 0\nservices:\n  p: {health_check: /health, timeout: 120}\n",
    );
    let out = env
        .cmd(&["up", "-d", "p.pactown.yaml", "--listen", "127.0.0.1:0"])
        .env("PACTOWN_CACHE_DIR", env.cache_dir())
        .env("UV_EXTRA_INDEX_URL", &index)
        .output()
        .unwrap();
    let up = Up {
        env: &env,
        file: "p.pactown.yaml".into(),
        started: out.into(),
    };
    up.started.ok();
    let (code, body) = http_get(up.port("p"), "/report").unwrap();
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    println!("build backend: {report}");
    assert_no_escape(&report);
    // The backend did rewrite the environment's `home` (the attempt was made)...
    let planted = report["planted"].as_str().unwrap_or_default();
    assert!(planted.ends_with("pyvenv.cfg"), "{report}");
    let cfg = std::fs::read_to_string(planted).unwrap();
    assert!(
        cfg.contains(&format!("home = {}", secret.join("bin").display())),
        "{cfg}"
    );
    // ...and the service still cannot read the directory it named.
    let (code, body) = http_get(up.port("p"), "/secret").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        !body.contains("s3cret"),
        "the service read {}: {body}",
        token.display()
    );
}
