//! Deploy: what other engines run, generated from the same [`Plan`] as `up` (never a second
//! reading of the YAML).
//!
//! - [`workerd`]: an ecosystem's JavaScript Workers as a workerd config (`pactown export
//!   workerd`).
//! - `pactown deploy --target kubernetes|compose|quadlet` ([`kubernetes`], [`compose`],
//!   [`quadlet`]): each service a container running `pactown up --only <service>`, from one
//!   image of the ecosystem ([`image`]) holding pactown, the ecosystem's files and its
//!   components precompiled; the others reached by name on the engine's network at the ports
//!   `up` plans, exactly as through pactown's router.
//!
//! [`Unit`] is the one reading of the plan all three targets share.

pub mod check;
pub mod compose;
pub mod image;
pub mod kubernetes;
pub mod quadlet;
pub mod workerd;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Serialize;

use crate::plan::{Plan, is_secret_name};
use crate::spec::{Ecosystem, RuntimeKind};

/// A deploy target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Kubernetes: a Deployment, a Service and a NetworkPolicy per service.
    Kubernetes,
    /// Docker Compose (docker compose, podman-compose).
    Compose,
    /// Podman Quadlet: systemd `.container` units and a `.network`.
    Quadlet,
}

/// How the containers reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The engine's own network: each service by its name (cluster DNS, compose and podman
    /// networks).
    Bridge,
    /// The host's network (compose and quadlet only): every service on loopback at its port,
    /// for engines that give containers no network of their own.
    Host,
}

/// Settings of a deployment.
#[derive(Debug, Clone)]
pub struct Options {
    /// The target.
    pub target: Target,
    /// Image names start with this (`registry.example.com/team/`).
    pub image_prefix: String,
    /// Components compiled for this CPU (`native`: this machine's features; `baseline`: any
    /// machine of the architecture).
    pub cpu: pactown_runtime::wasm::CpuTarget,
    /// How containers reach each other.
    pub network: Network,
    /// Base images of native services, by language (`python` → `python:3.12-slim`).
    pub base_images: IndexMap<String, String>,
}

/// The base image of a native service of `language`, unless `--base-image` names another.
pub fn default_base_image(language: &str) -> &'static str {
    match language {
        "python" => "docker.io/library/python:3.12-slim",
        "node" => "docker.io/library/node:22-slim",
        "go" => "docker.io/library/golang:1.24",
        _ => "docker.io/library/debian:bookworm-slim",
    }
}

/// The uid services run as in their containers (the `nonroot` user of distroless images).
pub const UID: i64 = 65532;
/// Where the ecosystem lives in an image.
pub const APP: &str = "/app";
/// Where pactown's cache (components, their compiled code) lives in an image.
pub const CACHE: &str = "/cache";
/// Where pactown itself is in an image.
pub const BIN: &str = "/usr/local/bin/pactown";

/// One service as every engine runs it.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// The service.
    pub name: String,
    /// Its name as a DNS label (Kubernetes and container names).
    pub dns: String,
    /// Its kind.
    pub kind: RuntimeKind,
    /// Its language.
    pub language: String,
    /// The image it runs.
    pub image: String,
    /// The arguments of `pactown` in its container.
    pub args: Vec<String>,
    /// Its port (as `up` plans it).
    pub port: u16,
    /// `GET` path of its health check, if it has one.
    pub health: Option<String>,
    /// Seconds to become ready.
    pub timeout_s: u64,
    /// Replicas.
    pub replicas: u32,
    /// Memory limit, bytes.
    pub memory: Option<u64>,
    /// CPU limit, cores.
    pub cpu: Option<f64>,
    /// What it depends on.
    pub depends_on: Vec<String>,
    /// What depends on it.
    pub dependents: Vec<String>,
    /// Whether it reaches outside hosts (`allowed_hosts`), with their ports.
    pub egress_ports: Vec<u16>,
    /// Seconds between SIGTERM and SIGKILL.
    pub stop_grace_s: u64,
}

/// What a deployment needs from outside itself: the variables the ecosystem file interpolates
/// (`${VAR}`) go into a Secret or an env file, never into a manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Secrets {
    /// Variable → value (from this machine's environment at deploy time).
    pub values: IndexMap<String, String>,
    /// Variables the file names that are not set here (to be filled in).
    pub unset: Vec<String>,
    /// Values written in the file that look like secrets: kept in the image's copy of the
    /// ecosystem file, and warned about.
    pub inline: Vec<String>,
}

/// A whole deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// The ecosystem.
    pub ecosystem: String,
    /// Its version (the image tag).
    pub version: String,
    /// The ecosystem file inside the image.
    pub file_in_image: String,
    /// Its services.
    pub units: Vec<Unit>,
    /// Its variables.
    pub secrets: Secrets,
    /// How its containers reach each other.
    pub network: Network,
    /// The image of its components (and of pactown itself).
    pub image: String,
}

/// A service name as a DNS label: lowercase letters, digits and `-`.
pub fn dns_label(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "svc".into() } else { s }
}

/// The variables a text interpolates (`${VAR}`, `${VAR:-x}`, nested too).
fn variables(text: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::<String>::new());
    let record = |n: &str| {
        let mut v = names.borrow_mut();
        if !v.iter().any(|x| x == n) {
            v.push(n.to_string());
        }
        Some(String::new())
    };
    for line in text.lines() {
        let _ = crate::spec::interpolate::interpolate(line, &record);
    }
    names.into_inner()
}

