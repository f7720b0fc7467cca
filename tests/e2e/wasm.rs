//! WASM-first: Rust READMEs built into WASI components and run in wasmtime, with capabilities
//! denied by default. Real cargo builds, real wasmtime, real HTTP.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, http_request};

/// A wasm-http guest that tries what a sandbox must refuse.
pub const GUEST: &str = r#"# guest

```rust markpact:file path=src/main.rs
use pactown_guest::http::{Body, Request, Response, Result};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNT: AtomicU32 = AtomicU32::new(0);

fn denied(what: std::io::Error) -> Response<Body> {
    pactown_guest::text(403, format!("denied: {what}"))
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>> {
    let path = req.uri().path().to_string();
    Ok(match path.as_str() {
        "/count" => pactown_guest::text(200, (COUNT.fetch_add(1, Ordering::SeqCst) + 1).to_string()),
        "/passwd" => match std::fs::read_to_string("/etc/passwd") {
            Ok(t) => pactown_guest::text(200, t),
            Err(e) => denied(e),
        },
        "/shared" => match std::fs::read_to_string("/shared/hello.txt") {
            Ok(t) => pactown_guest::text(200, t),
            Err(e) => denied(e),
        },
        "/write" => match std::fs::write("/shared/new.txt", "x") {
            Ok(()) => pactown_guest::text(200, "written"),
            Err(e) => denied(e),
        },
        "/socket" => match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => pactown_guest::text(200, "connected"),
            Err(e) => denied(e),
        },
        "/memory" => {
            let mut hog = Vec::new();
            loop {
                hog.push(vec![7u8; 8 << 20]);
                std::hint::black_box(&hog);
            }
        }
        "/loop" => {
            let mut i = 0u64;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        "/env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            vars.sort();
            pactown_guest::text(200, vars.join(","))
        }
        _ => pactown_guest::text(200, "ok"),
    })
}
```
"#;

fn guest_env() -> TestEnv {
    let env = TestEnv::new();
    env.write("guest/README.md", GUEST).write("shared/hello.txt", "hello from the host\n").write(
        "w.pactown.yaml",
        "base_port: 0\nservices:\n  guest:\n    limits: {memory: 32M, cpu_time: 200ms}\n    dirs: [./shared]\n    env: {GREETING: hi}\n",
    );
    env
}

#[test]
fn a_rust_readme_is_served_as_wasm_with_a_fresh_instance_per_request() {
    let env = guest_env();
    let up = Up::start(&env, "w.pactown.yaml");
    let svc = up.service("guest");
    assert_eq!(svc["kind"], "wasm-http");
    let port = up.port("guest");
    for _ in 0..3 {
        let (code, body) = http_get(port, "/count").unwrap();
        assert_eq!(
            (code, body.as_str()),
            (200, "1"),
            "a global counter stays at 1: a fresh instance per request"
        );
    }
    // Only declared variables: pactown's and the service's own, nothing from the host.
    let (_, vars) = http_get(port, "/env").unwrap();
    assert_eq!(vars, "GREETING,SERVICE_NAME,SERVICE_URL");
    // A granted directory is readable, and read-only.
    assert_eq!(
        http_get(port, "/shared").unwrap().1,
        "hello from the host\n"
    );
    let (code, body) = http_get(port, "/write").unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(!env.abs("shared/new.txt").exists());
}

#[test]
fn attacks_fail_inside_the_guest_and_the_next_request_succeeds() {
    let env = guest_env();
    let up = Up::start(&env, "w.pactown.yaml");
    let port = up.port("guest");
    let next_ok = || assert_eq!(http_get(port, "/count").unwrap(), (200, "1".to_string()));

    let (code, body) = http_get(port, "/passwd").unwrap();
    assert_eq!(code, 403, "no filesystem unless granted: {body}");
    next_ok();
    let (code, body) = http_get(port, "/socket").unwrap();
    assert_eq!(
        code, 403,
        "an undeclared socket fails inside the guest: {body}"
    );
    next_ok();
    let (code, body) = http_get(port, "/memory").unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("ran out of memory") || body.contains("trapped"),
        "{body}"
    );
    next_ok();
    let (code, body) = http_get(port, "/loop").unwrap();
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("CPU time limit of 200ms"), "{body}");
    next_ok();

    let logs = env
        .run_up(&["logs", "w.pactown.yaml", "guest"])
        .ok()
        .stdout
        .clone();
    assert!(
        logs.contains("denied tcp connect 127.0.0.1:9"),
        "the refused socket is logged on the host:\n{logs}"
    );
    assert!(
        logs.contains("GET /loop failed in the guest: ran past its CPU time limit"),
        "{logs}"
    );
    assert!(logs.contains("GET /memory failed in the guest"), "{logs}");
    assert_eq!(up.service("guest")["state"], "ready");
}

