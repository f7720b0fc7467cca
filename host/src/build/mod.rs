//! Build: turn a planned service into a sandbox directory that can run. Files are written
//! through a capability handle on the sandbox (an escaping path cannot be written even if the
//! parser's check were missed), templates are filled, and dependencies installed per language,
//! each install a build step in a sandbox of its own ([`step`]): Python (a shared read-only
//! environment keyed by resolved dependencies), Node (a shared read-only `node_modules` keyed
//! by `package.json` and its lock), Go (modules fetched and the program compiled ahead), Rust
//! (a WASI component). Toolchains pactown installs itself on first use ([`tools`]).

pub mod cache;
pub mod confine;
pub mod go;
pub mod grants;
pub mod js_wasm;
pub mod native;
pub mod node;
pub mod python;
pub mod python_wasm;
pub mod rust;
pub mod step;
pub mod toolchain;
pub mod tools;

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;

pub use cache::Cache;
pub use native::{HOME_DIR, Prepared, TMP_DIR, fill_template};
use native::{remove_planted, write_files};

use indexmap::IndexMap;
pub use toolchain::{Artifact, BuildContext, BuildError, Component, Toolchain};

use crate::plan::{Plan, ServicePlan};
use crate::spec::{Ecosystem, Service};

/// Every toolchain pactown has, in the order their additions stack up.
pub static TOOLCHAINS: &[&dyn Toolchain] = &[
    &python::Python,
    &python_wasm::PythonComponent,
    &node::Node,
    &js_wasm::JsComponent,
    &go::Go,
    &rust::Rust,
];

/// The toolchains that apply to a service.
pub fn toolchains_for(service: &Service) -> impl Iterator<Item = &'static dyn Toolchain> + '_ {
    TOOLCHAINS.iter().copied().filter(|t| t.detect(service))
}

/// The component a wasm service already has in the cache, found without building anything
/// (`None` for a native or built-in service, a pulled one, or one not built yet).
pub fn cached_component(service: &Service, cache: &Cache) -> Option<Component> {
    if !crate::spec::language::runtime_kind(service).0.is_wasm() || service.pulled.is_some() {
        return None;
    }
    let toolchain = toolchains_for(service).find(|t| t.makes_component())?;
    Component::cached(cache, &toolchain.cache_key(service))
}

/// What [`build_all`] would return when it has nothing to build: every service a built-in or a
/// component already in the cache (`None` when some service has something to build or to
/// prepare: a native one always has). Found without a thread, in microseconds.
pub fn all_cached(plan: &Plan, eco: &Ecosystem, cache: &Cache) -> Option<IndexMap<String, Built>> {
    plan.services
        .iter()
        .map(|(name, sp)| {
            let built = match sp.sandbox.kind {
                crate::spec::RuntimeKind::Builtin => Built::Builtin,
                _ => Built::Component(cached_component(&eco.services[name.as_str()], cache)?),
            };
            Some((name.clone(), built))
        })
        .collect()
}

/// What `build` made of a service.
#[derive(Debug, Clone)]
pub enum Built {
    /// A native sandbox, with what its toolchains add to it.
    Native(Prepared),
    /// A WASI component.
    Component(Component),
    /// A service pactown serves itself: nothing to build.
    Builtin,
}

