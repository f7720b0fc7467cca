//! Readers of the ecosystem file's structured fields: `registry`, `rate_limit`, `limits`,
//! `dirs`, `health_check`, `env` and `depends_on`, each with its types, defaults and errors.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use super::decode::Decoder;
use super::diagnostic::Diagnostic;
use super::model::{
    DEFAULT_HEALTH_INTERVAL, Dependency, DirGrant, HealthCheck, Limits, RateLimit, Registry,
};
use super::source::normalize;
use super::yaml::Node;

const RATE_FIELDS: &[&str] = &["requests", "per", "burst"];

const LIMIT_FIELDS: &[&str] = &[
    "memory",
    "cpu_time",
    "instances",
    "request_timeout",
    "cpu",
    "processes",
    "open_files",
];

const DIR_FIELDS: &[&str] = &["host", "guest", "write"];

const DEPENDENCY_FIELDS: &[&str] = &["name", "version", "registry", "endpoint", "env_var"];

const REGISTRY_FIELDS: &[&str] = &["url", "namespace", "auth_token"];

const HEALTH_FIELDS: &[&str] = &["path", "interval"];

pub(super) fn registry(d: &mut Decoder<'_>, node: &Node) -> Option<Registry> {
    let entries = d.mapping(node, "`registry`", REGISTRY_FIELDS)?;
    let mut r = Registry::default();
    for e in entries {
        match e.key {
            "url" => r.url = d.string(e.value, "url")?,
            "namespace" => r.namespace = d.string(e.value, "namespace")?,
            "auth_token" => r.auth_token = d.opt_string(e.value, "auth_token")?,
            _ => unreachable!(),
        }
    }
    Some(r)
}

/// `rate_limit: 100/s` (also `/m`, `/h`), or `{requests: 100, per: 1s, burst: 20}`.
pub(super) fn rate_limit(d: &mut Decoder<'_>, node: &Node) -> Option<RateLimit> {
    const HELP: &str = "write `rate_limit: 100/s` (or `/m`, `/h`), or `rate_limit: {requests: 100, per: 1s, burst: 20}`";
    if node.as_scalar().is_some() {
        let text = d.string(node, "rate_limit")?;
        let parsed = text.split_once('/').and_then(|(n, unit)| {
            let requests: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
            let per = match unit.trim() {
                "s" | "sec" | "second" => Duration::from_secs(1),
                "m" | "min" | "minute" => Duration::from_secs(60),
                "h" | "hour" => Duration::from_secs(3600),
                other => humantime::parse_duration(other)
                    .ok()
                    .filter(|d| !d.is_zero())?,
            };
            Some(RateLimit {
                requests,
                per,
                burst: requests,
            })
        });
        if parsed.is_none() {
            d.error(
                "yaml::rate-limit",
                node.span.clone(),
                format!("invalid rate limit `{text}`"),
                HELP,
            );
        }
        return parsed;
    }
    let entries = d.mapping(node, "`rate_limit`", RATE_FIELDS)?;
    let (mut requests, mut per, mut burst) = (None, Duration::from_secs(1), None);
    for e in entries {
        match e.key {
            "requests" => {
                requests = Some(d.int(e.value, "requests", 1..=1_000_000_000, "100")? as u32)
            }
            "per" => per = d.duration(e.value, "per")?,
            "burst" => burst = Some(d.int(e.value, "burst", 1..=1_000_000_000, "20")? as u32),
            _ => unreachable!(),
        }
    }
    let Some(requests) = requests else {
        d.error(
            "yaml::rate-limit",
            node.span.clone(),
            "`rate_limit` needs `requests`",
            HELP,
        );
        return None;
    };
    Some(RateLimit {
        requests,
        per,
        burst: burst.unwrap_or(requests),
    })
}

