//! SQLite for the built-in services: one file per service in the state dir, in WAL mode with
//! `synchronous = FULL`, so a write that returned is on disk (a journal entry survives a
//! SIGKILL right after it), and `BEGIN IMMEDIATE` serialises writers.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;

/// A database, one connection, shared.
pub struct Db(Mutex<rusqlite::Connection>);

impl Db {
    /// Open (or create) `path` and apply `schema`.
    pub fn open(path: &Path, schema: &str) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let c = rusqlite::Connection::open(path)
            .with_context(|| format!("cannot open `{}`", path.display()))?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
        )?;
        c.execute_batch(schema)?;
        Ok(Self(Mutex::new(c)))
    }

    /// Run `f` with the connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> anyhow::Result<T> {
        let c = self.0.lock().expect("db");
        Ok(f(&c)?)
    }
}
