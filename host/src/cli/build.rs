//! `pactown build FILE [--json]`: prepare every service without starting anything.

use std::io::Write;
use std::path::PathBuf;

use super::{ExitStatus, Term};
use crate::build::{self, Built, Cache};
use crate::facts::HostFacts;
use crate::plan::Plan;
use crate::spec::ecosystem::assign_ports;
use crate::spec::graph::DependencyGraph;

/// Build every service of an ecosystem (or one README) as `up` would, and start nothing:
/// wasm components are compiled (or found in the cache) and precompiled to native code, native
/// sandboxes get their files and dependencies. A second `up` then starts from warm caches.
#[derive(Debug, clap::Args)]
pub struct BuildCommand {
    /// The ecosystem file, or a README.
    pub file: PathBuf,
    /// Print what was built as JSON (per service: kind, and the component for wasm services).
    #[arg(long)]
    pub json: bool,
    /// Build only this service (a native service's image installs its dependencies so).
    #[arg(long, value_name = "SERVICE")]
    pub only: Option<String>,
}

impl BuildCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let mut eco = super::load(&self.file, term)?.ecosystem;
        if let Some(here) = &self.only {
            eco.run_only(here, &Default::default())
                .map_err(|e| super::user_error(format!("`--only {here}`: {e}"), None))?;
        }
        let graph =
            DependencyGraph::from_ecosystem(&eco).map_err(crate::spec::Diagnostics::from)?;
        let facts = HostFacts::for_ecosystem(&eco);
        let plan = Plan::build(&eco, &graph, &assign_ports(&eco), &facts);
        let cache = Cache::locate();
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let built = build::build_all(&plan, &eco, &cache, &say)?;
        // Precompiled now, so `up` only maps it.
        build::precompile(&built, &cache)?;
        let mut report = serde_json::Map::new();
        for (name, b) in built {
            let sp = &plan.services[name.as_str()];
            let entry = match b {
                Built::Native(_) => serde_json::json!({"kind": "native", "dir": sp.sandbox.dir}),
                Built::Builtin => serde_json::json!({"kind": "builtin"}),
                Built::Component(c) => {
                    serde_json::json!({"kind": sp.sandbox.kind, "wasm": c.wasm, "key": c.key, "built": c.built})
                }
            };
            report.insert(name, entry);
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            term.success(&format!("{} built ({} services)", eco.name, report.len()));
        }
        Ok(ExitStatus::Success)
    }
}
