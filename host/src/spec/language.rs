//! What a service is written in, from what its README says: its run command (what it starts),
//! else its dependencies, else its files. Read by the plan (the kind a service runs as, the
//! toolchains it needs) and by the checks of the spec itself.

use serde::Serialize;

use super::model::Service;
use super::service::Installer;

/// Is this a Rust service?
pub fn is_rust(service: &Service) -> bool {
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
