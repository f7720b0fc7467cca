//! `pactown export workerd FILE -o DIR`: the JavaScript Workers of an ecosystem as a workerd
//! config (`DIR/config.capnp`), so the same modules run on Cloudflare's runtime.
//!
//! Each Worker service becomes a workerd worker with a socket at its planned port (workerd's
//! `--socket-addr NAME=HOST:PORT` moves it), its modules embedded (a Worker with npm packages
//! as the one module esbuild bundles, the same bundle its component is built from); each
//! `depends_on` becomes a service binding under the name pactown gives it (`env.API`); the
//! service's `env:` values become text bindings, secret-looking ones `fromEnvironment` (read
//! from workerd's own environment, never written into the config). A dependency that is not a
//! Worker (a native, Python or Rust service) is bound as an `external` service at its pactown
//! stable address, so the exported Workers call the rest of an ecosystem `pactown up` runs.
//! Services that cannot run on workerd are named with why.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::build::{BuildError, Cache};
use crate::plan::{Plan, is_secret_name};
use crate::spec::language::{Language, has_npm_packages, worker_entry};
use crate::spec::model::env_prefix;
use crate::spec::{Ecosystem, RuntimeKind, Service};

/// The compatibility date of exported Workers: one workerd 1.2026x runs with no flags.
pub const COMPATIBILITY_DATE: &str = "2025-01-01";

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The config file.
    pub config: PathBuf,
    /// Services exported as workers, with their socket's planned address.
    pub workers: Vec<ExportedWorker>,
    /// Dependencies bound as external services at their pactown addresses.
    pub external: Vec<ExportedWorker>,
    /// Services not exported, with why.
    pub skipped: Vec<Skipped>,
}

/// A worker (or external service) of the config.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedWorker {
    /// The service.
    pub name: String,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

/// A service left out.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The service.
    pub name: String,
    /// Why workerd cannot run it.
    pub why: String,
}

/// Why a service is no Worker workerd can run, if it is not one.
pub fn not_a_worker(s: &Service, kind: RuntimeKind) -> Option<String> {
    let language = crate::spec::language::language(s);
    if language != Language::Node {
        return Some(format!(
            "it is {} ({}): workerd runs JavaScript Workers only",
            language.as_str(),
            kind.as_str()
        ));
    }
    if kind != RuntimeKind::WasmHttp || worker_entry(s).is_none() {
        return Some(
            "it is a Node.js process started by its run command, not a Worker module".into(),
        );
    }
    None
}

