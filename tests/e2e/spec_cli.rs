//! The spec layer through the real binary: `init` → `validate` → `plan` as a new user runs them,
//! errors at file:line:col with exit 1, `graph`, `scan` and `generate`.

use crate::support::TestEnv;

const SVC: &str = "```python markpact:file path=main.py\nprint('hi')\n```\n\n```bash markpact:run\npython3 main.py\n```\n";

#[test]
fn init_validate_plan_as_a_new_user() {
    let env = TestEnv::new();
    env.run(&["init", "-n", "shop"])
        .ok()
        .stderr_has("shop.pactown.yaml");
    assert!(env.abs("services/api/README.md").is_file());
    assert!(env.abs("services/web/README.md").is_file());

    let v = env.run(&["validate", "shop.pactown.yaml"]);
    v.ok().stderr_has("ecosystem `shop` is valid (2 services)");
    assert!(v.stdout.is_empty(), "validate prints no data: {}", v.stdout);

    let plan = env
        .run(&["plan", "shop.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(plan["waves"], serde_json::json!([["api"], ["web"]]));
    let web = &plan["services"]["web"];
    assert_eq!(web["port"], 8002);
    assert_eq!(web["env"]["API_URL"], "http://127.0.0.1:8001");
    assert_eq!(web["env"]["API_PORT"], "8001");
    // WebAssembly first: a JavaScript Worker and a Python WSGI app.
    assert_eq!(web["sandbox"]["kind"], "wasm-http");
    assert_eq!(web["language"], "node");
    assert_eq!(plan["services"]["api"]["sandbox"]["kind"], "wasm-http");
    assert_eq!(plan["services"]["api"]["language"], "python");
    assert_eq!(plan["services"]["api"]["health"]["check"], "/health");

    env.run(&["plan", "shop.pactown.yaml"])
        .ok()
        .stdout_has("sandbox   wasm-http");

    // `--native` writes today's processes.
    let native = TestEnv::new();
    native.run(&["init", "-n", "shop", "--native"]).ok();
    let plan = native
        .run(&["plan", "shop.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(plan["services"]["web"]["sandbox"]["kind"], "native");
    assert_eq!(plan["services"]["web"]["run"], "python3 web.py");

    // A second init refuses to overwrite anything.
    env.run(&["init", "-n", "shop"])
        .code(1)
        .stderr_has("already exist");
}

#[test]
fn errors_name_file_line_col_and_exit_1() {
    let env = TestEnv::new();
    env.write("s/README.md", SVC).write(
        "bad.pactown.yaml",
        "services:\n  api:\n    readme: s/README.md\n    port: 8001\n    helth_check: /health\n  web:\n    readme: s/README.md\n    port: 8001\n",
    );
    let r = env.run(&["validate", "bad.pactown.yaml"]);
    r.code(1)
        .stderr_has("bad.pactown.yaml:5:5")
        .stderr_has("unknown field `helth_check` in service `api`")
        .stderr_has("did you mean `health_check`?")
        .stderr_has("bad.pactown.yaml:8:11")
        .stderr_has("port 8001 is given to both `api` and `web`")
        .stderr_has("2 errors found; nothing was started");
    assert!(r.stdout.is_empty());
    // plan and graph refuse the same input the same way
    env.run(&["plan", "bad.pactown.yaml", "--json"]).code(1);
    env.run(&["graph", "bad.pactown.yaml"]).code(1);
}

#[test]
fn a_cycle_names_the_whole_loop() {
    let env = TestEnv::new();
    env.write("s/README.md", SVC).write(
        "c.pactown.yaml",
        "services:\n  api:\n    readme: s/README.md\n    depends_on: [db]\n  db:\n    readme: s/README.md\n    depends_on: [api]\n",
    );
    env.run(&["validate", "c.pactown.yaml"])
        .code(1)
        .stderr_has("dependency cycle: api → db → api")
        .stderr_has("c.pactown.yaml:7:18");
}

#[test]
fn missing_file_is_a_user_error_with_a_hint() {
    let env = TestEnv::new();
    env.run(&["validate", "nope.pactown.yaml"])
        .code(1)
        .stderr_has("cannot read ecosystem file `nope.pactown.yaml`")
        .stderr_has("pactown init");
}

/// Reference defect 9: `file path=../../x` and absolute paths wrote outside the sandbox.
#[test]
fn escaping_file_paths_are_rejected_at_the_readme_line() {
    let env = TestEnv::new();
    env.write(
        "api/README.md",
        "# api\n\n```markpact:file path=../../evil.sh\nrm -rf ~\n```\n\n```markpact:file path=/etc/cron.d/x\nx\n```\n\n```markpact:run\ntrue\n```\n",
    )
    .write("e.pactown.yaml", "services:\n  api: {}\n");
    env.run(&["validate", "e.pactown.yaml"])
        .code(1)
        .stderr_has("api/README.md:3:18")
        .stderr_has("climbs out of the sandbox")
        .stderr_has("api/README.md:7:18")
        .stderr_has("is absolute");
}

/// Reference defect 7: `${VAR}` was passed literally.
#[test]
fn variables_come_from_the_host_environment() {
    let env = TestEnv::new();
    env.write("s/README.md", SVC).write(
        "v.pactown.yaml",
        "services:\n  api:\n    readme: s/README.md\n    port: ${API_PORT:-9000}\n    env:\n      GREETING: ${GREETING:?say hello}\n",
    );
    env.run(&["validate", "v.pactown.yaml"])
        .code(1)
        .stderr_has("required variable `GREETING` is not set: say hello");
    let plan = env
        .cmd(&["plan", "v.pactown.yaml", "--json"])
        .env("GREETING", "hej")
        .env("API_PORT", "9123")
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["services"]["api"]["port"], 9123);
    assert_eq!(plan["services"]["api"]["env"]["GREETING"], "hej");
}

/// Reference defect 13: `graph` printed no service names.
#[test]
fn graph_formats_show_names_ports_and_edges() {
    let env = TestEnv::new();
    env.write("s/README.md", SVC).write(
        "g.pactown.yaml",
        "name: g\nservices:\n  db: {readme: s/README.md, port: 7001}\n  api: {readme: s/README.md, port: 7002, depends_on: [db]}\n  web: {readme: s/README.md, depends_on: [api, db]}\n",
    );
    let text = env.run(&["graph", "g.pactown.yaml"]).ok().stdout.clone();
    assert!(text.contains("db :7001"), "{text}");
    assert!(text.contains("api :7002 → db"), "{text}");
    assert!(text.contains("web :8002 → api, db"), "{text}");
    env.run(&["graph", "g.pactown.yaml", "--format", "dot"])
        .ok()
        .stdout_has("\"web\" -> \"api\";");
    env.run(&["graph", "g.pactown.yaml", "--format", "mermaid"])
        .ok()
        .stdout_has("api --> db");
    let json = env
        .run(&["graph", "g.pactown.yaml", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json["waves"], serde_json::json!([["db"], ["api"], ["web"]]));
    assert_eq!(json["stop_order"], serde_json::json!(["web", "api", "db"]));
}

/// Reference defect 13: generated configs gave two services the same port.
#[test]
fn generate_writes_an_ecosystem_that_validates_with_distinct_ports() {
    let env = TestEnv::new();
    let svc = |url_var: &str| {
        format!(
            "```python markpact:file path=main.py\nimport os\nprint(os.environ.get('{url_var}'))\n```\n\n```markpact:run python\nuvicorn main:app --port ${{MARKPACT_PORT:-8001}}\n```\n\n```markpact:test http\nGET /health EXPECT 200\n```\n"
        )
    };
    env.write("services/db/README.md", &svc("NOTHING"))
        .write("services/api/README.md", &svc("DB_URL"))
        .write("services/web/README.md", &svc("API_URL"))
        .write("services/node_modules/x/README.md", &svc("X"));
    env.run(&["scan", "services"])
        .ok()
        .stdout_has("api")
        .stdout_has("/health");
    env.run(&[
        "generate",
        "services",
        "-o",
        "gen.pactown.yaml",
        "-p",
        "8500",
    ])
    .ok()
    .stderr_has("3 services");
    let plan = env.run(&["plan", "gen.pactown.yaml", "--json"]).ok().json();
    let ports: Vec<u64> = ["api", "db", "web"]
        .iter()
        .map(|s| plan["services"][s]["port"].as_u64().unwrap())
        .collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 3, "ports collide: {ports:?}");
    assert!(
        ports.contains(&8001),
        "the run command's own port is kept once: {ports:?}"
    );
    assert_eq!(
        plan["services"]["web"]["depends_on"],
        serde_json::json!(["api"])
    );
    assert_eq!(
        plan["services"]["api"]["depends_on"],
        serde_json::json!(["db"])
    );
    assert_eq!(plan["services"]["api"]["health"]["check"], "/health");
    // refuses to overwrite
    env.run(&["generate", "services", "-o", "gen.pactown.yaml"])
        .code(1);
}

#[test]
fn colour_only_when_asked_and_never_with_no_color() {
    let env = TestEnv::new();
    env.write("x.pactown.yaml", "services:\n  api: {prot: 1}\n");
    let plain = env.run(&["validate", "x.pactown.yaml"]);
    assert!(
        !plain.stderr.contains('\x1b'),
        "NO_COLOR output has ANSI codes"
    );
    let forced = env.run(&["--color", "always", "validate", "x.pactown.yaml"]);
    assert!(
        forced.stderr.contains('\x1b'),
        "--color always has no ANSI codes"
    );
}
