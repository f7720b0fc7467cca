//! Where a start goes, for `pactown bench`: with `PACTOWN_START_MARKS=FILE` in its
//! environment, a pactown process appends a line to `FILE` the first time it reaches each
//! [`Stage`]: the stage's name and `CLOCK_MONOTONIC` in nanoseconds, the clock the bench reads
//! when it spawns the process, so each stage is timed from the spawn. Unset (always, but in a
//! bench), a mark is one load of an atomic.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The variable naming the file marks go to.
pub const ENV: &str = "PACTOWN_START_MARKS";

/// The stages of a start, in the order a start reaches them (but for `Ready` and `Answered`,
/// see [`Stage::Answered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `main` entered: the exec and the dynamic loader are behind.
    Main,
    /// The components the cache had are loaded into the engine (a wasm service's start).
    Loaded,
    /// Every service is ready.
    Ready,
    /// The first answer below 500 at a service's address is on its way to a client (it can
    /// come a little before [`Stage::Ready`]: a service answers once it is ready itself).
    Answered,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 4] = [Stage::Main, Stage::Loaded, Stage::Ready, Stage::Answered];

    /// Its name in the file and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Main => "main",
            Stage::Loaded => "loaded",
            Stage::Ready => "ready",
            Stage::Answered => "answered",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The file, opened at the first mark; `None` when the variable is unset (or cannot be opened).
static FILE: OnceLock<Option<std::fs::File>> = OnceLock::new();
/// Whether each stage was marked.
static MARKED: [AtomicBool; 4] = [const { AtomicBool::new(false) }; 4];
/// Set when marks are not wanted (the variable unset): known from the first mark on
/// ([`Stage::Main`], first thing).
static OFF: AtomicBool = AtomicBool::new(false);

/// Mark `stage` reached, the first time only.
pub fn mark(stage: Stage) {
    if OFF.load(Ordering::Relaxed) || MARKED[stage as usize].swap(true, Ordering::Relaxed) {
        return;
    }
    let at = now_ns();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os(ENV)?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .ok()
    });
    match file.as_ref() {
        // One write per line (O_APPEND): lines from several threads do not interleave.
        Some(mut f) => drop(f.write_all(format!("{} {at}\n", stage.name()).as_bytes())),
        None => OFF.store(true, Ordering::Relaxed),
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the same clock in every process of the machine.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock and a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The stages a marks file holds, each in milliseconds after `since_ns` (a [`now_ns`] taken
/// before the spawn), in the order of [`Stage::ALL`]; a stage not reached is left out.
pub fn read(text: &str, since_ns: u64) -> Vec<(Stage, f64)> {
    let mut out: Vec<(Stage, f64)> = text
        .lines()
        .filter_map(|l| {
            let (name, at) = l.split_once(' ')?;
            let at: u64 = at.trim().parse().ok()?;
            Some((
                Stage::from_name(name)?,
                at.saturating_sub(since_ns) as f64 / 1e6,
            ))
        })
        .collect();
    out.sort_by_key(|(s, _)| *s as usize);
    out.dedup_by_key(|(s, _)| *s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marks_file_reads_back_in_stage_order() {
        let text = "main 1500000\nready 4000000\nloaded 3000000\nbogus 1\nanswered x\n";
        let stages = read(text, 1_000_000);
        assert_eq!(
            stages,
            vec![
                (Stage::Main, 0.5),
                (Stage::Loaded, 2.0),
                (Stage::Ready, 3.0)
            ]
        );
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(a > 0 && b >= a);
    }
}
