//! What a service is written in, from what its README says: its run command (what it starts),
//! else its dependencies, else its files; and so the kind it runs as, decided here once. Read
//! by the plan (which carries the kind and the toolchains it needs) and by the checks of the
//! spec itself.

use serde::Serialize;

use super::markpact::Loc;
use super::model::Service;
use super::service::{Dep, FileBlock, Installer, RuntimeKind};

/// Is this a Rust service?
fn is_rust(service: &Service) -> bool {
    service
        .content
        .files
        .iter()
        .any(|f| f.path.as_str().ends_with(".rs") || f.path.as_str() == "Cargo.toml")
}

/// What a service is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python.
    Python,
    /// JavaScript or TypeScript on Node.js.
    Node,
    /// Go.
    Go,
    /// Rust.
    Rust,
    /// A shell command, or something pactown does not know.
    Shell,
}

impl Language {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
            Language::Go => "go",
            Language::Rust => "rust",
            Language::Shell => "shell",
        }
    }

    /// Does pactown build it to a WebAssembly component?
    pub fn builds_to_wasm(self) -> bool {
        matches!(self, Language::Rust | Language::Python | Language::Node)
    }
}

/// The file of a JavaScript service that is a Worker: an ES module whose default export has a
/// `fetch` handler (`export default { async fetch(request, env, ctx) { … } }`, as Cloudflare
/// Workers are written, or `export default app` of a Hono or itty-router app), or a service
/// worker (`addEventListener("fetch", …)`). That the default export has `fetch` is checked
/// when the module is evaluated at build time. `worker.js`,
/// `index.js`, `src/index.js` or `main.js` first, else the first that is one.
pub fn worker_entry(s: &Service) -> Option<&FileBlock> {
    let is_worker = |f: &&FileBlock| {
        let p = f.path.as_str();
        let t = &f.content;
        (p.ends_with(".js") || p.ends_with(".mjs"))
            && (t.contains("export default")
                || t.contains("addEventListener(\"fetch\"")
                || t.contains("addEventListener('fetch'"))
    };
    [
        "worker.js",
        "index.js",
        "src/index.js",
        "src/worker.js",
        "main.js",
    ]
    .iter()
    .filter_map(|name| s.content.file(name))
    .find(is_worker)
    .or_else(|| s.content.files.iter().find(is_worker))
}

/// npm packages with compiled parts (a native addon), which no bundle can carry into a
/// component. A Worker found to need another one at build time fails there, naming it.
pub const NATIVE_NPM: &[&str] = &[
    "better-sqlite3",
    "sqlite3",
    "bcrypt",
    "argon2",
    "sharp",
    "canvas",
    "node-pty",
    "re2",
    "leveldown",
    "classic-level",
    "cpu-features",
    "serialport",
    "usb",
    "fsevents",
    "@prisma/client",
    "msgpackr-extract",
    "node-rdkafka",
    "oracledb",
];

/// The npm packages a service declares: `markpact:deps node` lines, and the `dependencies` of
/// its `package.json` block, each with where it is declared (the line, or the block).
pub fn npm_packages(s: &Service) -> Vec<(String, Loc)> {
    let mut found: Vec<(String, Loc)> = s
        .content
        .deps
        .get(&Installer::Npm)
        .into_iter()
        .flatten()
        .map(|d| (split_npm_spec(&d.spec).0.to_string(), d.loc.clone()))
        .collect();
    if let Some(pkg) = s.content.file("package.json")
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&pkg.content)
        && let Some(deps) = json.get("dependencies").and_then(|d| d.as_object())
    {
        found.extend(deps.keys().map(|k| (k.clone(), pkg.loc.clone())));
    }
    found
}

/// An npm dependency line split into its name and its version range: `express@4` or
/// `@scope/pkg@^1` (the name ends at the last `@` past the first character), or a bare name.
pub fn split_npm_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.get(1..).and_then(|r| r.rfind('@')) {
        Some(i) => (&spec[..i + 1], Some(&spec[i + 2..])),
        None => (spec, None),
    }
}

