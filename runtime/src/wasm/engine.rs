//! The one wasmtime `Engine` of a pactown process: pooling instance allocator (instantiation in
//! microseconds), epoch interruption for CPU deadlines with a single ticker thread, and
//! components precompiled once to native code and kept on disk, keyed by the component's hash
//! and the engine's compatibility hash, then loaded with mmap and never recompiled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::state::HostState;

/// How often the epoch advances: the granularity of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A CPU budget in epoch ticks, rounded up, at least one.
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1)
}

/// The largest memory any instance may have; per-service limits are checked against it.
pub const MAX_MEMORY: usize = 1 << 30;

/// Address space reserved for each linear memory: all that a 32-bit index reaches.
const MEMORY_RESERVATION: u64 = 1 << 32;

/// Bytes of each pooled memory kept mapped between instances: the most a slot keeps of what
/// its instances dirtied. An interpreter's instance dirties pages all over its heap (a Python
/// one ~400 pages of a 14 MiB image); a slot that keeps them all takes no page fault and no TLB
/// shootdown for them at the next instance, which is what makes a fresh interpreter instance
/// per request affordable. The price: each reset copies every kept page back from the image
/// (the kernel reports each private page present as written, whether this instance wrote it or
/// an earlier one), a memcpy of the set kept; and RSS, bounded by this times the warm slots
/// kept (`max_unused_warm_slots`).
const MEMORY_KEEP_RESIDENT: usize = 16 << 20;

/// Bytes of each pooled table kept mapped between instances.
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// Sizing of the engine's pool, and the CPU its code is compiled for.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances that may exist at once, across all services.
    pub total_instances: u32,
    /// The CPU components are compiled for.
    pub cpu: CpuTarget,
}

/// The CPU components are compiled for: this machine's (every feature it has), or the
/// architecture's baseline, so that code compiled on one machine (an image built by
/// `pactown deploy`) loads on any other of the same architecture. Read from `PACTOWN_WASM_CPU`
/// (`native`, the default, or `baseline`) so that what compiles ahead and what loads agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuTarget {
    /// This machine's features.
    Native,
    /// No feature beyond the architecture's baseline.
    Baseline,
}

/// The variable that picks the [`CpuTarget`].
pub const CPU_VAR: &str = "PACTOWN_WASM_CPU";

impl CpuTarget {
    /// From `PACTOWN_WASM_CPU`.
    pub fn from_env() -> Self {
        match std::env::var(CPU_VAR).as_deref() {
            Ok("baseline") => CpuTarget::Baseline,
            _ => CpuTarget::Native,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            total_instances: 1000,
            cpu: CpuTarget::from_env(),
        }
    }
}

/// What a component exports, which decides how it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// `wasi:http/incoming-handler` (or `pactown:worker/handler`): an HTTP service.
    Http,
    /// `wasi:cli/run`: runs long.
    Command,
}

/// Counters of work done, so callers can prove a warm start compiled nothing.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Components compiled to native code.
    pub compiled: AtomicU64,
    /// Components loaded from the precompiled cache.
    pub loaded: AtomicU64,
}

/// The interface whose `handle` pactown provides itself (any 0.2.x import links to it).
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// The shared engine and linker.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    ticker_stop: Arc<AtomicBool>,
    /// Components loaded by this engine, by key: services with the same component share it,
    /// and the second of two loading it at once waits for the first.
    loaded: std::sync::Mutex<
        std::collections::HashMap<String, Arc<std::sync::Mutex<Option<Component>>>>,
    >,
    /// Work counters.
    pub stats: EngineStats,
}

