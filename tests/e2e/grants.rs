//! Granted directories and the links a service can plant: a service that writes a granted
//! directory can put a link where another grant (another service's, or its own on a restart)
//! will be looked up. pactown follows no link that lies below a path some service can write:
//! the grant is refused, with the link and the way out named, and nothing of the host is bound
//! in its place.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service};

/// An ecosystem where `planter` writes `./data` and, on `GET /plant`, replaces the directory
/// `data/sub` with a link to a host directory holding `hello.txt`; `victim` (the README given)
/// is granted `./data/sub` read-only at `/shared`.
pub(crate) fn planted(env: &TestEnv, victim: &str) {
    env.write("secret/hello.txt", "the host's secret\n");
    std::fs::create_dir_all(env.abs("data/sub")).unwrap();
    // Writable by the planter, whatever uid it runs as (as an operator shares a directory).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.abs("data"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let route = format!(
        "        elif self.path == '/plant':\n            os.rmdir({sub:?}); os.symlink({:?}, {sub:?})\n            self.reply(200, {{'planted': True}})",
        env.abs("secret").display().to_string(),
        sub = env.abs("data/sub").display().to_string()
    );
    env.write("planter/README.md", &py_service("", &route))
        .write("victim/README.md", victim)
        .write(
            "g.pactown.yaml",
            "base_port: 0\nservices:\n  planter:\n    health_check: /health\n    dirs: ['./data:/data:rw']\n  victim:\n    health_check: /health\n    dirs: ['./data/sub:/shared']\n",
        );
}

/// Bring the ecosystem up and have the planter plant its link.
pub(crate) fn up_and_plant(env: &TestEnv) -> Up<'_> {
    let up = Up::start(env, "g.pactown.yaml");
    assert_eq!(http_get(up.port("planter"), "/plant").unwrap().0, 200);
    assert!(env.abs("data/sub").is_symlink());
    up
}

/// The refusal names the link and what can write where it lies.
pub(crate) fn refused(run: &crate::support::Run) -> &crate::support::Run {
    assert_ne!(run.code, 0, "{}", run.stderr);
    run.stderr_has("data/sub` is a link")
        .stderr_has("which a sandboxed service can write")
}

#[test]
fn a_native_service_is_not_granted_what_another_service_linked_in_its_way() {
    let env = TestEnv::new();
    let file = env.abs("data/sub/hello.txt").display().to_string();
    let victim = py_service(
        "",
        &format!(
            "        elif self.path == '/read':\n            self.reply(200, {{'read': open({file:?}).read()}})"
        ),
    );
    planted(&env, &victim);
    let up = up_and_plant(&env);
    // Its sandbox is made anew on a restart: the grant is looked up again, and refused, at
    // once (not retried until its start times out: it would be refused the same way).
    refused(&env.run_up(&["restart", "g.pactown.yaml", "victim"]))
        .stderr_has("not started again until `pactown restart`");
    if let Ok((_, body)) = http_get(up.port("victim"), "/read") {
        assert!(!body.contains("the host's secret"), "{body}");
    }
}

#[test]
fn a_wasm_service_is_not_granted_what_another_service_linked_in_its_way() {
    let env = TestEnv::new();
    planted(&env, crate::wasm::GUEST);
    let up = up_and_plant(&env);
    // Every instance gets the directory granted when the service started, not what its path
    // names now.
    let (_, body) = http_get(up.port("victim"), "/shared").unwrap();
    assert!(!body.contains("the host's secret"), "{body}");
    up.down().ok();
    // Started again, the grant is looked up again, and refused: nothing starts.
    let again = env.run_up(&["up", "-d", "g.pactown.yaml", "--listen", "127.0.0.1:0"]);
    env.run_up(&["down", "g.pactown.yaml"]);
    refused(&again);
}

const NODE_WITH_MODULES: &str = r#"# a Node service with a package of its own

```json markpact:file path=package.json
{"name": "app", "version": "1.0.0", "dependencies": {"lib": "file:./lib"}}
```

