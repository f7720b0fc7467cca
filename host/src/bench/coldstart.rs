//! `pactown bench coldstart TARGET`: one target on pactown, from warm caches.
//!
//! (a) process start → first answer of the measured service, over several starts; (b) the
//! per-request cost with a fresh instance (one connection, requests one after another:
//! instantiate + handle + loopback HTTP), p50/p90/p99/max; (c) sustained throughput and its
//! latency at C connections (closed loop, or open loop at `--rate`); (d) memory of pactown and
//! everything it started: idle, under load, and per added service (a README target started as
//! one copy and as 21, or as 5 when it runs natively).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::build::BuildReport;
use super::load::{self, LoadResult, LoadSpec, Pace, Percentiles, Target};
use super::process::{Memory, Server, free_port};
use super::{Machine, Prepared, Spread, ms};
use crate::build::cache::Cache;
use crate::telemetry::start::Stage;

/// How a coldstart bench runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Process starts measured (the last one stays up for the rest).
    pub starts: usize,
    /// Requests sent one after another for (b).
    pub requests: u64,
    /// Connections for (c).
    pub connections: usize,
    /// How long (c) lasts.
    pub duration: Duration,
    /// Open-loop rate for (c), requests per second in all; `None`: closed loop.
    pub rate: Option<f64>,
    /// Threads of the load generator.
    pub threads: usize,
    /// The path requested.
    pub path: String,
    /// Also measure memory per added service (two more starts).
    pub per_service: bool,
    /// Also time the build, cold and warm, in a cache of its own sharing this one's tools.
    pub build: Option<Cache>,
}

/// What a coldstart bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The file measured.
    pub target: String,
    /// The service measured.
    pub service: String,
    /// Its kind (`wasm-http`, `native`, …).
    pub kind: String,
    /// How.
    pub method: Method,
    /// (a) Process start → first answer, in ms.
    pub start_ms: Spread,
    /// Where those starts went: each stage pactown marked, in ms from the spawn, in the order
    /// a start reaches them (`main`, `loaded`, `ready`, `answered`; see
    /// [`crate::telemetry::start`]). The stages are read at each first answer: a start that
    /// declared every service `ready` only after answering has no `ready` in its runs.
    pub start_stages_ms: Vec<StageSpread>,
    /// (b) One request at a time.
    pub sequential: LoadResult,
    /// (c) Under load.
    pub load: LoadResult,
    /// (d) Memory.
    pub memory: MemoryReport,
    /// (e) The build, cold and warm, and the component's size (`--build`).
    pub build: Option<BuildReport>,
}

/// How a bench ran, printed with its results.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    /// Process starts.
    pub starts: usize,
    /// Requests before each measured part, not counted.
    pub warmup_requests: u64,
    /// Sequential requests measured.
    pub requests: u64,
    /// Connections under load.
    pub connections: usize,
    /// Seconds of load after a 1 s warm-up.
    pub duration_s: f64,
    /// Closed or open loop.
    pub pace: Pace,
    /// Load generator threads.
    pub threads: usize,
    /// The path requested.
    pub path: String,
}

/// Memory of pactown and its services, in KiB.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// After start, before any load.
    pub idle: Memory,
    /// The largest PSS seen under load.
    pub under_load: Memory,
    /// Services in the target.
    pub services: usize,
    /// PSS each added copy of the service costs, when measured: between the two counts of
    /// copies in `per_added_service_between`, divided by the copies added.
    pub per_added_service_pss_kib: Option<f64>,
    /// The two counts of copies measured: 1 and 21 for a component (a copy costs a few hundred
    /// KiB, less than the PSS moves between two runs, so it takes many to see), 1 and 5 for a
    /// native service (a process each, megabytes).
    pub per_added_service_between: Option<[usize; 2]>,
    /// Why it was not measured.
    pub per_added_service_note: Option<String>,
}

/// One stage of pactown's starts.
#[derive(Debug, Clone, Serialize)]
pub struct StageSpread {
    /// Its name.
    pub stage: &'static str,
    /// When the starts reached it, in ms from the spawn.
    #[serde(flatten)]
    pub ms: Spread,
}

/// The stages of pactown's starts, gathered start after start ([`crate::telemetry::start`]):
/// when each start reached each stage, indexed as [`Stage::ALL`].
#[derive(Debug, Default)]
pub struct Stages([Vec<f64>; Stage::ALL.len()]);

