//! `builtin: job-control`: runs jobs ([`super::model`]) over services by name, durably.
//!
//! | method, path | |
//! |---|---|
//! | `POST /jobs` | `{job, state?, values?}` → `201 {id, status, state}` (an `Idempotency-Key` header submits once) |
//! | `GET /jobs` | every job |
//! | `GET /jobs/:id` | a job, step by step and task by task |
//! | `GET /jobs/:id/log?after=SEQ&wait=MS` | its journal: the audit of every call (held up to `wait` for the next entry) |
//! | `GET /jobs/:id/document`, `DELETE …` | its shared-state document |
//! | `POST /jobs/:id/revert` | undo a finished job's tasks, last first |
//!
//! Every transition is journaled before it takes effect ([`super::journal`]); at start, jobs a
//! previous run left running resume from their journal, and a task journaled as finished never
//! runs again (one that was in flight runs again with the same `Idempotency-Key`, so a service
//! can tell). A task that fails for good makes the finished tasks revert, last finished first,
//! each revert retried; the job ends `succeeded`, `reverted`, or `revert_failed` naming what
//! could not be undone. A job reads and writes its shared-state document through the
//! shared-state service it depends on.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Method, StatusCode};

use super::client::Http;
use super::journal::{Entry, JobRow, Journal, Status};
use super::model::Job;
use super::{Answer, Context, Handler, In, body_json, error, json, segments};
use crate::plan::Call;

/// The job-control service.
pub struct JobControl {
    pub(super) journal: Journal,
    pub(super) ctx: Context,
    pub(super) http: Http,
    pub(super) running: Mutex<HashSet<String>>,
    pub(super) resumed: std::sync::atomic::AtomicBool,
    pub(super) me: Weak<JobControl>,
}

impl JobControl {
    /// Open its journal and resume what a previous run left running.
    pub fn open(ctx: Context) -> anyhow::Result<Arc<dyn Handler>> {
        let journal = Journal::open(&ctx.db)?;
        let jc = Arc::new_cyclic(|me| Self {
            journal,
            ctx,
            http: Http::new(),
            running: Mutex::new(HashSet::new()),
            resumed: Default::default(),
            me: me.clone(),
        });
        Ok(jc)
    }

    /// Resume the jobs a previous run left running (once, when it is first served: the
    /// services they call are ready by then).
    fn resume(&self) -> anyhow::Result<()> {
        if self.resumed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        for j in self.journal.jobs()? {
            if !j.status.ended() {
                self.journal.append(
                    &j.id,
                    "job-resumed",
                    Entry {
                        detail: serde_json::json!({"status": j.status.as_str()}),
                        ..Default::default()
                    },
                )?;
                self.spawn(j.id.clone());
            }
        }
        Ok(())
    }

