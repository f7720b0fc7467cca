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
        // The pids group always: it is how a replica's processes are found, limited or not.
        match limits.pids {
            Some(p) => make("pids", &[("pids.max", p.to_string())])?,
            None => make("pids", &[])?,
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

impl CgroupGuard {
    /// Processes still in the replica's groups.
    pub fn members(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.dirs.iter().flat_map(|d| members(d)).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kill every process in the replica's groups and wait (up to `timeout`) until they are
    /// empty. Returns how many processes were killed.
    pub fn kill_all(&self, timeout: std::time::Duration) -> usize {
        let mut killed = std::collections::HashSet::new();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = self.members();
            if left.is_empty() || std::time::Instant::now() >= deadline {
                return killed.len();
            }
            for dir in &self.dirs {
                kill_group(dir);
            }
            killed.extend(left);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The pids listed in a group's `cgroup.procs`.
fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILL a group's members (`cgroup.kill` where the kernel has it, else one by one).
fn kill_group(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), b"1").is_ok() {
        return;
    }
    for pid in members(dir) {
        // SAFETY: signalling a process of a group pactown made.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Groups a previous run of this scope left behind (`pactown/<scope>/<replica>`), with the
/// processes still in them: killed, and the groups removed. Returns (replica, pids killed) for
/// every group that still held processes.
pub fn reap_scope(scope: &str) -> Vec<(String, Vec<i32>)> {
    let mut found: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    let Ok(controllers) = std::fs::read_dir(ROOT) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for c in controllers.flatten() {
        let scope_dir = c.path().join("pactown").join(scope);
        let Ok(groups) = std::fs::read_dir(&scope_dir) else {
            continue;
        };
        for g in groups.flatten().filter(|g| g.path().is_dir()) {
            let name = g.file_name().to_string_lossy().into_owned();
            let pids = members(&g.path());
            if !pids.is_empty() {
                found.entry(name).or_default().extend(pids);
            }
            dirs.push(g.path());
        }
        dirs.push(scope_dir);
    }
    for round in 0..200 {
        let mut busy = false;
        for d in &dirs {
            if !members(d).is_empty() {
                busy = true;
                kill_group(d);
            }
        }
        if !busy || round == 199 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for d in &dirs {
        let _ = std::fs::remove_dir(d);
    }
    found
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            v.dedup();
            (k, v)
        })
        .collect()
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Empty once every process is gone; a group still busy is left for the next run.
            let _ = std::fs::remove_dir(d);
        }
    }
}
