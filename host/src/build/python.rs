//! Python environments, keyed by their resolved dependencies.
//!
//! Two levels, so a warm start runs no tool at all:
//! 1. the declared dependencies (and the interpreter) → a resolved, pinned requirement list,
//!    computed once with `uv pip compile` and kept in the cache;
//! 2. the resolved list → an environment, built once with `uv` (bytecode compiled, pip seeded
//!    so a run block's own `pip install -r …` finds everything in place) and then made
//!    read-only. Services whose dependencies resolve the same share it; none can write it.
//!
//! Nothing is trusted blindly: a resolution must name every declared requirement before it is
//! cached, and when it is read back; an environment must hold every package of its set. An
//! entry that does not is rebuilt, with a line saying so. Every input and output file is
//! private to its operation, so services resolving at the same moment (in one `up`, or in two
//! pactown processes sharing the cache) never see each other's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::cache::{Cache, digest, make_read_only};
use super::native::Prepared;
use super::step::{Step, take_back};
use super::toolchain::{Artifact, BuildContext, BuildError, Toolchain};
use super::tools::{Interpreter, uv};
use crate::spec::Service;
use crate::spec::service::Installer;

/// Python dependencies: the `markpact:deps` block, else a `requirements.txt` file block.
pub fn declared(service: &Service) -> Vec<String> {
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

/// The Python toolchain: a service's declared dependencies become a shared read-only
/// environment on its `PATH`.
pub struct Python;

impl Toolchain for Python {
    fn name(&self) -> &'static str {
        "python"
    }

    fn detect(&self, service: &Service) -> bool {
        // A Python component bundles its dependencies itself (see `python_wasm`).
        !declared(service).is_empty() && !crate::spec::language::runtime_kind(service).0.is_wasm()
    }

    fn reason(&self, service: &Service) -> String {
        match service.content.deps.get(&Installer::Pip) {
            Some(d) if !d.is_empty() => format!("`markpact:deps python` ({})", d[0].loc),
            _ => "a `requirements.txt` block".into(),
        }
    }

    fn cache_key(&self, service: &Service) -> String {
        let mut deps = declared(service);
        deps.sort_unstable();
        deps.dedup();
        digest(
            std::iter::once(b"python-declared-v1".as_slice())
                .chain(deps.iter().map(|d| d.as_bytes())),
        )
    }

    fn build(&self, service: &Service, ctx: &BuildContext<'_>) -> Result<Artifact, BuildError> {
        let env = ensure_env(ctx.cache, &declared(service), ctx.say).with_context(|| {
            format!(
                "cannot install the Python dependencies of `{}`",
                service.name
            )
        })?;
        Ok(Artifact::Native(Prepared {
            path_prefix: vec![env.bin()],
            env: vec![("VIRTUAL_ENV".into(), env.root.display().to_string())],
            read_only: vec![env.root, env.installation],
            overlays: Vec::new(),
        }))
    }
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The environment's root (`VIRTUAL_ENV`).
    pub root: PathBuf,
    /// The installation of the interpreter it was made from (its `pyvenv.cfg` says `home`),
    /// which a process using it reads too.
    pub installation: PathBuf,
}

impl PythonEnv {
    /// Its `bin` directory, to put first on `PATH`.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
}

/// A distribution name as PEP 503 compares them: lower case, runs of `-_.` as one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The distribution a requirement line names (`fastapi[all]>=0.1; python_version>"3"` →
/// `fastapi`), when it names one unconditionally: lines with markers, options or bare URLs
/// give none.
pub fn requirement_name(line: &str) -> Option<String> {
    let t = line.split('#').next()?.trim();
    if t.is_empty()
        || t.starts_with('-')
        || t.contains(';')
        || t.contains("://") && !t.contains(" @ ")
    {
        return None;
    }
    let end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(t.len());
    let name = &t[..end];
    (!name.is_empty()).then(|| normalize(name))
}

/// Names of a resolved (pinned) list.
fn resolved_names(resolved: &str) -> BTreeSet<String> {
    resolved.lines().filter_map(requirement_name).collect()
}

