//! `wasm-http` services: a component exporting `wasi:http/incoming-handler` (or pactown's
//! one-call `pactown:worker/handler`, see [`super::worker`]), served with a fresh instance per
//! request from a pre-instantiated component and the pooling allocator, or with one instance for
//! several requests in turn (`instance_reuse`).
//!
//! A guest that traps, runs out of memory or runs past its CPU deadline fails that request
//! alone: the caller gets a 500 with the reason, the host logs it, the next request gets a new
//! instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::engine::WasmEngine;
use super::outgoing::{HOPS_HEADER, OutgoingHooks};
use super::state::{Capabilities, HostState};
use super::worker;

/// Boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response bodies of wasm services.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// What a guest ran into when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Its memory limit.
    Memory,
    /// Its CPU time limit.
    Cpu,
    /// Anything else: a trap, a missing answer, the wall-clock deadline.
    Other,
}

/// Receives a guest's failure: what it ran into, and a line saying why.
pub type FailureSink = Arc<dyn Fn(Failure, &str) + Send + Sync>;

/// Settings of one wasm HTTP service.
#[derive(Clone)]
pub struct HttpSettings {
    /// The service's name (for messages).
    pub name: String,
    /// What each instance may do.
    pub caps: Capabilities,
    /// Outgoing HTTP.
    pub hooks: OutgoingHooks,
    /// Instances at once; more requests wait.
    pub max_instances: usize,
    /// Wall-clock limit of a request (a guest blocked in a host call is not interrupted by
    /// the CPU deadline).
    pub timeout: Duration,
    /// Where failures are reported (one line each, with what the guest ran into).
    pub errors: Option<FailureSink>,
    /// Requests one instance serves before it is dropped: 1 (the default) is a fresh instance
    /// per request; more trades per-request isolation for throughput (module state survives
    /// between the requests an instance serves). An instance that failed is never reused.
    pub reuse: u32,
}

impl HttpSettings {
    /// Settings with the defaults of an unconfigured service: 64 instances at once, a
    /// 10-second deadline, failures not reported.
    pub fn new(name: &str, caps: Capabilities, hooks: OutgoingHooks) -> Self {
        Self {
            name: name.to_string(),
            caps,
            hooks,
            max_instances: 64,
            timeout: Duration::from_secs(10),
            errors: None,
            reuse: 1,
        }
    }
}

/// A loaded wasm HTTP service.
pub struct HttpService {
    settings: HttpSettings,
    permits: Arc<Semaphore>,
    /// What makes its instances, and the next request's made ahead.
    instances: Arc<Instances>,
    /// Requests handled.
    pub requests: AtomicU64,
    /// Requests that failed inside the guest.
    pub failures: AtomicU64,
    /// Instances alive now.
    pub active: Arc<AtomicU64>,
    /// Idle instances that may serve more requests (`reuse` > 1).
    warm: Arc<std::sync::Mutex<Vec<Warm>>>,
    /// Instances that have answered, to be freed (see [`HttpService::retire`]).
    retiring: Arc<std::sync::Mutex<Vec<Retired>>>,
}

/// An instance between two of the requests it serves.
struct Warm {
    store: Store<HostState>,
    guest: Guest,
    served: u32,
}

/// A component ready to instantiate, by what it exports.
enum Pre {
    /// `wasi:http/incoming-handler`.
    Proxy(ProxyPre<HostState>),
    /// `pactown:worker/handler`.
    Worker(worker::ServedPre<HostState>),
}

/// An instance, by what it exports.
enum Guest {
    Proxy(Proxy),
    Worker(worker::Served),
}

/// What makes a service's instances (a store of its own each, then the component instantiated
/// in it), and keeps a spare: a fresh instance made before its request arrives, for a component
/// whose instantiation is slow (an interpreter's: a Python component links 14 core modules and
/// fills a table of thousands of functions, ~0.5 ms). It is made on a thread of the blocking
/// pool, so on whichever core is free, while the previous request runs or the service is idle,
/// and a request finds its instance ready. It has served nothing: each request still gets an
/// instance of its own. The first request makes its instance inline and measures it; a
/// component that instantiates in microseconds (Rust, JavaScript) gets no spare once that is
/// measured (at most the one its cold first instantiation asked for), since handing the work to
/// another thread would cost more than it saves.
struct Instances {
    pre: Pre,
    engine: Arc<WasmEngine>,
    caps: Capabilities,
    hooks: OutgoingHooks,
    spare: std::sync::Mutex<Option<(Store<HostState>, Guest)>>,
    /// A thread is making one now.
    making: std::sync::atomic::AtomicBool,
    /// The fastest instantiation seen, in nanoseconds (`u64::MAX`: none yet). The fastest,
    /// not the last: the first one, in a new process, is cold (pages mapped for the first
    /// time), and one made beside a running request is slowed by it.
    instantiation_ns: AtomicU64,
}

