//! The job file (JSON or YAML): steps run in order, the tasks of a step at once (up to its
//! `concurrency`); a task calls a service by name, either an engine command (`command`, sent
//! to its `/execute`) or a plain `method` and `path`. Inputs may read the job's shared-state
//! document (`{"$fromState": "order.sku"}`), results are written into it (`storeResultAt`),
//! `enabled: false` skips a step or a task, `retry` and `timeout` bound each call, and `revert`
//! says how a finished task is undone (an engine command's default is its service's
//! `/revert`).
//!
//! ```yaml
//! name: order
//! steps:
//!   - name: reserve
//!     tasks:
//!       - name: reserve-stock
//!         service: inventory
//!         command: reserve
//!         input: {sku: {$fromState: order.sku}, qty: {$fromState: order.qty}}
//!         storeResultAt: reservation
//!   - name: charge-and-notify
//!     tasks:
//!       - {name: charge, service: payments, command: charge, retry: {attempts: 3, initialDelay: 100ms}, timeout: 5s}
//!       - {name: notify, service: notifier, method: POST, path: /notify, input: {text: ordered}}
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Job {
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// Tasks at once within a step, unless the step says (default: all of them).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// A step: tasks run at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Step {
    /// Its name.
    pub name: String,
    /// `false` skips it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Tasks at once (default: the job's, else all).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Its tasks.
    pub tasks: Vec<Task>,
}

fn yes() -> bool {
    true
}

/// A call to a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Task {
    /// Its name, unique in the job (its idempotency key is the job's id and this name).
    pub name: String,
    /// The service called, by name.
    pub service: String,
    /// An engine command (`POST /execute {command, input}`).
    #[serde(default)]
    pub command: Option<String>,
    /// Else a method (default `POST`)…
    #[serde(default)]
    pub method: Option<String>,
    /// …and a path.
    #[serde(default)]
    pub path: Option<String>,
    /// Its input (`$fromState` resolved).
    #[serde(default)]
    pub input: serde_json::Value,
    /// Where its result goes in the job's document (`payment.receipt`).
    #[serde(default, alias = "store_result_at")]
    pub store_result_at: Option<String>,
    /// `false` skips it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Retries of a failed call.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// The most one call may take (`5s`; default 30 s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// How to undo it once done.
    #[serde(default)]
    pub revert: Option<Revert>,
}

/// Retries: `attempts` in all, waiting `initialDelay`, multiplied by `backoff` each time, up to
/// `maxDelay`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// Calls in all (first one included).
    #[serde(default = "one")]
    pub attempts: u32,
    /// The first wait (`100ms`).
    #[serde(default, alias = "initial_delay")]
    pub initial_delay: Option<String>,
    /// Each wait's factor over the last (default 2).
    #[serde(default)]
    pub backoff: Option<f64>,
    /// The longest wait (`10s`).
    #[serde(default, alias = "max_delay")]
    pub max_delay: Option<String>,
}

fn one() -> u32 {
    1
}

/// How a finished task is undone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Revert {
    /// An engine command (`POST /revert {command, input, result}`)…
    #[serde(default)]
    pub command: Option<String>,
    /// …or a method…
    #[serde(default)]
    pub method: Option<String>,
    /// …and a path.
    #[serde(default)]
    pub path: Option<String>,
    /// Its input (default: the task's).
    #[serde(default)]
    pub input: Option<serde_json::Value>,
}

/// Retry timing, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Calls in all.
    pub attempts: u32,
    /// First wait.
    pub initial: Duration,
    /// Factor.
    pub factor: f64,
    /// Cap.
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let d = self.initial.as_secs_f64() * self.factor.powi(n.saturating_sub(1) as i32);
        Duration::from_secs_f64(d.min(self.max.as_secs_f64()))
    }
}

