//! The registry: a server keeping published services immutable, verified and authorised
//! ([`server`], [`store`]), in the reference's HTTP API, and the client side of `publish` and
//! `pull` ([`client`], here).
//!
//! `publish` sends each local service: its README bundle (includes resolved), its version
//! (the service's `version:`, else the ecosystem's, as the reference does) and, for a
//! component, its portable `.wasm` as a blob by digest first. `pull` fetches every pulled
//! dependency (see [`crate::spec::pulled`]), checks every digest, writes it into the state dir
//! and records it in `pactown.lock`; `--locked` fetches exactly what the lock says and fails
//! if anything would change.

pub mod client;
pub mod server;
pub mod store;

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Serialize;

use crate::build::Built;
use crate::spec::pulled::{Lock, Locked, digest_of, is_pulled, lock_path, pulled_dir};
use crate::spec::{Ecosystem, Service};
use client::{Client, Published, Registry};

/// Where the registry is: `--registry`, else `PACTOWN_REGISTRY`, else a URL in the
/// dependency's `registry:`, else the ecosystem's `registry:` block; the token from `--token`,
/// else `PACTOWN_REGISTRY_TOKEN`, else the ecosystem's `registry.auth_token`.
pub fn registry_for(
    eco: &Ecosystem,
    dependency_registry: Option<&str>,
    flag_url: Option<&str>,
    flag_token: Option<&str>,
) -> Registry {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let url = flag_url
        .map(str::to_string)
        .or_else(|| env("PACTOWN_REGISTRY"))
        .or_else(|| {
            dependency_registry
                .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| eco.registry.url.clone());
    let (token, token_source) = match (
        flag_token,
        env("PACTOWN_REGISTRY_TOKEN"),
        &eco.registry.auth_token,
    ) {
        (Some(t), _, _) => (Some(t.to_string()), "`--token`".to_string()),
        (None, Some(t), _) => (Some(t), "PACTOWN_REGISTRY_TOKEN".to_string()),
        (None, None, Some(t)) => (
            Some(t.clone()),
            format!("`registry.auth_token` of {}", eco.source.path.display()),
        ),
        _ => (None, "nowhere (no token was given)".to_string()),
    };
    Registry {
        url: url.trim_end_matches('/').to_string(),
        token,
        token_source,
    }
}

/// One service's publish.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedService {
    /// The service.
    pub name: String,
    /// `namespace/name`.
    pub artifact: String,
    /// The version.
    pub version: String,
    /// SHA-256 of its README bundle.
    pub checksum: String,
    /// `sha256:<hex>` of its component, when it has one.
    pub component: Option<String>,
    /// `published`, or `unchanged` (that version was there with the same content).
    pub status: &'static str,
}

