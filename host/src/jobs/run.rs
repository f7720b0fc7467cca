//! How job-control runs a job: its steps in order, the tasks of a step at once, each call
//! retried as its task says, every transition journaled before it takes effect; on a failure
//! for good, the finished tasks undone last first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::client::Reply;
use super::control::JobControl;
use super::journal::{Entry, JobRow, Status};
use super::model::{Job, Task};

/// Why a call failed: for good, or worth another attempt.
enum Failure {
    Final(String),
    Retry(String),
}

/// The journal entries of a task's attempts, or of its revert's; a revert retries even a
/// failure that is final for a task.
#[derive(Clone, Copy)]
struct Kinds<'a> {
    step: Option<&'a str>,
    started: &'static str,
    done: &'static str,
    failed: &'static str,
    retry_final: bool,
}

/// A call a task (or its revert) makes.
struct Outgoing<'a> {
    method: Method,
    path: &'a str,
    body: &'a serde_json::Value,
    key: &'a str,
}

pub(super) fn method_of(m: Option<&str>) -> Method {
    m.and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or(Method::POST)
}

impl JobControl {
    /// One call to a service, as a task (or its revert) asks.
    async fn call(
        &self,
        job: &str,
        service: &str,
        out: Outgoing<'_>,
        timeout: Duration,
    ) -> Result<serde_json::Value, Failure> {
        let Outgoing {
            method,
            path,
            body,
            key,
        } = out;
        let base = self.base(service).map_err(Failure::Final)?;
        let url = format!("{base}{path}");
        let headers = [
            ("idempotency-key", key.to_string()),
            ("pactown-job", job.to_string()),
        ];
        let body = if method == Method::GET {
            &serde_json::Value::Null
        } else {
            body
        };
        match self.http.call(method, &url, &headers, body, timeout).await {
            Err(e) => Err(Failure::Retry(e)),
            Ok(Reply { status, body }) if status.is_success() => Ok(body),
            Ok(Reply { status, body }) => {
                let msg = format!(
                    "`{service}` answered {status}: {}",
                    body.to_string().chars().take(300).collect::<String>()
                );
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT
                {
                    Err(Failure::Retry(msg))
                } else {
                    Err(Failure::Final(msg))
                }
            }
        }
    }

    /// Run (or resume) a job to its end.
    pub(super) async fn run(&self, id: &str) {
        let Ok(Some(row)) = self.journal.job(id) else {
            return;
        };
        let Ok(job) = serde_json::from_value::<Job>(row.spec.clone()) else {
            let _ = self.journal.set_status(
                id,
                Status::RevertFailed,
                Some("its spec can no longer be read"),
            );
            return;
        };
        if row.status == Status::Running
            && let Err(failed) = self.forward(&row, &job).await
        {
            let _ = self
                .journal
                .set_status(id, Status::Reverting, Some(&failed));
        }
        let Ok(Some(row)) = self.journal.job(id) else {
            return;
        };
        if row.status == Status::Reverting {
            self.revert(&row, &job).await;
        } else if row.status == Status::Running {
            let _ = self.journal.set_status(id, Status::Succeeded, None);
        }
    }

    /// Tasks journaled as finished, with their results, in the order they finished (reverted
    /// ones not counted).
    fn finished(&self, id: &str) -> Vec<(String, serde_json::Value)> {
        let events = self.journal.events(id).unwrap_or_default();
        let reverted: HashSet<String> = events
            .iter()
            .filter(|e| e.event == "task-reverted")
            .filter_map(|e| e.task.clone())
            .collect();
        events
            .into_iter()
            .filter(|e| e.event == "task-succeeded")
            .filter_map(|e| Some((e.task?, e.detail["result"].clone())))
            .filter(|(t, _)| !reverted.contains(t))
            .collect()
    }

