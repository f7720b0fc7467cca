//! Reloading a running ecosystem (`up --watch`, `pactown watch`, the `reload` control
//! request): the ecosystem file and every README are read again and what changed is applied,
//! service by service, while the rest keeps running.
//!
//! - A service whose code changed (files, dependencies, build or run block) is rebuilt alone
//!   and rolled: a `wasm-http` service answers its next request with the new component (those
//!   in flight finish on the old one); a process is restarted one replica at a time, and
//!   requests that arrive meanwhile are held at its stable address until the new one is ready,
//!   so it answers no error for a change that builds and starts.
//! - A service whose environment changed (a dependency's address, its `env:`) is restarted;
//!   its dependents are not, unless `cascade` (process-compose's word) asks for it.
//! - A service added to the ecosystem file gets its address, is built and started; one removed
//!   is stopped (its address answers 503 until the next `up`).
//! - What cannot change under a running ecosystem (ports, replicas, `depends_on`, limits, health
//!   checks) is named, and left until the next `up`.
//! - A change that does not load or build changes nothing: the running version stays, and the
//!   error names the file, line and column.

use std::time::Instant;

use indexmap::IndexMap;

use std::sync::Arc;

use super::logs::ServiceLog;
use super::supervisor::{Backend, ServiceRuntime};
use super::{Orchestrator, PreparedService};
use crate::build::{self, Built, Cache};
use crate::plan::{Plan, ServicePlan};
use crate::router::Endpoint;
use crate::spec::Ecosystem;

/// What a reload changes in one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Rebuilt and rolled.
    Code,
    /// Restarted with its new environment.
    Env,
    /// Restarted because a dependency changed (`cascade`).
    Cascade,
    /// New in the ecosystem file: started.
    Added,
}

/// The parts of a plan that are code.
fn code_of(sp: &ServicePlan) -> serde_json::Value {
    serde_json::json!([
        sp.files,
        sp.deps,
        sp.build,
        sp.run,
        sp.language,
        sp.sandbox.kind
    ])
}

/// The parts a reload cannot change under a running ecosystem.
fn fixed_of(sp: &ServicePlan) -> Vec<(&'static str, serde_json::Value)> {
    let j = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    vec![
        ("port", j(serde_json::to_value(sp.port))),
        ("replicas", j(serde_json::to_value(sp.replicas))),
        ("depends_on", j(serde_json::to_value(&sp.depends_on))),
        ("limits", j(serde_json::to_value(&sp.limits))),
        ("health_check", j(serde_json::to_value(&sp.health.check))),
        ("sandbox", j(serde_json::to_value(sp.sandbox.level))),
    ]
}

impl Orchestrator {
    /// Keep the ecosystem as it was loaded, for the first reload to compare with.
    pub fn keep_ecosystem(&self, eco: &Ecosystem) {
        *self.loaded.lock().expect("loaded") = Some(eco.clone());
    }

    /// Every file the ecosystem was last loaded from (what `up --watch` watches).
    pub fn sources(&self) -> std::collections::BTreeSet<std::path::PathBuf> {
        self.loaded
            .lock()
            .expect("loaded")
            .as_ref()
            .map(super::watch::sources)
            .unwrap_or_default()
    }

