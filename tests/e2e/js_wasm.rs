//! JavaScript as WebAssembly: a Worker module written for Cloudflare (`export default { fetch }`,
//! with `env` bindings) and no run block becomes a wasi:http component (componentize-js,
//! installed by pactown), a fresh instance per request, with the same rules as every component.

use crate::support::TestEnv;
use crate::support_up::{Up, http_get, http_raw, http_request, http_request_with, py_service};

/// A Worker as one deploys it with wrangler: a module-level counter, `env` values and a
/// service binding, a plain `fetch` by name, an exception on `/boom`, work left to
/// `ctx.waitUntil` on `/later` (what it found, on `/late`).
const WORKER: &str = r#"# a Worker

```javascript markpact:file path=index.js
let count = 0;
let late = null;

export default {
  async fetch(request, env, ctx) {
    count += 1;
    const url = new URL(request.url);
    if (url.pathname === "/bound") {
      // A service binding: the URL's host is ignored.
      const r = await env.API.fetch("https://ignored.example/health");
      return new Response(await r.text(), { status: r.status });
    }
    if (url.pathname.startsWith("/byname/")) {
      const r = await fetch(`http://${url.pathname.slice(8)}/health`);
      return new Response(await r.text(), { status: r.status });
    }
    if (url.pathname === "/relative") {
      const r = await env.API.fetch("/health");
      return new Response(await r.text(), { status: r.status });
    }
    if (url.pathname === "/boom") throw new Error("boom");
    if (url.pathname === "/later") {
      ctx.waitUntil(env.API.fetch("/health").then((r) => { late = r.status; }));
      return new Response("later");
    }
    if (url.pathname === "/late") return Response.json({ count, late });
    if (url.pathname === "/header") return new Response(request.headers.get("x-probe"));
    if (url.pathname === "/empty") return new Response(null, { status: 204 });
    if (url.pathname === "/bytes") {
      return new Response(new Uint8Array([104, 0, 10, 255]), { headers: { "x-latin": "caf\u00e9" } });
    }
    if (request.method === "POST") {
      return Response.json({ echo: await request.text() });
    }
    return Response.json({ count, greeting: env.GREETING, home: env.HOME ?? null });
  },
};
```
"#;

#[test]
fn a_cloudflare_style_worker_runs_as_a_component_with_its_bindings() {
    let env = TestEnv::new();
    env.write("worker/README.md", WORKER)
        .write("api/README.md", &py_service("", ""))
        .write("other/README.md", &py_service("", ""))
        .write(
            "w.pactown.yaml",
            "base_port: 0\nservices:\n  api: {health_check: /health}\n  other: {health_check: /health}\n  \
             worker: {depends_on: [api], env: {GREETING: hi}}\n",
        );
    let up = Up::start(&env, "w.pactown.yaml");
    let s = up.service("worker");
    assert_eq!(s["kind"], "wasm-http", "{s}");
    let port = up.port("worker");
    for _ in 0..3 {
        let (code, body) = http_get(port, "/").unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        // A fresh instance per request, the declared env only.
        assert_eq!(v["count"], 1, "{body}");
        assert_eq!(v["greeting"], "hi", "{body}");
        assert!(v["home"].is_null(), "{body}");
    }
    let (code, body) = http_get(port, "/bound").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ok"), "{body}");
    let (code, body) = http_get(port, "/relative").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(port, "/byname/api").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(port, "/byname/other").unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("depends_on"), "{body}");
    let (code, _) = http_get(port, "/boom").unwrap();
    assert_eq!(code, 500);
    let (code, body) = crate::support_up::http_request(port, "POST", "/", Some("payload")).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("payload"), "{body}");
    up.down().ok();

    // A warm `up` runs no toolchain.
    let again = Up::start(&env, "w.pactown.yaml");
    let said = &again.started.stderr;
    assert!(
        !said.contains("building") && !said.contains("installing"),
        "{said}"
    );
    assert_eq!(http_get(again.port("worker"), "/").unwrap().0, 200);
}

#[test]
fn a_syntax_error_is_reported_at_the_readme_line() {
    let env = TestEnv::new();
    env.write(
        "w/README.md",
        "# w\n\n```javascript markpact:file path=index.js\nexport default {\n  fetch() { return new Response(\"x\" }\n};\n```\n",
    )
    .write("w.pactown.yaml", "base_port: 0\nservices:\n  w: {}\n");
    env.run_up(&["build", "w.pactown.yaml"])
        .code(1)
        .stderr_has("SyntaxError")
        .stderr_has("w/README.md:5:");
}

/// A Worker written with Hono, as on Cloudflare (`export default app`), its npm package
/// declared in `markpact:deps node`: bundled into the component, served a fresh instance per
/// request; a package that needs Node's built-in modules (express) fails the build at the line
/// that declares it, and one with a native addon keeps the service native, named by `plan`.
#[test]
fn a_worker_with_npm_packages_has_them_bundled_into_its_component() {
    let env = TestEnv::new();
    env.write(
        "hono/README.md",
        "# hono\n\n```markpact:deps node\nhono@4\n```\n\n```javascript markpact:file path=index.js\n\
         import { Hono } from \"hono\";\nconst app = new Hono();\nlet n = 0;\n\
         app.get(\"/\", (c) => { n += 1; return c.json({ n, greeting: c.env.GREETING }); });\n\
         app.get(\"/users/:id\", (c) => c.text(`user ${c.req.param(\"id\")}`));\n\
         app.get(\"/api\", async (c) => c.text(await (await c.env.API.fetch(\"/health\")).text()));\n\
         export default app;\n```\n",
    )
    .write("api/README.md", &py_service("", ""))
    .write(
        "h.pactown.yaml",
        "base_port: 0\nservices:\n  api: {health_check: /health}\n  \
         hono: {depends_on: [api], env: {GREETING: hi}}\n",
    );
    let up = Up::start(&env, "h.pactown.yaml");
    assert_eq!(up.service("hono")["kind"], "wasm-http");
    let port = up.port("hono");
    for _ in 0..2 {
        let (code, body) = http_get(port, "/").unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, r#"{"n":1,"greeting":"hi"}"#);
    }
    assert_eq!(
        http_get(port, "/users/42").unwrap(),
        (200, "user 42".to_string())
    );
    let (code, body) = http_get(port, "/api").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("ok"), "{body}");
    assert_eq!(http_get(port, "/nowhere").unwrap().0, 404);
    up.down().ok();

    let bad = TestEnv::new();
    bad.write(
        "x/README.md",
        "# x\n\n```markpact:deps node\nexpress@4\n```\n\n```javascript markpact:file path=index.js\n\
         import express from \"express\";\nexport default { fetch() { return new Response(typeof express); } };\n```\n",
    )
    .write(
        "n/README.md",
        "# n\n\n```markpact:deps node\nbetter-sqlite3\n```\n\n```javascript markpact:file path=index.js\n\
         export default { fetch() { return new Response(\"x\"); } };\n```\n",
    )
    .write("x.pactown.yaml", "base_port: 0\nservices:\n  x: {}\n")
    .write("n.pactown.yaml", "base_port: 0\nservices:\n  n: {}\n");
    bad.run_up(&["build", "x.pactown.yaml"])
        .code(1)
        .stderr_has("the npm package `express` cannot be bundled for a Worker")
        .stderr_has("x/README.md:4:1");
    bad.run_up(&["plan", "n.pactown.yaml"])
        .ok()
        .stdout_has("`better-sqlite3` (n/README.md:4:1) has compiled parts");
}

