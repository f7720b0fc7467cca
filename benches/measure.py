#!/usr/bin/env python3
"""Start an orchestrator, wait until every service answers, measure, stop it.

    measure.py --cmd "pactown up x.pactown.yaml" --ports 8100,8101 [--path /health]
               [--cwd DIR] [--env K=V ...] [--timeout 300] [--settle 2]

Prints one JSON object:
  ready_s            process start → every port answers GET <path> with 2xx/3xx
  orchestrator_pss_kb / orchestrator_rss_kb
                     the orchestrator's own processes (those whose command line names pactown:
                     for us the `up` process and its sandbox shims; for the reference, its
                     Python process), measured after --settle seconds at rest
  services_pss_kb    every other process in the tree (the services themselves)
  stop_s             SIGINT → the orchestrator's exit
Polling is every 2 ms with raw sockets, so the poller adds almost nothing to ready_s.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time


def answers(port, path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            s.settimeout(2)
            head = s.recv(64).decode(errors="replace")
            parts = head.split()
            return len(parts) > 1 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except OSError:
        return False


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    seen, stack = [], [pid]
    while stack:
        p = stack.pop()
        seen.append(p)
        stack += children(p)
    return seen


def mem_kb(pid, field):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cmd", required=True)
    ap.add_argument("--ports", required=True)
    ap.add_argument("--path", default="/health")
    ap.add_argument("--cwd", default=".")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--settle", type=float, default=2)
    ap.add_argument("--log", default=os.devnull)
    a = ap.parse_args()
    env = dict(os.environ)
    for kv in a.env:
        k, v = kv.split("=", 1)
        env[k] = v
    ports = [int(p) for p in a.ports.split(",")]
    log = open(a.log, "wb")
    start = time.monotonic()
    # `exec`, so the shell becomes the orchestrator: signals reach it, and it is the root of the
    # process tree we measure.
    proc = subprocess.Popen("exec " + a.cmd, shell=True, cwd=a.cwd, env=env, stdout=log, stderr=log,
                            start_new_session=True)
    pending = set(ports)
    came_up = {}
    while pending:
        if proc.poll() is not None:
            print(json.dumps({"error": f"exited with {proc.returncode} before ready", "pending": sorted(pending), "came_up_s": came_up}))
            return 1
        if time.monotonic() - start > a.timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            print(json.dumps({"error": "timeout", "pending": sorted(pending), "came_up_s": came_up}))
            return 1
        for p in [p for p in pending if answers(p, a.path)]:
            pending.discard(p)
            came_up[str(p)] = round(time.monotonic() - start, 4)
        if pending:
            time.sleep(0.002)
    ready = time.monotonic() - start
    time.sleep(a.settle)
    root = proc.pid
    orch_pss = orch_rss = svc_pss = svc_rss = 0
    orch_pids = []
    for p in tree(root):
        c = cmdline(p)
        if "pactown" in c and ("sandbox-exec" in c or p == root):
            orch_pss += mem_kb(p, "Pss")
            orch_rss += mem_kb(p, "Rss")
            orch_pids.append(p)
        else:
            svc_pss += mem_kb(p, "Pss")
            svc_rss += mem_kb(p, "Rss")
    t = time.monotonic()
    os.kill(root, signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    stop = time.monotonic() - t
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    print(json.dumps({
        "ready_s": round(ready, 4),
        "came_up_s": came_up,
        "orchestrator_pss_kb": orch_pss,
        "orchestrator_rss_kb": orch_rss,
        "orchestrator_processes": len(orch_pids),
        "services_pss_kb": svc_pss,
        "services_rss_kb": svc_rss,
        "stop_s": round(stop, 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
