//! Criterion benches of the hot paths, in-process on real components:
//!
//! - `instantiate/hello`: a fresh instance of the hello example from its pre-instantiated
//!   component (pooling allocator, copy-on-write memory) plus the guest handling one request;
//! - `route/*`: a wasm guest calling another by name (in-process, no TCP), the same callee at
//!   its address over TCP, and the guest answering itself (what both calls add to);
//! - `handle/http1`: one request over a keep-alive HTTP/1 connection on loopback into a
//!   component (hyper's server, as a stable address serves it).
//!
//!   cargo bench --bench hot_paths [-- FILTER]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pactown_host::build::Cache;

fn hot_paths(c: &mut Criterion) {
    let rt = support::runtime().expect("runtime");
    let cache = Cache::locate();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let hello = support::build_readme(&root.join("examples/hello-rust/README.md"), &cache)
        .expect("the hello example builds");
    let engine = support::engine(&cache).expect("engine");
    let svc = support::service(
        &engine,
        "hello",
        &hello,
        pactown_runtime::wasm::OutgoingHooks::new("hello", None),
    )
    .expect("hello service");

    let mut g = c.benchmark_group("instantiate");
    g.bench_function("hello", |b| {
        b.to_async(&rt)
            .iter(|| support::get(&svc, "http://hello/?name=bench"))
    });
    g.finish();

    let (caller, _callee, callee_addr) = rt
        .block_on(support::routing_pair(&cache))
        .expect("the routing guests build");
    let addr_uri = format!("http://caller/addr?{callee_addr}");
    let mut g = c.benchmark_group("route");
    for (name, uri) in [
        ("by_name", "http://caller/via"),
        ("by_address", addr_uri.as_str()),
        ("direct", "http://caller/direct"),
    ] {
        let caller = caller.clone();
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| support::get(&caller, uri))
        });
    }
    g.finish();

    let served = {
        let _enter = rt.enter();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        rt.spawn(support::serve(listener, svc.clone()));
        addr
    };
    let client = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(served)
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        Arc::new(tokio::sync::Mutex::new(sender))
    });
    let mut g = c.benchmark_group("handle");
    g.bench_function("http1", |b| {
        b.to_async(&rt).iter(|| {
            let client = client.clone();
            async move {
                use http_body_util::BodyExt;
                let req = http::Request::get("/?name=bench")
                    .header("host", "hello")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request");
                let mut sender = client.lock().await;
                sender.ready().await.expect("the connection is open");
                let resp = sender.send_request(req).await.expect("an answer");
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("body")
            }
        })
    });
    g.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
