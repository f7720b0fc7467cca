//! A fresh machine: empty caches, services that differ starting at the same moment, two pactown
//! processes sharing one cache, and the languages the reference's examples mix (Python, Node,
//! Go), each installed at build time and run with its sandbox closed.

use std::path::Path;

use crate::support::{Run, TestEnv};
use crate::support_up::{Up, http_get, py_service, wait_until};

/// A Python service with `markpact:deps` that imports what it needs before it serves.
fn py_with_deps(deps: &[&str], imports: &str, routes: &str) -> String {
    let readme = py_service(imports, routes);
    let (title, rest) = readme.split_once('\n').unwrap();
    format!(
        "{title}\n\n```python markpact:deps\n{}\n```\n{rest}",
        deps.join("\n")
    )
}

fn yaml(services: &[&str]) -> String {
    let mut y = String::from("base_port: 0\nservices:\n");
    for s in services {
        y.push_str(&format!("  {s}: {{health_check: /health, timeout: 120}}\n"));
    }
    y
}

/// Reference defect: one resolution input file per process made concurrent services resolve
/// each other's dependency sets, and the wrong set was cached under the first set's key.
#[test]
fn services_with_distinct_python_dependencies_start_together_on_an_empty_cache() {
    let env = TestEnv::with_empty_cache();
    let sets = [
        ("a", "six", "import six"),
        ("b", "idna", "import idna"),
        ("c", "attrs", "import attrs"),
        ("d", "toolz", "import toolz"),
    ];
    for (name, dep, import) in sets {
        env.write(
            &format!("{name}/README.md"),
            &py_with_deps(&[dep], import, ""),
        );
    }
    env.write("p.pactown.yaml", &yaml(&["a", "b", "c", "d"]));
    let up = Up::start(&env, "p.pactown.yaml");
    for (name, _, _) in sets {
        assert_eq!(http_get(up.port(name), "/health").unwrap().0, 200, "{name}");
        assert_eq!(up.service(name)["sandbox"], "full", "{name}");
    }
    // Each set was resolved as itself: four resolutions, each naming its own package.
    let resolved = env.cache_dir().join("python/resolved");
    let texts: Vec<String> = std::fs::read_dir(&resolved)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(texts.len(), 4, "{texts:#?}");
    for (_, dep, _) in sets {
        assert_eq!(
            texts
                .iter()
                .filter(|t| t.lines().any(|l| l.starts_with(&format!("{dep}=="))))
                .count(),
            1,
            "exactly one resolution names {dep}: {texts:#?}"
        );
    }
}

