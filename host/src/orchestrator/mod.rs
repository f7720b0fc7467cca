//! The orchestrator runs a Plan: it binds every service's stable address, prepares sandboxes,
//! starts services in dependency waves (each wave once the previous one is ready), keeps them
//! running, answers control requests, and stops everything in reverse order.

pub mod checks;
pub mod engine_start;
pub mod health;
mod launch;
pub mod logs;
mod ports;
mod reload;
mod roll;
pub mod session;
pub mod supervisor;
mod wasm_backend;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};

use crate::build::{self, Built, Cache};
use crate::control::status::{EcosystemStatus, State};
use crate::control::{Reply, Request, StateDir};
use crate::plan::{Plan, ServicePlan};
use crate::router::{Endpoint, RequestLog, Router};
use crate::spec::graph::DependencyGraph;
use crate::spec::{Ecosystem, PortSpec};
use logs::{ConsoleLine, ServiceLog};
use supervisor::{Backend, NotReady, ServiceRuntime};

use pactown_runtime::wasm::{HttpService, WasmEngine};

/// A prepared service: what its native environment adds, and what runs.
pub struct PreparedService {
    /// Environment additions of a native service.
    pub native: build::Prepared,
    /// What runs.
    pub backend: Backend,
}

/// Work done while preparing, to show that a warm start builds and compiles nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuildStats {
    /// Components a toolchain built (cargo, componentize-py, componentize-js).
    pub toolchain_builds: u64,
    /// Components compiled to native code.
    pub compiled: u64,
    /// Components loaded precompiled.
    pub loaded: u64,
}

/// wasm-http services by name, for in-process calls between guests.
type HttpRegistry = Arc<std::sync::RwLock<std::collections::HashMap<String, Arc<HttpService>>>>;

/// How `up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Copy service output to stdout with `service |` prefixes.
    pub console: bool,
    /// Colour on the console.
    pub color: bool,
    /// The admin/gateway address; `None` for the default (127.0.0.1:7100, or the next free).
    pub listen: Option<SocketAddr>,
    /// Where the services' stable addresses are bound (127.0.0.1; all interfaces in a
    /// container).
    pub bind: std::net::IpAddr,
}

/// Where the admin endpoint and the `<service>.localhost` gateway listen by default.
pub const DEFAULT_GATEWAY_PORT: u16 = 7100;

