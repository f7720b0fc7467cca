//! Native sandboxes: a process behind the `sandbox-exec` shim.

pub mod args;
pub mod cgroup;
pub mod launcher;
pub mod notify;
pub mod report;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod shim;

pub use args::ShimArgs;
pub use launcher::{NativeChild, NativeSpec};
pub use report::Report;
pub use sandbox::SandboxPolicy;
