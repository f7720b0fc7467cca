//! How each service is launched: a process's whole environment and confinement, a
//! component's variables, a built-in service's handler and database.

use anyhow::Context;

use super::supervisor::{Backend, Launch};
use super::{Orchestrator, PreparedService};
use crate::plan::{Plan, ServicePlan};
use crate::spec::Ecosystem;

impl Orchestrator {
    /// How a service of `sp` is started from what was prepared for it: a native process's
    /// whole environment and confinement, a component's variables.
    pub(crate) fn launch_of(
        &self,
        sp: &ServicePlan,
        p: &PreparedService,
        exe: &std::path::Path,
    ) -> Launch {
        let (env, sandbox) = match p.backend {
            Backend::Native => {
                let proxy = self
                    .proxy_addrs
                    .read()
                    .expect("proxies")
                    .get(sp.name.as_str())
                    .copied();
                let env = sp.process_env(crate::plan::Added {
                    path_prefix: &p.native.path_prefix,
                    build: &p.native.env,
                    proxy,
                });
                let path = env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.clone());
                let sandbox = crate::build::confine::service_sandbox(
                    &self.plan,
                    sp,
                    &p.native,
                    proxy.map(|a| a.port()),
                    path.as_deref(),
                );
                (env, Some(sandbox))
            }
            _ => (
                sp.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                None,
            ),
        };
        Launch {
            exe: exe.to_path_buf(),
            env,
            sandbox,
            run: sp.run.clone(),
            backend: p.backend.clone(),
        }
    }

    /// A built-in service's handler, its database in the state dir.
    pub(crate) fn builtin_backend(
        &self,
        plan: &Plan,
        name: &str,
        eco: &Ecosystem,
    ) -> anyhow::Result<Backend> {
        let Some((kind, _)) = eco.services[name].builtin else {
            anyhow::bail!("`{name}` is planned as built-in but names no `builtin:`");
        };
        let services = plan
            .services
            .values()
            .map(|s| crate::jobs::Known {
                name: s.name.clone(),
                port: s.port,
                health: s.health.check.clone(),
                kind: eco.services[s.name.as_str()]
                    .builtin
                    .as_ref()
                    .map_or(s.sandbox.kind.as_str(), |(b, _)| b.as_str())
                    .to_string(),
            })
            .collect();
        let ctx = crate::jobs::Context {
            name: name.to_string(),
            db: self
                .state
                .path()
                .join("builtin")
                .join(format!("{name}.sqlite3")),
            calls: plan.services[name].calls.clone(),
            services,
        };
        let handler = crate::jobs::open(kind, ctx)
            .with_context(|| format!("cannot open the built-in service `{name}`"))?;
        Ok(Backend::Builtin(handler))
    }
}
