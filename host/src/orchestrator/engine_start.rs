//! The wasm engine, made on a thread of its own from the first moment of a session, with every
//! component the cache already has loaded into it (see [`EngineStart`]).

use std::sync::Arc;

use pactown_runtime::wasm::{self, WasmEngine};

use crate::build::{self, Cache};
use crate::plan::Plan;
use crate::spec::{Ecosystem, Service};

/// The engine being made on a thread of its own, with every component the cache already has
/// loaded into it: its pool, its linker of every WASI interface, its epoch thread (~0.6 ms)
/// and the mapped components (~0.4 ms for Rust, 1-3 ms for JavaScript and Python) are ready
/// while the lock is taken, the addresses bound and served and the build finds nothing to do,
/// instead of after.
pub struct EngineStart(std::thread::JoinHandle<anyhow::Result<Arc<WasmEngine>>>);

impl EngineStart {
    /// Start it, if some service of `eco` runs as wasm.
    pub fn spawn(eco: &Ecosystem, cache: &Cache) -> Option<Self> {
        let wasm: Vec<Service> = eco
            .services
            .values()
            .filter(|s| crate::spec::language::runtime_kind(s).0.is_wasm())
            .cloned()
            .collect();
        if wasm.is_empty() {
            return None;
        }
        let config = wasm::EngineConfig {
            total_instances: Plan::wasm_instances_of(eco),
            ..Default::default()
        };
        let cache = cache.clone();
        let started = std::thread::Builder::new()
            .name("pactown-engine".into())
            .spawn(move || {
                let engine = WasmEngine::new(&config, cache.path(&["wasm", "compiled"]))?;
                // Only what is compiled already (a component to compile is compiled when the
                // services are prepared, all at once); each once however many services share
                // it, several at once, each on a thread.
                let mut ready: Vec<build::Component> = wasm
                    .iter()
                    .filter_map(|s| build::cached_component(s, &cache))
                    .filter(|c| engine.compiled_path(&c.key[..32]).is_file())
                    .collect();
                ready.sort_by(|a, b| a.key.cmp(&b.key));
                ready.dedup_by(|a, b| a.key == b.key);
                std::thread::scope(|scope| {
                    for c in &ready {
                        let engine = &engine;
                        // What cannot be loaded now is loaded (and reported) when it is needed.
                        let load = move || drop(engine.load(&c.wasm, &c.key[..32]));
                        if ready.len() == 1 {
                            load();
                        } else {
                            scope.spawn(load);
                        }
                    }
                });
                Ok(engine)
            });
        started.ok().map(Self)
    }

    /// The engine, once made.
    pub fn join(self) -> anyhow::Result<Arc<WasmEngine>> {
        self.0
            .join()
            .map_err(|_| anyhow::anyhow!("making the wasm engine panicked"))?
    }
}
