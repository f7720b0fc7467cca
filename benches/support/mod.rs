//! What the bench harnesses share: building a README's wasm component as `pactown up` would.

use pactown_host::build::{Cache, rust};

/// Build (or find in the cache) the component of the one service a README describes.
pub fn build_readme(readme: &std::path::Path, cache: &Cache) -> anyhow::Result<rust::Artifact> {
    let loaded =
        pactown_host::spec::load_readme(readme, None).map_err(|d| anyhow::anyhow!("{d}"))?;
    let service = loaded
        .ecosystem
        .services
        .values()
        .next()
        .expect("one service")
        .clone();
    match rust::build(&service, cache, &|m| eprintln!("{m}")) {
        Ok(a) => Ok(a),
        Err(rust::BuildError::Code(d)) => anyhow::bail!("{d}"),
        Err(rust::BuildError::Other(e)) => Err(e),
    }
}
