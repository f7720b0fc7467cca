//! A service's limits with the defaults applied: memory, CPU, processes and open files of a
//! native replica; memory, CPU time, instances and wall-clock time of a wasm request.

use serde::Serialize;

use crate::spec::ecosystem::secs;

/// Limits with defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsPlan {
    /// Memory, bytes (per instance for wasm, per replica for native).
    pub memory: u64,
    /// CPU share of a native replica (0.5 = half a core); none means unlimited.
    pub cpu: Option<f64>,
    /// Processes and threads of a native replica.
    pub processes: u64,
    /// Open files of a native process.
    pub open_files: u64,
    /// CPU time per request (wasm-http).
    #[serde(with = "secs")]
    pub cpu_time: std::time::Duration,
    /// Instances at once (wasm-http).
    pub instances: u32,
    /// Wall-clock time per request (wasm-http).
    #[serde(with = "secs")]
    pub request_timeout: std::time::Duration,
    /// Requests one instance serves (wasm-http; 1: a fresh instance per request).
    #[serde(skip_serializing_if = "is_one")]
    pub instance_reuse: u32,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Safe defaults for wasm services.
pub const DEFAULT_WASM_MEMORY: u64 = 128 << 20;
/// Memory of a native replica when none is set: enough for real services, not for a bomb.
pub const DEFAULT_NATIVE_MEMORY: u64 = 1 << 30;
/// Processes and threads of a native replica.
pub const DEFAULT_PROCESSES: u64 = 512;
/// Open files of a native process.
pub const DEFAULT_OPEN_FILES: u64 = 4096;
/// CPU budget of one request.
pub const DEFAULT_CPU_TIME: std::time::Duration = std::time::Duration::from_secs(10);
/// Concurrent instances of one service.
pub const DEFAULT_INSTANCES: u32 = 64;
/// The smallest wasm instance pool of an ecosystem.
pub const MIN_POOL_INSTANCES: u32 = 16;
/// The largest wasm instance pool of an ecosystem (shared by all its services).
pub const MAX_POOL_INSTANCES: u32 = 1000;
/// Wall-clock budget of one request.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