/// A failure of `up` that is the services' fault, not pactown's: reported with log tails.
#[derive(Debug)]
pub struct StartFailure {
    /// What happened.
    pub message: String,
    /// The failing service's last log lines.
    pub tail: Vec<String>,
    /// Where its full log is.
    pub log: std::path::PathBuf,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartFailure {}

/// A running ecosystem.
pub struct Orchestrator {
    /// The plan, with the ports actually bound.
    pub plan: Plan,
    services: Arc<std::sync::RwLock<IndexMap<String, Arc<ServiceRuntime>>>>,
    /// The router, once the addresses are served (a reload adds services to it).
    router: std::sync::OnceLock<Router>,
    state: StateDir,
    socket: std::path::PathBuf,
    control: Option<tokio::net::UnixListener>,
    listeners: IndexMap<String, std::net::TcpListener>,
    proxies: IndexMap<String, std::net::TcpListener>,
    proxy_addrs: std::sync::RwLock<IndexMap<String, SocketAddr>>,
    /// Where stable addresses are bound, the console and the anomaly log (a reload that adds
    /// a service needs them).
    bind_ip: std::net::IpAddr,
    console_tx: Option<mpsc::Sender<ConsoleLine>>,
    anomalies: crate::jsonlog::JsonLog,
    admin: Option<std::net::TcpListener>,
    /// The admin/gateway address.
    pub gateway: SocketAddr,
    console_done: Option<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    say: Arc<dyn Fn(&str) + Send + Sync>,
    http_registry: HttpRegistry,
    engine: std::sync::OnceLock<Arc<WasmEngine>>,
    /// The engine while it is made (see [`EngineStart`]).
    engine_start: std::sync::Mutex<Option<engine_start::EngineStart>>,
    stats: std::sync::Mutex<BuildStats>,
    /// This run's secret: it proves a caller header pactown set (see the router).
    proof: Arc<str>,
    /// Its `builtin: job-control` services (the dashboard shows their jobs).
    job_controls: Vec<String>,
    /// The ecosystem as last loaded (a reload compares with it).
    loaded: std::sync::Mutex<Option<Ecosystem>>,
    /// Each service's plan as it runs now.
    applied: std::sync::Mutex<IndexMap<String, ServicePlan>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl Orchestrator {
    /// Bind every stable address, then plan with the ports we got. Nothing starts yet.
    /// `say` tells the user what happens (first-use installs, moved ports).
    pub fn bind(
        eco: &Ecosystem,
        facts: &crate::facts::HostFacts,
        state: StateDir,
        opts: &UpOptions,
        say: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> anyhow::Result<Self> {
        let graph = DependencyGraph::from_ecosystem(eco).map_err(crate::spec::Diagnostics::from)?;
        let preferred = crate::spec::ecosystem::assign_ports(eco);
        let reserved: Vec<u16> = preferred
            .values()
            .flatten()
            .copied()
            .filter(|p| *p != 0)
            .collect();
        let mut listeners = IndexMap::new();
        let mut ports = IndexMap::new();
        let mut taken = reserved.clone();
        for (name, port) in &preferred {
            let Some(want) = *port else {
                ports.insert(name.clone(), None);
                continue;
            };
            let (listener, moved) = router_bind(opts.bind, want, eco.base_port, &taken)
                .with_context(|| format!("cannot bind a port for `{name}`"))?;
            let got = listener.local_addr()?.port();
            if moved {
                let why = match eco.services[name.as_str()].port {
                    PortSpec::Fixed(_) => "its port",
                    _ => "the port pactown picked",
                };
                say(&format!("{why} {want} for `{name}` is busy; using {got}"));
            }
            taken.push(got);
            listeners.insert(name.clone(), listener);
            ports.insert(name.clone(), Some(got));
        }
        let admin = match opts.listen {
            Some(addr) => std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr}"))?,
            None => {
                let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
                router_bind(loopback, DEFAULT_GATEWAY_PORT, DEFAULT_GATEWAY_PORT, &taken)?.0
            }
        };
        let gateway = admin.local_addr()?;
        let plan = Plan::build(eco, &graph, &ports, facts);
        // Each native service gets its own proxy address, so the proxy knows who calls.
        let mut proxies = IndexMap::new();
        for (name, sp) in &plan.services {
            if sp.sandbox.kind == crate::spec::RuntimeKind::Native {
                proxies.insert(name.clone(), std::net::TcpListener::bind(("127.0.0.1", 0))?);
            }
        }
        let socket = state.socket_path()?;
        // Bound now, so `status` works from the first moment `state.json` names it.
        let _ = std::fs::remove_file(&socket);
        let control = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("cannot create the control socket `{}`", socket.display()))?;
        let (tx, rx) = mpsc::channel::<ConsoleLine>(4096);
        let width = plan
            .services
            .values()
            .map(|s| s.name.len() + if s.replicas > 1 { 3 } else { 0 })
            .max()
            .unwrap_or(4);
        let console_done = opts
            .console
            .then(|| tokio::spawn(logs::console(rx, width, opts.color)));
        let anomalies =
            crate::jsonlog::JsonLog::open(&state.path().join("logs").join("anomalies.log"))?;
        let mut services = IndexMap::new();
        for (i, (name, sp)) in plan.services.iter().enumerate() {
            let log = ServiceLog::open(
                state.path(),
                name,
                i,
                opts.console.then(|| tx.clone()),
                anomalies.clone(),
            )
            .with_context(|| format!("cannot open the log of `{name}`"))?;
            services.insert(name.clone(), ServiceRuntime::new(sp.clone(), Arc::new(log)));
        }
        let applied = plan.services.clone();
        Ok(Self {
            plan,
            services: Arc::new(std::sync::RwLock::new(services)),
            router: std::sync::OnceLock::new(),
            state,
            socket,
            control: Some(control),
            listeners,
            proxy_addrs: std::sync::RwLock::new(
                proxies
                    .iter()
                    .filter_map(|(n, l)| Some((n.clone(), l.local_addr().ok()?)))
                    .collect(),
            ),
            bind_ip: opts.bind,
            console_tx: opts.console.then(|| tx.clone()),
            anomalies: anomalies.clone(),
            proxies,
            admin: Some(admin),
            gateway,
            console_done,
            tasks: Vec::new(),
            say,
            http_registry: Default::default(),
            engine: std::sync::OnceLock::new(),
            engine_start: Default::default(),
            stats: Default::default(),
            proof: crate::router::new_secret(),
            loaded: std::sync::Mutex::new(None),
            applied: std::sync::Mutex::new(applied),
            reloading: tokio::sync::Mutex::new(()),
            job_controls: eco
                .services
                .values()
                .filter(|s| {
                    s.builtin
                        .as_ref()
                        .is_some_and(|(b, _)| *b == crate::spec::service::Builtin::JobControl)
                })
                .map(|s| s.name.clone())
                .collect(),
        })
    }

