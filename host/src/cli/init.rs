//! `pactown init [-n NAME] [-o FILE] [--native]`: a runnable starter ecosystem with two
//! services, WebAssembly components by default.

use std::path::{Path, PathBuf};

use super::{ExitStatus, Term, user_error};

/// Write a runnable starter ecosystem: an `api` service and a `web` service that calls it by
/// name. By default both are WebAssembly components (a Python WSGI app and a JavaScript Worker,
/// no dependencies); `--native` writes two processes on Python's standard library instead.
#[derive(Debug, clap::Args)]
pub struct InitCommand {
    /// Ecosystem name.
    #[arg(short, long, default_value = "my-ecosystem")]
    pub name: String,
    /// The ecosystem file to write (default: `<NAME>.pactown.yaml`). READMEs go in
    /// `services/` beside it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Write native services (Python's standard library, run as sandboxed processes) instead
    /// of WebAssembly components.
    #[arg(long)]
    pub native: bool,
}

impl InitCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let name = crate::spec::sanitize_name(&self.name);
        if name.is_empty() {
            return Err(user_error(
                format!("`{}` cannot be an ecosystem name", self.name),
                Some("use letters, digits and `-`, e.g. `-n my-shop`"),
            ));
        }
        let file = self
            .output
            .unwrap_or_else(|| PathBuf::from(format!("{name}.pactown.yaml")));
        let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let (api, web, what) = if self.native {
            (
                API_README,
                WEB_README,
                "native processes on Python's standard library",
            )
        } else {
            (
                API_WASM_README,
                WEB_WASM_README,
                "WebAssembly components: a Python WSGI app and a JavaScript Worker",
            )
        };
        let files = [
            (file.clone(), ecosystem_yaml(&name)),
            (dir.join("services/api/README.md"), api.to_string()),
            (dir.join("services/web/README.md"), web.to_string()),
        ];
        if !self.force {
            let existing: Vec<String> = files
                .iter()
                .filter(|(p, _)| p.exists())
                .map(|(p, _)| format!("`{}`", p.display()))
                .collect();
            if !existing.is_empty() {
                return Err(user_error(
                    format!(
                        "{} already exist{}; nothing was written",
                        existing.join(", "),
                        if existing.len() == 1 { "s" } else { "" }
                    ),
                    Some("choose another file with `-o`, or pass `--force` to overwrite"),
                ));
            }
        }
        for (path, text) in &files {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        term.success(&format!(
            "wrote {} and 2 services in {} ({what})",
            file.display(),
            dir.join("services").display()
        ));
        term.info(&format!(
            "next:\n  pactown validate {f}\n  pactown plan {f}\n  pactown up {f}",
            f = file.display()
        ));
        Ok(ExitStatus::Success)
    }
}

fn ecosystem_yaml(name: &str) -> String {
    format!(
        r#"# A pactown ecosystem: each service is a README whose code blocks pactown runs.
name: {name}
version: 0.1.0
description: Starter ecosystem written by `pactown init`
base_port: 8000

services:
  api:
    readme: services/api/README.md
    port: 8001
    health_check: /health
    timeout: 30

  web:
    readme: services/web/README.md
    port: 8002
    health_check: /health
    depends_on:
      - api           # web calls it by name (and gets API_URL, API_HOST, API_PORT)
"#
    )
}

const API_WASM_README: &str = r#"# api

A JSON API as a plain WSGI app (PEP 3333). With no run block, pactown builds it into a
WebAssembly component and serves it with a fresh instance per request.

```python markpact:file path=app.py
import json


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/health":
        status, body = "200 OK", {"status": "ok"}
    elif path == "/api/hello":
        status, body = "200 OK", {"message": "hello from api"}
    else:
        status, body = "404 Not Found", {"error": "not found"}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
```

```http markpact:test
GET /health EXPECT 200
GET /api/hello EXPECT 200
GET /missing EXPECT 404
```
"#;

const WEB_WASM_README: &str = r#"# web

A page that asks `api` for its greeting, written as a Cloudflare Worker: `env.API` is a
service binding that reaches `api` by name. With no run block, pactown builds it into a
WebAssembly component.

```javascript markpact:file path=index.js
export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname === "/health") return new Response("ok");
    const { message } = await (await env.API.fetch("/api/hello")).json();
    return new Response(`<h1>web</h1><p>api says: ${message}</p>`, {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  },
};
```

```http markpact:test
GET /health EXPECT 200
GET / EXPECT 200
```
"#;

const API_README: &str = r#"# api

A JSON API on Python's standard library. pactown gives it its port in `PORT`.

```python markpact:file path=server.py
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok"})
        elif self.path == "/api/hello":
            self.reply(200, {"message": "hello from api"})
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("api:", fmt % args, flush=True)


port = int(os.environ.get("PORT", "8001"))
print(f"api listening on {port}", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
```

```bash markpact:run
python3 server.py
```

```http markpact:test
GET /health EXPECT 200
GET /api/hello EXPECT 200
GET /missing EXPECT 404
```
"#;

const WEB_README: &str = r#"# web

A page that asks the `api` service for its greeting, through the URL pactown injects.

```python markpact:file path=web.py
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_URL = os.environ["API_URL"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, "text/plain", b"ok")
        with urllib.request.urlopen(f"{API_URL}/api/hello", timeout=5) as r:
            message = json.load(r)["message"]
        page = f"<h1>web</h1><p>api says: {message}</p>".encode()
        self.reply(200, "text/html", page)

    def reply(self, status, kind, data):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print("web:", fmt % args, flush=True)


port = int(os.environ.get("PORT", "8002"))
print(f"web listening on {port}, api at {API_URL}", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
```

```bash markpact:run
python3 web.py
```

```http markpact:test
GET /health EXPECT 200
GET / EXPECT 200
```
"#;
