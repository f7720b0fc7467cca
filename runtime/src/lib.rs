//! pactown's runtime: runs ONE sandbox. It knows nothing of Markdown, YAML or graphs; the host
//! hands it a spec of what to run and how tightly.
//!
//! - [`native`]: a process started through `pactown sandbox-exec`, in its own session and
//!   process group, killed with its supervisor.
//! - [`wasm`]: a WASI component in wasmtime, with capabilities granted explicitly.

#![deny(missing_docs)]

pub mod links;
pub mod native;
pub mod wasm;
