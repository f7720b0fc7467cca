//! `pactown job run|status|list|log|revert`: the job runner, talking to a running ecosystem's
//! `builtin: job-control` service (see [`crate::jobs::control`]).
//!
//! Where job-control is: `--url`, else the running ecosystem `--ecosystem FILE` names (its
//! job-control service, `--service` when it has several). Defaults for every flag come from a
//! `.job-runner.json` in the current directory or the job file's (paths in it relative to it):
//!
//! ```json
//! {"ecosystem": "shop.pactown.yaml", "values": "values.json", "emit": "out/order.json", "cleanup": false}
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Method;

use super::{ExitStatus, Term, user_error};
use crate::control::{Reply, Request, StateDir};
use crate::jobs::client::Http;
use crate::spec::service::Builtin;

/// Run jobs over the ecosystem's services and look at them.
#[derive(Debug, clap::Args)]
pub struct JobCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Submit a job (JSON or YAML) and follow it step by step and task by task
    Run(RunArgs),
    /// One job, step by step and task by task
    Status(IdArgs),
    /// Every job
    List(Target),
    /// A job's timeline: every call, with its input, its answer and how long it took
    Log(IdArgs),
    /// Undo a succeeded job's tasks, last finished first, and follow it
    Revert(RevertArgs),
}

/// Where job-control is.
#[derive(Debug, Clone, Default, clap::Args)]
struct Target {
    /// The running ecosystem whose job-control service runs the job.
    #[arg(short = 'f', long, value_name = "FILE")]
    ecosystem: Option<PathBuf>,
    /// Its job-control service, when it has several.
    #[arg(long)]
    service: Option<String>,
    /// Job-control's address instead (`http://127.0.0.1:8300`).
    #[arg(long)]
    url: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The job file.
    job: PathBuf,
    /// Values (a JSON or YAML object) the job's shared-state document starts with.
    #[arg(long, value_name = "FILE")]
    values: Option<PathBuf>,
    /// Write the job's final document here.
    #[arg(long, value_name = "OUT")]
    emit: Option<PathBuf>,
    /// Delete the job's document once it has ended (after `--emit`).
    #[arg(long)]
    cleanup: bool,
    /// Submit, print the job's id, and return at once.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
struct IdArgs {
    /// The job's id.
    id: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
struct RevertArgs {
    /// The job's id.
    id: String,
    /// Return once the revert is accepted.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    target: Target,
}

/// `.job-runner.json`: defaults for the runner's flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    ecosystem: Option<PathBuf>,
    service: Option<String>,
    url: Option<String>,
    values: Option<PathBuf>,
    emit: Option<PathBuf>,
    #[serde(default)]
    cleanup: bool,
}

/// The defaults file's name.
pub const DEFAULTS_FILE: &str = ".job-runner.json";

fn defaults(near: Option<&Path>) -> anyhow::Result<Defaults> {
    let mut dirs = vec![PathBuf::from(".")];
    if let Some(dir) = near
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
    {
        dirs.push(dir.to_path_buf());
    }
    for dir in dirs {
        let path = dir.join(DEFAULTS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut d: Defaults = serde_json::from_str(&text).map_err(|e| {
            user_error(
                format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()),
                Some("`.job-runner.json` takes `ecosystem`, `service`, `url`, `values`, `emit` and `cleanup`"),
            )
        })?;
        for p in [&mut d.ecosystem, &mut d.values, &mut d.emit]
            .into_iter()
            .flatten()
        {
            *p = dir.join(&*p);
        }
        return Ok(d);
    }
    Ok(Defaults::default())
}

impl Target {
    fn or(mut self, d: &Defaults) -> Self {
        self.ecosystem = self.ecosystem.or_else(|| d.ecosystem.clone());
        self.service = self.service.or_else(|| d.service.clone());
        self.url = self.url.or_else(|| d.url.clone());
        self
    }

