//! What a service is written in, from what its README says: its run command (what it starts),
//! else its dependencies, else its files; and so the kind it runs as, decided here once. Read
//! by the plan (which carries the kind and the toolchains it needs) and by the checks of the
//! spec itself.

use serde::Serialize;

use super::model::Service;
use super::service::{Installer, RuntimeKind};

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
        self == Language::Rust
    }
}

/// The kind a service runs as, and why: what its `runtime:` (or a block header) sets, else a
/// component when its language builds to one (an HTTP handler runs per request, a `main` as a
/// long-running command), else a native process.
pub fn runtime_kind(s: &Service) -> (RuntimeKind, String) {
    if let Some((k, by)) = s.runtime_override() {
        return (k, format!("{} as set by {by}", k.as_str()));
    }
    let language = language(s);
    if language.builds_to_wasm() {
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
