//! Supervision of one service: N replicas, each a task (`replica.rs`) that starts the process,
//! waits for it to become ready, keeps checking it, and restarts it when it dies (exponential
//! backoff from 100 ms, capped at 30 s, reset after a healthy minute). The router reads which
//! replicas are ready from here; `restart`, `stop` and reloads ask here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pactown_runtime::native::cgroup::CgroupGuard;
use pactown_runtime::native::{NativeChild, NativeSpec, SandboxPolicy};
use pactown_runtime::wasm::{
    self, Capabilities, CommandInstance, CommandService, HttpService, OutgoingHooks,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::logs::ServiceLog;
use crate::control::status::{ReplicaStatus, ServiceStatus, State};
use crate::plan::ServicePlan;

mod replica;

/// What a replica should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Desired {
    /// Running; a new generation means "restart now".
    Running(u64),
    /// Stopped.
    Stopped,
}

/// Everything needed to start a replica.
#[derive(Clone)]
pub struct Launch {
    /// The pactown binary (for the sandbox shim).
    pub exe: PathBuf,
    /// Environment without the per-replica port variables.
    pub env: Vec<(String, String)>,
    /// Confinement of native processes (`None`: unconfined).
    pub sandbox: Option<crate::build::confine::NativeSandbox>,
    /// The run command of a native service (given to `sh -c`).
    pub run: Option<String>,
    /// What runs.
    pub backend: Backend,
}

/// What a service's replicas are.
#[derive(Clone)]
pub enum Backend {
    /// Processes through the sandbox shim.
    Native,
    /// A long-running component; each replica an instance on its own port.
    WasmCommand {
        /// The loaded component.
        service: Arc<CommandService>,
        /// Its capabilities (the replica's port is added per replica).
        caps: Capabilities,
        /// Its outgoing HTTP.
        hooks: OutgoingHooks,
    },
    /// A component handling requests in-process, a fresh instance per request.
    WasmHttp(Arc<HttpService>),
    /// A service pactown serves itself; each replica serves it on its own port.
    Builtin(Arc<dyn crate::jobs::Handler>),
}

/// A running replica: a process or a component instance.
pub(super) enum Running {
    Native(Box<NativeChild>),
    Wasm(CommandInstance),
    Builtin(JoinHandle<()>),
}

impl Running {
    pub(super) fn pid(&self) -> i32 {
        match self {
            Running::Native(c) => c.pid(),
            Running::Wasm(_) | Running::Builtin(_) => std::process::id() as i32,
        }
    }

    pub(super) async fn wait(&mut self) -> i32 {
        match self {
            Running::Native(c) => c.wait().await.unwrap_or(1),
            Running::Wasm(i) => i.wait().await,
            // It serves until stopped.
            Running::Builtin(t) => t.await.map_or(1, |()| 0),
        }
    }

    pub(super) async fn stop(&mut self, grace: Duration) -> i32 {
        match self {
            Running::Native(c) => c.stop(grace).await.unwrap_or(1),
            // A component has no signal handlers: its instance is dropped.
            Running::Wasm(i) => {
                i.kill();
                i.wait().await
            }
            Running::Builtin(t) => {
                t.abort();
                let _ = t.await;
                0
            }
        }
    }
}

/// A supervised service.
pub struct ServiceRuntime {
    /// The plan it runs.
    pub plan: ServicePlan,
    /// Its logs.
    pub log: Arc<ServiceLog>,
    pub(super) replicas: Mutex<Vec<ReplicaStatus>>,
    pub(super) changed: watch::Sender<u64>,
    pub(super) desired: Vec<watch::Sender<Desired>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(super) http: std::sync::RwLock<Option<Arc<HttpService>>>,
    next: AtomicUsize,
    pub(super) stopping: std::sync::atomic::AtomicBool,
    /// How it was started (to start it again after a stop); none before `start`, when
    /// requests to it are held: it is about to start.
    pub(super) launch: Mutex<Option<Arc<Launch>>>,
    /// Its native replicas run in their own namespaces (the shim's child is their init).
    isolated: bool,
}

/// Why a service did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// A replica failed for good (exited without restart).
    Failed,
    /// The startup deadline passed.
    Timeout,
}

impl ServiceRuntime {
    /// Create the service's runtime state (nothing starts yet).
    pub fn new(plan: ServicePlan, log: Arc<ServiceLog>) -> Arc<Self> {
        let n = plan.replica_slots();
        let replicas = (1..=n).map(ReplicaStatus::stopped).collect();
        Arc::new(Self {
            log,
            replicas: Mutex::new(replicas),
            changed: watch::channel(0).0,
            desired: (0..n)
                .map(|_| watch::channel(Desired::Running(0)).0)
                .collect(),
            tasks: Mutex::new(Vec::new()),
            http: std::sync::RwLock::new(None),
            next: AtomicUsize::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
            launch: Mutex::new(None),
            isolated: plan.sandbox.kind == crate::spec::RuntimeKind::Native
                && plan.sandbox.layer_on(crate::plan::LayerName::Namespaces),
            plan,
        })
    }

