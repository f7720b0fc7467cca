//! Per-request cost of a wasm-http service: a fresh instance from the pre-instantiated
//! component (pooling allocator, copy-on-write memory) plus the guest handling one request,
//! measured in-process on the hello example, without any network.
//!
//!   cargo bench --bench instantiate [-- REQUESTS]
//!
//! Prints p50, p99 and mean over REQUESTS sequential requests (default 20000), after a warm-up.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use pactown_host::build::Cache;
use pactown_runtime::wasm::{
    Capabilities, EngineConfig, HttpService, HttpSettings, OutgoingHooks, WasmEngine,
};

fn main() -> anyhow::Result<()> {
    let n = support::requests();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = Cache::locate();
    let artifact = support::build_readme(&root.join("examples/hello-rust/README.md"), &cache)?;
    let rt = support::runtime()?;
    rt.block_on(async move {
        let engine = WasmEngine::new(&EngineConfig::default(), cache.path(&["wasm", "compiled"]))?;
        let component = engine.load(&artifact.wasm, &artifact.key[..32])?;
        let mut caps = Capabilities::new();
        caps.limits.cpu_time = Some(std::time::Duration::from_secs(10));
        let svc = Arc::new(HttpService::new(
            engine,
            &component,
            HttpSettings::new("hello", caps, OutgoingHooks::new("hello", None)),
        )?);
        let once = |svc: Arc<HttpService>| async move {
            let req = http::Request::get("http://hello/?name=bench")
                .body(Empty::<Bytes>::new())
                .expect("request");
            let resp = svc.handle(req).await;
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.expect("body");
        };
        for _ in 0..1000 {
            once(svc.clone()).await;
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            once(svc.clone()).await;
            times.push(t.elapsed());
        }
        times.sort();
        let pct = |p: f64| times[((n as f64 * p) as usize).min(n - 1)];
        let mean = times.iter().sum::<Duration>() / n as u32;
        println!(
            "{{\"requests\": {n}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"mean_us\": {:.1}}}",
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6
        );
        anyhow::Ok(())
    })
}
