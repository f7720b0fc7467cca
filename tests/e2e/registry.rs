//! The registry with a real server process: publish, list, search, get, readme, pull and `up`
//! of what was pulled; immutable versions, validated names, tokens; digests checked by `pull`
//! and `up`; a SIGKILL in the middle of publishing; 50 publishes at once; and the Python
//! pactown's client and server against ours.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, http_request_with, py_service};

/// A registry server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `pactown registry serve --port 0 --storage DIR [--token-file F] [extra]`, once it says
    /// where it listens.
    fn start(env: &TestEnv, storage: &str, token: Option<&str>, extra: &[&str]) -> Self {
        let mut cmd = env.cmd(&["registry", "serve", "--port", "0", "--storage", storage]);
        if let Some(t) = token {
            env.write("token", &format!("# publishers\n{t}\n"));
            cmd.args(["--token-file", "token"]);
        }
        let mut child = cmd
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the registry says where it serves")
                .unwrap();
            if let Some(rest) = line.strip_prefix("Serving HTTP on http://127.0.0.1:") {
                break rest.split('/').next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A publish body, as the reference's client sends it.
fn publish_body(name: &str, version: &str, readme: &str) -> String {
    serde_json::json!({"name": name, "version": version, "readme_content": readme, "namespace": "default", "description": "", "tags": [], "metadata": {}}).to_string()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

const AUTH_WORKER: &str = "# auth\n\n```javascript markpact:file path=index.js\nexport default { fetch(req) { return Response.json({ user: \"ada\", path: new URL(req.url).pathname }); } };\n```\n";

/// A native service that answers `/` with what `auth` answers at `/me`.
fn web_readme() -> String {
    py_service(
        "import urllib.request",
        "        elif self.path == \"/\":\n            self.reply(200, json.loads(urllib.request.urlopen(os.environ[\"AUTH_URL\"] + \"/me\").read()))",
    )
}

#[test]
fn publish_list_search_pull_and_up_from_a_real_registry() {
    let env = TestEnv::new();
    let mut server = Server::start(&env, "store", Some("s3cret"), &[]);
    let url = server.url();
    env.write("a/auth/README.md", AUTH_WORKER)
        .write("a/auth/extra.md", "extra prose")
        .write(
            "a/a.pactown.yaml",
            "name: a\nversion: 0.1.0\nbase_port: 0\nservices:\n  auth: {}\n",
        );
    // Without the token: refused, saying what to do.
    env.run_up(&["publish", "a/a.pactown.yaml", "--registry", &url])
        .code(1)
        .stderr_has("needs a token to upload the component of `auth`")
        .stderr_has("--token");
    env.run_up(&[
        "publish",
        "a/a.pactown.yaml",
        "--registry",
        &url,
        "--token",
        "wrong",
    ])
    .code(1)
    .stderr_has("refused the token");
    env.run_up(&[
        "publish",
        "a/a.pactown.yaml",
        "--registry",
        &url,
        "--token",
        "s3cret",
    ])
    .ok()
    .stderr_has("published default/auth 0.1.0");
    // Again: the same content is no change.
    env.run_up(&[
        "publish",
        "a/a.pactown.yaml",
        "--registry",
        &url,
        "--token",
        "s3cret",
    ])
    .ok()
    .stderr_has("already published with the same content");

    // The reference's API, read by anyone.
    let port = server.port;
    let list = json(&http_get(port, "/v1/artifacts").unwrap().1);
    assert_eq!(list[0]["name"], "auth");
    assert_eq!(list[0]["latest_version"], "0.1.0");
    assert_eq!(list[0]["versions"], serde_json::json!(["0.1.0"]));
    assert_eq!(
        json(&http_get(port, "/v1/artifacts?search=AUT").unwrap().1)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json(&http_get(port, "/v1/artifacts?search=nothing").unwrap().1),
        serde_json::json!([])
    );
    assert_eq!(
        json(&http_get(port, "/v1/namespaces").unwrap().1)["namespaces"],
        serde_json::json!(["default"])
    );
    let v = json(
        &http_get(port, "/v1/artifacts/default/auth/latest")
            .unwrap()
            .1,
    );
    assert_eq!(v["version"], "0.1.0");
    assert!(
        v["metadata"]["pactown"]["component"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let readme = json(
        &http_get(port, "/v1/artifacts/default/auth/0.1.0/readme")
            .unwrap()
            .1,
    );
    assert_eq!(readme["content"], AUTH_WORKER);
    assert_eq!(http_get(port, "/v1/artifacts/default/nope").unwrap().0, 404);
    env.run(&["registry", "search", "auth", "--json", "--registry", &url])
        .ok()
        .stdout_has("\"latest_version\": \"0.1.0\"");
    // Republishing a version with other content: 409 naming the existing checksum.
    let token = [("Authorization", "Bearer s3cret")];
    let (code, body) = http_request_with(
        port,
        "POST",
        "/v1/publish",
        &token,
        Some(&publish_body("auth", "0.1.0", "# other\n")),
    )
    .unwrap();
    assert_eq!(code, 409, "{body}");
    assert_eq!(json(&body)["checksum"], v["checksum"]);

    // Another ecosystem depends on it through the registry.
    env.write("b/web/README.md", &web_readme()).write(
        "b/b.pactown.yaml",
        &format!(
            "name: b\nbase_port: 0\nregistry: {{url: \"{url}\"}}\nservices:\n  web:\n    health_check: /health\n    depends_on:\n      - {{name: auth, registry: default, version: \"^0.1\"}}\n"
        ),
    );
    env.run_up(&["validate", "b/b.pactown.yaml"])
        .code(1)
        .stderr_has("`auth` comes from a registry and has not been pulled")
        .stderr_has("b/b.pactown.yaml:8:16");
    env.run_up(&["pull", "b/b.pactown.yaml"])
        .ok()
        .stderr_has("auth: default/auth 0.1.0")
        .stderr_has("written");
    let lock = json(&env.read("b/pactown.lock"));
    assert_eq!(lock["packages"]["auth"]["version"], "0.1.0");
    assert_eq!(lock["packages"]["auth"]["registry"], url);
    env.run_up(&["pull", "b/b.pactown.yaml", "--locked"])
        .ok()
        .stderr_has("unchanged");
    {
        let up = Up::start(&env, "b/b.pactown.yaml");
        assert!(
            !up.started.stderr.contains("building `auth`"),
            "the published component is used: {}",
            up.started.stderr
        );
        assert_eq!(up.service("auth")["kind"], "wasm-http");
        let (code, body) = http_get(up.port("web"), "/").unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(json(&body)["user"], "ada");
        up.down().ok();
    }
    // A newer version: `--locked` refuses to move, a plain pull moves.
    let (code, _) = http_request_with(
        port,
        "POST",
        "/v1/publish",
        &token,
        Some(&publish_body("auth", "0.2.0", AUTH_WORKER)),
    )
    .unwrap();
    assert_eq!(code, 200);
    let yaml = env.read("b/b.pactown.yaml").replace("^0.1", "^0.2");
    env.write("b/b.pactown.yaml", &yaml);
    env.run_up(&["pull", "b/b.pactown.yaml", "--locked"])
        .code(1)
        .stderr_has("without `--locked`");
    assert_eq!(
        json(&env.read("b/pactown.lock"))["packages"]["auth"]["version"],
        "0.1.0"
    );
    env.run_up(&["pull", "b/b.pactown.yaml"]).ok();
    assert_eq!(
        json(&env.read("b/pactown.lock"))["packages"]["auth"]["version"],
        "0.2.0"
    );
    // 0.2.0 came without a component: `up` builds it from its README.
    let yaml = yaml.replace("^0.2", "^0.1");
    env.write("b/b.pactown.yaml", &yaml);
    env.run_up(&["pull", "b/b.pactown.yaml"]).ok();

    // Tampered with after the pull: `up` refuses, naming the lock.
    let pulled = env.abs("b/.pactown/b/pulled/auth");
    std::fs::write(pulled.join("component.wasm"), b"not the component").unwrap();
    env.run_up(&["up", "-d", "b/b.pactown.yaml", "--listen", "127.0.0.1:0"])
        .code(1)
        .stderr_has("pactown.lock pins");
    let readme = pulled.join("README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    std::fs::write(&readme, text + "\n<!-- changed -->\n").unwrap();
    env.run_up(&["validate", "b/b.pactown.yaml"])
        .code(1)
        .stderr_has("it was changed after");
    // A blob damaged on the registry's disk is refused by `pull`.
    server.kill();
    let blobs = env.abs("store/blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        if e.metadata().unwrap().len() > 100_000 {
            std::fs::write(e.path(), b"tampered").unwrap();
        }
    }
    let server = Server::start(&env, "store", Some("s3cret"), &[]);
    env.run_up(&["pull", "b/b.pactown.yaml", "--registry", &server.url()])
        .code(1)
        .stderr_has("damaged");
}

#[test]
fn names_tokens_and_private_reads_are_enforced() {
    let env = TestEnv::new();
    let server = Server::start(&env, "store", Some("s3cret"), &["--private"]);
    let port = server.port;
    let token = [("Authorization", "Bearer s3cret")];
    for bad in ["a/../..", "", &"x".repeat(65), "-x", "a b"] {
        let (code, body) = http_request_with(
            port,
            "POST",
            "/v1/publish",
            &token,
            Some(&publish_body(bad, "1.0.0", "# x\n")),
        )
        .unwrap();
        assert_eq!(code, 400, "{bad:?}: {body}");
        assert!(body.contains("is not valid"), "{body}");
    }
    let (code, body) = http_request_with(
        port,
        "POST",
        "/v1/publish",
        &token,
        Some(&publish_body("ok", "one", "# x\n")),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not semver"), "{body}");
    let (code, body) = http_request_with(
        port,
        "POST",
        "/v1/publish",
        &[],
        Some(&publish_body("ok", "1.0.0", "# x\n")),
    )
    .unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let wrong = [("Authorization", "Bearer s3cre")];
    assert_eq!(
        http_request_with(
            port,
            "POST",
            "/v1/publish",
            &wrong,
            Some(&publish_body("ok", "1.0.0", "# x\n"))
        )
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        http_request_with(
            port,
            "POST",
            "/v1/publish",
            &token,
            Some(&publish_body("ok", "1.0.0", "# x\n"))
        )
        .unwrap()
        .0,
        200
    );
    // Private: reading needs the token too; health does not.
    assert_eq!(http_get(port, "/v1/artifacts").unwrap().0, 401);
    assert_eq!(
        http_request_with(port, "GET", "/v1/artifacts", &token, None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(http_get(port, "/health").unwrap().0, 200);
    assert_eq!(
        http_request_with(port, "DELETE", "/v1/artifacts/default/ok", &[], None)
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        http_request_with(port, "DELETE", "/v1/artifacts/default/ok", &token, None)
            .unwrap()
            .0,
        200
    );
    // A blob must have the digest it is stored under.
    let (code, body) = http_request_with(
        port,
        "PUT",
        &format!("/v1/blobs/sha256:{}", "0".repeat(64)),
        &token,
        Some("bytes"),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    // Serving beyond loopback without a token refuses to start.
    env.run(&[
        "registry",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--storage",
        "other",
    ])
    .code(1)
    .stderr_has("without a token");
}

#[test]
fn a_registry_killed_mid_publish_loses_nothing_and_fifty_publishes_at_once_all_land() {
    let env = TestEnv::new();
    let mut server = Server::start(&env, "store", Some("t"), &[]);
    let port = server.port;
    // 50 distinct versions at once.
    let threads: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let body = publish_body("many", &format!("1.{i}.0"), &format!("# many {i}\n"));
                http_request_with(
                    port,
                    "POST",
                    "/v1/publish",
                    &[("Authorization", "Bearer t")],
                    Some(&body),
                )
                .unwrap()
                .0
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let a = json(&http_get(port, "/v1/artifacts/default/many").unwrap().1);
    assert_eq!(a["versions"].as_array().unwrap().len(), 50);
    assert_eq!(a["latest_version"], "1.49.0");

    // Large publishes one after another; the server is killed while they go on.
    let big = "x".repeat(1 << 20);
    let (tx, rx) = std::sync::mpsc::channel();
    let publisher = std::thread::spawn(move || {
        for i in 0.. {
            let body = publish_body("big", &format!("2.0.{i}"), &format!("# big {i}\n{big}"));
            match http_request_with(
                port,
                "POST",
                "/v1/publish",
                &[("Authorization", "Bearer t")],
                Some(&body),
            ) {
                Ok((200, answer)) => tx
                    .send((i, json(&answer)["checksum"].as_str().unwrap().to_string()))
                    .unwrap(),
                _ => return,
            }
        }
    });
    let mut landed = Vec::new();
    while landed.len() < 5 {
        landed.push(rx.recv().unwrap());
    }
    server.kill();
    publisher.join().unwrap();
    landed.extend(rx.try_iter());
    let server = Server::start(&env, "store", Some("t"), &[]);
    let port = server.port;
    let a = json(&http_get(port, "/v1/artifacts/default/big").unwrap().1);
    let versions: Vec<String> = a["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for (i, checksum) in &landed {
        let v = json(
            &http_get(port, &format!("/v1/artifacts/default/big/2.0.{i}"))
                .unwrap()
                .1,
        );
        assert_eq!(
            &v["checksum"], checksum,
            "2.0.{i} was answered 200 before the kill, so it is there"
        );
    }
    // Every version the index lists is whole.
    for v in &versions {
        let (code, body) =
            http_get(port, &format!("/v1/artifacts/default/big/{v}/readme")).unwrap();
        assert_eq!(code, 200, "{v}: {body}");
        assert!(json(&body)["content"].as_str().unwrap().len() > 1 << 20);
    }
    assert_eq!(
        json(&http_get(port, "/v1/artifacts/default/many").unwrap().1)["versions"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
}

/// The Python pactown 0.1.173 from PyPI, installed once per test run into the target dir.
fn reference() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference-venv");
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join(".lock")).unwrap();
    lock.lock().unwrap();
    let bin = base.join("venv/bin");
    if !bin.join("pactown-registry").is_file() {
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(base.join("venv"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(bin.join("pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pactown==0.1.173",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

#[test]
fn the_reference_client_works_with_our_server_and_ours_with_the_reference_server() {
    let env = TestEnv::new();
    let bin = reference();
    env.write("a/auth/README.md", &py_service("", "")).write(
        "a/a.pactown.yaml",
        "name: a\nversion: 1.0.0\nbase_port: 0\nservices:\n  auth: {health_check: /health}\n",
    );
    // Their client, our server (no token: loopback only, as their client sends none).
    let server = Server::start(&env, "store", None, &[]);
    let out = Command::new(bin.join("pactown"))
        .args(["publish", "a/a.pactown.yaml", "--registry", &server.url()])
        .current_dir(env.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("Published auth@1.0.0"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(
        &http_get(server.port, "/v1/artifacts/default/auth/1.0.0")
            .unwrap()
            .1,
    );
    assert_eq!(v["readme_content"], py_service("", ""));
    env.write(
        "c/c.pactown.yaml",
        "name: c\nbase_port: 0\nservices:\n  web:\n    readme: ../a/auth/README.md\n    depends_on:\n      - {name: auth, registry: default}\n",
    );
    let out = Command::new(bin.join("pactown"))
        .args(["pull", "c/c.pactown.yaml", "--registry", &server.url()])
        .current_dir(env.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Pulled auth"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Our client, their server (it keeps README text only: no blobs, exact versions only).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut theirs = Command::new(bin.join("pactown-registry"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage",
        ])
        .arg(env.abs("their-store"))
        // It ignores --storage (its defect 12) and writes `.pactown-registry/` where it runs.
        .current_dir(env.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support_up::wait_until(60, "the reference's registry", || {
        http_get(port, "/health").is_ok_and(|(c, _)| c == 200)
    });
    let url = format!("http://127.0.0.1:{port}");
    env.write("w/worker/README.md", AUTH_WORKER).write(
        "w/w.pactown.yaml",
        "name: w\nversion: 2.1.0\nbase_port: 0\nservices:\n  worker: {}\n",
    );
    env.run_up(&["publish", "w/w.pactown.yaml", "--registry", &url])
        .ok()
        .stderr_has("takes no blobs")
        .stderr_has("published default/worker 2.1.0");
    env.write("d/web/README.md", &web_readme().replace("AUTH_URL", "WORKER_URL")).write(
        "d/d.pactown.yaml",
        &format!("name: d\nbase_port: 0\nservices:\n  web:\n    health_check: /health\n    depends_on:\n      - {{name: worker, registry: \"{url}\", version: \"^2\"}}\n"),
    );
    env.run_up(&["pull", "d/d.pactown.yaml"])
        .ok()
        .stderr_has("worker: default/worker 2.1.0");
    let _ = theirs.kill();
    let _ = theirs.wait();
    let up = Up::start(&env, "d/d.pactown.yaml");
    let (code, body) = http_get(up.port("web"), "/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["user"], "ada");
}
