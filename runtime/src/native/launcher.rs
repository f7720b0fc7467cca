//! Starting a native process behind the shim, and stopping it: SIGTERM (forwarded by the shim
//! to the service's process group), then, after the grace period, SIGUSR1, on which the shim
//! kills everything. Dropping a [`NativeChild`] that still runs kills it the same way.
//!
//! The shim gets a report pipe as descriptor 3 ([`super::report`]); the service never holds it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::args::ShimArgs;
use super::report::{REPORT_FD, Report};
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
    isolated: bool,
    reports: Option<tokio::net::unix::pipe::Receiver>,
    done: bool,
}

/// A pipe whose write end becomes the shim's descriptor 3.
fn report_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Make `fd` the child's descriptor 3 (between fork and exec).
fn install_report_fd(fd: i32) -> std::io::Result<()> {
    // SAFETY: async-signal-safe descriptor calls in the forked child.
    unsafe {
        if fd == REPORT_FD {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        } else if libc::dup2(fd, REPORT_FD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl NativeSpec {
    /// The shim's arguments for this spec.
    pub fn shim_args(&self) -> ShimArgs {
        ShimArgs {
            parent_pid: Some(std::process::id() as i32),
            policy: self.policy.clone(),
            argv: self.argv.clone(),
        }
    }

    /// Start it (`exe` is the pactown binary). stdout and stderr are piped; stdin is closed.
    pub fn spawn(&self, exe: &Path) -> std::io::Result<NativeChild> {
        let (read, write) = report_pipe()?;
        let mut c = tokio::process::Command::new(exe);
        c.args(self.shim_args().to_args())
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let wfd = write.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || install_report_fd(wfd));
        }
        let child = c.spawn()?;
        drop(write);
        let pid = child.id().map_or(-1, |p| p as i32);
        let reports = tokio::net::unix::pipe::Receiver::from_owned_fd(read).ok();
        Ok(NativeChild {
            child,
            pid,
            isolated: self.policy.isolate.is_some(),
            reports,
            done: false,
        })
    }

    /// Run it to completion, collecting its output and its reports (for build steps).
    /// Blocking.
    pub fn output(&self, exe: &Path) -> std::io::Result<(std::process::Output, Vec<Report>)> {
        use std::os::unix::process::CommandExt;
        let (read, write) = report_pipe()?;
        let mut c = std::process::Command::new(exe);
        c.args(self.shim_args().to_args())
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        let wfd = write.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || install_report_fd(wfd));
        }
        let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        drop(write);
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(std::fs::File::from(read))
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| Report::parse(&l))
                .collect::<Vec<_>>()
        });
        let out = child.wait_with_output()?;
        let reports = reader.join().unwrap_or_default();
        Ok((out, reports))
    }
}

/// The pactown binary, to start shims with: `/proc/self/exe`, which stays valid when the file
/// on disk is replaced (an upgrade, a rebuild) while pactown runs.
pub fn self_exe() -> std::io::Result<PathBuf> {
    let proc = PathBuf::from("/proc/self/exe");
    if proc.exists() {
        return Ok(proc);
    }
    std::env::current_exe()
}

/// The pid of the service's own main process below a shim (`isolated`: below its init).
pub fn main_pid(shim: i32, isolated: bool) -> Option<i32> {
    let first = |pid: i32| super::shim::children_of(pid as u32).into_iter().min();
    let below = first(shim)?;
    if isolated { first(below) } else { Some(below) }
}

impl NativeChild {
    /// The shim's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The service's own main process (the child of the shim, or of its init), once started.
    pub fn main_pid(&self) -> Option<i32> {
        if self.done {
            return None;
        }
        main_pid(self.pid, self.isolated)
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

    /// Take the report pipe.
    pub fn take_reports(&mut self) -> Option<tokio::net::unix::pipe::Receiver> {
        self.reports.take()
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