/// Does a JavaScript service declare npm packages (to be bundled into its component)?
pub fn has_npm_packages(s: &Service) -> bool {
    !npm_packages(s).is_empty()
}

/// What keeps a JavaScript Worker from being a component: an npm package with compiled parts
/// (see [`NATIVE_NPM`]), named with where it is declared. Pure-JavaScript packages are bundled.
pub fn worker_blocker(s: &Service) -> Option<String> {
    npm_packages(s)
        .into_iter()
        .find(|(name, _)| NATIVE_NPM.contains(&name.as_str()))
        .map(|(name, loc)| format!("`{name}` ({loc})"))
}

/// Python packages with compiled parts and no pure-Python fallback or WASI build: a service
/// that needs one runs as a native process.
pub const NO_WASI_BUILD: &[&str] = &[
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "torch",
    "tensorflow",
    "pydantic",
    "pydantic-core",
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "lxml",
    "psycopg2",
    "psycopg2-binary",
    "psycopg",
    "asyncpg",
    "orjson",
    "ujson",
    "cryptography",
    "bcrypt",
    "grpcio",
    "pillow",
    "matplotlib",
    "greenlet",
    "gevent",
    "regex",
];

/// A Python dependency that has no WASI build (see [`NO_WASI_BUILD`]).
pub fn native_only_dep(s: &Service) -> Option<&Dep> {
    s.content.deps.get(&Installer::Pip)?.iter().find(|d| {
        let name: String = d
            .spec
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .replace('_', "-");
        NO_WASI_BUILD.contains(&name.as_str())
    })
}

/// The file of a Python service that holds its WSGI callable (PEP 3333): a top-level `app = …`
/// or `def app(` in `wsgi.py`, `app.py` or `main.py`, else in the first Python file that has
/// one. An ASGI application (FastAPI, Starlette, Quart, an `async def app`) is not one.
pub fn wsgi_entry(s: &Service) -> Option<&FileBlock> {
    let defines_app = |f: &&FileBlock| {
        let text = &f.content;
        let asgi = ["FastAPI(", "Starlette(", "Quart(", "async def app("]
            .iter()
            .any(|a| text.contains(a));
        let app = text.lines().any(|l| {
            let l = l.trim_end();
            l.starts_with("def app(")
                || l.strip_prefix("app").is_some_and(|rest| {
                    rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("==")
                })
        });
        f.path.as_str().ends_with(".py") && app && !asgi
    };
    ["wsgi.py", "app.py", "main.py"]
        .iter()
        .filter_map(|name| s.content.file(name))
        .find(defines_app)
        .or_else(|| s.content.files.iter().find(defines_app))
}