/// The declared requirements a resolution does not name.
fn missing_from(resolved: &str, declared: &[&str]) -> Vec<String> {
    let have = resolved_names(resolved);
    declared
        .iter()
        .filter_map(|d| requirement_name(d))
        .filter(|n| !have.contains(n))
        .collect()
}

/// Ensure an environment with `deps` exists. Blocking: call from a blocking thread.
/// `say` reports first-use installs, builds and repairs to the user.
pub fn ensure_env(cache: &Cache, deps: &[String], say: &dyn Fn(&str)) -> anyhow::Result<PythonEnv> {
    let python = Interpreter::find(cache)?;
    let mut declared: Vec<&str> = deps.iter().map(String::as_str).collect();
    declared.sort_unstable();
    declared.dedup();
    let declared_key = digest(
        [b"python-declared-v1".as_slice(), python.identity.as_bytes()]
            .into_iter()
            .chain(declared.iter().map(|d| d.as_bytes())),
    );
    let lock_file = cache.path(&["python", "resolved", &format!("{declared_key}.txt")]);
    let resolved = resolution(cache, &python, &declared, &lock_file, say)?;
    let env_key = digest([
        b"python-env-v2".as_slice(),
        python.identity.as_bytes(),
        resolved.as_bytes(),
    ]);
    let root = cache.path(&["python", "envs", &env_key[..32]]);
    // The environment is keyed by this interpreter: it is the one the environment runs.
    let installation = python.installation();
    let pinned = resolved_names(&resolved);
    if Cache::is_complete(&root) {
        let lacking = lacking_packages(&root, &pinned);
        if lacking.is_empty() {
            return Ok(PythonEnv { root, installation });
        }
        say(&format!(
            "the Python environment {} lacks {}; rebuilding it",
            root.display(),
            lacking.join(", ")
        ));
        Cache::invalidate(&root)?;
    }
    Cache::build_entry(&root, |dir| {
        say(&format!(
            "building a Python environment ({} packages) in {}",
            pinned.len(),
            dir.display()
        ));
        let reqs = dir.join(".pactown-requirements.txt");
        std::fs::write(&reqs, &resolved)?;
        build_env(cache, &python, dir, &reqs, say)?;
        take_back(dir);
        let lacking = lacking_packages(dir, &pinned);
        if !lacking.is_empty() {
            bail!(
                "the environment was built but lacks {} (from the set {})",
                lacking.join(", "),
                reqs.display()
            );
        }
        Ok(())
    })?;
    make_read_only(&root);
    Ok(PythonEnv { root, installation })
}

/// The pinned set for `declared`: from the cache when it is consistent, else resolved now
/// (one resolution per declared set at a time, even across processes).
fn resolution(
    cache: &Cache,
    python: &Interpreter,
    declared: &[&str],
    lock_file: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<String> {
    let consistent = |text: &str| missing_from(text, declared).is_empty();
    if let Ok(text) = std::fs::read_to_string(lock_file)
        && consistent(&text)
    {
        return Ok(text);
    }
    std::fs::create_dir_all(lock_file.parent().expect("resolved dir"))?;
    let guard = std::fs::File::create(lock_file.with_extension("lock"))?;
    guard.lock().context("cannot lock a Python resolution")?;
    if let Ok(text) = std::fs::read_to_string(lock_file) {
        let missing = missing_from(&text, declared);
        if missing.is_empty() {
            return Ok(text);
        }
        say(&format!(
            "the cached resolution {} does not name {}; resolving again",
            lock_file.display(),
            missing.join(", ")
        ));
    }
    let text = resolve(cache, python, declared, say)?;
    let missing = missing_from(&text, declared);
    if !missing.is_empty() {
        bail!(
            "resolving `{}` gave a set without {}; it was not cached",
            declared.join(" "),
            missing.join(", ")
        );
    }
    super::step::write_atomic(lock_file, &text)?;
    Ok(text)
}

/// Packages of `pinned` that the environment at `root` does not hold (its `*.dist-info`).
fn lacking_packages(root: &Path, pinned: &BTreeSet<String>) -> Vec<String> {
    let mut installed = BTreeSet::new();
    let lib = root.join("lib");
    for py in std::fs::read_dir(&lib).into_iter().flatten().flatten() {
        let site = py.path().join("site-packages");
        for e in std::fs::read_dir(&site).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".dist-info")
                && let Some((dist, _version)) = stem.rsplit_once('-')
            {
                installed.insert(normalize(dist));
            }
        }
    }
    pinned
        .iter()
        .filter(|p| !installed.contains(*p))
        .cloned()
        .collect()
}

