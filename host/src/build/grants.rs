//! A service's `:rw` grants, made before it starts: each directory it is granted read-write
//! is created when missing (for a component and a native service alike), and, for a native
//! service, made usable by the user it runs as. As root, pactown runs a native service as a
//! uid of its own, which owns nothing on the host: a granted directory owned by the operator
//! would be read-only to it. So each is given a POSIX ACL entry for its uid
//! (`user:<uid>:rwx`), and a default entry so that what anyone creates in it stays writable to
//! the service (as Podman's `:U` makes a volume its container user's, but without taking the
//! directory from its owner, and for several services at once). Nothing else of the directory
//! changes; what was in it keeps its own permissions.
//!
//! The directory is looked up through no link a service may have made (`pactown_runtime::links`):
//! the ACL is set on the directory found, through its descriptor.

use std::path::Path;

use anyhow::Context;

use crate::plan::{LayerName, Plan, ServicePlan};

/// `ACL_USER_OBJ`, `ACL_USER`, `ACL_GROUP_OBJ`, `ACL_GROUP`, `ACL_MASK`, `ACL_OTHER`.
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The id of the entries that have none.
const NO_ID: u32 = u32::MAX;
/// The version of the xattr format.
const VERSION: u32 = 2;

/// One ACL entry: tag, permissions (`rwx` as 4/2/1), id.
type Entry = (u16, u16, u32);

/// Create `sp`'s missing `:rw` directories and make each writable to the uid it runs as (a
/// native service's own, when it has one).
pub fn prepare_writable(plan: &Plan, sp: &ServicePlan) -> anyhow::Result<()> {
    let user = sp
        .sandbox
        .user
        .filter(|_| sp.sandbox.layer_on(LayerName::User));
    if !sp.dirs.iter().any(|d| d.write) {
        return Ok(());
    }
    let lookup = plan.links();
    for d in sp.dirs.iter().filter(|d| d.write) {
        let granted = std::path::absolute(&d.host)?;
        let real = lookup.resolve(&granted).with_context(|| {
            format!(
                "{}: cannot grant `{}` to `{}`",
                plan.at(&d.span),
                d.host.display(),
                sp.name
            )
        })?;
        std::fs::create_dir_all(&real).with_context(|| {
            format!("{}: cannot create `{}`", plan.at(&d.span), d.host.display())
        })?;
        let Some((uid, _)) = user else { continue };
        let dir = pactown_runtime::links::open_beneath(&real)?;
        let path = pactown_runtime::links::fd_path(Path::new("/"), &dir);
        let path = path.to_str().expect("a /proc path is UTF-8");
        let mode = rustix::fs::fstat(&dir)?.st_mode;
        // The directory's own ACL, and the default one what is created in it inherits.
        for name in ["system.posix_acl_access", "system.posix_acl_default"] {
            let entries = read_acl(path, name)?.unwrap_or_else(|| from_mode(mode));
            rustix::fs::setxattr(
                path,
                name,
                &encode(&with_user(entries, uid)),
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!(
                    "{}: cannot make `{}` writable to `{}` (uid {uid}) with an ACL; its filesystem may not support ACLs: give the directory to that uid, or run the service as a `user:` who can write it",
                    plan.at(&d.span),
                    d.host.display(),
                    sp.name
                )
            })?;
        }
    }
    Ok(())
}

/// The ACL named `name` of `path`, if it has one.
fn read_acl(path: &str, name: &str) -> anyhow::Result<Option<Vec<Entry>>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::getxattr(path, name, &mut buf[..]) {
        Ok(n) => Ok(Some(decode(&buf[..n])?)),
        Err(rustix::io::Errno::NODATA) => Ok(None),
        Err(e) => Err(std::io::Error::from(e).into()),
    }
}

/// The three entries a file's mode stands for.
fn from_mode(mode: u32) -> Vec<Entry> {
    vec![
        (USER_OBJ, ((mode >> 6) & 7) as u16, NO_ID),
        (GROUP_OBJ, ((mode >> 3) & 7) as u16, NO_ID),
        (OTHER, (mode & 7) as u16, NO_ID),
    ]
}

/// `entries` with `user:<uid>:rwx`, and a mask that lets every named entry have what it says.
fn with_user(mut entries: Vec<Entry>, uid: u32) -> Vec<Entry> {
    entries.retain(|(tag, _, id)| !(*tag == USER && *id == uid) && *tag != MASK);
    entries.push((USER, 7, uid));
    let mask = entries
        .iter()
        .filter(|(tag, _, _)| matches!(*tag, USER | GROUP_OBJ | GROUP))
        .fold(0, |m, (_, perm, _)| m | perm);
    entries.push((MASK, mask, NO_ID));
    entries.sort_by_key(|(tag, _, id)| (*tag, *id));
    entries
}

fn decode(bytes: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let version = bytes
        .get(..4)
        .map(|v| u32::from_le_bytes(v.try_into().expect("4 bytes")));
    anyhow::ensure!(
        version == Some(VERSION) && (bytes.len() - 4).is_multiple_of(8),
        "an ACL in a format this pactown does not know"
    );
    Ok(bytes[4..]
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect())
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = VERSION.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend(tag.to_le_bytes());
        out.extend(perm.to_le_bytes());
        out.extend(id.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_entry_is_added_with_a_mask_and_kept_once() {
        let base = from_mode(0o755);
        let acl = with_user(base.clone(), 1000);
        assert_eq!(
            acl,
            vec![
                (USER_OBJ, 7, NO_ID),
                (USER, 7, 1000),
                (GROUP_OBJ, 5, NO_ID),
                (MASK, 7, NO_ID),
                (OTHER, 5, NO_ID),
            ]
        );
        // Again, and for a second uid: one entry each, one mask.
        let twice = with_user(with_user(acl.clone(), 1000), 1001);
        assert_eq!(twice.iter().filter(|e| e.0 == MASK).count(), 1);
        assert_eq!(twice.iter().filter(|e| e.0 == USER).count(), 2);
        assert_eq!(decode(&encode(&twice)).unwrap(), twice);
    }

    #[test]
    fn the_kernel_takes_the_acl_and_the_uid_can_write() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().to_str().unwrap();
        let acl = encode(&with_user(from_mode(0o700), 4242));
        rustix::fs::setxattr(
            path,
            "system.posix_acl_access",
            &acl,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let back = read_acl(path, "system.posix_acl_access").unwrap().unwrap();
        assert!(back.contains(&(USER, 7, 4242)), "{back:?}");
    }
}
