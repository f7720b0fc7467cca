//! The confinement applied to a native service in the shim's child, just before `execve`.
//!
//! The policy travels from pactown to the shim as JSON on its command line, so what a service
//! runs under is visible in `ps` and reproducible by hand.

use std::io;

use serde::{Deserialize, Serialize};

/// What to apply before exec. Every field is a layer; `Default` applies only the always-on
/// basics (no core dumps).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SandboxPolicy {
    /// `RLIMIT_NOFILE`: open files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
}

impl SandboxPolicy {
    /// Apply in the forked child. Runs in a single-threaded process between fork and exec.
    pub fn apply_in_child(&self) -> io::Result<()> {
        set_rlimit(libc::RLIMIT_CORE, 0)?;
        if let Some(n) = self.open_files {
            set_rlimit(libc::RLIMIT_NOFILE, n)?;
        }
        Ok(())
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit on our own process with a valid struct.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
