//! Who a service may call, as one rule: its declared dependencies (by name, or at their stable
//! addresses) and the hosts of its `allowed_hosts`; nothing else. The wasm resolver, the native
//! proxy (plain HTTP and `CONNECT`) and the Landlock connect list all take their answer from
//! [`CallPolicy`], so they cannot disagree.

use std::collections::BTreeSet;
use std::net::IpAddr;

use indexmap::IndexMap;
use serde::Serialize;

use crate::spec::hosts::{HostRule, is_loopback, normalize_host};

/// A service's calls.
#[derive(Debug, Clone, Serialize)]
pub struct CallPolicy {
    /// The caller.
    pub caller: String,
    /// Its declared dependencies, with their stable ports (none for a service without one).
    pub services: IndexMap<String, Option<u16>>,
    /// The dependencies that run elsewhere, with the host name they are reached at (their
    /// port is in `services`); the others are in this pactown.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub elsewhere: IndexMap<String, String>,
    /// Outside hosts it may reach (`allowed_hosts`).
    pub egress: Vec<HostRule>,
    /// Every service of the ecosystem (to tell an undeclared one from a name that is none).
    #[serde(skip)]
    pub known: BTreeSet<String>,
    /// This machine's own addresses: an outside host that resolves to one is refused like
    /// loopback (services listening on all interfaces are reachable there).
    #[serde(skip)]
    pub this_machine: Vec<IpAddr>,
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// To a declared dependency.
    Service {
        /// Its name.
        name: String,
        /// Its stable port, when it has one.
        port: Option<u16>,
    },
    /// To an outside host `allowed_hosts` names (once its address is checked: see
    /// [`CallPolicy::check_resolved`]).
    Egress,
    /// Refused: answer `status` with `message`.
    Refused {
        /// 403 (not allowed) or 502 (no such service).
        status: u16,
        /// Why, and what would fix it.
        message: String,
    },
}

/// Why `caller` may not call `target`, and what would fix it.
pub fn undeclared(caller: &str, target: &str) -> String {
    format!(
        "`{caller}` may not call `{target}`: it is not in `{caller}`'s `depends_on`; add it there"
    )
}

/// The refusal of a name that is no service.
pub fn unknown(target: &str) -> String {
    format!("no service `{target}` in this ecosystem")
}

/// The refusal of an outside host not in `allowed_hosts`.
pub fn not_allowed(caller: &str, target: &str) -> String {
    format!(
        "`{caller}` may not reach `{target}`: it is not in `{caller}`'s `allowed_hosts`; add it there"
    )
}

impl CallPolicy {
    /// What happens to a request for `host` (`port` when it gave one; `scheme` when known).
    pub fn decide(&self, scheme: Option<&str>, host: &str, port: Option<u16>) -> Call {
        let host = normalize_host(host);
        // `api`, or `api.localhost` as the host's gateway spells it.
        let name = host.strip_suffix(".localhost").unwrap_or(&host);
        if let Some(p) = self.services.get(name) {
            return Call::Service {
                name: name.to_string(),
                port: *p,
            };
        }
        if self.known.contains(name) {
            return self.refuse(403, undeclared(&self.caller, name));
        }
        let ip = host.parse::<IpAddr>().ok();
        let loopback =
            host == "localhost" || host.ends_with(".localhost") || ip.is_some_and(is_loopback);
        if loopback {
            // A dependency at its stable address, exactly as pactown gave it.
            let exact = matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1");
            if exact
                && let Some(port) = port
                && let Some((dep, _)) = self.services.iter().find(|(_, p)| **p == Some(port))
            {
                return Call::Service {
                    name: dep.clone(),
                    port: Some(port),
                };
            }
            let target = port.map_or(host.clone(), |p| format!("{host}:{p}"));
            return self.refuse(
                403,
                format!(
                    "`{}` may not reach `{target}`: on this machine it may reach only the services in its `depends_on`, by name",
                    self.caller
                ),
            );
        }
        let default = match scheme {
            Some("https") => 443,
            _ => 80,
        };
        let port = port.unwrap_or(default);
        if self.egress.iter().any(|r| r.matches(scheme, &host, port)) {
            return Call::Egress;
        }
        // A single label that is no service: most likely a typo of one.
        if ip.is_none() && !host.contains('.') && !host.contains(':') {
            return self.refuse(502, unknown(&host));
        }
        self.refuse(403, not_allowed(&self.caller, &format!("{host}:{port}")))
    }

    fn refuse(&self, status: u16, message: String) -> Call {
        Call::Refused { status, message }
    }

    /// The stable ports of its dependencies (what Landlock lets a native service connect to,
    /// besides its proxy).
    pub fn dependency_ports(&self) -> Vec<u16> {
        self.services.values().flatten().copied().collect()
    }

    /// The addresses a socket (a wasm guest's, which has no host name) may connect to: its
    /// dependencies at their stable addresses, and the addresses `allowed_hosts` names (port 0:
    /// any port).
    pub fn socket_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.dependency_ports()
            .into_iter()
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
            .chain(self.egress.iter().filter_map(|r| {
                r.ip()
                    .map(|ip| std::net::SocketAddr::new(ip, r.port.unwrap_or(0)))
            }))
            .collect()
    }
}