/// Instantiation slower than this is made ahead (see [`Instances`]).
const SPARE_ABOVE: Duration = Duration::from_micros(100);

impl Instances {
    /// A store for one instance: its own WASI context, its limits, and a first CPU deadline (a
    /// request sets its own again: see [`arm`]).
    fn store(&self, hops: u32) -> anyhow::Result<Store<HostState>> {
        let state = HostState::new(&self.caps, self.hooks.with_hops(hops))?;
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limits);
        arm(&mut store, self.caps.limits.cpu_time);
        Ok(store)
    }

    /// Instantiate the component in `store`, and note how long that took.
    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Guest> {
        let began = std::time::Instant::now();
        let guest = match &self.pre {
            Pre::Proxy(pre) => Guest::Proxy(pre.instantiate_async(store).await?),
            Pre::Worker(pre) => Guest::Worker(pre.instantiate_async(store).await?),
        };
        self.instantiation_ns
            .fetch_min(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(guest)
    }

    /// The spare, if one is ready.
    fn take_spare(&self) -> Option<(Store<HostState>, Guest)> {
        self.spare.lock().expect("spare").take()
    }

    /// Start making the next one, if instantiating is slow enough to be worth it and none is
    /// ready or being made.
    fn refill(self: &Arc<Self>) {
        let fastest = self.instantiation_ns.load(Ordering::Relaxed);
        // After the first request only: its instantiation (inline) is the first measure.
        if fastest == u64::MAX
            || fastest < SPARE_ABOVE.as_nanos() as u64
            || self.spare.lock().expect("spare").is_some()
            || self.making.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let me = self.clone();
        let runtime = tokio::runtime::Handle::current();
        // Not `tokio::spawn`: a task spawned from a worker waits in that worker's LIFO slot,
        // which no other worker steals, until the request running there is done.
        tokio::task::spawn_blocking(move || {
            let made = runtime.block_on(async {
                let mut store = me.store(0)?;
                let guest = me.instantiate(&mut store).await?;
                anyhow::Ok((store, guest))
            });
            // A failure is left to the request that would have used it: it instantiates
            // inline, and reports what goes wrong.
            if let Ok(instance) = made {
                *me.spare.lock().expect("spare") = Some(instance);
            }
            me.making.store(false, Ordering::Release);
        });
    }
}

/// Set the store's CPU deadline from now: its budget, or, without one, a yield to other tasks
/// every 10 ticks (the first deadline is set too, or it would yield at its first check: a
/// store's deadline starts at 0).
fn arm(store: &mut Store<HostState>, cpu_time: Option<Duration>) {
    match cpu_time {
        Some(budget) => {
            store.set_epoch_deadline(super::engine::ticks(budget));
            store.epoch_deadline_trap();
        }
        None => {
            store.set_epoch_deadline(10);
            store.epoch_deadline_async_yield_and_update(10);
        }
    }
}

