//! The scene of the attack suite (see `sandbox::every_attack_…`, `as_user::every_native_…`):
//! what is outside the ecosystem (servers on the machine's address, a unix socket and a path of
//! the host), the attacks asked of each attacker with what they need to know, the table of what
//! happened, and what must hold on the host afterwards.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::support::TestEnv;
use crate::support_up::{Up, http_get};

/// This machine's first non-loopback IPv4 address: a server there is "outside" the ecosystem.
fn host_ip() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .expect("a non-loopback IPv4 address (the outside servers listen there)")
}

/// A name `/etc/hosts` resolves to loopback, other than `localhost` (Debian names the machine
/// there).
pub(crate) fn loopback_alias() -> String {
    std::fs::read_to_string("/etc/hosts")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("127."))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find(|n| !n.starts_with("localhost") && !n.starts_with('#'))
        .map(str::to_string)
        .expect("/etc/hosts names this machine on a loopback address")
}

/// A server outside the ecosystem: answers every request 200 `outside`.
fn outside_server(ip: &str) -> String {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\noutside",
                );
            });
        }
    });
    addr
}

/// What lies outside the ecosystem, made before it starts (a user's pactown gets them as the
/// user's: see [`TestEnv::give_to_user`]).
pub(crate) struct Scene {
    /// A server outside the ecosystem that no service may reach.
    pub outside: String,
    /// One in the attackers' `allowed_hosts`.
    pub allowed: String,
    /// A name of this machine that resolves to loopback, also in their `allowed_hosts`.
    pub alias: String,
    /// A unix socket of the host, outside every sandbox: nobody may connect to it.
    host_sock: PathBuf,
    host_listener: std::os::unix::net::UnixListener,
    /// A path of the host no sandbox may write.
    host_file: PathBuf,
    /// A port of the host that no service declared.
    outsider: std::net::TcpListener,
}

impl Scene {
    /// Everything outside the ecosystem, before it starts.
    pub(crate) fn new(env: &TestEnv) -> Self {
        let ip = host_ip();
        let host_sock = env.abs("host.sock");
        let host_listener = std::os::unix::net::UnixListener::bind(&host_sock).unwrap();
        host_listener.set_nonblocking(true).unwrap();
        Self {
            outside: outside_server(&ip),
            allowed: outside_server(&ip),
            alias: loopback_alias(),
            host_sock,
            host_listener,
            host_file: env.abs("written-from-a-sandbox"),
            outsider: std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap(),
        }
    }

    /// Every attack of `plan` against `up`'s `victim`, each told where everything is.
    pub(crate) fn attack(&self, env: &TestEnv, up: &Up, plan: &[Attacker]) -> Vec<Attempt> {
        let victim_port = up.port("victim");
        let victim_main = up.service("victim")["replicas"][0]["main_pid"]
            .as_i64()
            .unwrap();
        let admin = up.gateway_port();
        let state: serde_json::Value =
            serde_json::from_str(&env.read(&format!(".pactown/{}/state.json", state_dir(up))))
                .unwrap();
        let ctl = state["socket"].as_str().unwrap().to_string();
        let any_port = self.outsider.local_addr().unwrap().port();
        let query = |port: u16| {
            format!(
                "?victim={victim_port}&admin={admin}&outside={}&allowed={}&alias={}&ctl={ctl}&sock={}&vpid={victim_main}&port={port}&host_file={}",
                self.outside,
                self.allowed,
                self.alias,
                self.host_sock.display(),
                self.host_file.display()
            )
        };
        attack(up, plan, victim_port, any_port, query)
    }

    /// Nothing was written on the host, nobody reached its socket, the victim's secret is
    /// intact and the victim alive, and `services` all still serve.
    pub(crate) fn assert_host_untouched(&self, env: &TestEnv, up: &Up, services: &[&str]) {
        assert!(
            !self.host_file.exists(),
            "a sandbox wrote {}",
            self.host_file.display()
        );
        assert!(
            self.host_listener.accept().is_err(),
            "a sandbox reached the host's unix socket"
        );
        assert_eq!(
            std::fs::read_to_string(env.abs(".pactown-sandboxes/victim/secret.txt")).unwrap(),
            "s3cret"
        );
        let victim_main = up.service("victim")["replicas"][0]["main_pid"]
            .as_i64()
            .unwrap();
        assert!(
            crate::support_up::alive(victim_main as i32),
            "the victim survived"
        );
        for s in services {
            assert_eq!(
                http_get(up.port(s), "/health").unwrap().0,
                200,
                "{s} keeps serving"
            );
        }
    }
}

/// The state dir's name of `up`'s ecosystem file (`a.pactown.yaml` → `a`).
fn state_dir<'a>(up: &'a Up) -> &'a str {
    up.file.split('.').next().unwrap_or(&up.file)
}

/// One attempt: the kind of sandbox, the attack or control, what was expected (`contained` or
/// `reached`), whether it was, and the attacker's detail.
pub(crate) type Attempt = (&'static str, &'static str, &'static str, bool, String);

/// What one service of a sandbox kind attempts: its kind, its name, its attacks (two lists)
/// and its controls.
pub(crate) type Attacker<'a> = (
    &'static str,
    &'a str,
    [&'a [&'static str]; 2],
    &'a [&'static str],
);

/// Every attack of `plan` (kind, service, attacks, controls) from its service: `query` gives
/// the query for a target port (the victim's, or `any_port` for `connect-any`).
fn attack(
    up: &Up,
    plan: &[Attacker],
    victim_port: u16,
    any_port: u16,
    query: impl Fn(u16) -> String,
) -> Vec<Attempt> {
    let mut table = Vec::new();
    for (kind, service, attacks, controls) in plan {
        let port = up.port(service);
        let attacks = attacks
            .iter()
            .flat_map(|a| a.iter())
            .map(|a| (*a, "contained"));
        for (attack, expect) in attacks.chain(controls.iter().map(|c| (*c, "reached"))) {
            let target = if attack == "connect-any" {
                any_port
            } else {
                victim_port
            };
            let (code, body) = http_get(port, &format!("/attack/{attack}{}", query(target)))
                .unwrap_or_else(|e| (0, e.to_string()));
            let (ok, detail) = match code {
                200 => {
                    let v: serde_json::Value =
                        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{attack}: {body}"));
                    (
                        v[expect] == true,
                        v["detail"].as_str().unwrap_or_default().to_string(),
                    )
                }
                // The guest trapped (out of memory): contained by the runtime.
                500 if expect == "contained" => (true, body.chars().take(120).collect()),
                other => (false, format!("HTTP {other}: {body}")),
            };
            table.push((*kind, attack, expect, ok, detail));
        }
    }
    table
}

/// Print the table of attempts, then assert each went as expected.
pub(crate) fn assert_all_as_expected(table: &[Attempt]) {
    println!("\n{:7} {:22} {:10} detail", "kind", "attempt", "result");
    for (kind, attack, expect, ok, detail) in table {
        let result = match (*expect, *ok) {
            ("contained", true) => "contained",
            ("contained", false) => "ESCAPED",
            (_, true) => "reached",
            (_, false) => "BLOCKED",
        };
        println!(
            "{kind:7} {attack:22} {result:10} {}",
            detail.replace('\n', " ")
        );
    }
    let n = table.iter().filter(|r| r.3).count();
    println!("\n{n}/{} as expected", table.len());
    let wrong: Vec<_> = table.iter().filter(|r| !r.3).collect();
    assert!(wrong.is_empty(), "not as expected: {wrong:#?}");
}
