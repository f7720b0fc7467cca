//! Services call each other by name, and only the ones they declared; every stable address is
//! rate-limited, counted and logged; the admin address serves status, metrics and a gateway.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, http_request, py_service};

const CALLER: &str = r#"# caller

```rust markpact:file path=src/main.rs
use pactown_guest::http::{Body, Client, Request, Response, Result};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>> {
    if req.uri().path() == "/both" {
        // Two calls at once: the first waits on the native side until the second arrives, so
        // this answers only if sending one call never holds the guest until it is answered.
        let mut wait = Box::pin(pactown_guest::get("native", "/wait"));
        let mut release = Box::pin(pactown_guest::get("native", "/release"));
        let (mut waited, mut released) = (None, None);
        std::future::poll_fn(|cx| {
            if waited.is_none() && let std::task::Poll::Ready(r) = wait.as_mut().poll(cx) {
                waited = Some(r);
            }
            if released.is_none() && let std::task::Poll::Ready(r) = release.as_mut().poll(cx) {
                released = Some(r);
            }
            match (&waited, &released) {
                (Some(_), Some(_)) => std::task::Poll::Ready(()),
                _ => std::task::Poll::Pending,
            }
        })
        .await;
        released.expect("polled to the end")?;
        return waited.expect("polled to the end");
    }
    if req.uri().path() == "/empty-post" {
        // A body declared empty, finished after the call is answered.
        let post = Request::post("http://wasmdep/").header("content-length", 0).body(Body::empty())?;
        return Client::new().send(post).await;
    }
    let (service, path) = match req.uri().path() {
        "/native" => ("native", "/whoami"),
        "/wasm" => ("wasmdep", "/"),
        "/undeclared" => ("stranger", "/whoami"),
        "/unknown" => ("nosuch", "/"),
        _ => return Ok(pactown_guest::text(200, "caller")),
    };
    pactown_guest::get(service, path).await
}
```
"#;

const WASMDEP: &str = r#"# wasmdep

```rust markpact:file path=src/main.rs
#[wstd::http_server]
async fn main(_req: pactown_guest::http::Request<pactown_guest::http::Body>) -> pactown_guest::http::Result<pactown_guest::http::Response<pactown_guest::http::Body>> {
    Ok(pactown_guest::text(200, "from wasm"))
}
```
"#;

fn mixed() -> TestEnv {
    let env = TestEnv::new();
    let client = py_service(
        "import urllib.request, urllib.error",
        r#"        elif self.path.startswith("/call/"):
            target = self.path[len("/call/"):]
            try:
                with urllib.request.urlopen(f"http://{target}/whoami", timeout=5) as r:
                    self.reply(r.status, json.loads(r.read()))
            except urllib.error.HTTPError as e:
                self.reply(e.code, json.loads(e.read()))"#,
    );
    env.write("caller/README.md", CALLER)
        .write("wasmdep/README.md", WASMDEP)
        .write("native/README.md", &py_service(
            "import threading\nRELEASED = threading.Event()",
            r#"        elif self.path == "/wait":
            self.reply(200, {"released": RELEASED.wait(5)})
        elif self.path == "/release":
            RELEASED.set()
            self.reply(200, {"released": True})"#,
        ))
        .write("stranger/README.md", &py_service("", ""))
        .write("client/README.md", &client)
        .write(
            "m.pactown.yaml",
            "base_port: 0\nservices:\n  native: {health_check: /health}\n  stranger: {health_check: /health}\n  wasmdep: {}\n  \
             caller: {depends_on: [native, wasmdep]}\n  client: {health_check: /health, depends_on: [native]}\n",
        );
    env
}

