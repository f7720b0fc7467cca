//! The orchestrator's wasm side: the shared engine (made on first need), a service's backend
//! from its built component, the capabilities it gets (deny by default), and where its outgoing
//! requests go (declared dependencies only; wasm callees in-process).

use std::sync::Arc;

use anyhow::Context;
use pactown_runtime::wasm::{
    self, Capabilities, ComponentKind, HttpService, Resolver, Route, WasmEngine,
};

use super::Orchestrator;
use super::supervisor::{Backend, ServiceRuntime};
use crate::build::{self, Cache};
use crate::router::proxy;

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

impl Orchestrator {
    fn engine(&self, cache: &Cache) -> anyhow::Result<Arc<WasmEngine>> {
        if let Some(e) = self.engine.get() {
            return Ok(e.clone());
        }
        let e = WasmEngine::new(
            &wasm::EngineConfig::default(),
            cache.path(&["wasm", "compiled"]),
        )?;
        Ok(self.engine.get_or_init(|| e).clone())
    }

    /// Load a built component and make the service's backend.
    pub(super) async fn wasm_backend(
        &self,
        name: &str,
        artifact: &build::rust::Artifact,
        cache: &Cache,
    ) -> anyhow::Result<Backend> {
        let engine = self.engine(cache)?;
        let rt = self.services[name].clone();
        let sp = &rt.plan;
        let (e, wasm_path, key) = (
            engine.clone(),
            artifact.wasm.clone(),
            artifact.key[..32].to_string(),
        );
        let component = tokio::task::spawn_blocking(move || e.load(&wasm_path, &key))
            .await
            .context("a compile task panicked")?
            .with_context(|| format!("cannot load the component of `{name}`"))?;
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
        let caps = self.capabilities(&rt)?;
        let hooks = wasm::OutgoingHooks::new(name, Some(self.resolver(name)));
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
    fn capabilities(&self, rt: &Arc<ServiceRuntime>) -> anyhow::Result<Capabilities> {
        let sp = &rt.plan;
        let mut caps = Capabilities::new();
        caps.env = sp.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for d in &sp.dirs {
            if d.write {
                std::fs::create_dir_all(&d.host)
                    .with_context(|| format!("cannot create `{}`", d.host.display()))?;
            }
            caps.dirs.push(wasm::DirGrant {
                host: d.host.clone(),
                guest: d.guest.clone(),
                write: d.write,
            });
        }
        caps.net.connect = sp
            .depends_on
            .iter()
            .filter_map(|dep| self.plan.services.get(dep).and_then(|d| d.port))
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let ticks = sp.limits.cpu_time.as_millis() / wasm::engine::EPOCH_TICK.as_millis();
        caps.limits = wasm::Limits {
            memory: sp.limits.memory as usize,
            cpu_ticks: (sp.sandbox.kind == crate::spec::RuntimeKind::WasmHttp)
                .then_some(ticks.max(1) as u64),
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

    /// Where `caller`'s outgoing requests go: declared dependencies by name (or by their
    /// stable address), a wasm-http dependency in-process; anything else is refused with a
    /// message the guest can read, and logged.
    fn resolver(&self, caller: &str) -> Resolver {
        let me = &self.plan.services[caller];
        let deps: std::collections::HashMap<String, Option<u16>> = me
            .depends_on
            .iter()
            .map(|d| (d.clone(), self.plan.services.get(d).and_then(|s| s.port)))
            .collect();
        let names: std::collections::HashSet<String> = self.plan.services.keys().cloned().collect();
        let registry = self.http_registry.clone();
        let log = self.services[caller].log.clone();
        let caller = caller.to_string();
        Arc::new(move |host: &str, port: Option<u16>| {
            let by_addr = || {
                let loopback = matches!(host, "127.0.0.1" | "localhost" | "::1" | "[::1]");
                port.filter(|_| loopback).and_then(|p| {
                    deps.iter()
                        .find(|(_, dp)| **dp == Some(p))
                        .map(|(n, _)| n.clone())
                })
            };
            let target = if deps.contains_key(host) {
                Some(host.to_string())
            } else {
                by_addr()
            };
            if let Some(t) = target {
                if let Some(svc) = registry.read().expect("registry").get(&t) {
                    return Route::InProcess(Arc::new(wasm::InProcessHttp(svc.clone())));
                }
                return match deps[&t] {
                    Some(p) => Route::Forward(std::net::SocketAddr::from(([127, 0, 0, 1], p))),
                    None => Route::Respond {
                        status: 502,
                        message: format!("service `{t}` has no address"),
                    },
                };
            }
            let (status, message) = if names.contains(host) {
                (403, proxy::undeclared(&caller, host))
            } else {
                (502, proxy::unknown(host))
            };
            log.denied(
                "http call",
                host,
                &format!("refused outgoing request to `{host}`: {message}"),
            );
            Route::Respond { status, message }
        })
    }
}
