//! The ecosystem file (`*.pactown.yaml`): services, ports, health checks, replicas, env and
//! `depends_on`, with the reference's fields, types and defaults (REFERENCE.md §2).
//!
//! Unknown fields are errors with a suggestion; every value is checked for its type and range;
//! `${VAR}` is interpolated from the host environment.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use super::decode::{Decoder, EnvLookup};
use super::diagnostic::{Diagnostics, SourceFile};
use super::fields::{
    allowed_hosts, depends_on, dirs, env_map, health, limits, rate_limit, registry,
};
pub use super::model::*;
use super::source::normalize;
use super::yaml::Node;

/// Top-level fields.
const ECOSYSTEM_FIELDS: &[&str] = &[
    "name",
    "version",
    "description",
    "base_port",
    "sandbox_root",
    "registry",
    "network",
    "services",
    "profiles",
];

/// Fields of a service.
const SERVICE_FIELDS: &[&str] = &[
    "readme",
    "port",
    "health_check",
    "timeout",
    "replicas",
    "auto_restart",
    "env",
    "depends_on",
    "sandbox_path",
    "version",
    "stop_grace_period",
    "runtime",
    "limits",
    "dirs",
    "allowed_hosts",
    "rate_limit",
    "sandbox",
    "user",
    "profile",
    "instance_reuse",
    "builtin",
];

const PROFILE_FIELDS: &[&str] = &["memory", "cpu", "processes", "open_files", "rate_limit"];

pub use super::checks::check;
pub use super::fields::is_env_name;

/// Decode the YAML tree of an ecosystem file. READMEs are not read here.
pub fn decode(
    source: &Arc<SourceFile>,
    root: &Node,
    env: EnvLookup<'_>,
    diags: &mut Diagnostics,
) -> Option<Ecosystem> {
    let dir = source
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut d = Decoder { source, diags, env };
    let entries = d.mapping(root, "the ecosystem file", ECOSYSTEM_FIELDS)?;
    let stem = source
        .path
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".pactown")
                .to_string()
        })
        .unwrap_or_else(|| "ecosystem".into());
    let mut eco = Ecosystem {
        source: source.clone(),
        dir: dir.clone(),
        name: stem,
        version: "0.1.0".into(),
        description: String::new(),
        base_port: DEFAULT_BASE_PORT,
        sandbox_root: normalize(&dir.join(".pactown-sandboxes")),
        registry: Registry::default(),
        network: "pactown-net".into(),
        services: IndexMap::new(),
        state_dir: super::source::state_dir(&source.path),
        profiles: builtin_profiles(),
        elsewhere: Default::default(),
    };
    let mut services_node = None;
    for e in &entries {
        let v = e.value;
        match e.key {
            "name" => {
                if let Some(s) = d.string(v, "name") {
                    eco.name = s;
                }
            }
            "version" => {
                if let Some(s) = d.string(v, "version") {
                    eco.version = s;
                }
            }
            "description" => {
                if let Some(s) = d.opt_string(v, "description") {
                    eco.description = s.unwrap_or_default();
                }
            }
            "base_port" => {
                if let Some(p) = d.int(v, "base_port", 0..=65535, "8000") {
                    eco.base_port = p as u16;
                }
            }
            "sandbox_root" => {
                if let Some(s) = d.string(v, "sandbox_root") {
                    eco.sandbox_root = normalize(&dir.join(s));
                }
            }
            "network" => {
                if let Some(s) = d.string(v, "network") {
                    eco.network = s;
                }
            }
            "registry" => {
                if let Some(r) = registry(&mut d, v) {
                    eco.registry = r;
                }
            }
            "services" => services_node = Some((v, e.key_span.clone())),
            "profiles" => {
                if let Some(entries) = d.mapping(v, "`profiles`", &[]) {
                    for p in entries {
                        let what = format!("profile `{}`", p.key);
                        let Some(fields) = d.mapping(p.value, &what, PROFILE_FIELDS) else {
                            continue;
                        };
                        let mut profile = Profile::default();
                        let rate = fields
                            .iter()
                            .find(|f| f.key == "rate_limit")
                            .map(|f| f.value);
                        profile.rate_limit = rate.and_then(|r| rate_limit(&mut d, r));
                        // The limit fields share their reading with `limits:`.
                        let limit_fields: Vec<(Node, Node)> = fields
                            .iter()
                            .filter(|f| f.key != "rate_limit")
                            .map(|f| {
                                let key = Node {
                                    span: f.key_span.clone(),
                                    kind: super::yaml::NodeKind::Scalar {
                                        value: f.key.to_string(),
                                        plain: true,
                                    },
                                };
                                (key, f.value.clone())
                            })
                            .collect();
                        let map = Node {
                            span: p.value.span.clone(),
                            kind: super::yaml::NodeKind::Map(limit_fields),
                        };
                        if let Some(l) = limits(&mut d, &map) {
                            profile.limits = l;
                        }
                        eco.profiles.insert(p.key.to_string(), profile);
                    }
                }
            }
            _ => unreachable!("unknown fields are filtered by `mapping`"),
        }
    }
    let Some((services, key_span)) = services_node else {
        let end = source.text.len();
        d.error(
            "yaml::no-services",
            end..end,
            "the ecosystem has no `services:`",
            "add a `services:` mapping, e.g.\nservices:\n  api:\n    readme: api/README.md\n    port: 8001",
        );
        return None;
    };
    let entries = d.mapping(services, "`services`", &[])?;
    if entries.is_empty() {
        d.error(
            "yaml::no-services",
            key_span,
            "`services` is empty",
            "add at least one service under `services:`",
        );
        return None;
    }
    for e in entries {
        if let Some(s) = service(&mut d, &dir, e.key, e.key_span.clone(), e.value) {
            eco.services.insert(s.name.clone(), s);
        }
    }
    Some(eco)
}

