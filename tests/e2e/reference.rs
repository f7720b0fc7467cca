//! The Python pactown's own examples, from its sdist on PyPI (fetched here, never committed),
//! come up unchanged on an empty cache, every service sandboxed, and pass their own
//! `markpact:test` checks.

use std::path::PathBuf;

use crate::support::TestEnv;
use crate::support_up::Up;

/// The version whose examples are our floor.
const REFERENCE: &str = "0.1.173";

/// The reference's `examples/` folder, downloaded once per test run.
fn reference_examples() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reference-{REFERENCE}"));
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join(".lock")).unwrap();
    lock.lock().unwrap();
    let examples = base.join(format!("pactown-{REFERENCE}/examples"));
    if !examples.is_dir() {
        let out = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
            ])
            .arg(format!("pactown=={REFERENCE}"))
            .arg("-d")
            .arg(&base)
            .output()
            .expect("python3 -m pip");
        assert!(
            out.status.success(),
            "cannot download the reference sdist: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sdist = base.join(format!("pactown-{REFERENCE}.tar.gz"));
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')",
            ])
            .arg(&sdist)
            .arg(&base)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    examples
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// `up -d` on an empty cache, every service sandboxed at level full, `pactown test` passing.
fn comes_up_unchanged(example: &str, file: &str) {
    let env = TestEnv::with_empty_cache();
    copy_dir(&reference_examples().join(example), env.path());
    let up = Up::start(&env, file);
    for s in up.status()["services"].as_array().unwrap() {
        assert_eq!(s["state"], "ready", "{s}");
        assert_eq!(s["sandbox"], "full", "{s}");
    }
    let checks = env.run_up(&["test", file]);
    checks.ok();
    assert!(checks.stderr.contains(" 0 failed"), "{}", checks.stderr);
    up.down().ok();
}

#[test]
fn the_reference_saas_platform_comes_up_unchanged() {
    comes_up_unchanged("saas-platform", "saas.pactown.yaml");
}

#[test]
fn the_reference_polyglot_microservices_come_up_unchanged() {
    comes_up_unchanged("microservices", "saas.pactown.yaml");
}