/// Read the plan as every engine will run it. Ports are the plan's (a service with no fixed
/// port gets `base_port` + its index, as `up` gives it).
pub fn deployment(plan: &Plan, eco: &Ecosystem, opts: &Options) -> anyhow::Result<Deployment> {
    let rel = eco
        .source
        .path
        .strip_prefix(&eco.dir)
        .unwrap_or(&eco.source.path)
        .to_path_buf();
    let file_in_image = format!("{APP}/{}", rel.display());
    let tag = eco.version.clone();
    let image = format!("{}{}:{tag}", opts.image_prefix, dns_label(&eco.name));
    let ports: IndexMap<String, u16> = plan
        .services
        .iter()
        .enumerate()
        .filter_map(|(i, (n, s))| {
            let p = match s.port? {
                0 => crate::spec::ecosystem::DEFAULT_BASE_PORT + i as u16,
                p => p,
            };
            Some((n.clone(), p))
        })
        .collect();
    let host_of = |name: &str| match opts.network {
        Network::Host => "127.0.0.1".to_string(),
        Network::Bridge => match opts.target {
            Target::Quadlet => format!("{}-{}", dns_label(&eco.name), dns_label(name)),
            _ => dns_label(name),
        },
    };
    let mut units = Vec::new();
    for (name, sp) in &plan.services {
        let Some(&port) = ports.get(name) else {
            anyhow::bail!(
                "`{name}` has no address (`port: null`): a deployment runs services that answer HTTP; give it a port"
            );
        };
        let service = &eco.services[name.as_str()];
        let language = sp.language.as_str().to_string();
        let image = if sp.sandbox.kind.is_wasm() {
            image.clone()
        } else {
            format!(
                "{}{}-{}:{tag}",
                opts.image_prefix,
                dns_label(&eco.name),
                dns_label(name)
            )
        };
        let mut args = vec![
            "--color".into(),
            "never".into(),
            "up".into(),
            file_in_image.clone(),
            "--only".into(),
            name.clone(),
            "--bind".into(),
            if opts.network == Network::Host {
                "127.0.0.1".into()
            } else {
                "0.0.0.0".into()
            },
            "--listen".into(),
            "127.0.0.1:0".into(),
            format!("--port={name}={port}"),
            format!("--replicas={name}=1"),
        ];
        for (other, p) in &ports {
            if other != name {
                args.push(format!("--elsewhere={other}={}:{p}", host_of(other)));
            }
        }
        units.push(Unit {
            name: name.clone(),
            dns: dns_label(name),
            kind: sp.sandbox.kind,
            language,
            image,
            args,
            port,
            health: service.health_check.as_ref().map(|h| h.path.clone()),
            timeout_s: service.timeout.as_secs().max(1),
            replicas: service.replicas.max(1),
            memory: service.limits.memory,
            cpu: service.limits.cpu,
            depends_on: sp.depends_on.clone(),
            dependents: plan
                .services
                .values()
                .filter(|o| o.depends_on.contains(name))
                .map(|o| o.name.clone())
                .collect(),
            egress_ports: service
                .allowed_hosts
                .iter()
                .map(|r| r.port.unwrap_or(443))
                .collect(),
            stop_grace_s: service.stop_grace_period.as_secs(),
        });
    }
    let mut secrets = Secrets::default();
    for var in variables(&eco.source.text) {
        match std::env::var(&var) {
            Ok(v) => {
                secrets.values.insert(var, v);
            }
            Err(_) => secrets.unset.push(var),
        }
    }
    for s in eco.services.values() {
        for (k, v) in &s.env {
            // Written in the file itself, not taken from a variable.
            let from_var = eco
                .source
                .text
                .lines()
                .filter(|l| l.trim_start().starts_with(&format!("{k}:")))
                .any(|l| l.contains("${"));
            if is_secret_name(k) && !v.is_empty() && !from_var {
                secrets.inline.push(format!("{}.{k}", s.name));
            }
        }
    }
    Ok(Deployment {
        ecosystem: eco.name.clone(),
        version: tag,
        file_in_image,
        units,
        secrets,
        network: opts.network,
        image,
    })
}

/// A Kubernetes quantity of memory: the largest binary unit that divides the bytes
/// (`32Mi`, `1Gi`, `1536Ki`), else bytes. Never `m` (milli): the reference's `512m` is half a
/// byte.
pub fn memory_quantity(bytes: u64) -> String {
    for (unit, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A Kubernetes CPU quantity: millicores (`500m`, `2`).
pub fn cpu_quantity(cores: f64) -> String {
    let milli = (cores * 1000.0).round() as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Where a deployment's files go, each with its text.
pub type Files = Vec<(PathBuf, String)>;

/// Write `files` below `out`.
pub fn write(out: &Path, files: &Files) -> anyhow::Result<()> {
    for (rel, text) in files {
        let p = out.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_what_kubernetes_means() {
        assert_eq!(memory_quantity(32 << 20), "32Mi");
        assert_eq!(memory_quantity(1 << 30), "1Gi");
        assert_eq!(memory_quantity(1536 << 10), "1536Ki");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(cpu_quantity(0.5), "500m");
        assert_eq!(cpu_quantity(2.0), "2");
    }

    #[test]
    fn names_become_dns_labels_and_variables_are_found() {
        assert_eq!(dns_label("My_API.v2"), "my-api-v2");
        assert_eq!(
            variables("a: ${DB_PASSWORD:?set it}\nb: ${X:-${Y}}\nc: $$literal"),
            ["DB_PASSWORD", "X", "Y"]
        );
    }
}
