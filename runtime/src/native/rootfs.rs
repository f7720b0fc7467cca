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
//! Runs in the sandbox's init process, after `unshare(CLONE_NEWNS)`, as root of the namespace.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Where the host's `p` is, under the host's root mounted at `old`: its symlinks followed as
/// the host would (an absolute target is the host's, not the scratch root's, which has no
/// `/root` or `/home`). A path granted through a link (a cache whose `tools` leads to another
/// disk) is then bound from what the link points at, at the path as granted.
fn host_path(old: &Path, p: &Path) -> PathBuf {
    // The names still to walk, the next last; `..` kept, `/` and `.` dropped.
    fn names(p: &Path) -> impl Iterator<Item = std::ffi::OsString> + '_ {
        use std::path::Component;
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .rev()
    }
    let mut at = PathBuf::from("/");
    let mut rest: Vec<std::ffi::OsString> = names(p).collect();
    let mut links = 0;
    while let Some(part) = rest.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        at.push(&part);
        let Ok(target) = std::fs::read_link(under(old, &at)) else {
            continue;
        };
        links += 1;
        if links > 40 {
            break;
        }
        at.pop();
        if target.is_absolute() {
            at = PathBuf::from("/");
        }
        rest.extend(names(&target));
    }
    under(old, &at)
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
    /// The caller is in a new mount namespace (and, for its `/proc`, a new PID namespace).
    pub fn enter(&self, cwd: &Path) -> io::Result<()> {
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
        for (path, write) in binds {
            let flags = nosuid_nodev | if write { 0 } else { libc::MS_RDONLY };
            bind(&host_path(old, path), &under(new, path), flags)?;
        }
        for o in &self.overlays {
            let target = under(new, &o.target);
            std::fs::create_dir_all(&target)?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                overlay_path(&under(old, &o.lower))?,
                overlay_path(&under(old, &o.upper))?,
                overlay_path(&under(old, &o.work))?,
            );
            ctx(
                mount(None, &target, Some("overlay"), nosuid_nodev, Some(&data)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_path_through_links_is_found_under_the_old_root() {
        let old = tempfile::tempdir().unwrap();
        let o = old.path();
        std::fs::create_dir_all(o.join("data/tools/t")).unwrap();
        std::fs::create_dir_all(o.join("home/u/cache")).unwrap();
        // An absolute link (as the host sees it) and a relative one.
        std::os::unix::fs::symlink("/data/tools", o.join("home/u/cache/tools")).unwrap();
        std::os::unix::fs::symlink("cache", o.join("home/u/c")).unwrap();
        assert_eq!(
            host_path(o, Path::new("/home/u/cache/tools/t")),
            o.join("data/tools/t")
        );
        assert_eq!(
            host_path(o, Path::new("/home/u/c/tools/t")),
            o.join("data/tools/t")
        );
        assert_eq!(
            host_path(o, Path::new("/home/u/cache")),
            o.join("home/u/cache")
        );
        // A loop ends.
        std::os::unix::fs::symlink("/home/u/loop", o.join("home/u/loop")).unwrap();
        let _ = host_path(o, Path::new("/home/u/loop/x"));
    }
}