#[test]
fn a_wasm_service_calls_wasm_and_native_dependencies_by_name() {
    let env = mixed();
    let up = Up::start(&env, "m.pactown.yaml");
    let port = up.port("caller");
    let (code, body) = http_get(port, "/native").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"service\": \"native\""), "{body}");
    assert_eq!(
        http_get(port, "/wasm").unwrap(),
        (200, "from wasm".to_string())
    );
    assert_eq!(
        http_get(port, "/empty-post").unwrap(),
        (200, "from wasm".to_string())
    );
    let (code, body) = http_get(port, "/both").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"released\": true"), "{body}");

    let (code, body) = http_get(port, "/undeclared").unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("`caller` may not call `stranger`"), "{body}");
    assert!(body.contains("depends_on"), "{body}");
    let (code, body) = http_get(port, "/unknown").unwrap();
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("no service `nosuch`"), "{body}");

    let logs = env
        .run_up(&["logs", "m.pactown.yaml", "caller"])
        .ok()
        .stdout
        .clone();
    assert!(
        logs.contains("refused outgoing request to `stranger`"),
        "{logs}"
    );
    assert!(
        logs.contains("refused outgoing request to `nosuch`"),
        "{logs}"
    );
    // The request log names the caller of the native service (written within a tick).
    crate::support_up::wait_until(10, "the request log to name the caller", || {
        env.read(".pactown/m/logs/requests.log")
            .lines()
            .any(|l| l.contains("\"caller\":\"caller\"") && l.contains("\"service\":\"native\""))
    });
}

#[test]
fn native_services_call_by_name_through_the_proxy() {
    let env = mixed();
    let up = Up::start(&env, "m.pactown.yaml");
    let port = up.port("client");
    let (code, body) = http_get(port, "/call/native").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"service\": \"native\""), "{body}");
    let (code, body) = http_get(port, "/call/stranger").unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("`client` may not call `stranger`"), "{body}");
    let (code, body) = http_get(port, "/call/nosuch").unwrap();
    assert_eq!(code, 502, "{body}");
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let env = TestEnv::new();
    env.write("api/README.md", &py_service("", "")).write(
        "r.pactown.yaml",
        "base_port: 0\nservices:\n  api:\n    health_check: /health\n    rate_limit: {requests: 3, per: 1m, burst: 3}\n",
    );
    let up = Up::start(&env, "r.pactown.yaml");
    let port = up.port("api");
    // The health checks go to the replica directly, so they do not spend the budget.
    for _ in 0..3 {
        assert_eq!(http_get(port, "/whoami").unwrap().0, 200);
    }
    let raw = crate::support_up::http_raw(port, "GET", "/whoami").unwrap();
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    let retry: u64 = raw
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Retry-After header");
    assert!((1..=20).contains(&retry), "one token every 20 s: {retry}");
    assert!(
        raw.contains("rate limit of 3 requests per 1m exceeded for `api`"),
        "{raw}"
    );
}

#[test]
fn a_protocol_upgrade_passes_through_the_stable_address() {
    // The replica switches to an echo protocol on `/ws` (as a WebSocket server would, minus
    // the framing): after the 101, what the client sends comes back.
    let env = TestEnv::new();
    env.write(
        "echo/README.md",
        &py_service(
            "",
            r#"        elif self.path == "/ws":
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
            self.wfile.flush()
            while True:
                data = self.rfile.read1(1024)
                if not data:
                    break
                self.wfile.write(data)
                self.wfile.flush()
            self.close_connection = True"#,
        ),
    )
    .write(
        "e.pactown.yaml",
        "base_port: 0\nservices:\n  echo: {health_check: /health}\n",
    );
    let up = Up::start(&env, "e.pactown.yaml");
    let port = up.port("echo");
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: echo\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .unwrap();
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert_ne!(
            reader.read_line(&mut head).unwrap(),
            0,
            "closed after {head:?}"
        );
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    for line in ["ping\n", "pong pong\n"] {
        writer.write_all(line.as_bytes()).unwrap();
        let mut back = String::new();
        reader.read_line(&mut back).unwrap();
        assert_eq!(back, line);
    }
}