impl WasmEngine {
    /// Create the engine, its linker (WASI p2 + wasi:http) and the epoch ticker. Compiled
    /// components are kept in `cache_dir`.
    pub fn new(config: &EngineConfig, cache_dir: impl Into<PathBuf>) -> anyhow::Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::new();
        let n = config.total_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .total_memories(n * 2)
            .total_tables(n * 2)
            .total_stacks(n)
            .max_memory_size(MAX_MEMORY)
            .max_unused_warm_slots(64)
            // A slot going back to the pool keeps its pages mapped and is reset in place (only
            // the pages the instance dirtied, found with PAGEMAP_SCAN where the kernel has it;
            // all of them, with the vendored wasmtime's change) instead of being unmapped: the
            // next instance in that slot takes no page faults for them. Roughly halves
            // instantiate + handle of a small handler; for a Python or JavaScript component,
            // fresh instances per second go up 4-6x at 8 connections (a decommit is a TLB
            // shootdown to every core running pactown, a VM exit each on a virtual machine).
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut c = Config::new();
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .memory_init_cow(true)
            .parallel_compilation(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            // Every 32-bit memory gets the whole 4 GiB it can address, plus a guard: a load or
            // store then needs no bounds check in compiled code (an interpreter such as the JS
            // and Python engines runs 5-17% faster than with a 1 GiB reservation, measured
            // here). It costs address space only (PROT_NONE, never committed): 2 memories of
            // ~4 GiB per pool slot, 8 TiB at the largest pool, of the 128 TiB a process has.
            // What an instance may actually use is still `max_memory_size`.
            .memory_reservation(MEMORY_RESERVATION)
            .memory_guard_size(32 << 20);
        if config.cpu == CpuTarget::Baseline {
            // Naming the target turns off the detection of this machine's features.
            let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
            c.target(&triple)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot compile for `{triple}`"))?;
        }
        let engine = Engine::new(&c)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        // Outgoing requests without a body are started in the call (see `outgoing_handler::handle`).
        linker.allow_shadowing(true);
        linker
            .instance(OUTGOING_HANDLER)
            .map_err(anyhow::Error::from)?
            .func_wrap("handle", |mut store, (request, options)| {
                super::outgoing_handler::handle(store.data_mut(), request, options).map(|a| (a,))
            })
            .map_err(anyhow::Error::from)?;
        linker.allow_shadowing(false);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("pactown-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(Arc::new(Self {
            engine,
            linker,
            cache_dir: cache_dir.into(),
            ticker_stop,
            loaded: Default::default(),
            stats: EngineStats::default(),
        }))
    }

    /// Where the precompiled form of the component `key` is (or would be) kept.
    pub fn compiled_path(&self, key: &str) -> PathBuf {
        let compat = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        self.cache_dir.join(format!("{key}-{compat:016x}.cwasm"))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with every WASI interface (capabilities come from each store's context).
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Load a component: from this engine's memory when loaded before (one copy, however many
    /// services run it), else from the precompiled cache when present, else compile it once and
    /// store the result. `key` identifies the component's bytes (e.g. their SHA-256).
    pub fn load(&self, wasm: &Path, key: &str) -> anyhow::Result<Component> {
        let cell = self
            .loaded
            .lock()
            .expect("loaded")
            .entry(key.to_string())
            .or_default()
            .clone();
        let mut slot = cell.lock().expect("component");
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let c = self.load_uncached(wasm, key)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The component `key`, if this engine has loaded it (not while it is being loaded).
    pub fn loaded(&self, key: &str) -> Option<Component> {
        let cell = self.loaded.lock().expect("loaded").get(key)?.clone();
        cell.try_lock().ok()?.clone()
    }

    fn load_uncached(&self, wasm: &Path, key: &str) -> anyhow::Result<Component> {
        let cwasm = self.compiled_path(key);
        if cwasm.is_file() {
            // SAFETY: the file was written by `precompile_component` of an engine with the same
            // compatibility hash, into pactown's own cache.
            if let Ok(c) = unsafe { Component::deserialize_file(&self.engine, &cwasm) } {
                self.stats.loaded.fetch_add(1, Ordering::Relaxed);
                return Ok(c);
            }
        }
        let bytes =
            std::fs::read(wasm).with_context(|| format!("cannot read `{}`", wasm.display()))?;
        let compiled = self
            .engine
            .precompile_component(&bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("`{}` is not a valid WebAssembly component", wasm.display())
            })?;
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        // A name no other writer has, in this process or another sharing the cache.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = cwasm.with_extension(format!("tmp-{}-{n}", std::process::id()));
        let stored = std::fs::create_dir_all(&self.cache_dir)
            .and_then(|()| std::fs::write(&tmp, &compiled))
            .and_then(|()| std::fs::rename(&tmp, &cwasm));
        if stored.is_err() {
            // A read-only cache (a container's image): keep the compiled code in memory.
            let _ = std::fs::remove_file(&tmp);
            // SAFETY: bytes `precompile_component` of this very engine just made.
            return unsafe { Component::deserialize(&self.engine, &compiled) }
                .map_err(anyhow::Error::from);
        }
        // SAFETY: as above; we just wrote it.
        unsafe { Component::deserialize_file(&self.engine, &cwasm) }.map_err(anyhow::Error::from)
    }

    /// Whether a component exports `name` (e.g. `pactown:worker/handler@0.2.0`).
    pub fn exports(&self, component: &Component, name: &str) -> bool {
        component
            .component_type()
            .exports(&self.engine)
            .any(|(n, _)| n == name)
    }

    /// What a component exports.
    pub fn kind(&self, component: &Component) -> Option<ComponentKind> {
        let ty = component.component_type();
        let mut kind = None;
        for (name, _) in ty.exports(&self.engine) {
            if name.starts_with("wasi:http/incoming-handler@") || name == super::worker::EXPORT {
                return Some(ComponentKind::Http);
            }
            if name.starts_with("wasi:cli/run@") {
                kind = Some(ComponentKind::Command);
            }
        }
        kind
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_budget_is_rounded_up_to_whole_ticks() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(Duration::from_millis(1)), 1);
        assert_eq!(ticks(EPOCH_TICK), 1);
        assert_eq!(ticks(EPOCH_TICK + Duration::from_nanos(1)), 2);
        assert_eq!(ticks(EPOCH_TICK * 3000), 3000);
    }

    /// A guest that writes one byte into every other 4 KiB page: each written page is a
    /// region of its own, far more than the 32 the kernel reports in one batch.
    const SCATTERED: &str = r#"
        (module
          (memory 32)
          (data (i32.const 0) "\01")
          (data (i32.const 2097151) "\02")
          (func (export "dirty")
            (local $i i32)
            (loop $next
              (i32.store8 (i32.mul (local.get $i) (i32.const 8192)) (i32.const 0xaa))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $next (i32.lt_u (local.get $i) (i32.const 200)))))
          (func (export "sum") (result i32)
            (local $i i32) (local $s i32)
            (loop $next
              (local.set $s (i32.add (local.get $s)
                (i32.load8_u (i32.mul (local.get $i) (i32.const 8192)))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $next (i32.lt_u (local.get $i) (i32.const 200))))
            (local.get $s)))
    "#;

    #[test]
    fn a_slot_keeps_every_page_its_instance_dirtied_and_the_next_instance_sees_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = WasmEngine::new(
            &EngineConfig {
                total_instances: 16,
                cpu: CpuTarget::Native,
            },
            dir.path(),
        )
        .unwrap();
        let module = wasmtime::Module::new(engine.engine(), SCATTERED).unwrap();
        let run = |dirty: bool| {
            let mut store = wasmtime::Store::new(engine.engine(), ());
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let sum = instance
                .get_typed_func::<(), i32>(&mut store, "sum")
                .unwrap();
            let before = sum.call(&mut store, ()).unwrap();
            if dirty {
                let f = instance
                    .get_typed_func::<(), ()>(&mut store, "dirty")
                    .unwrap();
                f.call(&mut store, ()).unwrap();
                assert_eq!(sum.call(&mut store, ()).unwrap(), 200 * 0xaa);
            }
            before
        };
        // The image's byte at 0, and zeros: what every instance must start from.
        assert_eq!(run(true), 1);
        let metrics = engine.engine().pooling_allocator_metrics().unwrap();
        // All 200 written pages were reset in place and kept (upstream wasmtime keeps the first
        // 32 regions' pages and decommits the rest).
        assert!(
            metrics.unused_memory_bytes_resident() >= 200 * 4096,
            "kept {} bytes",
            metrics.unused_memory_bytes_resident()
        );
        // The next instance, in the same slot, sees none of the last one's writes.
        assert_eq!(run(true), 1);
        assert_eq!(run(false), 1);
    }

    /// Services that share a component load it at the same moment: it is compiled once, and
    /// neither finds the other's half-written file.
    #[test]
    fn a_component_loaded_by_several_at_once_is_compiled_once() {
        let dir = tempfile::tempdir().unwrap();
        let engine = WasmEngine::new(
            &EngineConfig {
                total_instances: 4,
                cpu: CpuTarget::Native,
            },
            dir.path().join("compiled"),
        )
        .unwrap();
        let wasm = dir.path().join("c.wasm");
        // Text: the engine reads WAT as well.
        std::fs::write(&wasm, "(component)").unwrap();
        std::thread::scope(|scope| {
            let loads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| engine.load(&wasm, "k").map(|_| ())))
                .collect();
            for l in loads {
                l.join().unwrap().unwrap();
            }
        });
        assert_eq!(engine.stats.compiled.load(Ordering::Relaxed), 1);
        assert!(engine.loaded("k").is_some());
    }
}