/// The kind a service runs as, and why: what its `runtime:` (or a block header) sets, else a
/// component when its language builds to one (an HTTP handler runs per request, a `main` as a
/// long-running command), else a native process.
pub fn runtime_kind(s: &Service) -> (RuntimeKind, String) {
    if let Some((b, _)) = &s.builtin {
        return (
            RuntimeKind::Builtin,
            format!(
                "the built-in `{}` service, served by pactown itself",
                b.as_str()
            ),
        );
    }
    if let Some((k, by)) = s.runtime_override() {
        return (k, format!("{} as set by {by}", k.as_str()));
    }
    let language = language(s);
    if language == Language::Rust {
        let handler = s.content.files.iter().find(|f| {
            f.path.as_str().ends_with(".rs")
                && (f.content.contains("http_server") || f.content.contains("incoming_handler"))
        });
        return match handler {
            Some(f) => (
                RuntimeKind::WasmHttp,
                format!(
                    "Rust with an HTTP handler ({}): a component exporting wasi:http/incoming-handler, a fresh instance per request",
                    f.path.as_str()
                ),
            ),
            None => (
                RuntimeKind::WasmCommand,
                "Rust with a `main`: a long-running wasi:cli/run component with virtualized sockets"
                    .into(),
            ),
        };
    }
    if language == Language::Python
        && s.content.run.is_none()
        && let Some(f) = wsgi_entry(s)
    {
        return match native_only_dep(s) {
            Some(d) => (
                RuntimeKind::Native,
                format!(
                    "Python with a WSGI `app` ({}), but `{}` ({}) has no WASI build: it needs a run block to start as a process",
                    f.path.as_str(),
                    d.spec,
                    d.loc
                ),
            ),
            None => (
                RuntimeKind::WasmHttp,
                format!(
                    "Python with a WSGI `app` ({}) and no run block: a component exporting wasi:http/incoming-handler, a fresh instance per request",
                    f.path.as_str()
                ),
            ),
        };
    }
    if language == Language::Node
        && s.content.run.is_none()
        && let Some(f) = worker_entry(s)
    {
        return match worker_blocker(s) {
            Some(dep) => (
                RuntimeKind::Native,
                format!(
                    "a JavaScript Worker ({}), but {dep} has compiled parts no component can carry: it needs a run block to start as a process",
                    f.path.as_str()
                ),
            ),
            None => (
                RuntimeKind::WasmHttp,
                format!(
                    "a JavaScript Worker ({}) and no run block: a component exporting wasi:http/incoming-handler, a fresh instance per request",
                    f.path.as_str()
                ),
            ),
        };
    }
    if s.content.run.is_none() {
        return (
            RuntimeKind::Native,
            "no run block: nothing is started".into(),
        );
    }
    (
        RuntimeKind::Native,
        format!(
            "{} service started by its run command as a process",
            language.as_str()
        ),
    )
}

/// The language of a service: from its run command (what it starts), else its dependencies,
/// else its files (`package.json`, `go.mod`, `*.py`, …).
pub fn language(s: &Service) -> Language {
    if is_rust(s) {
        return Language::Rust;
    }
    let by_program = |word: &str| -> Option<Language> {
        let prog = word.rsplit('/').next().unwrap_or(word);
        Some(match prog {
            "node" | "npm" | "npx" | "yarn" | "pnpm" | "bun" | "deno" | "tsx" | "ts-node" => {
                Language::Node
            }
            "go" => Language::Go,
            "cargo" => Language::Rust,
            p if p.starts_with("python")
                || matches!(
                    p,
                    "uvicorn"
                        | "gunicorn"
                        | "hypercorn"
                        | "flask"
                        | "pip"
                        | "pip3"
                        | "uv"
                        | "streamlit"
                        | "celery"
                        | "fastapi"
                ) =>
            {
                Language::Python
            }
            _ => return None,
        })
    };
    if let Some(run) = &s.content.run {
        for part in run.command.split(['\n', ';', '&', '|']) {
            let first = part
                .split_whitespace()
                .find(|w| !w.contains('=') && !matches!(*w, "exec" | "env" | "time" | "nohup"));
            if let Some(lang) = first.and_then(by_program) {
                return lang;
            }
        }
    }
    for (installer, lang) in [
        (Installer::Pip, Language::Python),
        (Installer::Npm, Language::Node),
        (Installer::Go, Language::Go),
    ] {
        if s.content.deps.contains_key(&installer) {
            return lang;
        }
    }
    for f in &s.content.files {
        let p = f.path.as_str();
        let lang = if p == "package.json"
            || [".js", ".mjs", ".cjs", ".ts"]
                .iter()
                .any(|e| p.ends_with(e))
        {
            Language::Node
        } else if p == "go.mod" || p.ends_with(".go") {
            Language::Go
        } else if p.ends_with(".py") || p == "requirements.txt" {
            Language::Python
        } else {
            continue;
        };
        return lang;
    }
    Language::Shell
}
