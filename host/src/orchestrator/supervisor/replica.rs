//! A replica's life: started, watched until ready and while it serves, stopped or
//! restarted (exponential backoff from 100 ms, capped at 30 s, reset after a healthy minute;
//! never when its sandbox could not be made).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pactown_runtime::native::cgroup::CgroupGuard;
use tokio::sync::watch;

use super::{Desired, Launch, Running, ServiceRuntime};
use crate::control::status::State;
use crate::orchestrator::health;
use crate::plan::ServicePlan;

/// Liveness failures in a row before a replica is restarted.
const LIVENESS_FAILURES: u32 = 3;

impl ServiceRuntime {
    pub(super) async fn run_replica(
        self: Arc<Self>,
        i: usize,
        mut desired: watch::Receiver<Desired>,
        launch: Arc<Launch>,
    ) {
        let label = self.label(i);
        let mut attempt: u32 = 0;
        let mut first = true;
        loop {
            let generation = match *desired.borrow_and_update() {
                Desired::Stopped => {
                    self.update(i, |r| {
                        r.state = State::Stopped;
                        r.pid = None;
                    });
                    return;
                }
                Desired::Running(g) => g,
            };
            if !first {
                self.update(i, |r| r.restarts += 1);
            }
            first = false;
            // The newest launch: a reload may have rebuilt the service since.
            let launch = self
                .launch
                .lock()
                .expect("launch")
                .clone()
                .unwrap_or_else(|| launch.clone());
            let outcome = self.run_once(i, &label, &launch, &mut desired).await;
            let (code, restart) = match outcome {
                Outcome::Stopped => {
                    self.update(i, |r| {
                        r.state = State::Stopped;
                        r.pid = None;
                    });
                    return;
                }
                Outcome::Restart => {
                    attempt = 0;
                    continue;
                }
                Outcome::Exited { code, healthy_for } => {
                    if healthy_for >= Duration::from_secs(60) {
                        attempt = 0;
                    }
                    (code, self.plan.restart.auto_restart)
                }
                // Started again as it is, it would fail the same way.
                Outcome::SandboxFailed => (126, false),
            };
            let finished = self.plan.port.is_none() && code == 0;
            if finished || !restart {
                let state = if finished {
                    State::Exited
                } else {
                    State::Failed
                };
                self.update(i, |r| {
                    r.state = state;
                    r.pid = None;
                });
                // A sandbox that could not be made was said so when it failed.
                if !finished && !self.plan.restart.auto_restart {
                    self.log
                        .event(&label, "not restarted (auto_restart is off)");
                }
                // Idle until asked to restart or stop.
                loop {
                    if desired.changed().await.is_err() {
                        return;
                    }
                    match *desired.borrow() {
                        Desired::Stopped => break,
                        Desired::Running(g) if g != generation => break,
                        _ => {}
                    }
                }
                continue;
            }
            let delay = backoff(attempt, &self.plan);
            attempt = attempt.saturating_add(1);
            self.update(i, |r| {
                r.state = State::Starting;
                r.pid = None;
            });
            self.log.event(
                &label,
                &format!("restarting in {}", humantime::format_duration(delay)),
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                r = desired.changed() => if r.is_err() { return },
            }
        }
    }

    async fn run_once(
        &self,
        i: usize,
        label: &str,
        launch: &Launch,
        desired: &mut watch::Receiver<Desired>,
    ) -> Outcome {
        let port = match self.plan.port {
            Some(_) => match crate::orchestrator::ports::free_port() {
                Ok(p) => Some(p),
                Err(e) => {
                    self.log
                        .event(label, &format!("no free port for the replica: {e}"));
                    return Outcome::Exited {
                        code: 1,
                        healthy_for: Duration::ZERO,
                    };
                }
            },
            None => None,
        };
        let (mut child, cgroup) = match self.launch(i, label, launch, port) {
            Ok(c) => c,
            Err(e) => {
                self.log.event(label, &format!("cannot start: {e:#}"));
                return Outcome::Exited {
                    code: 127,
                    healthy_for: Duration::ZERO,
                };
            }
        };
        let pid = child.pid();
        self.update(i, |r| {
            r.state = State::Starting;
            r.pid = Some(pid);
            r.port = port;
            r.health_ms = None;
        });
        let outcome = self
            .supervise(i, label, &mut child, cgroup.as_deref(), port, desired)
            .await;
        // The replica is stopped only once nothing of it is left: whatever its processes did
        // (forked, daemonized, outlived the shim), its cgroup holds them.
        if let Some(g) = cgroup {
            let killed = tokio::task::spawn_blocking(move || g.kill_all(Duration::from_secs(10)))
                .await
                .unwrap_or(0);
            if killed > 0 {
                self.log.event(
                    label,
                    &format!("killed {killed} process(es) left in its cgroup"),
                );
            }
        }
        outcome
    }

