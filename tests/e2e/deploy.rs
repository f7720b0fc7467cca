//! `pactown deploy` with real tools: Kubernetes objects checked by the official schemas
//! (`kubernetes-validate`, offline), and an all-wasm ecosystem run by podman from the Compose
//! file and the image `deploy --build` made, its gateway answering through calls by name.

use std::path::PathBuf;
use std::process::Command;

use crate::support::TestEnv;
use crate::support_up::{http_get, http_request, wait_until};

/// A tool from PyPI in a venv of the test run's own (installed once, under a lock).
fn venv_tool(dir: &str, package: &str, bin: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join(".lock")).unwrap();
    lock.lock().unwrap();
    let tool = base.join("venv/bin").join(bin);
    if !tool.is_file() {
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(base.join("venv"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(base.join("venv/bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", package])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tool
}

#[test]
fn kubernetes_objects_validate_against_the_official_schemas() {
    let env = TestEnv::new();
    env.write(
        "edge/README.md",
        "# edge\n\n```javascript markpact:file path=index.js\nexport default { async fetch(req, env) { return new Response((await env.API.fetch(\"http://api/health\")).status + \"\"); } };\n```\n",
    )
    .write("api/README.md", &crate::support_up::py_service("", ""))
    .write(
        "k.pactown.yaml",
        "name: Shop_K8s\nversion: 1.2.0\nservices:\n  api:\n    port: 8101\n    health_check: /health\n    replicas: 3\n    limits: {memory: 256M, cpu: 0.5}\n    allowed_hosts: [api.openai.com]\n    env:\n      DB_PASSWORD: ${E2E_DEPLOY_SECRET:?set it}\n      LOG_LEVEL: info\n  edge:\n    port: 8102\n    depends_on: [api]\n",
    );
    let run = |args: &[&str]| {
        Run::from(
            env.cmd(args)
                .env("PACTOWN_CACHE_DIR", env.cache_dir())
                .env("E2E_DEPLOY_SECRET", "hunter2-e2e")
                .output()
                .unwrap(),
        )
    };
    run(&[
        "deploy",
        "k.pactown.yaml",
        "--target",
        "kubernetes",
        "--check",
    ])
    .ok()
    .stderr_has("is valid");
    run(&[
        "deploy",
        "k.pactown.yaml",
        "--target",
        "kubernetes",
        "--dry-run",
        "-o",
        "nothing",
    ])
    .ok();
    assert!(!env.abs("nothing").exists(), "--dry-run writes nothing");
    run(&[
        "deploy",
        "k.pactown.yaml",
        "--target",
        "kubernetes",
        "-o",
        "out",
    ])
    .ok();
    let manifest = env.read("out/kubernetes.yaml");
    let secret = env.read("out/secret.yaml");
    assert!(
        !manifest.contains("hunter2-e2e"),
        "a secret is never in the manifest"
    );
    assert!(
        secret.contains("E2E_DEPLOY_SECRET: hunter2-e2e"),
        "{secret}"
    );
    assert!(
        manifest.contains("memory: 256Mi") && manifest.contains("cpu: 500m"),
        "{manifest}"
    );
    assert!(manifest.contains("name: shop-k8s-env"), "{manifest}");
    assert!(env.abs("out/image/Containerfile").is_file());
    assert!(
        env.read("out/image/api.Containerfile")
            .contains("FROM docker.io/library/python:3.12-slim")
    );
    let validate = venv_tool(
        "kubernetes-validate",
        "kubernetes-validate==1.37.0",
        "kubernetes-validate",
    );
    let out = Command::new(validate)
        .args(["--strict", "-k", "1.33.0"])
        .arg(env.abs("out/kubernetes.yaml"))
        .arg(env.abs("out/secret.yaml"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    for kind in [
        "deployment/api",
        "service/api",
        "networkpolicy/api",
        "deployment/edge",
        "secret/shop-k8s-env",
    ] {
        assert!(
            said.contains(&format!("passed for resource {kind}")),
            "{kind}: {said}"
        );
    }
}

use crate::support::Run;

/// podman, podman-compose and runc, installed and configured as this machine needs (Debian's
/// crun cannot raise RLIMIT_NPROC here) when they are missing.
fn podman() {
    let lock =
        std::fs::File::create(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("podman.lock"))
            .unwrap();
    lock.lock().unwrap();
    let have = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    // netavark, podman's network backend, programs the firewall with iptables.
    if !(have("podman") && have("podman-compose") && have("runc") && have("iptables")) {
        let out = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "podman",
                "podman-compose",
                "runc",
                "netavark",
                "aardvark-dns",
                "iptables",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("apt-get");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conf = std::path::Path::new("/etc/containers/containers.conf");
    if !conf.exists() {
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(
            conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
    }
}

#[test]
fn podman_runs_the_compose_deployment_and_its_gateway_answers_by_name() {
    podman();
    let env = TestEnv::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/platform-rust");
    for r in ["database", "api", "web", "gateway"] {
        let text = std::fs::read_to_string(src.join(format!("services/{r}/README.md"))).unwrap();
        env.write(&format!("services/{r}/README.md"), &text);
    }
    // Four ports the OS says are free, written into the ecosystem: a deployment's are fixed.
    let ports: Vec<u16> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let yaml = std::fs::read_to_string(src.join("platform.pactown.yaml")).unwrap();
    let mut out = String::new();
    let mut i = 0;
    for line in yaml.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim_start().starts_with("readme:") {
            out.push_str(&format!("    port: {}\n", ports[i]));
            i += 1;
        }
    }
    let project = format!("e2e{}", std::process::id());
    env.write(
        "platform.pactown.yaml",
        &out.replace("name: platform-rust", &format!("name: {project}")),
    );
    let prefix = format!("localhost/{project}/");
    env.run_up(&[
        "deploy",
        "platform.pactown.yaml",
        "--target",
        "compose",
        "--build",
        "--image-prefix",
        &prefix,
        "-o",
        "out",
    ])
    .ok()
    .stderr_has("built");
    struct Down(PathBuf, String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new("podman-compose")
                .arg("-f")
                .arg(self.0.join("compose.yaml"))
                .arg("down")
                .output();
            let _ = Command::new("podman").args(["rmi", "-f", &self.1]).output();
        }
    }
    let _down = Down(env.abs("out"), format!("{prefix}{project}:0.1.0"));
    let up = Command::new("podman-compose")
        .arg("-f")
        .arg(env.abs("out/compose.yaml"))
        .args(["up", "-d"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let (api, gateway) = (ports[1], ports[3]);
    wait_until(120, "the gateway's container", || {
        http_get(gateway, "/health").is_ok_and(|(c, _)| c == 200)
    });
    let (code, body) = http_request(api, "POST", "/api/users", Some(r#"{"name":"Ada"}"#)).unwrap();
    assert_eq!(code, 201, "{body}");
    // gateway → web → api → database, each in its own container, each call by name.
    let (code, page) = http_get(gateway, "/").unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Ada"), "{page}");
    let (code, users) = http_get(gateway, "/api/users").unwrap();
    assert_eq!(code, 200, "{users}");
    assert!(users.contains("\"count\":1"), "{users}");
}
