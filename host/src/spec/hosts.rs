//! `allowed_hosts:` entries — the hosts outside the ecosystem a service may reach, deny by
//! default, in the shapes Spin's `allowed_outbound_hosts` users know: `api.example.com`,
//! `api.example.com:443`, `*.example.com`, `https://api.example.com` (the scheme implies its
//! default port), `10.0.0.5:5432`, or `*` for any host. Loopback is never egress: services are
//! reached by name, through `depends_on`.

use std::net::IpAddr;

use serde::Serialize;

/// The host part of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name or address (lower case).
    Exact(String),
    /// Any name ending in this suffix (`.example.com`), not the suffix itself.
    Suffix(String),
    /// Any host.
    Any,
}

/// One `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// `http` or `https`, when given.
    pub scheme: Option<String>,
    /// Which hosts.
    pub host: HostPattern,
    /// Which port (from the scheme when not given; any when neither is).
    pub port: Option<u16>,
    /// As written.
    pub text: String,
}

impl Serialize for HostRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Is this address loopback (or the unspecified address, which reaches loopback on Linux)?
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
    }
}

/// A host as compared: lower case, no trailing dot, no brackets around an IPv6 address.
pub fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl HostRule {
    /// Parse an entry; the error says what is wrong and what would be right.
    pub fn parse(text: &str) -> Result<Self, (String, String)> {
        let raw = text.trim();
        if raw.is_empty() {
            return Err((
                "an empty host".into(),
                "write a host, e.g. `api.example.com` or `*.example.com:443`".into(),
            ));
        }
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => {
                let s = s.to_ascii_lowercase();
                if !matches!(s.as_str(), "http" | "https") {
                    return Err((
                        format!("unknown scheme `{s}`"),
                        "write `http://` or `https://`, or no scheme (any)".into(),
                    ));
                }
                (Some(s), r)
            }
            None => (None, raw),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err((
                format!("`{raw}` has a path"),
                "write only the host (and port): paths are not part of a rule".into(),
            ));
        }
        // `[v6]:port`, `host:port`, `host`.
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| {
                (
                    format!("`{raw}` opens `[` without closing it"),
                    "write an IPv6 address as `[2001:db8::1]:443`".to_string(),
                )
            })?;
            (h.to_string(), after.strip_prefix(':'))
        } else if rest.matches(':').count() > 1 {
            (rest.to_string(), None)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            None | Some("*") => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                (
                    format!("`{p}` is not a port"),
                    "write a port from 1 to 65535, or `*`".to_string(),
                )
            })?),
        };
        let port = port.or_else(|| scheme.as_deref().and_then(default_port));
        let host = normalize_host(&host);
        let pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err((
                    format!("`{host}` is not a pattern"),
                    "write `*.example.com`: one `*`, as the first label".into(),
                ));
            }
            HostPattern::Suffix(format!(".{suffix}"))
        } else {
            if host.contains('*') {
                return Err((
                    format!("`{host}` is not a pattern"),
                    "write `*.example.com`: one `*`, as the first label".into(),
                ));
            }
            if host.is_empty()
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
            {
                return Err((
                    format!("`{host}` is not a host name or address"),
                    "write a host, e.g. `api.example.com`, `10.0.0.5` or `[2001:db8::1]`".into(),
                ));
            }
            let loopback = host == "localhost"
                || host.ends_with(".localhost")
                || host.parse::<IpAddr>().is_ok_and(is_loopback);
            if loopback {
                return Err((
                    format!("`{host}` is this machine (loopback), not an outside host"),
                    "services of the ecosystem are reached by name: add them to `depends_on`"
                        .into(),
                ));
            }
            HostPattern::Exact(host)
        };
        Ok(Self {
            scheme,
            host: pattern,
            port,
            text: raw.to_string(),
        })
    }

    /// Does a request for `host:port` (with `scheme`, when known) match?
    pub fn matches(&self, scheme: Option<&str>, host: &str, port: u16) -> bool {
        if let (Some(want), Some(got)) = (&self.scheme, scheme)
            && !want.eq_ignore_ascii_case(got)
        {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = normalize_host(host);
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// The address this rule names, when it names one (for socket-level checks).
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.host {
            HostPattern::Exact(h) => h.parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> HostRule {
        HostRule::parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn shapes() {
        assert!(rule("api.example.com").matches(Some("https"), "API.example.com.", 443));
        assert!(rule("api.example.com").matches(None, "api.example.com", 8080));
        assert!(!rule("api.example.com:443").matches(None, "api.example.com", 80));
        assert!(rule("https://api.example.com").matches(Some("https"), "api.example.com", 443));
        assert!(!rule("https://api.example.com").matches(Some("http"), "api.example.com", 443));
        assert!(!rule("https://api.example.com").matches(None, "api.example.com", 80));
        assert!(rule("*.example.com").matches(None, "a.b.example.com", 1));
        assert!(!rule("*.example.com").matches(None, "example.com", 1));
        assert!(!rule("*.example.com").matches(None, "evilexample.com", 1));
        assert!(rule("[2001:db8::1]:443").matches(None, "[2001:db8::1]", 443));
        assert!(rule("*").matches(None, "anything.org", 9));
        assert_eq!(rule("10.0.0.5:5432").ip(), "10.0.0.5".parse().ok());
    }

    #[test]
    fn mistakes_say_what_would_be_right() {
        for bad in [
            "",
            "localhost",
            "127.0.0.2",
            "[::1]",
            "api.localhost",
            "0.0.0.0",
            "ftp://x.org",
            "x.org:99999",
            "a.*.org",
            "x.org/path",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }
}
