//! `pactown sandbox-exec`: the process between pactown and a native service.
//!
//! pactown starts every native process (a service, or a build step) as `pactown sandbox-exec
//! --spec JSON` (see [`super::args`]). The shim runs single-threaded and:
//!
//! 1. starts a new session, asks for a signal when pactown dies (`PR_SET_PDEATHSIG`, even on
//!    SIGKILL), becomes a child subreaper, and joins the replica's cgroups: from here on the
//!    replica's whole tree is its cgroup;
//! 2. with [`SandboxPolicy::isolate`]: makes a PID namespace (started by a user, not root,
//!    inside a user namespace of its own: [`SandboxPolicy::user_namespace`]) and forks its
//!    **init**, PID 1 of that namespace, which makes its own mount and IPC namespaces, enters
//!    the sandbox's [`RootFs`](super::rootfs::RootFs), and supervises the service. When init
//!    dies, for any reason, the kernel kills every process of the namespace: nothing can
//!    outlive it;
//! 3. the service's process applies the per-process layers ([`SandboxPolicy::apply_in_child`]),
//!    hands its seccomp listener to its supervisor, and `execve`s the command;
//! 4. the supervisor (init, or the shim itself without namespaces) reaps, forwards graceful
//!    stops to the service's process group, answers seccomp notifications (reporting denials on
//!    descriptor 3), and when the service's main process exits, kills what is left and exits
//!    with its status (128+N for a signal).
//!
//! Signals from pactown: SIGTERM/SIGINT/SIGHUP stop gracefully; SIGUSR1 means "kill everything
//! now" (the end of the grace period, or pactown's death).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::args::ShimArgs;
use super::notify::Watcher;
use super::report::{REPORT_FD, Report};
use super::sandbox::{SandboxPolicy, UserMaps, with_context};

/// The signal the kernel sends the shim when pactown dies.
const PARENT_DEATH: libc::c_int = libc::SIGUSR1;

/// Run the shim with the arguments after its subcommand. Never returns.
pub fn main(raw: &[String]) -> ! {
    match ShimArgs::parse(raw) {
        Ok(args) => run(args),
        Err(e) => {
            eprintln!("pactown sandbox-exec: {e}");
            std::process::exit(2)
        }
    }
}

/// Run the shim. Never returns: exits with the service's status.
pub fn run(args: ShimArgs) -> ! {
    match run_inner(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => std::process::exit(sandbox_failed(&e)),
    }
}

/// The sandbox could not be made: say why on stderr and, unless it may be passing (no memory
/// or processes to spare right now), to pactown, which then does not start it again by itself
/// (it would fail the same way); and the status to exit with.
fn sandbox_failed(e: &io::Error) -> i32 {
    eprintln!("pactown sandbox-exec: {e}");
    let passing = matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::OutOfMemory | io::ErrorKind::Interrupted
    );
    if !passing {
        Report::SandboxFailed {
            error: e.to_string(),
        }
        .send();
    }
    126
}

/// Ask for [`PARENT_DEATH`] when pactown dies; `false` when it has died already (we were
/// reparented before asking).
fn die_with_parent(parent_pid: Option<i32>) -> io::Result<bool> {
    // SAFETY: prctl and getppid on our own process.
    unsafe {
        cvt(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            PARENT_DEATH as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        Ok(parent_pid.is_none_or(|ppid| libc::getppid() == ppid))
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
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
        // The report pipe stays with the supervisors, never the service, and never blocks them.
        if libc::fcntl(REPORT_FD, libc::F_GETFD) >= 0 {
            libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC);
            let fl = libc::fcntl(REPORT_FD, libc::F_GETFL);
            libc::fcntl(REPORT_FD, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        // A new session: we lead a new process group that holds the service.
        if libc::setsid() < 0 {
            // Already a group leader (e.g. started by hand): carry on in our group.
            libc::setpgid(0, 0);
        }
        if !die_with_parent(args.parent_pid)? {
            // pactown died between fork and prctl: nothing to run for.
            return Ok(128 + libc::SIGKILL);
        }
        cvt(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))?;
    }
    for procs in &args.policy.cgroups {
        std::fs::write(procs, b"0")
            .map_err(|e| with_context(e, &format!("join cgroup {}", procs.display())))?;
    }
    let signals = Signals::block()?;
    match &args.policy.isolate {
        Some(_) => {
            if args.policy.user_namespace {
                UserMaps::of_this_process()
                    .enter()
                    .map_err(|(step, e)| with_context(e, step))?;
                // Entering it changed our credentials: ask again for the signal when pactown
                // dies, and look again whether it already has.
                if !die_with_parent(args.parent_pid)? {
                    return Ok(128 + libc::SIGKILL);
                }
            }
            // SAFETY: our own process; only our next child enters the new namespace.
            cvt(unsafe { libc::unshare(libc::CLONE_NEWPID) })
                .map_err(|e| with_context(e, "PID namespace"))?;
            // SAFETY: single-threaded; the child runs init and exits.
            let init = cvt(unsafe { libc::fork() })?;
            if init == 0 {
                // SAFETY: our own process.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
                let code = run_init(&args, &argv, &signals).unwrap_or_else(|e| sandbox_failed(&e));
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(code) };
            }
            Ok(supervise(
                init,
                &signals,
                Role::OuterOfInit,
                None,
                Vec::new(),
            ))
        }
        None => {
            let (mine, theirs) = fd_channel()?;
            let child = spawn_service(&args.policy, &argv, &signals, theirs)?;
            Ok(supervise(
                child,
                &signals,
                Role::ServiceSupervisor { pid_ns: false },
                Some(mine),
                connect_ports(&args.policy),
            ))
        }
    }
}

