//! Build: turn a planned service into a sandbox directory that can run. Files are written
//! through a capability handle on the sandbox (an escaping path cannot be written even if the
//! parser's check were missed), templates are filled, and dependencies installed per language,
//! each install a build step in a sandbox of its own ([`step`]): Python (a shared read-only
//! environment keyed by resolved dependencies), Node (a shared read-only `node_modules` keyed
//! by `package.json` and its lock), Go (modules fetched and the program compiled ahead), Rust
//! (a WASI component). Toolchains pactown installs itself on first use ([`tools`]).

pub mod cache;
pub mod confine;
pub mod go;
pub mod node;
pub mod python;
pub mod rust;
pub mod step;
pub mod tools;

use std::path::{Path, PathBuf};

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Permissions};
use pactown_runtime::native::sandbox::Overlay;

pub use cache::Cache;

use crate::plan::ServicePlan;
use crate::spec::Service;
use crate::spec::service::Installer;

/// A native service's `HOME`, inside its sandbox dir (the only place it may write).
pub const HOME_DIR: &str = ".home";
/// A native service's `TMPDIR`, inside its sandbox dir.
pub const TMP_DIR: &str = ".tmp";

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

/// Python dependencies: the `markpact:deps` block, else a `requirements.txt` file block.
fn python_deps(service: &Service) -> Vec<String> {
    if let Some(deps) = service.content.deps.get(&Installer::Pip) {
        return deps.iter().map(|d| d.spec.clone()).collect();
    }
    service
        .content
        .file("requirements.txt")
        .map(|f| {
            f.content
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Prepare the sandbox of one service. Blocking: call from a blocking thread.
pub fn prepare(
    service: &Service,
    plan: &ServicePlan,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> anyhow::Result<Prepared> {
    let dir = &plan.sandbox.dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the sandbox `{}`", dir.display()))?;
    let dir = &std::path::absolute(dir)?;
    let planted = remove_planted(dir);
    if planted > 0 {
        say(&format!(
            "removed {planted} setuid, setgid or device file(s) a previous run left in the sandbox of `{}`",
            service.name
        ));
    }
    write_files(service, plan, dir)?;
    let root = Dir::open_ambient_dir(dir, ambient_authority())?;
    let mut prepared = Prepared::default();
    let py = python_deps(service);
    if !py.is_empty() {
        let env = python::ensure_env(cache, &py, say).with_context(|| {
            format!(
                "cannot install the Python dependencies of `{}`",
                service.name
            )
        })?;
        prepared.path_prefix.push(env.bin());
        prepared
            .env
            .push(("VIRTUAL_ENV".into(), env.root.display().to_string()));
        prepared.read_only.push(env.root);
    }
    if node::is_node(service) {
        let modules = node::ensure_modules(service, cache, say)
            .with_context(|| format!("cannot install the npm packages of `{}`", service.name))?;
        prepared.path_prefix.push(modules.bin.clone());
        prepared.read_only.push(installation(&modules.bin));
        // Its own `npm install` finds everything in place, and fails at once rather than wait
        // on a network it does not have.
        for (k, v) in [
            ("npm_config_offline", "true"),
            ("npm_config_update_notifier", "false"),
            ("npm_config_fund", "false"),
            ("npm_config_audit", "false"),
        ] {
            prepared.env.push((k.into(), v.into()));
        }
        if service.content.file("package.json").is_none() {
            write_generated(&root, "package.json", &node::package_json(service))?;
        }
        if service.content.file("package-lock.json").is_none()
            && let Ok(lock) = std::fs::read_to_string(modules.entry.join("package-lock.json"))
        {
            write_generated(&root, "package-lock.json", &lock)?;
        }
        if plan.sandbox.layer_on("namespaces") {
            let (upper, work) = node::overlay_dirs(dir, &modules.key);
            for d in [&upper, &work, &dir.join("node_modules")] {
                std::fs::create_dir_all(d)?;
            }
            prepared.overlays.push(Overlay {
                lower: modules.modules(),
                upper,
                work,
                target: dir.join("node_modules"),
            });
        } else {
            node::copy_modules(&modules, dir)?;
        }
    }
    if go::is_go(service) {
        let built = go::build(service, cache, say)
            .with_context(|| format!("cannot build the Go service `{}`", service.name))?;
        for f in ["go.mod", "go.sum"] {
            if service.content.file(f).is_none()
                && let Ok(text) = std::fs::read_to_string(built.entry.join(f))
            {
                write_generated(&root, f, &text)?;
            }
        }
        prepared.path_prefix.push(built.bin.clone());
        prepared.env.extend(built.env());
        prepared.read_only.extend([
            built.root(),
            built.mod_cache.clone(),
            built.build_cache.clone(),
        ]);
    }
    if !py.is_empty() || is_python(service) {
        prepared.env.push(("PYTHONUNBUFFERED".into(), "1".into()));
        prepared
            .env
            .push(("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()));
    }
    for sub in [HOME_DIR, TMP_DIR] {
        root.create_dir_all(sub)?;
    }
    // The sandbox is its user's: nothing else in it can be changed by anyone else's code.
    if let Some((uid, gid)) = plan.sandbox.user
        && pactown_runtime::native::sandbox::probe().root
    {
        step::chown_tree(dir, uid, gid);
    }
    Ok(prepared)
}

/// The installation a `bin` directory belongs to (`…/node-24/bin` → `…/node-24`); a system
/// directory stays as it is (it is readable anyway).
pub fn installation(bin: &Path) -> PathBuf {
    if bin.starts_with("/usr") || bin.starts_with("/bin") {
        return bin.to_path_buf();
    }
    bin.parent()
        .map_or_else(|| bin.to_path_buf(), Path::to_path_buf)
}

/// Remove what a service may have planted in its sandbox for the host to trip on: setuid and
/// setgid bits, device nodes. Returns how many it found. Symlinks are never followed.
fn remove_planted(dir: &Path) -> usize {
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
fn write_generated(root: &Dir, name: &str, content: &str) -> anyhow::Result<()> {
    let tmp = format!("{name}.pactown-tmp");
    root.write(&tmp, content.as_bytes())
        .with_context(|| format!("cannot write `{name}` into the sandbox"))?;
    root.rename(&tmp, root, name)
        .with_context(|| format!("cannot write `{name}` into the sandbox"))?;
    Ok(())
}

fn is_python(service: &Service) -> bool {
    service.content.deps.contains_key(&Installer::Pip)
        || service
            .content
            .files
            .iter()
            .any(|f| f.path.as_str().ends_with(".py") || f.lang.as_deref() == Some("python"))
}

/// Write every file block into the sandbox, through a `Dir` handle confined to it.
fn write_files(service: &Service, plan: &ServicePlan, dir: &Path) -> anyhow::Result<()> {
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
