#!/usr/bin/env bash
# The registry against the Python pactown's (0.1.173, PyPI), in one run:
#   publish latency: 30 publishes of distinct versions (10 KB READMEs), one after another;
#   pulls per second of a 1 MB artifact (GET …/readme) at 8 connections (wrk -t2 -c8 -d10s).
#   benches/registry.sh
source "$(dirname "$0")/common.sh"
need wrk wrk
build_pactown
install_reference
DIR="$WORK/registry"
rm -rf "$DIR" && mkdir -p "$DIR/ours" "$DIR/theirs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OURS=$(free_port); THEIRS=$(free_port)
"$PACTOWN" registry serve --port "$OURS" --storage "$DIR/ours" 2>/dev/null & OPID=$!
# The reference ignores --storage (its defect 12): run it in its own folder.
(cd "$DIR/theirs" && exec "$REF_VENV/bin/pactown-registry" --host 127.0.0.1 --port "$THEIRS" --storage "$DIR/theirs") >/dev/null 2>&1 & TPID=$!
trap 'kill $OPID $TPID 2>/dev/null' EXIT
for p in $OURS $THEIRS; do
  until curl -sf "http://127.0.0.1:$p/health" >/dev/null; do sleep 0.1; done
done
python3 - "$OURS" "$THEIRS" <<'PY'
import json, sys, time, urllib.request
def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/publish", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    return urllib.request.urlopen(req).read()
for who, port in (("pactown", sys.argv[1]), ("reference", sys.argv[2])):
    post(port, {"name": "big", "version": "1.0.0", "readme_content": "# big\n" + "x" * (1 << 20)})
    times = []
    for i in range(30):
        body = {"name": "lat", "version": f"1.0.{i}", "readme_content": f"# lat {i}\n" + "y" * 10_000}
        t = time.perf_counter(); post(port, body); times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"{who} publish_ms p50={times[15]:.2f} p90={times[27]:.2f} max={times[-1]:.2f}")
PY
for who in pactown:$OURS reference:$THEIRS; do
  name=${who%%:*}; port=${who##*:}
  rps=$(wrk_rps 8 "http://127.0.0.1:$port/v1/artifacts/default/big/1.0.0/readme")
  echo "$name pulls_per_s_1MB=$rps"
done
