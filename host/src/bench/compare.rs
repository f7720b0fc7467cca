//! `pactown bench compare TARGET`: the same service on every peer ([`super::peers`]), in one
//! run, interleaved: round 1 starts and measures each peer in turn, then round 2, and so on, so
//! a peer never gets a quieter machine than another. Per peer and round: process start → first
//! answer (the median of several starts in a row: the first after another peer's run pays for
//! caches that peer evicted), one request at a time (p50/p90/p99/max), sustained load at C
//! connections, memory idle and under load. The report holds the median over rounds, each
//! round's figures, and the ratio of each figure to pactown's; a table on stderr, a JSON file
//! and an SVG chart next to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::coldstart::{self, WARMUP_REQUESTS};
use super::load::{LoadResult, Pace, Percentiles};
use super::peers::{self, PeerKind, Setup};
use super::process::{Memory, Server, free_port};
use super::{Machine, Prepared, Spread, ms};
use crate::build::Cache;

/// How a comparison runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The peers, in order.
    pub peers: Vec<PeerKind>,
    /// Rounds (each measures every peer once).
    pub rounds: usize,
    /// Process starts per peer and round (one for a peer that takes over a second to start).
    pub starts: usize,
    /// Requests sent one after another per round.
    pub requests: u64,
    /// Connections under load.
    pub connections: usize,
    /// Seconds of load per round.
    pub duration: Duration,
    /// Load generator threads.
    pub threads: usize,
    /// The path requested.
    pub path: String,
    /// Where the JSON and the chart go.
    pub out: PathBuf,
}

/// What a comparison found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The file compared.
    pub target: String,
    /// The service compared.
    pub service: String,
    /// Its language.
    pub language: String,
    /// Its kind on pactown.
    pub kind: String,
    /// How.
    pub method: Method,
    /// A row per peer, every row with the same fields.
    pub peers: Vec<PeerRow>,
    /// The JSON file.
    pub json: PathBuf,
    /// The chart.
    pub chart: PathBuf,
}

/// How it ran.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    /// Rounds, each peer measured once per round, in the order of `peers`.
    pub rounds: usize,
    /// Process starts per peer and round, in a row (the round's start is their median).
    pub starts: usize,
    /// Requests before each measured part, not counted.
    pub warmup_requests: u64,
    /// Sequential requests per round.
    pub requests: u64,
    /// Connections under load.
    pub connections: usize,
    /// Seconds of load per round, after a 1 s warm-up.
    pub duration_s: f64,
    /// The load generator's loop.
    pub pace: Pace,
    /// Load generator threads.
    pub threads: usize,
    /// The path requested.
    pub path: String,
    /// What the ratios mean.
    pub ratios: &'static str,
}

/// What the ratios mean.
pub const RATIOS: &str = "how many times better pactown is: the peer's time or memory divided by pactown's, pactown's throughput divided by the peer's (above 1: pactown better)";

/// One peer's results.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRow {
    /// Its name.
    pub peer: &'static str,
    /// Whether it ran.
    pub available: bool,
    /// Why not, or what failed.
    pub why: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// What exactly ran.
    pub what: Option<String>,
    /// Process start → first answer, ms, over rounds.
    pub start_ms: Option<Spread>,
    /// pactown's only: where its starts went, each stage in ms from the spawn, over every
    /// start of every round (see `bench coldstart`).
    pub start_stages_ms: Option<Vec<coldstart::StageSpread>>,
    /// One request at a time (median over rounds of each percentile), µs.
    pub sequential_us: Option<Percentiles>,
    /// Answered requests per second under load (median over rounds).
    pub throughput_rps: Option<f64>,
    /// Latency under load (median over rounds of each percentile), µs.
    pub load_latency_us: Option<Percentiles>,
    /// Requests that failed or answered outside 2xx/3xx, over all rounds.
    pub errors: Option<u64>,
    /// Memory after start (median PSS round), KiB.
    pub memory_idle: Option<Memory>,
    /// The largest memory under load (median PSS round), KiB.
    pub memory_load: Option<Memory>,
    /// Ratios to pactown (see [`RATIOS`]).
    pub vs_pactown: Option<Ratios>,
    /// Each round's figures.
    pub rounds: Vec<Round>,
}

