//! Python as WebAssembly: a WSGI `app` with no run block becomes a wasi:http component
//! (componentize-py, installed by pactown), a fresh instance per request, with the same rules as
//! Rust components: no files, declared env only, calls by name under `depends_on`, failures
//! contained per request, build errors at the README line.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, py_service};

/// A plain WSGI callable: counts requests in a module global, reads a file, calls by name,
/// raises on `/boom`.
const PLAIN: &str = r#"# plain WSGI

```python markpact:file path=app.py
import json, os, urllib.error, urllib.request

COUNT = 0

def app(environ, start_response):
    global COUNT
    COUNT += 1
    path = environ["PATH_INFO"]
    status, body = "200 OK", None
    if path == "/file":
        try:
            body = {"read": open("/etc/passwd").read()}
        except OSError as e:
            body = {"denied": repr(e)}
    elif path.startswith("/call/"):
        try:
            body = {"answer": urllib.request.urlopen("http://" + path[6:] + "/health").read().decode()}
        except urllib.error.HTTPError as e:
            body = {"refused": e.code}
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/echo":
        status = "201 Created"
        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = {"echo": environ["wsgi.input"].read(n).decode(), "probe": environ.get("HTTP_X_PROBE"),
                "query": environ["QUERY_STRING"], "method": environ["REQUEST_METHOD"]}
    else:
        body = {"count": COUNT, "greeting": os.environ.get("GREETING"), "home": os.environ.get("HOME")}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
```
"#;

/// A Flask app as one writes it for gunicorn: unchanged.
const FLASK: &str = r#"# flask

```python markpact:deps
flask
```

```python markpact:file path=app.py
from flask import Flask, jsonify, request

app = Flask(__name__)

@app.get("/health")
def health():
    return jsonify(status="ok")

@app.post("/echo/<name>")
def echo(name):
    return jsonify(name=name, body=request.get_data(as_text=True), q=request.args.get("q"))
```
"#;

#[test]
fn a_wsgi_app_and_a_flask_app_run_as_components_with_the_rules_of_wasm() {
    let env = TestEnv::new();
    env.write("plain/README.md", PLAIN)
        .write("flask/README.md", FLASK)
        .write("dep/README.md", &py_service("", ""))
        .write("other/README.md", &py_service("", ""))
        .write(
            "p.pactown.yaml",
            "base_port: 0\nservices:\n  dep: {health_check: /health}\n  other: {health_check: /health}\n  \
             plain: {depends_on: [dep], env: {GREETING: hi}}\n  flask: {health_check: /health}\n",
        );
    let up = Up::start(&env, "p.pactown.yaml");
    for name in ["plain", "flask"] {
        let s = up.service(name);
        assert_eq!(s["kind"], "wasm-http", "{s}");
        assert_eq!(s["state"], "ready", "{s}");
    }
    let plain = up.port("plain");
    // A fresh instance per request: the module-level counter is 1 every time.
    for _ in 0..3 {
        let (code, body) = http_get(plain, "/").unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["count"], 1, "{body}");
        assert_eq!(v["greeting"], "hi", "{body}");
        // Only declared variables: nothing of the developer's environment.
        assert!(v["home"].is_null(), "{body}");
    }
    // No filesystem unless `dirs:` grants it.
    let (_, body) = http_get(plain, "/file").unwrap();
    assert!(body.contains("denied"), "{body}");
    // A call by name to a declared dependency works; to an undeclared service it is a 403.
    let (_, body) = http_get(plain, "/call/dep").unwrap();
    assert!(
        body.contains(r#""answer""#) && body.contains("ok"),
        "{body}"
    );
    let (_, body) = http_get(plain, "/call/other").unwrap();
    assert!(body.contains(r#""refused": 403"#), "{body}");
    // An exception fails its own request only.
    let (code, _) = http_get(plain, "/boom").unwrap();
    assert_eq!(code, 500);
    let (code, _) = http_get(plain, "/").unwrap();
    assert_eq!(code, 200);
    // Flask, unchanged: routing, a POST body, a query string.
    let flask = up.port("flask");
    let (code, body) =
        crate::support_up::http_request(flask, "POST", "/echo/ada?q=1", Some("hello")).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "ada");
    assert_eq!(v["body"], "hello");
    assert_eq!(v["q"], "1");
    let (code, _) = http_get(flask, "/missing").unwrap();
    assert_eq!(code, 404);
    up.down().ok();

    // A warm `up` runs no toolchain.
    let again = Up::start(&env, "p.pactown.yaml");
    let said = &again.started.stderr;
    assert!(
        !said.contains("building") && !said.contains("installing"),
        "{said}"
    );
    let (code, _) = http_get(again.port("flask"), "/health").unwrap();
    assert_eq!(code, 200);
}

#[test]
fn an_import_error_is_reported_at_the_readme_line() {
    let env = TestEnv::new();
    env.write(
        "s/README.md",
        "# s\n\n```python markpact:file path=app.py\nimport json\nimport not_a_module_anywhere\n\ndef app(environ, start_response):\n    pass\n```\n",
    )
    .write("s.pactown.yaml", "base_port: 0\nservices:\n  s: {}\n");
    let r = env.run_up(&["build", "s.pactown.yaml"]);
    r.code(1)
        .stderr_has("No module named 'not_a_module_anywhere'")
        .stderr_has("s/README.md:5:1");
}

#[test]
fn instance_reuse_keeps_module_state_for_n_requests_per_instance() {
    let env = TestEnv::new();
    env.write("plain/README.md", PLAIN)
        .write("dep/README.md", &py_service("", ""))
        .write(
            "r.pactown.yaml",
            "base_port: 0\nservices:\n  dep: {health_check: /health}\n  \
             plain: {depends_on: [dep], instance_reuse: 3}\n",
        );
    let up = Up::start(&env, "r.pactown.yaml");
    let port = up.port("plain");
    let count = || {
        let (code, body) = http_get(port, "/").unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    // One request at a time: the same instance serves three, then a fresh one takes over.
    let seen: Vec<u64> = (0..7).map(|_| count()).collect();
    assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1]);
    // An exception is answered 500 by the WSGI host and the instance goes on (its third
    // request was the failing one); then a fresh instance.
    assert_eq!(http_get(port, "/boom").unwrap().0, 500);
    assert_eq!(count(), 3);
    assert_eq!(count(), 1);
    // Each request a reused instance serves gets its own method, query, headers and body, and
    // answers with its own status; a call by name still goes through the host.
    for i in 0..4 {
        let sent = format!("body {i}");
        let probe = format!("probe {i}");
        let (code, body) = crate::support_up::http_request_with(
            port,
            "POST",
            &format!("/echo?i={i}"),
            &[("X-Probe", &probe)],
            Some(&sent),
        )
        .unwrap();
        assert_eq!(code, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"echo": sent, "probe": probe, "query": format!("i={i}"), "method": "POST"})
        );
        let (code, body) = http_get(port, "/call/dep").unwrap();
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("ok"), "{body}");
    }
}
