//! The dashboard in a real headless Chromium (Debian's `chromium`, installed here when missing),
//! driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: commands on fd
//! 3, answers on fd 4, each a JSON text ended by a NUL byte). The test writes a screenshot,
//! `dashboard.png`, next to the test binaries' temp dir.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service, wait_until};

/// The chromium binary (Debian's, without its shell wrapper), installed with apt when the
/// machine has none.
fn chromium() -> String {
    let found = |p: &str| std::path::Path::new(p).is_file();
    if !found("/usr/lib/chromium/chromium") {
        let out = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("apt-get");
        assert!(
            out.status.success(),
            "installing chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    "/usr/lib/chromium/chromium".to_string()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just opened and are ours alone.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A headless Chromium and one page of it.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let (their_in, our_out) = pipe();
        let (our_in, their_out) = pipe();
        let (r, w) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,1100",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only dup2 between fork and exec; dup2 leaves the new descriptors open on exec.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first: either end may already be 3 or 4.
                let (r, w) = (
                    libc::fcntl(r, libc::F_DUPFD, 10),
                    libc::fcntl(w, libc::F_DUPFD, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium");
        drop((their_in, their_out));
        let mut b = Self {
            child,
            to: std::fs::File::from(our_out),
            from: BufReader::new(std::fs::File::from(our_in)),
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Page.navigate", json!({"url": url}));
        b
    }

    /// Send a command (to the page once attached) and wait for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.to.write_all(msg.to_string().as_bytes()).unwrap();
        self.to.write_all(b"\0").unwrap();
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "chromium closed its pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluate JavaScript in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = base64_decode(r["data"].as_str().unwrap());
        std::fs::write(path, data).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | u32::from(val(*c)) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

const STATES: &str = "[...document.querySelectorAll('#services tbody tr')].map(r => r.dataset.service + '=' + r.dataset.state).join(',')";

#[test]
fn the_dashboard_shows_services_live_logs_and_a_stopped_service_in_red() {
    let env = TestEnv::new();
    let talker = py_service(
        "",
        r#"        elif self.path.startswith("/say/"):
            print("said " + self.path[len("/say/"):], flush=True)
            self.reply(200, {"said": True})"#,
    );
    env.write("talker/README.md", &talker).write("other/README.md", &py_service("", "")).write(
        "d.pactown.yaml",
        "name: d\nbase_port: 0\nservices:\n  state: {builtin: shared-state}\n  other: {health_check: /health}\n  \
         talker: {health_check: /health, depends_on: [other, state]}\n",
    );
    let up = Up::start(&env, "d.pactown.yaml");
    let gateway = up.gateway_port();
    // The page and everything it loads come from one origin, under a strict policy.
    let page = crate::support_up::http_raw(gateway, "GET", "/").unwrap();
    assert!(
        page.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{page}"
    );
    assert!(
        !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let mut b = Browser::open(&format!("http://127.0.0.1:{gateway}/"));
    wait_until(60, "every service ready on the page", || {
        b.eval(STATES).as_str() == Some("state=ready,other=ready,talker=ready")
    });
    assert_eq!(
        b.eval("document.querySelector('#ecosystem').textContent"),
        "d"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#graph .node').length"),
        3
    );
    b.eval("window.loadedOnce = true");

    // A new log line arrives without a reload.
    assert_eq!(
        http_get(up.port("talker"), "/say/hello-from-the-test")
            .unwrap()
            .0,
        200
    );
    wait_until(30, "the new log line on the page", || {
        b.eval("document.querySelector('#logs').textContent.includes('said hello-from-the-test')")
            == true
    });
    assert_eq!(
        b.eval("window.loadedOnce === true"),
        true,
        "the page was reloaded"
    );

    // Stopped from the CLI: red on the page.
    env.run_up(&["stop", "d.pactown.yaml", "other"]).ok();
    wait_until(30, "`other` stopped on the page", || {
        b.eval("document.querySelector('tr[data-service=other]').dataset.state") == "stopped"
    });
    let color = b.eval(
        "getComputedStyle(document.querySelector('tr[data-service=other] td')).backgroundColor",
    );
    assert_eq!(
        color, "rgb(255, 235, 233)",
        "a stopped service's row is red"
    );
    assert_eq!(b.eval("document.querySelector('#graph .node[data-service=other]').classList.contains('state-stopped')"), true);
    // Read-only: no restart buttons, and the action is refused.
    assert_eq!(
        b.eval("document.querySelectorAll('#services button').length"),
        0
    );
    let refused = crate::support_up::http_request_with(
        gateway,
        "POST",
        "/_pactown/actions/restart/other",
        &[("x-pactown-action", "1")],
        None,
    )
    .unwrap();
    assert_eq!(refused.0, 403, "{}", refused.1);

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    b.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    env.run_up(&["start", "d.pactown.yaml", "other"]).ok();
    wait_until(30, "`other` ready again", || {
        b.eval("document.querySelector('tr[data-service=other]').dataset.state") == "ready"
    });
}