/// Ratios of a peer's figures to pactown's (above 1: pactown better).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    /// Start → first answer.
    pub start: f64,
    /// Sequential p50.
    pub p50: f64,
    /// Sequential p99.
    pub p99: f64,
    /// Throughput.
    pub throughput: f64,
    /// PSS under load.
    pub memory: f64,
}

/// One round of one peer.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Start → first answer, ms (the median of `starts`).
    pub start_ms: f64,
    /// Each start of the round, ms, in order.
    pub starts_ms: Vec<f64>,
    /// Sequential requests.
    pub sequential: LoadResult,
    /// Under load.
    pub load: LoadResult,
    /// After start.
    pub memory_idle: Memory,
    /// Largest under load.
    pub memory_load: Memory,
}

/// Run it.
pub fn run(
    target: &Prepared,
    opts: &Options,
    work: &Path,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> anyhow::Result<Report> {
    let sp = target.service_plan();
    if !sp.depends_on.is_empty() {
        anyhow::bail!(
            "`bench compare` runs one service on its own, and `{}` depends on {}; choose a service without dependencies with `--service`, or measure the whole ecosystem with `bench coldstart`",
            target.service,
            sp.depends_on
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut setups = Vec::new();
    for &kind in &opts.peers {
        let dir = work.join(kind.name());
        std::fs::create_dir_all(&dir)?;
        let setup = match peers::setup(kind, target, &dir, cache, say) {
            Ok(s) => s,
            Err(e) => Setup::Unavailable(format!("could not be set up: {e:#}")),
        };
        if let Setup::Unavailable(why) = &setup {
            say(&format!("{}: not run ({why})", kind.name()));
        }
        setups.push((kind, setup));
    }
    let rt = super::load::runtime(opts.threads)?;
    let timeout = coldstart::start_timeout(target).max(Duration::from_secs(120));
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); setups.len()];
    let mut failed: Vec<Option<String>> = vec![None; setups.len()];
    let mut stages: Vec<coldstart::Stages> = setups.iter().map(|_| Default::default()).collect();
    let load_opts = coldstart::Options {
        starts: 1,
        requests: opts.requests,
        connections: opts.connections,
        duration: opts.duration,
        rate: None,
        threads: opts.threads,
        path: opts.path.clone(),
        per_service: false,
        build: None,
    };
    // One start of `peer` on a port of the OS's, its output to `log` in its directory.
    // pactown's starts also mark their stages, in `marks` next to the log.
    let marks = |kind: PeerKind, log: &str| work.join(kind.name()).join(format!("{log}.marks"));
    let start = |kind: PeerKind, peer: &peers::Peer, log: String| -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut cmd = peer.command(port)?;
        if kind.is_pactown() {
            coldstart::Stages::ask(&mut cmd, &marks(kind, &log));
        }
        Server::start(
            cmd,
            SocketAddr::from(([127, 0, 0, 1], port)),
            &opts.path,
            &work.join(kind.name()).join(log),
            timeout,
        )
    };
    for (i, (kind, setup)) in setups.iter().enumerate() {
        let Setup::Ready(peer) = setup else { continue };
        if peer.warm_up {
            say(&format!(
                "{}: one start before the rounds, not measured",
                kind.name()
            ));
            if let Err(e) = start(*kind, peer, "warm-up.log".into()) {
                say(&format!("{}: failed: {e:#}", kind.name()));
                failed[i] = Some(format!("failed in its warm-up start: {e:#}"));
            }
        }
    }
    for r in 0..opts.rounds.max(1) {
        for (i, (kind, setup)) in setups.iter().enumerate() {
            let Setup::Ready(peer) = setup else { continue };
            if failed[i].is_some() {
                continue;
            }
            let result = (|| -> anyhow::Result<Round> {
                let mut starts_ms = Vec::new();
                let mut server = loop {
                    let log = format!("round-{r}-{}.log", starts_ms.len());
                    let server = start(*kind, peer, log.clone())?;
                    if kind.is_pactown() {
                        stages[i].add(&marks(*kind, &log), &server);
                    }
                    starts_ms.push(ms(server.started_in));
                    // The last start is the one measured on; a slow starter starts once.
                    if starts_ms.len() >= opts.starts.max(1) || starts_ms[0] > 1000.0 {
                        break server;
                    }
                    drop(server);
                };
                let memory_idle = server.memory();
                let sequential = rt.block_on(coldstart::sequential(
                    server.addr,
                    &opts.path,
                    opts.requests,
                ))?;
                let (load, memory_load) =
                    rt.block_on(coldstart::under_load(&server, &opts.path, &load_opts))?;
                server.stop();
                Ok(Round {
                    start_ms: Spread::of(starts_ms.clone()).median,
                    starts_ms,
                    sequential,
                    load,
                    memory_idle,
                    memory_load,
                })
            })();
            match result {
                Ok(round) => {
                    say(&format!(
                        "round {}/{} {:19} start {:8.1} ms · p50 {:8.0} µs · {:8.0} req/s · {:6.1} MiB",
                        r + 1,
                        opts.rounds.max(1),
                        kind.name(),
                        round.start_ms,
                        round.sequential.latency_us.p50,
                        round.load.throughput_rps,
                        round.memory_load.pss_kib as f64 / 1024.0
                    ));
                    rounds[i].push(round);
                }
                Err(e) => {
                    say(&format!("{}: failed: {e:#}", kind.name()));
                    failed[i] = Some(format!("failed in round {}: {e:#}", r + 1));
                }
            }
        }
    }
    let mut rows: Vec<PeerRow> = setups
        .iter()
        .zip(rounds)
        .zip(failed)
        .zip(stages)
        .map(|((((kind, setup), rounds), failed), stages)| {
            let mut row = row(*kind, setup, rounds, failed);
            if row.available && kind.is_pactown() {
                row.start_stages_ms = Some(stages.spreads());
            }
            row
        })
        .collect();
    let pactown = rows.iter().find(|r| r.peer == "pactown").cloned();
    if let Some(base) = pactown {
        for row in &mut rows {
            row.vs_pactown = ratios(&base, row);
        }
    }
    std::fs::create_dir_all(&opts.out)?;
    let stem = format!("compare-{}", target.service);
    let json = std::path::absolute(opts.out.join(format!("{stem}.json")))?;
    let chart = std::path::absolute(opts.out.join(format!("{stem}.svg")))?;
    let service = &target.eco.services[target.service.as_str()];
    let report = Report {
        machine: Machine::here(),
        target: target.file.display().to_string(),
        service: target.service.clone(),
        language: crate::spec::language::language(service)
            .as_str()
            .to_string(),
        kind: sp.sandbox.kind.as_str().to_string(),
        method: Method {
            rounds: opts.rounds.max(1),
            starts: opts.starts.max(1),
            warmup_requests: WARMUP_REQUESTS,
            requests: opts.requests,
            connections: opts.connections,
            duration_s: opts.duration.as_secs_f64(),
            pace: Pace::Closed,
            threads: opts.threads,
            path: opts.path.clone(),
            ratios: RATIOS,
        },
        peers: rows,
        json: json.clone(),
        chart: chart.clone(),
    };
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    std::fs::write(&chart, super::chart::svg(&chart_of(&report)))?;
    Ok(report)
}