    /// A service's runtime.
    pub(crate) fn rt(&self, name: &str) -> Option<Arc<ServiceRuntime>> {
        self.services.read().expect("services").get(name).cloned()
    }

    /// Every service's runtime now, in file order (then those a reload added).
    pub(crate) fn runtimes(&self) -> IndexMap<String, Arc<ServiceRuntime>> {
        self.services.read().expect("services").clone()
    }

    /// Take the control socket's listener (to serve it with [`Self::run_until_stopped`]).
    pub fn take_control(&mut self) -> Option<tokio::net::UnixListener> {
        self.control.take()
    }

    /// The control socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The live status.
    pub fn status(&self) -> EcosystemStatus {
        EcosystemStatus::live(
            &self.plan.ecosystem,
            Some(self.gateway),
            self.runtimes().values().map(|s| s.status()).collect(),
        )
    }

    /// Serve every stable address (503 until a replica is ready), each native service's proxy,
    /// and the admin/gateway address.
    pub fn serve_addresses(&mut self, dashboard_actions: bool) -> anyhow::Result<()> {
        let endpoints: IndexMap<String, Arc<Endpoint>> = self
            .runtimes()
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    Endpoint::new(s.clone() as Arc<dyn crate::router::Upstream>),
                )
            })
            .collect();
        let log = RequestLog::open(&self.state.path().join("logs").join("requests.log"))?;
        let router = Router::new(endpoints, log, self.proof.clone());
        let _ = self.router.set(router.clone());
        let tokio_listener = |l: std::net::TcpListener| -> anyhow::Result<tokio::net::TcpListener> {
            l.set_nonblocking(true)?;
            Ok(tokio::net::TcpListener::from_std(l)?)
        };
        for (name, listener) in self.listeners.drain(..) {
            let ep = router.endpoint(&name).expect("an endpoint per listener");
            self.tasks.push(tokio::spawn(
                router.clone().serve(tokio_listener(listener)?, ep),
            ));
        }
        for (name, listener) in self.proxies.drain(..) {
            let policy = Arc::new(self.plan.services[name.as_str()].calls.clone());
            self.tasks.push(tokio::spawn(router.clone().serve_with(
                tokio_listener(listener)?,
                move |r, req, peer| {
                    let policy = policy.clone();
                    async move { crate::router::proxy::handle(r, req, peer, policy).await }
                },
            )));
        }
        if let Some(admin) = self.admin.take() {
            let dashboard = Arc::new(crate::router::dashboard::Dashboard {
                ecosystem: self.plan.ecosystem.clone(),
                logs: self.state.path().join("logs"),
                edges: self
                    .plan
                    .services
                    .values()
                    .map(|s| (s.name.clone(), s.depends_on.clone()))
                    .collect(),
                jobs: self
                    .plan
                    .services
                    .values()
                    .filter(|s| self.job_controls.contains(&s.name))
                    .filter_map(|s| Some((s.name.clone(), s.port?)))
                    .collect(),
                actions: dashboard_actions.then(|| {
                    Arc::new(RestartFromDashboard(self.services.clone()))
                        as Arc<dyn crate::router::dashboard::Actions>
                }),
            });
            self.tasks.push(tokio::spawn(router.clone().serve_with(
                tokio_listener(admin)?,
                move |r, req, peer| {
                    let dashboard = dashboard.clone();
                    async move { crate::router::admin::handle(r, req, peer, &dashboard).await }
                },
            )));
        }
        Ok(())
    }

    /// What preparing cost (toolchain builds, components compiled or loaded).
    pub fn build_stats(&self) -> BuildStats {
        *self.stats.lock().expect("stats")
    }

    /// Build every service (see [`build::build_all`]: native sandboxes get their files and
    /// dependencies, components are built or found in the cache), then load the components
    /// (precompiled, or compiled once).
    pub async fn prepare(
        &self,
        eco: &Ecosystem,
        cache: &Cache,
    ) -> anyhow::Result<IndexMap<String, PreparedService>> {
        // A warm start has nothing to build: no thread for it.
        let built = match build::all_cached(&self.plan, eco, cache) {
            Some(built) => built,
            None => {
                let (plan, eco2, cache2, say) = (
                    self.plan.clone(),
                    eco.clone(),
                    cache.clone(),
                    self.say.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    build::build_all(&plan, &eco2, &cache2, &|m: &str| say(m))
                })
                .await
                .context("the build task panicked")??
            }
        };
        // Components are loaded all at once (each on a thread of the blocking pool): a large
        // one (JavaScript, Python) takes milliseconds to map and check.
        let prepared = built.into_iter().map(|(name, b)| async move {
            let backend = match b {
                Built::Native(p) => {
                    build::grants::prepare_writable(
                        &self.plan,
                        &self.plan.services[name.as_str()],
                    )?;
                    return anyhow::Ok((
                        name,
                        PreparedService {
                            native: p,
                            backend: Backend::Native,
                        },
                    ));
                }
                Built::Component(component) => {
                    self.stats.lock().expect("stats").toolchain_builds +=
                        u64::from(component.built);
                    self.wasm_backend(&self.plan.services[name.as_str()], &component, cache)
                        .await?
                }
                Built::Builtin => self.builtin_backend(&self.plan, &name, eco)?,
            };
            Ok((
                name,
                PreparedService {
                    native: build::Prepared::default(),
                    backend,
                },
            ))
        });
        let mut out = IndexMap::new();
        for r in futures_util::future::join_all(prepared).await {
            let (name, service) = r?;
            out.insert(name, service);
        }
        let stats = self.engine.get().map(|e| {
            (
                e.stats.compiled.load(std::sync::atomic::Ordering::Relaxed),
                e.stats.loaded.load(std::sync::atomic::Ordering::Relaxed),
            )
        });
        if let Some((compiled, loaded)) = stats {
            let mut s = self.stats.lock().expect("stats");
            s.compiled = compiled;
            s.loaded = loaded;
        }
        Ok(out)
    }

    /// Start the services wave by wave; each wave waits for the previous to be ready. On a
    /// failure, the error carries the failing service's last log lines.
    pub async fn start(
        &self,
        prepared: &IndexMap<String, PreparedService>,
        waves: bool,
    ) -> anyhow::Result<()> {
        let exe = pactown_runtime::native::launcher::self_exe()
            .context("cannot find the pactown binary for the sandbox shim")?;
        // All at once: the stable addresses hold a request to a service still starting
        // (router::Upstream::starting), so no service waits on another's start. The readiness
        // is still checked, and reported, in dependency order.
        let mut waiting = Vec::new();
        for wave in &self.plan.waves {
            for name in wave {
                let rt = &self.rt(name).expect("a planned service");
                let p = &prepared[name.as_str()];
                if matches!(p.backend, Backend::Native) && rt.plan.run.is_none() {
                    rt.log.event(name, "no run block: nothing to start");
                    continue;
                }
                let launch = Arc::new(self.launch_of(&rt.plan, p, &exe));
                rt.start(launch);
                waiting.push((name, rt.clone(), Instant::now() + rt.plan.health.timeout));
            }
            if !waves {
                continue;
            }
            for (name, rt, deadline) in waiting.drain(..) {
                if let Err(why) = rt.wait_ready(deadline).await {
                    return Err(self.not_ready(name, &rt, why));
                }
            }
        }
        for (name, rt, deadline) in waiting {
            if let Err(why) = rt.wait_ready(deadline).await {
                return Err(self.not_ready(name, &rt, why));
            }
        }
        Ok(())
    }

    /// Why `name` did not start, with its last log lines.
    fn not_ready(&self, name: &str, rt: &ServiceRuntime, why: NotReady) -> anyhow::Error {
        let mut message = match why {
            NotReady::Timeout => format!(
                "service `{name}` was not ready within {}",
                humantime::format_duration(rt.plan.health.timeout)
            ),
            NotReady::Failed => format!("service `{name}` failed to start"),
        };
        message.push_str(&why_not_ready(rt));
        StartFailure {
            message,
            tail: rt.log.tail(15),
            log: logs::log_path(self.state.path(), name),
        }
        .into()
    }

    /// Answer control requests until `down` or the `shutdown` signal; then return.
    pub async fn run_until_stopped(
        self: &Arc<Self>,
        listener: tokio::net::UnixListener,
        mut shutdown: oneshot::Receiver<()>,
    ) -> anyhow::Result<()> {
        let (down_tx, mut down_rx) = mpsc::channel::<()>(1);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = down_rx.recv() => return Ok(()),
                conn = listener.accept() => {
                    let Ok((stream, _)) = conn else { continue };
                    // A service (or anything it started) never steers pactown, whatever it can
                    // see: its request is refused, and logged.
                    if let Some(refusal) = crate::control::peer_refusal(&stream) {
                        tracing::warn!("control socket: {refusal}");
                        let me = self.clone();
                        tokio::spawn(async move { me.refuse(stream, refusal).await });
                        continue;
                    }
                    let me = self.clone();
                    let down = down_tx.clone();
                    tokio::spawn(async move { me.answer(stream, down).await });
                }
            }
        }
    }

    async fn refuse(self: Arc<Self>, stream: tokio::net::UnixStream, refusal: String) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let text = Reply::error(refusal).line();
        let (read, mut write) = stream.into_split();
        // Its request is read (and ignored) first, so the refusal is what it gets, not a reset.
        let mut line = String::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::BufReader::new(read).read_line(&mut line),
        )
        .await;
        let _ = write.write_all(text.as_bytes()).await;
    }

    async fn answer(self: Arc<Self>, stream: tokio::net::UnixStream, down: mpsc::Sender<()>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        if tokio::io::BufReader::new(read)
            .read_line(&mut line)
            .await
            .is_err()
        {
            return;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::error(format!("bad request: {e}")),
            Ok(Request::Status) => Reply::Status {
                status: self.status(),
            },
            Ok(Request::Down) => {
                let _ = down.try_send(());
                Reply::Stopping
            }
            Ok(Request::Restart { service }) => match self.rt(&service) {
                None => Reply::error(crate::plan::calls::unknown(&service)),
                Some(rt) => {
                    rt.log.event(&service, "restart requested");
                    match rt.restart().await {
                        Ok(()) => Reply::Restarted {
                            service: rt.status(),
                        },
                        Err(e) => Reply::Error {
                            error: format!("`{service}` did not come back: {e:?}"),
                            tail: rt.log.tail(15),
                        },
                    }
                }
            },
            Ok(Request::Reload { cascade }) => match self.reload(cascade).await {
                Ok(summary) => Reply::Reloaded { summary },
                Err(e) => Reply::error(e),
            },
            Ok(Request::Stop { service }) => match self.rt(&service) {
                None => Reply::error(crate::plan::calls::unknown(&service)),
                Some(rt) => {
                    rt.log.event(&service, "stop requested");
                    rt.stop().await;
                    Reply::Service {
                        service: rt.status(),
                    }
                }
            },
            Ok(Request::Start { service }) => match self.rt(&service) {
                None => Reply::error(crate::plan::calls::unknown(&service)),
                Some(rt) => {
                    rt.log.event(&service, "start requested");
                    match rt.resume() {
                        Err(e) => Reply::error(e),
                        Ok(()) => {
                            match rt.wait_ready(Instant::now() + rt.plan.health.timeout).await {
                                Ok(()) => Reply::Service {
                                    service: rt.status(),
                                },
                                Err(e) => Reply::Error {
                                    error: format!("`{service}` did not come back: {e:?}"),
                                    tail: rt.log.tail(15),
                                },
                            }
                        }
                    }
                }
            },
        };
        let _ = write.write_all(reply.line().as_bytes()).await;
    }

    /// Stop everything in reverse dependency order (each wave's services together).
    pub async fn shutdown(&self) {
        // Services a reload added are in no wave: they go first (nothing depended on them
        // when the ecosystem started).
        let added: Vec<Arc<ServiceRuntime>> = self
            .runtimes()
            .into_iter()
            .filter(|(n, _)| !self.plan.services.contains_key(n))
            .map(|(_, rt)| rt)
            .collect();
        futures_join_all(added.into_iter().map(|rt| async move { rt.stop().await })).await;
        let mut waves = self.plan.waves.clone();
        waves.reverse();
        for wave in waves {
            let stops = wave.iter().map(|name| {
                let rt = self.rt(name);
                async move {
                    let Some(rt) = rt else { return };
                    if rt.status().state != State::Stopped {
                        rt.stop().await;
                    }
                }
            });
            futures_join_all(stops).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        // wasm services reach each other through the registry: empty it to let them go.
        self.http_registry.write().expect("registry").clear();
        self.state.clear(&self.socket);
    }

    /// Lines the console dropped, per service.
    pub fn dropped_console_lines(&self) -> Vec<(String, u64)> {
        self.runtimes()
            .iter()
            .filter(|(_, s)| s.log.dropped() > 0)
            .map(|(n, s)| (n.clone(), s.log.dropped()))
            .collect()
    }

    /// Let the console print what it has, then stop it.
    pub async fn close_console(&mut self) {
        // The console ends once every sender is gone: the services' logs, and the one kept
        // for services a reload adds.
        self.services.write().expect("services").clear();
        self.console_tx = None;
        // The router kept for reloads holds every service (and so its log) too.
        self.router.take();
        if let Some(done) = self.console_done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        }
    }

    /// Report through the user-facing channel.
    pub fn say(&self, msg: &str) {
        (self.say)(msg)
    }
}

