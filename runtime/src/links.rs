//! The links on the way to a granted path. A path granted to a sandbox is looked up the way
//! the host would look it up, links and all (a cache whose `tools` leads to another disk), with
//! one exception: a link that lies below a directory some sandboxed service can write is not
//! followed, because that service may have made it. A service that writes `./data` could
//! otherwise put `data/sub` there as a link to `/root`, and whoever is granted `./data/sub` next
//! (another service, or itself on a restart) would be given `/root`.
//!
//! [`Lookup::resolve`] finds where a granted path really is, or names the link it refused;
//! [`open_beneath`] then opens what it found without following any link at all, so that a link
//! swapped in between is refused too instead of followed.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// How many links one lookup follows at most (the kernel's limit).
const MAX_LINKS: usize = 40;

/// How granted paths are looked up under the host's root mounted at `root` (`/` on the host
/// itself), with the directories sandboxed services can write found once.
pub struct Lookup {
    root: PathBuf,
    /// The writable directories as the host names them, and where they really are: a grant
    /// made through a link of the operator's is still one.
    untrusted: Vec<PathBuf>,
}

impl Lookup {
    /// Look up under `root`, refusing links below `untrusted` (as the host names them).
    pub fn new(root: &Path, untrusted: &[PathBuf]) -> Self {
        let untrusted = untrusted
            .iter()
            .flat_map(|u| {
                let real = walk(root, u, &[]).ok();
                std::iter::once(u.clone()).chain(real)
            })
            .collect();
        Self {
            root: root.to_path_buf(),
            untrusted,
        }
    }

    /// Where `p` (absolute, as the host names it) is under the root: its links followed as
    /// the host would (an absolute target is the host's), except a link below a writable
    /// directory: that is an error naming it. The result, under the root, holds no link.
    pub fn resolve(&self, p: &Path) -> io::Result<PathBuf> {
        walk(&self.root, p, &self.untrusted).map(|at| under(&self.root, &at))
    }
}

/// `root` joined with the absolute `p`.
pub fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// The host's path `p` resolves to (not under `root`), refusing links below `untrusted`.
fn walk(root: &Path, p: &Path, untrusted: &[PathBuf]) -> io::Result<PathBuf> {
    // The names still to walk, the next last; `..` kept, `/` and `.` dropped.
    fn names(p: &Path) -> impl Iterator<Item = OsString> + '_ {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .rev()
    }
    let mut at = PathBuf::from("/");
    let mut rest: Vec<OsString> = names(p).collect();
    let mut links = 0;
    while let Some(part) = rest.pop() {
        if part == ".." {
            at.pop();
            continue;
        }
        at.push(&part);
        let Ok(target) = std::fs::read_link(under(root, &at)) else {
            continue;
        };
        if let Some(writable) = untrusted.iter().find(|u| at.starts_with(u) && at != **u) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "`{}` is a link (to `{}`) inside `{}`, which a sandboxed service can write: pactown follows no link a service may have made; grant the directory it leads to itself, or replace the link with that directory",
                    at.display(),
                    target.display(),
                    writable.display()
                ),
            ));
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}`: too many levels of links", p.display()),
            ));
        }
        at.pop();
        if target.is_absolute() {
            at = PathBuf::from("/");
        }
        rest.extend(names(&target));
    }
    Ok(at)
}

/// Open `path` (as [`Lookup::resolve`] returned it: no link on the way) as an `O_PATH` descriptor,
/// following no link: one put in its way since it was resolved is an error, not a detour.
pub fn open_beneath(path: &Path) -> io::Result<OwnedFd> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
    openat2(
        CWD,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| {
        let e = io::Error::from(e);
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "`{}` changed while it was being granted: a link appeared on the way",
                    path.display()
                ),
            )
        } else {
            e
        }
    })
}

/// Whether `e` is a refusal of this module's (a link a service may have made, or one that
/// appeared on the way), rather than the kernel's own error (a path missing, or not the
/// caller's to look into).
pub fn refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none()
}

/// The path that names `fd`'s file itself through the `/proc` mounted below `root` (`/` on
/// the host): what an interface that takes only paths is given for a descriptor [`open_beneath`]
/// opened.
pub fn fd_path(root: &Path, fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    root.join(format!("proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_path_through_links_is_found_under_the_root() {
        let old = tempfile::tempdir().unwrap();
        let o = old.path();
        std::fs::create_dir_all(o.join("data/tools/t")).unwrap();
        std::fs::create_dir_all(o.join("home/u/cache")).unwrap();
        // An absolute link (as the host sees it) and a relative one.
        std::os::unix::fs::symlink("/data/tools", o.join("home/u/cache/tools")).unwrap();
        std::os::unix::fs::symlink("cache", o.join("home/u/c")).unwrap();
        let lookup = Lookup::new(o, &[]);
        let r = |p: &str| lookup.resolve(Path::new(p)).unwrap();
        assert_eq!(r("/home/u/cache/tools/t"), o.join("data/tools/t"));
        assert_eq!(r("/home/u/c/tools/t"), o.join("data/tools/t"));
        assert_eq!(r("/home/u/cache"), o.join("home/u/cache"));
        // A loop ends, as an error.
        std::os::unix::fs::symlink("/home/u/loop", o.join("home/u/loop")).unwrap();
        assert!(lookup.resolve(Path::new("/home/u/loop/x")).is_err());
    }

    #[test]
    fn a_link_below_a_writable_directory_is_refused_and_named() {
        let old = tempfile::tempdir().unwrap();
        let o = old.path();
        std::fs::create_dir_all(o.join("eco/data")).unwrap();
        std::fs::create_dir_all(o.join("root")).unwrap();
        std::fs::create_dir_all(o.join("mnt/shared/in")).unwrap();
        std::os::unix::fs::symlink("/root", o.join("eco/data/sub")).unwrap();
        let lookup = Lookup::new(o, &[PathBuf::from("/eco/data")]);
        let e = lookup.resolve(Path::new("/eco/data/sub/x")).unwrap_err();
        assert!(
            e.to_string()
                .contains("`/eco/data/sub` is a link (to `/root`) inside `/eco/data`"),
            "{e}"
        );
        // The writable directory itself may be a link (the operator's), and a link below it
        // is refused where the directory really is.
        std::os::unix::fs::symlink("/mnt/shared", o.join("eco/shared")).unwrap();
        std::os::unix::fs::symlink("/root", o.join("mnt/shared/planted")).unwrap();
        let lookup = Lookup::new(o, &[PathBuf::from("/eco/shared")]);
        assert_eq!(
            lookup.resolve(Path::new("/eco/shared/in")).unwrap(),
            o.join("mnt/shared/in")
        );
        assert!(lookup.resolve(Path::new("/eco/shared/planted")).is_err());
        // Outside every writable directory, links are followed.
        std::os::unix::fs::symlink("/mnt/shared", o.join("eco/elsewhere")).unwrap();
        assert_eq!(
            lookup.resolve(Path::new("/eco/elsewhere/in")).unwrap(),
            o.join("mnt/shared/in")
        );
    }

    #[test]
    fn opening_what_was_resolved_follows_no_link() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("swapped")).unwrap();
        assert!(open_beneath(&d.path().join("real")).is_ok());
        let e = open_beneath(&d.path().join("swapped")).unwrap_err();
        assert!(e.to_string().contains("a link appeared"), "{e}");
    }
}
