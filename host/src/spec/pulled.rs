//! Services that come from a registry: a `depends_on` entry whose `registry:` is not `local`
//! and that names no service of the ecosystem. `pactown pull` fetches each into the state dir
//! (`pulled/<name>/README.md`, and `component.wasm` when it was published with one) and records
//! it in `pactown.lock` beside the ecosystem file; loading the ecosystem reads them from there,
//! each checked against the digests the lock holds, and adds them as services. A missing entry
//! or a changed file is an error at the dependency's line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use super::model::{Ecosystem, Service};
pub use super::model::{Locked, Pulled};
use super::service::ServiceSource;
use super::source::SourceCache;

/// The lock file's name, beside the ecosystem file.
pub const LOCK_FILE: &str = "pactown.lock";

/// `pactown.lock`: every pulled service, by the name the ecosystem gives it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Lock {
    /// The format's version (1).
    pub version: u32,
    /// The pulled services.
    pub packages: BTreeMap<String, Locked>,
}

impl Lock {
    /// Read `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Lock>, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("`{}` is not a pactown lock file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        }
    }

    /// The lock's text (stable: sorted keys, a newline at the end).
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("json") + "\n"
    }
}

/// The lock file of an ecosystem file.
pub fn lock_path(ecosystem_file: &Path) -> PathBuf {
    ecosystem_file
        .parent()
        .unwrap_or(Path::new(""))
        .join(LOCK_FILE)
}

/// Where a pulled service lives in the state dir.
pub fn pulled_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("pulled").join(name)
}

/// Is this dependency pulled (from a registry, and not a service of the ecosystem)?
pub fn is_pulled(eco: &Ecosystem, dep: &super::model::Dependency) -> bool {
    dep.registry != "local" && !eco.services.contains_key(&dep.name)
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Add every pulled dependency of `eco` as a service, from the state dir, checked against the
/// lock. `pulling`: one not pulled (or changed) is left out, not an error: `pull` fetches it.
pub fn add_pulled(
    eco: &mut Ecosystem,
    yaml: &Arc<SourceFile>,
    cache: &SourceCache,
    diags: &mut Diagnostics,
    pulling: bool,
) {
    let mut ignored = Diagnostics::default();
    let diags = if pulling { &mut ignored } else { diags };
    let wanted: Vec<(String, std::ops::Range<usize>, String)> = eco
        .services
        .values()
        .flat_map(|s| s.depends_on.iter())
        .filter(|d| is_pulled(eco, d))
        .map(|d| (d.name.clone(), d.name_span.clone(), d.version.clone()))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let lock_file = lock_path(&eco.source.path);
    let lock = match Lock::read(&lock_file) {
        Ok(l) => l.unwrap_or_default(),
        Err(e) => {
            diags.push(Diagnostic::file_error("spec::lock", e));
            return;
        }
    };
    let file = eco.source.path.display().to_string();
    for (name, span, requirement) in wanted {
        if eco.services.contains_key(&name) {
            continue;
        }
        let Some(locked) = lock.packages.get(&name) else {
            diags.push(
                Diagnostic::error(
                    "spec::not-pulled",
                    format!("`{name}` comes from a registry and has not been pulled"),
                    yaml,
                    span,
                )
                .with_help(format!("run `pactown pull {file}` (it writes {LOCK_FILE})")),
            );
            continue;
        };
        let fits = semver::VersionReq::parse(requirement.trim())
            .ok()
            .zip(semver::Version::parse(&locked.version).ok())
            .is_none_or(|(req, v)| req.matches(&v));
        if !fits {
            diags.push(
                Diagnostic::error(
                    "spec::pulled-version",
                    format!(
                        "`{name}` is wanted as `{requirement}`, but {LOCK_FILE} pins {}",
                        locked.version
                    ),
                    yaml,
                    span,
                )
                .with_help(format!("run `pactown pull {file}` to update the lock")),
            );
            continue;
        }
        let dir = pulled_dir(&eco.state_dir, &name);
        let readme = dir.join("README.md");
        let bytes = match std::fs::read(&readme) {
            Ok(b) => b,
            Err(e) => {
                diags.push(
                    Diagnostic::error(
                        "spec::not-pulled",
                        format!(
                            "`{name}` {} is in {LOCK_FILE}, but `{}` cannot be read ({e})",
                            locked.version,
                            readme.display()
                        ),
                        yaml,
                        span,
                    )
                    .with_help(format!("run `pactown pull {file}` again")),
                );
                continue;
            }
        };
        let got = digest_of(&bytes);
        if got != locked.readme {
            diags.push(
                Diagnostic::error(
                    "spec::pulled-changed",
                    format!(
                        "the pulled README of `{name}` has digest {got}, but {LOCK_FILE} pins {}: it was changed after it was pulled",
                        locked.readme
                    ),
                    yaml,
                    span,
                )
                .with_help(format!("run `pactown pull {file}` to fetch it again")),
            );
            continue;
        }
        let mut service = Service::new(&name, readme.clone(), span);
        service.content = ServiceSource::load(&readme, cache, diags);
        service.version = Some(locked.version.clone());
        service.pulled = Some(Pulled {
            locked: locked.clone(),
            component: locked
                .component
                .as_ref()
                .map(|_| dir.join("component.wasm")),
        });
        eco.services.insert(name, service);
    }
}