fn build_env(
    cache: &Cache,
    python: &Interpreter,
    dir: &Path,
    reqs: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let uv_cache = cache.path(&["uv"]);
    std::fs::create_dir_all(&uv_cache)?;
    match uv(cache, say) {
        Ok(uv) => {
            let uv = uv.to_string_lossy().into_owned();
            let step = |what: &str, args: &[&str]| {
                Step::new(what, &[uv.as_str()], dir)
                    .arg_all(args)
                    .env("UV_CACHE_DIR", &uv_cache)
                    .env("UV_PYTHON_DOWNLOADS", "never")
                    .read(python.installation())
                    .write(dir)
                    .write(&uv_cache)
                    .network()
            };
            step(
                "uv venv",
                &["venv", "--seed", "--allow-existing", "--quiet", "--python"],
            )
            .arg(&python.path)
            .arg(dir)
            .run()?;
            step(
                "uv pip sync",
                &["pip", "sync", "--quiet", "--compile-bytecode", "--python"],
            )
            .arg(dir.join("bin/python"))
            .arg(reqs)
            .run()?;
        }
        Err(e) => {
            say(&format!(
                "uv is unavailable ({e:#}); using venv + pip, which is slower"
            ));
            Step::new(
                "python3 -m venv",
                &[&python.path.to_string_lossy(), "-m", "venv"],
                dir,
            )
            .arg(dir)
            .read(python.installation())
            .write(dir)
            .run()?;
            Step::new(
                "pip install",
                &[
                    &dir.join("bin/pip").to_string_lossy(),
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ],
                dir,
            )
            .arg(reqs)
            .read(python.installation())
            .write(dir)
            .network()
            .run()?;
        }
    }
    Ok(())
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
    // This operation's own files: nothing else reads or writes them.
    let base = cache.path(&["python", "resolving"]);
    std::fs::create_dir_all(&base)?;
    let work = tempfile::Builder::new()
        .prefix("resolve-")
        .tempdir_in(&base)?;
    let (req_in, req_out) = (work.path().join("in.txt"), work.path().join("out.txt"));
    std::fs::write(&req_in, &input)?;
    let uv_cache = cache.path(&["uv"]);
    std::fs::create_dir_all(&uv_cache)?;
    Step::new(
        "uv pip compile",
        &[
            &uv.to_string_lossy(),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--no-annotate",
            "--python",
        ],
        work.path(),
    )
    .arg(&python.path)
    .arg(&req_in)
    .arg("-o")
    .arg(&req_out)
    .env("UV_CACHE_DIR", &uv_cache)
    .env("UV_PYTHON_DOWNLOADS", "never")
    .read(python.installation())
    .write(work.path())
    .write(&uv_cache)
    .network()
    .run()
    .with_context(|| {
        format!(
            "cannot resolve the Python dependencies `{}`",
            declared.join(" ")
        )
    })?;
    Ok(std::fs::read_to_string(&req_out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names() {
        assert_eq!(
            requirement_name("FastAPI[all]>=0.1").as_deref(),
            Some("fastapi")
        );
        assert_eq!(
            requirement_name("typing_extensions==4.1").as_deref(),
            Some("typing-extensions")
        );
        assert_eq!(
            requirement_name("pkg @ https://x/y.whl").as_deref(),
            Some("pkg")
        );
        assert_eq!(requirement_name("pywin32; sys_platform == 'win32'"), None);
        assert_eq!(requirement_name("-e ."), None);
        assert_eq!(requirement_name("# comment"), None);
    }

    #[test]
    fn a_resolution_must_name_every_declared_requirement() {
        let resolved = "anyio==4.0\nfastapi==0.115.0\nuvicorn==0.30.0\n";
        assert!(missing_from(resolved, &["fastapi", "uvicorn"]).is_empty());
        assert_eq!(
            missing_from(resolved, &["fastapi", "aiosqlite>=0.19"]),
            vec!["aiosqlite".to_string()]
        );
    }
}
