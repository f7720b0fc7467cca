//! The registry's storage: content-addressed blobs on disk and an index in SQLite.
//!
//! Why SQLite (rusqlite, bundled): the index must survive a crash at any moment and take
//! concurrent publishes. SQLite's write-ahead log with `synchronous = FULL` gives atomic,
//! durable transactions (a publish is in the index entirely or not at all), `BEGIN IMMEDIATE`
//! serialises writers without losing any, and listing and searching are queries rather than a
//! file rewritten whole (the reference rewrote `index.json` without a lock). Blobs (README
//! bundles, components) live beside it as `blobs/sha256/<hex>`, each written to a private
//! temporary file, fsynced, renamed into place and its directory fsynced *before* the index
//! names it: an index entry never points at a missing or partial blob. A crash between the two
//! leaves an unreferenced blob, which is harmless.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::Digest;

/// An artifact as the reference's API shows it (`GET /v1/artifacts…`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArtifactInfo {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// What it is.
    pub description: String,
    /// The highest published version (not a pre-release, unless there are only those).
    pub latest_version: Option<String>,
    /// Every published version, lowest first.
    pub versions: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// One version (`GET /v1/artifacts/{ns}/{name}/{version}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionInfo {
    /// The version.
    pub version: String,
    /// The README bundle (includes resolved).
    pub readme_content: String,
    /// SHA-256 (hex) of the README bundle.
    pub checksum: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// What the publisher sent, plus pactown's `component` entry when one was published.
    pub metadata: serde_json::Value,
}

