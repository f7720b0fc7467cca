//! Native sandboxes: a process behind the `sandbox-exec` shim.

pub mod cgroup;
pub mod launcher;
pub mod sandbox;
pub mod shim;

pub use launcher::{NativeChild, NativeSpec};
pub use sandbox::SandboxPolicy;
