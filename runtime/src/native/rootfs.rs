//! The filesystem a native sandbox sees: a fresh, read-only tmpfs root holding only what its
//! policy lists, each at the path it has on the host (so `PATH`, `VIRTUAL_ENV` and the sandbox
//! dir mean the same inside), the way bubblewrap builds one:
//!
//! - read-only binds of the system and toolchain directories and the environments it uses;
//! - read-write binds of its sandbox dir and the directories `dirs:` grants;
//! - overlays (a shared read-only lower layer, a private upper one: `node_modules` that `npm
//!   install` may rewrite without touching the shared copy);
//! - its own `/proc` (of its own PID namespace, and only its user's processes: not even its
//!   init), `/tmp` and
//!   `/dev/shm` (private tmpfs), a `/dev` with only `null`, `zero`, `full`, `random`, `urandom`
//!   and `tty`, and `/sys` read-only;
//! - synthesized files (an `/etc/passwd` that names its user).
//!
//! Every mount is `nosuid` and, except the device files, `nodev`: a setuid file or a device
//! node planted in the sandbox dir is inert inside. pactown's state dir, its control socket,
//! other services' sandboxes, the cache and every host socket are simply not there.
//!
//! Runs in the sandbox's init process, after `unshare(CLONE_NEWNS)`, as root of the namespace
//! (root, or a user inside a user namespace of its own, with the capabilities it has there).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::links::{self, under};

/// A shared read-only directory with a private writable layer on top.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The shared, read-only layer.
    pub lower: PathBuf,
    /// The private layer writes go to (on the same filesystem as `work`).
    pub upper: PathBuf,
    /// overlayfs's work dir.
    pub work: PathBuf,
    /// Where the merged view appears.
    pub target: PathBuf,
}

/// A file written into the new root: the host's file at the same path (when `extend`), then
/// `content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthFile {
    /// Absolute path inside.
    pub path: PathBuf,
    /// Start from the host's file at that path.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extend: bool,
    /// What it holds (after the host's content, when extending).
    pub content: String,
}

/// What the sandbox's filesystem holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootFs {
    /// Bound read-only (missing paths are skipped).
    pub read: Vec<PathBuf>,
    /// Bound read-write.
    pub write: Vec<PathBuf>,
    /// Overlays, mounted after the binds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<Overlay>,
    /// Files written into the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SynthFile>,
    /// Size of `/tmp` and of `/dev/shm`, bytes.
    pub tmp_bytes: u64,
    /// Directories sandboxed services can write: a link below one of them on the way to a
    /// bound path is not followed (see [`crate::links`]); the sandbox does not start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrusted: Vec<PathBuf>,
}

/// Device files a sandbox gets.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let fstype = fstype.map(|f| CString::new(f).expect("static fs type"));
    let data = data
        .map(|d| CString::new(d).map_err(|_| io::Error::other("NUL in mount options")))
        .transpose()?;
    // SAFETY: every pointer is a valid C string or null, alive for the call.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The flags a bind mount must keep when remounted (a user namespace may not drop them).