    /// Watch one started replica until it exits, fails, or is told to stop or restart.
    async fn supervise(
        &self,
        i: usize,
        label: &str,
        child: &mut Running,
        cgroup: Option<&CgroupGuard>,
        port: Option<u16>,
        desired: &mut watch::Receiver<Desired>,
    ) -> Outcome {
        let sandbox_failure = self.attach_output(child, label);
        let path = self.plan.health.check.as_deref();
        let grace = self.plan.stop_grace_period;

        // Phase 1: until ready.
        let ready = async {
            match port {
                Some(p) => health::until_ready(p, path).await,
                None => Duration::ZERO,
            }
        };
        tokio::select! {
            code = child.wait() => {
                self.update(i, |r| r.last_exit = Some(code));
                // Its reports end with it (only the shim and its init hold their pipe).
                let why = match sandbox_failure {
                    Some(t) => tokio::time::timeout(Duration::from_secs(2), t).await,
                    None => Ok(Ok(None)),
                };
                if let Ok(Ok(Some(_))) = why {
                    self.log.event(label, "its sandbox could not be made (the shim's line says why): not started again until `pactown restart`");
                    return Outcome::SandboxFailed;
                }
                self.log.event(label, &format!("exited with code {code} before it was ready"));
                return Outcome::Exited { code, healthy_for: Duration::ZERO };
            }
            latency = ready => {
                self.update(i, |r| {
                    r.state = State::Ready;
                    r.health_ms = port.map(|_| latency.as_secs_f64() * 1000.0);
                });
            }
            _ = desired.changed() => {
                return self.stop_child(i, child, desired, grace, label).await;
            }
        }
        let ready_at = Instant::now();

        // Phase 2: ready; liveness until exit, failure or a change of plan.
        let live = async {
            let Some(p) = port else {
                return std::future::pending::<()>().await;
            };
            let mut failures = 0;
            let interval = self.plan.health.interval;
            loop {
                tokio::time::sleep(interval).await;
                match health::probe(p, path, interval.min(Duration::from_secs(5))).await {
                    Some(latency) => {
                        failures = 0;
                        self.update(i, |r| r.health_ms = Some(latency.as_secs_f64() * 1000.0));
                    }
                    None => {
                        failures += 1;
                        if failures >= LIVENESS_FAILURES {
                            return;
                        }
                    }
                }
            }
        };
        // The memory limit killing a process of the replica (a worker, a child) is reported as
        // it happens; the replica itself may well keep serving.
        let oom_watch = async {
            let Some(g) = cgroup else {
                return std::future::pending::<()>().await;
            };
            let mut seen = g.oom_kills();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = g.oom_kills();
                if now > seen {
                    let limit = format!("{} MiB", self.plan.limits.memory >> 20);
                    self.log.denied(
                        "memory over its limit",
                        &limit,
                        &format!("the kernel killed {} process(es)", now - seen),
                    );
                    seen = now;
                }
            }
        };
        tokio::select! {
            code = child.wait() => {
                self.log.event(label, &format!("exited with code {code}"));
                self.update(i, |r| r.last_exit = Some(code));
                Outcome::Exited { code, healthy_for: ready_at.elapsed() }
            }
            _ = oom_watch => unreachable!("the watch never ends"),
            _ = live => {
                self.log.event(label, &format!("failed {LIVENESS_FAILURES} health checks in a row; stopping it"));
                self.update(i, |r| r.state = State::Starting);
                let code = child.stop(grace).await;
                self.update(i, |r| r.last_exit = Some(code));
                Outcome::Exited { code: code.max(1), healthy_for: ready_at.elapsed() }
            }
            _ = desired.changed() => self.stop_child(i, child, desired, grace, label).await,
        }
    }

    async fn stop_child(
        &self,
        i: usize,
        child: &mut Running,
        desired: &watch::Receiver<Desired>,
        grace: Duration,
        label: &str,
    ) -> Outcome {
        let stopping = *desired.borrow() == Desired::Stopped;
        if !stopping {
            // Out of the rotation before it stops: new requests go to the other replicas, or
            // wait at the stable address for this one to be back.
            self.update(i, |r| r.state = State::Starting);
        }
        let code = child.stop(grace).await;
        self.log
            .event(label, &format!("stopped (exit code {code})"));
        if stopping {
            Outcome::Stopped
        } else {
            Outcome::Restart
        }
    }
}

enum Outcome {
    Exited {
        code: i32,
        healthy_for: Duration,
    },
    /// Its sandbox could not be made: nothing of it ran.
    SandboxFailed,
    Restart,
    Stopped,
}

/// 100 ms, 200 ms, 400 ms … capped at 30 s.
fn backoff(attempt: u32, plan: &ServicePlan) -> Duration {
    let ms = plan
        .restart
        .backoff_initial_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(plan.restart.backoff_max_ms);
    Duration::from_millis(ms)
}
