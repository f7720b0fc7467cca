//! `pactown bench coldstart|compare|density`: measurements of pactown, against real peers, in
//! one run, on the machine it runs on (see [`crate::bench`]).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{ExitStatus, Term};
use crate::bench::{self, coldstart, compare, density, peers::PeerKind};
use crate::build::Cache;

/// Measure start-up, per-request cost, throughput and memory, against peers.
#[derive(Debug, clap::Args)]
pub struct BenchCommand {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// The benches.
#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// One target on pactown: process start → first answer, one request at a time with a
    /// fresh instance, sustained load, memory
    Coldstart(ColdstartCommand),
    /// The same service on pactown, `wasmtime serve` (precompiled, and on the `.wasm`), workerd,
    /// the Python pactown and as a plain process, interleaved, in one run: a table, a JSON file and an SVG chart
    Compare(CompareCommand),
    /// Many copies of a hello service in one pactown: time to all ready, memory per service
    Density(DensityCommand),
}

/// Flags both single-target benches share.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// A README, or an ecosystem file.
    pub target: PathBuf,
    /// The service to measure (default: the only one, or the last one to start: the one
    /// that calls the others).
    #[arg(long)]
    pub service: Option<String>,
    /// The path requested.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Connections under load.
    #[arg(long, short = 'c', default_value_t = 8)]
    pub connections: usize,
    /// Load generator threads (default: the machine's cores, at most 2).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl TargetArgs {
    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(2)))
    }

    fn prepare(&self, term: &Term, cache: &Cache) -> anyhow::Result<bench::Prepared> {
        let eco = super::load(&self.target, term)?.ecosystem;
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        bench::Prepared::new(&self.target, eco, self.service.as_deref(), cache, &say)
    }
}

/// `pactown bench coldstart TARGET`.
#[derive(Debug, clap::Args)]
pub struct ColdstartCommand {
    #[command(flatten)]
    target: TargetArgs,
    /// Requests sent one after another (each a fresh instance for a component).
    #[arg(long, short = 'n', default_value_t = 1000)]
    requests: u64,
    /// How long the load lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Process starts to time.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// An open loop at this many requests per second (latency from when each was due, so a
    /// stall counts for every request it held up); default: a closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Skip the memory per added service (two more starts: 1 and 21 copies of a component, 1
    /// and 5 of a native service; README targets).
    #[arg(long)]
    no_per_service: bool,
    /// Also time `pactown build` of the target cold (its tools installed, nothing of it built)
    /// and warm, and report the component's size.
    #[arg(long)]
    build: bool,
}

impl ColdstartCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        bench::process::adopt_orphans();
        let cache = Cache::locate();
        let target = self.target.prepare(term, &cache)?;
        let work = bench::scratch(&cache)?;
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let opts = coldstart::Options {
            starts: self.starts,
            requests: self.requests,
            connections: self.target.connections,
            duration: self.duration,
            rate: self.rate,
            threads: self.target.threads(),
            path: self.target.path.clone(),
            per_service: !self.no_per_service,
            build: self.build.then(|| cache.clone()),
        };
        let report = coldstart::run(&target, &opts, work.path(), &say)?;
        if self.target.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            term.info(&coldstart_text(&report));
        }
        Ok(ExitStatus::Success)
    }
}

/// The medians of the stages of pactown's starts, as a line of its own (none marked: nothing).
fn stages_text(stages: &[coldstart::StageSpread]) -> String {
    if stages.is_empty() {
        return String::new();
    }
    format!(
        "\n  of which (ms after the spawn, medians)  {}",
        coldstart::stages_line(stages)
    )
}

