//! One build step (an install, a fetch, a compile), run under the same shim as a service with a
//! build policy: as the build user, with no capabilities, writing only the cache entry it
//! builds and the download caches it fills, reaching the network only while it fetches. A
//! package's install script cannot touch the rest of the machine.
//!
//! Ownership follows: when pactown is root, what a step writes belongs to the build user while
//! it runs, and a finished entry is handed back to root and made read-only, so no later build
//! or service can change it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pactown_runtime::native::{NativeSpec, Report};

use super::confine::{StepAccess, build_policy};

/// A command to run as a build step.
#[derive(Debug, Clone)]
pub struct Step {
    /// What it does, for messages (`npm install for `api``).
    pub what: String,
    /// The command.
    pub argv: Vec<String>,
    /// Where it runs.
    pub cwd: PathBuf,
    /// Its variables (on top of the build environment).
    pub env: Vec<(String, String)>,
    /// What it may touch.
    pub access: StepAccess,
}

/// Variables a build step inherits beyond a service's (`plan::PARENT_ENV_ALLOWED`): the package
/// indexes' other settings and the machine's proxies (a build needs them, and index URLs keep
/// their credentials here; services never get them).
const BUILD_ONLY_ENV: &[&str] = &[
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "npm_config_registry",
    "GOPROXY",
    "GONOSUMDB",
    "GOPRIVATE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Does a build step inherit this variable? Never the developer's HOME, USER or shell: a step
/// gets a scratch HOME of its own.
fn build_inherits(name: &str) -> bool {
    let personal = matches!(
        name,
        "HOME" | "USER" | "LOGNAME" | "SHELL" | "TERM" | "TMPDIR"
    );
    (crate::plan::PARENT_ENV_ALLOWED.contains(&name) && !personal)
        || BUILD_ONLY_ENV.contains(&name)
        || name.starts_with("LC_")
}

impl Step {
    /// A step running `argv` in `cwd`.
    pub fn new(what: impl Into<String>, argv: &[&str], cwd: &Path) -> Self {
        Self {
            what: what.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            access: StepAccess::default(),
        }
    }

    /// Add an argument.
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.argv.push(a.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Set a variable.
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env
            .push((k.to_string(), v.as_ref().to_string_lossy().into_owned()));
        self
    }

    /// Add arguments.
    pub fn arg_all(mut self, args: &[&str]) -> Self {
        self.argv.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Let it read `p`.
    pub fn read(mut self, p: impl Into<PathBuf>) -> Self {
        self.access.read.push(p.into());
        self
    }

    /// Let it write `p`.
    pub fn write(mut self, p: impl Into<PathBuf>) -> Self {
        self.access.write.push(p.into());
        self
    }

    /// Let it fetch from the network.
    pub fn network(mut self) -> Self {
        self.access.network = true;
        self
    }

    /// Run it to completion; an error carries the tail of its output and what the sandbox
    /// refused.
    pub fn run(&self) -> anyhow::Result<std::process::Output> {
        let (out, reports) = self.output()?;
        if out.status.success() {
            return Ok(out);
        }
        let mut msg = format!(
            "{} failed ({}):\n{}",
            self.what,
            out.status,
            tail(
                &format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                25
            )
        );
        // A sandbox that could not be made says so in the output already.
        for r in reports {
            if let Report::Denied { action, target, .. } = r {
                msg.push_str(&format!("\nthe build sandbox refused {action} {target}"));
            }
        }
        bail!(msg)
    }

    /// Run it to completion, whatever its status: its output and what the sandbox refused.
    pub fn output(&self) -> anyhow::Result<(std::process::Output, Vec<Report>)> {
        let scratch = scratch_dir()?;
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| build_inherits(k))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        env.push(("HOME".into(), scratch.path().display().to_string()));
        env.push(("TMPDIR".into(), scratch.path().display().to_string()));
        env.extend(self.env.iter().cloned());
        let mut access = self.access.clone();
        access.write.push(scratch.path().to_path_buf());
        // The program itself, and the installation it belongs to.
        if let Some(bin) = Path::new(&self.argv[0])
            .parent()
            .filter(|p| p.is_absolute())
        {
            access.read.push(super::confine::installation(bin));
        }
        for w in &access.write {
            give_to_build(w);
        }
        let spec = NativeSpec {
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            policy: build_policy(&access, &env),
            env,
        };
        let exe = pactown_runtime::native::launcher::self_exe()
            .context("cannot find the pactown binary")?;
        spec.output(&exe)
            .with_context(|| format!("cannot run {}", self.what))
    }
}

/// A private, empty directory for one step's `HOME` and `TMPDIR`, removed afterwards.
fn scratch_dir() -> anyhow::Result<tempfile::TempDir> {
    let base = super::cache::Cache::locate().path(&["tmp"]);
    std::fs::create_dir_all(&base)?;
    tempfile::Builder::new()
        .prefix("step-")
        .tempdir_in(&base)
        .context("cannot make a scratch dir for a build step")
}

fn is_root() -> bool {
    pactown_runtime::native::sandbox::probe().root
}

/// Give `path` (and everything below it) to the build user, when pactown is root. A tree whose
/// top already is the build user's is left alone (builds create everything below it).
pub fn give_to_build(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        return;
    }
    let (uid, gid) = crate::plan::BUILD_UID;
    let owned = std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid);
    if !owned {
        chown_tree(path, uid, gid);
    }
}

/// Hand a finished entry back to root (when pactown is root), so no build can change it.
pub fn take_back(path: &Path) {
    if is_root() {
        chown_tree(path, 0, 0);
    }
}

/// `chown -R` without following symlinks (a link planted in a tree changes only itself).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.uid() != uid || meta.gid() != gid {
        let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
    }
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for e in entries.flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Write through a private temporary file, then rename: readers see the old or the new file.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("no parent")?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(path)?;
    Ok(())
}
