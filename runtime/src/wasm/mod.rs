//! WebAssembly sandboxes in wasmtime: one shared engine ([`engine`]), per-request HTTP
//! instances ([`http`], and [`worker`]'s one-call exchange), long-running commands ([`command`]), the capabilities a guest gets
//! ([`state`]) and where its outgoing requests go ([`outgoing`], answered in the guest's call by
//! `outgoing_handler`).

pub mod command;
pub mod engine;
pub mod http;
pub mod outgoing;
mod outgoing_handler;
pub mod state;
pub mod worker;

pub use command::{CommandInstance, CommandService};
pub use engine::{ComponentKind, CpuTarget, EngineConfig, WasmEngine};
pub use http::{Failure, FailureSink, HttpService, HttpSettings, InProcessHttp, ResponseBody};
pub use outgoing::{EgressCheck, InProcess, OutgoingHooks, Resolver, Route, Target};
pub use state::{Capabilities, DirGrant, Limits, NetPolicy};