    /// Job-control's base URL.
    fn base(&self, term: &Term) -> anyhow::Result<String> {
        if let Some(u) = &self.url {
            return Ok(u.trim_end_matches('/').to_string());
        }
        let Some(file) = &self.ecosystem else {
            return Err(user_error(
                "no job-control to talk to",
                Some(
                    "name the running ecosystem with `--ecosystem FILE` (or `ecosystem` in `.job-runner.json`), or give `--url`",
                ),
            ));
        };
        let eco = super::load(file, term)?.ecosystem;
        let controls: Vec<&str> = eco
            .services
            .values()
            .filter(|s| {
                s.builtin
                    .as_ref()
                    .is_some_and(|(b, _)| *b == Builtin::JobControl)
            })
            .map(|s| s.name.as_str())
            .collect();
        let name = match (&self.service, controls.as_slice()) {
            (Some(s), _) if controls.contains(&s.as_str()) => s.clone(),
            (Some(s), _) => {
                return Err(user_error(
                    format!(
                        "`{s}` is not a `builtin: job-control` service of {}",
                        file.display()
                    ),
                    None,
                ));
            }
            (None, [one]) => one.to_string(),
            (None, []) => {
                return Err(user_error(
                    format!("{} has no job-control service", file.display()),
                    Some("add one: `jobs: {builtin: job-control, depends_on: [state, …]}`"),
                ));
            }
            (None, many) => {
                return Err(user_error(
                    format!(
                        "{} has several job-control services ({}): choose one with `--service`",
                        file.display(),
                        many.join(", ")
                    ),
                    None,
                ));
            }
        };
        let state = StateDir::new(&eco.state_dir);
        if !state.is_running() {
            return Err(user_error(
                format!("{} is not running", eco.name),
                Some(&format!(
                    "start it first: `pactown up -d {}`",
                    file.display()
                )),
            ));
        }
        let Reply::Status { status } =
            state.request(&Request::Status, Some(Duration::from_secs(10)))?
        else {
            anyhow::bail!("the running pactown did not answer `status`");
        };
        let port = status
            .services
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.port)
            .ok_or_else(|| user_error(format!("`{name}` has no address"), None))?;
        Ok(format!("http://127.0.0.1:{port}"))
    }
}

/// Read a JSON or YAML object.
fn read_values(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| user_error(format!("cannot read {}: {e}", path.display()), None))?;
    let v: serde_json::Value = serde_yaml_ng::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map_or(String::new(), |l| format!(":{}:{}", l.line(), l.column()));
        user_error(
            format!("{}{at}: {e}", path.display()),
            Some("values are a JSON or YAML object"),
        )
    })?;
    if !v.is_object() {
        return Err(user_error(
            format!(
                "{}:1:1: values must be an object (`{{\"order\": {{…}}}}`)",
                path.display()
            ),
            None,
        ));
    }
    Ok(v)
}

/// One call to job-control.
async fn call(
    http: &Http,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let r = http
        .call(method, url, headers, body, Duration::from_secs(60))
        .await
        .map_err(|e| user_error(format!("job-control did not answer: {e}"), None))?;
    if r.status.is_success() {
        Ok(r.body)
    } else {
        let msg = r.body["error"]
            .as_str()
            .map_or_else(|| r.body.to_string(), str::to_string);
        Err(user_error(
            format!("job-control answered {}: {msg}", r.status),
            None,
        ))
    }
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

impl JobCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        super::session::block_on(self.go(term))
    }

    async fn go(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let http = Http::new();
        match self.action {
            Action::Run(a) => run(a, term, &http).await,
            Action::Status(a) => {
                let t = a.target.or(&defaults(None)?);
                let job = call(
                    &http,
                    Method::GET,
                    &format!("{}/jobs/{}", t.base(term)?, a.id),
                    &[],
                    &serde_json::Value::Null,
                )
                .await?;
                if t.json {
                    print_json(&job)?;
                } else {
                    print!("{}", super::job_view::table(&job, term));
                }
                Ok(ExitStatus::Success)
            }
            Action::List(t) => {
                let t = t.or(&defaults(None)?);
                let jobs = call(
                    &http,
                    Method::GET,
                    &format!("{}/jobs", t.base(term)?),
                    &[],
                    &serde_json::Value::Null,
                )
                .await?;
                if t.json {
                    print_json(&jobs)?;
                } else {
                    print!("{}", super::job_view::list(&jobs));
                }
                Ok(ExitStatus::Success)
            }
            Action::Log(a) => {
                let t = a.target.or(&defaults(None)?);
                let log = call(
                    &http,
                    Method::GET,
                    &format!("{}/jobs/{}/log", t.base(term)?, a.id),
                    &[],
                    &serde_json::Value::Null,
                )
                .await?;
                if t.json {
                    print_json(&log)?;
                } else {
                    for e in log["events"].as_array().into_iter().flatten() {
                        println!("{}", super::job_view::timeline_line(e));
                    }
                }
                Ok(ExitStatus::Success)
            }
            Action::Revert(a) => {
                let t = a.target.or(&defaults(None)?);
                let base = t.base(term)?;
                call(
                    &http,
                    Method::POST,
                    &format!("{base}/jobs/{}/revert", a.id),
                    &[],
                    &serde_json::Value::Null,
                )
                .await?;
                if a.detach {
                    term.info(&format!("pactown: reverting {}", a.id));
                    return Ok(ExitStatus::Success);
                }
                let job = follow(&http, &base, &a.id, term, t.json).await?;
                finish(&job, term, t.json, "reverted")
            }
        }
    }
}

