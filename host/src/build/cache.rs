//! pactown's cache: toolchains it installed, Python environments, compiled artifacts. Entries are
//! content-addressed (a SHA-256 of everything that affects them), built under a file lock so
//! parallel `up`s never build the same entry twice, and marked complete only at the end, so a
//! build cut short is redone, never used.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The cache root: `PACTOWN_CACHE_DIR`, else `$XDG_CACHE_HOME/pactown`, else `~/.cache/pactown`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// Marker written when an entry is complete.
const COMPLETE: &str = ".pactown-complete";

impl Cache {
    /// Find the cache root (it is created on first use): see [`crate::facts::cache_root`].
    pub fn locate() -> Self {
        Self {
            root: crate::facts::cache_root(),
        }
    }

    /// A cache at an explicit root.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<parts...>`.
    pub fn path(&self, parts: &[&str]) -> PathBuf {
        parts.iter().fold(self.root.clone(), |p, s| p.join(s))
    }

    /// Is the entry at `dir` complete?
    pub fn is_complete(dir: &Path) -> bool {
        dir.join(COMPLETE).is_file()
    }

    /// Build the entry at `dir` unless it is complete: under an exclusive lock, a partial entry
    /// is removed, `build` fills `dir`, and the entry is marked complete.
    /// Blocking: call from a blocking thread.
    pub fn build_entry(
        dir: &Path,
        build: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if Self::is_complete(dir) {
            return Ok(());
        }
        let parent = dir.parent().context("cache entry has no parent")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create `{}`", parent.display()))?;
        let lock_path = dir.with_extension("lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("cannot create `{}`", lock_path.display()))?;
        lock.lock().context("cannot lock a cache entry")?;
        if Self::is_complete(dir) {
            return Ok(());
        }
        if dir.exists() {
            make_writable(dir);
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove the partial entry `{}`", dir.display()))?;
        }
        std::fs::create_dir_all(dir)?;
        build(dir)?;
        std::fs::write(dir.join(COMPLETE), b"")?;
        Ok(())
    }
}

impl Cache {
    /// Mark the entry at `dir` incomplete (it was found inconsistent), so the next
    /// [`Cache::build_entry`] builds it again. Taken under the entry's lock: a process using it
    /// right now keeps what it has open.
    pub fn invalidate(dir: &Path) -> anyhow::Result<()> {
        let lock = File::create(dir.with_extension("lock"))?;
        lock.lock().context("cannot lock a cache entry")?;
        make_writable(dir);
        match std::fs::remove_file(dir.join(COMPLETE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Remove write permission from everything below `dir`, so a shared entry cannot be changed by
/// the services that use it.
pub fn make_read_only(dir: &Path) {
    set_write(dir, false);
}

/// Give write permission back below `dir` (to replace or remove an entry).
pub fn make_writable(dir: &Path) {
    set_write(dir, true);
}

fn set_write(dir: &Path, writable: bool) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode();
    let new = if writable {
        mode | 0o200
    } else {
        mode & !0o222
    };
    // Directories first when opening up, last when closing, so we can still walk them.
    if writable {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(new));
    }
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for e in entries.flatten() {
            set_write(&e.path(), writable);
        }
    }
    if !writable {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(new));
    }
}

/// Hex SHA-256 of some parts, each length-prefixed so `["ab","c"]` and `["a","bc"]` differ.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_build_once_and_partial_ones_are_redone() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let entry = tmp.path().join("e");
        std::fs::create_dir_all(&entry)?;
        std::fs::write(entry.join("junk"), "partial")?;
        let mut calls = 0;
        Cache::build_entry(&entry, |d| {
            calls += 1;
            std::fs::write(d.join("x"), "1")?;
            Ok(())
        })?;
        assert!(!entry.join("junk").exists());
        Cache::build_entry(&entry, |_| {
            calls += 1;
            Ok(())
        })?;
        assert_eq!(calls, 1);
        Ok(())
    }

    #[test]
    fn digests_are_unambiguous() {
        assert_ne!(digest([&b"ab"[..], b"c"]), digest([&b"a"[..], b"bc"]));
    }
}
