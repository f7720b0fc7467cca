//! `pactown up` for real: real child processes, real HTTP through the stable addresses, control
//! from a second process. Every ecosystem uses `base_port: 0` or `port: 0`, so the OS picks the
//! ports and tests never collide.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::TestEnv;
use crate::support_up::{Up, alive, http_get, http_request, py_service, test_cache, wait_until};

/// Copy an example into the test's folder with OS-chosen ports.
pub fn example(env: &TestEnv, name: &str) -> String {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    copy_dir(&src, &env.abs(name));
    let yaml = std::fs::read_dir(env.abs(name))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".pactown.yaml"))
        .expect("an ecosystem file");
    let text = std::fs::read_to_string(&yaml).unwrap();
    let text = regex_replace_ports(&text);
    std::fs::write(&yaml, text).unwrap();
    yaml.strip_prefix(env.path())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn regex_replace_ports(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("base_port:") || t.starts_with("port:") {
                format!(
                    "{}{}",
                    &l[..l.len() - t.len()],
                    if t.starts_with("base_port") {
                        "base_port: 0"
                    } else {
                        "port: 0"
                    }
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with(".pactown") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(name));
        } else {
            std::fs::copy(e.path(), to.join(name)).unwrap();
        }
    }
}

/// The README's first command: a JavaScript Worker gateway, a Flask catalog and a Rust pricing
/// service as components, and FastAPI natively, all calling each other by name; every
/// service's own checks pass.
#[test]
fn the_polyglot_shop_answers_through_its_worker_gateway() {
    let env = TestEnv::new();
    let file = example(&env, "polyglot");
    let up = Up::start(&env, &file);
    for (name, kind) in [
        ("gateway", "wasm-http"),
        ("catalog", "wasm-http"),
        ("pricing", "wasm-http"),
        ("orders", "native"),
    ] {
        assert_eq!(up.service(name)["kind"], kind, "{name}");
    }
    let gw = up.port("gateway");
    let (code, body) = http_get(gw, "/api/products").unwrap();
    assert_eq!(code, 200, "{body}");
    let products: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tea = products
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == "tea")
        .expect("tea in the catalog");
    assert_eq!(tea["quote"]["total_cents"], 650, "{body}");
    // Ordered through the Worker → FastAPI (native) → Rust → Flask, each by name.
    let (code, body) =
        http_request(gw, "POST", "/api/orders", Some(r#"{"sku":"tea","qty":10}"#)).unwrap();
    assert_eq!(code, 201, "{body}");
    let order: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(order["discount_pct"], 10, "{body}");
    assert_eq!(order["total_cents"], 5850, "{body}");
    let (code, page) = http_get(gw, "/").unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("The Polyglot Shop") && page.contains("Stoneware mug"),
        "{page}"
    );
    env.run_up(&["test", &file])
        .ok()
        .stderr_has("17 checks passed, 0 failed");
}

#[test]
fn the_four_service_platform_answers_through_the_gateway() {
    let env = TestEnv::new();
    let file = example(&env, "platform");
    let up = Up::start(&env, &file);
    let gw = up.port("gateway");
    let (code, body) = http_request(
        gw,
        "POST",
        "/api/users",
        Some(r#"{"name":"Ada","email":"ada@example.com"}"#),
    )
    .unwrap();
    assert_eq!(code, 201, "{body}");
    let (code, body) = http_get(gw, "/api/users").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"count\":1"), "{body}");
    // gateway → web → api → database, each through the injected URL
    let (code, page) = http_get(gw, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("Ada"), "{page}");
    let status = up.status();
    for s in status["services"].as_array().unwrap() {
        assert_eq!(s["state"], "ready", "{s}");
    }
    up.down().ok();
}

