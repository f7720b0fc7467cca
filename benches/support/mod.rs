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

/// The number of requests given on the command line (`cargo bench --bench X -- N`), else 20,000.
pub fn requests() -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000)
}

/// The runtime the benches serve on: two workers, like `pactown` on this 2-core machine.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
