//! What a wasm → wasm call by name costs, two ways:
//!
//!   by name vs by address = p50(caller /via) − p50(caller /addr)
//!   added over an inlined handler = p50(caller /via) − p50(caller /direct) − p50(callee alone)
//!
//! `/via` asks `callee` by name (outgoing handler → resolver → the callee inline, no TCP);
//! `/addr` asks the same callee handler at its address (served over TCP by this process, the
//! way a guest calls any HTTP server); `/direct` answers the same text itself; the callee's own
//! cost is measured alone; `/host` makes the same outgoing call, answered by the host at once,
//! so `host − direct` is what any outgoing HTTP call costs the guest (its client and wasi:http).
//! The five kinds take turns, one request each per round, so their p50s share the same moments.
//!
//!   cargo bench --bench routing [-- ROUNDS]

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use pactown_host::build::Cache;
use pactown_runtime::wasm::HttpService;

fn main() -> anyhow::Result<()> {
    let n = support::requests();
    let cache = Cache::locate();
    let rt = support::runtime()?;
    // Measured inside a task on the runtime's workers, where a server's connection task runs
    // (the thread of `block_on` is not a worker: anything it spawns wakes another thread).
    rt.block_on(rt.spawn(async move {
        let (caller, callee, callee_addr) = support::routing_pair(&cache).await?;
        let (caller, callee) = (&*caller, &*callee);
        async fn once(svc: &HttpService, uri: &str) {
            let body = support::get(svc, uri).await;
            assert!(
                body.ends_with(b"hello") || body.ends_with(b"hello\"}"),
                "{body:?}"
            );
        }
        let us = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
        let addr_uri = format!("http://caller/addr?{callee_addr}");
        let kinds: [(&HttpService, &str); 5] = [
            (caller, "http://caller/via"),
            (caller, "http://caller/direct"),
            (callee, "http://callee/"),
            (caller, "http://caller/host"),
            (caller, &addr_uri),
        ];
        for (svc, uri) in kinds {
            for _ in 0..500 {
                once(svc, uri).await;
            }
        }
        // Round robin, one request of each kind per round (starting with a different one each
        // time), so all five p50s come from the same moments of this shared, noisy machine.
        let mut m = [(); 5].map(|_| Vec::with_capacity(n));
        for round in 0..n {
            for k in (0..5).map(|k| (k + round) % 5) {
                let (svc, uri) = kinds[k];
                let s = Instant::now();
                once(svc, uri).await;
                m[k].push(s.elapsed());
                // Between requests a server's connection task waits for the next one, and the
                // worker runs what the request spawned; so does this loop, untimed.
                tokio::task::yield_now().await;
            }
        }
        let [via, direct, alone, host, addr] = m.map(|mut t| {
            t.sort();
            us(t[t.len() / 2])
        });
        let r1 = |x: f64| (x * 10.0).round() / 10.0;
        println!(
            "{}",
            serde_json::json!({
                "caller_via_p50_us": via,
                "caller_by_address_p50_us": addr,
                "caller_direct_p50_us": direct,
                "callee_alone_p50_us": alone,
                "by_name_minus_by_address_p50_us": r1(via - addr),
                "added_by_call_by_name_p50_us": r1(via - direct - alone),
                "outgoing_call_answered_by_host_p50_us": r1(host - direct),
            })
        );
        anyhow::Ok(())
    }))?
}
