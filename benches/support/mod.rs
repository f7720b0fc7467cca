//! What the bench harnesses share: building a README's wasm component as `pactown up` would.

use pactown_host::build::{Cache, Component};

/// Build (or find in the cache) the component of the one service a README describes, with the
/// real `pactown build` (its build steps run under pactown's own shim).
pub fn build_readme(readme: &std::path::Path, cache: &Cache) -> anyhow::Result<Component> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pactown"))
        .args(["build", "--json"])
        .arg(readme)
        .env("PACTOWN_CACHE_DIR", cache.root())
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "pactown build {} failed:\n{}",
            readme.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let built = report
        .as_object()
        .and_then(|m| m.values().next())
        .ok_or_else(|| anyhow::anyhow!("no service in {}", readme.display()))?;
    Ok(Component {
        wasm: built["wasm"].as_str().unwrap_or_default().into(),
        key: built["key"].as_str().unwrap_or_default().to_string(),
        built: built["built"] == true,
    })
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