fn locked_flags(target: &Path) -> io::Result<libc::c_ulong> {
    let c = cstr(target)?;
    // SAFETY: statvfs fills the struct for a valid path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

/// Bind `src` at `dest` (creating `dest` as a directory or an empty file), then remount it
/// with `flags` added.
fn bind(src: &Path, dest: &Path, flags: libc::c_ulong) -> io::Result<bool> {
    let Ok(meta) = std::fs::metadata(src) else {
        return Ok(false);
    };
    if meta.is_dir() {
        ctx(std::fs::create_dir_all(dest), || {
            format!("create {}", dest.display())
        })?;
    } else {
        if let Some(parent) = dest.parent() {
            ctx(std::fs::create_dir_all(parent), || {
                format!("create {}", parent.display())
            })?;
        }
        if std::fs::symlink_metadata(dest).is_err() {
            ctx(std::fs::write(dest, b""), || {
                format!("create {}", dest.display())
            })?;
        }
    }
    ctx(mount(Some(src), dest, None, libc::MS_BIND, None), || {
        format!("bind {}", src.display())
    })?;
    let keep = locked_flags(dest)?;
    ctx(
        mount(
            None,
            dest,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | keep | flags,
            None,
        ),
        || format!("remount {}", dest.display()),
    )?;
    Ok(true)
}

/// Bind the host's `source` (resolved: no link on its way) at `path` under `new`, read-only
/// unless `write`, `nosuid` and `nodev`. Nothing on either side is looked up through a link:
/// the source is opened with none allowed, and the mount point is made and opened below `new`
/// one name at a time (the parts of it inside an earlier bind are a host directory a service
/// may write), so a link put in the way is refused instead of followed. A missing source is
/// skipped, as for every bind.
fn bind_granted(source: &Path, new: &Path, path: &Path, write: bool) -> io::Result<()> {
    let from = match links::open_beneath(source) {
        Ok(fd) => fd,
        Err(e) if skipped(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let is_dir = rustix::fs::fstat(&from)
        .map(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
        })
        .map_err(io::Error::from)?;
    let to = mount_point(new, path, is_dir)?;
    // The source's mount alone, or, when a mount below it is locked to it (in a user
    // namespace, each mount the host's namespace had: uncovering what is under it is refused),
    // with those below, read-only as well.
    let clone = |recursive: libc::c_uint| {
        // SAFETY: open_tree on a descriptor we own, with an empty path.
        syscall(unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                from.as_raw_fd(),
                c"".as_ptr(),
                (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint
                    | libc::AT_EMPTY_PATH as libc::c_uint
                    | recursive,
            )
        })
    };
    let recursive = libc::AT_RECURSIVE as libc::c_uint;
    let (tree, recursive) = match clone(0) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (clone(recursive), recursive),
        tree => (tree, 0),
    };
    let tree = ctx(tree, || format!("bind {}", source.display()))?;
    // SAFETY: the syscall returned a new descriptor, now owned here.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | if write { 0 } else { libc::MOUNT_ATTR_RDONLY },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr on the detached tree we own, with a valid attribute struct.
    ctx(
        syscall(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH as libc::c_uint | recursive,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        }),
        || format!("remount {}", path.display()),
    )?;
    // SAFETY: move_mount from the tree onto the mount point, both descriptors ours.
    ctx(
        syscall(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree.as_raw_fd(),
                c"".as_ptr(),
                to.as_raw_fd(),
                c"".as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
            )
        }),
        || format!("bind {}", path.display()),
    )?;
    Ok(())
}

/// Whether a path to bind is skipped, as a Landlock rule of it is: it is missing, or not the
/// user's to look into (a directory of another user's on `PATH`). A link refused
/// ([`links::refused`]) is no such error: the sandbox does not start.
fn skipped(e: &io::Error) -> bool {
    e.raw_os_error().is_some()
        && matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
        )
}

/// A raw syscall's result: `errno` when it failed.
fn syscall(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// The mount point for `path` under `new` (a directory, or an empty file), made and opened one
/// name at a time, following no link (`..` goes back up the names made so far, as
/// `create_dir_all` would). The directories it makes are not writable (`0555`): in the private
/// `/tmp`, the way to a bind there (the host's `/tmp/x/sandbox` makes `/tmp/x`) is no place to
/// write, whether the service's uid is another (root) or the same (a user's namespace).
fn mount_point(new: &Path, path: &Path, is_dir: bool) -> io::Result<OwnedFd> {
    use rustix::fs::{FileType, Mode, OFlags, fstat, mkdirat, openat};
    use rustix::io::Errno;
    let names: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            std::path::Component::ParentDir => Some("..".as_ref()),
            _ => None,
        })
        .collect();
    let refused = |at: &Path| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "`{}` is a link or a file where a granted path is mounted: pactown mounts nothing through a link a service may have made",
                at.display()
            ),
        )
    };
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dirs = vec![openat(rustix::fs::CWD, new, dir_flags, Mode::empty())?];
    let mut at = PathBuf::from("/");
    for (i, name) in names.iter().enumerate() {
        if *name == ".." {
            if dirs.len() > 1 {
                dirs.pop();
                at.pop();
            }
            continue;
        }
        at.push(name);
        let fd = dirs.last().expect("the root is never popped");
        if i + 1 == names.len() && !is_dir {
            let file = match openat(
                fd,
                *name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(f) => f,
                Err(Errno::NOENT) => {
                    openat(
                        fd,
                        *name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )?;
                    openat(
                        fd,
                        *name,
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?
                }
                Err(e) => return Err(io::Error::from(e)),
            };
            if FileType::from_raw_mode(fstat(&file)?.st_mode) != FileType::RegularFile {
                return Err(refused(&at));
            }
            return Ok(file);
        }
        match mkdirat(fd, *name, Mode::from_raw_mode(0o555)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("create {}: {e}", at.display()),
                ));
            }
        }
        let next = match openat(fd, *name, dir_flags, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(refused(&at)),
            Err(e) => return Err(io::Error::from(e)),
        };
        dirs.push(next);
    }
    Ok(dirs.pop().expect("the root at least"))
}

