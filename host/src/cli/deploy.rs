//! `pactown deploy FILE --target kubernetes|compose|quadlet`: what another engine runs, from
//! the same plan as `up` (see [`crate::deploy`]).

use std::io::Write;
use std::path::PathBuf;

use indexmap::IndexMap;

use super::{ExitStatus, Term, user_error};
use crate::deploy::{self, Network, Target};

/// Write (and with `--build`, build) a deployment of an ecosystem for an existing engine.
#[derive(Debug, clap::Args)]
pub struct DeployCommand {
    /// The ecosystem file.
    pub file: PathBuf,
    /// The engine.
    #[arg(long, value_enum)]
    pub target: Target,
    /// Where the files go.
    #[arg(long, short = 'o', default_value = "deploy")]
    pub out: PathBuf,
    /// Image names start with this (e.g. `registry.example.com/team/`).
    #[arg(long, default_value = "localhost/")]
    pub image_prefix: String,
    /// Compile components for this CPU: `native` (this machine's features) or `baseline` (any
    /// machine of the architecture).
    #[arg(long, default_value = "native", value_parser = ["native", "baseline"])]
    pub target_cpu: String,
    /// How containers reach each other: the engine's network, by name, or the host's
    /// (compose and quadlet).
    #[arg(long, value_enum, default_value_t = Network::Bridge)]
    pub network: Network,
    /// The base image of a language's native services (`python=python:3.12-slim`; repeatable).
    #[arg(long, value_name = "LANGUAGE=IMAGE")]
    pub base_image: Vec<String>,
    /// Build the images with podman (or docker).
    #[arg(long)]
    pub build: bool,
    /// Check the output without an engine, and write nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "build"])]
    pub check: bool,
    /// Print the output instead of writing it.
    #[arg(long, conflicts_with = "build")]
    pub dry_run: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

impl DeployCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        if self.network == Network::Host && self.target == Target::Kubernetes {
            return Err(user_error(
                "`--network host` is for compose and quadlet",
                Some("Kubernetes services find each other through cluster DNS"),
            ));
        }
        let eco = super::load(&self.file, term)?.ecosystem;
        let graph = crate::spec::graph::DependencyGraph::from_ecosystem(&eco)
            .map_err(crate::spec::Diagnostics::from)?;
        let facts = crate::facts::HostFacts::for_ecosystem(&eco);
        let plan = crate::plan::Plan::build(
            &eco,
            &graph,
            &crate::spec::ecosystem::assign_ports(&eco),
            &facts,
        );
        let mut base_images = IndexMap::new();
        for b in &self.base_image {
            let Some((lang, image)) = b.split_once('=') else {
                return Err(user_error(
                    format!("`--base-image {b}` is not LANGUAGE=IMAGE"),
                    Some("e.g. `--base-image python=docker.io/library/python:3.12-slim`"),
                ));
            };
            base_images.insert(lang.to_string(), image.to_string());
        }
        let opts = deploy::Options {
            target: self.target,
            image_prefix: self.image_prefix.clone(),
            cpu: if self.target_cpu == "baseline" {
                pactown_runtime::wasm::CpuTarget::Baseline
            } else {
                pactown_runtime::wasm::CpuTarget::Native
            },
            network: self.network,
            base_images,
        };
        let d = deploy::deployment(&plan, &eco, &opts)
            .map_err(|e| user_error(format!("{e:#}"), None))?;
        let files = match self.target {
            Target::Kubernetes => deploy::kubernetes::files(&d)?,
            Target::Compose => deploy::compose::files(&d)?,
            Target::Quadlet => deploy::quadlet::files(&d)?,
        };
        let problems = deploy::check::check(&d, &plan, self.target, &files);
        if self.check {
            if problems.is_empty() {
                term.success(&format!(
                    "the {} deployment of `{}` is valid ({} services, {} files)",
                    format!("{:?}", self.target).to_lowercase(),
                    eco.name,
                    d.units.len(),
                    files.len()
                ));
                return Ok(ExitStatus::Success);
            }
            for p in &problems {
                term.error(p);
            }
            return Ok(ExitStatus::Failure);
        }
        anyhow::ensure!(
            problems.is_empty(),
            "the generated deployment is not valid:\n{}",
            problems.join("\n")
        );
        for k in &d.secrets.unset {
            term.warn(&format!(
                "`${{{k}}}` is not set here: fill it in the Secret / env file before you apply it"
            ));
        }
        for k in &d.secrets.inline {
            term.warn(&format!(
                "`{k}` looks like a secret written in the ecosystem file: the image's copy of the file holds it; write `${{VAR}}` instead"
            ));
        }
        if self.dry_run {
            let mut out = std::io::stdout().lock();
            for (path, text) in &files {
                writeln!(out, "# ==> {} <==\n{text}", path.display())?;
            }
            return Ok(ExitStatus::Success);
        }
        let cache = crate::build::Cache::locate();
        let say = |m: &str| term.info(&format!("pactown: {m}"));
        let built = crate::build::build_all(&plan, &eco, &cache, &say)?;
        deploy::write(&self.out, &files)?;
        let context = self.out.join("image");
        let images = deploy::image::context(&d, &plan, &eco, &built, &cache, &opts, &context)?;
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({"deployment": d, "files": files.iter().map(|(p, _)| self.out.join(p)).collect::<Vec<_>>(), "images": images}),
            )?;
            writeln!(out)?;
        }
        term.success(&format!(
            "wrote {} file{} for {} services to {}",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            d.units.len(),
            self.out.display()
        ));
        if self.build {
            let Some(engine) = deploy::image::engine() else {
                return Err(user_error(
                    "`--build` needs podman or docker, and neither is on PATH",
                    Some(&format!(
                        "the build context is in {}: build it where an engine runs (`podman build -t {} {}`)",
                        context.display(),
                        d.image,
                        context.display()
                    )),
                ));
            };
            deploy::image::build(&engine, &context, &images, &say)?;
            term.success(&format!(
                "built {}",
                images
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            term.info(&format!(
                "the images' build context is in {}; build them with `pactown deploy --build`, or `podman build -t {} {}`",
                context.display(),
                d.image,
                context.display()
            ));
        }
        Ok(ExitStatus::Success)
    }
}
