//! Python environments, keyed by their resolved dependencies.
//!
//! Two levels, so a warm start runs no tool at all:
//! 1. the declared dependencies (and the interpreter) → a resolved, pinned requirement list,
//!    computed once with `uv pip compile` and kept in the cache;
//! 2. the resolved list → an environment, built once with `uv` (bytecode compiled) and then
//!    made read-only. Services whose dependencies resolve the same share it; none can write it.
//!
//! uv is pactown's own: installed into the cache on first use (with a message), unless one is
//! on `PATH`. Without uv (no pip to install it with), environments are built with `venv` + pip.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::cache::{Cache, digest, make_read_only};

/// The uv pactown installs when none is on `PATH`.
pub const UV_VERSION: &str = "0.13.9";

/// A ready environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The environment's root (`VIRTUAL_ENV`).
    pub root: PathBuf,
}

impl PythonEnv {
    /// Its `bin` directory, to put first on `PATH`.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
}

/// The interpreter environments are built for: `python3` on `PATH`, identified by its real path
/// and its file's size and mtime (no process is started on the warm path).
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// Real path of the interpreter.
    pub path: PathBuf,
    identity: String,
}

impl Interpreter {
    /// Find `python3`.
    pub fn find() -> anyhow::Result<Self> {
        let found = which("python3").context(
            "Python services need `python3`, which is not on PATH; install Python 3 (e.g. `apt-get install python3`)",
        )?;
        let real = std::fs::canonicalize(&found).unwrap_or(found);
        let meta = std::fs::metadata(&real)?;
        use std::os::unix::fs::MetadataExt;
        let identity = format!("{}|{}|{}", real.display(), meta.size(), meta.mtime());
        Ok(Self {
            path: real,
            identity,
        })
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

/// Ensure an environment with `deps` exists. Blocking: call from a blocking thread.
/// `say` reports first-use installs and builds to the user.
pub fn ensure_env(cache: &Cache, deps: &[String], say: &dyn Fn(&str)) -> anyhow::Result<PythonEnv> {
    let python = Interpreter::find()?;
    let mut declared: Vec<&str> = deps.iter().map(String::as_str).collect();
    declared.sort_unstable();
    declared.dedup();
    let declared_key = digest(
        [b"python-declared-v1".as_slice(), python.identity.as_bytes()]
            .into_iter()
            .chain(declared.iter().map(|d| d.as_bytes())),
    );
    let lock_file = cache.path(&["python", "resolved", &format!("{declared_key}.txt")]);
    let resolved = match std::fs::read_to_string(&lock_file) {
        Ok(text) => text,
        Err(_) => {
            // One resolution per declared set, even when several services start together.
            std::fs::create_dir_all(lock_file.parent().expect("resolved dir"))?;
            let guard = std::fs::File::create(lock_file.with_extension("lock"))?;
            super::cache::lock_exclusive(&guard)?;
            match std::fs::read_to_string(&lock_file) {
                Ok(text) => text,
                Err(_) => {
                    let text = resolve(cache, &python, &declared, say)?;
                    write_atomic(&lock_file, &text)?;
                    text
                }
            }
        }
    };
    let env_key = digest([
        b"python-env-v1".as_slice(),
        python.identity.as_bytes(),
        resolved.as_bytes(),
    ]);
    let root = cache.path(&["python", "envs", &env_key[..32]]);
    if Cache::is_complete(&root) {
        return Ok(PythonEnv { root });
    }
    Cache::build_entry(&root, |dir| {
        say(&format!(
            "building a Python environment ({} packages) in {}",
            resolved.lines().filter(|l| is_requirement(l)).count(),
            dir.display()
        ));
        let reqs = dir.with_extension("requirements.txt");
        write_atomic(&reqs, &resolved)?;
        match uv(cache, say) {
            Ok(uv) => {
                run(
                    Command::new(&uv)
                        .args(["venv", "--quiet", "--python"])
                        .arg(&python.path)
                        .arg(dir)
                        .env("UV_CACHE_DIR", cache.path(&["uv"])),
                    "uv venv",
                )?;
                run(
                    Command::new(&uv)
                        .args(["pip", "sync", "--quiet", "--compile-bytecode", "--python"])
                        .arg(dir.join("bin/python"))
                        .arg(&reqs)
                        .env("UV_CACHE_DIR", cache.path(&["uv"])),
                    "uv pip sync",
                )?;
            }
            Err(e) => {
                say(&format!(
                    "uv is unavailable ({e:#}); using venv + pip, which is slower"
                ));
                run(
                    Command::new(&python.path).args(["-m", "venv"]).arg(dir),
                    "python3 -m venv",
                )?;
                run(
                    Command::new(dir.join("bin/pip"))
                        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                        .arg(&reqs),
                    "pip install",
                )?;
            }
        }
        Ok(())
    })?;
    make_read_only(&root);
    Ok(PythonEnv { root })
}

fn is_requirement(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Pin `declared` to exact versions. Without uv, the declared list is used as is.
fn resolve(
    cache: &Cache,
    python: &Interpreter,
    declared: &[&str],
    say: &dyn Fn(&str),
) -> anyhow::Result<String> {
    if declared.is_empty() {
        return Ok(String::new());
    }
    let input = declared.join("\n") + "\n";
    let Ok(uv) = uv(cache, say) else {
        return Ok(input);
    };
    say(&format!(
        "resolving Python dependencies: {}",
        declared.join(" ")
    ));
    let dir = cache.path(&["python", "resolved"]);
    std::fs::create_dir_all(&dir)?;
    let req_in = dir.join(format!("in-{}.txt", std::process::id()));
    std::fs::write(&req_in, &input)?;
    let out = Command::new(&uv)
        .args([
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--no-annotate",
            "--python",
        ])
        .arg(&python.path)
        .arg(&req_in)
        .env("UV_CACHE_DIR", cache.path(&["uv"]))
        .output()
        .context("cannot run uv")?;
    let _ = std::fs::remove_file(&req_in);
    if !out.status.success() {
        bail!(
            "cannot resolve the Python dependencies `{}`:\n{}",
            declared.join(" "),
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// pactown's uv: on `PATH`, or installed into the cache on first use.
pub fn uv(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    if let Some(p) = which("uv") {
        return Ok(p);
    }
    let dir = cache.path(&["tools", &format!("uv-{UV_VERSION}")]);
    let bin = dir.join("bin/uv");
    if Cache::is_complete(&dir) && bin.is_file() {
        return Ok(bin);
    }
    let python = Interpreter::find()?;
    Cache::build_entry(&dir, |d| {
        say(&format!(
            "installing uv {UV_VERSION} into {} (first use; it builds Python environments)",
            d.display()
        ));
        run(
            Command::new(&python.path)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    "--target",
                ])
                .arg(d)
                .arg(format!("uv=={UV_VERSION}")),
            "pip install uv",
        )
    })?;
    if !bin.is_file() {
        bail!(
            "uv was installed into `{}` but `bin/uv` is missing",
            dir.display()
        );
    }
    Ok(bin)
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
