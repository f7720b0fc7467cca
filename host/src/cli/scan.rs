//! `pactown scan DIR`: the markpact READMEs in a folder, as services.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ExitStatus, Term, user_error};
use crate::spec::ecosystem::env_prefix;
use crate::spec::service::Tests;
use crate::spec::source::SourceCache;
use crate::spec::{Diagnostics, ServiceSource};

/// List the markpact READMEs below a folder: the service each would be, its run command, the
/// port its run command defaults to, its health check and the services it refers to.
#[derive(Debug, clap::Args)]
pub struct ScanCommand {
    /// The folder to search.
    pub dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A README found by a scan.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// Service name (from its folder, made unique).
    pub name: String,
    /// The README.
    pub readme: PathBuf,
    /// Its run command.
    pub run: Option<String>,
    /// Port from `${PORT:-N}` / `${MARKPACT_PORT:-N}` in the run command.
    pub port_hint: Option<u16>,
    /// Health path from its tests (`GET /health`).
    pub health_check: Option<String>,
    /// Other found services whose `<NAME>_URL`, `_HOST` or `_PORT` its files use.
    pub refers_to: Vec<String>,
    /// Number of files.
    pub files: usize,
    /// Problems in the README (it is still listed).
    pub errors: usize,
}

impl ScanCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let found = scan(&self.dir)?;
        if found.is_empty() {
            return Err(user_error(
                format!("no markpact README found below `{}`", self.dir.display()),
                Some(
                    "a service README has code blocks tagged `markpact:file`, `markpact:run`, ...",
                ),
            ));
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &found)?;
            writeln!(out)?;
        } else {
            let w = found.iter().map(|f| f.name.len()).max().unwrap_or(4).max(7);
            writeln!(
                out,
                "{:w$}  {:6}  {:14}  {:20}  README",
                "SERVICE", "PORT", "HEALTH", "REFERS TO"
            )?;
            for f in &found {
                let port = f.port_hint.map_or("-".to_string(), |p| p.to_string());
                let refers = if f.refers_to.is_empty() {
                    "-".to_string()
                } else {
                    f.refers_to.join(",")
                };
                writeln!(
                    out,
                    "{:w$}  {:6}  {:14}  {:20}  {}",
                    f.name,
                    port,
                    f.health_check.as_deref().unwrap_or("-"),
                    refers,
                    f.readme.display()
                )?;
            }
        }
        let broken = found.iter().filter(|f| f.errors > 0).count();
        if broken > 0 {
            term.warn(&format!("{broken} README(s) have errors; run `pactown validate` on a generated ecosystem to see them"));
        }
        Ok(ExitStatus::Success)
    }
}

const SKIP_DIRS: &[&str] = &["node_modules", "target", "__pycache__", "venv", ".venv"];

/// Find every README with markpact blocks below `dir`, in path order.
pub fn scan(dir: &Path) -> anyhow::Result<Vec<Found>> {
    if !dir.is_dir() {
        return Err(user_error(
            format!("`{}` is not a folder", dir.display()),
            None,
        ));
    }
    let mut readmes = Vec::new();
    walk(dir, 0, &mut readmes)?;
    readmes.sort();
    let cache = SourceCache::default();
    let mut parsed = Vec::new();
    let mut names = HashSet::new();
    for readme in readmes {
        let mut diags = Diagnostics::default();
        let source = ServiceSource::load(&readme, &cache, &mut diags);
        if source.run.is_none() && source.files.is_empty() {
            continue;
        }
        let name = unique_name(&readme, dir, &mut names);
        parsed.push((name, readme, source, diags.error_count()));
    }
    let prefixes: Vec<(String, String)> = parsed
        .iter()
        .map(|(n, ..)| (n.clone(), env_prefix(n)))
        .collect();
    Ok(parsed
        .iter()
        .map(|(name, readme, source, errors)| {
            let text: String = source
                .files
                .iter()
                .map(|f| f.content.as_str())
                .chain(source.run.as_ref().map(|r| r.command.as_str()))
                .collect::<Vec<_>>()
                .join("\n");
            let refers_to: BTreeSet<String> = prefixes
                .iter()
                .filter(|(n, p)| {
                    n != name
                        && ["_URL", "_HOST", "_PORT"]
                            .iter()
                            .any(|s| mentions(&text, &format!("{p}{s}")))
                })
                .map(|(n, _)| n.clone())
                .collect();
            Found {
                name: name.clone(),
                readme: readme.clone(),
                run: source.run.as_ref().map(|r| r.command.clone()),
                port_hint: source.run.as_ref().and_then(|r| port_hint(&r.command)),
                health_check: health_hint(source),
                refers_to: refers_to.into_iter().collect(),
                files: source.files.len(),
                errors: *errors,
            }
        })
        .collect())
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if depth > 8 {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type()?;
        if ft.is_dir() {
            if !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                walk(&e.path(), depth + 1, out)?;
            }
        } else if ft.is_file() && name.eq_ignore_ascii_case("readme.md") {
            out.push(crate::spec::source::normalize(&e.path()));
        }
    }
    Ok(())
}

/// The README's folder name; `a-b` style with the parent folder when taken.
fn unique_name(readme: &Path, root: &Path, taken: &mut HashSet<String>) -> String {
    let parent = readme.parent().unwrap_or(root);
    let base = parent
        .file_name()
        .map(|n| crate::spec::sanitize_name(&n.to_string_lossy()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "service".into());
    let mut name = base.clone();
    if taken.contains(&name)
        && let Some(gp) = parent.parent().and_then(Path::file_name)
    {
        name = format!(
            "{}-{base}",
            crate::spec::sanitize_name(&gp.to_string_lossy())
        );
    }
    let mut i = 2;
    let stem = name.clone();
    while taken.contains(&name) {
        name = format!("{stem}-{i}");
        i += 1;
    }
    taken.insert(name.clone());
    name
}

/// `API_URL` as a whole word in `text`.
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `${MARKPACT_PORT:-8001}` or `${PORT:-8001}` in a run command.
pub fn port_hint(run: &str) -> Option<u16> {
    ["${MARKPACT_PORT:-", "${PORT:-"].iter().find_map(|pat| {
        let start = run.find(pat)? + pat.len();
        let end = run[start..].find('}')? + start;
        run[start..end].parse().ok()
    })
}

fn health_hint(source: &ServiceSource) -> Option<String> {
    source.tests.iter().find_map(|t| match t {
        Tests::Http(checks) => checks
            .iter()
            .find(|c| c.method == "GET" && c.path.contains("health"))
            .map(|c| c.path.clone()),
        Tests::Shell(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(
            port_hint("uvicorn main:app --port ${MARKPACT_PORT:-8003}"),
            Some(8003)
        );
        assert_eq!(port_hint("node server.js"), None);
        assert!(mentions("os.environ['API_URL']", "API_URL"));
        assert!(!mentions("MY_API_URL", "API_URL"));
    }
}