impl Stages {
    /// Ask the pactown `cmd` starts to mark its stages in `marks`.
    pub fn ask(cmd: &mut std::process::Command, marks: &Path) {
        let _ = std::fs::remove_file(marks);
        cmd.env(crate::telemetry::start::ENV, marks);
    }

    /// Add the stages `server` (started with [`Stages::ask`]) marked in `marks`; what it
    /// reached, as text (`main 3.1 · loaded 6.9 · …`, ms after the spawn).
    pub fn add(&mut self, marks: &Path, server: &Server) -> String {
        let text = std::fs::read_to_string(marks).unwrap_or_default();
        let marked = crate::telemetry::start::read(&text, server.spawned_ns);
        let mut reached = Vec::new();
        for (stage, at) in marked {
            self.0[stage as usize].push(at);
            reached.push(format!("{} {at:.1}", stage.name()));
        }
        reached.join(" · ")
    }

    /// Each stage reached, in order, with when.
    pub fn spreads(self) -> Vec<StageSpread> {
        Stage::ALL
            .into_iter()
            .zip(self.0)
            .filter(|(_, at)| !at.is_empty())
            .map(|(stage, at)| StageSpread {
                stage: stage.name(),
                ms: Spread::of(at),
            })
            .collect()
    }
}

/// Stages as one line, `main 3.0 · loaded 6.8 · …` (their medians, ms after the spawn).
pub fn stages_line(stages: &[StageSpread]) -> String {
    let each: Vec<String> = stages
        .iter()
        .map(|s| format!("{} {:.1}", s.stage, s.ms.median))
        .collect();
    each.join(" · ")
}

/// Requests sent before a measured part.
pub const WARMUP_REQUESTS: u64 = 200;

/// Run it.
pub fn run(
    target: &Prepared,
    opts: &Options,
    work: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<Report> {
    let rt = load::runtime(opts.threads)?;
    let timeout = start_timeout(target);
    let pactown = target.pactown()?;
    let mut starts = Vec::new();
    let mut stages = Stages::default();
    let mut server = None;
    for i in 0..opts.starts.max(1) {
        let port = free_port()?;
        let marks = work.join(format!("pactown-start-{i}.marks"));
        let mut cmd = pactown.command(port);
        Stages::ask(&mut cmd, &marks);
        let s = Server::start(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], port)),
            &opts.path,
            &work.join(format!("pactown-start-{i}.log")),
            timeout,
        )?;
        let reached = stages.add(&marks, &s);
        say(&format!(
            "start {}/{}: first answer after {:.1} ms ({reached})",
            i + 1,
            opts.starts.max(1),
            ms(s.started_in),
        ));
        starts.push(ms(s.started_in));
        server = Some(s);
        if i + 1 < opts.starts.max(1)
            && let Some(mut s) = server.take()
        {
            s.stop();
        }
    }
    let mut server = server.expect("at least one start");
    let idle = server.memory();
    let addr = server.addr;
    let sequential = rt.block_on(sequential(addr, &opts.path, opts.requests))?;
    say(&format!(
        "{} requests one at a time: p50 {:.0} µs, p99 {:.0} µs",
        sequential.requests, sequential.latency_us.p50, sequential.latency_us.p99
    ));
    let (load, under_load) = rt.block_on(under_load(&server, &opts.path, opts))?;
    say(&format!(
        "{} connections for {:.0} s: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
        load.connections,
        opts.duration.as_secs_f64(),
        load.throughput_rps,
        load.latency_us.p50,
        load.latency_us.p99
    ));
    server.stop();
    let (per_added, between, note) = if !opts.per_service {
        (None, None, Some("not asked for".to_string()))
    } else if !target.is_readme {
        (
            None,
            None,
            Some("measured for a README target; `pactown bench density` measures many".into()),
        )
    } else {
        let many = if target.service_plan().sandbox.kind.is_wasm() {
            21
        } else {
            5
        };
        let one = copies(target, 1, work, &opts.path, timeout)?;
        let all = copies(target, many, work, &opts.path, timeout)?;
        let added = (many - 1) as f64;
        (
            Some(((all.pss_kib as f64 - one.pss_kib as f64) / added).round()),
            Some([1, many]),
            None,
        )
    };
    let build = match &opts.build {
        Some(cache) => Some(super::build::measure(target, cache, work, say)?),
        None => None,
    };
    Ok(Report {
        machine: Machine::here(),
        target: target.file.display().to_string(),
        service: target.service.clone(),
        kind: target.service_plan().sandbox.kind.as_str().to_string(),
        method: Method {
            starts: opts.starts.max(1),
            warmup_requests: WARMUP_REQUESTS,
            requests: opts.requests,
            connections: opts.connections,
            duration_s: opts.duration.as_secs_f64(),
            pace: pace(opts),
            threads: opts.threads,
            path: opts.path.clone(),
        },
        start_ms: Spread::of(starts),
        start_stages_ms: stages.spreads(),
        sequential,
        load,
        memory: MemoryReport {
            idle,
            under_load,
            services: target.plan.services.len(),
            per_added_service_pss_kib: per_added,
            per_added_service_between: between,
            per_added_service_note: note,
        },
        build,
    })
}