/// The default time one call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Task {
    /// Its retry timing.
    pub fn backoff(&self) -> Backoff {
        let r = self.retry.as_ref();
        let d = |s: Option<&String>, default: Duration| {
            s.and_then(|s| humantime::parse_duration(s).ok())
                .unwrap_or(default)
        };
        Backoff {
            attempts: r.map_or(1, |r| r.attempts.max(1)),
            initial: d(
                r.and_then(|r| r.initial_delay.as_ref()),
                Duration::from_millis(100),
            ),
            factor: r.and_then(|r| r.backoff).unwrap_or(2.0).max(1.0),
            max: d(
                r.and_then(|r| r.max_delay.as_ref()),
                Duration::from_secs(10),
            ),
        }
    }

    /// The most one call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// A problem in a job file: where, what, what would be right.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// `file:line:col` (or just the file).
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Read a job from `text` (JSON or YAML) of `file`, and check it.
pub fn parse(file: &str, text: &str) -> Result<Job, Vec<Problem>> {
    let job: Job = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e.location().map_or(file.to_string(), |l| {
            format!("{file}:{}:{}", l.line(), l.column())
        });
        vec![Problem {
            at,
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string(),
        }]
    })?;
    let problems = check(&job, &Locator::new(file, text));
    if problems.is_empty() {
        Ok(job)
    } else {
        Err(problems)
    }
}

/// Where things are in a job file: each field's position, from the spanned YAML tree (JSON is
/// YAML too).
pub struct Locator {
    source: Option<std::sync::Arc<crate::spec::diagnostic::SourceFile>>,
    root: Option<crate::spec::yaml::Node>,
}

impl Locator {
    /// Positions in `text` of `file`.
    pub fn new(file: &str, text: &str) -> Self {
        let source = crate::spec::diagnostic::SourceFile::new(file, text);
        let root = crate::spec::yaml::parse(&source, &mut crate::spec::Diagnostics::default());
        Self {
            source: Some(source),
            root,
        }
    }

    /// No file (a job sent over HTTP): problems name the job.
    pub fn none() -> Self {
        Self {
            source: None,
            root: None,
        }
    }

    /// `file:line:col` of the value at `path` (`steps`, `0`, `tasks`, `1`, `timeout`), or of
    /// the deepest part of it that is there.
    pub fn at(&self, path: &[&str]) -> String {
        use crate::spec::yaml::NodeKind;
        let Some(source) = &self.source else {
            return "job".into();
        };
        let Some(mut node) = self.root.as_ref() else {
            return source.path.display().to_string();
        };
        for seg in path {
            let next = match &node.kind {
                NodeKind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.as_scalar() == Some(seg))
                    .map(|(_, v)| v),
                NodeKind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
                NodeKind::Scalar { .. } => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        source.location(node.span.start)
    }
}

/// What is wrong with a job that parsed.
pub fn check(job: &Job, at: &Locator) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut problem = |path: &[&str], message: String| {
        out.push(Problem {
            at: at.at(path),
            message,
        })
    };
    if job.steps.is_empty() {
        problem(
            &["steps"],
            "a job needs at least one step in `steps`".into(),
        );
    }
    for (i, step) in job.steps.iter().enumerate() {
        let i = i.to_string();
        if step.tasks.is_empty() {
            problem(
                &["steps", &i, "tasks"],
                format!("step `{}` has no tasks", step.name),
            );
        }
        for (j, t) in step.tasks.iter().enumerate() {
            let j = j.to_string();
            let field = |f: &'static str| ["steps", i.as_str(), "tasks", j.as_str(), f];
            if !names.insert(t.name.clone()) {
                problem(
                    &field("name"),
                    format!(
                        "two tasks are called `{}`: task names must be unique in a job",
                        t.name
                    ),
                );
            }
            match (&t.command, &t.path) {
                (Some(_), Some(_)) => problem(
                    &field("path"),
                    format!(
                        "task `{}` has both `command` and `path`: an engine command goes to `/execute`; give one of them",
                        t.name
                    ),
                ),
                (None, None) => problem(
                    &field("name"),
                    format!(
                        "task `{}` says neither `command` (an engine command) nor `path` (a plain call)",
                        t.name
                    ),
                ),
                _ => {}
            }
            if let Some(m) = &t.method
                && http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err()
            {
                problem(
                    &field("method"),
                    format!("task `{}`: `{m}` is not an HTTP method", t.name),
                );
            }
            let durations = [
                (t.timeout.as_ref(), vec!["timeout"]),
                (
                    t.retry.as_ref().and_then(|r| r.initial_delay.as_ref()),
                    vec!["retry", "initialDelay"],
                ),
                (
                    t.retry.as_ref().and_then(|r| r.max_delay.as_ref()),
                    vec!["retry", "maxDelay"],
                ),
            ];
            for (d, sub) in durations {
                if let Some(d) = d
                    && humantime::parse_duration(d).is_err()
                {
                    let mut path = vec!["steps", i.as_str(), "tasks", j.as_str()];
                    path.extend(sub);
                    problem(
                        &path,
                        format!(
                            "task `{}`: `{d}` is not a duration (write `500ms`, `5s`, `1m`)",
                            t.name
                        ),
                    );
                }
            }
            if t.retry.as_ref().is_some_and(|r| r.attempts == 0) {
                problem(
                    &["steps", &i, "tasks", &j, "retry", "attempts"],
                    format!(
                        "task `{}`: `retry.attempts` counts every call, so it is at least 1",
                        t.name
                    ),
                );
            }
        }
    }
    out
}

