//! Composable jobs: the built-in shared-state, discovery and job-control services, engine
//! services in Rust (wasm) and Python (native), and the job runner, with the real binary.
//!
//! The engines record every call they are asked in the shared-state document `ledger`
//! (`{engine: {"<job>/<task>@<time>": {path, command}}}`), which survives pactown being killed:
//! the tests count calls there, from the services' side.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::support::TestEnv;
use crate::support_up::{Up, get_json, http_get, http_request, wait_until};

/// A Rust engine (wasm-http): `step` doubles `n`, `fail` fails for good.
const WASM_ENGINE: &str = r#"# wasm engine

```json markpact:file path=design.json
{"name": "wasm", "commands": {
  "step": {"input": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}},
  "fail": {}
}}
```

```rust markpact:file path=src/main.rs
use pactown_guest::engine::{Engine, Failure};
use pactown_guest::http::{Body, Error, Request, Response, Result};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>> {
    let engine = Engine::from_design(include_str!("../design.json"))
        .map_err(Error::msg)?
        .on("step", |c| Ok(serde_json::json!({"by": "wasm", "n": c.input["n"].as_i64().unwrap_or(0) * 2})))
        .on("fail", |_| Err(Failure::new("this command always fails")))
        .record_to("state", "ledger");
    pactown_guest::serve_engine(&engine, req).await
}
```
"#;

/// A Python engine (native): `step` adds one, `flaky` fails `failures` times with 503 per
/// idempotency key, `slow` takes `ms`, `gate` answers once the document `gate` exists, `after`
/// answers once the ledger holds a call of `task` in the same job. It records each call as it
/// arrives.
const NATIVE_ENGINE: &str = r#"# native engine

```python markpact:file path=engine.py
import json, os, threading, time, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = os.environ["STATE_URL"]
tries = {}
lock = threading.Lock()

def state(method, path, body=None):
    req = urllib.request.Request(STATE + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None

class H(BaseHTTPRequestHandler):
    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply(200, {"status": "ok"} if self.path == "/health" else {"commands": {"step": {}, "flaky": {}, "slow": {}, "gate": {}, "after": {}}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        key = self.headers.get("idempotency-key", "-")
        job = self.headers.get("pactown-job", "-")
        command, data = body.get("command"), body.get("input") or {}
        state("PATCH", "/state/ledger", {"native": {f"{key}@{time.time_ns()}": {"path": self.path, "command": command}}})
        if self.path == "/revert":
            return self.reply(200, {"undone": command})
        if command == "step":
            return self.reply(200, {"by": "native", "n": data["n"] + 1})
        if command == "flaky":
            with lock:
                tries[key] = tries.get(key, 0) + 1
                n = tries[key]
            if n <= data["failures"]:
                return self.reply(503, {"error": f"busy (attempt {n})"})
            return self.reply(200, {"attempts": n})
        if command == "slow":
            time.sleep(data["ms"] / 1000)
            return self.reply(200, {"slept": data["ms"]})
        if command in ("gate", "after"):
            for _ in range(1200):
                if command == "gate" and state("GET", "/state/gate")[0] == 200:
                    return self.reply(200, {"gate": "open"})
                if command == "after":
                    ledger = state("GET", "/state/ledger")[1] or {}
                    if any(k.startswith(f"{job}/{data['task']}@") for e in ledger.values() for k in e):
                        return self.reply(200, {"after": data["task"], "n": data.get("n", 0)})
                time.sleep(0.05)
            return self.reply(504, {"error": "waited too long"})
        self.reply(404, {"error": f"no command {command}"})

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
```

```bash markpact:run
exec python3 engine.py
```
"#;

const ECOSYSTEM: &str = "name: jobs-e2e\nbase_port: 0\nservices:\n  state: {builtin: shared-state}\n  discovery: {builtin: discovery}\n  \
     wasm: {readme: wasm/README.md, health_check: /health, depends_on: [state]}\n  \
     native: {readme: native/README.md, health_check: /health, depends_on: [state]}\n  \
     jobs: {builtin: job-control, depends_on: [state, wasm, native]}\n";

fn engines() -> TestEnv {
    let env = TestEnv::new();
    env.write("wasm/README.md", WASM_ENGINE)
        .write("native/README.md", NATIVE_ENGINE)
        .write("eco.pactown.yaml", ECOSYSTEM);
    env
}