    /// Read the ecosystem again and apply what changed (see the module's doc): one line saying
    /// what changed, what was rebuilt and restarted, and how long it took; `Err` with the
    /// diagnostics when the change does not load or build (nothing was changed).
    pub async fn reload(&self, cascade: bool) -> Result<String, String> {
        let began = Instant::now();
        let _one_at_a_time = self.reloading.lock().await;
        let old = self
            .loaded
            .lock()
            .expect("loaded")
            .clone()
            .ok_or("nothing was loaded yet")?;
        let env = |k: &str| std::env::var(k).ok();
        let eco = crate::spec::load(&old.source.path, &env)
            .map_err(|d| {
                format!(
                    "the change was not applied; the running version stays:\n{}",
                    d.render(false)
                )
            })?
            .ecosystem;
        let mut notes = Vec::new();
        let running = self.runtimes();
        let added: Vec<String> = eco
            .services
            .keys()
            .filter(|n| !running.contains_key(*n))
            .cloned()
            .collect();
        let removed: Vec<String> = running
            .keys()
            .filter(|n| !eco.services.contains_key(*n))
            .cloned()
            .collect();
        let graph = crate::spec::graph::DependencyGraph::from_ecosystem(&eco)
            .map_err(|e| format!("the change was not applied: {e}"))?;
        // The services that run keep their addresses; an added one gets its own now.
        let mut ports: IndexMap<String, Option<u16>> = {
            let applied = self.applied.lock().expect("applied");
            eco.services
                .keys()
                .map(|n| (n.clone(), applied.get(n).and_then(|s| s.port)))
                .collect()
        };
        let preferred = crate::spec::ecosystem::assign_ports(&eco);
        let mut listeners = IndexMap::new();
        for name in &added {
            let Some(want) = preferred.get(name).copied().flatten() else {
                continue;
            };
            let taken: Vec<u16> = ports.values().flatten().copied().collect();
            let (listener, _) = crate::router::bind(self.bind_ip, want, eco.base_port, &taken)
                .map_err(|e| format!("the change was not applied: no port for `{name}`: {e}"))?;
            ports.insert(name.clone(), listener.local_addr().ok().map(|a| a.port()));
            listeners.insert(name.clone(), listener);
        }
        let facts = crate::facts::HostFacts::for_ecosystem(&eco);
        let plan = Plan::build(&eco, &graph, &ports, &facts);

        let mut changes: IndexMap<String, Change> = IndexMap::new();
        {
            let applied = self.applied.lock().expect("applied");
            for (name, new) in &plan.services {
                let Some(old) = applied.get(name) else {
                    continue;
                };
                let fixed: Vec<&str> = fixed_of(old)
                    .into_iter()
                    .zip(fixed_of(new))
                    .filter(|(a, b)| a.1 != b.1)
                    .map(|(a, _)| a.0)
                    .collect();
                if !fixed.is_empty() {
                    notes.push(format!(
                        "`{name}`: {} changed: restart `up` to apply",
                        fixed.join(", ")
                    ));
                    continue;
                }
                if new.sandbox.kind == crate::spec::RuntimeKind::Builtin {
                    continue;
                }
                if code_of(old) != code_of(new) {
                    changes.insert(name.clone(), Change::Code);
                } else if old.env != new.env {
                    changes.insert(name.clone(), Change::Env);
                }
            }
        }
        for name in &added {
            changes.insert(name.clone(), Change::Added);
        }
        if cascade {
            let changed: Vec<String> = changes.keys().cloned().collect();
            for (name, sp) in &plan.services {
                if !changes.contains_key(name) && sp.depends_on.iter().any(|d| changed.contains(d))
                {
                    changes.insert(name.clone(), Change::Cascade);
                }
            }
        }
        // A component's environment is part of the instance it was loaded with: it is
        // rebuilt (from the cache) to take a new one.
        for (name, c) in changes.iter_mut() {
            if *c == Change::Env && plan.services[name].sandbox.kind.is_wasm() {
                *c = Change::Code;
            }
        }
        if changes.is_empty() && removed.is_empty() {
            let what = if notes.is_empty() {
                "nothing to apply".to_string()
            } else {
                notes.join("; ")
            };
            *self.loaded.lock().expect("loaded") = Some(eco);
            return Ok(format!("reloaded in {:.0?}: {what}", began.elapsed()));
        }

        // Build everything that changes first: a failure changes nothing.
        let mut sub = plan.clone();
        sub.services.retain(|n, sp| {
            changes.get(n).is_some_and(|c| {
                matches!(c, Change::Code | Change::Added)
                    || sp.sandbox.kind == crate::spec::RuntimeKind::Native
            })
        });
        let (cache, say, eco2) = (Cache::locate(), self.say.clone(), eco.clone());
        let sub2 = sub.clone();
        let built = tokio::task::spawn_blocking(move || {
            build::build_all(&sub2, &eco2, &cache, &|m: &str| say(m))
        })
        .await
        .map_err(|e| format!("the build task failed: {e}"))?
        .map_err(|e| format!("the change was not applied; the running version stays:\n{e:#}"))?;
        let cache = Cache::locate();
        let exe = pactown_runtime::native::launcher::self_exe().map_err(|e| format!("{e:#}"))?;
        for name in &added {
            self.add_service(&plan.services[name.as_str()], listeners.shift_remove(name))
                .map_err(|e| format!("`{name}` cannot be added: {e:#}"))?;
        }
        let mut prepared: IndexMap<String, PreparedService> = IndexMap::new();
        for (name, b) in built {
            let backend = match b {
                Built::Native(p) => {
                    crate::build::grants::prepare_writable(&plan, &plan.services[name.as_str()])
                        .map_err(|e| format!("{e:#}"))?;
                    prepared.insert(
                        name,
                        PreparedService {
                            native: p,
                            backend: Backend::Native,
                        },
                    );
                    continue;
                }
                Built::Component(c) => self
                    .wasm_backend(&plan.services[name.as_str()], &c, &cache)
                    .await
                    .map_err(|e| format!("{e:#}"))?,
                Built::Builtin if added.contains(&name) => self
                    .builtin_backend(&plan, &name, &eco)
                    .map_err(|e| format!("{e:#}"))?,
                Built::Builtin => continue,
            };
            prepared.insert(
                name,
                PreparedService {
                    native: build::Prepared::default(),
                    backend,
                },
            );
        }

        let mut done = Vec::new();
        for (name, change) in &changes {
            let rt = self
                .rt(name)
                .ok_or_else(|| format!("`{name}` has no runtime"))?;
            let sp = &plan.services[name.as_str()];
            match prepared.get(name) {
                Some(p) if *change == Change::Added => {
                    rt.start(std::sync::Arc::new(self.launch_of(sp, p, &exe)));
                    rt.wait_ready(Instant::now() + sp.health.timeout)
                        .await
                        .map_err(|e| format!("`{name}` was added but did not start: {e:?}"))?;
                }
                Some(p) => {
                    rt.roll(std::sync::Arc::new(self.launch_of(sp, p, &exe)))
                        .await?
                }
                // A fresh instance per request: the next one sees what changed.
                None if sp.sandbox.kind == crate::spec::RuntimeKind::WasmHttp => {}
                None => rt
                    .restart()
                    .await
                    .map_err(|e| format!("`{name}` did not come back after the reload: {e:?}"))?,
            }
            self.applied
                .lock()
                .expect("applied")
                .insert(name.clone(), sp.clone());
            rt.log
                .event(name, &format!("reloaded ({})", describe(*change)));
            done.push(format!("`{name}` {}", describe(*change)));
        }
        for name in &removed {
            self.remove_service(name).await;
            done.push(format!("`{name}` removed"));
        }
        *self.loaded.lock().expect("loaded") = Some(eco);
        notes.insert(0, done.join(", "));
        Ok(format!(
            "reloaded in {:.1?}: {}",
            began.elapsed(),
            notes.join("; ")
        ))
    }
}

