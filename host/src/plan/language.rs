//! What a service is written in, and the toolchains that needs.

use serde::Serialize;

use crate::facts::{Tool, ToolStatus};
use crate::spec::service::Installer;
use crate::spec::{Ecosystem, Service};

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
    if crate::build::rust::is_rust(s) {
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

/// The toolchains a service of `language` needs.
pub(super) fn tools_of(s: &Service, language: Language) -> Vec<Tool> {
    match language {
        Language::Python => {
            let deps = s.content.deps.contains_key(&Installer::Pip)
                || s.content.file("requirements.txt").is_some();
            if deps {
                vec![Tool::Python3, Tool::Uv]
            } else {
                vec![Tool::Python3]
            }
        }
        Language::Node => vec![Tool::Node],
        Language::Go => vec![Tool::Go],
        Language::Rust => vec![Tool::Cargo, Tool::WasmTarget],
        Language::Shell => Vec::new(),
    }
}

/// The toolchains one service needs.
pub fn tools_needed_by(s: &Service) -> Vec<Tool> {
    tools_of(s, language(s))
}

/// Every toolchain the services of `eco` need (what to probe before planning).
pub fn tools_needed(eco: &Ecosystem) -> std::collections::BTreeSet<Tool> {
    eco.services
        .values()
        .flat_map(|s| tools_of(s, language(s)))
        .collect()
}

/// A toolchain a service needs, and its state on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct ToolNeed {
    /// The tool.
    pub tool: Tool,
    /// Present, installed by pactown, to be installed, or missing.
    #[serde(flatten)]
    pub status: ToolStatus,
}
