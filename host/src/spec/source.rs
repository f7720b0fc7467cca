//! Reading the user's files once: a README shared by several services, or included by several
//! READMEs, is read and kept in memory a single time per command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::diagnostic::SourceFile;

/// Files read so far, by the path they were asked for.
#[derive(Default)]
pub struct SourceCache {
    files: Mutex<HashMap<PathBuf, Arc<SourceFile>>>,
}

impl SourceCache {
    /// Hold `text` as the content of `path`, as if read from disk (for parsing text that is not
    /// in a file, such as fuzz inputs or generated files).
    pub fn insert(&self, path: &Path, text: String) -> Arc<SourceFile> {
        let key = normalize(path);
        let file = SourceFile::new(key.clone(), text);
        self.files
            .lock()
            .expect("source cache poisoned")
            .insert(key, file.clone());
        file
    }

    /// Read `path` (or return the copy read before).
    pub fn load(&self, path: &Path) -> std::io::Result<Arc<SourceFile>> {
        let key = normalize(path);
        if let Some(f) = self.files.lock().expect("source cache poisoned").get(&key) {
            return Ok(f.clone());
        }
        let bytes = std::fs::read(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        let file = SourceFile::new(key.clone(), text);
        self.files
            .lock()
            .expect("source cache poisoned")
            .insert(key, file.clone());
        Ok(file)
    }
}

/// Lexically tidy a path for display and as a cache key: drop `.` components and resolve
/// `dir/..` pairs that do not climb above the start (no filesystem access, symlinks untouched).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `<dir>/.pactown/<file name without .pactown.yaml>`: one state dir per ecosystem file, so two
/// files in one folder never share state.
pub fn state_dir(ecosystem_file: &Path) -> PathBuf {
    let dir = ecosystem_file.parent().unwrap_or(Path::new(""));
    let name = ecosystem_file
        .file_name()
        .map(|n| {
            let n = n.to_string_lossy();
            n.trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".pactown")
                .to_string()
        })
        .unwrap_or_else(|| "ecosystem".into());
    normalize(&dir.join(".pactown").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("./a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(normalize(Path::new("../a")), PathBuf::from("../a"));
        assert_eq!(normalize(Path::new("a/../..")), PathBuf::from(".."));
        assert_eq!(normalize(Path::new(".")), PathBuf::from("."));
        assert_eq!(normalize(Path::new("/x/../y")), PathBuf::from("/y"));
    }

    #[test]
    fn state_dirs() {
        assert_eq!(
            state_dir(Path::new("x/saas.pactown.yaml")),
            PathBuf::from("x/.pactown/saas")
        );
    }
}
