//! A native service's environment is composed in one place (`ServicePlan::process_env`): these check
//! what wins over what, and what never gets through.

use std::path::PathBuf;

use pactown_host::facts::HostFacts;
use pactown_host::plan::{Added, Plan};
use pactown_host::spec::ecosystem::assign_ports;
use pactown_host::spec::graph::DependencyGraph;

const YAML: &str = "\
services:
  db:
    readme: db/README.md
    port: 8003
  api:
    readme: api/README.md
    port: 8001
    depends_on: [db]
    env:
      HTTP_PROXY: http://mine
      EXTRA: one
";

const README: &str = "# s\n\n```bash markpact:run\npython3 -m http.server $PORT\n```\n";

fn env_of(parent: &[(&str, &str)], added: Added<'_>) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pactown.yaml"), YAML).unwrap();
    for s in ["db", "api"] {
        std::fs::create_dir(dir.path().join(s)).unwrap();
        std::fs::write(dir.path().join(s).join("README.md"), README).unwrap();
    }
    let loaded =
        pactown_host::spec::load(&dir.path().join("pactown.yaml"), &|_| None).expect("valid");
    let eco = &loaded.ecosystem;
    let graph = DependencyGraph::from_ecosystem(eco).unwrap();
    let mut facts = HostFacts::fixed();
    facts.env = parent
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let plan = Plan::build(eco, &graph, &assign_ports(eco), &facts);
    plan.services["api"].process_env(added)
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    let mut found = env.iter().filter(|(n, _)| n == k);
    let v = found.next().map(|(_, v)| v.as_str());
    assert!(found.next().is_none(), "{k} is set twice");
    v
}

#[test]
fn secrets_and_unknown_parent_variables_never_reach_a_service() {
    let env = env_of(
        &[
            ("PATH", "/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("GITHUB_TOKEN", "x"),
            ("RANDOM_TOOL_SETTING", "x"),
            ("PIP_INDEX_URL", "https://me:s3cret@pypi.corp/simple"),
        ],
        Added::default(),
    );
    assert_eq!(get(&env, "LANG"), Some("C.UTF-8"));
    assert_eq!(get(&env, "LC_ALL"), Some("C"));
    assert_eq!(get(&env, "AWS_SECRET_ACCESS_KEY"), None);
    assert_eq!(get(&env, "GITHUB_TOKEN"), None);
    assert_eq!(get(&env, "RANDOM_TOOL_SETTING"), None);
    assert_eq!(get(&env, "PIP_INDEX_URL"), Some("https://pypi.corp/simple"));
}

#[test]
fn build_proxy_sandbox_then_the_services_own_env_in_that_order() {
    let prefix = [PathBuf::from("/cache/venv/bin")];
    let build = [
        ("VIRTUAL_ENV".to_string(), "/cache/venv".to_string()),
        ("LANG".to_string(), "from-build".to_string()),
    ];
    let env = env_of(
        &[("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("LANG", "C")],
        Added {
            path_prefix: &prefix,
            build: &build,
            proxy: Some("127.0.0.1:4000".parse().unwrap()),
        },
    );
    assert_eq!(get(&env, "PATH"), Some("/cache/venv/bin:/usr/bin:/bin"));
    assert_eq!(get(&env, "VIRTUAL_ENV"), Some("/cache/venv"));
    assert_eq!(get(&env, "LANG"), Some("from-build"));
    assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://127.0.0.1:4000"));
    assert_eq!(get(&env, "NO_PROXY"), Some("localhost,127.0.0.1,::1"));
    // its own `env:` wins over the proxy
    assert_eq!(get(&env, "HTTP_PROXY"), Some("http://mine"));
    assert_eq!(get(&env, "EXTRA"), Some("one"));
    // HOME is inside its sandbox dir, never the developer's
    let home = get(&env, "HOME").unwrap();
    assert!(home.ends_with("api/.home"), "{home}");
    assert!(get(&env, "TMPDIR").unwrap().ends_with("api/.tmp"));
    // pactown's variables for its dependency
    assert_eq!(get(&env, "DB_URL"), Some("http://127.0.0.1:8003"));
    assert_eq!(get(&env, "SERVICE_NAME"), Some("api"));
}

#[test]
fn a_path_is_always_there() {
    let env = env_of(&[], Added::default());
    assert_eq!(get(&env, "PATH"), Some("/usr/local/bin:/usr/bin:/bin"));
}
