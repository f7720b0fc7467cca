//! What the bench harnesses share: building a README's wasm component as `pactown up` would.

#![allow(dead_code)] // each bench uses part of it

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

use std::sync::Arc;

use pactown_runtime::wasm::{
    Capabilities, EngineConfig, HttpService, HttpSettings, InProcessHttp, OutgoingHooks, Route,
    WasmEngine,
};

/// The engine the benches serve with, its compiled components in `cache`.
pub fn engine(cache: &Cache) -> anyhow::Result<Arc<WasmEngine>> {
    WasmEngine::new(&EngineConfig::default(), cache.path(&["wasm", "compiled"]))
}

/// A wasm-http service of a built component, with no dependencies (the hello example's shape).
pub fn service(
    engine: &Arc<WasmEngine>,
    name: &str,
    artifact: &Component,
    hooks: OutgoingHooks,
) -> anyhow::Result<Arc<HttpService>> {
    let mut caps = Capabilities::new();
    caps.limits.cpu_time = Some(std::time::Duration::from_secs(10));
    Ok(Arc::new(HttpService::new(
        engine.clone(),
        &engine.load(&artifact.wasm, &artifact.key[..32])?,
        HttpSettings::new(name, caps, hooks),
    )?))
}

/// The routing pair of `benches/guests`: `callee`, served over TCP too, and `caller`, whose
/// resolver routes `callee` in-process (as the orchestrator's does for a declared wasm
/// dependency), answers `host` itself, and forwards the callee's address. Call inside a runtime.
pub async fn routing_pair(
    cache: &Cache,
) -> anyhow::Result<(Arc<HttpService>, Arc<HttpService>, std::net::SocketAddr)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guest = |name: &str| {
        build_readme(
            &root.join(format!("benches/guests/{name}/README.md")),
            cache,
        )
    };
    let (caller_art, callee_art) = (guest("caller")?, guest("callee")?);
    let engine = engine(cache)?;
    let callee = service(
        &engine,
        "callee",
        &callee_art,
        OutgoingHooks::new("callee", None),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callee_addr = listener.local_addr()?;
    tokio::spawn(serve(listener, callee.clone()));
    let target = callee.clone();
    let resolver: pactown_runtime::wasm::Resolver =
        Arc::new(move |t: &pactown_runtime::wasm::Target<'_>| match t.host {
            "callee" => Route::InProcess(Arc::new(InProcessHttp(target.clone()))),
            "host" => Route::Respond {
                status: 200,
                message: "hello".into(),
            },
            "127.0.0.1" if t.port == Some(callee_addr.port()) => Route::Forward(callee_addr),
            _ => Route::Respond {
                status: 403,
                message: "undeclared".into(),
            },
        });
    let caller = service(
        &engine,
        "caller",
        &caller_art,
        OutgoingHooks::new("caller", Some(resolver)),
    )?;
    Ok((caller, callee, callee_addr))
}

/// Serve `svc` over HTTP/1 on `listener`, as the host serves a wasm service's address.
pub async fn serve(listener: tokio::net::TcpListener, svc: Arc<HttpService>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req| {
                let svc = svc.clone();
                async move { Ok::<_, std::convert::Infallible>(svc.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), handler)
                .await;
        });
    }
}

/// One GET of `svc` in-process; the answer's body.
pub async fn get(svc: &HttpService, uri: &str) -> bytes::Bytes {
    use http_body_util::BodyExt;
    let req = http::Request::get(uri)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = svc.handle(req).await;
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body").to_bytes()
}