#[test]
fn a_killed_replica_is_restarted_and_the_address_keeps_answering() {
    let env = TestEnv::new();
    env.write("api/README.md", &py_service("", "")).write(
        "r.pactown.yaml",
        "base_port: 0\nservices:\n  api:\n    replicas: 2\n    health_check: /health\n",
    );
    let up = Up::start(&env, "r.pactown.yaml");
    let port = up.port("api");
    let before = up.service("api");
    let shim = before["replicas"][0]["pid"].as_i64().unwrap() as i32;
    let victim = crate::support_up::descendants(shim)[0];
    // SAFETY: killing a process this test's ecosystem started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    // Every request keeps succeeding while the replica is down and coming back.
    let mut served = 0;
    wait_until(30, "the replica to be restarted and ready", || {
        let (code, _) = http_get(port, "/whoami").expect("the stable address answers");
        assert_eq!(code, 200, "a request failed while a replica was down");
        served += 1;
        let s = up.service("api");
        s["restarts"] == 1 && s["state"] == "ready"
    });
    assert!(served > 0);
    let after = up.service("api");
    assert_ne!(
        after["replicas"][0]["pid"], before["replicas"][0]["pid"],
        "a new process"
    );
    assert_eq!(
        after["replicas"][1]["pid"], before["replicas"][1]["pid"],
        "the sibling was not touched"
    );
    // Both replicas serve: round robin reaches both (each has its own internal port; pids are
    // per sandbox, each in its own PID namespace).
    let ports: std::collections::HashSet<String> = (0..6)
        .map(|_| {
            let body = http_get(port, "/whoami").unwrap().1;
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["port"].to_string()
        })
        .collect();
    assert_eq!(ports.len(), 2, "round robin over both replicas: {ports:?}");
}

/// Reference defect 1: services froze after ~64 KB of output.
#[test]
fn a_service_that_writes_10_mb_of_logs_keeps_serving() {
    let env = TestEnv::new();
    let noisy =
        "line = 'x' * 1023\nfor _ in range(10 * 1024):\n    print(line)\nsys.stdout.flush()";
    env.write("noisy/README.md", &py_service(noisy, "")).write(
        "n.pactown.yaml",
        "base_port: 0\nservices:\n  noisy:\n    health_check: /health\n",
    );
    let up = Up::start(&env, "n.pactown.yaml");
    let port = up.port("noisy");
    for _ in 0..20 {
        assert_eq!(http_get(port, "/health").unwrap().0, 200);
    }
    let logs = env.path().join(".pactown/n/logs");
    let total: u64 = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("noisy.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        total >= 10 * 1024 * 1024,
        "all 10 MB are in the logs ({total} bytes)"
    );
    assert!(logs.join("noisy.log.1").exists(), "the log rotated");
}

