//! The orchestrator's wasm side: the shared engine (made on first need), a service's backend
//! from its built component, the capabilities it gets (deny by default), and where its outgoing
//! requests go (declared dependencies only; wasm callees in-process).

use std::sync::Arc;

use anyhow::Context;
use pactown_runtime::wasm::{
    self, Capabilities, ComponentKind, HttpService, Resolver, Route, WasmEngine,
};

use super::Orchestrator;
use super::engine_start::EngineStart;
use super::supervisor::{Backend, ServiceRuntime, failure_sink};
use crate::build::{self, Cache};
use crate::plan::Call;

impl Orchestrator {
    /// The engine to use, once made (see [`EngineStart`]).
    pub fn adopt_engine(&self, start: Option<EngineStart>) {
        *self.engine_start.lock().expect("engine start") = start;
    }

    fn engine_config(&self) -> wasm::EngineConfig {
        wasm::EngineConfig {
            total_instances: self.plan.wasm_instances(),
            ..Default::default()
        }
    }

    fn engine(&self, cache: &Cache) -> anyhow::Result<Arc<WasmEngine>> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let started = self.engine_start.lock().expect("engine start").take();
        // One begun ahead has the largest pool: where that cannot be had (an address-space
        // limit), the one this plan needs is made now, and its error is the one reported.
        let e = match started.map(EngineStart::join) {
            Some(Ok(e)) => e,
            Some(Err(_)) | None => {
                WasmEngine::new(&self.engine_config(), cache.path(&["wasm", "compiled"]))?
            }
        };
        Ok(self.engine.get_or_init(|| e).clone())
    }

    /// Load a built component and make the service's backend.
    pub(super) async fn wasm_backend(
        &self,
        sp: &crate::plan::ServicePlan,
        artifact: &build::Component,
        cache: &Cache,
    ) -> anyhow::Result<Backend> {
        let name = sp.name.as_str();
        let engine = self.engine(cache)?;
        let rt = self.rt(name).context("a service without a runtime")?;
        let (e, wasm_path, key) = (
            engine.clone(),
            artifact.wasm.clone(),
            artifact.key[..32].to_string(),
        );
        let component = match engine.loaded(&key) {
            Some(c) => c,
            None => tokio::task::spawn_blocking(move || e.load(&wasm_path, &key))
                .await
                .context("a compile task panicked")?
                .with_context(|| format!("cannot load the component of `{name}`"))?,
        };
        let want = match sp.sandbox.kind {
            crate::spec::RuntimeKind::WasmHttp => ComponentKind::Http,
            _ => ComponentKind::Command,
        };
        let got = engine.kind(&component);
        if got != Some(want) {
            let exports = match got {
                Some(ComponentKind::Http) => "wasi:http/incoming-handler",
                Some(ComponentKind::Command) => "wasi:cli/run",
                None => "neither wasi:http/incoming-handler nor wasi:cli/run",
            };
            anyhow::bail!(
                "`{name}` runs as {}, but its component exports {exports}; set `runtime:` to match, or change the code",
                sp.sandbox.kind.as_str()
            );
        }
        let caps = self.capabilities(sp, &rt)?;
        let hooks =
            wasm::OutgoingHooks::new(name, Some(self.resolver(sp))).with_proof(self.proof.clone());
        Ok(match want {
            ComponentKind::Http => {
                let svc = Arc::new(HttpService::new(
                    engine,
                    &component,
                    wasm::HttpSettings {
                        name: name.to_string(),
                        caps,
                        hooks,
                        max_instances: sp.limits.instances as usize,
                        timeout: sp.limits.request_timeout,
                        errors: Some(failure_sink(&rt, name)),
                        reuse: sp.limits.instance_reuse,
                    },
                )?);
                self.http_registry
                    .write()
                    .expect("registry")
                    .insert(name.to_string(), svc.clone());
                Backend::WasmHttp(svc)
            }
            ComponentKind::Command => Backend::WasmCommand {
                service: Arc::new(wasm::CommandService::new(engine, &component)?),
                caps,
                hooks,
            },
        })
    }

    /// Deny by default: the plan's variables, the granted directories, its dependencies'
    /// addresses, its limits; output and refusals go to its log.
    fn capabilities(
        &self,
        sp: &crate::plan::ServicePlan,
        rt: &Arc<ServiceRuntime>,
    ) -> anyhow::Result<Capabilities> {
        let mut caps = Capabilities::new();
        caps.env = sp.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if !sp.dirs.is_empty() {
            crate::build::grants::prepare_writable(&self.plan, sp)?;
            let lookup = self.plan.links();
            for d in &sp.dirs {
                // Opened now, through no link a service may have made; every instance gets it.
                let granted = std::path::absolute(&d.host)?;
                caps.dirs.push(
                    wasm::DirGrant::open(&granted, d.guest.clone(), d.write, &lookup)
                        .with_context(|| {
                            format!(
                                "{}: cannot grant `{}` to `{}`",
                                self.plan.at(&d.span),
                                d.host.display(),
                                sp.name
                            )
                        })?,
                );
            }
        }
        // Sockets by the same call policy: dependencies at their stable addresses, and the
        // addresses `allowed_hosts` names (port 0: any port).
        caps.net.connect = sp.calls.socket_addrs();
        caps.limits = wasm::Limits {
            memory: sp.limits.memory as usize,
            cpu_time: (sp.sandbox.kind == crate::spec::RuntimeKind::WasmHttp)
                .then_some(sp.limits.cpu_time),
        };
        let log = rt.log.clone();
        let label = sp.name.clone();
        caps.output = Some(Arc::new(move |line: &str| log.line(&label, line)));
        let log = rt.log.clone();
        caps.denials = Some(Arc::new(move |action: &str, target: &str| {
            log.denied(action, target, "")
        }));
        Ok(caps)
    }

    /// Where `caller`'s outgoing requests go, by its call policy: a declared dependency (a
    /// wasm-http one in-process, else at its stable address), an outside host of its
    /// `allowed_hosts` (once its addresses are checked), or a refusal the guest can read, which
    /// is also logged.
    fn resolver(&self, sp: &crate::plan::ServicePlan) -> Resolver {
        let caller = sp.name.as_str();
        let policy = sp.calls.clone();
        let registry = self.http_registry.clone();
        let log = self
            .rt(caller)
            .map(|r| r.log.clone())
            .expect("a service's runtime");
        Arc::new(move |t: &wasm::Target<'_>| {
            let refused = |status: u16, message: String| {
                log.denied(
                    "http call",
                    t.host,
                    &format!("refused outgoing request to `{}`: {message}", t.host),
                );
                Route::Respond { status, message }
            };
            match policy.decide(t.scheme, t.host, t.port) {
                Call::Service { name, port } => {
                    if let Some(svc) = registry.read().expect("registry").get(&name) {
                        return Route::InProcess(Arc::new(wasm::InProcessHttp(svc.clone())));
                    }
                    match port {
                        Some(port) if let Some(host) = policy.elsewhere.get(&name) => {
                            Route::ForwardTo {
                                host: host.clone(),
                                port,
                            }
                        }
                        Some(p) => Route::Forward(std::net::SocketAddr::from(([127, 0, 0, 1], p))),
                        None => Route::Respond {
                            status: 502,
                            message: format!("service `{name}` has no address"),
                        },
                    }
                }
                Call::Egress => {
                    let (log, policy, host) = (log.clone(), policy.clone(), t.host.to_string());
                    Route::External(Arc::new(move |addrs: &[std::net::SocketAddr]| {
                        policy.check_resolved(&host, addrs).inspect_err(|m| {
                            log.denied("http call", &host, m);
                        })
                    }))
                }
                Call::Refused { status, message } => refused(status, message),
            }
        })
    }
}