/// An outside host's addresses, once resolved, must not lead back to this machine (a name
/// that resolves to loopback would be a way around the policy).
impl CallPolicy {
    /// May the caller connect to `addrs`, what an allowed outside `host` resolved to? Never to
    /// loopback or the unspecified address (services are reached by name), and never to one of
    /// this machine's interfaces through a name: only an `allowed_hosts` entry that writes that
    /// address itself (a database on the host at its LAN address) reaches it. The connection
    /// must then go to these addresses, not to a second lookup of the name.
    pub fn check_resolved(&self, host: &str, addrs: &[std::net::SocketAddr]) -> Result<(), String> {
        let literal = normalize_host(host).parse::<IpAddr>().ok();
        let local = |ip: IpAddr| {
            is_loopback(ip) || (self.this_machine.contains(&ip) && literal != Some(ip))
        };
        match addrs.iter().find(|a| local(a.ip())) {
            Some(a) => Err(format!(
                "`{}` may not reach `{host}`: it resolves to {}, this machine; services are reached by name through `depends_on`",
                self.caller,
                a.ip()
            )),
            None if addrs.is_empty() => Err(format!("`{host}` does not resolve")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CallPolicy {
        CallPolicy {
            caller: "web".into(),
            services: [
                ("api".to_string(), Some(8001)),
                ("worker".to_string(), None),
            ]
            .into_iter()
            .collect(),
            elsewhere: IndexMap::new(),
            egress: vec![
                HostRule::parse("api.openai.com").unwrap(),
                HostRule::parse("*.example.com:443").unwrap(),
            ],
            known: ["api", "worker", "db", "web"]
                .into_iter()
                .map(String::from)
                .collect(),
            this_machine: vec!["10.1.2.3".parse().unwrap()],
        }
    }

    #[test]
    fn declared_services_by_name_or_stable_address() {
        let p = policy();
        let api = Call::Service {
            name: "api".into(),
            port: Some(8001),
        };
        assert_eq!(p.decide(Some("http"), "api", None), api);
        assert_eq!(p.decide(None, "API.localhost", Some(7100)), api);
        assert_eq!(p.decide(None, "127.0.0.1", Some(8001)), api);
        assert_eq!(p.decide(None, "[::1]", Some(8001)), api);
    }

    #[test]
    fn everything_else_on_this_machine_is_refused() {
        let p = policy();
        for (host, port, status) in [
            ("db", None, 403),
            ("db.localhost", Some(7100), 403),
            ("nope", None, 502),
            ("127.0.0.1", Some(7100), 403),
            ("127.0.0.2", Some(8001), 403),
            ("[::1]", Some(9), 403),
            ("[::ffff:127.0.0.1]", Some(8001), 403),
            ("0.0.0.0", Some(8001), 403),
            ("localhost", Some(7100), 403),
            ("evil.com", Some(80), 403),
            ("x.example.com", Some(80), 403),
        ] {
            match p.decide(None, host, port) {
                Call::Refused { status: s, .. } => assert_eq!(s, status, "{host}"),
                other => panic!("{host}: {other:?}"),
            }
        }
    }

    #[test]
    fn allowed_hosts_and_nothing_else_go_out() {
        let p = policy();
        assert_eq!(
            p.decide(Some("https"), "api.openai.com", None),
            Call::Egress
        );
        assert_eq!(p.decide(None, "x.example.com", Some(443)), Call::Egress);
        let resolved = |a: &str| p.check_resolved("x", &[a.parse().unwrap()]);
        assert!(resolved("127.0.0.1:443").is_err());
        assert!(resolved("0.0.0.0:443").is_err());
        assert!(resolved("[::ffff:127.0.0.1]:443").is_err());
        // one of this machine's own interfaces, through a name: services listening on all of
        // them are there
        assert!(
            resolved("10.1.2.3:443")
                .unwrap_err()
                .contains("this machine")
        );
        assert!(resolved("93.184.215.14:443").is_ok());
        assert!(p.check_resolved("x", &[]).is_err());
        // written as an address in `allowed_hosts`, this machine's LAN address is the author's
        // explicit choice; loopback never is
        let at = |h: &str, a: &str| p.check_resolved(h, &[a.parse().unwrap()]);
        assert!(at("10.1.2.3", "10.1.2.3:5432").is_ok());
        assert!(at("127.0.0.1", "127.0.0.1:5432").is_err());
    }

    #[test]
    fn sockets() {
        let mut p = policy();
        p.egress.push(HostRule::parse("10.0.0.5:5432").unwrap());
        p.egress.push(HostRule::parse("10.0.0.6").unwrap());
        assert_eq!(
            p.socket_addrs(),
            ["127.0.0.1:8001", "10.0.0.5:5432", "10.0.0.6:0"]
                .map(|a| a.parse::<std::net::SocketAddr>().unwrap())
                .to_vec()
        );
    }
}
