//! Node services: their npm packages installed at build time, in a build sandbox, into a cache
//! entry keyed by `package.json` and its lock file, and shared read-only between services the
//! way Python environments are.
//!
//! The install is split: `npm install --ignore-scripts` fetches with the network; then the
//! packages' install scripts run with `npm rebuild`, offline. A service sees the entry's
//! `node_modules` as an overlay (the shared copy below, its own writes above), so a run block
//! that says `npm install && npm start`, as the reference's examples do, finds everything in
//! place and installs nothing; without namespaces it gets a private copy instead.

use std::path::{Path, PathBuf};

use anyhow::Context;

use pactown_runtime::native::sandbox::Overlay;

use super::cache::{Cache, digest, make_read_only};
use super::native::Prepared;
use super::step::{Step, take_back};
use super::toolchain::{Artifact, BuildContext, BuildError, Toolchain};
use crate::spec::Service;
use crate::spec::service::Installer;

/// The Node toolchain: `package.json` (or npm dependencies) installed ahead, shared read-only.
pub struct Node;

impl Toolchain for Node {
    fn name(&self) -> &'static str {
        "node"
    }

    fn detect(&self, service: &Service) -> bool {
        // A Worker built to a component needs no native sandbox (see `js_wasm`).
        is_node(service) && !crate::spec::language::runtime_kind(service).0.is_wasm()
    }

    fn reason(&self, service: &Service) -> String {
        match service.content.file("package.json") {
            Some(f) => format!("`package.json` ({})", f.loc),
            None => "`markpact:deps node`".into(),
        }
    }

    fn cache_key(&self, service: &Service) -> String {
        let package = package_json(service);
        let lock = service
            .content
            .file("package-lock.json")
            .map(|f| f.content.clone());
        key(service, &package, lock.as_deref())
    }

    fn build(&self, service: &Service, ctx: &BuildContext<'_>) -> Result<Artifact, BuildError> {
        let modules = ensure_modules(service, ctx.cache, ctx.say)
            .with_context(|| format!("cannot install the npm packages of `{}`", service.name))?;
        let dir = ctx.sandbox;
        let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
        let mut prepared = Prepared {
            path_prefix: vec![modules.bin.clone()],
            read_only: vec![super::confine::installation(&modules.bin)],
            // Its own `npm install` finds everything in place, and fails at once rather than
            // wait on a network it does not have.
            env: [
                ("npm_config_offline", "true"),
                ("npm_config_update_notifier", "false"),
                ("npm_config_fund", "false"),
                ("npm_config_audit", "false"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
            overlays: Vec::new(),
        };
        if service.content.file("package.json").is_none() {
            super::native::write_generated(&root, "package.json", &package_json(service))?;
        }
        if service.content.file("package-lock.json").is_none()
            && let Ok(lock) = std::fs::read_to_string(modules.entry.join("package-lock.json"))
        {
            super::native::write_generated(&root, "package-lock.json", &lock)?;
        }
        if ctx.namespaces {
            let (upper, work) = overlay_dirs(dir, &modules.key);
            for d in [&upper, &work, &dir.join("node_modules")] {
                std::fs::create_dir_all(d)?;
            }
            prepared.overlays.push(Overlay {
                lower: modules.modules(),
                upper,
                work,
                target: dir.join("node_modules"),
            });
        } else {
            copy_modules(&modules, dir)?;
        }
        Ok(Artifact::Native(prepared))
    }
}

/// The key of an install: the Node it runs with, the manifest, its lock, the local packages.
fn key(service: &Service, package: &str, lock: Option<&str>) -> String {
    let node = super::tools::which("node")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| super::tools::NODE_VERSION.to_string());
    digest(
        [
            b"node-modules-v1".as_slice(),
            node.as_bytes(),
            package.as_bytes(),
            lock.unwrap_or("").as_bytes(),
        ]
        .into_iter()
        .chain(
            local_package_files(service, package)
                .iter()
                .flat_map(|f| [f.path.as_str().as_bytes(), f.content.as_bytes()]),
        ),
    )
}

/// A service's npm packages, installed.
#[derive(Debug, Clone)]
pub struct NodeModules {
    /// The entry (`package.json`, `package-lock.json`, `node_modules`).
    pub entry: PathBuf,
    /// Its key, to tell installs apart.
    pub key: String,
    /// The `bin` directory with `node` and `npm`.
    pub bin: PathBuf,
}

impl NodeModules {
    /// The shared `node_modules`.
    pub fn modules(&self) -> PathBuf {
        self.entry.join("node_modules")
    }
}

/// Is this a Node service (a `package.json` block, or npm dependencies)?
pub fn is_node(service: &Service) -> bool {
    service.content.file("package.json").is_some()
        || service.content.deps.contains_key(&Installer::Npm)
}