fn connect_ports(policy: &SandboxPolicy) -> Vec<u16> {
    policy
        .net
        .as_ref()
        .map(|n| n.connect.clone())
        .unwrap_or_default()
}

/// PID 1 of the sandbox's namespace: its own mounts, then the service.
fn run_init(args: &ShimArgs, argv: &[CString], signals: &Signals) -> io::Result<i32> {
    let root = args.policy.isolate.as_ref().expect("isolated");
    let cwd = std::env::current_dir()?;
    // SAFETY: our own process, single-threaded.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) })
        .map_err(|e| with_context(e, "mount namespace"))?;
    root.enter(&cwd, args.policy.user_namespace)
        .map_err(|e| with_context(e, "sandbox filesystem"))?;
    let (mine, theirs) = fd_channel()?;
    let child = spawn_service(&args.policy, argv, signals, theirs)?;
    Ok(supervise(
        child,
        signals,
        Role::ServiceSupervisor { pid_ns: true },
        Some(mine),
        connect_ports(&args.policy),
    ))
}

/// Fork the service's process: it applies its layers, hands over its seccomp listener on
/// `channel`, and execs.
fn spawn_service(
    policy: &SandboxPolicy,
    argv: &[CString],
    signals: &Signals,
    channel: OwnedFd,
) -> io::Result<libc::pid_t> {
    // SAFETY: single-threaded; the child only sets itself up and execs or exits.
    let child = cvt(unsafe { libc::fork() })?;
    if child > 0 {
        drop(channel);
        // Also set it from this side, so the group exists before we might signal it.
        // SAFETY: `child` is our child.
        unsafe { libc::setpgid(child, child) };
        return Ok(child);
    }
    // The service: its own process group, default signal mask, its layers, then exec.
    // SAFETY: our own process.
    unsafe {
        libc::setpgid(0, 0);
        libc::sigprocmask(libc::SIG_SETMASK, &signals.previous, std::ptr::null_mut());
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    match policy.apply_in_child() {
        Ok(listener) => {
            if let Some(l) = listener
                && let Err(e) = send_fd(&channel, &l)
            {
                eprintln!("pactown sandbox-exec: cannot hand over the seccomp listener: {e}");
                unsafe { libc::_exit(126) };
            }
        }
        Err(e) => {
            let code = sandbox_failed(&with_context(e, "cannot apply the sandbox"));
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) };
        }
    }
    drop(channel);
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: argv is NUL-terminated and outlives the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let e = io::Error::last_os_error();
    eprintln!(
        "pactown sandbox-exec: cannot run `{}`: {e}",
        argv[0].to_string_lossy()
    );
    unsafe { libc::_exit(127) };
}

/// Signals the shim handles, blocked and read from a signalfd.
struct Signals {
    fd: OwnedFd,
    previous: libc::sigset_t,
}

impl Signals {
    fn block() -> io::Result<Self> {
        // SAFETY: sigset manipulation on local values; signalfd on a valid set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [
                libc::SIGCHLD,
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGQUIT,
                PARENT_DEATH,
            ] {
                libc::sigaddset(&mut set, s);
            }
            cvt(libc::sigprocmask(libc::SIG_BLOCK, &set, &mut previous))?;
            let fd = cvt(libc::signalfd(
                -1,
                &set,
                libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
            ))?;
            Ok(Self {
                fd: OwnedFd::from_raw_fd(fd),
                previous,
            })
        }
    }

    /// Pending signals: (number, sender pid as seen from here).
    fn read(&self) -> Vec<(i32, u32)> {
        let mut out = Vec::new();
        loop {
            // SAFETY: reading whole siginfo records into a zeroed struct.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n != std::mem::size_of::<libc::signalfd_siginfo>() as isize {
                return out;
            }
            out.push((info.ssi_signo as i32, info.ssi_pid));
        }
    }
}

