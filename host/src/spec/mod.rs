//! The spec layer: what the user wrote, parsed exactly. An ecosystem file and the READMEs it
//! names become an [`Ecosystem`] whose services carry their README's content, or a list of
//! [`Diagnostic`]s at file:line:col. Nothing here starts, writes or binds anything.

pub mod checks;
pub mod decode;
pub mod diagnostic;
pub mod ecosystem;
pub mod fields;
pub mod graph;
pub mod hosts;
pub mod interpolate;
pub mod language;
pub mod markpact;
pub mod model;
pub mod pulled;
pub mod service;
pub mod source;
pub mod yaml;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics, Severity, SourceFile};
pub use ecosystem::{Dependency, Ecosystem, PortSpec, Service};
pub use service::{RuntimeKind, ServiceSource};
use source::{SourceCache, normalize};

/// A loaded ecosystem and the warnings found on the way.
pub struct Loaded {
    /// The ecosystem, every README read.
    pub ecosystem: Ecosystem,
    /// Warnings (no errors: those make [`load`] fail).
    pub warnings: Diagnostics,
}

/// Load and check an ecosystem file and every README it names. `env` looks up `${VAR}`.
pub fn load(path: &Path, env: decode::EnvLookup<'_>) -> Result<Loaded, Diagnostics> {
    load_as(path, env, false)
}

/// Load an ecosystem to pull its registry dependencies: those not pulled yet (or changed) are
/// left out instead of being errors.
pub fn load_for_pull(path: &Path, env: decode::EnvLookup<'_>) -> Result<Loaded, Diagnostics> {
    load_as(path, env, true)
}

fn load_as(path: &Path, env: decode::EnvLookup<'_>, pulling: bool) -> Result<Loaded, Diagnostics> {
    let cache = SourceCache::default();
    let source = match cache.load(path) {
        Ok(s) => s,
        Err(e) => {
            let mut d = Diagnostic::file_error(
                "spec::unreadable",
                format!("cannot read ecosystem file `{}`: {e}", path.display()),
            );
            if e.kind() == std::io::ErrorKind::NotFound {
                d = d
                    .with_help("check the path, or create a starter ecosystem with `pactown init`");
            }
            return Err(d.into());
        }
    };
    load_source(source, &cache, env, pulling)
}

/// Check an ecosystem file's text as if it were at `path` (used by `generate` to prove its
/// output valid before writing it).
pub fn load_str(
    path: &Path,
    text: String,
    env: decode::EnvLookup<'_>,
) -> Result<Loaded, Diagnostics> {
    load_source(
        SourceFile::new(normalize(path), text),
        &SourceCache::default(),
        env,
        false,
    )
}

fn load_source(
    source: std::sync::Arc<SourceFile>,
    cache: &SourceCache,
    env: decode::EnvLookup<'_>,
    pulling: bool,
) -> Result<Loaded, Diagnostics> {
    let mut diags = Diagnostics::default();
    let Some(root) = yaml::parse(&source, &mut diags) else {
        if !diags.has_errors() {
            diags.push(
                Diagnostic::error("yaml::empty", "the ecosystem file is empty", &source, 0..0)
                    .with_help(
                        "start with `name:` and a `services:` mapping, or run `pactown init`",
                    ),
            );
        }
        return Err(diags);
    };
    let Some(mut eco) = ecosystem::decode(&source, &root, env, &mut diags) else {
        return Err(diags);
    };
    for s in eco.services.values_mut() {
        // A built-in service is pactown's own: it has no README.
        if s.builtin.is_none() {
            read_readme(s, &source, cache, &mut diags);
        }
    }
    pulled::add_pulled(&mut eco, &source, cache, &mut diags, pulling);
    ecosystem::check(&eco, &mut diags);
    if !diags.has_errors()
        && let Err(cycle) = graph::DependencyGraph::from_ecosystem(&eco)
    {
        diags.push(cycle);
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(Loaded {
            ecosystem: eco,
            warnings: diags,
        })
    }
}

fn read_readme(
    s: &mut Service,
    yaml: &std::sync::Arc<SourceFile>,
    cache: &SourceCache,
    diags: &mut Diagnostics,
) {
    match std::fs::metadata(&s.readme) {
        Ok(m) if m.is_file() => s.content = ServiceSource::load(&s.readme, cache, diags),
        found => {
            let what = if found.is_ok() {
                "is not a file"
            } else {
                "does not exist"
            };
            let (span, help) = match &s.readme_span {
                Some(span) => (
                    span.clone(),
                    "the path is relative to the ecosystem file".to_string(),
                ),
                None => (
                    s.name_span.clone(),
                    format!(
                        "without `readme:` a service's README is `{}/README.md`; add `readme: path/to/README.md`",
                        s.name
                    ),
                ),
            };
            diags.push(
                Diagnostic::error(
                    "spec::missing-readme",
                    format!(
                        "README `{}` of service `{}` {what}",
                        s.readme.display(),
                        s.name
                    ),
                    yaml,
                    span,
                )
                .with_help(help),
            );
        }
    }
}

/// A single README as a one-service ecosystem (`pactown run README.md`): the service is named
/// after the README's directory, listens on `port`, and has no dependencies.
pub fn load_readme(readme: &Path, port: Option<u16>) -> Result<Loaded, Diagnostics> {
    let cache = SourceCache::default();
    let mut diags = Diagnostics::default();
    let readme = normalize(readme);
    if !readme.is_file() {
        diags.push(
            Diagnostic::file_error(
                "spec::missing-readme",
                format!("README `{}` does not exist", readme.display()),
            )
            .with_help(
                "give the path of a markpact README, e.g. `pactown run examples/hello/README.md`",
            ),
        );
        return Err(diags);
    }
    let content = ServiceSource::load(&readme, &cache, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    let abs = std::fs::canonicalize(&readme).unwrap_or_else(|_| readme.clone());
    let name = abs
        .parent()
        .and_then(Path::file_name)
        .map(|n| sanitize_name(&n.to_string_lossy()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "service".to_string());
    let dir = readme.parent().map(Path::to_path_buf).unwrap_or_default();
    let source = SourceFile::new(readme.clone(), String::new());
    let mut service = Service::new(&name, readme.clone(), 0..0);
    service.port = port.map_or(PortSpec::Auto, PortSpec::Fixed);
    service.content = content;
    let mut services = indexmap::IndexMap::new();
    services.insert(name.clone(), service);
    let state_dir = normalize(&dir.join(".pactown").join(format!("run-{name}")));
    Ok(Loaded {
        ecosystem: Ecosystem {
            source,
            dir: dir.clone(),
            name,
            version: "0.1.0".into(),
            description: String::new(),
            base_port: ecosystem::DEFAULT_BASE_PORT,
            sandbox_root: normalize(&dir.join(".pactown-sandboxes")),
            registry: Default::default(),
            network: "pactown-net".into(),
            services,
            state_dir,
            profiles: ecosystem::builtin_profiles(),
            elsewhere: Default::default(),
        },
        warnings: diags,
    })
}

/// Make a directory name usable as a service name.
pub fn sanitize_name(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(63)
        .collect()
}
