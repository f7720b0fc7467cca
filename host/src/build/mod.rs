//! Build: turn a planned service into a sandbox directory that can run. Files are written
//! through a capability handle on the sandbox (an escaping path cannot be written even if the
//! parser's check were missed), templates are filled, and dependencies installed per language
//! (Python: a shared read-only environment keyed by resolved dependencies; Node: `npm install`
//! with a shared download cache; Go: `go get`).

pub mod cache;
pub mod python;
pub mod rust;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Permissions};

pub use cache::Cache;

use crate::plan::ServicePlan;
use crate::spec::Service;
use crate::spec::service::Installer;

/// What a prepared native service adds to its environment.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Directories to put first on `PATH`.
    pub path_prefix: Vec<PathBuf>,
    /// Extra variables (`VIRTUAL_ENV`, `PYTHONUNBUFFERED`, ...), below the service's own.
    pub env: Vec<(String, String)>,
    /// Directories the service reads but must not write (shared environments).
    pub read_only: Vec<PathBuf>,
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
    write_files(service, plan, dir)?;
    let mut prepared = Prepared::default();
    for (installer, deps) in &service.content.deps {
        let specs: Vec<String> = deps.iter().map(|d| d.spec.clone()).collect();
        match installer {
            Installer::Pip => {
                let env = python::ensure_env(cache, &specs, say).with_context(|| {
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
            Installer::Npm => npm_install(&service.name, dir, &specs, cache, say)?,
            Installer::Go => go_get(&service.name, dir, &specs, say)?,
            // Rust dependencies belong to wasm builds.
            Installer::Cargo => {}
        }
    }
    if is_python(service) {
        prepared.env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    }
    Ok(prepared)
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

fn npm_install(
    name: &str,
    dir: &Path,
    specs: &[String],
    cache: &Cache,
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let npm = python::which("npm")
        .context("Node services need `npm`, which is not on PATH; install Node.js")?;
    let key = cache::digest(specs.iter().map(|s| s.as_bytes()));
    let marker = dir
        .join("node_modules")
        .join(format!(".pactown-{}", &key[..16]));
    if marker.is_file() {
        return Ok(());
    }
    if !dir.join("package.json").exists() {
        let deps: serde_json::Map<String, serde_json::Value> = specs
            .iter()
            .map(|s| {
                // `express@4` or `@scope/pkg@^1`: split at the last `@` that is not the first char.
                match s[1..].rfind('@') {
                    Some(i) => (s[..i + 1].to_string(), serde_json::Value::from(&s[i + 2..])),
                    None => (s.clone(), serde_json::Value::from("*")),
                }
            })
            .collect();
        let pkg = serde_json::json!({"name": name, "private": true, "dependencies": deps});
        std::fs::write(
            dir.join("package.json"),
            serde_json::to_string_pretty(&pkg)?,
        )?;
    }
    say(&format!(
        "installing npm packages for `{name}`: {}",
        specs.join(" ")
    ));
    let out = std::process::Command::new(npm)
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--cache",
        ])
        .arg(cache.path(&["npm"]))
        .current_dir(dir)
        .output()
        .context("cannot run npm")?;
    if !out.status.success() {
        bail!(
            "npm install for `{name}` failed:\n{}",
            python::tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    std::fs::write(marker, b"")?;
    Ok(())
}

fn go_get(name: &str, dir: &Path, specs: &[String], say: &dyn Fn(&str)) -> anyhow::Result<()> {
    let go =
        python::which("go").context("Go services need `go`, which is not on PATH; install Go")?;
    if !dir.join("go.mod").exists() {
        run_in(
            dir,
            std::process::Command::new(&go).args(["mod", "init", name]),
            "go mod init",
        )?;
    }
    say(&format!("fetching Go modules for `{name}`"));
    for s in specs {
        run_in(
            dir,
            std::process::Command::new(&go)
                .arg("get")
                .args(s.split_whitespace().take(1)),
            "go get",
        )?;
    }
    Ok(())
}

fn run_in(dir: &Path, cmd: &mut std::process::Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed:\n{}",
            python::tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    Ok(())
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