fn overlay_path(p: &Path) -> io::Result<String> {
    let s = p.to_string_lossy();
    if s.contains([',', ':', '\\']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "overlay paths may not contain `,` `:` or `\\`: {}",
                p.display()
            ),
        ));
    }
    Ok(s.into_owned())
}

fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let (a, b) = (cstr(new_root)?, cstr(put_old)?);
    // SAFETY: two valid paths.
    if unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl RootFs {
    /// Replace the calling process's filesystem view with this one and change into `cwd`.
    /// The caller is in a new mount namespace (and, for its `/proc`, a new PID namespace),
    /// inside a user namespace of its own when `in_user_namespace`.
    pub fn enter(&self, cwd: &Path, in_user_namespace: bool) -> io::Result<()> {
        let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
        // Nothing we mount may propagate back to the host.
        ctx(
            mount(
                None,
                Path::new("/"),
                None,
                libc::MS_REC | libc::MS_PRIVATE,
                None,
            ),
            || "make / private".into(),
        )?;
        // A scratch root, so the old root stays reachable at /old while the new one is built
        // at /new (binding from /old sees the host's /tmp, which the new /tmp covers).
        let scratch = Path::new("/tmp");
        ctx(
            mount(
                None,
                scratch,
                Some("tmpfs"),
                nosuid_nodev,
                Some("mode=0700"),
            ),
            || "mount the scratch tmpfs".into(),
        )?;
        std::fs::create_dir(scratch.join("old"))?;
        std::fs::create_dir(scratch.join("new"))?;
        ctx(pivot_root(scratch, &scratch.join("old")), || {
            "pivot to the scratch root".into()
        })?;
        std::env::set_current_dir("/")?;
        let (old, new) = (Path::new("/old"), Path::new("/new"));
        ctx(
            mount(None, new, Some("tmpfs"), nosuid_nodev, Some("mode=0755")),
            || "mount the new root".into(),
        )?;
        let size = format!("size={},mode=1777", self.tmp_bytes.max(1 << 20));
        let tmp = new.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        ctx(
            mount(None, &tmp, Some("tmpfs"), nosuid_nodev, Some(&size)),
            || "mount /tmp".into(),
        )?;
        let proc = new.join("proc");
        std::fs::create_dir_all(&proc)?;
        // Only this namespace's processes, and of those only the service user's own: its init
        // (root) is invisible too.
        ctx(
            mount(
                None,
                &proc,
                Some("proc"),
                nosuid_nodev | libc::MS_NOEXEC,
                Some("hidepid=invisible"),
            ),
            || "mount /proc".into(),
        )?;
        self.make_dev(old, new, &size)?;

        // Binds, parents before children; a path granted read-write is not also bound read-only.
        let mut binds: Vec<(&PathBuf, bool)> = self
            .read
            .iter()
            .filter(|p| !self.write.contains(p))
            .map(|p| (p, false))
            .chain(self.write.iter().map(|p| (p, true)))
            .filter(|(p, _)| {
                // /proc and /dev are the sandbox's own; /tmp is, but paths below it are bound
                // into it like any other.
                let own = p.as_path() == Path::new("/tmp")
                    || p.starts_with("/proc")
                    || p.starts_with("/dev");
                !own && !self.files.iter().any(|f| &f.path == *p)
            })
            .collect();
        binds.sort_by(|a, b| a.0.cmp(b.0));
        binds.dedup_by(|a, b| a.0 == b.0);
        let lookup = links::Lookup::new(old, &self.untrusted);
        for (path, write) in binds {
            match lookup.resolve(path) {
                Ok(source) => bind_granted(&source, new, path, write)?,
                Err(e) if skipped(&e) => {}
                Err(e) => return Err(e),
            }
        }
        // Each layer and the mount point looked up as a bind's are (the upper and work layers
        // are in the service's own sandbox dir, where it could have put links: overlayfs
        // empties `work/` in its work dir as root), then named through this root's `/proc`.
        let fd_path = |fd: &OwnedFd| links::fd_path(new, fd);
        for o in &self.overlays {
            let layer =
                |p: &Path| -> io::Result<OwnedFd> { links::open_beneath(&lookup.resolve(p)?) };
            let (lower, upper, work) = (layer(&o.lower)?, layer(&o.upper)?, layer(&o.work)?);
            let target = mount_point(new, &o.target, true)?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={}{}",
                overlay_path(&fd_path(&lower))?,
                overlay_path(&fd_path(&upper))?,
                overlay_path(&fd_path(&work))?,
                // Its whiteouts and opaque dirs in `user.` attributes: a user namespace may not
                // write `trusted.` ones.
                if in_user_namespace { ",userxattr" } else { "" },
            );
            ctx(
                mount(
                    None,
                    &fd_path(&target),
                    Some("overlay"),
                    nosuid_nodev,
                    Some(&data),
                ),
                || format!("overlay {}", o.target.display()),
            )?;
        }
        for f in &self.files {
            let target = under(new, &f.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut text = if f.extend {
                std::fs::read_to_string(under(old, &f.path)).unwrap_or_default()
            } else {
                String::new()
            };
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&f.content);
            std::fs::write(&target, text)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }

        // The new root becomes `/`; the scratch root and the host's tree under it go away.
        std::env::set_current_dir(new)?;
        ctx(pivot_root(Path::new("."), Path::new(".")), || {
            "pivot to the new root".into()
        })?;
        let dot = cstr(Path::new("."))?;
        // SAFETY: detaching the stacked old root.
        if unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error());
        }
        std::env::set_current_dir("/")?;
        ctx(
            mount(
                None,
                Path::new("/"),
                None,
                libc::MS_REMOUNT | libc::MS_RDONLY | nosuid_nodev,
                None,
            ),
            || "make the root read-only".into(),
        )?;
        ctx(std::env::set_current_dir(cwd), || {
            format!("enter {}", cwd.display())
        })
    }

    fn make_dev(&self, old: &Path, new: &Path, shm: &str) -> io::Result<()> {
        let dev = new.join("dev");
        std::fs::create_dir_all(&dev)?;
        ctx(
            mount(
                None,
                &dev,
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some("mode=0755"),
            ),
            || "mount /dev".into(),
        )?;
        for d in DEVICES {
            bind(
                &old.join("dev").join(d),
                &dev.join(d),
                libc::MS_NOSUID | libc::MS_NOEXEC,
            )?;
        }
        for (link, to) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(to, dev.join(link))?;
        }
        let shm_dir = dev.join("shm");
        std::fs::create_dir_all(&shm_dir)?;
        ctx(
            mount(
                None,
                &shm_dir,
                Some("tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(shm),
            ),
            || "mount /dev/shm".into(),
        )?;
        // No new files in /dev: remount its tmpfs read-only.
        ctx(
            mount(
                None,
                &dev,
                None,
                libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
                None,
            ),
            || "make /dev read-only".into(),
        )
    }
}
