//! `pactown sandbox-exec`: the process that sits between pactown and a native service.
//!
//! pactown starts every native service as `pactown sandbox-exec [options] -- sh -c CMD`. This
//! shim runs single-threaded (nothing else has started in the process), and:
//!
//! 1. starts a new session (so no terminal signal reaches the service behind pactown's back) and
//!    puts the service in a process group of its own, which the shim signals as a whole;
//! 2. asks the kernel for a signal when pactown dies (`PR_SET_PDEATHSIG`), even by SIGKILL, and
//!    then kills the whole tree: no service outlives its supervisor;
//! 3. becomes a child subreaper, so processes that daemonize or `setsid()` out of the group are
//!    still its descendants and still get killed;
//! 4. forks the service, applies the sandbox in the child, and `execve`s the command;
//! 5. waits: when the service's main process exits, the leftovers are killed and the shim exits
//!    with the service's status (128+N for a signal).
//!
//! Signals from pactown: SIGTERM/SIGINT are forwarded to the group (graceful stop); SIGUSR1 means
//! "kill everything now" (the end of the grace period, or pactown's death).

use std::ffi::CString;
use std::io;

use super::sandbox::SandboxPolicy;

/// What the shim runs and how.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    /// The pid pactown had when it started us; if our parent is already another process, pactown
    /// died before we could ask for the death signal.
    pub parent_pid: Option<i32>,
    /// Sandbox layers to apply in the child before exec.
    pub policy: SandboxPolicy,
    /// The command and its arguments.
    pub argv: Vec<String>,
}

/// The signal the kernel sends the shim when pactown dies.
const PARENT_DEATH: libc::c_int = libc::SIGUSR1;

/// Run the shim. Never returns: exits with the service's status.
pub fn run(args: ShimArgs) -> ! {
    match run_inner(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("pactown sandbox-exec: {e}");
            std::process::exit(127)
        }
    }
}

fn run_inner(args: ShimArgs) -> io::Result<i32> {
    if args.argv.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command given",
        ));
    }
    let argv: Vec<CString> = args
        .argv
        .iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
        })
        .collect::<io::Result<_>>()?;

    // SAFETY: plain syscalls on our own process; the process is single-threaded here.
    unsafe {
        // A new session: we lead a new process group that holds the service.
        if libc::setsid() < 0 {
            // Already a group leader (e.g. started by hand): carry on in our group.
            libc::setpgid(0, 0);
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            PARENT_DEATH as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if args.parent_pid.is_some_and(|ppid| libc::getppid() != ppid) {
            // pactown died between fork and prctl: nothing to run for.
            return Ok(128 + libc::SIGKILL);
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }

    // Block the signals we handle, so they queue for sigwaitinfo instead of killing us.
    let mut handled: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigset manipulation on local values.
    unsafe {
        libc::sigemptyset(&mut handled);
        for s in [
            libc::SIGCHLD,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            PARENT_DEATH,
        ] {
            libc::sigaddset(&mut handled, s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &handled, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
    }

    // SAFETY: single-threaded process; the child only execs or exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // The service: its own process group, default signal mask, the sandbox, then exec.
        unsafe {
            libc::setpgid(0, 0);
            libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
        if let Err(e) = args.policy.apply_in_child() {
            eprintln!("pactown sandbox-exec: cannot apply the sandbox: {e}");
            unsafe { libc::_exit(126) };
        }
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: argv is NUL-terminated and outlives the call.
        unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
        let e = io::Error::last_os_error();
        eprintln!("pactown sandbox-exec: cannot run `{}`: {e}", args.argv[0]);
        unsafe { libc::_exit(127) };
    }

    // Also set it from this side, so the group exists before we might signal it.
    // SAFETY: `child` is our child.
    unsafe { libc::setpgid(child, child) };
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for one of the blocked signals.
        let sig = unsafe { libc::sigwaitinfo(&handled, &mut info) };
        if sig < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        match sig {
            libc::SIGCHLD => {
                if let Some(status) = reap(child) {
                    kill_descendants();
                    return Ok(status);
                }
            }
            s if s == PARENT_DEATH => {
                kill_descendants();
                return Ok(128 + libc::SIGKILL);
            }
            // Graceful stop: pass it on to the service's whole group (a shell and its server,
            // a server and its workers).
            s => unsafe {
                libc::kill(-child, if s == libc::SIGHUP { libc::SIGTERM } else { s });
            },
        }
    }
}

/// Reap every exited child; the main child's exit status when it is among them.
fn reap(main: libc::pid_t) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait for any child.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return result;
        }
        if pid == main {
            result = Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                1
            });
        }
    }
}

/// SIGKILL every process below us, including those reparented to us as subreaper, until none
/// is left. Each round kills the current children and reaps them; their own children are then
/// reparented to us and killed in the next round.
fn kill_descendants() {
    let me = std::process::id();
    for _ in 0..1000 {
        let children = children_of(me);
        if children.is_empty() {
            return;
        }
        for pid in &children {
            // SAFETY: signalling processes we are the parent of.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        for pid in &children {
            let mut status = 0;
            // SAFETY: reaping our own children.
            unsafe {
                libc::waitpid(*pid, &mut status, 0);
            }
        }
    }
}

/// Direct children of `pid`, from `/proc/<pid>/task/*/children`.
fn children_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}
