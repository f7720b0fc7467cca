//! The environment of a service, composed here and nowhere else: what it inherits from
//! pactown's own environment, what its build installed, its proxy, its sandbox's `HOME` and
//! `TMPDIR`, then the variables of REFERENCE.md §2 (its own address, each dependency's URL,
//! host and port and its `env_var`) and last its own `env:`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::sandbox::{SandboxLevel, SandboxPlan};

use crate::spec::ecosystem::env_prefix;
use crate::spec::{Ecosystem, Service};

/// Variables a service inherits from pactown's own environment. Everything else is dropped, so
/// a developer's shell secrets never reach a service.
pub const PARENT_ENV_ALLOWED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "NPM_CONFIG_REGISTRY",
];

/// A native service's `HOME`, inside its sandbox dir (the only place it may write).
pub const HOME_DIR: &str = ".home";
/// A native service's `TMPDIR`, inside its sandbox dir.
pub const TMP_DIR: &str = ".tmp";

/// The variables a service inherits from pactown's environment `parent`: only the allowed
/// names (and `LC_*`), never a secret-looking one, package-index URLs without their
/// credentials (builds need them, services never), and always a `PATH`.
pub(super) fn inherited(parent: &[(String, String)]) -> IndexMap<String, String> {
    let mut env = IndexMap::new();
    for (k, v) in parent {
        let allowed = PARENT_ENV_ALLOWED.contains(&k.as_str()) || k.starts_with("LC_");
        if allowed && !is_secret_name(k) {
            env.insert(k.clone(), without_credentials(v));
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    env
}

/// What later stages add to a native service's environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Added<'a> {
    /// Directories its build put first on `PATH`.
    pub path_prefix: &'a [PathBuf],
    /// Variables its build set (`VIRTUAL_ENV`, ...).
    pub build: &'a [(String, String)],
    /// Its proxy for calls by name and to `allowed_hosts`.
    pub proxy: Option<SocketAddr>,
}

/// A native service's complete environment: what it `inherited`, what its build added, its
/// proxy, `HOME` and `TMPDIR` inside its `sandbox` (when it has one), then the plan's variables
/// `own` (its `env:` last, so it may override any of them).
pub(super) fn process_env(
    inherited: &IndexMap<String, String>,
    own: &IndexMap<String, String>,
    sandbox: &SandboxPlan,
    added: Added<'_>,
) -> Vec<(String, String)> {
    let mut env = inherited.clone();
    if !added.path_prefix.is_empty() {
        let mut parts = added.path_prefix.to_vec();
        if let Some(p) = env.get("PATH") {
            parts.extend(std::env::split_paths(p));
        }
        if let Ok(joined) = std::env::join_paths(parts) {
            env.insert("PATH".into(), joined.to_string_lossy().into_owned());
        }
    }
    for (k, v) in added.build {
        env.insert(k.clone(), v.clone());
    }
    // Calls by name (`http://api/...`) and to `allowed_hosts` (plain or TLS) go through
    // pactown's proxy, which applies the call policy; loopback addresses stay direct (Landlock
    // lets through only the dependencies').
    if let Some(p) = added.proxy {
        let url = format!("http://{p}");
        let direct = "localhost,127.0.0.1,::1".to_string();
        for (k, v) in [
            ("HTTP_PROXY", &url),
            ("http_proxy", &url),
            ("HTTPS_PROXY", &url),
            ("https_proxy", &url),
            ("NO_PROXY", &direct),
            ("no_proxy", &direct),
        ] {
            env.insert(k.into(), v.clone());
        }
    }
    if sandbox.level != SandboxLevel::None {
        for (var, sub) in [("HOME", HOME_DIR), ("TMPDIR", TMP_DIR)] {
            env.insert(var.into(), absolute(&sandbox.dir.join(sub)));
        }
    }
    for (k, v) in own {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Does a variable name look like it holds a secret?
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.ends_with("_API_KEY")
        || n == "API_KEY"
        || [
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "TOKEN",
            "PRIVATE_KEY",
            "CREDENTIAL",
        ]
        .iter()
        .any(|s| n.contains(s))
}

/// A URL without the `user:password@` part (other values unchanged): package-index variables
/// reach services without their credentials.
pub fn without_credentials(value: &str) -> String {
    value
        .split(' ')
        .map(|url| match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find('/').unwrap_or(rest.len());
                match rest[..end].rfind('@') {
                    Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                    None => url.to_string(),
                }
            }
            None => url.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Variables pactown sets per replica, since each replica has its own internal port.
pub const REPLICA_PORT_VARS: [&str; 2] = ["PORT", "MARKPACT_PORT"];

/// The environment of REFERENCE.md §2: the service's own address, each dependency's URL, host
/// and port (and its `env_var`), then the service's `env:`, which may override all of them.
pub(super) fn service_env(
    eco: &Ecosystem,
    s: &Service,
    port: Option<u16>,
    ports: &IndexMap<String, Option<u16>>,
) -> IndexMap<String, String> {
    let mut env = IndexMap::new();
    env.insert("SERVICE_NAME".to_string(), s.name.clone());
    if let Some(p) = port {
        env.insert("SERVICE_URL".to_string(), format!("http://127.0.0.1:{p}"));
    }
    for d in &s.depends_on {
        let at = dependency_address(eco, ports, &d.name);
        let declared = eco.services.get(&d.name).and_then(|t| match t.port {
            crate::spec::PortSpec::Fixed(p) => Some(p),
            _ => None,
        });
        let Some(url) = dependency_url(d.endpoint.as_deref(), at.as_ref(), declared) else {
            continue;
        };
        let prefix = env_prefix(&d.name);
        let (host, port) = host_port(&url);
        env.insert(format!("{prefix}_URL"), url.clone());
        env.insert(format!("{prefix}_HOST"), host);
        if let Some(p) = port {
            env.insert(format!("{prefix}_PORT"), p.to_string());
        }
        if let Some(var) = &d.env_var {
            env.insert(var.clone(), url);
        }
    }
    for (k, v) in &s.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// Where a dependency is reached: its stable address in this pactown (`127.0.0.1` and the port
/// it got), or, when it runs elsewhere (see `Ecosystem::run_only`), its host name and port on
/// the network. `None` when it has no address.
pub fn dependency_address(
    eco: &Ecosystem,
    ports: &IndexMap<String, Option<u16>>,
    name: &str,
) -> Option<(String, u16)> {
    if let Some(e) = eco.elsewhere.get(name) {
        return Some((e.host.clone(), e.port));
    }
    ports
        .get(name)
        .copied()
        .flatten()
        .map(|p| ("127.0.0.1".to_string(), p))
}

/// The URL a dependent uses. An `endpoint` on loopback at the dependency's declared port (or
/// with no port) is rewritten to its address, keeping the path, so a moved port never breaks
/// it; any other endpoint (an external service) is used as written.
pub fn dependency_url(
    endpoint: Option<&str>,
    at: Option<&(String, u16)>,
    declared: Option<u16>,
) -> Option<String> {
    let Some(ep) = endpoint else {
        return at.map(|(h, p)| format!("http://{h}:{p}"));
    };
    let Some((stable_host, stable)) = at.map(|(h, p)| (h.as_str(), *p)) else {
        return Some(ep.to_string());
    };
    let Some((_, rest)) = ep.split_once("://") else {
        return Some(ep.to_string());
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()),
        None => (authority, None),
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]");
    if loopback && (port.is_none() || port == declared || port == Some(stable)) {
        Some(format!(
            "http://{stable_host}:{stable}{}",
            &rest[authority_end..]
        ))
    } else {
        Some(ep.to_string())
    }
}

fn host_port(url: &str) -> (String, Option<u16>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
            (h.to_string(), p.parse().ok())
        }
        _ => {
            let default = if url.starts_with("https://") { 443 } else { 80 };
            (authority.to_string(), Some(default))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_urls() {
        assert_eq!(
            without_credentials("https://me:s3cret@pypi.corp/simple https://x.org/s"),
            "https://pypi.corp/simple https://x.org/s"
        );
        assert_eq!(without_credentials("en_US.UTF-8"), "en_US.UTF-8");
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            dependency_url(None, Some(&("127.0.0.1".into(), 9000)), None).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        // the declared port moved to 9001: the endpoint follows, keeping its path
        assert_eq!(
            dependency_url(
                Some("http://localhost:8003/api"),
                Some(&("127.0.0.1".into(), 9001)),
                Some(8003)
            )
            .as_deref(),
            Some("http://127.0.0.1:9001/api")
        );
        assert_eq!(
            dependency_url(
                Some("https://db.example.com"),
                Some(&("127.0.0.1".into(), 9001)),
                Some(8003)
            )
            .as_deref(),
            Some("https://db.example.com")
        );
    }

    #[test]
    fn secrets() {
        assert!(is_secret_name("OPENAI_API_KEY"));
        assert!(is_secret_name("db_password"));
        assert!(!is_secret_name("DATABASE_URL"));
    }
}