#[test]
fn a_warm_second_up_runs_no_cargo_and_compiles_nothing() {
    let env = guest_env();
    drop(Up::start(&env, "w.pactown.yaml"));
    // Any toolchain call would now fail loudly.
    for tool in ["cargo", "rustc", "rustup"] {
        env.write(
            &format!("fakebin/{tool}"),
            "#!/bin/sh\necho \"$0 must not run on a warm start\" >&2\nexit 99\n",
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            env.abs(&format!("fakebin/{tool}")),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let path = format!(
        "{}:{}",
        env.abs("fakebin").display(),
        std::env::var("PATH").unwrap()
    );
    let out = env
        .cmd(&["up", "-d", "w.pactown.yaml"])
        .env("PACTOWN_CACHE_DIR", crate::support_up::test_cache())
        .env("PATH", &path)
        .output()
        .unwrap();
    let run = crate::support::Run::from(out);
    let up = Up {
        env: &env,
        file: "w.pactown.yaml".into(),
        started: run,
    };
    up.started.ok();
    let daemon_log = env.read(".pactown/w/logs/pactown.log");
    assert!(
        daemon_log.contains("wasm: 0 toolchain builds, 0 compiled, 1 loaded precompiled"),
        "{daemon_log}"
    );
    assert_eq!(http_get(up.port("guest"), "/count").unwrap().0, 200);
}

/// `pactown run guest/README.md --once` in `env` for `guest` (the README's text) with one check
/// added (`GET /count` answers 200), its cache `cache`.
fn run_once_checked(env: &TestEnv, guest: &str, cache: &str) -> std::process::Command {
    env.write(
        "guest/README.md",
        &format!("{guest}\n```http markpact:test\nGET /count EXPECT 200\n```\n"),
    );
    let mut cmd = env.cmd(&[
        "run",
        "guest/README.md",
        "--once",
        "--port",
        "0",
        "--listen",
        "127.0.0.1:0",
    ]);
    cmd.env("PACTOWN_CACHE_DIR", cache);
    cmd
}

/// The engine `run` begins before it parses its command line has the largest pool (~8 TiB of
/// address space, never committed); under an address-space limit that this exceeds and the
/// service's own pool fits in (~0.5 TiB), the service still runs, in an engine of its size.
#[test]
fn a_wasm_service_runs_under_an_address_space_limit_the_largest_pool_exceeds() {
    let env = TestEnv::new();
    let mut cmd = run_once_checked(&env, GUEST, &env.cache_dir().display().to_string());
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let one_tib = libc::rlimit {
                rlim_cur: 1 << 40,
                rlim_max: 1 << 40,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &one_tib) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    crate::support::Run::from(cmd.output().expect("spawn pactown"))
        .ok()
        .stderr_has("1 check passed, 0 failed");
}

/// `PACTOWN_CACHE_DIR` relative to where pactown is started is that cache, for the Rust build
/// too (cargo runs in a project directory of its own, where the relative path named nothing:
/// `cargo fetch failed ... failed to read .../<relative cache>/rust/pactown-guest-…/Cargo.toml`).
#[test]
fn a_relative_cache_dir_is_the_one_where_pactown_started() {
    let env = TestEnv::new();
    // Sources of its own, so that something is built.
    let mark = format!(
        "// built under a relative cache, in {}\nuse ",
        env.path().display()
    );
    let guest = GUEST.replacen("use ", &mark, 1);
    let up = "../".repeat(env.path().components().count() - 1);
    let absolute = env.cache_dir().display().to_string();
    let cache = format!("{up}{}", absolute.trim_start_matches('/'));
    let mut cmd = run_once_checked(&env, &guest, &cache);
    crate::support::Run::from(cmd.output().expect("spawn pactown"))
        .ok()
        .stderr_has("1 check passed, 0 failed");
}

#[test]
fn a_compile_error_points_at_the_readme_line() {
    let env = TestEnv::new();
    env.write(
        "broken/README.md",
        "# broken\n\n```rust markpact:file path=src/main.rs\nfn main() {\n    let n: u32 = \"three\";\n    println!(\"{n}\");\n}\n```\n",
    )
    .write("b.pactown.yaml", "base_port: 0\nservices:\n  broken: {}\n");
    let r = env.run_up(&["up", "-d", "b.pactown.yaml"]);
    r.code(1)
        .stderr_has("broken/README.md:5:18")
        .stderr_has("mismatched types")
        .stderr_has("nothing was started");
}

#[test]
fn the_rust_platform_answers_through_the_gateway() {
    let env = TestEnv::new();
    let file = crate::up::example(&env, "platform-rust");
    let up = Up::start(&env, &file);
    let kinds: Vec<String> = up.status()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["wasm-command", "wasm-http", "wasm-http", "wasm-http"]
    );
    let gw = up.port("gateway");
    let (code, body) = http_request(gw, "POST", "/api/users", Some(r#"{"name":"Ada"}"#)).unwrap();
    assert_eq!(code, 201, "{body}");
    for _ in 0..20 {
        let (code, body) = http_get(gw, "/api/users").unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"count\":1"), "{body}");
    }
    let (code, page) = http_get(gw, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<li>Ada</li>"), "{page}");
}

/// The host's wasm HTTP service driven straight from the runtime (the component built by the
/// real `pactown build`): every request is answered wherever the caller's task runs, also when
/// the instance ends within a poll that spent the task's cooperative budget (the answer was once
/// read as missing: "the guest returned without a response").
#[test]
fn every_request_is_answered_when_the_instance_ends_in_the_callers_poll() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use pactown_runtime::wasm::{
        Capabilities, EngineConfig, HttpService, HttpSettings, OutgoingHooks, WasmEngine,
    };
    use std::sync::Arc;

    let env = TestEnv::new();
    env.write(
        "hello/README.md",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/hello-rust/README.md"
        ))
        .unwrap(),
    );
    let built = env.run(&["build", "hello/README.md", "--json"]).ok().json();
    let wasm = built
        .as_object()
        .and_then(|m| m.values().next())
        .expect("one service")["wasm"]
        .as_str()
        .expect("a wasm artifact")
        .to_string();
    let engine = WasmEngine::new(
        &EngineConfig {
            total_instances: 8,
            ..Default::default()
        },
        env.abs("compiled"),
    )
    .unwrap();
    let component = engine.load(std::path::Path::new(&wasm), "hello").unwrap();
    let mut caps = Capabilities::new();
    caps.limits.cpu_time = Some(std::time::Duration::from_secs(1));
    let svc = Arc::new(
        HttpService::new(
            engine,
            &component,
            HttpSettings {
                max_instances: 4,
                ..HttpSettings::new("hello", caps, OutgoingHooks::new("hello", None))
            },
        )
        .unwrap(),
    );
    let ask = |svc: Arc<HttpService>| async move {
        let req = http::Request::get("http://hello/?name=test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = svc.handle(req).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Many requests in one poll of one task (none waits on anything outside the process), so
    // the task's cooperative budget runs out midway: on the thread of `block_on`, and in a
    // task on a worker.
    let many = |svc: Arc<HttpService>| async move {
        for _ in 0..300 {
            let (code, body) = ask(svc.clone()).await;
            assert_eq!(
                (code, body.as_str()),
                (200, "hello, test, from WebAssembly\n")
            );
        }
    };
    rt.block_on(many(svc.clone()));
    rt.block_on(rt.spawn(many(svc))).unwrap();
}