/// A service worker (`addEventListener("fetch", …)`), its module-level counter kept between the
/// requests an instance serves.
const SERVICE_WORKER: &str = r#"# a service worker

```javascript markpact:file path=index.js
let count = 0;
addEventListener("fetch", (event) => {
  count += 1;
  if (new URL(event.request.url).pathname === "/boom") throw new Error("boom");
  event.respondWith(Response.json({ count }));
});
```
"#;

/// `instance_reuse: 3` on both Worker shapes: one request at a time, an instance serves three and
/// keeps its module state between them, then a fresh one takes over; a Worker's exception is
/// answered 500 and the instance goes on.
#[test]
fn instance_reuse_keeps_a_workers_module_state_for_n_requests() {
    let env = TestEnv::new();
    env.write("worker/README.md", WORKER)
        .write("sw/README.md", SERVICE_WORKER)
        .write("api/README.md", &py_service("", ""))
        .write("later/README.md", WORKER)
        .write(
            "r.pactown.yaml",
            "base_port: 0\nservices:\n  api: {health_check: /health}\n  \
             worker: {depends_on: [api], env: {GREETING: hi}, instance_reuse: 3}\n  \
             sw: {instance_reuse: 3}\n  \
             later: {depends_on: [api], instance_reuse: 2, limits: {instances: 1}}\n",
        );
    let up = Up::start(&env, "r.pactown.yaml");
    for name in ["worker", "sw"] {
        let port = up.port(name);
        let count = || {
            let (code, body) = http_get(port, "/").unwrap();
            assert_eq!(code, 200, "{name}: {body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["count"]
                .as_u64()
                .unwrap()
        };
        let seen: Vec<u64> = (0..7).map(|_| count()).collect();
        assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1], "{name}");
        assert_eq!(http_get(port, "/boom").unwrap().0, 500, "{name}");
        assert_eq!(count(), 3, "{name}");
        assert_eq!(count(), 1, "{name}");
    }
    // The reused Worker still reaches its dependency through its binding, every time.
    for _ in 0..4 {
        let (code, body) = http_get(up.port("worker"), "/bound").unwrap();
        assert_eq!(code, 200, "{body}");
    }
    // Every request an instance serves gets its own body, headers and status.
    let port = up.port("worker");
    for i in 0..4 {
        let sent = format!("body {i}");
        let (code, body) = http_request(port, "POST", "/", Some(&sent)).unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, format!(r#"{{"echo":"{sent}"}}"#));
        let probe = format!("probe {i}");
        let got = http_request_with(port, "GET", "/header", &[("X-Probe", &probe)], None).unwrap();
        assert_eq!(got, (200, probe));
        assert_eq!(http_get(port, "/empty").unwrap(), (204, String::new()));
        // A body with a NUL and a byte that is no UTF-8; a header value of one Latin-1 byte.
        let raw = http_raw(port, "GET", "/bytes").unwrap();
        assert!(raw.ends_with("\r\n\r\nh\0\n\u{fffd}"), "{raw:?}");
        assert!(raw.contains("x-latin: caf\u{fffd}\r\n"), "{raw:?}");
    }
    // Work left to `ctx.waitUntil` is done before the instance serves its next request (one
    // instance at a time: the next request waits for it).
    let port = up.port("later");
    for _ in 0..2 {
        assert_eq!(
            http_get(port, "/later").unwrap(),
            (200, "later".to_string())
        );
        let (code, body) = http_get(port, "/late").unwrap();
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["count"].as_u64(), v["late"].as_u64()),
            (Some(2), Some(200)),
            "{body}"
        );
    }
}
