//! Golden tests of the spec layer. Each folder under `tests/ui/` is one case: a `README.md`
//! (read as a one-service ecosystem, like `pactown run`) or a `pactown.yaml` with its READMEs.
//! The snapshot holds the rendered diagnostics and, when the input is valid, the plan and the
//! exact content of every file. A new parser bug becomes a new folder, not new code.
//!
//! Review changes with `cargo insta review`; `INSTA_UPDATE=always` rewrites them.

use std::path::Path;

use pactown_host::facts::HostFacts;
use pactown_host::plan::Plan;
use pactown_host::spec::ecosystem::assign_ports;
use pactown_host::spec::graph::DependencyGraph;
use pactown_host::spec::{self, Diagnostics, Loaded};

/// A fixed environment, so interpolation snapshots do not depend on the machine.
fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/tester".into()),
        "SERVICES_DIR" => Some("svc".into()),
        "EMPTY_VAR" => Some(String::new()),
        _ => None,
    }
}

fn relative(path: &Path) -> &Path {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .expect("case below the crate")
}

fn render(result: Result<Loaded, Diagnostics>) -> String {
    let mut out = String::new();
    let (loaded, diags) = match result {
        Ok(l) => {
            let w = l.warnings.clone();
            (Some(l), w)
        }
        Err(d) => (None, d),
    };
    if !diags.is_empty() {
        out.push_str("--- diagnostics ---\n");
        out.push_str(&diags.render(false));
    }
    if let Some(l) = loaded {
        let eco = &l.ecosystem;
        let graph = DependencyGraph::from_ecosystem(eco).expect("loaded ecosystems are acyclic");
        let plan = Plan::build(eco, &graph, &assign_ports(eco), &HostFacts::fixed()).redacted();
        let mut json = serde_json::to_value(&plan).unwrap();
        // A native sandbox's layers depend on the kernel and privileges of the machine.
        for s in json["services"].as_object_mut().unwrap().values_mut() {
            if s["sandbox"]["kind"] == "native" && s["sandbox"]["level"] != "none" {
                s["sandbox"]["level"] = "<depends on the machine>".into();
                s["sandbox"]["layers"] = "<depends on the machine>".into();
            }
        }
        out.push_str("--- plan ---\n");
        out.push_str(&serde_json::to_string_pretty(&json).unwrap());
        out.push('\n');
        for s in eco.services.values() {
            if s.content.files.is_empty() {
                continue;
            }
            out.push_str(&format!("--- files of {} ---\n", s.name));
            for f in &s.content.files {
                out.push_str(&format!(
                    "== {} ({} bytes)\n{}",
                    f.path.as_str(),
                    f.content.len(),
                    f.content
                ));
                if !f.content.is_empty() && !f.content.ends_with('\n') {
                    out.push_str("\n<no newline at end>\n");
                }
            }
        }
    }
    out
}

#[test]
fn readmes() {
    insta::glob!("ui/*/README.md", |path| {
        insta::assert_snapshot!(render(spec::load_readme(relative(path), Some(9000))));
    });
}

#[test]
fn ecosystems() {
    insta::glob!("ui/*/pactown.yaml", |path| {
        insta::assert_snapshot!(render(spec::load(relative(path), &env)));
    });
}
