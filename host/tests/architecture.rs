//! The pipeline, enforced (docs/architecture.md): data flows one way through the stages of
//! `host/src`, and no two of its files import each other, directly or around a loop.
//!
//! Read from the sources themselves: every `crate::…`, `super::…` and `self::…` path outside
//! `#[cfg(test)]` code is an edge from its file to the file that defines the module it names.
//! A stage may use its own stage and earlier ones only; the edges between files form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The stages, in order. A module may import only modules of its stage or an earlier one.
const STAGES: &[(&str, u8)] = &[
    ("jsonlog", 0),
    ("telemetry", 0),
    ("spec", 1),
    ("facts", 2),
    ("plan", 3),
    ("control", 4),
    ("build", 4),
    ("router", 5),
    ("deploy", 5),
    ("registry", 5),
    ("jobs", 5),
    ("orchestrator", 6),
    ("bench", 6),
    ("cli", 7),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `plan/calls.rs` → `["plan", "calls"]`; `plan/mod.rs` → `["plan"]`; `lib.rs` → `[]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code of a file without its `#[cfg(test)]` module and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path the code names, resolved to absolute module paths (`crate::plan::calls`,
/// `super::env`, `self::x`, and the names inside `use …::{a, b::c}` groups).
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use child::…` (a path relative to this module, as in `mod.rs`): `self::child::…`.
    let code = &code
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let stmt = t.strip_prefix("pub ").unwrap_or(t);
            match stmt.strip_prefix("use ") {
                Some(path)
                    if !["crate::", "super::", "self::", "std::", "core::"]
                        .iter()
                        .any(|p| path.starts_with(p))
                        && path.contains("::") =>
                {
                    format!("use self::{path}")
                }
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let start = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| rest.starts_with(p.as_bytes()))
            .filter(|_| i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':');
        let Some(prefix) = start else {
            i += 1;
            continue;
        };
        // The path, up to where it ends; a `{…}` group is expanded one level.
        let mut j = i;
        while j < bytes.len() && (is_ident(bytes[j]) || bytes[j] == b':') {
            j += 1;
        }
        let path = &code[i..j];
        let mut base: Vec<String> = match *prefix {
            "crate::" => Vec::new(),
            "super::" => module[..module.len().saturating_sub(1)].to_vec(),
            _ => module.to_vec(),
        };
        let mut segments: Vec<&str> = path[prefix.len()..]
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        while segments.first() == Some(&"super") {
            base.pop();
            segments.remove(0);
        }
        base.extend(segments.iter().map(|s| s.to_string()));
        if path.ends_with("::") && bytes.get(j) == Some(&b'{') {
            let end = code[j..].find('}').map_or(code.len(), |e| j + e);
            for item in code[j + 1..end].split(',') {
                let first = item
                    .trim()
                    .split("::")
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                if !first.is_empty() && first != "self" {
                    let mut p = base.clone();
                    p.push(first.to_string());
                    out.push(p);
                }
            }
            out.push(base);
            i = end;
        } else {
            out.push(base);
            i = j;
        }
    }
    out
}

#[test]
fn stages_import_only_earlier_stages_and_no_files_import_each_other() {
    check(&src(), Some(STAGES));
}

#[test]
fn no_two_files_of_the_runtime_import_each_other() {
    check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src"),
        None,
    );
}

/// Every edge of the crate at `root` between files; with `stages`, the stage order too.
fn check(root: &Path, stages: Option<&[(&str, u8)]>) {
    let root = root.to_path_buf();
    let mut all = Vec::new();
    files(&root, &mut all);
    let modules: BTreeMap<Vec<String>, PathBuf> = all
        .iter()
        .map(|p| (module_of(p.strip_prefix(&root).unwrap()), p.clone()))
        .collect();
    // `pub use x::{A, B}` in a module: `module::A` is defined in `module::x`, so a path through
    // the re-export leads to that file, not to the one re-exporting it.
    let mut reexports: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (module, path) in &modules {
        let text = code(&std::fs::read_to_string(path).unwrap());
        for stmt in text.split(';') {
            let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
                continue;
            };
            for r in references(module, &format!("use {rest}")) {
                if let Some(name) = r.last()
                    && r.len() > module.len() + 1
                {
                    let mut key = module.clone();
                    key.push(name.clone());
                    reexports.entry(key).or_insert(r[..r.len() - 1].to_vec());
                }
            }
        }
    }
    let stage = |m: &[String]| -> Option<u8> {
        let top = m.first()?;
        match stages {
            Some(stages) => stages.iter().find(|(n, _)| n == top).map(|(_, s)| *s),
            None => Some(0),
        }
    };
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut back = Vec::new();
    for (module, path) in &modules {
        if module.is_empty() {
            continue; // lib.rs declares the stages
        }
        let text = std::fs::read_to_string(path).unwrap();
        let from = stage(module)
            .unwrap_or_else(|| panic!("`{}` is in no stage: add it to STAGES", module.join("::")));
        for r in references(module, &code(&text)) {
            // The longest prefix that is a file of ours, or that a file re-exports.
            let Some(target) = (1..=r.len()).rev().map(|n| r[..n].to_vec()).find_map(|m| {
                if let Some(def) = reexports.get(&m)
                    && def != module
                {
                    return Some(def.clone());
                }
                modules.contains_key(&m).then_some(m)
            }) else {
                continue;
            };
            // The defining file of a re-exported module path (`spec::graph::X` → spec/graph.rs).
            let target = (1..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|m| modules.contains_key(m))
                .unwrap_or(target);
            if &target == module {
                continue;
            }
            if let Some(to) = stage(&target)
                && to > from
            {
                back.push(format!(
                    "{} (stage {from}) imports {} (stage {to})",
                    module.join("::"),
                    target.join("::")
                ));
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    assert!(
        back.is_empty(),
        "stages import later stages:\n  {}",
        back.join("\n  ")
    );
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "files import each other:\n  {}",
        cycles
            .iter()
            .map(|c| c
                .iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" → "))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The strongly connected components of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(ws) = s.edges.get(v) {
            for w in ws {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_reader_sees_paths_as_rust_does() {
    let m = vec!["plan".to_string(), "calls".to_string()];
    let refs = references(
        &m,
        "use super::{env::x, Language};\nlet p = crate::spec::hosts::HostRule::parse(t);",
    );
    let names: Vec<String> = refs.iter().map(|r| r.join("::")).collect();
    assert!(names.contains(&"plan::env".to_string()), "{names:?}");
    assert!(names.contains(&"plan::Language".to_string()), "{names:?}");
    assert!(
        names.contains(&"spec::hosts::HostRule::parse".to_string()),
        "{names:?}"
    );
}