/// How long a start may take: the slowest service's own `timeout`, plus a margin.
pub fn start_timeout(target: &Prepared) -> Duration {
    target
        .plan
        .services
        .values()
        .map(|s| s.health.timeout)
        .max()
        .unwrap_or(Duration::from_secs(60))
        + Duration::from_secs(30)
}

/// The load's pacing.
pub fn pace(opts: &Options) -> Pace {
    match opts.rate {
        Some(rate) => Pace::Open { rate },
        None => Pace::Closed,
    }
}

/// (b): `n` requests one after another on one connection, after a warm-up.
pub async fn sequential(addr: SocketAddr, path: &str, n: u64) -> anyhow::Result<LoadResult> {
    let target = Target {
        addr,
        path: path.to_string(),
    };
    let spec = |requests| LoadSpec {
        connections: 1,
        duration: Duration::from_secs(600),
        warmup: Duration::ZERO,
        requests: Some(requests),
        pace: Pace::Closed,
    };
    load::run(&target, &spec(WARMUP_REQUESTS)).await?;
    load::run(&target, &spec(n)).await
}

/// (c): the load, with the largest memory seen while it ran (sampled every 100 ms).
pub async fn under_load(
    server: &Server,
    path: &str,
    opts: &Options,
) -> anyhow::Result<(LoadResult, Memory)> {
    let target = Target {
        addr: server.addr,
        path: path.to_string(),
    };
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, pid) = (done.clone(), server.pid());
        std::thread::spawn(move || {
            let mut peak = Memory::default();
            while !done.load(Ordering::Relaxed) {
                let m = Memory::of_tree(pid);
                if m.pss_kib > peak.pss_kib {
                    peak = m;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let result = load::run(
        &target,
        &LoadSpec {
            connections: opts.connections,
            duration: opts.duration,
            warmup: Duration::from_secs(1),
            requests: None,
            pace: pace(opts),
        },
    )
    .await;
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or_default();
    Ok((result?, peak))
}

/// The memory of pactown serving `n` copies of the target README, once all are ready.
fn copies(
    target: &Prepared,
    n: usize,
    work: &Path,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Memory> {
    let port = free_port()?;
    let services: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            let svc = serde_json::json!({
                "readme": target.file,
                "port": if i == 0 { port } else { 0 },
            });
            (format!("copy{i}"), svc)
        })
        .collect();
    let dir = work.join(format!("copies-{n}"));
    std::fs::create_dir_all(&dir)?;
    let file = super::write_ecosystem(
        &dir,
        &format!("copies{n}"),
        &serde_json::json!({"name": format!("bench-copies-{n}"), "services": services}),
    )?;
    let mut cmd = std::process::Command::new(super::pactown_exe()?);
    cmd.args(["--color", "never", "up"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"]);
    let mut server = Server::start(
        cmd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        path,
        &dir.join("pactown.log"),
        timeout,
    )?;
    // Every copy ready: the last one's address answers too (pactown reports all ready at once).
    let m = server.memory();
    server.stop();
    Ok(m)
}

/// Latency percentiles for printing.
pub fn line(p: &Percentiles) -> String {
    format!(
        "p50 {:.0} µs · p90 {:.0} µs · p99 {:.0} µs · max {:.0} µs",
        p.p50, p.p90, p.p99, p.max
    )
}
