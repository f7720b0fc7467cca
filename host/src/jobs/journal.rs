//! Job-control's journal: every transition of every job, appended (and on disk) before it
//! takes effect, so a job resumes from it after a crash and no finished task runs again. The
//! journal is also the audit log `pactown job log` replays: who was called, with what, what
//! came back, how long it took.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::db::Db;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, idempotency_key TEXT UNIQUE,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    job TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, event TEXT NOT NULL,
    step TEXT, task TEXT, attempt INTEGER, ms REAL, detail TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);";

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its steps are running.
    Running,
    /// Every step finished.
    Succeeded,
    /// Undoing its finished tasks (after a failure, or on request).
    Reverting,
    /// Every finished task was undone.
    Reverted,
    /// Some finished task could not be undone.
    RevertFailed,
}

impl Status {
    /// Its spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Reverting => "reverting",
            Status::Reverted => "reverted",
            Status::RevertFailed => "revert_failed",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "succeeded" => Status::Succeeded,
            "reverting" => Status::Reverting,
            "reverted" => Status::Reverted,
            "revert_failed" => Status::RevertFailed,
            _ => Status::Running,
        }
    }

    /// Has it ended?
    pub fn ended(self) -> bool {
        !matches!(self, Status::Running | Status::Reverting)
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its spec.
    pub spec: serde_json::Value,
    /// Its shared-state document.
    pub state: String,
    /// Its status.
    pub status: Status,
    /// Why it failed, or what could not be undone.
    pub error: Option<String>,
    /// When it was submitted.
    pub created_at: String,
    /// Its last change.
    pub updated_at: String,
}

/// One journal entry.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Its order in the job.
    pub seq: i64,
    /// When.
    pub at: String,
    /// What (`task-started`, `task-succeeded`, …).
    pub event: String,
    /// The step.
    pub step: Option<String>,
    /// The task.
    pub task: Option<String>,
    /// The attempt.
    pub attempt: Option<i64>,
    /// How long it took (calls), ms.
    pub ms: Option<f64>,
    /// What was sent, what came back, why it failed.
    pub detail: serde_json::Value,
}

/// The journal.
pub struct Journal {
    db: Db,
    /// Bumped after every write, for those waiting on a job's next entry.
    written: tokio::sync::watch::Sender<u64>,
}

/// What an entry says besides its kind.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    /// The step.
    pub step: Option<&'a str>,
    /// The task.
    pub task: Option<&'a str>,
    /// The attempt.
    pub attempt: Option<u32>,
    /// Duration, ms.
    pub ms: Option<f64>,
    /// Details.
    pub detail: serde_json::Value,
}

impl Journal {
    /// Open it.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::open(path, SCHEMA)?,
            written: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A receiver that sees every later write.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.written.subscribe()
    }

    fn wrote(&self) {
        self.written.send_modify(|n| *n += 1);
    }

    /// Record a new job (with its first entry), unless one with the same idempotency key is
    /// there: its id, and whether it is new.
    pub fn submit(
        &self,
        id: &str,
        name: &str,
        spec: &serde_json::Value,
        state: &str,
        key: Option<&str>,
    ) -> anyhow::Result<(String, bool)> {
        self.db.with(|c| {
            if let Some(k) = key
                && let Some(existing) = c
                    .query_row("SELECT id FROM jobs WHERE idempotency_key = ?1", params![k], |r| r.get::<_, String>(0))
                    .optional()?
            {
                return Ok((existing, false));
            }
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let now = super::now();
            tx.execute(
                "INSERT INTO jobs (id, name, spec, state, status, idempotency_key, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?6)",
                params![id, name, spec.to_string(), state, key, now],
            )?;
            tx.execute(
                "INSERT INTO journal (job, seq, at, event, detail) VALUES (?1, 1, ?2, 'job-submitted', ?3)",
                params![id, now, serde_json::json!({"state": state}).to_string()],
            )?;
            tx.commit()?;
            Ok((id.to_string(), true))
        })
        .inspect(|_| self.wrote())
    }

    /// Append an entry (durably, before returning).
    pub fn append(&self, job: &str, event: &str, e: Entry<'_>) -> anyhow::Result<()> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO journal (job, seq, at, event, step, task, attempt, ms, detail)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE job = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![job, super::now(), event, e.step, e.task, e.attempt, e.ms, e.detail.to_string()],
            )
        })?;
        self.wrote();
        Ok(())
    }

    /// Set a job's status (with an entry saying so).
    pub fn set_status(&self, job: &str, status: Status, error: Option<&str>) -> anyhow::Result<()> {
        self.db.with(|c| {
            c.execute(
                "UPDATE jobs SET status = ?2, error = ?3, updated_at = ?4 WHERE id = ?1",
                params![job, status.as_str(), error, super::now()],
            )
        })?;
        self.append(
            job,
            &format!("job-{}", status.as_str().replace('_', "-")),
            Entry {
                detail: serde_json::json!({"error": error}),
                ..Default::default()
            },
        )
    }

    /// A job.
    pub fn job(&self, id: &str) -> anyhow::Result<Option<JobRow>> {
        self.db.with(|c| {
            c.query_row(
                "SELECT id, name, spec, state, status, error, created_at, updated_at FROM jobs WHERE id = ?1",
                params![id],
                row,
            )
            .optional()
        })
    }

    /// Every job, newest first.
    pub fn jobs(&self) -> anyhow::Result<Vec<JobRow>> {
        self.db.with(|c| {
            let mut s = c.prepare("SELECT id, name, spec, state, status, error, created_at, updated_at FROM jobs ORDER BY created_at DESC, id")?;
            s.query_map([], row)?.collect::<Result<Vec<_>, _>>()
        })
    }

    /// A job's entries, in order.
    pub fn events(&self, id: &str) -> anyhow::Result<Vec<Event>> {
        self.events_after(id, 0)
    }

    /// A job's entries after `seq`, in order.
    pub fn events_after(&self, id: &str, seq: i64) -> anyhow::Result<Vec<Event>> {
        self.db.with(|c| {
            let mut s = c.prepare("SELECT seq, at, event, step, task, attempt, ms, detail FROM journal WHERE job = ?1 AND seq > ?2 ORDER BY seq")?;
            s
                .query_map(params![id, seq], |r| {
                    Ok(Event {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        event: r.get(2)?,
                        step: r.get(3)?,
                        task: r.get(4)?,
                        attempt: r.get(5)?,
                        ms: r.get(6)?,
                        detail: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
        })
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        name: r.get(1)?,
        spec: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
        state: r.get(3)?,
        status: Status::parse(&r.get::<_, String>(4)?),
        error: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite3");
        let j = Journal::open(&path).unwrap();
        let spec = serde_json::json!({"steps": []});
        assert_eq!(
            j.submit("a", "x", &spec, "doc", Some("k")).unwrap(),
            ("a".into(), true)
        );
        assert_eq!(
            j.submit("b", "x", &spec, "doc", Some("k")).unwrap(),
            ("a".into(), false)
        );
        j.append(
            "a",
            "task-started",
            Entry {
                task: Some("t"),
                attempt: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        j.set_status("a", Status::Succeeded, None).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        let kinds: Vec<String> = j
            .events("a")
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(kinds, ["job-submitted", "task-started", "job-succeeded"]);
        assert_eq!(j.job("a").unwrap().unwrap().status, Status::Succeeded);
    }
}
