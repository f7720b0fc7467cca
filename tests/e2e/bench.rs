//! `pactown bench` and `pactown export workerd` with the real binary: the reports' JSON, real
//! peers installed on first use, and an exported config served by workerd itself.

use std::path::PathBuf;

use crate::support::TestEnv;
use crate::support_up::{http_get, wait_until};

/// A Worker that answers from its `env`.
const HELLO_WORKER: &str = "# hello\n\n```javascript markpact:file path=index.js\nexport default {\n  async fetch(request, env) {\n    return Response.json({ hello: new URL(request.url).searchParams.get(\"name\") ?? \"world\", greeting: env.GREETING ?? null });\n  },\n};\n```\n";

/// The stages of `starts` starts of pactown, as a report gives them: `main`, the component
/// `loaded`, the service `ready`, and the first `answered`, in every start and in that order
/// (before `first_answer`, the bench's median, when given); but `ready`, which a start may
/// reach after its first answer (a service answers once it is ready itself, before pactown
/// has declared every service ready), and so after the bench has read its stages.
fn stages_in_order(stages: &serde_json::Value, starts: usize, first_answer: Option<f64>) {
    let stages = stages.as_array().unwrap_or_else(|| panic!("{stages}"));
    let stage = |name: &str| stages.iter().find(|s| s["stage"] == name);
    let runs = |s: &serde_json::Value| -> Vec<f64> {
        s["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect()
    };
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    let expected: &[&str] = if stage("ready").is_some() {
        &["main", "loaded", "ready", "answered"]
    } else {
        &["main", "loaded", "answered"]
    };
    assert_eq!(names, expected, "{stages:?}");
    let [main, loaded, answered] = ["main", "loaded", "answered"].map(|n| runs(stage(n).unwrap()));
    assert!(main.len() == starts && loaded.len() == starts && answered.len() == starts);
    for i in 0..starts {
        assert!(
            0.0 < main[i] && main[i] <= loaded[i] && loaded[i] <= answered[i],
            "{stages:?}"
        );
    }
    if let Some(ready) = stage("ready") {
        let ready = runs(ready);
        assert!(
            ready.len() <= starts && ready.iter().all(|r| *r > 0.0),
            "{stages:?}"
        );
    }
    if let Some(first) = first_answer {
        let median = stage("answered").unwrap()["median"].as_f64().unwrap();
        assert!(median <= first, "{median} after {first}");
    }
}

fn percentiles_ordered(p: &serde_json::Value, what: &str) {
    let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{what}.{k} in {p}"));
    assert!(f("p50") > 0.0, "{what}: {p}");
    assert!(
        f("p50") <= f("p90") && f("p90") <= f("p99") && f("p99") <= f("max"),
        "{what}: {p}"
    );
}

#[test]
fn coldstart_reports_ordered_percentiles_and_memory() {
    let env = TestEnv::new();
    env.write("hello/README.md", HELLO_WORKER);
    let run = env.run_up(&[
        "bench",
        "coldstart",
        "hello/README.md",
        "--json",
        "--requests",
        "200",
        "--duration",
        "1s",
        "--starts",
        "2",
        "--connections",
        "4",
        "--build",
    ]);
    run.ok();
    let r = run.json();
    assert_eq!(r["service"], "hello");
    // The build, cold (its own cache, the tools shared) then warm, and the component's size.
    let b = &r["build"];
    assert!(
        b["cold_ms"].as_f64().unwrap() > b["warm_ms"].as_f64().unwrap(),
        "{b}"
    );
    assert!(b["warm_ms"].as_f64().unwrap() > 0.0, "{b}");
    assert!(b["component_bytes"].as_u64().unwrap() > 1 << 20, "{b}");
    assert!(b["compiled_bytes"].as_u64().unwrap() > 1 << 20, "{b}");
    assert_eq!(r["kind"], "wasm-http");
    assert!(r["machine"]["cores"].as_u64().unwrap() >= 1, "{r}");
    assert!(!r["machine"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(r["method"]["requests"], 200);
    assert_eq!(r["start_ms"]["runs"].as_array().unwrap().len(), 2);
    assert!(r["start_ms"]["median"].as_f64().unwrap() > 0.0);
    // Where the starts went, each start's stages in order.
    let first_answer = r["start_ms"]["median"].as_f64().unwrap();
    stages_in_order(&r["start_stages_ms"], 2, Some(first_answer));
    assert_eq!(r["sequential"]["requests"], 200);
    assert_eq!(r["sequential"]["errors"], 0);
    percentiles_ordered(&r["sequential"]["latency_us"], "sequential");
    percentiles_ordered(&r["load"]["latency_us"], "load");
    assert!(r["load"]["throughput_rps"].as_f64().unwrap() > 0.0);
    assert!(r["memory"]["idle"]["pss_kib"].as_u64().unwrap() > 0);
    assert!(
        r["memory"]["per_added_service_pss_kib"].as_f64().is_some(),
        "{r}"
    );
    // A component's copy costs little: it is measured over twenty added copies.
    assert_eq!(
        r["memory"]["per_added_service_between"],
        serde_json::json!([1, 21]),
        "{r}"
    );
}

#[test]
fn compare_runs_every_peer_and_reports_a_row_each_with_the_same_fields() {
    let env = TestEnv::new();
    env.write("hello/README.md", HELLO_WORKER);
    let run = env.run_up(&[
        "bench",
        "compare",
        "hello/README.md",
        "--json",
        "--rounds",
        "1",
        "--starts",
        "2",
        "--requests",
        "50",
        "--duration",
        "1s",
        "--connections",
        "2",
        "-o",
        "out",
    ]);
    run.ok().stderr_has("vs pactown");
    let r = run.json();
    let peers = r["peers"].as_array().unwrap();
    let names: Vec<&str> = peers.iter().map(|p| p["peer"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pactown",
            "pactown-reuse",
            "wasmtime-serve",
            "wasmtime-serve-wasm",
            "workerd",
            "workerd-compiled",
            "reference",
            "native"
        ]
    );
    let keys = |p: &serde_json::Value| {
        let mut k: Vec<String> = p.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for p in peers {
        assert_eq!(keys(p), keys(&peers[0]), "{p}");
        // Every peer runs a Worker, reused instances too.
        assert_eq!(p["available"], true, "{p}");
        percentiles_ordered(&p["sequential_us"], p["peer"].as_str().unwrap());
        assert!(p["throughput_rps"].as_f64().unwrap() > 0.0, "{p}");
        assert_eq!(p["errors"], 0, "{p}");
        assert!(p["vs_pactown"]["start"].as_f64().unwrap() > 0.0, "{p}");
        // Two starts in a row, their median the round's (a peer slower than 1 s starts once).
        let round = &p["rounds"][0];
        let starts: Vec<f64> = round["starts_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(starts.len(), if starts[0] > 1000.0 { 1 } else { 2 }, "{p}");
        if p["peer"] == "wasmtime-serve-wasm" {
            // Its compile cache was filled before the rounds: no measured start compiled.
            assert!(starts[0] < 1000.0, "{p}");
        }
        let median = starts.iter().sum::<f64>() / starts.len() as f64;
        assert!(
            (round["start_ms"].as_f64().unwrap() - median).abs() < 1e-6,
            "{p}"
        );
        // pactown says where its starts went, each of them; the peers cannot.
        let stages = &p["start_stages_ms"];
        if p["peer"].as_str().unwrap().starts_with("pactown") {
            stages_in_order(stages, 2, None);
        } else {
            assert!(stages.is_null(), "{p}");
        }
    }
    let svg = std::fs::read_to_string(env.abs("out/compare-hello.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("workerd") && svg.contains("req/s"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.abs("out/compare-hello.json")).unwrap())
            .unwrap();
    assert_eq!(file["peers"].as_array().unwrap().len(), 8);
}

#[test]
fn density_builds_identical_services_once_and_measures_each_step() {
    let env = TestEnv::new();
    let run = env.run_up(&[
        "bench",
        "density",
        "--services",
        "20",
        "--hello",
        "js",
        "--json",
    ]);
    run.ok();
    let r = run.json();
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{r}");
    assert_eq!(steps[0]["services"], 10);
    assert_eq!(steps[1]["services"], 20);
    for s in steps {
        assert!(s["ready_ms"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["memory"]["pss_kib"].as_u64().unwrap() > 0, "{s}");
    }
    // Twenty services with one source: one build, at most.
    assert!(!run.stderr.contains("building `hello-1`"), "{}", run.stderr);
}

/// workerd from npm, installed once per test run into the target dir (not into pactown's cache:
/// the test checks pactown's output with a workerd of its own).
fn workerd() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("workerd");
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join(".lock")).unwrap();
    lock.lock().unwrap();
    let find = || {
        std::fs::read_dir(base.join("node_modules/@cloudflare"))
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin/workerd"))
            .find(|p| p.is_file())
    };
    if let Some(bin) = find() {
        return bin;
    }
    let out = std::process::Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(&base)
        .arg("workerd@1.20261117.1")
        .output()
        .expect("npm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    find().expect("workerd's binary")
}

#[test]
fn an_exported_gateway_reaches_its_dependency_through_the_service_binding_on_workerd() {
    let env = TestEnv::new();
    env.write(
        "api/README.md",
        "# api\n\n```javascript markpact:file path=index.js\nexport default { fetch(req, env) { return Response.json({ from: \"api\", path: new URL(req.url).pathname, tier: env.TIER }); } };\n```\n",
    )
    .write(
        "gateway/README.md",
        "# gateway\n\n```javascript markpact:file path=src/index.js\nimport { route } from \"./route.js\";\nexport default { async fetch(req, env) { return route(req, env); } };\n```\n\n```javascript markpact:file path=src/route.js\nexport async function route(req, env) {\n  const r = await env.API.fetch(\"http://api/users\");\n  return new Response(JSON.stringify({ gateway: env.GREETING, secret: env.API_TOKEN, api: await r.json() }), { headers: { \"content-type\": \"application/json\" } });\n}\n```\n",
    )
    .write("db/README.md", &crate::support_up::py_service("", ""))
    .write(
        "e.pactown.yaml",
        "base_port: 0\nservices:\n  db: {health_check: /health}\n  api: {env: {TIER: gold}, depends_on: [db]}\n  gateway:\n    depends_on: [api]\n    env: {GREETING: \"hi \\\"there\\\"\", API_TOKEN: \"${API_TOKEN:-s3cret}\"}\n",
    );
    let run = env.run_up(&["export", "workerd", "e.pactown.yaml", "-o", "wd", "--json"]);
    run.ok()
        .stderr_has("`db` is not exported")
        .stderr_has("bound as an external service");
    let config = env.read("wd/config.capnp");
    assert!(
        config.contains(r#"(name = "API", service = "api")"#),
        "{config}"
    );
    assert!(
        config.contains(r#"(name = "API_TOKEN", fromEnvironment = "API_TOKEN")"#),
        "{config}"
    );
    assert!(
        !config.contains("s3cret"),
        "a secret is never written into the config"
    );
    assert!(
        config.contains(r#"external = (address = "127.0.0.1:"#),
        "{config}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(workerd())
        .arg("serve")
        .arg(env.abs("wd/config.capnp"))
        .arg(format!("--socket-addr=gateway=127.0.0.1:{port}"))
        .arg("--socket-addr=api=127.0.0.1:0")
        .env("API_TOKEN", "from-the-environment")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(30, "workerd to answer", || http_get(port, "/").is_ok());
    let (code, body) = http_get(port, "/").unwrap();
    child.kill().ok();
    let _ = child.wait();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["gateway"], "hi \"there\"");
    assert_eq!(v["secret"], "from-the-environment");
    assert_eq!(v["api"]["from"], "api");
    assert_eq!(v["api"]["path"], "/users");
    assert_eq!(v["api"]["tier"], "gold");
}