/// Clean up after a previous run of this ecosystem whose pactown is gone (a crash, SIGKILL):
/// kill what is still in its cgroups and remove its stale state. Call only while holding the
/// ecosystem's lock, or after finding it free. Returns a line for the user, when there was
/// anything to clean.
pub fn reap_previous(state: &StateDir) -> Option<String> {
    let stale = state.read_state();
    let scope = crate::build::confine::cgroup_scope(state.path());
    let reaped = pactown_runtime::native::cgroup::reap_scope(&scope);
    if let Some(s) = &stale {
        state.clear(&s.socket);
    }
    if stale.is_none() && reaped.is_empty() {
        return None;
    }
    let who = stale.map_or("a previous run".to_string(), |s| {
        format!("the previous run (pid {}, since {})", s.pid, s.started_at)
    });
    let n: usize = reaped.iter().map(|(_, pids)| pids.len()).sum();
    Some(if n == 0 {
        format!("{who} ended without stopping; nothing of it was left running")
    } else {
        format!(
            "{who} ended without stopping; killed {n} leftover process(es) of {}",
            reaped
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// What a service that did not come up tells about why: what its sandbox refused it, or that
/// it wrote nothing at all.
fn why_not_ready(rt: &ServiceRuntime) -> String {
    let denials = rt.log.recent_denials();
    let mut out = String::new();
    if rt.log.written() == 0 && rt.plan.sandbox.kind == crate::spec::RuntimeKind::Native {
        out.push_str("; it wrote nothing to its log");
    }
    if !denials.is_empty() {
        out.push_str(&format!(
            "; its sandbox refused: {}\nhint: dependencies are installed at build time (`markpact:deps`, a package.json, go.mod or requirements.txt block), and a service reaches only the services in its `depends_on` and the hosts in its `allowed_hosts`",
            denials.join(", ")
        ));
    }
    out
}

/// Await all futures (a small join_all, to avoid a dependency).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl IntoIterator<Item = F>,
) {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

fn router_bind(
    host: std::net::IpAddr,
    want: u16,
    base: u16,
    taken: &[u16],
) -> std::io::Result<(std::net::TcpListener, bool)> {
    let reserved: Vec<u16> = taken.iter().copied().filter(|p| *p != want).collect();
    crate::router::bind(host, want, base, &reserved)
}

/// The dashboard's restart button (`up --dashboard-actions`): a rolling restart, as
/// `pactown restart` does.
struct RestartFromDashboard(Arc<std::sync::RwLock<IndexMap<String, Arc<ServiceRuntime>>>>);

impl crate::router::dashboard::Actions for RestartFromDashboard {
    fn restart(
        &self,
        service: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let rt = self.0.read().expect("services").get(&service).cloned();
        Box::pin(async move {
            let rt = rt.ok_or_else(|| format!("no service `{service}`"))?;
            rt.restart()
                .await
                .map_err(|why| format!("`{service}` did not come back: {why:?}"))
        })
    }
}
