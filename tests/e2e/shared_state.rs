//! The built-in shared-state and discovery services, with the real binary: they answer by
//! name, keep their data across a restart, and let a service outside pactown register and
//! expire when its health check stops answering.

use serde_json::{Value, json};

use crate::support::TestEnv;
use crate::support_up::{Up, get_json, http_get, http_request, http_request_with, wait_until};

/// A health endpoint outside pactown, answering until it is dropped.
struct Outside {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Outside {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                if let Ok(mut s) = s {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                }
            }
        });
        Self { port, stop }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and closes the listener.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn shared_state_and_discovery_answer_by_name_keep_their_data_and_outsiders_register_and_expire() {
    let env = TestEnv::new();
    let caller = crate::support_up::py_service(
        "import urllib.request, urllib.error",
        r#"        elif self.path.startswith("/via/"):
            try:
                with urllib.request.urlopen("http://state/" + self.path[len("/via/"):], timeout=5) as r:
                    self.reply(r.status, json.loads(r.read()))
            except urllib.error.HTTPError as e:
                self.reply(e.code, {"refused": e.read().decode()})
        elif self.path.startswith("/register/"):
            probe = self.path[len("/register/"):]
            body = {"name": "sneaky", "url": "http://127.0.0.1:9/"}
            if probe:
                body["health_url"] = "http://127.0.0.1:" + probe + "/health"
            req = urllib.request.Request("http://discovery/register", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    self.reply(r.status, json.loads(r.read()))
            except urllib.error.HTTPError as e:
                self.reply(e.code, {"refused": e.read().decode()})"#,
    );
    env.write("caller/README.md", &caller).write("stranger/README.md", &caller).write(
        "eco.pactown.yaml",
        "name: state-e2e\nbase_port: 0\nservices:\n  state: {builtin: shared-state}\n  discovery: {builtin: discovery}\n  \
         caller: {health_check: /health, depends_on: [state, discovery]}\n  stranger: {health_check: /health}\n",
    );
    let up = Up::start(&env, "eco.pactown.yaml");
    let sp = up.port("state");
    let (code, body) =
        http_request(sp, "POST", "/state", Some(r#"{"a": 1, "keep": {"x": 1}}"#)).unwrap();
    assert_eq!(code, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/state/{id}");
    let (code, body) = http_request(
        sp,
        "PATCH",
        &path,
        Some(r#"{"a": null, "b": 2, "keep": {"y": 2}}"#),
    )
    .unwrap();
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"b": 2, "keep": {"x": 1, "y": 2}}))
    );
    // Twenty PATCHes at once: none lost.
    std::thread::scope(|s| {
        for i in 0..20 {
            let path = path.clone();
            s.spawn(move || {
                let (code, _) =
                    http_request(sp, "PATCH", &path, Some(&format!(r#"{{"n{i}": {i}}}"#))).unwrap();
                assert_eq!(code, 200);
            });
        }
    });
    let (_, doc) = get_json(sp, &path);
    assert_eq!(doc.as_object().unwrap().len(), 22, "{doc}");
    assert_eq!(
        http_request_with(
            sp,
            "PATCH",
            "/state/nosuch",
            &[("If-Match", "*")],
            Some("{}")
        )
        .unwrap()
        .0,
        412
    );
    assert_eq!(
        http_request(sp, "PATCH", &path, Some("[1]")).unwrap().0,
        400
    );
    // By name from a native service, through its proxy; refused to one that did not declare it.
    let (code, body) = http_get(up.port("caller"), &format!("/via/state/{id}")).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"b\": 2"), "{body}");
    let (code, body) = http_get(up.port("stranger"), &format!("/via/state/{id}")).unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("depends_on"), "{body}");

    // Discovery: pactown's own services, then outsiders.
    let dp = up.port("discovery");
    // A service may register, but not have pactown probe an address for it: a health URL
    // would be checked from outside its sandbox (here, the state service's own port).
    let (code, body) = http_get(up.port("caller"), &format!("/register/{sp}")).unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("health_url"), "{body}");
    let (code, body) = http_get(up.port("caller"), "/register/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http_request(dp, "POST", "/unregister", Some(r#"{"name": "sneaky"}"#))
            .unwrap()
            .0,
        200
    );
    let (_, all) = get_json(dp, "/services");
    let own: Vec<&Value> = all["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "pactown")
        .collect();
    assert_eq!(own.len(), 4, "{all}");
    assert!(own.iter().all(|s| s["healthy"] == true), "{all}");
    let alive = Outside::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (name, port) in [("alive", alive.port), ("dead", dead)] {
        let reg = format!(
            r#"{{"name": "{name}", "url": "http://127.0.0.1:{port}", "health_url": "http://127.0.0.1:{port}/health", "ttl": 2, "metadata": {{"team": "e2e"}}}}"#
        );
        assert_eq!(
            http_request(dp, "POST", "/register", Some(&reg)).unwrap().0,
            200
        );
    }
    let (code, one) = get_json(dp, "/services/alive");
    assert_eq!(
        (code, one["metadata"]["team"].clone()),
        (200, json!("e2e")),
        "{one}"
    );
    assert_eq!(
        http_request(dp, "POST", "/ping", Some(r#"{"name": "nobody"}"#))
            .unwrap()
            .0,
        404
    );
    assert_eq!(
        http_request(
            dp,
            "POST",
            "/register",
            Some(r#"{"name": "caller", "url": "http://x"}"#)
        )
        .unwrap()
        .0,
        400
    );
    // The one whose health URL fails expires after its ttl; the one that passes stays.
    wait_until(20, "`dead` to expire", || {
        get_json(dp, "/services/dead").0 == 404
    });
    assert_eq!(get_json(dp, "/services/alive").0, 200);
    drop(alive);
    wait_until(
        20,
        "`alive` to expire once its health URL stops answering",
        || get_json(dp, "/services/alive").0 == 404,
    );

    // Everything survives a restart.
    up.down().ok();
    let up = Up::start(&env, "eco.pactown.yaml");
    let (code, doc) = get_json(up.port("state"), &path);
    assert_eq!((code, doc["b"].clone()), (200, json!(2)), "{doc}");
    assert_eq!(
        http_request(up.port("state"), "DELETE", &path, None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(http_get(up.port("state"), &path).unwrap().0, 404);
}
