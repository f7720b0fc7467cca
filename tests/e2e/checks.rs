//! `pactown test` and `pactown run --once`: every service's `markpact:test` checks, sent to its
//! stable address, with the failing ones named by README line.

use crate::support::TestEnv;
use crate::support_up::{Up, py_service};

const CHECKS: &str = "```http markpact:test\nGET /health\nGET /whoami EXPECT 200\nGET /nowhere EXPECT 200\n```\n\n```sh markpact:test shell\ntest -n \"$SERVICE_URL\"\n```\n";

fn env_with(checks: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write(
        "api/README.md",
        &format!("{}\n{checks}", py_service("", "")),
    )
    .write(
        "t.pactown.yaml",
        "base_port: 0\nservices:\n  api: {health_check: /health}\n",
    );
    env
}

/// `file:line:` of the first README line equal to `text`.
fn at(env: &TestEnv, text: &str) -> String {
    let readme = env.read("api/README.md");
    let line = readme.lines().position(|l| l == text).expect("the line") + 1;
    format!("README.md:{line}:1")
}

#[test]
fn test_starts_the_ecosystem_checks_it_stops_it_and_names_the_failing_line() {
    let env = env_with(CHECKS);
    let r = env.run_up(&["test", "t.pactown.yaml", "--listen", "127.0.0.1:0"]);
    r.code(1)
        .stderr_has("GET /nowhere: answered 404, expected 200")
        .stderr_has(&at(&env, "GET /nowhere EXPECT 200"))
        .stderr_has("3 checks passed, 1 failed");
    let status = env
        .run_up(&["status", "t.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(status["running"], false, "{status}");
}

#[test]
fn test_checks_a_running_ecosystem_and_leaves_it_running() {
    let env = env_with(&CHECKS.replace("GET /nowhere EXPECT 200", "GET /nowhere EXPECT 404"));
    let up = Up::start(&env, "t.pactown.yaml");
    let pid = up.status()["pid"].clone();
    env.run_up(&["test", "t.pactown.yaml"])
        .ok()
        .stderr_has("4 checks passed, 0 failed");
    let status = up.status();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["pid"], pid, "{status}");
}

#[test]
fn run_once_exits_with_the_result_of_the_checks() {
    let env = env_with("```sh markpact:test shell\nexit 3\n```\n");
    env.run_up(&[
        "run",
        "api/README.md",
        "--once",
        "--port",
        "0",
        "--listen",
        "127.0.0.1:0",
    ])
    .code(1)
    .stderr_has("exit 3: exited with 3")
    .stderr_has(&at(&env, "exit 3"));
}

/// What `pactown init` writes comes up and passes its own checks, as a new user's first
/// `pactown test` would: the WebAssembly starter (a Python WSGI app and a JavaScript Worker
/// calling it by name) and the `--native` one.
#[test]
fn the_starters_of_init_pass_their_own_checks() {
    for flags in [&[][..], &["--native"][..]] {
        let env = TestEnv::new();
        let mut args = vec!["init", "-n", "starter"];
        args.extend_from_slice(flags);
        env.run(&args).ok();
        env.run_up(&["test", "starter.pactown.yaml", "--listen", "127.0.0.1:0"])
            .ok()
            .stderr_has("5 checks passed, 0 failed");
    }
}
