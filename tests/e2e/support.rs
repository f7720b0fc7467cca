//! Test harness: a fresh temp dir per test, files written into it, the real binary run in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn pactown_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pactown")
}

/// A temp dir with files, where `pactown` runs.
#[must_use]
pub struct TestEnv {
    dir: tempfile::TempDir,
    /// The `PACTOWN_CACHE_DIR` of its `run_up` commands: the run's shared cache, unless it has
    /// one of its own.
    cache: Option<PathBuf>,
    /// The uid its commands run as (with the same gid, no other groups), when not root's.
    user: Option<u32>,
    /// Environment variables its commands get.
    vars: Vec<(String, String)>,
}

impl TestEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("pactown-e2e-")
                .tempdir()
                .expect("tempdir"),
            cache: None,
            user: None,
            vars: Vec::new(),
        }
    }

    /// An empty environment whose pactown starts from an empty cache of its own, as on a fresh
    /// machine.
    pub fn with_empty_cache() -> Self {
        let mut env = Self::new();
        env.cache = Some(env.path().join("empty-cache"));
        env
    }

    /// An environment whose commands run as `uid`, a user with no other groups, a plain `PATH`
    /// and its `HOME` here, from an empty cache of its own: pactown as someone runs it who is
    /// not root. Files written into it become the user's with [`TestEnv::give_to_user`].
    /// Run by a user already, the tests' own uid is that user. Its `PATH` begins with a
    /// directory that is not the user's to look into (root's, mode 0700), as a shared profile
    /// may give one.
    pub fn as_user(uid: u32) -> Self {
        let mut env = Self::with_empty_cache();
        // SAFETY: no preconditions.
        env.user = (unsafe { libc::geteuid() } == 0).then_some(uid);
        env.give_to_user();
        if env.user.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(env.path().join("locked/bin")).unwrap();
            std::fs::set_permissions(
                env.path().join("locked"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
        }
        env
    }

    /// Its commands get `name=value` in their environment.
    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// The uid its commands run as.
    pub fn uid(&self) -> u32 {
        // SAFETY: no preconditions.
        self.user.unwrap_or_else(|| unsafe { libc::geteuid() })
    }

    /// Make everything written into the environment so far its user's (but `locked`).
    pub fn give_to_user(&self) {
        fn chown_tree(p: &Path, uid: u32) {
            if p.ends_with("locked") {
                return;
            }
            std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
            if p.is_dir() && !p.is_symlink() {
                for e in std::fs::read_dir(p).unwrap().flatten() {
                    chown_tree(&e.path(), uid);
                }
            }
        }
        if let Some(uid) = self.user {
            chown_tree(self.path(), uid);
        }
    }

    /// The cache its `run_up` commands use.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::support_up::test_cache()))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file (creating its folders).
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Read a file.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// A `pactown` command running in this directory with a clean, colourless environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(pactown_bin());
        c.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("PACTOWN_LOG")
            .envs(self.vars.iter().map(|(k, v)| (k, v)));
        if let Some(uid) = self.user {
            use std::os::unix::process::CommandExt;
            let locked = self.path().join("locked/bin");
            c.uid(uid).gid(uid).env("HOME", self.path()).env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", locked.display()),
            );
        }
        c
    }

    /// Run `pactown` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("spawn pactown"))
    }

    /// Absolute path of a file in the environment.
    pub fn abs(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }
}

/// A finished run.
pub struct Run {
    /// Exit code (-1 for a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Assert exit 0, showing output otherwise.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Assert a given exit code.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Assert stderr contains `s`.
    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr lacks {s:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Assert stdout contains `s`.
    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout lacks {s:?}:\n{}",
            self.stdout
        );
        self
    }

    /// Parse stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}