/// Publish every local service of `eco`.
pub fn publish(
    eco: &Ecosystem,
    built: &indexmap::IndexMap<String, Built>,
    client: &Client,
    namespace: &str,
    say: &dyn Fn(&str),
) -> anyhow::Result<Vec<PublishedService>> {
    store::check_name("namespace", namespace).map_err(anyhow::Error::msg)?;
    client.health()?;
    let mut out = Vec::new();
    for s in eco.services.values().filter(|s| s.pulled.is_none()) {
        store::check_name("service name", &s.name).map_err(anyhow::Error::msg)?;
        let version = s.version.clone().unwrap_or_else(|| eco.version.clone());
        let readme = crate::spec::markpact::bundle(&s.readme)
            .with_context(|| format!("cannot read the README of `{}`", s.name))?;
        let component = match built.get(&s.name) {
            Some(Built::Component(c)) => {
                let bytes = std::fs::read(&c.wasm)
                    .with_context(|| format!("cannot read the component of `{}`", s.name))?;
                say(&format!(
                    "uploading the component of `{}` ({:.1} MB)",
                    s.name,
                    bytes.len() as f64 / 1e6
                ));
                let what = format!("the component of `{}`", s.name);
                match client.put_blob(Bytes::from(bytes), &what)? {
                    Some(hex) => Some(format!("sha256:{hex}")),
                    None => {
                        say(&format!(
                            "{} takes no blobs (the Python pactown's registry does not): `{}` is published without its component; who pulls it builds it from its README",
                            client.url(),
                            s.name
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        let language = crate::spec::language::language(s);
        let (kind, _) = crate::spec::language::runtime_kind(s);
        let mut metadata = serde_json::json!({
            "pactown": {"language": language.as_str(), "kind": kind.as_str(), "ecosystem": eco.name},
        });
        if let Some(c) = &component {
            metadata["pactown"]["component"] = serde_json::json!({"digest": c});
        }
        let body = serde_json::json!({
            "name": s.name,
            "version": version,
            "readme_content": readme,
            "namespace": namespace,
            "description": description(s),
            "tags": [language.as_str(), kind.as_str()],
            "metadata": metadata,
        });
        let ours = store::sha256(readme.as_bytes());
        let status = match client
            .publish(&body)
            .with_context(|| format!("cannot publish `{}` {version}", s.name))?
        {
            Published::New { .. } => "published",
            Published::Exists { checksum } if checksum == ours => "unchanged",
            Published::Exists { checksum } => bail!(
                "`{namespace}/{}` {version} is already published with other content (checksum {checksum}, this one {ours}); versions never change: raise `version:` of `{}` (or of the ecosystem)",
                s.name,
                s.name
            ),
        };
        out.push(PublishedService {
            name: s.name.clone(),
            artifact: format!("{namespace}/{}", s.name),
            version,
            checksum: ours,
            component,
            status,
        });
    }
    Ok(out)
}

/// A service's description: its README's first heading.
fn description(s: &Service) -> String {
    std::fs::read_to_string(&s.readme)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("# ").map(|h| h.trim().to_string()))
        })
        .unwrap_or_default()
}

/// What `pull` did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The lock file.
    pub lock: std::path::PathBuf,
    /// Whether the lock changed.
    pub changed: bool,
    /// The pulled services.
    pub packages: Vec<(String, Locked)>,
}

/// Pull every pulled dependency of `eco` (as loaded from `file`). `locked`: fetch exactly
/// what `pactown.lock` pins, and fail (writing nothing) if the lock would change.
pub fn pull(
    file: &Path,
    eco: &Ecosystem,
    flag_url: Option<&str>,
    flag_token: Option<&str>,
    namespace: Option<&str>,
    locked: bool,
    say: &dyn Fn(&str),
) -> anyhow::Result<PullReport> {
    let lock_file = lock_path(file);
    let old = Lock::read(&lock_file)
        .map_err(anyhow::Error::msg)?
        .unwrap_or_default();
    let namespace = namespace.unwrap_or(&eco.registry.namespace);
    let mut wanted: Vec<&crate::spec::Dependency> = Vec::new();
    for d in eco.services.values().flat_map(|s| s.depends_on.iter()) {
        if is_pulled_or_was(eco, d) && !wanted.iter().any(|w| w.name == d.name) {
            wanted.push(d);
        }
    }
    let mut new = Lock {
        version: 1,
        packages: Default::default(),
    };
    let mut fetched = Vec::new();
    for dep in &wanted {
        let registry = registry_for(eco, Some(&dep.registry), flag_url, flag_token);
        let client = Client::new(registry.clone())?;
        let previous = old.packages.get(&dep.name);
        let ask = match (locked, previous) {
            (true, Some(p)) if p.requirement == dep.version => p.version.clone(),
            (true, Some(p)) => bail!(
                "`{}` wants `{}` but {} pinned it for `{}`; run `pactown pull` without `--locked` to update the lock",
                dep.name,
                dep.version,
                lock_file.display(),
                p.requirement
            ),
            (true, None) => bail!(
                "`{}` is not in {}; run `pactown pull` without `--locked` to add it",
                dep.name,
                lock_file.display()
            ),
            (false, _) => dep.version.clone(),
        };
        let Some(v) = client.resolve(namespace, &dep.name, &ask)? else {
            bail!(
                "the registry at {} has no `{namespace}/{}` matching `{ask}`; publish it there (`pactown publish`) or fix the requirement",
                client.url(),
                dep.name
            );
        };
        let readme_digest = digest_of(v.readme_content.as_bytes());
        if !v.checksum.is_empty() && format!("sha256:{}", v.checksum) != readme_digest {
            bail!(
                "the README of `{}` {} from {} does not match its published checksum {}: refused",
                dep.name,
                v.version,
                client.url(),
                v.checksum
            );
        }
        let component = v
            .metadata
            .pointer("/pactown/component/digest")
            .and_then(|d| d.as_str())
            .map(str::to_string);
        let entry = Locked {
            namespace: namespace.to_string(),
            name: dep.name.clone(),
            version: v.version.clone(),
            requirement: dep.version.clone(),
            registry: registry.url.clone(),
            readme: readme_digest,
            component: component.clone(),
        };
        if locked && previous != Some(&entry) {
            bail!(
                "`{}` {} from {} is not what {} pins (digests or registry differ); refused",
                dep.name,
                v.version,
                client.url(),
                lock_file.display()
            );
        }
        let wasm = match &component {
            Some(d) => {
                let hex = d.trim_start_matches("sha256:");
                say(&format!(
                    "downloading the component of `{}` {}",
                    dep.name, v.version
                ));
                Some(client.get_blob(hex, &format!("the component of `{}`", dep.name))?)
            }
            None => None,
        };
        fetched.push((dep.name.clone(), v.readme_content, wasm));
        new.packages.insert(dep.name.clone(), entry);
    }
    let changed = new != old;
    if locked && changed {
        bail!(
            "{} would change; run `pactown pull` without `--locked`",
            lock_file.display()
        );
    }
    for (name, readme, wasm) in &fetched {
        write_pulled(&pulled_dir(&eco.state_dir, name), readme, wasm.as_deref())?;
    }
    if changed || !lock_file.exists() {
        crate::build::step::write_atomic(&lock_file, &new.to_text())?;
    }
    Ok(PullReport {
        lock: lock_file,
        changed,
        packages: new.packages.into_iter().collect(),
    })
}

/// A pulled dependency, or one an earlier pull added (and so no longer a local service).
fn is_pulled_or_was(eco: &Ecosystem, d: &crate::spec::Dependency) -> bool {
    is_pulled(eco, d)
        || eco
            .services
            .get(&d.name)
            .is_some_and(|s| s.pulled.is_some())
}

/// Write a pulled service into its folder, replacing what was there in one rename.
fn write_pulled(dir: &Path, readme: &str, wasm: Option<&[u8]>) -> anyhow::Result<()> {
    let parent = dir.parent().context("a pulled folder has a parent")?;
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(parent)?;
    std::fs::write(tmp.path().join("README.md"), readme)?;
    if let Some(w) = wasm {
        std::fs::write(tmp.path().join("component.wasm"), w)?;
    }
    let staged = tmp.keep();
    if dir.exists() {
        let old = parent.join(format!(".old-{}", std::process::id()));
        std::fs::rename(dir, &old)?;
        std::fs::rename(&staged, dir)?;
        let _ = std::fs::remove_dir_all(old);
    } else {
        std::fs::rename(&staged, dir)?;
    }
    Ok(())
}
