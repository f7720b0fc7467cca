//! The toolchains a service needs, with their state on this machine.

use serde::Serialize;

use crate::facts::{Tool, ToolStatus};

/// A toolchain a service needs, and its state on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct ToolNeed {
    /// The tool.
    pub tool: Tool,
    /// Present, installed by pactown, to be installed, or missing.
    #[serde(flatten)]
    pub status: ToolStatus,
}
