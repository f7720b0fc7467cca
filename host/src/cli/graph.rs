//! `pactown graph FILE [--format text|dot|mermaid|json]`.

use std::io::Write;
use std::path::PathBuf;

use super::{ExitStatus, Term};
use crate::spec::ecosystem::assign_ports;
use crate::spec::graph::DependencyGraph;

/// Output formats of `graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Names, ports and edges, for people.
    Text,
    /// Graphviz.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// Nodes, edges and waves as JSON.
    Json,
}

/// Show the dependency graph: services, their ports, and who depends on whom.
#[derive(Debug, clap::Args)]
pub struct GraphCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl GraphCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let loaded = super::load(&self.file, term)?;
        let eco = &loaded.ecosystem;
        let graph = DependencyGraph::from_ecosystem(eco).map_err(crate::spec::Diagnostics::from)?;
        let ports = assign_ports(eco);
        let port = |name: &str| ports.get(name).copied().flatten();
        let edges = graph.edges();
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Text => {
                writeln!(out, "{} ({} services)", eco.name, eco.services.len())?;
                for (i, wave) in graph.waves().iter().enumerate() {
                    writeln!(out, "wave {}:", i + 1)?;
                    for name in wave {
                        let p = port(name).map_or("no port".to_string(), |p| format!(":{p}"));
                        let deps = &eco.services[name.as_str()].depends_on;
                        if deps.is_empty() {
                            writeln!(out, "  {name} {p}")?;
                        } else {
                            let names: Vec<&str> = deps.iter().map(|d| d.name.as_str()).collect();
                            writeln!(out, "  {name} {p} → {}", names.join(", "))?;
                        }
                    }
                }
            }
            Format::Dot => {
                writeln!(out, "digraph \"{}\" {{", escape(&eco.name))?;
                writeln!(out, "  rankdir=LR;")?;
                for name in eco.services.keys() {
                    let label = match port(name) {
                        Some(p) => format!("{name}\\n:{p}"),
                        None => name.clone(),
                    };
                    writeln!(out, "  \"{}\" [label=\"{}\"];", escape(name), label)?;
                }
                for (a, b) in &edges {
                    writeln!(out, "  \"{}\" -> \"{}\";", escape(a), escape(b))?;
                }
                writeln!(out, "}}")?;
            }
            Format::Mermaid => {
                writeln!(out, "flowchart LR")?;
                let id = |name: &str| name.replace(['-', '.'], "_");
                for name in eco.services.keys() {
                    let label = match port(name) {
                        Some(p) => format!("{name} :{p}"),
                        None => name.clone(),
                    };
                    writeln!(out, "  {}[\"{}\"]", id(name), label)?;
                }
                for (a, b) in &edges {
                    writeln!(out, "  {} --> {}", id(a), id(b))?;
                }
            }
            Format::Json => {
                let nodes: Vec<_> = eco
                    .services
                    .keys()
                    .map(|n| serde_json::json!({"name": n, "port": port(n)}))
                    .collect();
                let edges: Vec<_> = edges
                    .iter()
                    .map(|(a, b)| serde_json::json!({"from": a, "to": b}))
                    .collect();
                let doc = serde_json::json!({
                    "ecosystem": eco.name,
                    "services": nodes,
                    "edges": edges,
                    "waves": graph.waves(),
                    "stop_order": graph.stop_order(),
                });
                serde_json::to_writer_pretty(&mut out, &doc)?;
                writeln!(out)?;
            }
        }
        Ok(ExitStatus::Success)
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
