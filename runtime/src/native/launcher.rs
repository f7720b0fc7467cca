//! Starting a native service behind the shim, and stopping it: SIGTERM (forwarded by the shim
//! to the service's process group), then, after the grace period, SIGUSR1, on which the shim
//! SIGKILLs every descendant. Dropping a [`NativeChild`] that still runs kills it the same way.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::sandbox::SandboxPolicy;

/// What to run.
#[derive(Debug, Clone)]
pub struct NativeSpec {
    /// The command line (for services: `["sh", "-c", run]`).
    pub argv: Vec<String>,
    /// Working directory: the sandbox.
    pub cwd: PathBuf,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Confinement.
    pub policy: SandboxPolicy,
}

/// A running shim and its service.
#[derive(Debug)]
pub struct NativeChild {
    child: tokio::process::Child,
    pid: i32,
    done: bool,
}

impl NativeSpec {
    /// The command that starts the shim (`exe` is the pactown binary). stdout and stderr are
    /// piped; stdin is closed.
    pub fn command(&self, exe: &Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(exe);
        c.arg("sandbox-exec")
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .arg("--policy")
            .arg(serde_json::to_string(&self.policy).expect("policy serializes"))
            .arg("--")
            .args(&self.argv)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Start it.
    pub fn spawn(&self, exe: &Path) -> std::io::Result<NativeChild> {
        let child = self.command(exe).spawn()?;
        let pid = child.id().map_or(-1, |p| p as i32);
        Ok(NativeChild {
            child,
            pid,
            done: false,
        })
    }
}

impl NativeChild {
    /// The shim's pid (the service runs as its child).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Take the output pipes.
    pub fn take_output(
        &mut self,
    ) -> (
        Option<tokio::process::ChildStdout>,
        Option<tokio::process::ChildStderr>,
    ) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Ask for a graceful stop.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Kill the service and all its descendants now.
    pub fn kill_all(&self) {
        self.signal(libc::SIGUSR1);
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.done && self.pid > 0 {
            // SAFETY: signalling our own child, which we have not reaped yet.
            unsafe {
                libc::kill(self.pid, sig);
            }
        }
    }

    /// Wait for the exit; the code is the service's (128+N for signal N).
    pub async fn wait(&mut self) -> std::io::Result<i32> {
        let status = self.child.wait().await?;
        self.done = true;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Stop gracefully, escalating after `grace`. Returns the exit code.
    pub async fn stop(&mut self, grace: std::time::Duration) -> std::io::Result<i32> {
        self.terminate();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                self.done = true;
                use std::os::unix::process::ExitStatusExt;
                let s = status?;
                Ok(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
            }
            Err(_) => {
                self.kill_all();
                self.wait().await
            }
        }
    }
}

impl Drop for NativeChild {
    fn drop(&mut self) {
        self.kill_all();
    }
}
