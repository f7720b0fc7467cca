//! Jobs, measured: the journal's write latency, and jobs through the real `pactown` against
//! calling the same engine directly, in one run.
//!
//! - `journal`: one durable append (SQLite WAL, `synchronous = FULL`), p50/p99/max over 2,000;
//! - `direct`: `POST /execute` to a Rust engine service at its stable address, one at a time;
//! - `job/1`, `job/3`: a job of one task, and of three tasks in three steps, each submitted to
//!   job-control and followed to its end (the runner's long poll), one at a time;
//! - `jobs/s`: three-task jobs, 200 of them, 16 in flight.
//!
//! Per-task overhead is what a task adds over the direct call: `(job/3 − job/1) / 2 − direct`.
//!
//!   cargo bench --bench jobs

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::Method;
use pactown_host::jobs::client::Http;
use pactown_host::jobs::journal::{Entry, Journal};
use serde_json::{Value, json};

const ENGINE: &str = r#"# bench engine

```json markpact:file path=design.json
{"name": "bench", "commands": {"step": {"input": {"type": "object", "required": ["n"]}}}}
```

```rust markpact:file path=src/main.rs
use pactown_guest::engine::Engine;
use pactown_guest::http::{Body, Error, Request, Response, Result};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>> {
    let engine = Engine::from_design(include_str!("../design.json"))
        .map_err(Error::msg)?
        .on("step", |c| Ok(serde_json::json!({"n": c.input["n"].as_i64().unwrap_or(0) + 1})));
    pactown_guest::serve_engine(&engine, req).await
}
```
"#;

const ECOSYSTEM: &str = "name: jobs-bench\nbase_port: 0\nservices:\n  state: {builtin: shared-state}\n  \
    engine: {readme: engine/README.md, health_check: /health}\n  jobs: {builtin: job-control, depends_on: [state, engine]}\n";

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")
}

fn line(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<10} n={:<5} p50 {:>9.1} µs  p90 {:>9.1} µs  p99 {:>9.1} µs  max {:>9.1} µs",
        h.len(),
        h.value_at_quantile(0.5) as f64,
        h.value_at_quantile(0.9) as f64,
        h.value_at_quantile(0.99) as f64,
        h.max() as f64
    );
}

fn journal() -> Histogram<u64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(&dir.path().join("journal.sqlite3")).expect("journal");
    j.submit("job-bench", "bench", &json!({"steps": []}), "doc", None)
        .expect("submit");
    let mut h = hist();
    for i in 0..2_000u32 {
        let began = Instant::now();
        j.append(
            "job-bench",
            "task-succeeded",
            Entry {
                task: Some("t"),
                attempt: Some(i),
                ms: Some(1.0),
                detail: json!({"result": {"n": i}}),
                ..Default::default()
            },
        )
        .expect("append");
        h.record(began.elapsed().as_micros() as u64)
            .expect("record");
    }
    h
}

fn pactown(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pactown"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("pactown");
    assert!(
        out.status.success(),
        "pactown {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn job(tasks: usize) -> Value {
    let steps: Vec<Value> = (0..tasks)
        .map(|i| json!({"name": format!("s{i}"), "tasks": [{"name": format!("t{i}"), "service": "engine", "command": "step", "input": {"n": i}}]}))
        .collect();
    json!({"name": format!("bench-{tasks}"), "steps": steps})
}

/// Submit a job and follow it to its end, as `pactown job run` does.
async fn run_job(http: &Http, base: &str, job: &Value) -> Duration {
    let began = Instant::now();
    let r = http
        .call(
            Method::POST,
            &format!("{base}/jobs"),
            &[],
            &json!({"job": job}),
            Duration::from_secs(30),
        )
        .await
        .expect("submit");
    let id = r.body["id"].as_str().expect("an id").to_string();
    let mut seq = 0;
    loop {
        let log = http
            .call(
                Method::GET,
                &format!("{base}/jobs/{id}/log?after={seq}&wait=10000"),
                &[],
                &Value::Null,
                Duration::from_secs(30),
            )
            .await
            .expect("log");
        for e in log.body["events"].as_array().into_iter().flatten() {
            seq = e["seq"].as_i64().unwrap_or(seq);
        }
        match log.body["status"].as_str() {
            Some("succeeded") => return began.elapsed(),
            Some("running") => {}
            other => panic!("job {id} ended {other:?}: {}", log.body),
        }
    }
}

fn main() {
    let j = journal();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("engine")).expect("dir");
    std::fs::write(dir.path().join("engine/README.md"), ENGINE).expect("write");
    std::fs::write(dir.path().join("eco.pactown.yaml"), ECOSYSTEM).expect("write");
    pactown(
        dir.path(),
        &["up", "-d", "eco.pactown.yaml", "--listen", "127.0.0.1:0"],
    );
    let status: Value = serde_json::from_slice(
        &pactown(dir.path(), &["status", "eco.pactown.yaml", "--json"]).stdout,
    )
    .expect("status");
    let port = |name: &str| {
        status["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["port"].as_u64())
            .expect("a port")
    };
    let (engine, jobs) = (
        format!("http://127.0.0.1:{}", port("engine")),
        format!("http://127.0.0.1:{}", port("jobs")),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (direct, one, three, rate) = rt.block_on(async {
        let http = Http::new();
        let body = json!({"command": "step", "input": {"n": 1}});
        let mut direct = hist();
        for i in 0..550 {
            let began = Instant::now();
            let r = http
                .call(
                    Method::POST,
                    &format!("{engine}/execute"),
                    &[],
                    &body,
                    Duration::from_secs(10),
                )
                .await
                .expect("direct");
            assert!(r.status.is_success(), "{}", r.body);
            if i >= 50 {
                direct
                    .record(began.elapsed().as_micros() as u64)
                    .expect("record");
            }
        }
        let (mut one, mut three) = (hist(), hist());
        let (j1, j3) = (job(1), job(3));
        for i in 0..220 {
            let (a, b) = (
                run_job(&http, &jobs, &j1).await,
                run_job(&http, &jobs, &j3).await,
            );
            if i >= 20 {
                one.record(a.as_micros() as u64).expect("record");
                three.record(b.as_micros() as u64).expect("record");
            }
        }
        let began = Instant::now();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let runs = (0..200).map(|_| {
            let (http, jobs, j3, gate) = (http.clone(), jobs.clone(), j3.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                run_job(&http, &jobs, &j3).await
            })
        });
        for r in futures_util::future::join_all(runs).await {
            r.expect("a job");
        }
        (direct, one, three, 200.0 / began.elapsed().as_secs_f64())
    });
    pactown(dir.path(), &["down", "eco.pactown.yaml"]);

    println!(
        "cores {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    line("journal", &j);
    line("direct", &direct);
    line("job/1", &one);
    line("job/3", &three);
    let per_task = (three.value_at_quantile(0.5) as f64 - one.value_at_quantile(0.5) as f64) / 2.0
        - direct.value_at_quantile(0.5) as f64;
    let fixed = one.value_at_quantile(0.5) as f64 - direct.value_at_quantile(0.5) as f64 - per_task;
    println!(
        "per task over the direct call (p50): {per_task:.1} µs; per job besides its tasks: {fixed:.1} µs"
    );
    println!("three-task jobs, 16 in flight: {rate:.1} jobs/s");
}