/// What the chart of a report shows.
fn chart_of(report: &Report) -> super::chart::Chart {
    super::chart::Chart {
        title: format!(
            "`{}` ({}, {}) on pactown and its peers",
            report.service, report.language, report.kind
        ),
        subtitle: vec![
            report.machine.describe(),
            format!(
                "{} rounds, interleaved; {} starts in a row; {} requests one at a time; {} connections for {:.0} s. Medians over rounds.",
                report.method.rounds,
                report.method.starts,
                report.method.requests,
                report.method.connections,
                report.method.duration_s
            ),
        ],
        rows: report
            .peers
            .iter()
            .map(|r| super::chart::Row {
                peer: r.peer.to_string(),
                why: r.why.clone(),
                start_ms: r.start_ms.as_ref().map(|s| s.median),
                p50_us: r.sequential_us.map(|p| p.p50),
                throughput_rps: r.throughput_rps,
                memory_mib: r.memory_load.map(|m| m.pss_kib as f64 / 1024.0),
            })
            .collect(),
        footer: format!("pactown bench compare · {}", report.target),
    }
}

/// A peer's row from its rounds.
fn row(kind: PeerKind, setup: &Setup, rounds: Vec<Round>, failed: Option<String>) -> PeerRow {
    let (version, what, why) = match setup {
        Setup::Ready(p) => (Some(p.version.clone()), Some(p.what.clone()), failed),
        Setup::Unavailable(why) => (None, None, Some(why.clone())),
    };
    let ran = !rounds.is_empty() && why.is_none();
    let median = |f: &dyn Fn(&Round) -> f64| Spread::of(rounds.iter().map(f).collect()).median;
    let percentiles = |f: &dyn Fn(&Round) -> &Percentiles| Percentiles {
        p50: median(&|r| f(r).p50),
        p90: median(&|r| f(r).p90),
        p99: median(&|r| f(r).p99),
        p999: median(&|r| f(r).p999),
        max: median(&|r| f(r).max),
        mean: median(&|r| f(r).mean),
    };
    let median_memory = |f: &dyn Fn(&Round) -> Memory| {
        let mut m: Vec<Memory> = rounds.iter().map(f).collect();
        m.sort_by_key(|m| m.pss_kib);
        m.get(m.len() / 2).copied().unwrap_or_default()
    };
    PeerRow {
        peer: kind.name(),
        available: ran,
        why,
        version,
        what,
        start_ms: ran.then(|| Spread::of(rounds.iter().map(|r| r.start_ms).collect())),
        sequential_us: ran.then(|| percentiles(&|r| &r.sequential.latency_us)),
        throughput_rps: ran.then(|| median(&|r| r.load.throughput_rps)),
        load_latency_us: ran.then(|| percentiles(&|r| &r.load.latency_us)),
        errors: ran.then(|| {
            rounds
                .iter()
                .map(|r| {
                    r.sequential.errors + r.sequential.non_2xx + r.load.errors + r.load.non_2xx
                })
                .sum()
        }),
        memory_idle: ran.then(|| median_memory(&|r| r.memory_idle)),
        memory_load: ran.then(|| median_memory(&|r| r.memory_load)),
        start_stages_ms: None,
        vs_pactown: None,
        rounds,
    }
}