/// `order.items.0.sku` → the value there in `doc`.
pub fn lookup<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let pointer: String = path
        .split('.')
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect();
    doc.pointer(&pointer)
}

/// `payment.receipt` and a value → `{"payment": {"receipt": value}}` (a merge patch).
pub fn at_path(path: &str, value: serde_json::Value) -> serde_json::Value {
    path.rsplit('.')
        .fold(value, |v, key| serde_json::json!({ key: v }))
}

/// Does `input` read the job's document (a `$fromState` anywhere in it)?
pub fn reads_state(input: &serde_json::Value) -> bool {
    match input {
        serde_json::Value::Object(m) => m.contains_key("$fromState") || m.values().any(reads_state),
        serde_json::Value::Array(a) => a.iter().any(reads_state),
        _ => false,
    }
}

/// `input` with every `{"$fromState": "path"}` replaced by that value of `doc`; the first
/// missing path is an error.
pub fn resolve(
    input: &serde_json::Value,
    doc: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    match input {
        serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("$fromState") => {
            let path = m["$fromState"]
                .as_str()
                .ok_or("`$fromState` takes a path such as \"order.sku\"")?;
            lookup(doc, path).cloned().ok_or_else(|| {
                format!("`$fromState: {path}`: the job's document has nothing there")
            })
        }
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), resolve(v, doc)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(serde_json::Value::Object),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| resolve(v, doc))
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_parses_and_its_mistakes_are_located() {
        let text = "name: x\nsteps:\n  - name: a\n    tasks:\n      - {name: t1, service: s, command: go, timeout: 5s}\n      - {name: t1, service: s, path: /x, timeout: soon}\n";
        let problems = parse("job.yaml", text).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("unique") && p.at == "job.yaml:6:16"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("`soon` is not a duration") && p.at == "job.yaml:6:51"),
            "{problems:?}"
        );
        let bad = parse(
            "job.json",
            "{\"steps\": [{\"name\": \"a\", \"tasks\": [], \"bogus\": 1}]}",
        )
        .unwrap_err();
        assert!(bad[0].message.contains("unknown field `bogus`"), "{bad:?}");
        assert!(bad[0].at.starts_with("job.json:1:"), "{bad:?}");
    }

    #[test]
    fn state_is_read_and_results_are_placed() {
        let doc = serde_json::json!({"order": {"sku": "tea", "items": [{"n": 2}]}});
        let input = serde_json::json!({"sku": {"$fromState": "order.sku"}, "n": [{"$fromState": "order.items.0.n"}], "k": 1});
        assert_eq!(
            resolve(&input, &doc).unwrap(),
            serde_json::json!({"sku": "tea", "n": [2], "k": 1})
        );
        assert!(
            resolve(&serde_json::json!({"$fromState": "nope"}), &doc)
                .unwrap_err()
                .contains("nothing there")
        );
        assert_eq!(
            at_path("a.b", serde_json::json!(1)),
            serde_json::json!({"a": {"b": 1}})
        );
        let b = Backoff {
            attempts: 5,
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_millis(300),
        };
        assert_eq!(
            (b.delay(1), b.delay(2), b.delay(3)),
            (
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(300)
            )
        );
    }
}