```json markpact:file path=lib/package.json
{"name": "lib", "version": "1.0.0", "main": "index.js"}
```

```javascript markpact:file path=lib/index.js
module.exports = "ok";
```

```javascript markpact:file path=server.js
const body = require("lib");
require("http").createServer((req, res) => res.end(body)).listen(process.env.PORT, "127.0.0.1");
```

```bash markpact:run
node server.js
```
"#;

/// A Node service's `node_modules` is an overlay whose upper and work layers are in its own
/// sandbox dir. overlayfs empties `work/` in the work layer, as root: a service that made its
/// work layer a link to a host directory would have that directory's `work/` emptied on its
/// next start. The link is refused, and the host's files stay.
#[test]
fn an_overlay_layer_the_service_turned_into_a_link_is_refused() {
    let env = TestEnv::new();
    env.write("app/README.md", NODE_WITH_MODULES)
        .write("host/work/keep.txt", "the host's\n")
        .write(
            "n.pactown.yaml",
            "base_port: 0\nservices:\n  app: {timeout: 60}\n",
        );
    let up = Up::start(&env, "n.pactown.yaml");
    assert_eq!(http_get(up.port("app"), "/").unwrap(), (200, "ok".into()));
    up.down().ok();
    // As the service could: its work layer becomes a link to a directory of the host.
    let layers = env.abs(".pactown-sandboxes/app/.pactown/node_modules");
    let key = std::fs::read_dir(&layers)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::remove_dir_all(key.join("work")).unwrap();
    // Relative: an absolute target would name nothing where the sandbox is assembled.
    let up_to_env = "../".repeat(key.strip_prefix(env.path()).unwrap().components().count());
    std::os::unix::fs::symlink(format!("{up_to_env}host"), key.join("work")).unwrap();
    let again = env.run_up(&["up", "-d", "n.pactown.yaml", "--listen", "127.0.0.1:0"]);
    env.run_up(&["down", "n.pactown.yaml"]);
    assert_eq!(env.read("host/work/keep.txt"), "the host's\n");
    assert_ne!(again.code, 0, "{}", again.stderr);
    again.stderr_has("work` is a link");
}

/// A native service runs as a uid of its own, which owns nothing on the host; its `:rw` grants
/// are still its to write: made when missing, and given to each service granted them (two
/// here, one directory, each writing to what the other made), the directory's owner and mode
/// left as they were.
#[test]
fn a_native_services_rw_grant_is_writable_to_it_and_shared() {
    let env = TestEnv::new();
    let file = env.abs("shared/log.txt").display().to_string();
    let writer = |name: &str| {
        py_service(
            "",
            &format!(
                "        elif self.path == '/append':\n            open({file:?}, 'a').write({name:?} + '\\n'); self.reply(200, {{'log': open({file:?}).read()}})"
            ),
        )
    };
    std::fs::create_dir_all(env.abs("existing")).unwrap();
    env.write("a/README.md", &writer("a"))
        .write("b/README.md", &writer("b"))
        .write(
            "s.pactown.yaml",
            "base_port: 0\nservices:\n  a:\n    health_check: /health\n    dirs: ['./shared:/shared:rw', './existing:/existing:rw']\n  b:\n    health_check: /health\n    dirs: ['./shared:/shared:rw']\n",
        );
    let up = Up::start(&env, "s.pactown.yaml");
    for (service, log) in [("a", "a\n"), ("b", "a\nb\n"), ("a", "a\nb\na\n")] {
        let (code, body) = http_get(up.port(service), "/append").unwrap();
        assert_eq!(code, 200, "{service}: {body}");
        assert!(
            body.contains(&serde_json::to_string(log).unwrap()),
            "{body}"
        );
    }
    use std::os::unix::fs::MetadataExt;
    let existing = std::fs::metadata(env.abs("existing")).unwrap();
    assert_eq!((existing.uid(), existing.mode() & 0o7000), (0, 0));
}