    /// The steps, in order: `Err` with why a task failed for good.
    async fn forward(&self, row: &JobRow, job: &Job) -> Result<(), String> {
        let done: HashMap<String, serde_json::Value> = self.finished(&row.id).into_iter().collect();
        // A run killed between journaling a result and storing it: store it again (a merge of
        // the same value changes nothing otherwise).
        for t in job.steps.iter().flat_map(|s| s.tasks.iter()) {
            if let (Some(at), Some(result)) = (&t.store_result_at, done.get(&t.name)) {
                self.patch(&row.state, super::model::at_path(at, result.clone()))
                    .await?;
            }
        }
        for step in &job.steps {
            if !step.enabled {
                let _ = self.journal.append(
                    &row.id,
                    "step-skipped",
                    Entry {
                        step: Some(&step.name),
                        ..Default::default()
                    },
                );
                continue;
            }
            let todo: Vec<&Task> = step
                .tasks
                .iter()
                .filter(|t| t.enabled && !done.contains_key(&t.name))
                .collect();
            if todo.is_empty() {
                continue;
            }
            let _ = self.journal.append(
                &row.id,
                "step-started",
                Entry {
                    step: Some(&step.name),
                    ..Default::default()
                },
            );
            for t in step.tasks.iter().filter(|t| !t.enabled) {
                let _ = self.journal.append(
                    &row.id,
                    "task-skipped",
                    Entry {
                        step: Some(&step.name),
                        task: Some(&t.name),
                        ..Default::default()
                    },
                );
            }
            let limit = step
                .concurrency
                .or(job.concurrency)
                .unwrap_or(todo.len())
                .max(1);
            let gate = Arc::new(tokio::sync::Semaphore::new(limit));
            let runs = todo.into_iter().map(|t| {
                let gate = gate.clone();
                async move {
                    let _permit = gate.acquire().await;
                    self.task(row, &step.name, t)
                        .await
                        .map_err(|e| format!("task `{}` failed: {e}", t.name))
                }
            });
            let results = futures_util::future::join_all(runs).await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e);
            }
            let _ = self.journal.append(
                &row.id,
                "step-finished",
                Entry {
                    step: Some(&step.name),
                    ..Default::default()
                },
            );
        }
        Ok(())
    }

    /// One task, with its retries; its result stored where it says.
    async fn task(&self, row: &JobRow, step: &str, t: &Task) -> Result<(), String> {
        // The document is read only when the input reads it.
        let input = if super::model::reads_state(&t.input) {
            super::model::resolve(&t.input, &self.document(&row.state).await?)?
        } else {
            t.input.clone()
        };
        let (method, path, body) = match &t.command {
            Some(c) => (
                Method::POST,
                "/execute".to_string(),
                serde_json::json!({"command": c, "input": input}),
            ),
            None => (
                method_of(t.method.as_deref()),
                t.path.clone().unwrap_or_else(|| "/".into()),
                input.clone(),
            ),
        };
        let key = format!("{}/{}", row.id, t.name);
        let out = Outgoing {
            method,
            path: &path,
            body: &body,
            key: &key,
        };
        let kinds = Kinds {
            step: Some(step),
            started: "task-started",
            done: "task-succeeded",
            failed: "task-failed",
            retry_final: false,
        };
        let result = self
            .attempts(row, t, &t.name, kinds, out, t.backoff())
            .await?;
        if let Some(at) = &t.store_result_at {
            self.patch(&row.state, super::model::at_path(at, result))
                .await?;
        }
        Ok(())
    }

    /// Call as a task (or its revert) says, each attempt journaled before and after, retried
    /// with `backoff`: the answer, or the last failure.
    async fn attempts(
        &self,
        row: &JobRow,
        t: &Task,
        name: &str,
        kinds: Kinds<'_>,
        out: Outgoing<'_>,
        backoff: super::model::Backoff,
    ) -> Result<serde_json::Value, String> {
        let entry = |attempt: u32, ms: Option<f64>, detail: serde_json::Value| Entry {
            step: kinds.step,
            task: Some(name),
            attempt: Some(attempt),
            ms,
            detail,
        };
        let sent = serde_json::json!({"service": t.service, "method": out.method.as_str(), "path": out.path, "body": out.body});
        for attempt in 1..=backoff.attempts {
            let _ = self
                .journal
                .append(&row.id, kinds.started, entry(attempt, None, sent.clone()));
            let began = Instant::now();
            let again = Outgoing {
                method: out.method.clone(),
                ..out
            };
            let result = self.call(&row.id, &t.service, again, t.timeout()).await;
            let ms = Some(began.elapsed().as_secs_f64() * 1000.0);
            let (msg, last) = match result {
                Ok(answer) => {
                    let _ = self.journal.append(
                        &row.id,
                        kinds.done,
                        entry(attempt, ms, serde_json::json!({"result": answer})),
                    );
                    return Ok(answer);
                }
                Err(Failure::Final(m)) => (m, !kinds.retry_final || attempt == backoff.attempts),
                Err(Failure::Retry(m)) => (m, attempt == backoff.attempts),
            };
            let _ = self.journal.append(
                &row.id,
                kinds.failed,
                entry(
                    attempt,
                    ms,
                    serde_json::json!({"error": msg, "final": last}),
                ),
            );
            if last {
                return Err(msg);
            }
            tokio::time::sleep(backoff.delay(attempt)).await;
        }
        Err("no attempt was made".into())
    }

    /// Undo every finished task, last finished first; the job ends reverted or revert_failed.
    pub(super) async fn revert(&self, row: &JobRow, job: &Job) {
        let tasks: HashMap<&str, &Task> = job
            .steps
            .iter()
            .flat_map(|s| s.tasks.iter())
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut failed = Vec::new();
        let done = self.finished(&row.id);
        let doc = self.document(&row.state).await.unwrap_or_default();
        for (name, result) in done.into_iter().rev() {
            let Some(t) = tasks.get(name.as_str()) else {
                continue;
            };
            let resolve = |v: &serde_json::Value| {
                super::model::resolve(v, &doc).unwrap_or_else(|_| v.clone())
            };
            let input = resolve(&t.input);
            let revert_input = t
                .revert
                .as_ref()
                .and_then(|r| r.input.as_ref())
                .map_or_else(|| input.clone(), resolve);
            // A plain revert call is sent its input, as the task was; an engine's `/revert`
            // also gets what the command answered.
            let call = match (&t.revert, &t.command) {
                (Some(r), _) if r.path.is_some() => Some((
                    method_of(r.method.as_deref()),
                    r.path.clone().unwrap_or_default(),
                    revert_input,
                )),
                (Some(r), Some(c)) => Some((
                    Method::POST,
                    "/revert".to_string(),
                    serde_json::json!({"command": r.command.clone().unwrap_or(c.clone()), "input": revert_input, "result": result}),
                )),
                (None, Some(c)) => Some((
                    Method::POST,
                    "/revert".to_string(),
                    serde_json::json!({"command": c, "input": input, "result": result}),
                )),
                (Some(r), None) => r.command.as_ref().map(|c| {
                    (
                        Method::POST,
                        "/revert".to_string(),
                        serde_json::json!({"command": c, "input": revert_input, "result": result}),
                    )
                }),
                (None, None) => None,
            };
            let Some((method, path, body)) = call else {
                let _ = self.journal.append(&row.id, "task-reverted", Entry {
                    task: Some(&name),
                    detail: serde_json::json!({"note": "a plain call with no `revert`: nothing to undo"}),
                    ..Default::default()
                });
                continue;
            };
            let backoff = super::model::Backoff {
                attempts: t.backoff().attempts.max(3),
                ..t.backoff()
            };
            let key = format!("{}/{}/revert", row.id, name);
            let out = Outgoing {
                method,
                path: &path,
                body: &body,
                key: &key,
            };
            let kinds = Kinds {
                step: None,
                started: "revert-started",
                done: "task-reverted",
                failed: "revert-failed",
                retry_final: true,
            };
            let ok = self
                .attempts(row, t, &name, kinds, out, backoff)
                .await
                .is_ok();
            if !ok {
                failed.push(name);
            }
        }
        let why = row
            .error
            .clone()
            .unwrap_or_else(|| "reverted on request".into());
        if failed.is_empty() {
            let _ = self
                .journal
                .set_status(&row.id, Status::Reverted, Some(&why));
        } else {
            let msg = format!(
                "{why}; could not undo {}",
                failed
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let _ = self
                .journal
                .set_status(&row.id, Status::RevertFailed, Some(&msg));
        }
    }
}