impl Orchestrator {
    /// A service new in the ecosystem file: its runtime, its stable address (already bound:
    /// `listener`) and, for a process, its proxy. It starts once built.
    fn add_service(
        &self,
        sp: &ServicePlan,
        listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<()> {
        let name = sp.name.as_str();
        let index = self.runtimes().len();
        let log = ServiceLog::open(
            self.state.path(),
            name,
            index,
            self.console_tx.clone(),
            self.anomalies.clone(),
        )?;
        let rt = ServiceRuntime::new(sp.clone(), Arc::new(log));
        self.services
            .write()
            .expect("services")
            .insert(name.to_string(), rt.clone());
        let Some(router) = self.router.get() else {
            return Ok(());
        };
        let tokio_listener = |l: std::net::TcpListener| -> anyhow::Result<tokio::net::TcpListener> {
            l.set_nonblocking(true)?;
            Ok(tokio::net::TcpListener::from_std(l)?)
        };
        let endpoint = Endpoint::new(rt as Arc<dyn crate::router::Upstream>);
        router.add_endpoint(name, endpoint.clone());
        if let Some(l) = listener {
            tokio::spawn(router.clone().serve(tokio_listener(l)?, endpoint));
        }
        if sp.sandbox.kind == crate::spec::RuntimeKind::Native {
            let proxy = std::net::TcpListener::bind(("127.0.0.1", 0))?;
            self.proxy_addrs
                .write()
                .expect("proxies")
                .insert(name.to_string(), proxy.local_addr()?);
            let policy = Arc::new(sp.calls.clone());
            tokio::spawn(
                router
                    .clone()
                    .serve_with(tokio_listener(proxy)?, move |r, req, peer| {
                        let policy = policy.clone();
                        async move { crate::router::proxy::handle(r, req, peer, policy).await }
                    }),
            );
        }
        Ok(())
    }

    /// A service gone from the ecosystem file: stopped, and out of the router (its address
    /// answers 503 until the next `up`).
    async fn remove_service(&self, name: &str) {
        let rt = self.services.write().expect("services").shift_remove(name);
        if let Some(rt) = rt {
            rt.log.event(name, "removed from the ecosystem file");
            rt.stop().await;
        }
        if let Some(router) = self.router.get() {
            router.remove_endpoint(name);
        }
        self.applied.lock().expect("applied").shift_remove(name);
    }
}

fn describe(c: Change) -> &'static str {
    match c {
        Change::Code => "rebuilt and rolled",
        Change::Env => "restarted (its environment changed)",
        Change::Cascade => "restarted (a dependency changed)",
        Change::Added => "added and started",
    }
}
