//! `pactown probe URL`: one HTTP GET, exit 0 when it answers 2xx or 3xx. The health check of a
//! container built by `pactown deploy`, whose image holds nothing but pactown (no curl).

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use super::{ExitStatus, Term, user_error};

/// GET a URL once; succeed on a 2xx or 3xx answer.
#[derive(Debug, clap::Args)]
pub struct ProbeCommand {
    /// `http://HOST:PORT/PATH`.
    pub url: String,
    /// How long to keep trying to connect.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl ProbeCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| user_error(format!("`{}` is not an http:// URL", self.url), None))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            let addr = authority.to_socket_addrs().ok().and_then(|mut a| a.next());
            let status = addr.and_then(|a| crate::bench::process::probe(a, path));
            match status {
                Some(s) if (200..400).contains(&s) => return Ok(ExitStatus::Success),
                Some(s) if Instant::now() >= deadline => {
                    term.error(&format!("{} answered {s}", self.url));
                    return Ok(ExitStatus::Failure);
                }
                None if Instant::now() >= deadline => {
                    term.error(&format!("{} did not answer", self.url));
                    return Ok(ExitStatus::Failure);
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
