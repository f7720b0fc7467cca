//! `pactown bench`: measurements anyone can rerun on their own machine, against real peers, in
//! one run.
//!
//! - [`coldstart`]: one target on pactown: process start → first answer, per-request latency
//!   with a fresh instance, sustained load, memory.
//! - [`compare`]: the same service on pactown (fresh instances, and reusing them where the
//!   service allows it), `wasmtime serve`, workerd, the Python pactown and as a plain native
//!   process, interleaved round by round, with a table, a JSON file and an SVG chart.
//! - [`density`]: many copies of one hello service in one pactown: time to all ready, memory
//!   per added service.
//!
//! Servers are real processes ([`process`]); load comes from the built-in generator
//! ([`load`]); peers are installed into pactown's cache on first use, pinned ([`peers`]).

pub mod build;
pub mod chart;
pub mod coldstart;
pub mod compare;
pub mod density;
pub mod load;
pub mod peers;
pub mod process;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use indexmap::IndexMap;
use serde::Serialize;

use crate::build::{Built, Cache};
use crate::facts::HostFacts;
use crate::plan::Plan;
use crate::spec::ecosystem::assign_ports;
use crate::spec::graph::DependencyGraph;
use crate::spec::{Diagnostics, Ecosystem};

/// The machine a measurement ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs pactown may use.
    pub cores: usize,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// The kernel (`uname -r`).
    pub kernel: String,
    /// The operating system (`PRETTY_NAME` of os-release).
    pub os: String,
    /// pactown's version.
    pub pactown: String,
    /// When (UTC, RFC 3339).
    pub date: String,
}

impl Machine {
    /// This machine, now.
    pub fn here() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib,
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            os,
            pactown: env!("CARGO_PKG_VERSION").to_string(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        format!(
            "{} · {} cores · {} MiB · Linux {} · {} · pactown {} · {}",
            self.cpu, self.cores, self.memory_mib, self.kernel, self.os, self.pactown, self.date
        )
    }
}

/// The spread of repeated measurements.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Spread {
    /// The smallest.
    pub min: f64,
    /// The median.
    pub median: f64,
    /// The largest.
    pub max: f64,
    /// Every measurement, in the order taken.
    pub runs: Vec<f64>,
}

impl Spread {
    /// Of these values (none: all zero).
    pub fn of(runs: Vec<f64>) -> Self {
        if runs.is_empty() {
            return Self::default();
        }
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            min: sorted[0],
            median,
            max: sorted[n - 1],
            runs,
        }
    }
}

/// Milliseconds of a duration, to 0.01 ms.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// A scratch directory for one bench run's logs and generated files, below pactown's cache.
pub fn scratch(cache: &Cache) -> anyhow::Result<tempfile::TempDir> {
    let base = cache.path(&["bench"]);
    std::fs::create_dir_all(&base)?;
    Ok(tempfile::Builder::new().prefix("run-").tempdir_in(base)?)
}

/// The pactown binary measurements start (this one).
pub fn pactown_exe() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// A generated one-file ecosystem (JSON is YAML) in `dir`, for servers pactown starts with
/// settings a README alone cannot carry.
pub fn write_ecosystem(dir: &Path, name: &str, eco: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.pactown.yaml"));
    std::fs::write(&path, serde_json::to_string_pretty(eco)?)?;
    Ok(path)
}

/// A target built and ready to start from warm caches.
pub struct Prepared {
    /// The ecosystem (a README is a one-service ecosystem).
    pub eco: Ecosystem,
    /// Its plan.
    pub plan: Plan,
    /// What building made.
    pub built: IndexMap<String, Built>,
    /// The service measured.
    pub service: String,
    /// The file given: a README, or an ecosystem file.
    pub file: PathBuf,
    /// Whether it is a README.
    pub is_readme: bool,
}

impl Prepared {
    /// Plan and build `eco` (from `file`) as `up` would, components precompiled, and choose
    /// the service to measure: `service`, else the only one, else the last of the last start
    /// wave that has an address (the one that calls the others).
    pub fn new(
        file: &Path,
        eco: Ecosystem,
        service: Option<&str>,
        cache: &Cache,
        say: &(dyn Fn(&str) + Sync),
    ) -> anyhow::Result<Self> {
        let graph = DependencyGraph::from_ecosystem(&eco).map_err(Diagnostics::from)?;
        let facts = HostFacts::for_ecosystem(&eco);
        let plan = Plan::build(&eco, &graph, &assign_ports(&eco), &facts);
        let service = match service {
            Some(s) if plan.services.contains_key(s) => s.to_string(),
            Some(s) => anyhow::bail!(
                "`{s}` is no service of `{}`; it has {}",
                eco.name,
                plan.services
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => plan
                .waves
                .iter()
                .rev()
                .flatten()
                .find(|n| plan.services[n.as_str()].port.is_some())
                .cloned()
                .with_context(|| format!("`{}` has no service with an address", eco.name))?,
        };
        say("building the target (a warm cache builds nothing) ...");
        let built = crate::build::build_all(&plan, &eco, cache, say)?;
        crate::build::precompile(&built, cache)?;
        Ok(Self {
            is_readme: file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md")),
            file: std::path::absolute(file)?,
            eco,
            plan,
            built,
            service,
        })
    }

    /// The measured service's plan.
    pub fn service_plan(&self) -> &crate::plan::ServicePlan {
        &self.plan.services[self.service.as_str()]
    }

    /// How pactown starts the whole target.
    pub fn pactown(&self) -> anyhow::Result<PactownStart> {
        Ok(PactownStart {
            exe: pactown_exe()?,
            file: self.file.clone(),
            service: self.service.clone(),
            is_readme: self.is_readme,
        })
    }
}

/// pactown starting a target: `run README --port P`, or `up FILE --port SERVICE=P`, its admin
/// address on a port of the OS's choosing.
#[derive(Debug, Clone)]
pub struct PactownStart {
    exe: PathBuf,
    file: PathBuf,
    service: String,
    is_readme: bool,
}

impl PactownStart {
    /// The command, with the measured service at `port`.
    pub fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--color", "never"]);
        if self.is_readme {
            cmd.arg("run").arg(&self.file).arg(format!("--port={port}"));
        } else {
            cmd.arg("up")
                .arg(&self.file)
                .arg(format!("--port={}={port}", self.service));
        }
        cmd.args(["--listen", "127.0.0.1:0"]);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_has_a_median() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(Spread::of(vec![1.0, 4.0]).median, 2.5);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::here();
        assert!(
            m.cores >= 1 && !m.kernel.is_empty() && !m.cpu.is_empty(),
            "{m:?}"
        );
    }
}
