//! `wasm-command` services: a component exporting `wasi:cli/run` that runs long, typically a
//! server on a socket. Its sockets are virtualized by its capabilities: it may bind only the port
//! the host gives it and connect only to its declared dependencies; anything else fails inside
//! the guest and is reported to the host.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi::p2::bindings::CommandPre;

use super::engine::WasmEngine;
use super::http::explain;
use super::outgoing::OutgoingHooks;
use super::state::{Capabilities, HostState};

/// A loaded command component, ready to start instances.
pub struct CommandService {
    engine: Arc<WasmEngine>,
    pre: CommandPre<HostState>,
}

/// A running instance.
pub struct CommandInstance {
    task: tokio::task::JoinHandle<i32>,
}

impl CommandService {
    /// Pre-instantiate `component`.
    pub fn new(engine: Arc<WasmEngine>, component: &Component) -> anyhow::Result<Self> {
        let pre = CommandPre::new(
            engine
                .linker()
                .instantiate_pre(component)
                .map_err(anyhow::Error::from)?,
        )
        .map_err(anyhow::Error::from)?;
        Ok(Self { engine, pre })
    }

    /// Start an instance with `caps`. `report` receives a line when it ends abnormally.
    /// Must be called within a tokio runtime.
    pub fn start(
        &self,
        caps: &Capabilities,
        hooks: OutgoingHooks,
        report: Option<super::http::FailureSink>,
    ) -> anyhow::Result<CommandInstance> {
        let state = HostState::new(caps, hooks)?;
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limits);
        // A long-running guest yields to the host every ~100 ms of running, so a busy loop
        // cannot hold a host thread.
        store.set_epoch_deadline(10);
        store.epoch_deadline_async_yield_and_update(10);
        let pre = self.pre.clone();
        let memory = caps.limits.memory;
        let task = tokio::spawn(async move {
            let result = async {
                let cmd = pre.instantiate_async(&mut store).await?;
                cmd.wasi_cli_run().call_run(&mut store).await
            }
            .await;
            match result {
                Ok(Ok(())) => 0,
                Ok(Err(())) => 1,
                Err(e) => {
                    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                        return exit.0;
                    }
                    if let Some(r) = &report {
                        let (kind, why) = explain(&e, memory, None);
                        r(kind, &why);
                    }
                    134
                }
            }
        });
        Ok(CommandInstance { task })
    }
}

impl CommandInstance {
    /// Wait for the guest to finish; its exit code.
    pub async fn wait(&mut self) -> i32 {
        (&mut self.task).await.unwrap_or(137)
    }

    /// Stop it now (a guest has no signal handlers: its instance is dropped).
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for CommandInstance {
    fn drop(&mut self) {
        self.task.abort();
    }
}