    /// Start every replica. Must be called from an async task on a runtime worker thread:
    /// the kernel's parent-death signal is tied to the thread that forks.
    pub fn start(self: &Arc<Self>, launch: Arc<Launch>) {
        if let Backend::WasmHttp(svc) = &launch.backend {
            // Loaded and pre-instantiated: ready now; instances are made per request.
            *self.http.write().expect("http") = Some(svc.clone());
            self.update(0, |r| {
                r.state = State::Ready;
                r.pid = Some(std::process::id() as i32);
            });
            *self.launch.lock().expect("launch") = Some(launch);
            return;
        }
        for i in 0..self.desired.len() {
            self.update(i, |r| r.state = State::Starting);
        }
        // Stored once its replicas say they are starting: until then requests are held.
        *self.launch.lock().expect("launch") = Some(launch.clone());
        let mut tasks = self.tasks.lock().expect("tasks");
        for (i, desired) in self.desired.iter().enumerate() {
            let rt = self.clone();
            let rx = desired.subscribe();
            let launch = launch.clone();
            tasks.push(tokio::spawn(
                async move { rt.run_replica(i, rx, launch).await },
            ));
        }
    }

    /// The current status.
    pub fn status(&self) -> ServiceStatus {
        let mut replicas = self.replicas.lock().expect("replicas").clone();
        if self.plan.sandbox.kind == crate::spec::RuntimeKind::Native {
            for r in &mut replicas {
                r.shim_pid = r.pid;
                r.main_pid = r
                    .pid
                    .and_then(|p| pactown_runtime::native::launcher::main_pid(p, self.isolated));
            }
        }
        ServiceStatus {
            name: self.plan.name.clone(),
            port: self.plan.port,
            state: ServiceStatus::aggregate(&replicas),
            kind: self.plan.sandbox.kind,
            sandbox: self.plan.sandbox.level,
            layers: self.plan.sandbox.layers.clone(),
            health_check: self.plan.health.check.clone(),
            restarts: replicas.iter().map(|r| r.restarts).sum(),
            replicas,
        }
    }

    /// The in-process handler of a `wasm-http` service.
    pub fn http_handler(&self) -> Option<Arc<HttpService>> {
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        self.http.read().expect("http").clone()
    }

    /// Internal ports of ready replicas, starting at the next one in round-robin order.
    pub fn ready_ports(&self) -> Vec<u16> {
        if self.stopping.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut ports: Vec<u16> = self
            .replicas
            .lock()
            .expect("replicas")
            .iter()
            .filter(|r| r.state == State::Ready)
            .filter_map(|r| r.port)
            .collect();
        if !ports.is_empty() {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % ports.len();
            ports.rotate_left(start);
        }
        ports
    }

    /// Wait until every replica is ready, one fails for good, or `deadline`.
    pub async fn wait_ready(&self, deadline: Instant) -> Result<(), NotReady> {
        let mut rx = self.changed.subscribe();
        loop {
            let state = self.status().state;
            match state {
                State::Ready | State::Exited => return Ok(()),
                State::Failed | State::Stopped => return Err(NotReady::Failed),
                State::Starting => {}
            }
            if tokio::time::timeout_at(deadline.into(), rx.changed())
                .await
                .is_err()
            {
                return Err(NotReady::Timeout);
            }
        }
    }

    /// Restart the replicas one at a time, each after the previous one is ready again, so a
    /// service with several replicas keeps answering.
    pub async fn restart(&self) -> Result<(), NotReady> {
        for (i, d) in self.desired.iter().enumerate() {
            d.send_modify(|desired| {
                if let Desired::Running(g) = desired {
                    *g += 1;
                } else {
                    *desired = Desired::Running(0);
                }
            });
            let deadline = Instant::now() + self.plan.health.timeout;
            let mut rx = self.changed.subscribe();
            // Wait to see the replica leave `ready`, then come back.
            let mut left = false;
            loop {
                let s = self.replicas.lock().expect("replicas")[i].state;
                if s != State::Ready {
                    left = true;
                }
                if left && s == State::Ready || s == State::Exited {
                    break;
                }
                if s == State::Failed {
                    return Err(NotReady::Failed);
                }
                if tokio::time::timeout_at(deadline.into(), rx.changed())
                    .await
                    .is_err()
                {
                    return Err(NotReady::Timeout);
                }
            }
        }
        Ok(())
    }

