//! The kind a service runs as when its source decides it (a Rust component with or without an
//! HTTP handler), and the toolchains it needs with their state on this machine.

use serde::Serialize;

use crate::facts::{Tool, ToolStatus};
use crate::spec::{RuntimeKind, Service};

/// The kind a Rust service runs as, and why, from its source (before any build).
pub fn kind_from_source(service: &Service) -> (RuntimeKind, String) {
    let handler = service.content.files.iter().find(|f| {
        f.path.as_str().ends_with(".rs")
            && (f.content.contains("http_server") || f.content.contains("incoming_handler"))
    });
    match handler {
        Some(f) => (
            RuntimeKind::WasmHttp,
            format!(
                "Rust with an HTTP handler ({}): a component exporting wasi:http/incoming-handler, a fresh instance per request",
                f.path.as_str()
            ),
        ),
        None => (
            RuntimeKind::WasmCommand,
            "Rust with a `main`: a long-running wasi:cli/run component with virtualized sockets"
                .into(),
        ),
    }
}

/// A toolchain a service needs, and its state on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct ToolNeed {
    /// The tool.
    pub tool: Tool,
    /// Present, installed by pactown, to be installed, or missing.
    #[serde(flatten)]
    pub status: ToolStatus,
}
