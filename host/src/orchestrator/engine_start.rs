//! The wasm engine, made on a thread of its own from the first moment of the process, with
//! every component the cache already has loaded into it (see [`EngineStart`]).

use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use pactown_runtime::wasm::{self, WasmEngine};

use crate::build::{self, Cache};
use crate::plan::{MAX_POOL_INSTANCES, Plan};
use crate::spec::{Ecosystem, Service};

/// The engine being made on a thread of its own, with every component the cache already has
/// loaded into it: its pool, its linker of every WASI interface, its epoch thread (~0.6 ms
/// in a process just started) and the mapped components (~0.4 ms for Rust, 1-3 ms for
/// JavaScript and Python) are ready while the lock is taken, the addresses bound and served and
/// the build finds nothing to do, instead of after.
pub struct EngineStart(std::thread::JoinHandle<anyhow::Result<Arc<WasmEngine>>>);

/// An engine being made on its thread, waiting to be told which components to load: the one
/// begun before the command line was parsed ([`EngineStart::ahead`]), or one of the plan's size.
struct Ahead {
    cache_dir: PathBuf,
    load: Sender<(Vec<Service>, Cache)>,
    thread: std::thread::JoinHandle<anyhow::Result<Arc<WasmEngine>>>,
}

static AHEAD: Mutex<Option<Ahead>> = Mutex::new(None);

impl Ahead {
    /// Begin making an engine whose pool holds `total_instances`, its compiled components in
    /// `cache`, on a thread placed on another core ([`OtherCore`]).
    fn begin(total_instances: u32, cache: &Cache) -> Option<Self> {
        let cache_dir = cache.path(&["wasm", "compiled"]);
        let (load, wanted) = std::sync::mpsc::channel();
        let config = wasm::EngineConfig {
            total_instances,
            ..Default::default()
        };
        let dir = cache_dir.clone();
        let placed = Arc::new(OtherCore::new());
        let place = placed.clone();
        let thread = std::thread::Builder::new()
            .name("pactown-engine".into())
            .spawn(move || {
                place.started();
                let engine = WasmEngine::new(&config, dir)?;
                let (services, cache): (Vec<Service>, Cache) = wanted.recv()?;
                load_cached(&engine, &services, &cache);
                crate::telemetry::start::mark(crate::telemetry::start::Stage::Loaded);
                Ok(engine)
            })
            .ok()?;
        placed.place(&thread);
        Some(Self {
            cache_dir,
            load,
            thread,
        })
    }

    /// Tell it what to load; `None` when its thread has ended (its engine could not be made).
    fn load(self, services: &[Service], cache: &Cache) -> Option<EngineStart> {
        let sent = self.load.send((services.to_vec(), cache.clone()));
        sent.is_ok().then_some(EngineStart(self.thread))
    }
}

impl EngineStart {
    /// Begin making the engine now, before the command line is parsed, the ecosystem read and
    /// the async runtime made (~1 ms in all, on the other core): a command that starts services
    /// (`run`, `up`, `test`) calls this first thing. Its pool has room for any plan; the first
    /// [`EngineStart::spawn`] adopts it, or drops it when no service runs as wasm.
    pub fn ahead() {
        *AHEAD.lock().expect("engine ahead") = Ahead::begin(MAX_POOL_INSTANCES, &Cache::locate());
    }

    /// Start it, if some service of `eco` runs as wasm: the one begun ahead for this cache, or
    /// else (none, or it could not be made) one of the plan's size.
    pub fn spawn(eco: &Ecosystem, cache: &Cache) -> Option<Self> {
        let ahead = AHEAD.lock().expect("engine ahead").take();
        let wasm: Vec<Service> = eco
            .services
            .values()
            .filter(|s| crate::spec::language::runtime_kind(s).0.is_wasm())
            .cloned()
            .collect();
        if wasm.is_empty() {
            // Dropping the sender ends the thread begun ahead; its engine goes with it.
            return None;
        }
        ahead
            .filter(|a| a.cache_dir == cache.path(&["wasm", "compiled"]))
            .and_then(|a| a.load(&wasm, cache))
            .or_else(|| Ahead::begin(Plan::wasm_instances_of(eco), cache)?.load(&wasm, cache))
    }

