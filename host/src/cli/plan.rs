//! `pactown plan FILE [--json]`: what `up` will do, per service.

use std::io::Write;
use std::path::PathBuf;

use super::{ExitStatus, Term};
use crate::plan::Plan;
use crate::spec::ecosystem::assign_ports;
use crate::spec::graph::DependencyGraph;

/// Show what `up` would do: per service its sandbox kind and why, files, deps, run command,
/// port, environment, health, restart policy and replicas. Secret-looking values are redacted.
#[derive(Debug, clap::Args)]
pub struct PlanCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

impl PlanCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let loaded = super::load(&self.file, term)?;
        let eco = &loaded.ecosystem;
        let graph = DependencyGraph::from_ecosystem(eco).map_err(crate::spec::Diagnostics::from)?;
        let facts = crate::facts::HostFacts::for_ecosystem(eco);
        let plan = Plan::build(eco, &graph, &assign_ports(eco), &facts).redacted();
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        } else {
            write_text(&mut out, &plan)?;
        }
        Ok(ExitStatus::Success)
    }
}

fn write_text(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "ecosystem {} ({})",
        plan.ecosystem,
        plan.file.display()
    )?;
    writeln!(out, "state dir  {}", plan.state_dir.display())?;
    for (i, wave) in plan.waves.iter().enumerate() {
        writeln!(out, "wave {}     {}", i + 1, wave.join(", "))?;
    }
    for s in plan.services.values() {
        writeln!(out)?;
        let port = s.port.map_or("none".to_string(), |p| p.to_string());
        writeln!(out, "{}  port {port}  replicas {}", s.name, s.replicas)?;
        writeln!(
            out,
            "  sandbox   {} — {}",
            s.sandbox.kind.as_str(),
            s.sandbox.reason
        )?;
        writeln!(out, "  language  {}", s.language.as_str())?;
        for t in &s.toolchains {
            writeln!(
                out,
                "  toolchain {}: {}",
                t.tool.as_str(),
                t.status.describe()
            )?;
        }
        writeln!(out, "  dir       {}", s.sandbox.dir.display())?;
        for f in &s.files {
            writeln!(
                out,
                "  file      {} ({} bytes, from {})",
                f.path, f.bytes, f.from
            )?;
        }
        for (installer, deps) in &s.deps {
            let name = serde_json::to_value(installer)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            writeln!(out, "  deps      {name}: {}", deps.join(" "))?;
        }
        if let Some(b) = &s.build {
            writeln!(out, "  build     {b}")?;
        }
        match &s.run {
            Some(r) => writeln!(out, "  run       {}", r.replace('\n', "\n            "))?,
            None => writeln!(out, "  run       (none)")?,
        }
        if !s.depends_on.is_empty() {
            writeln!(out, "  needs     {}", s.depends_on.join(", "))?;
        }
        let egress: Vec<&str> = s.calls.egress.iter().map(|r| r.text.as_str()).collect();
        writeln!(
            out,
            "  egress    {}",
            if egress.is_empty() {
                "none (only its dependencies; `allowed_hosts:` names outside hosts)".to_string()
            } else {
                egress.join(", ")
            }
        )?;
        let off: Vec<&str> = s
            .sandbox
            .layers
            .iter()
            .filter(|l| !l.on)
            .map(|l| l.name.as_str())
            .collect();
        writeln!(
            out,
            "  confined  {}",
            match s.sandbox.level {
                crate::plan::SandboxLevel::Full => "full".to_string(),
                crate::plan::SandboxLevel::Partial => format!("partial (off here: {})", off.join(", ")),
                crate::plan::SandboxLevel::None => "none: `sandbox: off` is the escape hatch; it runs unconfined and reaches whatever this machine can".to_string(),
            }
        )?;
        let health = s
            .health
            .check
            .as_deref()
            .unwrap_or("port accepts connections");
        writeln!(
            out,
            "  health    {health} (ready within {}s)",
            s.health.timeout.as_secs_f64()
        )?;
        writeln!(
            out,
            "  restart   {}",
            if s.restart.auto_restart {
                "on failure, backoff 100ms..30s"
            } else {
                "never"
            }
        )?;
        for (k, v) in &s.env {
            writeln!(out, "  env       {k}={v}")?;
        }
    }
    Ok(())
}
