//! pactown started by a user rather than root, as on a laptop: no namespaces, no user switch, no
//! cgroups, only the layers a user can have (Landlock, seccomp, rlimits, no capabilities). Its
//! builds and services must still run, sandboxed by what is left.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service};

/// A uid no account of this machine has: a user with nothing of its own but the test's dir.
const UID: u32 = 61_234;

/// A native Python service with a dependency: the build steps (installing uv, resolving,
/// building the environment) and the service run as the user; it answers with its dependency
/// imported, and a file of that user's it was not granted stays closed to it.
#[test]
fn a_user_without_root_builds_and_runs_a_native_service() {
    let env = TestEnv::as_user(UID);
    let private = env.path().join("private.txt");
    env.write("private.txt", "the user's own")
        .write(
            "u/README.md",
            &format!(
                "# u\n\n```python markpact:deps\nsix\n```\n\n{}",
                py_service(
                    "import six",
                    &format!(
                        r#"        elif self.path == "/six":
            self.reply(200, {{"six": six.__version__, "uid": os.getuid()}})
        elif self.path == "/private":
            try:
                self.reply(200, {{"read": open({private:?}).read()}})
            except OSError as e:
                self.reply(200, {{"error": type(e).__name__}})"#
                    ),
                )
                .split_once('\n')
                .unwrap()
                .1
            ),
        )
        .write(
            "u.pactown.yaml",
            "base_port: 0\nservices:\n  u: {health_check: /health, timeout: 60}\n",
        );
    env.give_to_user();
    let up = Up::start(&env, "u.pactown.yaml");
    assert_eq!(up.service("u")["sandbox"], "partial", "{}", up.status());
    let (code, body) = http_get(up.port("u"), "/six").unwrap();
    assert_eq!(code, 200, "{body}");
    let six: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(six["uid"], UID, "{six}");
    assert!(six["six"].as_str().is_some_and(|v| !v.is_empty()), "{six}");
    let (code, body) = http_get(up.port("u"), "/private").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        r#"{"error": "PermissionError"}"#,
        "Landlock let the service read {}",
        private.display()
    );
    up.down().ok();
}