pub(super) fn limits(d: &mut Decoder<'_>, node: &Node) -> Option<Limits> {
    let entries = d.mapping(node, "`limits`", LIMIT_FIELDS)?;
    let mut l = Limits::default();
    let mut ok = true;
    for e in entries {
        let v = e.value;
        // Read every field, so every mistake is reported in one round.
        match e.key {
            "memory" => match d.byte_size(v, "memory") {
                Some(b) if b < 1 << 20 => {
                    d.error(
                        "yaml::range",
                        v.span.clone(),
                        "`memory` is below 1 MiB",
                        "give at least `memory: 16M`",
                    );
                    ok = false;
                }
                Some(b) => l.memory = Some(b),
                None => ok = false,
            },
            "cpu_time" => match d.duration(v, "cpu_time") {
                Some(t) => l.cpu_time = Some(t),
                None => ok = false,
            },
            "request_timeout" => match d.duration(v, "request_timeout") {
                Some(t) => l.request_timeout = Some(t),
                None => ok = false,
            },
            "instances" => match d.int(v, "instances", 1..=10_000, "32") {
                Some(n) => l.instances = Some(n as u32),
                None => ok = false,
            },
            "cpu" => match d.string(v, "cpu").map(|t| {
                (
                    t.trim().trim_end_matches('%').parse::<f64>(),
                    t.contains('%'),
                )
            }) {
                Some((Ok(n), pct)) if n > 0.0 => l.cpu = Some(if pct { n / 100.0 } else { n }),
                Some(_) => {
                    d.error(
                        "yaml::cpu",
                        v.span.clone(),
                        "`cpu` must be a positive share of one core",
                        "write `cpu: 0.5` (half a core) or `cpu: 50%`",
                    );
                    ok = false;
                }
                None => ok = false,
            },
            "processes" => match d.int(v, "processes", 1..=1_000_000, "64") {
                Some(n) => l.processes = Some(n as u64),
                None => ok = false,
            },
            "open_files" => match d.int(v, "open_files", 16..=1_048_576, "1024") {
                Some(n) => l.open_files = Some(n as u64),
                None => ok = false,
            },
            _ => unreachable!(),
        }
    }
    ok.then_some(l)
}

/// `allowed_hosts:` items: `api.example.com`, `*.example.com:443`, `https://x.org`, …
pub(super) fn allowed_hosts(d: &mut Decoder<'_>, node: &Node) -> Vec<super::hosts::HostRule> {
    let Some(items) = d.seq(
        node,
        "allowed_hosts",
        "[api.example.com, \"*.example.org:443\"]",
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(text) = d.string(item, "allowed_hosts") else {
            continue;
        };
        match super::hosts::HostRule::parse(&text) {
            Ok(rule) => out.push(rule),
            Err((what, fix)) => d.error("yaml::allowed_hosts", item.span.clone(), what, fix),
        }
    }
    out
}

/// `dirs:` items: `./data` (read-only at `/data`), `./data:/srv/data[:rw|ro]`, or
/// `{host: ./data, guest: /data, write: true}`.
pub(super) fn dirs(d: &mut Decoder<'_>, base: &Path, node: &Node) -> Vec<DirGrant> {
    let Some(items) = d.seq(node, "dirs", "[./data]") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let (host, guest, write) = if item.as_scalar().is_some() {
            let Some(text) = d.string(item, "dirs") else {
                continue;
            };
            let mut parts = text.split(':');
            let host = parts.next().unwrap_or_default().to_string();
            let guest = parts.next().map(str::to_string);
            let write = match parts.next() {
                None | Some("ro") => false,
                Some("rw") => true,
                Some(other) => {
                    d.error(
                        "yaml::dirs",
                        item.span.clone(),
                        format!("unknown access `{other}`"),
                        "end with `:ro` (the default) or `:rw`",
                    );
                    continue;
                }
            };
            (host, guest, write)
        } else {
            let Some(entries) = d.mapping(item, "a `dirs` entry", DIR_FIELDS) else {
                continue;
            };
            let (mut host, mut guest, mut write) = (None, None, false);
            for e in entries {
                match e.key {
                    "host" => host = d.string(e.value, "host"),
                    "guest" => guest = d.string(e.value, "guest"),
                    "write" => write = d.bool(e.value, "write").unwrap_or(false),
                    _ => unreachable!(),
                }
            }
            let Some(host) = host else {
                d.error(
                    "yaml::dirs",
                    item.span.clone(),
                    "a `dirs` entry needs `host`",
                    "write `{host: ./data, guest: /data}`",
                );
                continue;
            };
            (host, guest, write)
        };
        let name = Path::new(&host)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let guest = guest.unwrap_or_else(|| format!("/{name}"));
        if !guest.starts_with('/') {
            d.error(
                "yaml::dirs",
                item.span.clone(),
                format!("guest path `{guest}` is not absolute"),
                format!("write `/{guest}`"),
            );
            continue;
        }
        let host_path = normalize(&base.join(&host));
        if !write && !host_path.is_dir() {
            d.error(
                "yaml::dirs",
                item.span.clone(),
                format!("directory `{}` does not exist", host_path.display()),
                "create it, or grant it with `:rw` to have pactown create it",
            );
            continue;
        }
        out.push(DirGrant {
            host: host_path,
            guest,
            write,
            span: item.span.clone(),
        });
    }
    out
}

