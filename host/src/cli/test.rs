//! `pactown test FILE` and `pactown run README.md --once`: every service's `markpact:test` checks,
//! sent to its stable address. `test` checks a running ecosystem as it is; one that is not
//! running is started for the checks and stopped after them. Exit 1 when any check fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{ExitStatus, Term};
use crate::control::StateDir;
use crate::spec::service::{HttpCheck, ShellCheck, Tests};
use crate::spec::{Ecosystem, markpact::Loc};

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Run every service's `markpact:test` checks against its stable address.
#[derive(Debug, clap::Args)]
pub struct TestCommand {
    /// The ecosystem file, or one README.
    pub file: PathBuf,
    /// Where the admin endpoint and gateway listen when the ecosystem is started for the checks
    /// (see `up --listen`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

impl TestCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        if !eco.services.values().any(|s| !s.content.tests.is_empty()) {
            term.info(&format!(
                "{}: no service has a `markpact:test` block; nothing to check",
                eco.name
            ));
            return Ok(ExitStatus::Success);
        }
        let state = StateDir::new(&eco.state_dir);
        let running = state.try_lock()?.is_none();
        if !running {
            // Service output goes to the log files only: the results are what this shows.
            return super::up::block_on(super::up::up(
                eco,
                term.clone(),
                false,
                None,
                self.listen,
                true,
            ));
        }
        // Running (`up -d`, or `up` in another terminal): check it as it is.
        let Some(ports) = state.read_state().map(|s| s.ports) else {
            return Err(super::user_error(
                format!("ecosystem `{}` is starting or stopping", eco.name),
                Some("try again once `pactown status` shows it running"),
            ));
        };
        let term = term.clone();
        super::up::block_on(async move {
            Ok(run_checks(&eco, &|name| ports.get(name).copied().flatten(), &term).await)
        })
    }
}

/// Send every check of every service in `eco` to the port `port_of` gives it; print each result
/// and a summary.
pub async fn run_checks(
    eco: &Ecosystem,
    port_of: &(dyn Fn(&str) -> Option<u16> + Sync),
    term: &Term,
) -> ExitStatus {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (mut passed, mut failed) = (0, 0);
    for (name, service) in &eco.services {
        if service.content.tests.is_empty() {
            continue;
        }
        let Some(port) = port_of(name) else {
            term.error(&format!("`{name}` has no address to test"));
            failed += 1;
            continue;
        };
        let dir = service.readme.parent().unwrap_or(Path::new("."));
        let mut report = |what: &str, result: Result<String, String>, loc: &Loc| {
            let (line, col) = loc.file.line_col(loc.span.start);
            match result {
                Ok(how) => {
                    passed += 1;
                    term.info(&format!("  ok    {name}  {what}  {how}"));
                }
                Err(why) => {
                    failed += 1;
                    term.error(&format!(
                        "{name}  {what}: {why}\n  --> {}:{line}:{col}",
                        loc.file.path.display()
                    ));
                }
            }
        };
        for block in &service.content.tests {
            match block {
                Tests::Http(checks) => {
                    for c in checks {
                        let result = http_check(&client, port, c).await;
                        report(&format!("{} {}", c.method, c.path), result, &c.loc);
                    }
                }
                Tests::Shell(checks) => {
                    for c in checks {
                        let result = shell_check(port, dir, c).await;
                        report(&c.command, result, &c.loc);
                    }
                }
            }
        }
    }
    term.info(&format!(
        "{}: {passed} check{} passed, {failed} failed",
        eco.name,
        if passed == 1 { "" } else { "s" }
    ));
    if failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}

/// One HTTP check: its status must be the expected one, or 200–399 without an expectation.
async fn http_check(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    port: u16,
    c: &HttpCheck,
) -> Result<String, String> {
    let mut req = http::Request::builder()
        .method(c.method.as_str())
        .uri(format!("http://127.0.0.1:{port}{}", c.path));
    let body = match &c.body {
        Some(v) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let resp = match tokio::time::timeout(CHECK_TIMEOUT, client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("no answer: {e}")),
        Err(_) => return Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    };
    let status = resp.status().as_u16();
    let took = started.elapsed();
    let ok = match c.expect {
        Some(code) => status == code,
        None => (200..400).contains(&status),
    };
    if ok {
        return Ok(format!("→ {status} ({} ms)", took.as_millis()));
    }
    let body = tokio::time::timeout(CHECK_TIMEOUT, resp.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let expected = c
        .expect
        .map_or("200–399".to_string(), |code| code.to_string());
    Err(format!(
        "answered {status}, expected {expected}{}",
        if body.is_empty() {
            String::new()
        } else {
            format!(": {}", body.chars().take(300).collect::<String>())
        }
    ))
}

/// One shell check, run with `sh -c` in the README's directory with `PORT` and `SERVICE_URL`
/// set to the service's stable address: exit 0 passes.
async fn shell_check(port: u16, dir: &Path, c: &ShellCheck) -> Result<String, String> {
    let started = Instant::now();
    let run = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&c.command)
        .current_dir(dir)
        .env("PORT", port.to_string())
        .env("MARKPACT_PORT", port.to_string())
        .env("SERVICE_URL", format!("http://127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(CHECK_TIMEOUT, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run `sh`: {e}")),
        Err(_) => return Err(format!("still running after {}s", CHECK_TIMEOUT.as_secs())),
    };
    if out.status.success() {
        return Ok(format!("→ exit 0 ({} ms)", started.elapsed().as_millis()));
    }
    let mut why = match out.status.code() {
        Some(code) => format!("exited with {code}"),
        None => "killed by a signal".to_string(),
    };
    let output = [&out.stderr, &out.stdout]
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if !output.is_empty() {
        why.push_str(&format!(
            ": {}",
            output.chars().take(300).collect::<String>()
        ));
    }
    Err(why)
}