/// Every call the engines recorded: (engine, job/task, path, nanos), oldest first.
fn ledger(up: &Up) -> Vec<(String, String, String, u128)> {
    let (code, doc) = get_json(up.port("state"), "/state/ledger");
    if code == 404 {
        return Vec::new();
    }
    assert_eq!(code, 200, "{doc}");
    let mut out = Vec::new();
    for (engine, calls) in doc.as_object().unwrap() {
        for (k, v) in calls.as_object().unwrap() {
            let (key, nanos) = k.rsplit_once('@').unwrap();
            out.push((
                engine.clone(),
                key.to_string(),
                v["path"].as_str().unwrap().to_string(),
                nanos.parse().unwrap(),
            ));
        }
    }
    out.sort_by_key(|c| c.3);
    out
}

/// How many times `job/task` was asked `path` (a revert's idempotency key is its task's with
/// `/revert`).
fn calls(ledger: &[(String, String, String, u128)], job: &str, task: &str, path: &str) -> usize {
    let key = if path == "/revert" {
        format!("{job}/{task}/revert")
    } else {
        format!("{job}/{task}")
    };
    ledger.iter().filter(|c| c.1 == key && c.2 == path).count()
}

fn job_run(env: &TestEnv, args: &[&str]) -> crate::support::Run {
    let mut all = vec!["job", "run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-f", "eco.pactown.yaml"]);
    env.run_up(&all)
}

fn status(env: &TestEnv, id: &str) -> Value {
    env.run_up(&["job", "status", id, "-f", "eco.pactown.yaml", "--json"])
        .ok()
        .json()
}