pub(super) fn health(d: &mut Decoder<'_>, node: &Node) -> Option<HealthCheck> {
    if node.is_null() {
        return None;
    }
    let (path, path_span, interval) = if node.as_scalar().is_some() {
        (
            d.string(node, "health_check")?,
            node.span.clone(),
            DEFAULT_HEALTH_INTERVAL,
        )
    } else {
        let entries = d.mapping(node, "`health_check`", HEALTH_FIELDS)?;
        let mut path = None;
        let mut interval = DEFAULT_HEALTH_INTERVAL;
        for e in entries {
            match e.key {
                "path" => path = Some((d.string(e.value, "path")?, e.value.span.clone())),
                "interval" => interval = d.duration(e.value, "interval")?,
                _ => unreachable!(),
            }
        }
        let Some((p, span)) = path else {
            d.error(
                "yaml::health",
                node.span.clone(),
                "`health_check` has no `path`",
                "write `health_check: /health` or `health_check: {path: /health, interval: 5s}`",
            );
            return None;
        };
        (p, span, interval)
    };
    if !path.starts_with('/') {
        d.error(
            "yaml::health",
            path_span,
            format!("health check `{path}` must be a path starting with `/`"),
            format!("write `health_check: /{}`", path.trim_start_matches('/')),
        );
        return None;
    }
    Some(HealthCheck { path, interval })
}

/// A variable name a shell can use: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn env_map(d: &mut Decoder<'_>, node: &Node) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    let mut set = |d: &mut Decoder<'_>,
                   key: &str,
                   key_span: Range<usize>,
                   value: Option<String>| {
        if !is_env_name(key) {
            d.error(
                "yaml::env-name",
                key_span,
                format!("`{key}` is not a valid variable name"),
                "variable names use letters, digits and `_`, and do not start with a digit",
            );
            return;
        }
        // `KEY:` with no value passes the host's value through, as in docker compose.
        let value = value.or_else(|| (d.env)(key));
        match value {
            Some(v) => {
                out.insert(key.to_string(), v);
            }
            None => {
                let w = Diagnostic::warning(
                    "yaml::env-passthrough",
                    format!("`{key}` has no value here and is not set in the environment; it is left out"),
                    d.source,
                    key_span,
                )
                .with_help(format!("give it a value (`{key}: value`) or set it before running pactown"));
                d.diags.push(w);
            }
        }
    };
    match &node.kind {
        super::yaml::NodeKind::Seq(items) => {
            for item in items {
                if item.as_scalar().is_none() {
                    d.error(
                        "yaml::type",
                        item.span.clone(),
                        format!(
                            "an `env` list item must be `KEY=value`, found {}",
                            item.describe()
                        ),
                        "write `env: [KEY=value]`, or a mapping `env: {KEY: value}`",
                    );
                    continue;
                }
                let Some(text) = d.string(item, "env") else {
                    continue;
                };
                match text.split_once('=') {
                    Some((k, v)) => set(d, k, item.span.clone(), Some(v.to_string())),
                    None => set(d, &text, item.span.clone(), None),
                }
            }
        }
        _ if node.is_null() => {}
        _ => {
            let Some(entries) = d.mapping(node, "`env`", &[]) else {
                return out;
            };
            for e in entries {
                let value = if e.value.is_null() {
                    None
                } else {
                    match d.string(e.value, e.key) {
                        Some(v) => Some(v),
                        None => continue,
                    }
                };
                set(d, e.key, e.key_span, value);
            }
        }
    }
    out
}