impl HttpService {
    /// Pre-instantiate `component` (links every import now, so a missing one is an error here,
    /// not at the first request).
    pub fn new(
        engine: Arc<WasmEngine>,
        component: &Component,
        settings: HttpSettings,
    ) -> anyhow::Result<Self> {
        let linked = engine
            .linker()
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)?;
        let pre = if engine.exports(component, worker::EXPORT) {
            Pre::Worker(worker::ServedPre::new(linked).map_err(anyhow::Error::from)?)
        } else {
            Pre::Proxy(ProxyPre::new(linked).map_err(anyhow::Error::from)?)
        };
        Ok(Self {
            permits: Arc::new(Semaphore::new(settings.max_instances.max(1))),
            instances: Arc::new(Instances {
                pre,
                engine,
                caps: settings.caps.clone(),
                hooks: settings.hooks.clone(),
                spare: Default::default(),
                making: Default::default(),
                instantiation_ns: AtomicU64::new(u64::MAX),
            }),
            settings,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            active: Arc::new(AtomicU64::new(0)),
            warm: Arc::default(),
            retiring: Arc::default(),
        })
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Handle one request in a fresh instance.
    pub async fn handle<B>(&self, req: http::Request<B>) -> http::Response<ResponseBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Cheap copies (the URI shares its bytes); the line is written only for a failure.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        match self.run(req).await {
            Ok(resp) => resp,
            Err((kind, reason)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(log) = &self.settings.errors {
                    let path = uri.path();
                    log(
                        kind,
                        &format!("{method} {path} failed in the guest: {reason}"),
                    );
                }
                super::outgoing::json_response(
                    500,
                    &format!("service `{}` failed: {reason}", self.settings.name),
                )
            }
        }
    }

    /// Free `done`: when it is the only instance alive, once its response is on its way, not
    /// before. Freeing an instance resets its pool slot (the memory it dirtied is restored from
    /// the image: ~0.3 ms for a JavaScript Worker's first request, ~0.1 ms after), work the
    /// client need not wait for. A task spawned from a worker thread waits in its LIFO slot
    /// until the request's task next yields, which is after hyper has written the response; a
    /// request that comes first frees it before taking an instance. With other instances
    /// alive it is freed now: deferred under load, freeing spreads requests over more pool
    /// slots (measured: +11% memory, -5% throughput at 8 connections, A/B).
    fn retire(&self, done: Retired) {
        if self.active.load(Ordering::Relaxed) > 1 {
            drop(done);
            return;
        }
        self.retiring.lock().expect("retiring").push(done);
        let retiring = self.retiring.clone();
        tokio::spawn(async move { free(&retiring) });
    }

    async fn run<B>(
        &self,
        req: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, (Failure, String)>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        free(&self.retiring);
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| (Failure::Other, "service is stopping".to_string()))?;
        let hops = req
            .headers()
            .get(HOPS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let caps = &self.settings.caps;
        let made_ahead = if self.settings.reuse > 1 {
            let warm = self.warm.lock().expect("warm instances").pop();
            warm.map(|w| (w.store, w.guest, w.served))
        } else {
            let spare = self.instances.take_spare();
            // The next request's instance is made while this one runs.
            self.instances.refill();
            spare.map(|(store, guest)| (store, guest, 0))
        };
        let (store, guest, served) = match made_ahead {
            Some((mut store, guest, served)) => {
                store.data_mut().hooks = self.settings.hooks.with_hops(hops);
                arm(&mut store, caps.limits.cpu_time);
                (store, Some(guest), served)
            }
            None => {
                let store = self
                    .instances
                    .store(hops)
                    .map_err(|e| (Failure::Other, format!("{e:#}")))?;
                (store, None, 0)
            }
        };
        let instance = Instance {
            permit,
            store,
            guest,
            served,
        };
        match self.instances.pre {
            Pre::Proxy(_) => self
                .run_proxy(req, instance)
                .await
                .map(|resp| resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())),
            Pre::Worker(_) => self.run_worker(req, instance).await,
        }
    }

    /// Serve `req` with a wasi:http instance: it answers through its response outparam, and may
    /// stream its body after answering.
    async fn run_proxy<B>(
        &self,
        req: http::Request<B>,
        instance: Instance,
    ) -> Result<http::Response<wasmtime_wasi_http::WasiBody>, (Failure, String)>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Instance {
            permit,
            mut store,
            guest,
            served,
        } = instance;
        let caps = &self.settings.caps;
        let reuse = self.settings.reuse;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| (Failure::Other, format!("bad request: {e:#}")))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(|e| (Failure::Other, format!("{e:#}")))?;
        let instances = self.instances.clone();
        let memory = caps.limits.memory;
        let cpu = caps.limits.cpu_time;
        let errors = self.settings.errors.clone();
        let guard = ActiveGuard::new(&self.active);
        let warm = self.warm.clone();
        let mut instance = Box::pin(async move {
            let guest = match guest {
                Some(g) => g,
                None => instances.instantiate(&mut store).await?,
            };
            let Guest::Proxy(proxy) = &guest else {
                wasmtime::bail!("the component does not export wasi:http/incoming-handler");
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, out)
                .await?;
            if served + 1 < reuse {
                warm.lock().expect("warm instances").push(Warm {
                    store,
                    guest,
                    served: served + 1,
                });
                return Ok(None);
            }
            Ok(Some(Retired {
                _store: store,
                _guest: guest,
                _permit: permit,
                _alive: guard,
            }))
        });
        // The instance runs inline, in the caller's task, until it answers: no task to spawn
        // and no other thread to wake for the common request that is done when it responds.
        // Only an instance still streaming its body after answering goes on in a task of its own.
        let deadline = tokio::time::sleep(self.settings.timeout);
        tokio::pin!(deadline);
        let mut rx = rx;
        let mut finished = None;
        let answer = std::future::poll_fn(|cx| {
            use std::task::Poll;
            if finished.is_none()
                && let Poll::Ready(r) = instance.as_mut().poll(cx)
            {
                finished = Some(r);
            }
            if finished.is_some() {
                // Not `poll`: tokio's cooperative budget, spent by the instance's host calls,
                // could make a filled channel look empty. An instance that ended without
                // answering still holds the sender (in its store), so empty means no answer.
                return Poll::Ready(match rx.try_recv() {
                    Ok(r) => Answer::Given(r),
                    Err(_) => Answer::Dropped,
                });
            }
            match std::pin::Pin::new(&mut rx).poll(cx) {
                Poll::Ready(Ok(r)) => return Poll::Ready(Answer::Given(r)),
                Poll::Ready(Err(_)) => return Poll::Ready(Answer::Dropped),
                Poll::Pending => {}
            }
            match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Answer::Late),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match answer {
            Answer::Given(Ok(resp)) => {
                match finished {
                    Some(Err(e)) => {
                        // Answered, then failed: the body may be cut short; report it.
                        if let Some(log) = errors {
                            let (kind, why) = explain(&e, memory, cpu);
                            log(kind, &format!("failed after responding: {why}"));
                        }
                    }
                    Some(Ok(Some(done))) => self.retire(done),
                    Some(Ok(None)) => {}
                    // The body may still be streaming from the guest: let it finish, and
                    // report a late failure.
                    None => {
                        tokio::spawn(async move {
                            if let Err(e) = instance.await
                                && let Some(log) = errors
                            {
                                let (kind, why) = explain(&e, memory, cpu);
                                log(kind, &format!("failed after responding: {why}"));
                            }
                        });
                    }
                }
                Ok(resp)
            }
            Answer::Given(Err(code)) => Err((
                Failure::Other,
                format!("the guest answered with an error: {code:?}"),
            )),
            Answer::Dropped => Err(match finished {
                Some(Ok(_)) => (
                    Failure::Other,
                    "the guest returned without a response".to_string(),
                ),
                None => (
                    Failure::Other,
                    "the guest dropped its response without answering".to_string(),
                ),
                Some(Err(e)) => explain(&e, memory, cpu),
            }),
            Answer::Late => Err(late(self.settings.timeout)),
        }
    }

    /// Serve `req` with a `pactown:worker/handler` instance: the request whole in one call, the
    /// response whole out of it. Work the guest left pending (`ctx.waitUntil`) is settled after
    /// the response is on its way, before the instance serves anything else.
    async fn run_worker<B>(
        &self,
        req: http::Request<B>,
        instance: Instance,
    ) -> Result<http::Response<ResponseBody>, (Failure, String)>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Instance {
            permit,
            mut store,
            guest,
            served,
        } = instance;
        let limits = &self.settings.caps.limits;
        let (memory, cpu, timeout) = (limits.memory, limits.cpu_time, self.settings.timeout);
        // A request the guest never sees is the client's failure, not the guest's.
        let request = match worker::request(req, memory).await {
            Ok(r) => r,
            Err(refused) => {
                return Ok(super::outgoing::json_response(refused.status, &refused.why));
            }
        };
        let guard = ActiveGuard::new(&self.active);
        let call = async {
            let guest = match guest {
                Some(g) => g,
                None => self.instances.instantiate(&mut store).await?,
            };
            let Guest::Worker(w) = &guest else {
                wasmtime::bail!("the component does not export {}", worker::EXPORT);
            };
            let answer = w
                .pactown_worker_handler()
                .call_handle(&mut store, &request.head, &request.body)
                .await?;
            Ok((guest, answer))
        };
        let (guest, answer) = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(explain(&e, memory, cpu)),
            Err(_) => return Err(late(timeout)),
        };
        let worker::Answer { response, pending } =
            worker::response(answer).map_err(|e| (Failure::Other, e))?;
        let response = response.map(|b| {
            b.map_err(|never| -> BoxError { match never {} })
                .boxed_unsync()
        });
        let keep = served + 1 < self.settings.reuse;
        let warm = self.warm.clone();
        let keep_warm = move |store, guest| {
            if keep {
                warm.lock().expect("warm instances").push(Warm {
                    store,
                    guest,
                    served: served + 1,
                });
            }
        };
        if !pending {
            if keep {
                keep_warm(store, guest);
            } else {
                self.retire(Retired {
                    _store: store,
                    _guest: guest,
                    _permit: permit,
                    _alive: guard,
                });
            }
            return Ok(response);
        }
        let errors = self.settings.errors.clone();
        tokio::spawn(async move {
            let (_permit, _alive) = (permit, guard);
            let Guest::Worker(w) = &guest else { return };
            arm(&mut store, cpu);
            let settled =
                tokio::time::timeout(timeout, w.pactown_worker_handler().call_settle(&mut store))
                    .await;
            let why = match settled {
                Ok(Ok(())) => return keep_warm(store, guest),
                Ok(Err(e)) => explain(&e, memory, cpu),
                Err(_) => late(timeout),
            };
            if let Some(log) = errors {
                log(why.0, &format!("failed after responding: {}", why.1));
            }
        });
        Ok(response)
    }
}

