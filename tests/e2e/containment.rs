//! Native services cannot outlive their supervisor or steer it: a replica is its cgroup and its
//! PID namespace, a crashed pactown's leftovers are found and reaped by the next `up`, and the
//! control socket refuses anything pactown started.

use crate::support::TestEnv;
use crate::support_up::{Up, alive, descendants, http_get, http_request, py_service, wait_until};

/// A service that leaves a daemon behind: forked twice, in a session of its own.
fn daemonizing() -> String {
    py_service(
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        open('daemon.pid', 'w').write(str(os.getpid()))\n        time.sleep(3600)\n    os._exit(0)",
        "",
    )
}

fn service_pids(up: &Up<'_>, name: &str) -> (i32, i32) {
    let r = &up.service(name)["replicas"][0];
    (
        r["shim_pid"].as_i64().expect("a shim") as i32,
        r["main_pid"].as_i64().expect("a main process") as i32,
    )
}

#[test]
fn killing_a_replicas_shim_takes_its_whole_tree_and_it_restarts() {
    let env = TestEnv::new();
    env.write("d/README.md", &daemonizing()).write(
        "k.pactown.yaml",
        "base_port: 0\nservices:\n  d: {health_check: /health}\n",
    );
    let up = Up::start(&env, "k.pactown.yaml");
    let (shim, main) = service_pids(&up, "d");
    wait_until(10, "the daemon", || descendants(shim).len() >= 4);
    let tree = descendants(shim);
    assert!(tree.contains(&main), "{tree:?} holds {main}");
    // SAFETY: killing a process of this test's ecosystem.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    wait_until(10, "the whole old tree gone", || {
        !alive(shim) && tree.iter().all(|p| !alive(*p))
    });
    wait_until(60, "a new replica ready", || {
        let r = &up.service("d")["replicas"][0];
        r["state"] == "ready" && r["shim_pid"].as_i64() != Some(shim as i64)
    });
    assert_eq!(http_get(up.port("d"), "/health").unwrap().0, 200);
    assert!(
        tree.iter().all(|p| !alive(*p)),
        "nothing of the old tree is left"
    );
}

#[test]
fn a_crashed_pactown_leaves_nothing_behind_and_the_next_up_says_what_it_reaped() {
    let env = TestEnv::new();
    env.write("boxed/README.md", &daemonizing())
        .write("loose/README.md", &daemonizing())
        .write(
            "c.pactown.yaml",
            "base_port: 0\nservices:\n  boxed: {health_check: /health}\n  loose: {health_check: /health, sandbox: off}\n",
        );
    let up = Up::start(&env, "c.pactown.yaml");
    let daemon = |name: &str| -> i32 {
        let path = env.abs(&format!(".pactown-sandboxes/{name}/daemon.pid"));
        wait_until(10, "the daemon's pid file", || path.exists());
        std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // The loose daemon's pid is its own, on the host; the boxed one's is its namespace's.
    let loose_daemon = daemon("loose");
    let mut everything = up.all_pids();
    everything.sort_unstable();
    everything.dedup();
    assert!(everything.contains(&loose_daemon));
    let boxed_tree = descendants(service_pids(&up, "boxed").0);
    // pactown and all its shims die at once, as in a crash or a `kill -9` of the group: frozen
    // first, so that none of them can clean up after another.
    let pactown = up.status()["pid"].as_i64().unwrap() as i32;
    let shims: Vec<i32> = ["boxed", "loose"]
        .iter()
        .map(|n| service_pids(&up, n).0)
        .collect();
    // SAFETY: signalling this test's own processes.
    unsafe { libc::kill(pactown, libc::SIGSTOP) };
    for p in shims.into_iter().chain(std::iter::once(pactown)) {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    std::mem::forget(up);
    // The sandboxed service's PID namespace died with its init: nothing of it is left.
    wait_until(10, "the sandboxed tree gone", || {
        boxed_tree.iter().all(|p| !alive(*p))
    });
    // The unconfined one's daemon escaped its group and its supervisor; its cgroup still
    // holds it, and the next `up` finds it there.
    assert!(
        alive(loose_daemon),
        "the unconfined daemon outlived the crash"
    );
    let again = Up::start(&env, "c.pactown.yaml");
    again
        .started
        .stderr_has("ended without stopping; killed")
        .stderr_has("loose.1");
    wait_until(10, "the leftover daemon reaped", || !alive(loose_daemon));
    let pids = again.all_pids();
    again.down().ok();
    wait_until(10, "nothing of the ecosystem left after down", || {
        pids.iter().all(|p| !alive(*p))
    });
    // The new run's daemon went with `down` too.
    let new_daemon: i32 = std::fs::read_to_string(env.abs(".pactown-sandboxes/loose/daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(new_daemon));
}

#[test]
fn the_control_socket_refuses_what_pactown_started_and_other_pid_namespaces() {
    let env = TestEnv::new();
    // Unconfined, this service can see the socket: the socket itself must refuse it.
    let steer = py_service(
        "import socket",
        r#"        elif self.path.startswith("/steer"):
            s = socket.socket(socket.AF_UNIX); s.settimeout(3)
            s.connect(self.path.split("?", 1)[1])
            s.sendall(b'{"cmd":"down"}\n')
            self.reply(200, {"answer": s.recv(500).decode()})"#,
    );
    env.write("s/README.md", &steer).write(
        "s.pactown.yaml",
        "base_port: 0\nservices:\n  s: {health_check: /health, sandbox: off}\n",
    );
    let up = Up::start(&env, "s.pactown.yaml");
    let state: serde_json::Value =
        serde_json::from_str(&env.read(".pactown/s/state.json")).unwrap();
    let socket = state["socket"].as_str().unwrap();
    let (code, body) =
        http_request(up.port("s"), "GET", &format!("/steer?{socket}"), None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("reply\\\":\\\"error") && body.contains("started by this pactown"),
        "{body}"
    );
    // A process in another PID namespace (as every sandboxed service is) is refused too.
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(crate::support::pactown_bin())
        .args(["down", "s.pactown.yaml"])
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("another PID namespace"), "{stderr}");
    // Still up, and still answering.
    assert_eq!(up.service("s")["state"], "ready");
    up.down().ok();
}