/// `row`'s figures against pactown's.
fn ratios(base: &PeerRow, row: &PeerRow) -> Option<Ratios> {
    let div = |a: f64, b: f64| {
        if b > 0.0 {
            (a / b * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    let (bs, rs) = (base.sequential_us?, row.sequential_us?);
    Some(Ratios {
        start: div(
            row.start_ms.as_ref()?.median,
            base.start_ms.as_ref()?.median,
        ),
        p50: div(rs.p50, bs.p50),
        p99: div(rs.p99, bs.p99),
        throughput: div(base.throughput_rps?, row.throughput_rps?),
        memory: div(
            row.memory_load?.pss_kib as f64,
            base.memory_load?.pss_kib as f64,
        ),
    })
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{} · `{}` ({}, {}) · {} rounds, {} sequential requests, {} connections × {:.0} s\n\n",
        report.machine.describe(),
        report.service,
        report.language,
        report.kind,
        report.method.rounds,
        report.method.requests,
        report.method.connections,
        report.method.duration_s
    );
    out.push_str(&format!(
        "{:19} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}   {}\n",
        "peer",
        "start ms",
        "p50 µs",
        "p99 µs",
        "req/s",
        "MiB load",
        "errors",
        "vs pactown (start · p50 · req/s · memory)"
    ));
    for r in &report.peers {
        if !r.available {
            out.push_str(&format!(
                "{:19} {}\n",
                r.peer,
                r.why.as_deref().unwrap_or("not run")
            ));
            continue;
        }
        let s = r.sequential_us.unwrap_or_default();
        let v = r.vs_pactown.map_or(String::new(), |v| {
            format!(
                "{:.2}× · {:.2}× · {:.2}× · {:.2}×",
                v.start, v.p50, v.throughput, v.memory
            )
        });
        out.push_str(&format!(
            "{:19} {:>10.1} {:>10.0} {:>10.0} {:>10.0} {:>10.1} {:>9}   {v}\n",
            r.peer,
            r.start_ms.as_ref().map_or(0.0, |s| s.median),
            s.p50,
            s.p99,
            r.throughput_rps.unwrap_or(0.0),
            r.memory_load.map_or(0.0, |m| m.pss_kib as f64 / 1024.0),
            r.errors.unwrap_or(0),
        ));
    }
    for r in &report.peers {
        if let Some(stages) = r.start_stages_ms.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(&format!(
                "\n{}'s starts, of which (ms after the spawn, medians): {}",
                r.peer,
                coldstart::stages_line(stages)
            ));
        }
    }
    out.push_str(&format!(
        "\n\nratios: {RATIOS}\njson:   {}\nchart:  {}\n",
        report.json.display(),
        report.chart.display()
    ));
    out
}
