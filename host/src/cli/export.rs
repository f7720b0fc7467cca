//! `pactown export workerd FILE -o DIR`: an ecosystem's JavaScript Workers as a workerd config
//! (see [`crate::deploy::workerd`]).

use std::io::Write;
use std::path::PathBuf;

use super::{ExitStatus, Term};
use crate::build::{BuildError, Cache};
use crate::facts::HostFacts;
use crate::plan::Plan;
use crate::spec::ecosystem::assign_ports;
use crate::spec::graph::DependencyGraph;

/// Write what another runtime runs.
#[derive(Debug, clap::Args)]
pub struct ExportCommand {
    /// The target.
    #[command(subcommand)]
    pub to: ExportTo,
}

/// Export targets.
#[derive(Debug, clap::Subcommand)]
pub enum ExportTo {
    /// The ecosystem's JavaScript Workers as a workerd config: each a worker, each
    /// `depends_on` a service binding under the name pactown gives it
    Workerd(WorkerdCommand),
}

/// `pactown export workerd FILE -o DIR`.
#[derive(Debug, clap::Args)]
pub struct WorkerdCommand {
    /// The ecosystem file, or a README.
    pub file: PathBuf,
    /// Where `config.capnp` and the modules it embeds go.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Print what was exported as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ExportCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let ExportTo::Workerd(c) = self.to;
        let eco = super::load(&c.file, term)?.ecosystem;
        let graph =
            DependencyGraph::from_ecosystem(&eco).map_err(crate::spec::Diagnostics::from)?;
        let plan = Plan::build(
            &eco,
            &graph,
            &assign_ports(&eco),
            &HostFacts::for_ecosystem(&eco),
        );
        let cache = Cache::locate();
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let exported = crate::deploy::workerd::export(&plan, &eco, &cache, &c.out, &say).map_err(
            |e| match e {
                BuildError::Code(d) => anyhow::Error::from(d),
                BuildError::Other(e) => e,
            },
        )?;
        if c.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &exported)?;
            writeln!(out)?;
        }
        for s in &exported.skipped {
            term.warn(&format!("`{}` is not exported: {}", s.name, s.why));
        }
        for e in &exported.external {
            term.note(&format!(
                "`{}` is bound as an external service at {} (its pactown address: `pactown up` runs it)",
                e.name, e.address
            ));
        }
        if exported.workers.is_empty() {
            return Err(super::user_error(
                format!("`{}` has no JavaScript Worker to export", eco.name),
                Some(
                    "a Worker is a JavaScript service with `export default { fetch }` and no run block",
                ),
            ));
        }
        term.success(&format!(
            "wrote {} ({} worker{}); run it with `workerd serve {}`",
            exported.config.display(),
            exported.workers.len(),
            if exported.workers.len() == 1 { "" } else { "s" },
            exported.config.display()
        ));
        Ok(ExitStatus::Success)
    }
}