    pub(super) fn spawn(&self, id: String) {
        if !self.running.lock().expect("running").insert(id.clone()) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            me.run(&id).await;
            me.running.lock().expect("running").remove(&id);
        });
    }

    /// Where a service is, if this job-control may call it.
    pub(super) fn base(&self, service: &str) -> Result<String, String> {
        match self.ctx.calls.decide(None, service, None) {
            Call::Service {
                name,
                port: Some(p),
            } => {
                let host = self
                    .ctx
                    .calls
                    .elsewhere
                    .get(&name)
                    .map_or("127.0.0.1", String::as_str);
                Ok(format!("http://{host}:{p}"))
            }
            Call::Service { name, port: None } => Err(format!("`{name}` has no address")),
            Call::Refused { message, .. } => Err(message),
            Call::Egress => Err(format!("`{service}` is not a service of this ecosystem")),
        }
    }

    /// The shared-state service this job-control depends on.
    fn state_base(&self) -> Result<String, String> {
        let dep = self
            .ctx
            .services
            .iter()
            .find(|k| k.kind == "shared-state" && self.ctx.calls.services.contains_key(&k.name))
            .ok_or_else(|| {
                format!(
                    "`{}` has no shared-state service in its `depends_on`: jobs keep their document there; add one (`builtin: shared-state`)",
                    self.ctx.name
                )
            })?;
        self.base(&dep.name)
    }

    pub(super) async fn document(&self, state: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}/state/{state}", self.state_base()?);
        let r = self
            .http
            .call(
                Method::GET,
                &url,
                &[],
                &serde_json::Value::Null,
                Duration::from_secs(10),
            )
            .await?;
        if r.status.is_success() {
            Ok(r.body)
        } else {
            Err(format!(
                "the job's document `{state}` cannot be read: {} {}",
                r.status, r.body
            ))
        }
    }

    pub(super) async fn patch(&self, state: &str, patch: serde_json::Value) -> Result<(), String> {
        let url = format!("{}/state/{state}", self.state_base()?);
        // `If-Match: *`: a document deleted under a running job is an error, not made again.
        let r = self
            .http
            .call(
                Method::PATCH,
                &url,
                &[("if-match", "*".to_string())],
                &patch,
                Duration::from_secs(10),
            )
            .await?;
        if r.status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "the job's document `{state}` cannot be written: {} {}",
                r.status, r.body
            ))
        }
    }

    async fn delete_document(&self, state: &str) -> Result<(), String> {
        let url = format!("{}/state/{state}", self.state_base()?);
        let r = self
            .http
            .call(
                Method::DELETE,
                &url,
                &[],
                &serde_json::Value::Null,
                Duration::from_secs(10),
            )
            .await?;
        if r.status.is_success() || r.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(format!(
                "the job's document `{state}` cannot be deleted: {} {}",
                r.status, r.body
            ))
        }
    }

    /// `GET /jobs/:id/log[?after=SEQ][&wait=MS]`: its entries after `after`; with `wait`, held
    /// until there is one or the job has ended (at most `wait` ms, 30 s at most), so a runner
    /// follows a job live without polling.
    async fn log(&self, req: &In, row: &JobRow) -> super::Out {
        let query = |k: &str| {
            req.uri()
                .query()
                .and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                })
                .and_then(|v| v.parse::<i64>().ok())
        };
        let after = query("after").unwrap_or(0);
        let wait = Duration::from_millis(query("wait").unwrap_or(0).clamp(0, 30_000) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let mut written = self.journal.subscribe();
        loop {
            written.borrow_and_update();
            let events = match self.journal.events_after(&row.id, after) {
                Ok(ev) => ev,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
            };
            let status = self
                .journal
                .job(&row.id)
                .ok()
                .flatten()
                .map_or(row.status, |r| r.status);
            let waited_out = tokio::time::Instant::now() >= deadline;
            if !events.is_empty() || status.ended() || waited_out {
                return json(
                    StatusCode::OK,
                    &serde_json::json!({"id": row.id, "status": status, "events": events}),
                );
            }
            let _ = tokio::time::timeout_at(deadline, written.changed()).await;
        }
    }

    /// A job, step by step and task by task, from its journal.
    fn view(&self, row: &JobRow) -> serde_json::Value {
        let events = self.journal.events(&row.id).unwrap_or_default();
        let job: Option<Job> = serde_json::from_value(row.spec.clone()).ok();
        let steps: Vec<serde_json::Value> = job
            .iter()
            .flat_map(|j| j.steps.iter())
            .map(|s| {
                let tasks: Vec<serde_json::Value> = s
                    .tasks
                    .iter()
                    .map(|t| {
                        let mine: Vec<_> = events.iter().filter(|e| e.task.as_deref() == Some(t.name.as_str())).collect();
                        let status = mine.iter().rev().find_map(|e| match e.event.as_str() {
                            "task-reverted" => Some("reverted"),
                            "revert-failed" => Some("revert_failed"),
                            "revert-started" => Some("reverting"),
                            "task-succeeded" => Some("succeeded"),
                            "task-failed" if e.detail["final"] == true => Some("failed"),
                            "task-failed" => Some("retrying"),
                            "task-started" => Some("running"),
                            "task-skipped" => Some("skipped"),
                            _ => None,
                        });
                        let status = status.unwrap_or(if t.enabled && s.enabled { "pending" } else { "skipped" });
                        serde_json::json!({
                            "name": t.name, "service": t.service, "status": status,
                            "attempts": mine.iter().filter(|e| e.event == "task-started").count(),
                            "result": mine.iter().rev().find(|e| e.event == "task-succeeded").map(|e| e.detail["result"].clone()),
                            "error": mine.iter().rev().find(|e| e.event == "task-failed").map(|e| e.detail["error"].clone()),
                        })
                    })
                    .collect();
                serde_json::json!({"name": s.name, "enabled": s.enabled, "tasks": tasks})
            })
            .collect();
        serde_json::json!({
            "id": row.id, "name": row.name, "status": row.status, "state": row.state,
            "error": row.error, "created_at": row.created_at, "updated_at": row.updated_at, "steps": steps,
        })
    }

    async fn submit(&self, req: &In) -> Result<serde_json::Value, (StatusCode, String)> {
        let v = body_json(req)
            .map_err(|_| (StatusCode::BAD_REQUEST, "the body is not JSON".to_string()))?;
        let job: Job = serde_json::from_value(v["job"].clone())
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("`job` is not a job: {e}")))?;
        let problems = super::model::check(&job, &super::model::Locator::none());
        if let Some(p) = problems.first() {
            return Err((StatusCode::BAD_REQUEST, p.message.clone()));
        }
        for t in job.steps.iter().flat_map(|s| s.tasks.iter()) {
            self.base(&t.service)
                .map_err(|e| (StatusCode::FORBIDDEN, format!("task `{}`: {e}", t.name)))?;
        }
        let bad = |e: String| (StatusCode::BAD_GATEWAY, e);
        let state = match v["state"].as_str() {
            Some(s) => {
                self.document(s).await.map_err(bad)?;
                s.to_string()
            }
            None => {
                let url = format!(
                    "{}/state",
                    self.state_base().map_err(|e| (StatusCode::CONFLICT, e))?
                );
                let values = if v["values"].is_object() {
                    v["values"].clone()
                } else {
                    serde_json::json!({})
                };
                let r = self
                    .http
                    .call(Method::POST, &url, &[], &values, Duration::from_secs(10))
                    .await
                    .map_err(bad)?;
                r.body["id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("shared-state made no document: {}", r.body)))?
            }
        };
        let mut b = [0u8; 8];
        // SAFETY: writes at most `b.len()` bytes into `b`.
        unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let id = format!("job-{}", hex::encode(b));
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|k| k.to_str().ok());
        let name = job.name.clone().unwrap_or_else(|| "job".into());
        let spec = serde_json::to_value(&job).expect("json");
        let (id, new) = self
            .journal
            .submit(&id, &name, &spec, &state, key)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        if new {
            self.spawn(id.clone());
        }
        let row = self.journal.job(&id).ok().flatten().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the job vanished".to_string(),
        ))?;
        Ok(serde_json::json!({"id": id, "status": row.status, "state": row.state, "new": new}))
    }
}