pub(super) fn depends_on(d: &mut Decoder<'_>, node: &Node) -> Vec<Dependency> {
    let Some(items) = d.seq(node, "depends_on", "[database]") else {
        return Vec::new();
    };
    let mut out: Vec<Dependency> = Vec::new();
    for item in items {
        let dep = if item.as_scalar().is_some() {
            // `name` or `name@version`
            let Some(text) = d.string(item, "depends_on") else {
                continue;
            };
            let (name, version) = match text.split_once('@') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (text.clone(), None),
            };
            let span = item.span.clone();
            Dependency {
                name,
                version: version.clone().unwrap_or_else(|| "*".into()),
                registry: "local".into(),
                endpoint: None,
                env_var: None,
                name_span: span.clone(),
                version_span: version.map(|_| span.clone()),
                span,
            }
        } else {
            let Some(entries) = d.mapping(item, "a `depends_on` entry", DEPENDENCY_FIELDS) else {
                continue;
            };
            let mut dep = Dependency {
                name: String::new(),
                version: "*".into(),
                registry: "local".into(),
                endpoint: None,
                env_var: None,
                span: item.span.clone(),
                name_span: item.span.clone(),
                version_span: None,
            };
            let mut ok = true;
            for e in entries {
                let v = e.value;
                let got = match e.key {
                    "name" => d.string(v, "name").map(|s| {
                        dep.name = s;
                        dep.name_span = v.span.clone();
                    }),
                    "version" => d.string(v, "version").map(|s| {
                        dep.version = s;
                        dep.version_span = Some(v.span.clone());
                    }),
                    "registry" => d.string(v, "registry").map(|s| dep.registry = s),
                    "endpoint" => d.opt_string(v, "endpoint").map(|s| {
                        if let Some(url) = &s
                            && !(url.starts_with("http://") || url.starts_with("https://")) {
                                d.error("yaml::endpoint", v.span.clone(), format!("endpoint `{url}` is not an http(s) URL"), "write a URL such as `http://localhost:8003`");
                            }
                        dep.endpoint = s;
                    }),
                    "env_var" => d.opt_string(v, "env_var").map(|s| {
                        if let Some(n) = &s
                            && !is_env_name(n) {
                                d.error("yaml::env-name", v.span.clone(), format!("`{n}` is not a valid variable name"), "variable names use letters, digits and `_`, and do not start with a digit");
                            }
                        dep.env_var = s;
                    }),
                    _ => unreachable!(),
                };
                ok &= got.is_some();
            }
            if dep.name.is_empty() {
                d.error(
                    "yaml::dependency",
                    item.span.clone(),
                    "a `depends_on` entry needs a `name`",
                    "write `- name: database`",
                );
                continue;
            }
            if !ok {
                continue;
            }
            dep
        };
        if let Some(span) = &dep.version_span
            && let Err(e) = semver::VersionReq::parse(dep.version.trim())
        {
            d.error(
                "yaml::version",
                span.clone(),
                format!("`{}` is not a version requirement: {e}", dep.version),
                "write a semver requirement such as `*`, `1`, `^1.2` or `>=1.0, <2`",
            );
            continue;
        }
        if let Some(first) = out.iter().find(|o| o.name == dep.name) {
            let diag = Diagnostic::error(
                "yaml::duplicate-dependency",
                format!("`{}` is listed twice in `depends_on`", dep.name),
                d.source,
                dep.span.clone(),
            )
            .with_secondary(first.span.clone(), "first listed here")
            .with_help("list each dependency once");
            d.diags.push(diag);
            continue;
        }
        out.push(dep);
    }
    out
}