async fn run(a: RunArgs, term: &Term, http: &Http) -> anyhow::Result<ExitStatus> {
    let d = defaults(Some(&a.job))?;
    let text = std::fs::read_to_string(&a.job)
        .map_err(|e| user_error(format!("cannot read {}: {e}", a.job.display()), None))?;
    let job =
        crate::jobs::model::parse(&a.job.display().to_string(), &text).map_err(|problems| {
            user_error(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some("the job format is in the README (\"Composable jobs\")"),
            )
        })?;
    let values = match a.values.or(d.values.clone()) {
        Some(p) => read_values(&p)?,
        None => serde_json::json!({}),
    };
    let emit = a.emit.or(d.emit.clone());
    let cleanup = a.cleanup || d.cleanup;
    let target = a.target.or(&d);
    let base = target.base(term)?;
    // One key per run: a submit retried after a lost answer makes one job.
    let key = format!("run-{}-{}", std::process::id(), crate::jobs::now_ms());
    let submitted = call(
        http,
        Method::POST,
        &format!("{base}/jobs"),
        &[("idempotency-key", key)],
        &serde_json::json!({"job": job, "values": values}),
    )
    .await?;
    let id = submitted["id"].as_str().unwrap_or_default().to_string();
    if a.detach {
        if target.json {
            print_json(&submitted)?;
        } else {
            println!("{id}");
        }
        return Ok(ExitStatus::Success);
    }
    term.info(&format!(
        "pactown: job {id} ({}) submitted; its document is `{}`",
        job.name.as_deref().unwrap_or("job"),
        submitted["state"].as_str().unwrap_or_default()
    ));
    let view = follow(http, &base, &id, term, target.json).await?;
    if let Some(out) = &emit {
        let doc = call(
            http,
            Method::GET,
            &format!("{base}/jobs/{id}/document"),
            &[],
            &serde_json::Value::Null,
        )
        .await?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&doc)? + "\n")?;
        term.info(&format!(
            "pactown: the job's document is in {}",
            out.display()
        ));
    }
    if cleanup {
        call(
            http,
            Method::DELETE,
            &format!("{base}/jobs/{id}/document"),
            &[],
            &serde_json::Value::Null,
        )
        .await?;
        term.info("pactown: the job's document was deleted");
    }
    finish(&view, term, target.json, "succeeded")
}

/// Print the job's entries as they are journaled until it ends; the job's view at its end.
async fn follow(
    http: &Http,
    base: &str,
    id: &str,
    term: &Term,
    quiet: bool,
) -> anyhow::Result<serde_json::Value> {
    let began = Instant::now();
    let mut seq = 0i64;
    loop {
        let log = call(
            http,
            Method::GET,
            &format!("{base}/jobs/{id}/log?after={seq}&wait=10000"),
            &[],
            &serde_json::Value::Null,
        )
        .await?;
        for e in log["events"].as_array().into_iter().flatten() {
            seq = seq.max(e["seq"].as_i64().unwrap_or(seq));
            if !quiet && let Some(line) = super::job_view::progress_line(e, began.elapsed(), term) {
                eprintln!("{line}");
            }
        }
        let status = log["status"].as_str().unwrap_or("running");
        if !matches!(status, "running" | "reverting")
            && log["events"].as_array().is_none_or(Vec::is_empty)
        {
            return call(
                http,
                Method::GET,
                &format!("{base}/jobs/{id}"),
                &[],
                &serde_json::Value::Null,
            )
            .await;
        }
    }
}

/// Print how the job ended; exit 0 only when it ended `want`.
fn finish(
    job: &serde_json::Value,
    term: &Term,
    json: bool,
    want: &str,
) -> anyhow::Result<ExitStatus> {
    let status = job["status"].as_str().unwrap_or("unknown");
    if json {
        print_json(job)?;
    }
    let id = job["id"].as_str().unwrap_or_default();
    if status == want {
        term.success(&format!("job {id} {status}"));
        Ok(ExitStatus::Success)
    } else {
        let why = job["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        term.error(&format!("job {id} {status}{why}"));
        Ok(ExitStatus::Failure)
    }
}