impl Handler for JobControl {
    fn started(&self) {
        if let Err(e) = self.resume() {
            tracing::error!(
                "job-control `{}` cannot resume its jobs: {e:#}",
                self.ctx.name
            );
        }
    }

    fn handle(&self, req: In) -> Answer<'_> {
        Box::pin(async move {
            let segs = segments(&req);
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            match (req.method().clone(), segs.as_slice()) {
                (Method::GET, ["health"]) => json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok", "service": "job-control"}),
                ),
                (Method::POST, ["jobs"]) => match self.submit(&req).await {
                    Ok(v) => json(StatusCode::CREATED, &v),
                    Err((s, m)) => error(s, m),
                },
                (Method::GET, ["jobs"]) => match self.journal.jobs() {
                    Ok(rows) => json(
                        StatusCode::OK,
                        &serde_json::json!({"jobs": rows.iter().map(|r| serde_json::json!({
                        "id": r.id, "name": r.name, "status": r.status, "state": r.state,
                        "error": r.error, "created_at": r.created_at, "updated_at": r.updated_at,
                    })).collect::<Vec<_>>()}),
                    ),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
                },
                (method, ["jobs", id, rest @ ..]) => {
                    let row = match self.journal.job(id) {
                        Ok(Some(r)) => r,
                        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no job `{id}`")),
                        Err(e) => {
                            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
                        }
                    };
                    match (method, rest) {
                        (Method::GET, []) => json(StatusCode::OK, &self.view(&row)),
                        (Method::GET, ["log"]) => self.log(&req, &row).await,
                        (Method::GET, ["document"]) => match self.document(&row.state).await {
                            Ok(doc) => json(StatusCode::OK, &doc),
                            Err(e) => error(StatusCode::BAD_GATEWAY, e),
                        },
                        (Method::DELETE, ["document"]) => {
                            match self.delete_document(&row.state).await {
                                Ok(()) => json(
                                    StatusCode::OK,
                                    &serde_json::json!({"id": id, "state": row.state, "deleted": true}),
                                ),
                                Err(e) => error(StatusCode::BAD_GATEWAY, e),
                            }
                        }
                        (Method::POST, ["revert"]) if row.status == Status::Succeeded => {
                            let _ = self
                                .journal
                                .append(id, "revert-requested", Entry::default());
                            let _ = self.journal.set_status(id, Status::Reverting, None);
                            self.spawn(id.to_string());
                            json(
                                StatusCode::ACCEPTED,
                                &serde_json::json!({"id": id, "status": "reverting"}),
                            )
                        }
                        (Method::POST, ["revert"]) => error(
                            StatusCode::CONFLICT,
                            format!(
                                "job `{id}` is {}: only a succeeded job is reverted on request",
                                row.status.as_str()
                            ),
                        ),
                        _ => error(
                            StatusCode::NOT_FOUND,
                            "a job answers GET, GET /log, GET|DELETE /document and POST /revert",
                        ),
                    }
                }
                _ => error(StatusCode::NOT_FOUND, "job-control answers /jobs"),
            }
        })
    }
}
