//! Watching an ecosystem's files (`up --watch`, `pactown watch`): the ecosystem file, every
//! README and every file a README includes, through inotify ([`notify`]). Their directories
//! are watched (editors replace a file by renaming a new one over it), events are filtered to
//! those files, and a burst of them (a save, a `git checkout`) becomes one reload once the
//! files have been quiet for [`DEBOUNCE`]. After each reload the set of files is read again.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher as _;

use crate::spec::Ecosystem;

/// How long the files must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Every file `eco` was read from: the ecosystem file, each README, each include.
pub fn sources(eco: &Ecosystem) -> BTreeSet<PathBuf> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = BTreeSet::from([abs(&eco.source.path)]);
    for s in eco.services.values() {
        if s.builtin.is_some() || s.pulled.is_some() {
            continue;
        }
        out.insert(abs(&s.readme));
        let c = &s.content;
        let locs = c
            .files
            .iter()
            .map(|f| &f.loc)
            .chain(c.run.iter().map(|r| &r.loc))
            .chain(c.build.iter().map(|b| &b.loc))
            .chain(c.deps.values().flatten().map(|d| &d.loc));
        for loc in locs {
            out.insert(abs(&loc.file.path));
        }
    }
    out
}

/// Watch `files` and call `reload` after each burst of changes, forever; `reload` answers the
/// files to watch from then on (the same when it failed).
pub async fn watch<F, Fut>(mut files: BTreeSet<PathBuf>, mut reload: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = BTreeSet<PathBuf>>,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event
            && !matches!(e.kind, notify::EventKind::Access(_))
        {
            for p in e.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let wanted: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in wanted.difference(&dirs) {
            watcher.watch(d, notify::RecursiveMode::NonRecursive)?;
        }
        for d in dirs.difference(&wanted) {
            let _ = watcher.unwatch(d);
        }
        dirs = wanted;
        // The first change to one of the files…
        loop {
            let Some(p) = rx.recv().await else {
                return Ok(());
            };
            if files.contains(&p) {
                break;
            }
        }
        // …then quiet.
        while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
        files = reload().await;
    }
}