/// Write `out/config.capnp` and the modules it embeds.
pub fn export(
    plan: &Plan,
    eco: &Ecosystem,
    cache: &Cache,
    out: &Path,
    say: &dyn Fn(&str),
) -> Result<Exported, BuildError> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let mut workers = Vec::new();
    let mut skipped = Vec::new();
    for (name, sp) in &plan.services {
        match not_a_worker(&eco.services[name.as_str()], sp.sandbox.kind) {
            None => workers.push(name.as_str()),
            Some(why) => skipped.push(Skipped {
                name: name.clone(),
                why,
            }),
        }
    }
    let address = |name: &str| {
        let port = plan.services[name].port.unwrap_or(0);
        format!("127.0.0.1:{port}")
    };
    let mut consts = String::new();
    let mut services = String::new();
    let mut sockets = String::new();
    let mut external: Vec<ExportedWorker> = Vec::new();
    for (i, name) in workers.iter().enumerate() {
        let service = &eco.services[*name];
        let modules = write_modules(service, &out.join(name), cache, say)?;
        let mut bindings = String::new();
        for dep in &plan.services[*name].depends_on {
            let _ = writeln!(
                bindings,
                "    (name = {}, service = {}),",
                capnp_str(&env_prefix(dep)),
                capnp_str(dep)
            );
            if !workers.contains(&dep.as_str()) && !external.iter().any(|e| &e.name == dep) {
                external.push(ExportedWorker {
                    name: dep.clone(),
                    address: address(dep),
                });
            }
        }
        for (k, v) in
            std::iter::once((&"SERVICE_NAME".to_string(), &service.name)).chain(service.env.iter())
        {
            if is_secret_name(k) {
                let _ = writeln!(
                    bindings,
                    "    (name = {}, fromEnvironment = {}),",
                    capnp_str(k),
                    capnp_str(k)
                );
            } else {
                let _ = writeln!(
                    bindings,
                    "    (name = {}, text = {}),",
                    capnp_str(k),
                    capnp_str(v)
                );
            }
        }
        let module_list: String = modules
            .iter()
            .map(|m| {
                format!(
                    "    (name = {}, esModule = embed {}),\n",
                    capnp_str(m),
                    capnp_str(&format!("{name}/{m}"))
                )
            })
            .collect();
        let _ = write!(
            consts,
            "# {name}\nconst w{i} :Workerd.Worker = (\n  modules = [\n{module_list}  ],\n  compatibilityDate = {},\n  bindings = [\n{bindings}  ],\n);\n\n",
            capnp_str(COMPATIBILITY_DATE),
        );
        let _ = writeln!(
            services,
            "    (name = {}, worker = .w{i}),",
            capnp_str(name)
        );
        let _ = writeln!(
            sockets,
            "    (name = {}, address = {}, http = (), service = {}),",
            capnp_str(name),
            capnp_str(&address(name)),
            capnp_str(name)
        );
    }
    for e in &external {
        let _ = writeln!(
            services,
            "    (name = {}, external = (address = {}, http = ())),",
            capnp_str(&e.name),
            capnp_str(&e.address)
        );
    }
    let mut text = format!(
        "# The JavaScript Workers of `{}`, exported by pactown {} from {}.\n# Run: workerd serve config.capnp (move a socket with --socket-addr NAME=HOST:PORT)\n",
        eco.name,
        env!("CARGO_PKG_VERSION"),
        eco.source.path.display()
    );
    for s in &skipped {
        let _ = writeln!(text, "# not exported: `{}`: {}", s.name, s.why);
    }
    let _ = write!(
        text,
        "\nusing Workerd = import \"/workerd/workerd.capnp\";\n\nconst config :Workerd.Config = (\n  services = [\n{services}  ],\n  sockets = [\n{sockets}  ],\n);\n\n{consts}"
    );
    let config = out.join("config.capnp");
    std::fs::write(&config, text)
        .with_context(|| format!("cannot write `{}`", config.display()))?;
    Ok(Exported {
        config,
        workers: workers
            .iter()
            .map(|n| ExportedWorker {
                name: n.to_string(),
                address: address(n),
            })
            .collect(),
        external,
        skipped,
    })
}

/// Write a Worker's modules into `dir`: its entry first (workerd's main module), then its other
/// JavaScript files; with npm packages, the one bundle of them all. Their names.
fn write_modules(
    service: &Service,
    dir: &Path,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> Result<Vec<String>, BuildError> {
    let entry = worker_entry(service).expect("exported services are Workers");
    let is_js = |p: &str| p.ends_with(".js") || p.ends_with(".mjs");
    crate::build::js_wasm::write_files(dir, service.content.files.iter())?;
    if has_npm_packages(service) {
        crate::build::js_wasm::bundle(service, dir, entry.path.as_str(), "worker.js", cache, say)?;
        return Ok(vec!["worker.js".into()]);
    }
    let mut modules = vec![entry.path.as_str().to_string()];
    modules.extend(
        service
            .content
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| is_js(p) && *p != entry.path.as_str())
            .map(str::to_string),
    );
    Ok(modules)
}

/// A Cap'n Proto text literal.
fn capnp_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capnp_strings_are_escaped() {
        assert_eq!(capnp_str("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(capnp_str("\u{1}"), r#""\x01""#);
    }
}
