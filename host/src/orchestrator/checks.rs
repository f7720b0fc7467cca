//! Every service's `markpact:test` checks, sent to its stable address: HTTP lines
//! (`METHOD /path [EXPECT code] [BODY json]`) and shell lines (run with `PORT` and
//! `SERVICE_URL` set). Each result goes to a callback as soon as it is known.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::spec::service::{HttpCheck, ShellCheck, Tests};
use crate::spec::{Ecosystem, markpact::Loc};

/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// One check's result.
#[derive(Debug)]
pub struct CheckResult<'a> {
    /// The service checked.
    pub service: &'a str,
    /// What was checked (`GET /health`, or the shell line).
    pub what: String,
    /// How it went (`→ 200 (3 ms)`), or why it failed.
    pub outcome: Result<String, String>,
    /// The check's line in the README, when there is one.
    pub loc: Option<&'a Loc>,
}

/// How many checks passed and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
}

/// Send every check of every service in `eco` to the port `port_of` gives it; each result goes
/// to `report`.
pub async fn run(
    eco: &Ecosystem,
    port_of: &(dyn Fn(&str) -> Option<u16> + Sync),
    report: &(dyn Fn(&CheckResult<'_>) + Sync),
) -> Tally {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut tally = Tally::default();
    for (name, service) in &eco.services {
        if service.content.tests.is_empty() {
            continue;
        }
        let mut record = |r: CheckResult<'_>| {
            if r.outcome.is_ok() {
                tally.passed += 1;
            } else {
                tally.failed += 1;
            }
            report(&r);
        };
        let Some(port) = port_of(name) else {
            record(CheckResult {
                service: name,
                what: "its checks".into(),
                outcome: Err("it has no address to test".into()),
                loc: None,
            });
            continue;
        };
        let dir = service.readme.parent().unwrap_or(Path::new("."));
        for block in &service.content.tests {
            match block {
                Tests::Http(checks) => {
                    for c in checks {
                        record(CheckResult {
                            service: name,
                            what: format!("{} {}", c.method, c.path),
                            outcome: http_check(&client, port, c).await,
                            loc: Some(&c.loc),
                        });
                    }
                }
                Tests::Shell(checks) => {
                    for c in checks {
                        record(CheckResult {
                            service: name,
                            what: c.command.clone(),
                            outcome: shell_check(port, dir, c).await,
                            loc: Some(&c.loc),
                        });
                    }
                }
            }
        }
    }
    tally
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