/// Build every service of the plan, all at once (each in a thread of its own: installs and
/// compiles of different services overlap). The one build entry point: `pactown build` and `up`
/// both call it. Compiler errors of every service are gathered into one report.
pub fn build_all(
    plan: &Plan,
    eco: &Ecosystem,
    cache: &Cache,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<IndexMap<String, Built>> {
    // Services whose component has the same key (the same sources, whatever they are called)
    // share one build: the first builds it, the others take its result.
    let mut first_with: std::collections::HashMap<String, &str> = Default::default();
    let mut same_as: IndexMap<&str, &str> = IndexMap::new();
    for (name, sp) in &plan.services {
        let service = &eco.services[name.as_str()];
        if sp.sandbox.kind == crate::spec::RuntimeKind::Native || service.pulled.is_some() {
            continue;
        }
        if let Some(t) = toolchains_for(service).find(|t| t.makes_component()) {
            let key = format!("{}:{}", t.name(), t.cache_key(service));
            let first = *first_with.entry(key).or_insert(name.as_str());
            if first != name.as_str() {
                same_as.insert(name.as_str(), first);
            }
        }
    }
    let results: Vec<(String, Result<Built, BuildError>)> = std::thread::scope(|scope| {
        let jobs: Vec<_> = plan
            .services
            .iter()
            .filter(|(name, _)| !same_as.contains_key(name.as_str()))
            .map(|(name, sp)| {
                let service = &eco.services[name.as_str()];
                (
                    name.clone(),
                    scope.spawn(move || build_service(service, sp, cache, say)),
                )
            })
            .collect();
        jobs.into_iter()
            .map(|(name, job)| {
                let r = job.join().unwrap_or_else(|_| {
                    Err(BuildError::Other(anyhow::anyhow!(
                        "the build of `{name}` panicked"
                    )))
                });
                (name, r)
            })
            .collect()
    });
    let mut built = IndexMap::new();
    let mut errors = crate::spec::Diagnostics::default();
    let mut other = None;
    for (name, r) in results {
        match r {
            Ok(b) => {
                for (copy, _) in same_as.iter().filter(|(_, first)| **first == name) {
                    let mut b = b.clone();
                    if let Built::Component(c) = &mut b {
                        c.built = false;
                    }
                    built.insert(copy.to_string(), b);
                }
                built.insert(name, b);
            }
            Err(BuildError::Code(d)) => errors.extend(d),
            Err(BuildError::Other(e)) => {
                other = other.or(Some(e.context(format!("cannot prepare `{name}`"))))
            }
        }
    }
    if errors.has_errors() {
        return Err(errors.into());
    }
    match other {
        Some(e) => Err(e),
        // In the plan's order.
        None => Ok(plan
            .services
            .keys()
            .filter_map(|n| built.shift_remove(n).map(|b| (n.clone(), b)))
            .collect()),
    }
}

/// The component a pulled service was published with, checked against its lock entry: no
/// toolchain runs for it.
fn pulled_component(
    service: &Service,
    wasm: &std::path::Path,
    digest: &str,
) -> Result<Component, BuildError> {
    let bytes = std::fs::read(wasm).with_context(|| {
        format!(
            "cannot read the pulled component of `{}` (`{}`); run `pactown pull` again",
            service.name,
            wasm.display()
        )
    })?;
    let got = crate::spec::pulled::digest_of(&bytes);
    if got != digest {
        return Err(BuildError::Other(anyhow::anyhow!(
            "the pulled component of `{}` has digest {got}, but pactown.lock pins {digest}: it was changed after it was pulled; run `pactown pull` to fetch it again",
            service.name
        )));
    }
    Ok(Component {
        wasm: wasm.to_path_buf(),
        key: got.trim_start_matches("sha256:").to_string(),
        built: false,
    })
}

/// Compile every component of `built` to native code now (cached by content and engine), so
/// that starting it only maps the compiled file.
pub fn precompile(built: &IndexMap<String, Built>, cache: &Cache) -> anyhow::Result<()> {
    let mut engine = None;
    for b in built.values() {
        if let Built::Component(c) = b {
            let engine = match &engine {
                Some(e) => e,
                None => engine.insert(pactown_runtime::wasm::WasmEngine::new(
                    &pactown_runtime::wasm::EngineConfig::default(),
                    cache.path(&["wasm", "compiled"]),
                )?),
            };
            engine.load(&c.wasm, &c.key[..32])?;
        }
    }
    Ok(())
}

/// Build one service: its component, or its native sandbox (files, what its toolchains add,
/// its `HOME` and `TMPDIR`, owned by its user). Blocking.
pub fn build_service(
    service: &Service,
    plan: &ServicePlan,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> Result<Built, BuildError> {
    let dir = &std::path::absolute(&plan.sandbox.dir)?;
    let ctx = BuildContext {
        cache,
        sandbox: dir,
        namespaces: plan.sandbox.layer_on(crate::plan::LayerName::Namespaces),
        say,
    };
    if plan.sandbox.kind == crate::spec::RuntimeKind::Builtin {
        return Ok(Built::Builtin);
    }
    if plan.sandbox.kind != crate::spec::RuntimeKind::Native {
        if let Some(pulled) = &service.pulled
            && let (Some(wasm), Some(digest)) = (&pulled.component, &pulled.locked.component)
        {
            return pulled_component(service, wasm, digest).map(Built::Component);
        }
        let Some(toolchain) = toolchains_for(service).find(|t| t.makes_component()) else {
            return Err(BuildError::Other(anyhow::anyhow!(
                "`{}` runs as {}, but no toolchain here makes a component of it",
                service.name,
                plan.sandbox.kind.as_str()
            )));
        };
        return match toolchain.build(service, &ctx)? {
            Artifact::Component(c) => Ok(Built::Component(c)),
            Artifact::Native(_) => unreachable!("a component toolchain makes components"),
        };
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the sandbox `{}`", dir.display()))?;
    let planted = remove_planted(dir);
    if planted > 0 {
        say(&format!(
            "removed {planted} setuid, setgid or device file(s) a previous run left in the sandbox of `{}`",
            service.name
        ));
    }
    write_files(service, plan, dir)?;
    let mut prepared = Prepared::default();
    for toolchain in toolchains_for(service).filter(|t| !t.makes_component()) {
        if let Artifact::Native(p) = toolchain.build(service, &ctx)? {
            prepared.path_prefix.extend(p.path_prefix);
            prepared.env.extend(p.env);
            prepared.read_only.extend(p.read_only);
            prepared.overlays.extend(p.overlays);
        }
    }
    if crate::spec::language::language(service) == crate::spec::language::Language::Python {
        prepared.env.push(("PYTHONUNBUFFERED".into(), "1".into()));
        prepared
            .env
            .push(("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()));
    }
    let root = Dir::open_ambient_dir(dir, ambient_authority())?;
    for sub in [HOME_DIR, TMP_DIR] {
        root.create_dir_all(sub)?;
    }
    // The sandbox is its user's: nothing else in it can be changed by anyone else's code.
    if let Some((uid, gid)) = plan
        .sandbox
        .user
        .filter(|_| plan.sandbox.layer_on(crate::plan::LayerName::User))
    {
        step::chown_tree(dir, uid, gid);
    }
    Ok(Built::Native(prepared))
}