#[test]
fn metrics_count_what_the_test_sent_and_the_gateway_routes_by_host() {
    let env = TestEnv::new();
    env.write("api/README.md", &py_service("", ""))
        .write("w/README.md", WASMDEP)
        .write(
            "x.pactown.yaml",
            "base_port: 0\nservices:\n  api: {health_check: /health}\n  w: {}\n",
        );
    let up = Up::start(&env, "x.pactown.yaml");
    let gport = up.gateway_port();
    let (api, w) = (up.port("api"), up.port("w"));
    for _ in 0..7 {
        assert_eq!(http_get(api, "/whoami").unwrap().0, 200);
    }
    for _ in 0..3 {
        assert_eq!(http_get(api, "/missing").unwrap().0, 404);
    }
    for _ in 0..5 {
        assert_eq!(http_get(w, "/").unwrap().0, 200);
    }
    // Through the gateway, by host name: counted for `api` too.
    let raw = crate::support_up::http_raw_host(gport, "/whoami", "api.localhost").unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (code, metrics) = http_get(gport, "/_pactown/metrics").unwrap();
    assert_eq!(code, 200);
    for line in [
        "pactown_requests_total{service=\"api\",code=\"2xx\"} 8",
        "pactown_requests_total{service=\"api\",code=\"4xx\"} 3",
        "pactown_request_duration_seconds_count{service=\"api\"} 11",
        "pactown_requests_total{service=\"w\",code=\"2xx\"} 5",
        "pactown_request_errors_total{service=\"api\"} 0",
        "pactown_instances{service=\"api\"} 1",
        "pactown_up{service=\"w\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
    let (code, services) = http_get(gport, "/_pactown/services").unwrap();
    assert_eq!(code, 200);
    let services: serde_json::Value = serde_json::from_str(&services).unwrap();
    assert_eq!(services["services"][0]["name"], "api");
    assert_eq!(services["services"][1]["kind"], "wasm-http");
    // The dashboard, and the graph it draws the services from.
    let (code, body) = http_request(gport, "GET", "/", None).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("/_pactown/ui/app.js"), "{body}");
    let (code, graph) = http_get(gport, "/_pactown/graph").unwrap();
    assert_eq!(code, 200);
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(graph["services"][0]["name"], "api", "{graph}");
}

/// `up --only NAME` runs one service and reaches the others where they run, by name (as each
/// container of a deployment does): a Worker and a native service, each run alone, call a
/// dependency that another pactown runs; one that is not declared is still refused.
#[test]
fn a_service_run_alone_reaches_its_dependencies_elsewhere_by_name() {
    let env = TestEnv::new();
    let worker = "# gw\n\n```javascript markpact:file path=index.js\nexport default { async fetch(req, env) { const r = await env.DB.fetch(\"http://db/whoami\"); return new Response(await r.text(), { status: r.status }); } };\n```\n";
    env.write("db/README.md", &py_service("", ""))
        .write("gw/README.md", worker)
        .write(
            "web/README.md",
            &py_service(
                "import urllib.request",
                "        elif self.path == \"/\":\n            self.reply(200, json.loads(urllib.request.urlopen(os.environ[\"DB_URL\"] + \"/whoami\").read()))",
            ),
        );
    let yaml = "base_port: 0\nservices:\n  db: {health_check: /health}\n  gw: {depends_on: [db]}\n  web: {health_check: /health, depends_on: [db]}\n";
    for f in ["a", "b", "c"] {
        env.write(&format!("{f}.pactown.yaml"), yaml);
    }
    let first = env.run_up(&[
        "up",
        "-d",
        "a.pactown.yaml",
        "--only",
        "db",
        "--listen",
        "127.0.0.1:0",
    ]);
    first.ok();
    let db = crate::support_up::Up {
        env: &env,
        file: "a.pactown.yaml".into(),
        started: first,
    };
    let db_port = db.port("db");
    let at = format!("--elsewhere=db=localhost:{db_port}");
    let gw = env.run_up(&[
        "up",
        "-d",
        "b.pactown.yaml",
        "--only",
        "gw",
        &at,
        "--listen",
        "127.0.0.1:0",
    ]);
    gw.ok();
    let gw = crate::support_up::Up {
        env: &env,
        file: "b.pactown.yaml".into(),
        started: gw,
    };
    assert_eq!(gw.status()["services"].as_array().unwrap().len(), 1);
    let (code, body) = http_get(gw.port("gw"), "/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"service\": \"db\""), "{body}");
    let web = env.run_up(&[
        "up",
        "-d",
        "c.pactown.yaml",
        "--only",
        "web",
        &at,
        "--listen",
        "127.0.0.1:0",
    ]);
    web.ok();
    let web = crate::support_up::Up {
        env: &env,
        file: "c.pactown.yaml".into(),
        started: web,
    };
    let (code, body) = http_get(web.port("web"), "/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"service\": \"db\""), "{body}");
}
