//! pactown started by a user rather than root, as on a laptop: no user switch, no cgroups,
//! namespaces only inside a user namespace of the sandbox's own (where the kernel lets a user
//! make one), and the layers a user can have (Landlock, seccomp, rlimits, no capabilities). Its
//! builds and services must still run, sandboxed by what is left.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service};

/// Uids no account of this machine has, one per test (a user's processes share one
/// `RLIMIT_NPROC` count, so tests running at once must not share a user): each has nothing of
/// its own but its test's dir.
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
    assert_eq!(six["uid"], env.uid(), "{six}");
    assert!(six["six"].as_str().is_some_and(|v| !v.is_empty()), "{six}");
    let (code, body) = http_get(up.port("u"), "/private").unwrap();
    assert_eq!(code, 200, "{body}");
    // Not in its root (a user namespace let it have one), or refused by Landlock (without).
    assert!(
        [
            r#"{"error": "FileNotFoundError"}"#,
            r#"{"error": "PermissionError"}"#
        ]
        .contains(&body.as_str()),
        "the service read {}: {body}",
        private.display()
    );
    up.down().ok();
}

/// The native half of the attack suite (see `sandbox::every_attack_…`), run by a user: with no
/// uid of its own and no cgroup, the attacker shares the user's uid with the victim and
/// pactown; a user namespace of its own gives it its PID and mount namespaces, as root's
/// sandbox has. Every attempt must be denied or contained, and the rest allowed.
#[test]
fn every_native_attack_is_denied_or_contained_when_a_user_runs_pactown() {
    attack_as_user(&TestEnv::as_user(UID + 1), true);
}

/// The same where a user may make no user namespace (some distributions forbid it; here the
/// layer is turned off): what is left (Landlock with its scopes, seccomp, rlimits, the proxy)
/// must still deny or contain every attempt. A unix socket of the user's (here the test's) is
/// out of reach because no unix socket can be made. One attempt is left out, as the namespaces
/// layer says: without a PID namespace the attacker sees the host's processes and their
/// command lines, as every process of the user does.
#[test]
fn every_native_attack_is_denied_or_contained_when_a_user_may_make_no_namespace() {
    let env = TestEnv::as_user(UID + 5).with_var("PACTOWN_DISABLE_LAYERS", "namespaces");
    attack_as_user(&env, false);
}

fn attack_as_user(env: &TestEnv, namespaces: bool) {
    use crate::attackers::{COMMON, NATIVE, NATIVE_CONTROLS, NATIVE_ONLY};
    use crate::scene::{Scene, assert_all_as_expected};
    let scene = Scene::new(env);
    let (allowed, alias) = (&scene.allowed, &scene.alias);
    // No abstract socket of its own, unlike the root suite's victim: it could not make one.
    let victim = py_service("open('secret.txt', 'w').write('s3cret')", "");
    env.write("victim/README.md", &victim)
        .write("declared/README.md", &py_service("", ""))
        .write("attacker/README.md", NATIVE)
        .write(
            "a.pactown.yaml",
            &format!(
                "base_port: 0\nservices:\n  victim: {{health_check: /health, env: {{VICTIM_SECRET: the-victims-secret}}}}\n  \
                 declared: {{health_check: /health}}\n  \
                 attacker:\n    health_check: /health\n    depends_on: [declared]\n    allowed_hosts: [\"{allowed}\", {alias}]\n    limits: {{memory: 96M, processes: 48}}\n"
            ),
        );
    // The host's socket, too, is the user's: only the sandbox stands between them.
    env.give_to_user();
    let up = Up::start(env, "a.pactown.yaml");
    let attacker = up.service("attacker");
    println!("native sandbox run by a user: {}", attacker["layers"]);
    assert_eq!(attacker["sandbox"], "partial", "{attacker}");
    let layer = attacker["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "namespaces")
        .cloned()
        .unwrap();
    assert_eq!(layer["on"], namespaces, "{layer}");
    let native_only: Vec<&'static str> = NATIVE_ONLY
        .iter()
        .copied()
        .filter(|a| namespaces || *a != "proc-cmdline")
        .collect();
    let plan = [(
        "native",
        "attacker",
        [COMMON, &native_only[..]],
        NATIVE_CONTROLS,
    )];
    assert_all_as_expected(&scene.attack(env, &up, &plan));
    scene.assert_host_untouched(env, &up, &["victim", "declared", "attacker"]);
    up.down().ok();
}

/// A JavaScript Worker built into a component and served, by a user from an empty cache: Node.js
/// and componentize-js installed, the module pre-initialized (componentize-js's wizer keeps its
/// compile cache in the home its account names, which a user's build may not write), served.
#[test]
fn a_user_without_root_builds_and_serves_a_worker_component() {
    let env = TestEnv::as_user(UID + 2);
    let readme = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/hello-worker/README.md"
    );
    env.write("w/README.md", &std::fs::read_to_string(readme).unwrap())
        .write(
            "w.pactown.yaml",
            "base_port: 0\nservices:\n  w: {health_check: /, timeout: 60}\n",
        );
    env.give_to_user();
    let up = Up::start(&env, "w.pactown.yaml");
    assert_eq!(up.service("w")["kind"], "wasm-http", "{}", up.status());
    let (code, body) = http_get(up.port("w"), "/?name=user").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""hello":"user""#), "{body}");
    up.down().ok();
}

/// A Node.js service whose run block runs `npm install`, and a Go service, by a user from an
/// empty cache: Node.js, the npm packages and Go installed by pactown, each built in the build
/// sandbox and run in its own.
#[test]
fn a_user_without_root_runs_node_and_go_services() {
    let env = TestEnv::as_user(UID + 3);
    env.write("n/README.md", crate::fresh::NODE)
        .write("g/README.md", crate::fresh::GO)
        .write(
            "ng.pactown.yaml",
            "base_port: 0\nservices:\n  n: {health_check: /health, timeout: 120}\n  g: {health_check: /health, timeout: 120}\n",
        );
    env.give_to_user();
    let up = Up::start(&env, "ng.pactown.yaml");
    for s in ["n", "g"] {
        let (code, body) = http_get(up.port(s), "/health").unwrap();
        assert_eq!(code, 200, "{s}: {body}");
    }
    up.down().ok();
}

/// Run by a user who may make no user namespace, a grant is a Landlock rule on the host's path
/// rather than a bind (with one, it is a bind, as `grants::` has it for root): it too follows
/// no link that a service could have planted. `planter` writes `./data` and replaces
/// `data/sub` with a link to a directory of the user's; `victim`'s grant of `./data/sub`,
/// looked up again when it restarts, is refused, and it reads nothing there.
#[test]
fn a_users_grant_follows_no_link_another_service_planted() {
    let env = TestEnv::as_user(UID + 4).with_var("PACTOWN_DISABLE_LAYERS", "namespaces");
    let file = env.abs("data/sub/hello.txt").display().to_string();
    let victim = py_service(
        "",
        &format!(
            "        elif self.path == '/read':\n            try:\n                self.reply(200, {{'read': open({file:?}).read()}})\n            except OSError as e:\n                self.reply(200, {{'error': type(e).__name__}})"
        ),
    );
    crate::grants::planted(&env, &victim);
    env.give_to_user();
    let up = crate::grants::up_and_plant(&env);
    crate::grants::refused(&env.run_up(&["restart", "g.pactown.yaml", "victim"]))
        .stderr_has("not started again until `pactown restart`");
    if let Ok((_, body)) = http_get(up.port("victim"), "/read") {
        assert!(!body.contains("the host's secret"), "{body}");
    }
}
