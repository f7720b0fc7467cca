//! The toolchain interface: each language pactown builds is one module implementing
//! [`Toolchain`] — whether it applies to a service, why, the cache key of what it makes, and the
//! build itself, giving an [`Artifact`]. A native toolchain adds to a native service's sandbox
//! (an environment, packages, a toolchain on `PATH`); a component toolchain makes a WASI
//! component, a language-neutral artifact the orchestrator loads the same way whatever it was
//! written in. A new language is a new module and one line in [`super::TOOLCHAINS`].

use std::path::PathBuf;

use super::cache::Cache;
use super::native::Prepared;
use crate::spec::markpact::Loc;
use crate::spec::{Diagnostics, Service};

/// What a toolchain's build gives.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// Additions to a native service's sandbox.
    Native(Prepared),
    /// A WASI component.
    Component(Component),
}

/// A built WASI component, whatever it was written in.
#[derive(Debug, Clone)]
pub struct Component {
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// Its content key (the same sources always have the same key).
    pub key: String,
    /// Whether this build ran the toolchain (false: found in the cache).
    pub built: bool,
}

impl Component {
    /// Where the component of content key `key` is kept in the cache.
    pub fn path(cache: &Cache, key: &str) -> PathBuf {
        cache.path(&["wasm", "artifacts", &format!("{}.wasm", &key[..32])])
    }

    /// The component of `key`, if the cache has it.
    pub fn cached(cache: &Cache, key: &str) -> Option<Self> {
        let wasm = Self::path(cache, key);
        wasm.is_file().then(|| Self {
            wasm,
            key: key.to_string(),
            built: false,
        })
    }
}

/// Why a build failed: the user's code (diagnostics at README lines), or something else.
#[derive(Debug)]
pub enum BuildError {
    /// Compiler errors, mapped to the README.
    Code(Diagnostics),
    /// Anything else.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> Self {
        Self::Other(e.into())
    }
}

impl From<BuildError> for anyhow::Error {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Code(d) => d.into(),
            BuildError::Other(e) => e,
        }
    }
}

/// Where a build happens and how it reports.
pub struct BuildContext<'a> {
    /// pactown's cache.
    pub cache: &'a Cache,
    /// The service's sandbox dir (native services).
    pub sandbox: &'a std::path::Path,
    /// Whether the service's sandbox has its own mount namespace (overlays are possible).
    pub namespaces: bool,
    /// Tells the user about first-use installs and long builds.
    pub say: &'a dyn Fn(&str),
}

/// One language's toolchain.
pub trait Toolchain: Sync {
    /// Its name (`python`, `node`, `go`, `rust`).
    fn name(&self) -> &'static str;
    /// Does it build something for this service?
    fn detect(&self, service: &Service) -> bool;
    /// Why it applies (the block or file that made it), for people.
    fn reason(&self, service: &Service) -> String;
    /// Whether it makes the service's WASI component (else it adds to a native sandbox).
    fn makes_component(&self) -> bool {
        false
    }
    /// The key its artifact is cached under, from the service's sources alone (no tool runs).
    fn cache_key(&self, service: &Service) -> String;
    /// Build (or find in the cache) its artifact. Blocking.
    fn build(&self, service: &Service, ctx: &BuildContext<'_>) -> Result<Artifact, BuildError>;
}

/// The README span of line `line` (1-based, in the block's body), columns `col..end` (1-based).
pub fn readme_span(header: &Loc, line: usize, col: usize, end: usize) -> Loc {
    let readme_line = header.line() + line;
    let range = header.file.line_range(readme_line);
    let text = &header.file.text[range.clone()];
    let byte = |c: usize| {
        text.char_indices()
            .nth(c.saturating_sub(1))
            .map_or(text.len(), |(i, _)| i)
    };
    let (s, e) = (byte(col), byte(end.max(col + 1)));
    Loc {
        file: header.file.clone(),
        span: range.start + s..range.start + e.max(s),
    }
}