/// What a supervisor supervises.
#[derive(Clone, Copy)]
enum Role {
    /// The service itself; `pid_ns` when we are PID 1 of its namespace.
    ServiceSupervisor { pid_ns: bool },
    /// The namespace's init (we are the shim outside it).
    OuterOfInit,
}

/// Wait for `main`, forwarding stops, answering seccomp notifications; when it exits, kill
/// whatever is left and return its status.
fn supervise(
    main: libc::pid_t,
    signals: &Signals,
    role: Role,
    mut channel: Option<OwnedFd>,
    connect_ports: Vec<u16>,
) -> i32 {
    let mut watcher: Option<Watcher> = None;
    let mut killed = false;
    loop {
        let mut fds = vec![libc::pollfd {
            fd: signals.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let channel_fd = channel.as_ref().map(|c| c.as_raw_fd());
        let watcher_fd = watcher.as_ref().map(Watcher::fd);
        for fd in [channel_fd, watcher_fd].into_iter().flatten() {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: polling our own descriptors.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            continue;
        }
        let ready = |fd: Option<RawFd>| {
            fd.is_some_and(|fd| {
                fds.iter().any(|p| {
                    p.fd == fd && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                })
            })
        };
        if ready(watcher_fd) {
            let keep = watcher.as_mut().is_some_and(Watcher::answer_one);
            if !keep {
                watcher = None;
            }
        }
        if ready(channel_fd)
            && let Some(c) = channel.take()
            && let Ok(Some(listener)) = recv_fd(&c)
        {
            watcher = Some(Watcher::new(listener, connect_ports.clone()));
        }
        if !ready(Some(signals.fd.as_raw_fd())) {
            continue;
        }
        for (sig, sender) in signals.read() {
            match sig {
                libc::SIGCHLD => {
                    if let Some(status) = reap(main) {
                        kill_leftovers(role);
                        return if killed { 128 + libc::SIGKILL } else { status };
                    }
                }
                // Inside the namespace, only signals from outside it (sender 0 as seen from
                // here) are pactown's; the service cannot steer its init.
                _ if matches!(role, Role::ServiceSupervisor { pid_ns: true }) && sender != 0 => {}
                s if s == PARENT_DEATH => match role {
                    Role::OuterOfInit => {
                        // Killing init kills its whole namespace; we exit once it is reaped.
                        killed = true;
                        // SAFETY: signalling our own child, not reaped yet.
                        unsafe { libc::kill(main, libc::SIGKILL) };
                    }
                    Role::ServiceSupervisor { .. } => {
                        // Kills and reaps everything, the main process included.
                        kill_leftovers(role);
                        return 128 + libc::SIGKILL;
                    }
                },
                s => {
                    let s = if s == libc::SIGHUP { libc::SIGTERM } else { s };
                    let target = match role {
                        Role::OuterOfInit => main,
                        // The service's whole group: a shell and its server, a server and
                        // its workers.
                        Role::ServiceSupervisor { .. } => -main,
                    };
                    // SAFETY: signalling our own child or its group.
                    unsafe { libc::kill(target, s) };
                }
            }
        }
    }
}

/// Kill everything below us and reap it.
fn kill_leftovers(role: Role) {
    match role {
        Role::ServiceSupervisor { pid_ns: true } => {
            // PID 1 of the namespace: -1 is every other process in it.
            // SAFETY: signalling processes of our own namespace.
            unsafe { libc::kill(-1, libc::SIGKILL) };
            loop {
                let mut status = 0;
                // SAFETY: reaping our own children until none is left.
                if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
                    break;
                }
            }
        }
        // Without a namespace, or outside it (where nothing should be left): we are a
        // subreaper, so whatever escaped the group is still below us.
        Role::ServiceSupervisor { pid_ns: false } | Role::OuterOfInit => kill_descendants(),
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
pub fn children_of(pid: u32) -> Vec<i32> {
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

/// A connected pair of unix sockets for handing over a descriptor.
fn fd_channel() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two descriptors.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for one descriptor in a message's control data.
fn fd_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}

/// A one-byte message whose control data is `control` (of `fd_space()` bytes). The message
/// points into `iov` and `control`, which must outlive its use.
fn fd_message(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid; the pointers set below are live.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    msg
}

fn send_fd(channel: &OwnedFd, fd: &OwnedFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; fd_space()];
    let msg = fd_message(&mut iov, &mut control);
    // SAFETY: CMSG macros within `control`, which `msg` points at and which has room for one fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        if libc::sendmsg(channel.as_raw_fd(), &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn recv_fd(channel: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = vec![0u8; fd_space()];
    let mut msg = fd_message(&mut iov, &mut control);
    // SAFETY: `msg` points at live buffers; what the kernel wrote is read within `control`.
    unsafe {
        let n = libc::recvmsg(channel.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n <= 0 {
            return Ok(None);
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}
