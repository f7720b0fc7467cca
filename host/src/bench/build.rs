//! (e) The build of a target, timed as a user meets it: `pactown build` with its toolchains
//! installed but nothing of the target built (cold: sources → component → native code), then
//! again (warm: nothing to do); and how big the measured service's component is, as built and
//! compiled to native code.
//!
//! The cold build runs in a cache of its own holding only what pactown installs once for every
//! target (its tools, their download caches, the Python interpreters, cargo's registry), as
//! links to this cache's, so no earlier build of the same sources counts, and no install does.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use super::{Prepared, ms};
use crate::build::cache::Cache;

/// What building the target costs.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// `pactown build` with the tools installed and nothing of the target built, ms.
    pub cold_ms: f64,
    /// `pactown build` once more: nothing to do, ms.
    pub warm_ms: f64,
    /// The measured service's component, bytes (none for a native service).
    pub component_bytes: Option<u64>,
    /// That component compiled to native code (the `.cwasm` pactown loads with mmap), bytes.
    pub compiled_bytes: Option<u64>,
}

/// What every target shares in a cache: installed once, never a target's build.
const SHARED: &[&[&str]] = &[
    &["tools"],
    &["npm-cache"],
    &["uv"],
    &["python", "interpreters"],
    &["rust", "cargo-home"],
];

/// Build `target` cold, then warm, in a cache under `work` that shares `cache`'s tools.
pub fn measure(
    target: &Prepared,
    cache: &Cache,
    work: &Path,
    say: &dyn Fn(&str),
) -> anyhow::Result<BuildReport> {
    let fresh = Cache::at(work.join("build-cache"));
    if fresh.root().exists() {
        std::fs::remove_dir_all(fresh.root())?;
    }
    for parts in SHARED {
        let (from, to) = (cache.path(parts), fresh.path(parts));
        if from.is_dir() {
            std::fs::create_dir_all(to.parent().expect("a parent"))?;
            std::os::unix::fs::symlink(&from, &to)
                .with_context(|| format!("cannot link `{}`", to.display()))?;
        }
    }
    let build = || -> anyhow::Result<(f64, serde_json::Value)> {
        let began = Instant::now();
        let out = Command::new(std::env::current_exe()?)
            .args(["--color", "never", "build", "--json"])
            .arg(&target.file)
            .env("PACTOWN_CACHE_DIR", fresh.root())
            .output()
            .context("cannot run `pactown build`")?;
        let took = ms(began.elapsed());
        if !out.status.success() {
            bail!(
                "`pactown build` failed:\n{}",
                crate::build::step::tail(&String::from_utf8_lossy(&out.stderr), 15)
            );
        }
        Ok((took, serde_json::from_slice(&out.stdout)?))
    };
    let (cold_ms, built) = build()?;
    say(&format!("build, cold: {:.1} s", cold_ms / 1000.0));
    let (warm_ms, _) = build()?;
    say(&format!("build, warm: {warm_ms:.0} ms"));
    let service = &built[target.service.as_str()];
    let size = |p: &Path| std::fs::metadata(p).ok().map(|m| m.len());
    let component_bytes = service["wasm"].as_str().and_then(|w| size(Path::new(w)));
    let compiled_bytes = service["key"].as_str().and_then(|key| {
        let prefix = format!("{}-", key.get(..32)?);
        std::fs::read_dir(fresh.path(&["wasm", "compiled"]))
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .and_then(|e| size(&e.path()))
    });
    let _ = std::fs::remove_dir_all(fresh.root());
    Ok(BuildReport {
        cold_ms,
        warm_ms,
        component_bytes,
        compiled_bytes,
    })
}