fn files_below(dir: &Path, pred: &dyn Fn(&Path) -> bool) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if pred(&p) {
                out.push(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn a_damaged_cache_entry_is_detected_and_rebuilt() {
    let env = TestEnv::with_empty_cache();
    env.write(
        "s/README.md",
        &py_with_deps(&["pyparsing"], "import pyparsing", ""),
    )
    .write("d.pactown.yaml", &yaml(&["s"]));
    Up::start(&env, "d.pactown.yaml").down().ok();

    // Damage both levels by hand: the resolution forgets the declared package, and the
    // environment loses it.
    let cache = env.cache_dir();
    let resolution = files_below(&cache.join("python/resolved"), &|p| {
        p.extension().is_some_and(|x| x == "txt")
    })
    .pop()
    .expect("a resolution");
    let text = std::fs::read_to_string(&resolution).unwrap();
    assert!(text.contains("pyparsing=="), "{text}");
    let damaged: String = text
        .lines()
        .filter(|l| !l.starts_with("pyparsing=="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&resolution, damaged).unwrap();
    let dist_info = files_below(&cache.join("python/envs"), &|p| {
        p.file_name().is_some_and(|n| {
            n.to_string_lossy().starts_with("pyparsing-")
                && n.to_string_lossy().ends_with(".dist-info")
        })
    })
    .pop()
    .expect("pyparsing installed");
    std::fs::remove_dir_all(&dist_info).unwrap();

    let up = Up::start(&env, "d.pactown.yaml");
    let said = &up.started.stderr;
    assert!(
        said.contains("does not name pyparsing; resolving again"),
        "{said}"
    );
    assert!(said.contains("lacks pyparsing; rebuilding it"), "{said}");
    assert_eq!(http_get(up.port("s"), "/health").unwrap().0, 200);
    assert!(
        std::fs::read_to_string(&resolution)
            .unwrap()
            .contains("pyparsing==")
    );
}

#[test]
fn two_builds_of_different_ecosystems_share_one_empty_cache_at_once() {
    let env = TestEnv::with_empty_cache();
    env.write("p/README.md", &py_with_deps(&["six"], "import six", ""))
        .write("q/README.md", &py_with_deps(&["idna"], "import idna", ""))
        .write("r/README.md", &py_with_deps(&["attrs"], "import attrs", ""))
        .write("s/README.md", &py_with_deps(&["six"], "import six", ""))
        .write("one.pactown.yaml", &yaml(&["p", "q"]))
        .write("two.pactown.yaml", &yaml(&["r", "s"]));
    let spawn = |file: &str| {
        env.cmd(&["build", file])
            .env("PACTOWN_CACHE_DIR", env.cache_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn("one.pactown.yaml"), spawn("two.pactown.yaml"));
    for child in [one, two] {
        Run::from(child.wait_with_output().unwrap()).ok();
    }
    // Both come up from what the two builds left, with no install.
    for file in ["one.pactown.yaml", "two.pactown.yaml"] {
        let up = Up::start(&env, file);
        assert!(
            !up.started.stderr.contains("building a Python environment"),
            "{}",
            up.started.stderr
        );
        for s in up.status()["services"].as_array().unwrap() {
            assert_eq!(s["state"], "ready", "{s}");
        }
    }
}

pub(crate) const NODE: &str = r#"# node api

```json markpact:file path=package.json
{
  "name": "node-api",
  "version": "1.0.0",
  "type": "module",
  "scripts": {"start": "node server.js"},
  "dependencies": {"express": "^4.18.2"}
}
```

```javascript markpact:file path=server.js
import express from "express";
const app = express();
app.get("/health", (req, res) => res.json({ status: "ok", node: process.version }));
app.listen(process.env.PORT, "127.0.0.1", () => console.log("listening"));
```

```bash markpact:run
npm install
npm start
```
"#;

/// The reference's Node example installed its packages in the run block, from inside its
/// sandbox, with no network: it hung until the timeout with an empty log.
#[test]
fn a_node_service_whose_run_block_installs_comes_up_with_its_sandbox_full() {
    let env = TestEnv::new();
    env.write("n/README.md", NODE)
        .write("n.pactown.yaml", &yaml(&["n"]));
    let plan = env
        .run_up(&["plan", "n.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(plan["services"]["n"]["language"], "node");
    let up = Up::start(&env, "n.pactown.yaml");
    let n = up.service("n");
    assert_eq!(n["sandbox"], "full", "{n}");
    let (code, body) = http_get(up.port("n"), "/health").unwrap();
    assert_eq!(code, 200, "{body}");
    // The run block's own `npm install` found everything in place.
    let log = env.read(".pactown/n/logs/n.log");
    assert!(log.contains("up to date"), "{log}");
}

pub(crate) const GO: &str = r#"# go gateway

```go markpact:file path=main.go
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
)

func main() {
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"status":"ok","go":%q}`, runtime.Version())
	})
	http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil)
}
```

```text markpact:file path=go.mod
module gw

go 1.21
```

```bash markpact:run
go run main.go
```
"#;

/// Go is provisioned by pactown (this machine has none, or one too old), and the run block's
/// `go run` compiles nothing and needs no network.
#[test]
fn a_go_service_runs_with_go_installed_by_pactown() {
    let env = TestEnv::new();
    env.write("g/README.md", GO)
        .write("g.pactown.yaml", &yaml(&["g"]));
    let plan = env
        .run_up(&["plan", "g.pactown.yaml", "--json"])
        .ok()
        .json();
    assert_eq!(plan["services"]["g"]["language"], "go");
    let up = Up::start(&env, "g.pactown.yaml");
    assert_eq!(up.service("g")["sandbox"], "full");
    let (code, body) = http_get(up.port("g"), "/health").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("go1.27"), "the Go pactown installed: {body}");
}

/// A native service's refused connection is logged with its target, as a wasm guest's is.
#[test]
fn an_undeclared_connect_of_a_native_service_reaches_the_anomaly_log() {
    let env = TestEnv::new();
    let snoop = py_service(
        "import socket\nfrom urllib.parse import urlparse, parse_qs",
        r#"        elif self.path.startswith("/try"):
            port = int(parse_qs(urlparse(self.path).query)["port"][0])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                self.reply(200, {"connected": True})
            except OSError as e:
                self.reply(200, {"connected": False, "error": str(e)})"#,
    );
    env.write("victim/README.md", &py_service("", ""))
        .write("snoop/README.md", &snoop)
        .write("a.pactown.yaml", &yaml(&["victim", "snoop"]));
    let up = Up::start(&env, "a.pactown.yaml");
    let victim = up.port("victim");
    let (_, body) = http_get(up.port("snoop"), &format!("/try?port={victim}")).unwrap();
    assert!(body.contains("\"connected\": false"), "{body}");
    let target = format!("127.0.0.1:{victim}");
    wait_until(10, "the refused connect in the anomaly log", || {
        env.read(".pactown/a/logs/anomalies.log").lines().any(|l| {
            l.contains("\"service\":\"snoop\"")
                && l.contains("\"action\":\"tcp connect\"")
                && l.contains(&format!("\"target\":\"{target}\""))
        })
    });
}

/// The reference's run blocks often install by themselves (`pip install -r requirements.txt`):
/// the environment is built ahead from that file, and the run block finds everything there.
#[test]
fn a_run_block_that_pip_installs_finds_everything_in_place() {
    let env = TestEnv::new();
    let readme = py_service("import six", "")
        .replace(
            "```bash markpact:run\nexec python3 server.py\n```",
            "```text markpact:file path=requirements.txt\nsix\n```\n\n```bash markpact:run\npip install -r requirements.txt\nexec python3 server.py\n```",
        );
    assert!(readme.contains("requirements.txt"));
    env.write("r/README.md", &readme)
        .write("r.pactown.yaml", &yaml(&["r"]));
    let up = Up::start(&env, "r.pactown.yaml");
    assert_eq!(http_get(up.port("r"), "/health").unwrap().0, 200);
    let log = env.read(".pactown/r/logs/r.log");
    assert!(log.contains("Requirement already satisfied: six"), "{log}");
}

/// A service that needs what its sandbox denies fails `up` with what was refused, and a hint.
#[test]
fn a_start_that_fails_after_a_denial_says_what_was_refused() {
    let env = TestEnv::new();
    env.write(
        "f/README.md",
        &py_service(
            "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\nexcept OSError as e:\n    sys.exit(f'cannot reach what I need: {e}')",
            "",
        ),
    )
    .write(
        "f.pactown.yaml",
        "base_port: 0\nservices:\n  f: {health_check: /health, auto_restart: false}\n",
    );
    let r = env.run_up(&["up", "-d", "f.pactown.yaml", "--listen", "127.0.0.1:0"]);
    r.code(1)
        .stderr_has("service `f` failed to start; its sandbox refused: tcp connect 127.0.0.1:9")
        .stderr_has("dependencies are installed at build time");
}

/// A service that says nothing and never listens: the error says it wrote nothing.
#[test]
fn a_silent_service_that_never_gets_ready_is_called_silent() {
    let env = TestEnv::new();
    env.write(
        "q/README.md",
        "# q\n\n```bash markpact:run\nexec sleep 3600  # never reads PORT\n```\n",
    )
    .write(
        "q.pactown.yaml",
        "base_port: 0\nservices:\n  q: {timeout: 2}\n",
    );
    let r = env.run_up(&["up", "-d", "q.pactown.yaml", "--listen", "127.0.0.1:0"]);
    r.code(1)
        .stderr_has("was not ready within 2s; it wrote nothing to its log");
}

/// An empty `PACTOWN_CACHE_DIR` (as `VAR= pactown …` or a CI template leaves it) counts as
/// unset: the cache goes to `$XDG_CACHE_HOME/pactown`, never into the current directory.
#[test]
fn an_empty_cache_variable_means_the_default_cache_not_the_current_directory() {
    let env = TestEnv::new();
    env.write("p/README.md", &py_with_deps(&["six"], "import six", ""))
        .write("one.pactown.yaml", &yaml(&["p"]));
    // The default cache is the run's shared one, reached through `$XDG_CACHE_HOME/pactown`.
    let xdg = env.abs("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::os::unix::fs::symlink(env.cache_dir(), xdg.join("pactown")).unwrap();
    let before: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    env.cmd(&["build", "one.pactown.yaml"])
        .env("PACTOWN_CACHE_DIR", "")
        .env("XDG_CACHE_HOME", &xdg)
        .output()
        .map(Run::from)
        .unwrap()
        .ok();
    let mut made: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !before.contains(n))
        .collect();
    made.sort();
    // Only the sandboxes of the one service; no `python/`, `tools/` or lock files of a cache.
    assert_eq!(
        made,
        [std::ffi::OsString::from(".pactown-sandboxes")],
        "{made:?}"
    );
}
