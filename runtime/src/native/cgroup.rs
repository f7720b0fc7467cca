//! cgroup v1 groups for a native replica (when pactown runs as root): memory, pids and cpu
//! limits, prepared by the host, joined by the shim's child before exec, removed when the
//! replica is gone.

use std::path::{Path, PathBuf};

/// Limits for one replica.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupLimits {
    /// Bytes of memory (and memory + swap, where accounted).
    pub memory: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u64>,
    /// CPU share: 0.5 is half of one core.
    pub cpu: Option<f64>,
}

const ROOT: &str = "/sys/fs/cgroup";

/// The groups of one replica; removed on drop.
#[derive(Debug)]
pub struct CgroupGuard {
    dirs: Vec<PathBuf>,
}

impl CgroupGuard {
    /// Create `pactown/<scope>/<name>` under each controller that has a limit, and set it.
    pub fn create(scope: &str, name: &str, limits: CgroupLimits) -> std::io::Result<Self> {
        let mut guard = Self { dirs: Vec::new() };
        let mut make = |controller: &str, files: &[(&str, String)]| -> std::io::Result<()> {
            let dir = Path::new(ROOT)
                .join(controller)
                .join("pactown")
                .join(scope)
                .join(name);
            std::fs::create_dir_all(&dir)?;
            guard.dirs.push(dir.clone());
            for (file, value) in files {
                let path = dir.join(file);
                if path.exists() {
                    std::fs::write(&path, value).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                    })?;
                }
            }
            Ok(())
        };
        if let Some(m) = limits.memory {
            // memsw after memory: the combined limit may not be below the memory limit.
            make(
                "memory",
                &[
                    ("memory.limit_in_bytes", m.to_string()),
                    ("memory.memsw.limit_in_bytes", m.to_string()),
                ],
            )?;
        }
        if let Some(p) = limits.pids {
            make("pids", &[("pids.max", p.to_string())])?;
        }
        if let Some(c) = limits.cpu {
            let period = 100_000u64;
            let quota = ((c * period as f64) as u64).max(1000);
            make(
                "cpu",
                &[
                    ("cpu.cfs_period_us", period.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            )?;
        }
        Ok(guard)
    }

    /// The `cgroup.procs` files to join.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Did the memory controller kill something for running out of memory?
    pub fn oom_kills(&self) -> u64 {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("memory.oom_control")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Empty once every process is gone; a group still busy is left for the next run.
            let _ = std::fs::remove_dir(d);
        }
    }
}