/// A publish.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Version (semver).
    pub version: String,
    /// The README bundle.
    pub readme: String,
    /// Description (kept when empty).
    pub description: String,
    /// Tags (added to the artifact's).
    pub tags: Vec<String>,
    /// Metadata, as sent.
    pub metadata: serde_json::Value,
    /// SHA-256 (hex) of a component blob published with it, already stored.
    pub component: Option<String>,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Versions are immutable.
    #[error(
        "`{namespace}/{name}` {version} is already published (checksum {checksum}); versions never change: publish a new version"
    )]
    Exists {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Version.
        version: String,
        /// The checksum of what is published.
        checksum: String,
    },
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// A name or namespace: letters, digits, `.`, `_` and `-`, starting with a letter or digit, at
/// most 64 characters (so `a/../..` and the empty name are refused).
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !s.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` is not valid: use 1–64 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            s.chars().take(80).collect::<String>()
        ))
    }
}

/// A blob digest: 64 lowercase hex digits.
pub fn check_digest(hex: &str) -> Result<(), String> {
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "`{hex}` is not a SHA-256 digest (64 lowercase hex digits)"
        ))
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The store.
pub struct Store {
    root: PathBuf,
    db: Mutex<rusqlite::Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS artifacts (
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS versions (
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    checksum     TEXT NOT NULL,
    component    TEXT,
    published_at TEXT NOT NULL,
    metadata     TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (namespace, name, version),
    FOREIGN KEY (namespace, name) REFERENCES artifacts (namespace, name) ON DELETE CASCADE
);
";

impl Store {
    /// Open (or create) the store in `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        for d in ["blobs/sha256", "tmp"] {
            std::fs::create_dir_all(root.join(d))
                .with_context(|| format!("cannot create `{}`", root.join(d).display()))?;
        }
        let db = rusqlite::Connection::open(root.join("index.sqlite3"))
            .with_context(|| format!("cannot open the index in `{}`", root.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
        )?;
        db.execute_batch(SCHEMA)?;
        // Leftovers of writes a crash cut short.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            db: Mutex::new(db),
        })
    }

    /// Where a blob is.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    /// Is a blob stored?
    pub fn has_blob(&self, hex: &str) -> bool {
        check_digest(hex).is_ok() && self.blob_path(hex).is_file()
    }

    /// Store `bytes` as a blob (durably, before returning): its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let hex = sha256(bytes);
        let path = self.blob_path(&hex);
        if path.is_file() {
            return Ok(hex);
        }
        let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot store `{}`", path.display()))?;
        std::fs::File::open(path.parent().expect("blob dir"))?.sync_all()?;
        Ok(hex)
    }

    /// A stored blob's bytes, checked against its digest (a blob changed on disk is refused).
    pub fn read_blob(&self, hex: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if check_digest(hex).is_err() {
            return Ok(None);
        }
        let bytes = match std::fs::read(self.blob_path(hex)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if sha256(&bytes) != hex {
            anyhow::bail!("blob {hex} is damaged on disk: its content no longer has that digest");
        }
        Ok(Some(bytes))
    }

    /// Publish a version: its README stored as a blob, then the index updated in one
    /// transaction. The version must be new.
    pub fn publish(&self, p: &Publish) -> Result<String, PublishError> {
        check_name("namespace", &p.namespace).map_err(PublishError::Invalid)?;
        check_name("name", &p.name).map_err(PublishError::Invalid)?;
        let version = semver::Version::parse(p.version.trim()).map_err(|e| {
            PublishError::Invalid(format!(
                "version `{}` is not semver ({e}); write e.g. `1.2.0`",
                p.version
            ))
        })?;
        if p.readme.trim().is_empty() {
            return Err(PublishError::Invalid("`readme_content` is empty".into()));
        }
        if let Some(c) = &p.component
            && !self.has_blob(c)
        {
            return Err(PublishError::Invalid(format!(
                "component blob {c} is not stored: upload it first (`PUT /v1/blobs/sha256:{c}`)"
            )));
        }
        let checksum = self.put_blob(p.readme.as_bytes())?;
        let mut metadata = p.metadata.clone();
        if !metadata.is_object() {
            metadata = serde_json::json!({});
        }
        if let Some(c) = &p.component {
            metadata["pactown"]["component"] = serde_json::json!({"digest": format!("sha256:{c}")});
        }
        let now = now();
        let mut db = self.db.lock().expect("db");
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("cannot start a transaction")?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT checksum FROM versions WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                params![p.namespace, p.name, version.to_string()],
                |r| r.get(0),
            )
            .optional()
            .context("cannot read the index")?;
        if let Some(checksum) = existing {
            return Err(PublishError::Exists {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                version: version.to_string(),
                checksum,
            });
        }
        let tags: Vec<String> = tx
            .query_row(
                "SELECT tags FROM artifacts WHERE namespace = ?1 AND name = ?2",
                params![p.namespace, p.name],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .context("cannot read the index")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut all = tags;
        for t in &p.tags {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        tx.execute(
            "INSERT INTO artifacts (namespace, name, description, tags, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (namespace, name) DO UPDATE SET
               description = CASE WHEN excluded.description = '' THEN description ELSE excluded.description END,
               tags = excluded.tags",
            params![p.namespace, p.name, p.description, serde_json::to_string(&all).expect("json"), now],
        )
        .context("cannot write the index")?;
        tx.execute(
            "INSERT INTO versions (namespace, name, version, checksum, component, published_at, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.namespace, p.name, version.to_string(), checksum, p.component, now, metadata.to_string()],
        )
        .context("cannot write the index")?;
        tx.commit().context("cannot commit the index")?;
        Ok(checksum)
    }

    /// Artifacts of a namespace (or all), or those whose name, description or tags contain
    /// `search` (case-insensitive).
    pub fn list(
        &self,
        namespace: Option<&str>,
        search: Option<&str>,
    ) -> anyhow::Result<Vec<ArtifactInfo>> {
        let db = self.db.lock().expect("db");
        let mut stmt = db.prepare(
            "SELECT namespace, name, description, tags FROM artifacts ORDER BY namespace, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let needle = search.map(str::to_lowercase);
        let mut out = Vec::new();
        for row in rows {
            let (ns, name, description, tags) = row?;
            let tags: Vec<String> = serde_json::from_str(&tags).unwrap_or_default();
            if namespace.is_some_and(|n| n != ns) {
                continue;
            }
            if let Some(q) = &needle
                && !(name.to_lowercase().contains(q)
                    || description.to_lowercase().contains(q)
                    || tags.iter().any(|t| t.to_lowercase().contains(q)))
            {
                continue;
            }
            let versions = versions_of(&db, &ns, &name)?;
            out.push(info(ns, name, description, tags, versions));
        }
        Ok(out)
    }

    /// One artifact.
    pub fn artifact(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ArtifactInfo>> {
        let db = self.db.lock().expect("db");
        let row = db
            .query_row(
                "SELECT description, tags FROM artifacts WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        let Some((description, tags)) = row else {
            return Ok(None);
        };
        let versions = versions_of(&db, namespace, name)?;
        Ok(Some(info(
            namespace.to_string(),
            name.to_string(),
            description,
            serde_json::from_str(&tags).unwrap_or_default(),
            versions,
        )))
    }

    /// A version: exact, `latest` (or `*`), or the highest matching a semver range (`^1.2`).
    pub fn version(
        &self,
        namespace: &str,
        name: &str,
        wanted: &str,
    ) -> anyhow::Result<Option<VersionInfo>> {
        let Some(artifact) = self.artifact(namespace, name)? else {
            return Ok(None);
        };
        let Some(version) = resolve(&artifact, wanted) else {
            return Ok(None);
        };
        let row = {
            let db = self.db.lock().expect("db");
            db.query_row(
                "SELECT checksum, published_at, metadata FROM versions WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                params![namespace, name, version],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)),
            )
            .optional()?
        };
        let Some((checksum, published_at, metadata)) = row else {
            return Ok(None);
        };
        let readme = self.read_blob(&checksum)?.with_context(|| {
            format!("the README blob {checksum} of {namespace}/{name} {version} is missing")
        })?;
        Ok(Some(VersionInfo {
            version,
            readme_content: String::from_utf8_lossy(&readme).into_owned(),
            checksum,
            published_at,
            metadata: serde_json::from_str(&metadata).unwrap_or_else(|_| serde_json::json!({})),
        }))
    }

    /// Delete an artifact and all its versions (their blobs stay: other versions may share
    /// them). Whether it existed.
    pub fn delete(&self, namespace: &str, name: &str) -> anyhow::Result<bool> {
        let db = self.db.lock().expect("db");
        let n = db.execute(
            "DELETE FROM artifacts WHERE namespace = ?1 AND name = ?2",
            params![namespace, name],
        )?;
        Ok(n > 0)
    }

    /// Every namespace with an artifact.
    pub fn namespaces(&self) -> anyhow::Result<Vec<String>> {
        let db = self.db.lock().expect("db");
        let mut stmt = db.prepare("SELECT DISTINCT namespace FROM artifacts ORDER BY namespace")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn versions_of(
    db: &rusqlite::Connection,
    ns: &str,
    name: &str,
) -> anyhow::Result<Vec<semver::Version>> {
    let mut stmt = db.prepare("SELECT version FROM versions WHERE namespace = ?1 AND name = ?2")?;
    let rows = stmt.query_map(params![ns, name], |r| r.get::<_, String>(0))?;
    let mut v: Vec<semver::Version> = rows
        .filter_map(|r| r.ok().and_then(|s| semver::Version::parse(&s).ok()))
        .collect();
    v.sort();
    Ok(v)
}

fn info(
    namespace: String,
    name: String,
    description: String,
    tags: Vec<String>,
    versions: Vec<semver::Version>,
) -> ArtifactInfo {
    let latest = versions
        .iter()
        .rev()
        .find(|v| v.pre.is_empty())
        .or(versions.last())
        .map(ToString::to_string);
    ArtifactInfo {
        name,
        namespace,
        description,
        latest_version: latest,
        versions: versions.iter().map(ToString::to_string).collect(),
        tags,
    }
}

/// The version `wanted` names among `artifact`'s.
pub fn resolve(artifact: &ArtifactInfo, wanted: &str) -> Option<String> {
    let wanted = wanted.trim();
    if wanted.is_empty() || wanted == "latest" || wanted == "*" {
        return artifact.latest_version.clone();
    }
    if artifact.versions.iter().any(|v| v == wanted) {
        return Some(wanted.to_string());
    }
    let req = semver::VersionReq::parse(wanted).ok()?;
    artifact
        .versions
        .iter()
        .filter_map(|v| semver::Version::parse(v).ok())
        .filter(|v| req.matches(v))
        .max()
        .map(|v| v.to_string())
}

/// Now, RFC 3339 with microseconds and an explicit offset (what Python's `fromisoformat` reads).
fn now() -> String {
    let t = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    t.strip_suffix('Z')
        .map_or(t.clone(), |s| format!("{s}+00:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(store: &Store, name: &str, version: &str) -> Result<String, PublishError> {
        store.publish(&Publish {
            namespace: "default".into(),
            name: name.into(),
            version: version.into(),
            readme: format!("# {name} {version}\n"),
            description: String::new(),
            tags: vec!["t".into()],
            metadata: serde_json::json!({}),
            component: None,
        })
    }

    #[test]
    fn versions_are_immutable_and_resolved_by_semver() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for v in ["1.0.0", "1.2.0", "2.0.0-rc.1", "1.10.0"] {
            publish(&store, "api", v).unwrap();
        }
        match publish(&store, "api", "1.2.0") {
            Err(PublishError::Exists { checksum, .. }) => {
                assert_eq!(checksum, sha256(b"# api 1.2.0\n"))
            }
            other => panic!("{other:?}"),
        }
        let a = store.artifact("default", "api").unwrap().unwrap();
        assert_eq!(a.versions, ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]);
        assert_eq!(a.latest_version.as_deref(), Some("1.10.0"));
        assert_eq!(resolve(&a, "^1.2").as_deref(), Some("1.10.0"));
        assert_eq!(resolve(&a, "~1.2").as_deref(), Some("1.2.0"));
        assert_eq!(resolve(&a, "*").as_deref(), Some("1.10.0"));
        assert_eq!(resolve(&a, "^3"), None);
        let v = store.version("default", "api", "latest").unwrap().unwrap();
        assert_eq!(v.readme_content, "# api 1.10.0\n");
        // Reopened, everything is there.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.list(None, Some("AP")).unwrap().len(), 1);
        assert_eq!(store.namespaces().unwrap(), ["default"]);
        assert!(store.delete("default", "api").unwrap());
        assert!(store.artifact("default", "api").unwrap().is_none());
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a/../..", "..", "-x", &"a".repeat(65), "a b", "ä"] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
        for good in ["api", "auth-service", "v1.2_x", "A9"] {
            assert!(check_name("name", good).is_ok(), "{good}");
        }
        assert!(check_digest(&"a".repeat(64)).is_ok());
        assert!(check_digest("../etc").is_err());
    }

    #[test]
    fn a_blob_damaged_on_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hex = store.put_blob(b"component bytes").unwrap();
        assert_eq!(store.read_blob(&hex).unwrap().unwrap(), b"component bytes");
        std::fs::write(store.blob_path(&hex), b"tampered").unwrap();
        assert!(store.read_blob(&hex).is_err());
    }
}