    /// The engine, once made.
    pub fn join(self) -> anyhow::Result<Arc<WasmEngine>> {
        self.0
            .join()
            .map_err(|_| anyhow::anyhow!("making the wasm engine panicked"))?
    }
}

/// Load into `engine` the components of `services` that are compiled already (a component to
/// compile is compiled when the services are prepared, all at once); each once however many
/// services share it, several at once, each on a thread.
fn load_cached(engine: &WasmEngine, services: &[Service], cache: &Cache) {
    let mut ready: Vec<build::Component> = services
        .iter()
        .filter_map(|s| build::cached_component(s, cache))
        .filter(|c| engine.compiled_path(&c.key[..32]).is_file())
        .collect();
    ready.sort_by(|a, b| a.key.cmp(&b.key));
    ready.dedup_by(|a, b| a.key == b.key);
    std::thread::scope(|scope| {
        for c in &ready {
            // What cannot be loaded now is loaded (and reported) when it is needed.
            let load = move || drop(engine.load(&c.wasm, &c.key[..32]));
            if ready.len() == 1 {
                load();
            } else {
                scope.spawn(load);
            }
        }
    });
}

/// Start a thread on another core than this one. A thread the main thread spawns waits on the
/// main thread's core until the scheduler balances it onto an idle one, which can take a while
/// (0.8 ms, measured with `perf sched` on 2 cores while the other core's idle spells were short:
/// another process polling), the whole head start of the engine begun ahead. So the new thread
/// is confined at once to the process's other cores (it moves there), and given back all of them
/// as soon as it runs, by whichever of the two sides comes second.
struct OtherCore {
    state: AtomicU8,
    /// The spawning thread's cores, which the new thread gets back.
    cores: libc::cpu_set_t,
}

/// [`OtherCore`]'s states.
const NEITHER: u8 = 0;
const CONFINED: u8 = 1;
const STARTED: u8 = 2;

impl OtherCore {
    /// On the spawning thread, before the spawn.
    fn new() -> Self {
        Self {
            state: AtomicU8::new(NEITHER),
            cores: process_cores(),
        }
    }

    /// On the new thread, first thing.
    fn started(&self) {
        if self.state.swap(STARTED, Ordering::AcqRel) == CONFINED {
            // SAFETY: this thread's own affinity, back to the spawning thread's.
            let _ = unsafe { set_affinity(libc::pthread_self(), &self.cores) };
        }
    }

    /// On the spawning thread, right after the spawn.
    fn place<T>(&self, thread: &std::thread::JoinHandle<T>) {
        let cores = self.cores;
        // SAFETY: asks which core runs this thread.
        let here = unsafe { libc::sched_getcpu() };
        let mut others = cores;
        // A core beyond what a `cpu_set_t` holds (over 1,024) or none known: leave it be.
        if !(0..libc::CPU_SETSIZE).contains(&here) {
            return;
        }
        // SAFETY: bit operations on a set we own, for a core number within it.
        let any_other = unsafe {
            libc::CPU_CLR(here as usize, &mut others);
            libc::CPU_COUNT(&others) > 0
        };
        let handle = thread.as_pthread_t();
        // SAFETY: the thread is alive (its handle is held); an affinity within the process's.
        if !any_other || !unsafe { set_affinity(handle, &others) } {
            return;
        }
        if self
            .state
            .compare_exchange(NEITHER, CONFINED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // It started before it was confined: give all cores back here.
            // SAFETY: as above.
            let _ = unsafe { set_affinity(handle, &cores) };
        }
    }
}

/// The cores the calling thread may run on (the main thread's: the process's).
fn process_cores() -> libc::cpu_set_t {
    // SAFETY: an all-zero `cpu_set_t` is valid; the kernel fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            libc::CPU_SET(0, &mut set);
        }
        set
    }
}

/// Set a thread's cores; whether it took.
///
/// # Safety
/// `thread` must be a live thread of this process.
unsafe fn set_affinity(thread: libc::pthread_t, set: &libc::cpu_set_t) -> bool {
    unsafe {
        libc::pthread_setaffinity_np(thread, std::mem::size_of::<libc::cpu_set_t>(), set) == 0
    }
}