/// The instance a request gets: its permit, its store, and the instance itself unless it is to
/// be made in the request (then the store is new).
struct Instance {
    permit: tokio::sync::OwnedSemaphorePermit,
    store: Store<HostState>,
    guest: Option<Guest>,
    served: u32,
}

/// An instance that has answered and serves nothing more (see [`HttpService::retire`]), with
/// what it holds: its permit and its place among the live ones go with it (fields drop in
/// order: the store, whose pool slot is reset then, before the permit that lets another
/// instance take a slot).
struct Retired {
    _store: Store<HostState>,
    _guest: Guest,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _alive: ActiveGuard,
}

/// Free the instances waiting in `retiring` (outside its lock).
fn free(retiring: &std::sync::Mutex<Vec<Retired>>) {
    let done = std::mem::take(&mut *retiring.lock().expect("retiring"));
    drop(done);
}

/// How a request's instance ended up answering.
enum Answer<T> {
    /// It set its response (or an error code).
    Given(T),
    /// It dropped the response without setting it, or ended (returned or trapped) first.
    Dropped,
    /// It ran past the wall-clock deadline.
    Late,
}

/// A wasm HTTP service as an in-process callee of other guests: wasm → wasm without TCP.
pub struct InProcessHttp(pub Arc<HttpService>);