    /// Stop every replica (SIGTERM, grace period, then kill) and wait for them.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if self.http.read().expect("http").is_some() {
            self.update(0, |r| {
                r.state = State::Stopped;
                r.pid = None;
            });
        }
        for d in &self.desired {
            let _ = d.send(Desired::Stopped);
        }
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().expect("tasks"));
        for t in tasks {
            let _ = t.await;
        }
    }

    pub(super) fn update(&self, i: usize, f: impl FnOnce(&mut ReplicaStatus)) {
        {
            let mut r = self.replicas.lock().expect("replicas");
            f(&mut r[i]);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    fn label(&self, i: usize) -> String {
        self.log.label(i + 1, self.desired.len())
    }

    /// Send a started process's output and sandbox reports to the service's log; the task
    /// reading the reports ends with why its sandbox could not be made, if so.
    pub(super) fn attach_output(
        &self,
        child: &mut Running,
        label: &str,
    ) -> Option<JoinHandle<Option<String>>> {
        let mut failure = None;
        if let Running::Native(c) = child {
            if let Some(reports) = c.take_reports() {
                let log = self.log.clone();
                failure = Some(tokio::spawn(
                    async move { log.drain_reports(reports).await },
                ));
            }
            let (out, err) = c.take_output();
            if let Some(out) = out {
                let (log, l) = (self.log.clone(), label.to_string());
                tokio::spawn(async move { log.drain(l, out).await });
            }
            if let Some(err) = err {
                let (log, l) = (self.log.clone(), label.to_string());
                tokio::spawn(async move { log.drain(l, err).await });
            }
        }
        failure
    }

    /// Start replica `i`: a process through the shim, or a component instance.
    pub(super) fn launch(
        &self,
        i: usize,
        label: &str,
        launch: &Launch,
        port: Option<u16>,
    ) -> anyhow::Result<(Running, Option<Arc<CgroupGuard>>)> {
        let mut env = launch.env.clone();
        if let Some(p) = port {
            for var in crate::plan::REPLICA_PORT_VARS {
                env.push((var.to_string(), p.to_string()));
            }
        }
        match &launch.backend {
            Backend::Native | Backend::WasmHttp(_) => {
                let (policy, guard) = match &launch.sandbox {
                    None => (SandboxPolicy::default(), None),
                    Some(sb) => {
                        let mut policy = sb.policy.clone();
                        if let Some(net) = policy.net.as_mut() {
                            net.bind = port.into_iter().collect();
                        }
                        let guard = match sb.cgroup {
                            Some(limits) => {
                                let g = CgroupGuard::create(
                                    &sb.scope,
                                    &format!("{}.{}", self.plan.name, i + 1),
                                    limits,
                                )?;
                                policy.cgroups = g.procs();
                                Some(g)
                            }
                            None => None,
                        };
                        (policy, guard)
                    }
                };
                let spec = NativeSpec {
                    argv: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        launch.run.clone().unwrap_or_default(),
                    ],
                    cwd: self.plan.sandbox.dir.clone(),
                    env,
                    policy,
                };
                Ok((
                    Running::Native(Box::new(spec.spawn(&launch.exe)?)),
                    guard.map(Arc::new),
                ))
            }
            Backend::Builtin(handler) => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
                let std_listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| anyhow::anyhow!("`{label}` cannot listen on {addr}: {e}"))?;
                std_listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                let handler = handler.clone();
                Ok((
                    Running::Builtin(tokio::spawn(crate::jobs::serve(listener, handler))),
                    None,
                ))
            }
            Backend::WasmCommand {
                service,
                caps,
                hooks,
            } => {
                let mut caps = caps.clone();
                caps.env = env;
                caps.net.bind_port = port;
                let report = failure_sink(self, label);
                Ok((
                    Running::Wasm(service.start(&caps, hooks.clone(), Some(report))?),
                    None,
                ))
            }
        }
    }
}

impl crate::router::Upstream for ServiceRuntime {
    fn name(&self) -> &str {
        &self.plan.name
    }

    fn rate_limit(&self) -> Option<crate::spec::ecosystem::RateLimit> {
        self.plan.rate_limit
    }

    fn http_handler(&self) -> Option<Arc<HttpService>> {
        ServiceRuntime::http_handler(self)
    }

    fn ready_ports(&self) -> Vec<u16> {
        ServiceRuntime::ready_ports(self)
    }

    fn status(&self) -> ServiceStatus {
        ServiceRuntime::status(self)
    }

    fn denied(&self, action: &str, target: &str, detail: &str) {
        self.log.denied(action, target, detail)
    }

    fn starting(&self) -> Option<(watch::Receiver<u64>, Duration)> {
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let state = ServiceStatus::aggregate(&self.replicas.lock().expect("replicas"));
        let waiting = self.launch.lock().expect("launch").is_none() || state == State::Starting;
        waiting.then(|| (self.changed.subscribe(), self.plan.health.timeout))
    }
}

/// Where a wasm service's failures go: its log under `label`, and a limit it hit to the anomaly
/// log too.
pub(super) fn failure_sink(rt: &ServiceRuntime, label: &str) -> wasm::FailureSink {
    let log = rt.log.clone();
    let label = label.to_string();
    Arc::new(move |kind, m: &str| match kind {
        wasm::Failure::Memory => log.denied("memory over its limit", &label, m),
        wasm::Failure::Cpu => log.denied("cpu over its limit", &label, m),
        wasm::Failure::Other => log.event(&label, m),
    })
}
