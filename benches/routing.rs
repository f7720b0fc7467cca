//! What a wasm → wasm call by name adds over calling the same handler directly, in-process:
//!
//!   added = p50(caller /via) − p50(caller /direct) − p50(callee alone)
//!
//! `/via` asks `callee` by name (outgoing hook → resolver → in-process dispatch, body drained);
//! `/direct` answers the same text itself; the callee's own cost is measured alone.
//!
//!   cargo bench --bench routing [-- REQUESTS]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use pactown_host::build::Cache;
use pactown_runtime::wasm::{
    Capabilities, EngineConfig, HttpService, HttpSettings, InProcessHttp, OutgoingHooks, Route,
    WasmEngine,
};

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = Cache::locate();
    let guest = |name: &str| {
        support::build_readme(
            &root.join(format!("benches/guests/{name}/README.md")),
            &cache,
        )
    };
    let (caller_art, callee_art) = (guest("caller")?, guest("callee")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let engine = WasmEngine::new(&EngineConfig::default(), cache.path(&["wasm", "compiled"]))?;
        let settings = |name: &str, hooks: OutgoingHooks| HttpSettings {
            name: name.into(),
            caps: Capabilities::new(),
            hooks,
            max_instances: 64,
            timeout: Duration::from_secs(10),
            errors: None,
        };
        let callee = Arc::new(HttpService::new(
            engine.clone(),
            &engine.load(&callee_art.wasm, &callee_art.key[..32])?,
            settings("callee", OutgoingHooks::new("callee", None)),
        )?);
        let target = callee.clone();
        // The orchestrator's resolver, reduced to the one declared dependency.
        let resolver: pactown_runtime::wasm::Resolver = Arc::new(move |host: &str, _port| {
            if host == "callee" {
                Route::InProcess(Arc::new(InProcessHttp(target.clone())))
            } else if host == "host" {
                Route::Respond { status: 200, message: "hello".into() }
            } else {
                Route::Respond { status: 403, message: "undeclared".into() }
            }
        });
        let caller = Arc::new(HttpService::new(
            engine.clone(),
            &engine.load(&caller_art.wasm, &caller_art.key[..32])?,
            settings("caller", OutgoingHooks::new("caller", Some(resolver))),
        )?);
        async fn once(svc: &HttpService, uri: &str) {
            let req = http::Request::get(uri).body(Empty::<Bytes>::new()).expect("request");
            let resp = svc.handle(req).await;
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert!(body.ends_with(b"hello") || body.ends_with(b"hello\"}"), "{body:?}");
        }
        async fn p50(svc: &HttpService, uri: &str, n: usize) -> Duration {
            for _ in 0..500 {
                once(svc, uri).await;
            }
            let mut t = Vec::with_capacity(n);
            for _ in 0..n {
                let s = Instant::now();
                once(svc, uri).await;
                t.push(s.elapsed());
            }
            t.sort();
            t[n / 2]
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        // Interleave the three measurements twice, to spread the machine's noise over all.
        let (mut via, mut direct, mut alone, mut host) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            via.push(p50(&caller, "http://caller/via", n / 2).await);
            direct.push(p50(&caller, "http://caller/direct", n / 2).await);
            alone.push(p50(&callee, "http://callee/", n / 2).await);
            host.push(p50(&caller, "http://caller/host", n / 2).await);
        }
        let avg = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
        let (via, direct, alone, host) = (avg(&via), avg(&direct), avg(&alone), avg(&host));
        // `host`: the caller makes the same outgoing call, answered by the host at once, so
        // `host - direct` is what any outgoing HTTP call costs the caller (the guest's client and
        // wasi:http), whoever answers it.
        println!(
            "{{\"caller_via_p50_us\": {:.1}, \"caller_direct_p50_us\": {:.1}, \"callee_alone_p50_us\": {:.1}, \"added_by_call_by_name_p50_us\": {:.1}, \"outgoing_call_answered_by_host_p50_us\": {:.1}}}",
            us(via),
            us(direct),
            us(alone),
            us(via) - us(direct) - us(alone),
            us(host) - us(direct)
        );
        anyhow::Ok(())
    })
}