impl super::outgoing::InProcess for InProcessHttp {
    fn call(
        &self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = http::Response<wasmtime_wasi_http::WasiBody>> + Send>,
    > {
        // The request body already drains on its own (the outgoing hook wraps every body).
        let svc = self.0.clone();
        Box::pin(async move {
            svc.handle(request).await.map(|b| {
                b.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
                    .boxed_unsync()
            })
        })
    }
}

/// Counts live instances while it lives.
struct ActiveGuard(Arc<AtomicU64>);

impl ActiveGuard {
    fn new(c: &Arc<AtomicU64>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a guest ran into, and why it failed in words.
pub fn explain(
    e: &wasmtime::Error,
    memory: usize,
    cpu_time: Option<Duration>,
) -> (Failure, String) {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>()
        && *trap == wasmtime::Trap::Interrupt
    {
        let budget = cpu_time.map(humanize).unwrap_or_default();
        return (
            Failure::Cpu,
            format!("ran past its CPU time limit of {budget} (trap: interrupt)"),
        );
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory")
        || text.contains("memory") && text.contains("limit")
    {
        return (
            Failure::Memory,
            format!(
                "ran out of memory (limit {} MiB): {}",
                memory >> 20,
                first_line(&text)
            ),
        );
    }
    (Failure::Other, format!("trapped: {}", first_line(&text)))
}

/// A guest that ran past its wall-clock deadline.
fn late(timeout: Duration) -> (Failure, String) {
    (
        Failure::Other,
        format!("ran past its deadline of {}", humanize(timeout)),
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn humanize(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