fn log(env: &TestEnv, id: &str) -> Vec<Value> {
    env.run_up(&["job", "log", id, "-f", "eco.pactown.yaml", "--json"])
        .ok()
        .json()["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn only_job(env: &TestEnv) -> String {
    let list = env
        .run_up(&["job", "list", "-f", "eco.pactown.yaml", "--json"])
        .ok()
        .json();
    let jobs = list["jobs"].as_array().unwrap();
    jobs[0]["id"].as_str().unwrap().to_string()
}

fn ms_of(at: &Value) -> u128 {
    humantime::parse_rfc3339(at.as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn a_three_step_job_runs_parallel_tasks_over_wasm_and_native_engines_by_name() {
    let env = engines();
    // `bump` comes first and answers only once `double` (after it in the list) has been
    // called: the two run at once, or the job fails.
    env.write(
        "three.job.yaml",
        "name: three\nsteps:\n  - name: first\n    tasks:\n      \
         - {name: bump, service: native, command: after, input: {task: double, n: {$fromState: start.n}}, storeResultAt: bumped}\n      \
         - {name: double, service: wasm, command: step, input: {n: {$fromState: start.n}}, storeResultAt: doubled}\n  \
         - name: off\n    enabled: false\n    tasks:\n      - {name: never, service: native, command: step, input: {n: 0}}\n  \
         - name: last\n    tasks:\n      \
         - {name: again, service: wasm, command: step, input: {n: {$fromState: doubled.n}}, storeResultAt: result.final}\n      \
         - {name: skipped, service: native, command: step, input: {n: 0}, enabled: false}\n",
    )
    .write("values.yaml", "start: {n: 20}\n");
    let up = Up::start(&env, "eco.pactown.yaml");
    let run = job_run(
        &env,
        &[
            "three.job.yaml",
            "--values",
            "values.yaml",
            "--emit",
            "out/doc.json",
            "--cleanup",
        ],
    );
    run.ok()
        .stderr_has("step first")
        .stderr_has("✓ double")
        .stderr_has("skipped (enabled: false)")
        .stderr_has("succeeded");
    let doc: Value = serde_json::from_str(&env.read("out/doc.json")).unwrap();
    assert_eq!(doc["start"]["n"], 20, "{doc}");
    assert_eq!(doc["doubled"], json!({"by": "wasm", "n": 40}), "{doc}");
    assert_eq!(doc["bumped"]["after"], "double", "{doc}");
    assert_eq!(
        doc["result"]["final"],
        json!({"by": "wasm", "n": 80}),
        "{doc}"
    );

    let id = only_job(&env);
    let job = status(&env, &id);
    assert_eq!(job["status"], "succeeded", "{job}");
    let tasks: HashMap<String, String> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tasks"].as_array().unwrap().iter())
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tasks["never"], "skipped");
    assert_eq!(tasks["skipped"], "skipped");
    assert_eq!(tasks["again"], "succeeded");
    // --cleanup deleted the document.
    let state_id = job["state"].as_str().unwrap();
    assert_eq!(
        http_get(up.port("state"), &format!("/state/{state_id}"))
            .unwrap()
            .0,
        404
    );

    let l = ledger(&up);
    for task in ["bump", "double", "again"] {
        assert_eq!(calls(&l, &id, task, "/execute"), 1, "{task}: {l:?}");
    }
    for task in ["never", "skipped"] {
        assert_eq!(calls(&l, &id, task, "/execute"), 0, "{task}: {l:?}");
    }
    // The journal is the audit: who was called with what, what came back, how long it took.
    let events = log(&env, &id);
    let started = events
        .iter()
        .find(|e| e["event"] == "task-started" && e["task"] == "double")
        .unwrap();
    assert_eq!(started["detail"]["service"], "wasm");
    assert_eq!(
        started["detail"]["body"],
        json!({"command": "step", "input": {"n": 20}})
    );
    let done = events
        .iter()
        .find(|e| e["event"] == "task-succeeded" && e["task"] == "double")
        .unwrap();
    assert!(done["ms"].as_f64().unwrap() > 0.0, "{done}");
    // Discovery lists the engines with their commands.
    let (_, wasm) = get_json(up.port("discovery"), "/services/wasm");
    assert_eq!(
        (wasm["healthy"].clone(), wasm["engine"].clone()),
        (json!(true), json!(true)),
        "{wasm}"
    );
    assert_eq!(wasm["commands"], json!(["fail", "step"]), "{wasm}");
}

#[test]
fn a_failing_task_reverts_the_finished_ones_last_first_and_a_job_is_reverted_on_request() {
    let env = engines();
    env.write(
        "fails.job.yaml",
        "name: fails\nsteps:\n  - name: one\n    tasks: [{name: a, service: wasm, command: step, input: {n: 1}}]\n  \
         - name: two\n    tasks: [{name: b, service: native, command: step, input: {n: 2}}]\n  \
         - name: three\n    tasks: [{name: c, service: wasm, command: fail, input: {}, retry: {attempts: 3, initialDelay: 10ms}}]\n",
    )
    .write(
        "ok.job.yaml",
        "name: ok\nsteps:\n  - name: one\n    tasks: [{name: a, service: native, command: step, input: {n: 1}}]\n  \
         - name: two\n    tasks: [{name: b, service: wasm, command: step, input: {n: 2}}]\n",
    );
    let up = Up::start(&env, "eco.pactown.yaml");
    let run = job_run(&env, &["fails.job.yaml"]);
    run.code(1)
        .stderr_has("reverted")
        .stderr_has("task `c` failed")
        .stderr_has("this command always fails");
    let id = only_job(&env);
    assert_eq!(status(&env, &id)["status"], "reverted");
    let l = ledger(&up);
    // A failure for good (422) is not retried; the finished tasks are undone, last first.
    assert_eq!(calls(&l, &id, "c", "/execute"), 1, "{l:?}");
    assert_eq!(calls(&l, &id, "c", "/revert"), 0, "{l:?}");
    let reverts: Vec<&str> = l
        .iter()
        .filter(|c| c.2 == "/revert" && c.1.starts_with(&id))
        .map(|c| c.1.as_str())
        .collect();
    assert_eq!(
        reverts,
        [format!("{id}/b/revert"), format!("{id}/a/revert")],
        "{l:?}"
    );

    // A succeeded job undone on request.
    job_run(&env, &["ok.job.yaml"]).ok();
    let ok = only_job(&env);
    env.run_up(&["job", "revert", &ok, "-f", "eco.pactown.yaml"])
        .ok()
        .stderr_has("reverted");
    let l = ledger(&up);
    let reverts: Vec<&str> = l
        .iter()
        .filter(|c| c.2 == "/revert" && c.1.starts_with(&ok))
        .map(|c| c.1.as_str())
        .collect();
    assert_eq!(
        reverts,
        [format!("{ok}/b/revert"), format!("{ok}/a/revert")],
        "{l:?}"
    );
    // Only once.
    env.run_up(&["job", "revert", &ok, "-f", "eco.pactown.yaml"])
        .code(1)
        .stderr_has("is reverted");
}

#[test]
fn a_task_retries_with_backoff_and_a_timeout_fails_it() {
    let env = engines();
    env.write(
        "retry.job.yaml",
        "name: retry\nsteps:\n  - name: only\n    tasks:\n      - name: flaky\n        service: native\n        command: flaky\n        \
         input: {failures: 2}\n        retry: {attempts: 3, initialDelay: 200ms, backoff: 2}\n",
    )
    .write(
        "slow.job.yaml",
        "name: slow\nsteps:\n  - name: first\n    tasks: [{name: fine, service: wasm, command: step, input: {n: 1}}]\n  \
         - name: then\n    tasks: [{name: slow, service: native, command: slow, input: {ms: 5000}, timeout: 300ms, retry: {attempts: 2, initialDelay: 10ms}}]\n",
    );
    let up = Up::start(&env, "eco.pactown.yaml");
    job_run(&env, &["retry.job.yaml"])
        .ok()
        .stderr_has("(will retry)");
    let id = only_job(&env);
    let events = log(&env, &id);
    let at = |kind: &str, attempt: u64| {
        ms_of(
            &events
                .iter()
                .find(|e| e["event"] == kind && e["attempt"] == attempt)
                .unwrap_or_else(|| panic!("{kind} #{attempt}: {events:?}"))["at"],
        )
    };
    // 200 ms, then 400 ms between attempts (at least).
    assert!(
        at("task-started", 2) - at("task-failed", 1) >= 200,
        "{events:?}"
    );
    assert!(
        at("task-started", 3) - at("task-failed", 2) >= 400,
        "{events:?}"
    );
    let l = ledger(&up);
    // Three attempts, one idempotency key.
    assert_eq!(calls(&l, &id, "flaky", "/execute"), 3, "{l:?}");

    job_run(&env, &["slow.job.yaml"])
        .code(1)
        .stderr_has("did not answer within 300ms")
        .stderr_has("reverted");
    let slow = only_job(&env);
    assert_eq!(calls(&ledger(&up), &slow, "slow", "/execute"), 2);
    assert_eq!(calls(&ledger(&up), &slow, "fine", "/revert"), 1);
}

#[test]
fn a_job_resumes_after_pactown_is_killed_and_no_finished_task_runs_twice() {
    let env = engines();
    env.write(
        "gated.job.yaml",
        "name: gated\nsteps:\n  - name: one\n    tasks: [{name: a, service: wasm, command: step, input: {n: 1}}]\n  \
         - name: two\n    tasks: [{name: g, service: native, command: gate, input: {}, timeout: 60s}]\n  \
         - name: three\n    tasks: [{name: c, service: wasm, command: step, input: {n: 3}}]\n",
    );
    let up = Up::start(&env, "eco.pactown.yaml");
    let submitted = job_run(&env, &["gated.job.yaml", "--detach", "--json"])
        .ok()
        .json();
    let id = submitted["id"].as_str().unwrap().to_string();
    wait_until(60, "the gated task to be called", || {
        calls(&ledger(&up), &id, "g", "/execute") == 1
    });
    let pid = up.status()["pid"].as_i64().unwrap() as i32;
    // SAFETY: a plain kill(2) of the pactown under test.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until(30, "pactown to die", || !crate::support_up::alive(pid));

    let again = Up::start(&env, "eco.pactown.yaml");
    let (code, body) = http_request(again.port("state"), "PUT", "/state/gate", Some("{}")).unwrap();
    assert!(code == 200 || code == 201, "{body}");
    wait_until(60, "the job to succeed after the restart", || {
        status(&env, &id)["status"] == "succeeded"
    });
    let l = ledger(&again);
    assert_eq!(
        calls(&l, &id, "a", "/execute"),
        1,
        "a finished task ran again: {l:?}"
    );
    assert_eq!(calls(&l, &id, "c", "/execute"), 1, "{l:?}");
    // The task that was in flight runs again, with the same idempotency key.
    assert_eq!(calls(&l, &id, "g", "/execute"), 2, "{l:?}");
    let events = log(&env, &id);
    assert!(
        events.iter().any(|e| e["event"] == "job-resumed"),
        "{events:?}"
    );
    drop(again);
    std::mem::forget(up);
}

#[test]
fn the_job_runner_takes_defaults_from_job_runner_json_and_refuses_bad_jobs_before_submitting() {
    let env = engines();
    env.write("jobs/one.job.json", r#"{"name": "one", "steps": [{"name": "s", "tasks": [{"name": "t", "service": "wasm", "command": "step", "input": {"n": {"$fromState": "n"}}, "storeResultAt": "out"}]}]}"#)
        .write("jobs/values.json", r#"{"n": 5}"#)
        .write("jobs/.job-runner.json", r#"{"ecosystem": "../eco.pactown.yaml", "values": "values.json", "emit": "emitted.json"}"#)
        .write("jobs/bad.job.yaml", "name: bad\nsteps:\n  - name: s\n    tasks:\n      - {name: t, service: wasm, command: step, timeout: soon}\n")
        .write("jobs/undeclared.job.yaml", "steps:\n  - name: s\n    tasks: [{name: t, service: discovery, path: /services}]\n");
    // Not running yet.
    env.run_up(&["job", "run", "jobs/one.job.json"])
        .code(1)
        .stderr_has("is not running");
    let _up = Up::start(&env, "eco.pactown.yaml");
    let in_jobs = |args: &[&str]| {
        crate::support::Run::from(
            env.cmd(args)
                .current_dir(env.abs("jobs"))
                .env("PACTOWN_CACHE_DIR", env.cache_dir())
                .output()
                .unwrap(),
        )
    };
    in_jobs(&["job", "run", "one.job.json"]).ok();
    let doc: Value = serde_json::from_str(&env.read("jobs/emitted.json")).unwrap();
    assert_eq!(doc["out"], json!({"by": "wasm", "n": 10}), "{doc}");

    let bad = in_jobs(&["job", "run", "bad.job.yaml"]);
    bad.code(1)
        .stderr_has("bad.job.yaml:5:58")
        .stderr_has("`soon` is not a duration");
    in_jobs(&["job", "run", "undeclared.job.yaml"])
        .code(1)
        .stderr_has("depends_on");
    let list = in_jobs(&["job", "list", "--json"]).ok().json();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");

    let detached = in_jobs(&["job", "run", "one.job.json", "--detach"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(detached.starts_with("job-"), "{detached}");
    wait_until(30, "the detached job to succeed", || {
        in_jobs(&["job", "status", &detached, "--json"]).ok().json()["status"] == "succeeded"
    });
    in_jobs(&["job", "status", &detached])
        .ok()
        .stdout_has("succeeded");
    in_jobs(&["job", "log", &detached])
        .ok()
        .stdout_has("task-succeeded")
        .stdout_has("wasm POST /execute");
    in_jobs(&["job", "list"]).ok().stdout_has(&detached);
    in_jobs(&["job", "status", "job-nosuch"])
        .code(1)
        .stderr_has("no job `job-nosuch`");
}

#[test]
fn the_order_example_succeeds_and_a_declined_card_reverts_it() {
    let env = TestEnv::new();
    let file = crate::up::example(&env, "jobs");
    let up = Up::start(&env, &file);
    // Each engine's own checks, against its stable address.
    env.run_up(&["test", &file]).ok();
    let in_example = |args: &[&str]| {
        crate::support::Run::from(
            env.cmd(args)
                .current_dir(env.abs("jobs"))
                .env("PACTOWN_CACHE_DIR", env.cache_dir())
                .output()
                .unwrap(),
        )
    };
    // `.job-runner.json` names the ecosystem, the values and where the document goes.
    in_example(&["job", "run", "order.job.yaml"])
        .ok()
        .stderr_has("✓ ship")
        .stderr_has("succeeded");
    let doc: Value = serde_json::from_str(&env.read("jobs/out/order.json")).unwrap();
    assert!(
        doc["shipment"]["tracking"]
            .as_str()
            .unwrap()
            .starts_with("T-R-job-"),
        "{doc}"
    );
    assert_eq!(doc["payment"]["amount"], 12.5, "{doc}");
    let declined = in_example(&[
        "job",
        "run",
        "order.job.yaml",
        "--values",
        "declined.json",
        "--json",
    ]);
    declined.code(1).stderr_has("the card was declined");
    let job = declined.json();
    assert_eq!(job["status"], "reverted", "{job}");
    let undone: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tasks"].as_array().unwrap().iter())
        .filter(|t| t["status"] == "reverted")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(undone, ["reserve-stock", "notify"], "{job}");
    // The warehouse recorded the reservation and its release.
    let (_, ledger) = get_json(up.port("state"), "/state/ledger");
    let id = job["id"].as_str().unwrap();
    let warehouse = ledger["warehouse"].as_object().unwrap();
    assert!(
        warehouse
            .keys()
            .any(|k| k.starts_with(&format!("{id}/reserve-stock/revert@"))),
        "{ledger}"
    );
}