/// Service names are host names (`http://api/`), directory names and variable prefixes.
fn check_name(d: &mut Decoder<'_>, name: &str, span: Range<usize>) -> bool {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        d.error(
            "yaml::service-name",
            span,
            format!("invalid service name `{name}`"),
            "a name starts with a letter or digit, uses only letters, digits, `-`, `_` and `.`, and is at most 63 characters (it becomes a host name)",
        );
    }
    ok
}

fn service(
    d: &mut Decoder<'_>,
    dir: &Path,
    name: &str,
    name_span: Range<usize>,
    node: &Node,
) -> Option<Service> {
    let named_ok = check_name(d, name, name_span.clone());
    let what = format!("service `{name}`");
    // `api:` with nothing under it takes every default.
    let entries = if node.is_null() {
        Vec::new()
    } else {
        d.mapping(node, &what, SERVICE_FIELDS)?
    };
    let errors_before = d.diags.error_count();
    let mut s = Service::new(
        name,
        normalize(&dir.join(name).join("README.md")),
        name_span,
    );
    for e in entries {
        let v = e.value;
        match e.key {
            "readme" => {
                if let Some(p) = d.string(v, "readme") {
                    s.readme = normalize(&dir.join(p));
                    s.readme_span = Some(v.span.clone());
                }
            }
            "port" => {
                s.port_span = Some(v.span.clone());
                if v.is_null() {
                    s.port = PortSpec::None;
                } else if let Some(p) = d.int(v, "port", 0..=65535, "8001") {
                    s.port = PortSpec::Fixed(p as u16);
                }
            }
            "health_check" => s.health_check = health(d, v),
            "timeout" => {
                if let Some(t) = d.duration(v, "timeout") {
                    s.timeout = t;
                }
            }
            "stop_grace_period" => {
                if let Some(t) = d.duration(v, "stop_grace_period") {
                    s.stop_grace_period = t;
                }
            }
            "replicas" => {
                if let Some(r) = d.int(v, "replicas", 1..=256, "2") {
                    s.replicas = r as u32;
                }
            }
            "builtin" => {
                if let Some(text) = d.string(v, "builtin") {
                    match super::service::Builtin::parse(text.trim()) {
                        Some(b) => s.builtin = Some((b, v.span.clone())),
                        None => d.error(
                            "yaml::builtin",
                            v.span.clone(),
                            format!("unknown built-in service `{text}`"),
                            "write `discovery`, `shared-state` or `job-control`",
                        ),
                    }
                }
            }
            "instance_reuse" => {
                if let Some(n) = d.int(v, "instance_reuse", 1..=1_000_000, "1000") {
                    s.instance_reuse = (n as u32, Some(v.span.clone()));
                }
            }
            "auto_restart" => {
                if let Some(b) = d.bool(v, "auto_restart") {
                    s.auto_restart = b;
                }
            }
            "env" => s.env = env_map(d, v),
            "depends_on" => s.depends_on = depends_on(d, v),
            "sandbox_path" => {
                if let Some(p) = d.opt_string(v, "sandbox_path") {
                    s.sandbox_path = p.map(|p| normalize(&dir.join(p)));
                }
            }
            "runtime" => {
                if let Some(text) = d.string(v, "runtime") {
                    match super::service::RuntimeKind::parse(text.trim()) {
                        Some(k) => {
                            s.runtime = Some(k);
                            s.runtime_span = Some(v.span.clone());
                        }
                        None => d.error(
                            "yaml::runtime",
                            v.span.clone(),
                            format!("unknown runtime `{text}`"),
                            "write `native`, `wasm-http` or `wasm-command`",
                        ),
                    }
                }
            }
            "limits" => {
                if let Some(l) = limits(d, v) {
                    s.limits = l;
                }
            }
            "dirs" => s.dirs = dirs(d, dir, v),
            "allowed_hosts" => s.allowed_hosts = allowed_hosts(d, v),
            "rate_limit" => s.rate_limit = rate_limit(d, v),
            "sandbox" => {
                let on = match v.as_scalar().map(str::trim) {
                    Some("full" | "on") => Some(true),
                    Some("none" | "off") => Some(false),
                    _ => d.bool(v, "sandbox"),
                };
                if let Some(on) = on {
                    s.sandbox = on;
                }
            }
            "user" => s.user = d.string(v, "user"),
            "profile" => s.profile = d.string(v, "profile").map(|p| (p, v.span.clone())),
            "version" => {
                if let Some(ver) = d.string(v, "version") {
                    match semver::Version::parse(ver.trim()) {
                        Ok(_) => s.version = Some(ver.trim().to_string()),
                        Err(err) => d.error(
                            "yaml::version",
                            v.span.clone(),
                            format!("`{ver}` is not a semantic version: {err}"),
                            "write MAJOR.MINOR.PATCH, e.g. `version: 1.2.0`",
                        ),
                    }
                }
            }
            _ => unreachable!(),
        }
    }
    (named_ok && d.diags.error_count() == errors_before).then_some(s)
}