fn coldstart_text(r: &coldstart::Report) -> String {
    let mib = |k: u64| k as f64 / 1024.0;
    format!(
        "{}\n`{}` ({}) from {}\n  start → first answer  median {:.1} ms (min {:.1}, max {:.1}; {} starts){}\n  one at a time         {} ({} requests)\n  {} connections         {:.0} req/s · {} ({} errors)\n  memory                idle {:.1} MiB PSS ({:.1} MiB RSS) · under load {:.1} MiB PSS · {}",
        r.machine.describe(),
        r.service,
        r.kind,
        r.target,
        r.start_ms.median,
        r.start_ms.min,
        r.start_ms.max,
        r.method.starts,
        stages_text(&r.start_stages_ms),
        coldstart::line(&r.sequential.latency_us),
        r.sequential.requests,
        r.load.connections,
        r.load.throughput_rps,
        coldstart::line(&r.load.latency_us),
        r.load.errors + r.load.non_2xx,
        mib(r.memory.idle.pss_kib),
        mib(r.memory.idle.rss_kib),
        mib(r.memory.under_load.pss_kib),
        match (
            r.memory.per_added_service_pss_kib,
            r.memory.per_added_service_between
        ) {
            (Some(k), Some([from, to])) => {
                format!("{k:.0} KiB PSS per added service ({from} vs {to} copies)")
            }
            (Some(k), None) => format!("{k:.0} KiB PSS per added service"),
            (None, _) => r.memory.per_added_service_note.clone().unwrap_or_default(),
        }
    ) + &r.build.as_ref().map_or(String::new(), |b| {
        let mb = |n: Option<u64>| n.map_or("-".into(), |n| format!("{:.1} MB", n as f64 / 1e6));
        format!(
            "\n  build                 cold {:.1} s · warm {:.0} ms · component {} (compiled {})",
            b.cold_ms / 1000.0,
            b.warm_ms,
            mb(b.component_bytes),
            mb(b.compiled_bytes)
        )
    })
}

/// `pactown bench compare TARGET`.
#[derive(Debug, clap::Args)]
pub struct CompareCommand {
    #[command(flatten)]
    target: TargetArgs,
    /// The peers to run, in order (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    peers: Vec<PeerKind>,
    /// Rounds: each starts and measures every peer once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Process starts per peer and round (the round's figure is their median; a peer whose
    /// first start takes over a second is started once). Nine, because a start of a few
    /// milliseconds moves by a millisecond from one to the next on a 2-core machine.
    #[arg(long, default_value_t = 9)]
    starts: usize,
    /// Requests sent one after another, per round.
    #[arg(long, short = 'n', default_value_t = 300)]
    requests: u64,
    /// How long the load lasts, per round.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where the JSON report and its SVG chart go.
    #[arg(long, short = 'o', default_value = "pactown-bench")]
    out: PathBuf,
}

impl CompareCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        bench::process::adopt_orphans();
        let cache = Cache::locate();
        let target = self.target.prepare(term, &cache)?;
        let work = bench::scratch(&cache)?;
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let opts = compare::Options {
            peers: if self.peers.is_empty() {
                PeerKind::ALL.to_vec()
            } else {
                self.peers
            },
            rounds: self.rounds,
            starts: self.starts,
            requests: self.requests,
            connections: self.target.connections,
            duration: self.duration,
            threads: self.target.threads(),
            path: self.target.path.clone(),
            out: self.out,
        };
        let report = compare::run(&target, &opts, work.path(), &cache, &say)?;
        if self.target.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        term.info(compare::table(&report).trim_end());
        Ok(ExitStatus::Success)
    }
}

/// `pactown bench density`.
#[derive(Debug, clap::Args)]
pub struct DensityCommand {
    /// The most services started at once (steps of 10, 20, 50, … up to it).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// The hello service's language.
    #[arg(long, value_enum, default_value_t = density::Hello::Rust)]
    hello: density::Hello,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl DensityCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let cache = Cache::locate();
        let work = bench::scratch(&cache)?;
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let report = density::run(self.services, self.hello, work.path(), &cache, &say)?;
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            term.info(&format!(
                "{}\n{} hello services ({:?}): built in {:.0} ms; {:.0} KiB PSS per added service",
                report.machine.describe(),
                self.services,
                report.hello,
                report.build_ms,
                report.per_added_service_pss_kib
            ));
        }
        Ok(ExitStatus::Success)
    }
}

impl BenchCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        match self.what {
            BenchWhat::Coldstart(c) => c.run(term),
            BenchWhat::Compare(c) => c.run(term),
            BenchWhat::Density(c) => c.run(term),
        }
    }
}
