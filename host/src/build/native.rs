//! A native service's sandbox dir: its files (written through a capability handle on the dir,
//! so an escaping path cannot be written even if the parser's check were missed; templates
//! filled), what a previous run planted there, and what its native toolchains add to it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Permissions};
use pactown_runtime::native::sandbox::Overlay;

use crate::plan::ServicePlan;
use crate::spec::Service;

pub use crate::plan::{HOME_DIR, TMP_DIR};

/// What a prepared native service adds to its environment.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Directories to put first on `PATH`.
    pub path_prefix: Vec<PathBuf>,
    /// Extra variables (`VIRTUAL_ENV`, `PYTHONUNBUFFERED`, ...), below the service's own.
    pub env: Vec<(String, String)>,
    /// Directories the service reads but must not write (shared environments, toolchains).
    pub read_only: Vec<PathBuf>,
    /// Shared read-only directories it sees with a private writable layer on top.
    pub overlays: Vec<Overlay>,
}

/// Remove what a service may have planted in its sandbox for the host to trip on: setuid and
/// setgid bits, device nodes. Returns how many it found. Symlinks are never followed.
pub(super) fn remove_planted(dir: &Path) -> usize {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut found = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_block_device() || ft.is_char_device() {
            found += usize::from(std::fs::remove_file(&p).is_ok());
        } else if ft.is_dir() {
            found += remove_planted(&p);
        } else if ft.is_file() && meta.permissions().mode() & 0o6000 != 0 {
            let mode = meta.permissions().mode() & !0o6000;
            found += usize::from(
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).is_ok(),
            );
        }
    }
    found
}

/// A file pactown writes into the sandbox (not from a file block): through the sandbox's `Dir`
/// handle, replacing whatever is there (a symlink planted in its place is replaced, never
/// followed).
pub(crate) fn write_generated(root: &Dir, name: &str, content: &str) -> anyhow::Result<()> {
    let tmp = format!("{name}.pactown-tmp");
    root.write(&tmp, content.as_bytes())
        .with_context(|| format!("cannot write `{name}` into the sandbox"))?;
    root.rename(&tmp, root, name)
        .with_context(|| format!("cannot write `{name}` into the sandbox"))?;
    Ok(())
}

/// Write every file block into the sandbox, through a `Dir` handle confined to it.
pub(super) fn write_files(service: &Service, plan: &ServicePlan, dir: &Path) -> anyhow::Result<()> {
    let root = Dir::open_ambient_dir(dir, ambient_authority())
        .with_context(|| format!("cannot open the sandbox `{}`", dir.display()))?;
    for f in &service.content.files {
        let rel = f.path.as_path();
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            root.create_dir_all(parent).with_context(|| {
                format!(
                    "cannot create `{}` in the sandbox of `{}`",
                    parent.display(),
                    service.name
                )
            })?;
        }
        let content = if f.template {
            fill_template(&f.content, &plan.env)
        } else {
            f.content.clone()
        };
        // Replace rather than truncate: a running process holding the old file keeps it intact.
        let tmp = format!("{}.pactown-tmp", f.path.as_str());
        root.write(&tmp, content.as_bytes())
            .with_context(|| format!("cannot write `{}` ({})", f.path.as_str(), f.loc))?;
        if let Some(mode) = f.mode {
            use cap_std::fs::PermissionsExt;
            root.set_permissions(&tmp, Permissions::from_mode(mode))?;
        }
        root.rename(&tmp, &root, rel)
            .with_context(|| format!("cannot write `{}` ({})", f.path.as_str(), f.loc))?;
    }
    Ok(())
}

/// markpact templates: `${env:NAME:-default}`, `${env:NAME}` and `${NAME}` from the service's
/// environment; unknown names without a default are left as written.
pub fn fill_template(text: &str, env: &indexmap::IndexMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let body = inner.strip_prefix("env:").unwrap_or(inner);
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        match (env.get(name), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let mut env = indexmap::IndexMap::new();
        env.insert("PORT".to_string(), "9000".to_string());
        assert_eq!(
            fill_template("p=${env:PORT:-1} q=${Q:-2} r=${PORT} s=${S}", &env),
            "p=9000 q=2 r=9000 s=${S}"
        );
    }
}