/// The service's `package.json`: its own block, or one made from its `markpact:deps node`.
pub fn package_json(service: &Service) -> String {
    if let Some(own) = service.content.file("package.json") {
        return own.content.clone();
    }
    let deps: serde_json::Map<String, serde_json::Value> = service
        .content
        .deps
        .get(&Installer::Npm)
        .into_iter()
        .flatten()
        .map(|d| {
            let (name, range) = crate::spec::language::split_npm_spec(&d.spec);
            (
                name.to_string(),
                serde_json::Value::from(range.unwrap_or("*")),
            )
        })
        .collect();
    let pkg = serde_json::json!({"name": service.name, "private": true, "dependencies": deps});
    serde_json::to_string_pretty(&pkg).expect("json") + "\n"
}

/// Local packages the manifest names (`"dep": "file:./vendor/dep"`): the service's file blocks
/// below those folders are part of the install.
fn local_package_files<'a>(
    service: &'a Service,
    package: &str,
) -> Vec<&'a crate::spec::service::FileBlock> {
    let Ok(manifest) = serde_json::from_str::<serde_json::Value>(package) else {
        return Vec::new();
    };
    let dirs: Vec<String> = ["dependencies", "devDependencies", "optionalDependencies"]
        .iter()
        .filter_map(|k| manifest[k].as_object())
        .flat_map(|deps| deps.values())
        .filter_map(|v| v.as_str()?.strip_prefix("file:"))
        .map(|d| d.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect();
    let mut files: Vec<_> = service
        .content
        .files
        .iter()
        .filter(|f| {
            dirs.iter()
                .any(|d| f.path.as_str().starts_with(&format!("{d}/")))
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Install (or find) the packages of a Node service. Blocking.
pub fn ensure_modules(
    service: &Service,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> anyhow::Result<NodeModules> {
    let bin = super::tools::node(cache, say)?;
    let package = package_json(service);
    let lock = service
        .content
        .file("package-lock.json")
        .map(|f| f.content.clone());
    let local = local_package_files(service, &package);
    let key = key(service, &package, lock.as_deref());
    let entry = cache.path(&["node", &key[..32]]);
    let modules = NodeModules {
        entry: entry.clone(),
        key: key[..32].to_string(),
        bin: bin.clone(),
    };
    if Cache::is_complete(&entry) {
        return Ok(modules);
    }
    let npm_cache = cache.path(&["npm"]);
    std::fs::create_dir_all(&npm_cache)?;
    Cache::build_entry(&entry, |dir| {
        say(&format!(
            "installing npm packages for `{}` into {}",
            service.name,
            dir.display()
        ));
        std::fs::write(dir.join("package.json"), &package)?;
        if let Some(l) = &lock {
            std::fs::write(dir.join("package-lock.json"), l)?;
        }
        let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
        for f in &local {
            if let Some(p) = f.path.as_path().parent() {
                root.create_dir_all(p)?;
            }
            root.write(f.path.as_str(), &f.content)?;
        }
        let npm = bin.join("npm").to_string_lossy().into_owned();
        let path = std::env::join_paths(
            std::iter::once(bin.clone()).chain(
                std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )?;
        let quiet = [
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--update-notifier=false",
        ];
        let install = if lock.is_some() { "ci" } else { "install" };
        Step::new(
            format!("npm {install} for `{}`", service.name),
            &[npm.as_str(), install, "--ignore-scripts"],
            dir,
        )
        .arg_all(&quiet)
        .arg("--cache")
        .arg(&npm_cache)
        .env("PATH", &path)
        .read(&bin)
        .write(dir)
        .write(&npm_cache)
        .network()
        .run()?;
        // The packages' own install scripts, with no network and the download cache out of reach.
        Step::new(
            format!(
                "npm rebuild for `{}` (install scripts, offline)",
                service.name
            ),
            &[npm.as_str(), "rebuild", "--offline"],
            dir,
        )
        .arg_all(&quiet)
        .env("PATH", &path)
        .read(&bin)
        .write(dir)
        .run()?;
        take_back(dir);
        Ok(())
    })?;
    make_read_only(&entry);
    Ok(modules)
}

/// Where a service's own layer over the shared `node_modules` lives in its sandbox dir.
pub fn overlay_dirs(sandbox: &Path, key: &str) -> (PathBuf, PathBuf) {
    let base = sandbox
        .join(".pactown")
        .join("node_modules")
        .join(&key[..12]);
    (base.join("upper"), base.join("work"))
}

/// Without namespaces: a private copy of the shared `node_modules` in the sandbox dir (made
/// once per install).
pub fn copy_modules(modules: &NodeModules, sandbox: &Path) -> anyhow::Result<()> {
    let target = sandbox.join("node_modules");
    let marker = target.join(format!(".pactown-{}", &modules.key[..12]));
    if marker.is_file() {
        return Ok(());
    }
    if std::fs::symlink_metadata(&target).is_ok() {
        super::cache::make_writable(&target);
        std::fs::remove_dir_all(&target)
            .or_else(|_| std::fs::remove_file(&target))
            .with_context(|| format!("cannot replace `{}`", target.display()))?;
    }
    copy_tree(&modules.modules(), &target)?;
    std::fs::write(marker, b"")?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
            let mode = std::fs::metadata(&src)?.permissions().mode() | 0o200;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}