/// Reference defects 2 and 5: nothing was visible or stoppable from another terminal, and a
/// stopped shell wrapper could leave the real server running.
#[test]
fn status_logs_restart_and_down_from_a_second_process() {
    let env = TestEnv::new();
    // A shell wrapper with a server and a background helper that escapes into its own session.
    let svc = py_service("print('hello from the log', flush=True)", "").replace(
        "exec python3 server.py",
        "setsid sleep 600 &\npython3 server.py",
    );
    env.write("api/README.md", &svc)
        .write("web/README.md", &py_service("", ""))
        .write(
            "c.pactown.yaml",
            "name: ctl\nbase_port: 0\nservices:\n  api:\n    health_check: /health\n  web:\n    health_check: /health\n    depends_on: [api]\n",
        );
    let up = Up::start(&env, "c.pactown.yaml");
    let status = up.status();
    assert_eq!(status["running"], true);
    let api = &status["services"][0];
    assert_eq!(api["name"], "api");
    assert_eq!(api["state"], "ready");
    assert!(api["port"].as_u64().unwrap() > 0);
    let replica = &api["replicas"][0];
    for field in ["pid", "state", "restarts"] {
        assert!(!replica[field].is_null(), "replica {field} in {replica}");
    }
    env.run_up(&["logs", "c.pactown.yaml", "api"])
        .ok()
        .stdout_has("api | hello from the log");
    env.run_up(&["status", "c.pactown.yaml"])
        .ok()
        .stdout_has("api")
        .stdout_has("ready");

    let old_pid = replica["pid"].clone();
    env.run_up(&["restart", "c.pactown.yaml", "api"])
        .ok()
        .stderr_has("restarted");
    let api = up.service("api");
    assert_ne!(api["replicas"][0]["pid"], old_pid);
    assert_eq!(api["restarts"], 1);
    env.run_up(&["restart", "c.pactown.yaml", "nope"])
        .code(1)
        .stderr_has("no service `nope`");

    let pids = up.all_pids();
    assert!(
        pids.len() >= 6,
        "pactown, 2 shims, their shells, servers and the helper: {pids:?}"
    );
    up.down().ok().stderr_has("ctl stopped");
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived `down`");
    }
    let after = env
        .run_up(&["status", "c.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(after["running"], false);
    assert_eq!(after["services"][0]["state"], "stopped");
}

/// Reference defect 3: a service that never got healthy was reported as started.
#[test]
fn a_service_that_never_gets_healthy_fails_up_with_its_log_tail() {
    let env = TestEnv::new();
    let sick = py_service(
        "print('connecting to the database... refused', flush=True)",
        "",
    )
    .replace(
        "if self.path == \"/health\":\n            self.reply(200",
        "if self.path == \"/health\":\n            self.reply(500",
    );
    env.write("ok/README.md", &py_service("", ""))
        .write("sick/README.md", &sick)
        .write(
            "h.pactown.yaml",
            "base_port: 0\nservices:\n  ok:\n    health_check: /health\n  sick:\n    health_check: /health\n    timeout: 2\n    depends_on: [ok]\n",
        );
    let r = env.run_up(&["up", "-d", "h.pactown.yaml"]);
    r.code(1)
        .stderr_has("service `sick` was not ready within 2s")
        .stderr_has("connecting to the database... refused")
        .stderr_has("everything that was started has been stopped");
    let status = env
        .run_up(&["status", "h.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(status["running"], false, "nothing is left running");
    // and the foreground form fails the same way
    env.run_up(&["up", "h.pactown.yaml"])
        .code(1)
        .stderr_has("was not ready within 2s");
}

/// Reference defects 4 and 6: `run` killed whatever listened on its port, and ports were
/// checked, released and raced for.
#[test]
fn a_busy_port_is_reported_and_the_next_free_one_used() {
    let env = TestEnv::new();
    let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let busy = held.local_addr().unwrap().port();
    env.write("api/README.md", &py_service("", "")).write(
        "p.pactown.yaml",
        &format!(
            "base_port: {busy}\nservices:\n  api:\n    port: {busy}\n    health_check: /health\n"
        ),
    );
    let up = Up::start(&env, "p.pactown.yaml");
    up.started
        .stderr_has(&format!("its port {busy} for `api` is busy; using"));
    let port = up.port("api");
    assert_ne!(port, busy);
    assert!(port > busy, "the next free port from base_port upward");
    assert_eq!(http_get(port, "/health").unwrap().0, 200);
    drop(up);
    // The listener we held was never touched.
    held.set_nonblocking(true).unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", busy)).is_ok());
}

/// `run README.md` in the foreground: a busy port is never taken from its owner; Ctrl+C stops.
#[test]
fn run_a_readme_in_the_foreground_without_touching_other_processes() {
    let env = TestEnv::new();
    env.write("hello/README.md", &py_service("", ""));
    // Another program already serves on the port we ask for.
    let mut other = std::process::Command::new("python3")
        .args(["-m", "http.server", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(other.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let busy: u16 = line
        .split("port ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();

    let mut child = env
        .cmd(&["run", "hello/README.md", "--port", &busy.to_string()])
        .env("PACTOWN_CACHE_DIR", test_cache())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut moved_to = None;
    let mut text = String::new();
    loop {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "pactown run ended early:\n{text}"
        );
        text.push_str(&l);
        if let Some(rest) = l.split("is busy; using ").nth(1) {
            moved_to = rest.trim().parse::<u16>().ok();
        }
        if l.contains(" ready in ") {
            break;
        }
    }
    let port = moved_to.expect("the busy port is reported");
    assert_eq!(http_get(port, "/whoami").unwrap().0, 200);
    // SAFETY: interrupting our own child, as Ctrl+C would.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other program was not touched"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

/// Every child dies with pactown, even when pactown is killed with SIGKILL.
#[test]
fn children_die_when_pactown_is_killed() {
    let env = TestEnv::new();
    let svc = py_service("", "").replace(
        "exec python3 server.py",
        "setsid sleep 600 &\npython3 server.py",
    );
    env.write("api/README.md", &svc).write(
        "k.pactown.yaml",
        "base_port: 0\nservices:\n  api:\n    replicas: 2\n    health_check: /health\n",
    );
    let mut up = env
        .cmd(&["up", "k.pactown.yaml"])
        .env("PACTOWN_CACHE_DIR", test_cache())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(up.stderr.take().unwrap());
    loop {
        let mut l = String::new();
        assert!(err.read_line(&mut l).unwrap() > 0, "up ended early");
        if l.contains(" ready in ") {
            break;
        }
    }
    let status = env
        .run_up(&["status", "k.pactown.yaml", "--json"])
        .ok()
        .json();
    let mut pids = Vec::new();
    for r in status["services"][0]["replicas"].as_array().unwrap() {
        let shim = r["pid"].as_i64().unwrap() as i32;
        pids.push(shim);
        pids.extend(crate::support_up::descendants(shim));
    }
    assert!(pids.len() >= 6, "{pids:?}");
    up.kill().unwrap();
    up.wait().unwrap();
    wait_until(10, "every child of the killed pactown to exit", || {
        pids.iter().all(|p| !alive(*p))
    });
    // the state dir says it is not running, and a new `up` can start
    let status = env
        .run_up(&["status", "k.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(status["running"], false);
}

#[test]
fn a_second_up_says_the_ecosystem_is_already_running() {
    let env = TestEnv::new();
    env.write("api/README.md", &py_service("", "")).write(
        "s.pactown.yaml",
        "name: twice\nbase_port: 0\nservices:\n  api: {}\n",
    );
    let _up = Up::start(&env, "s.pactown.yaml");
    env.run_up(&["up", "-d", "s.pactown.yaml"])
        .code(1)
        .stderr_has("ecosystem `twice` is already running");
    env.run_up(&["up", "s.pactown.yaml"])
        .code(1)
        .stderr_has("is already running (pid");
}

/// Reference defect 3: `auto_restart` and `replicas` were ignored.
#[test]
fn auto_restart_off_leaves_a_crashed_service_failed() {
    let env = TestEnv::new();
    let crashy = py_service(
        "",
        "        elif self.path == \"/crash\":\n            os._exit(3)",
    );
    env.write("api/README.md", &crashy).write(
        "a.pactown.yaml",
        "base_port: 0\nservices:\n  api:\n    auto_restart: false\n    health_check: /health\n",
    );
    let up = Up::start(&env, "a.pactown.yaml");
    let port = up.port("api");
    let _ = http_get(port, "/crash");
    wait_until(10, "the service to be failed", || {
        up.service("api")["state"] == "failed"
    });
    let api = up.service("api");
    assert_eq!(api["replicas"][0]["last_exit"], 3);
    assert_eq!(api["restarts"], 0);
    let (code, body) = http_get(port, "/health").unwrap();
    assert_eq!(code, 503, "no ready instance: {body}");
    assert!(body.contains("has no ready instance"), "{body}");
}

/// Reference defect 6: regexes rewrote `-p N` and `:NNNN` anywhere in the run command.
#[test]
fn the_run_command_is_never_rewritten() {
    let env = TestEnv::new();
    let svc = py_service(
        "",
        "        elif self.path == \"/args\":\n            self.reply(200, sys.argv[1:])",
    )
    .replace(
        "exec python3 server.py",
        "exec python3 server.py -p 8001 --port 9000 host:1234",
    );
    env.write("api/README.md", &svc)
        .write("w.pactown.yaml", "base_port: 0\nservices:\n  api: {}\n");
    let up = Up::start(&env, "w.pactown.yaml");
    let (_, body) = http_get(up.port("api"), "/args").unwrap();
    assert_eq!(body, r#"["-p", "8001", "--port", "9000", "host:1234"]"#);
}

/// Reference defect 10: secrets ended up in a world-readable log database.
#[test]
fn secrets_stay_out_of_the_state_dir_and_plan_output() {
    let env = TestEnv::new();
    env.write("api/README.md", &py_service("", "")).write(
        "x.pactown.yaml",
        "base_port: 0\nservices:\n  api:\n    env:\n      API_TOKEN: s3cr3t-value\n",
    );
    let up = Up::start(&env, "x.pactown.yaml");
    env.run_up(&["plan", "x.pactown.yaml", "--json"]).ok();
    assert!(
        !env.run_up(&["plan", "x.pactown.yaml", "--json"])
            .stdout
            .contains("s3cr3t-value")
    );
    let mut stack = vec![env.path().join(".pactown")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_type().unwrap().is_file() {
                let text = std::fs::read(e.path()).unwrap();
                assert!(
                    !String::from_utf8_lossy(&text).contains("s3cr3t-value"),
                    "secret in {}",
                    e.path().display()
                );
            }
        }
    }
    let mode = std::fs::metadata(env.path().join(".pactown/x/state.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o077,
        0,
        "state.json is private"
    );
    drop(up);
}

/// `build` prepares every sandbox and starts nothing.
#[test]
fn build_prepares_every_service_and_starts_nothing() {
    let env = TestEnv::new();
    env.write("api/README.md", &py_service("", ""))
        .write("b.pactown.yaml", "base_port: 0\nservices:\n  api: {}\n");
    let report = env
        .run_up(&["build", "b.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(report["api"]["kind"], "native");
    assert!(env.abs(".pactown-sandboxes/api/server.py").is_file());
    let status = env
        .run_up(&["status", "b.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(status["running"], false);
}
