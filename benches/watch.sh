#!/usr/bin/env bash
# Save → the new version answering, with `pactown up --watch`: a Rust component, a JavaScript
# Worker and a Python WSGI app as components, and a native Python service, each edited
# RUNS times (a new string in its README), the others running beside it. The time runs from
# the write to the first answer of the service's stable address with the new string.
#
#   benches/watch.sh [RUNS=5]
#
# spin watch (its documented behaviour): it rebuilds every component of the app on a change
# and restarts the whole app; pactown rebuilds and rolls the changed service alone.
source "$(dirname "$0")/common.sh"
RUNS="${1:-5}"
build_pactown
DIR="$WORK/watch"
rm -rf "$DIR"
mkdir -p "$DIR"/{rust,worker,wsgi,native}
cat > "$DIR/rust/README.md" <<'MD'
# rust
```rust markpact:file path=src/main.rs
#[wstd::http_server]
async fn main(_r: pactown_guest::http::Request<pactown_guest::http::Body>) -> pactown_guest::http::Result<pactown_guest::http::Response<pactown_guest::http::Body>> {
    Ok(pactown_guest::text(200, "VERSION"))
}
```
MD
cat > "$DIR/worker/README.md" <<'MD'
# worker
```javascript markpact:file path=index.js
export default { async fetch() { return new Response("VERSION"); } };
```
MD
cat > "$DIR/wsgi/README.md" <<'MD'
# wsgi
```python markpact:file path=app.py
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"VERSION"]
```
MD
cat > "$DIR/native/README.md" <<'MD'
# native
```python markpact:file path=server.py
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "7"); self.end_headers(); self.wfile.write(b"VERSION")
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
```
```bash markpact:run
exec python3 server.py
```
MD
sed -i 's/VERSION/v000000/' "$DIR"/*/README.md
printf 'name: watchbench\nbase_port: 0\nservices:\n  rust: {}\n  worker: {}\n  wsgi: {}\n  native: {health_check: /}\n' > "$DIR/w.pactown.yaml"
cd "$DIR"
"$PACTOWN" up -d w.pactown.yaml --listen 127.0.0.1:0 --watch >/dev/null
trap '"$PACTOWN" down w.pactown.yaml >/dev/null 2>&1 || true' EXIT
python3 - "$RUNS" <<'PY'
import json, statistics, sys, time, urllib.request
runs = int(sys.argv[1])
state = json.load(open(".pactown/w/state.json"))
def get(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            return r.read().decode()
    except Exception as e:
        return f"error {e}"
print(f"{'service':10} {'kind':14} " + " ".join(f"run{i + 1:<5}" for i in range(runs)) + "  median (s)")
for name, kind in [("rust", "Rust wasm"), ("worker", "JS wasm"), ("wsgi", "Python wasm"), ("native", "native Python")]:
    port = state["ports"][name]
    times, errors = [], 0
    for i in range(runs):
        cur, new = f"v{i:06d}", f"v{i + 1:06d}"
        text = open(f"{name}/README.md").read()
        t0 = time.monotonic()
        with open(f"{name}/README.md", "w") as f:
            f.write(text.replace(cur, new))
        while (body := get(port)) != new:
            if body != cur:
                errors += 1
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"{name}: no new version after 600 s")
            time.sleep(0.002)
        times.append(time.monotonic() - t0)
    extra = f"  ({errors} answers neither old nor new)" if errors else ""
    print(f"{name:10} {kind:14} " + " ".join(f"{t:<8.3f}" for t in times) + f"  {statistics.median(times):.3f}{extra}")
PY
grep -c "reloaded in" .pactown/w/logs/pactown.log | sed 's/^/reloads: /'
