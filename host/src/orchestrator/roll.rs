//! Changing a running service: a new launch rolled in (a reload), a stopped one started again.
//!
//! A process is rolled with a surge: the new version starts on a port of its own beside the
//! old replicas and joins the stable address's rotation once it is healthy; then each replica
//! is restarted with the new version (taken out of the rotation before it stops, so new
//! requests go to the others and a request its exit cuts is sent again, see the router), and
//! the surge replica leaves last. The address never lacks a ready replica, and a new version
//! that does not become healthy is stopped with the old one still serving.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::health;
use super::supervisor::{Backend, Desired, Launch, Running, ServiceRuntime};
use crate::control::status::{ReplicaStatus, State};

/// The new version's replica while the old ones are replaced.
struct Surge {
    child: Running,
    cgroup: Option<Arc<pactown_runtime::native::cgroup::CgroupGuard>>,
    index: usize,
}

impl ServiceRuntime {
    /// Run `launch` from now on (a reload rebuilt the service): a `wasm-http` service answers
    /// the next request with its new component (requests in flight finish on the old one);
    /// a process takes it at its next start (see [`Self::restart`]). Whether it rolled.
    pub fn relaunch(&self, launch: Arc<Launch>) -> bool {
        let swapped = match &launch.backend {
            Backend::WasmHttp(svc) if !self.stopping.load(Ordering::Relaxed) => {
                *self.http.write().expect("http") = Some(svc.clone());
                true
            }
            _ => false,
        };
        *self.launch.lock().expect("launch") = Some(launch);
        self.changed.send_modify(|v| *v += 1);
        swapped
    }

    /// Start a stopped service again, as it was first started.
    pub fn resume(self: &Arc<Self>) -> Result<(), String> {
        if !self.stopping.load(Ordering::Relaxed) {
            return Err(format!("`{}` is not stopped", self.plan.name));
        }
        let launch = self
            .launch
            .lock()
            .expect("launch")
            .clone()
            .ok_or_else(|| format!("`{}` was never started", self.plan.name))?;
        for d in &self.desired {
            // No receiver is left after a stop, so `send` would not store it.
            d.send_replace(Desired::Running(0));
        }
        self.stopping.store(false, Ordering::Relaxed);
        self.start(launch);
        Ok(())
    }

    /// Roll `launch` in (see the module's doc): `Err` when the new version did not become
    /// healthy; the old one then still serves, and keeps its launch.
    pub async fn roll(self: &Arc<Self>, launch: Arc<Launch>) -> Result<(), String> {
        let native = matches!(launch.backend, Backend::Native) && self.plan.port.is_some();
        if !native || self.stopping.load(Ordering::Relaxed) {
            if !self.relaunch(launch) {
                self.restart()
                    .await
                    .map_err(|e| format!("`{}` did not come back: {e:?}", self.plan.name))?;
            }
            return Ok(());
        }
        let surge = self.surge(&launch).await?;
        self.relaunch(launch);
        let restarted = self.restart().await;
        self.end_surge(surge).await;
        restarted.map_err(|e| format!("`{}` did not come back: {e:?}", self.plan.name))
    }

    /// Start the new version beside the old replicas, and put it in the rotation once healthy.
    async fn surge(&self, launch: &Launch) -> Result<Surge, String> {
        let name = &self.plan.name;
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for `{name}`'s new version: {e}"))?
            .port();
        let index = self.replicas.lock().expect("replicas").len();
        let label = format!("{name}.new");
        let (mut child, cgroup) = self
            .launch(index, &label, launch, Some(port))
            .map_err(|e| format!("`{name}`'s new version cannot start: {e:#}"))?;
        self.attach_output(&mut child, &label);
        let deadline = Instant::now() + self.plan.health.timeout;
        let healthy = tokio::select! {
            code = child.wait() => Err(format!("`{name}`'s new version exited with code {code} before it was ready; the running version stays")),
            latency = health::until_ready(port, self.plan.health.check.as_deref()) => Ok(latency),
            () = tokio::time::sleep_until(deadline.into()) => Err(format!(
                "`{name}`'s new version was not ready within {}; the running version stays",
                humantime::format_duration(self.plan.health.timeout)
            )),
        };
        let latency = match healthy {
            Ok(l) => l,
            Err(e) => {
                child.stop(Duration::from_secs(1)).await;
                return Err(e);
            }
        };
        let pid = child.pid();
        {
            let mut r = self.replicas.lock().expect("replicas");
            let mut s = ReplicaStatus::stopped(index + 1);
            s.state = State::Ready;
            s.pid = Some(pid);
            s.port = Some(port);
            s.health_ms = Some(latency.as_secs_f64() * 1000.0);
            r.push(s);
        }
        self.changed.send_modify(|v| *v += 1);
        Ok(Surge {
            child,
            cgroup,
            index,
        })
    }

    /// The replaced replicas are back: the surge replica leaves the rotation, then stops.
    async fn end_surge(&self, mut surge: Surge) {
        {
            let mut r = self.replicas.lock().expect("replicas");
            r.truncate(surge.index);
        }
        self.changed.send_modify(|v| *v += 1);
        surge.child.stop(self.plan.stop_grace_period).await;
        if let Some(g) = surge.cgroup {
            let _ = tokio::task::spawn_blocking(move || g.kill_all(Duration::from_secs(10))).await;
        }
    }
}
