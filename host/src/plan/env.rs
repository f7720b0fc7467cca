//! The environment of a service (REFERENCE.md §2): its own address, each dependency's URL,
//! host and port (and its `env_var`), then its own `env:`; and which of pactown's own
//! variables a service may inherit.

use indexmap::IndexMap;

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
        let dep_port = ports.get(&d.name).copied().flatten();
        let declared = eco.services.get(&d.name).and_then(|t| match t.port {
            crate::spec::PortSpec::Fixed(p) => Some(p),
            _ => None,
        });
        let Some(url) = dependency_url(d.endpoint.as_deref(), dep_port, declared) else {
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

/// The URL a dependent uses. An `endpoint` on loopback at the dependency's declared port (or
/// with no port) is rewritten to its stable address, keeping the path, so a moved port never
/// breaks it; any other endpoint (an external service) is used as written.
pub fn dependency_url(
    endpoint: Option<&str>,
    stable: Option<u16>,
    declared: Option<u16>,
) -> Option<String> {
    let Some(ep) = endpoint else {
        return stable.map(|p| format!("http://127.0.0.1:{p}"));
    };
    let Some(stable) = stable else {
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
            "http://127.0.0.1:{stable}{}",
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
            dependency_url(None, Some(9000), None).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        // the declared port moved to 9001: the endpoint follows, keeping its path
        assert_eq!(
            dependency_url(Some("http://localhost:8003/api"), Some(9001), Some(8003)).as_deref(),
            Some("http://127.0.0.1:9001/api")
        );
        assert_eq!(
            dependency_url(Some("https://db.example.com"), Some(9001), Some(8003)).as_deref(),
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
