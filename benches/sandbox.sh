#!/usr/bin/env bash
# Start-to-ready of a FastAPI service with and without the native sandbox, in one run
# (alternating, 20 runs each by default, warm caches). Target (issue 6): the sandbox costs ≤ 5%.
source "$(dirname "$0")/common.sh"
build_pactown
export PACTOWN_CACHE_DIR="$WORK/sandbox-cache"
for mode in on off; do
  d="$WORK/sandbox-$mode"
  rm -rf "$d" && mkdir -p "$d"
  cp -r "$ROOT/examples/quickstart/services/api" "$d/api"
  printf 'base_port: 0\nservices:\n  api:\n    port: %s\n    health_check: /health\n    sandbox: %s\n' "$([ $mode = on ] && echo 8411 || echo 8412)" "$mode" > "$d/s.pactown.yaml"
done
# warm the Python environment once
python3 "$BENCH_DIR/measure.py" --cmd "$PACTOWN up s.pactown.yaml --listen 127.0.0.1:0" --cwd "$WORK/sandbox-on" --ports 8411 --settle 0 --timeout 600 >/dev/null
: > "$WORK/sandbox.jsonl"
for i in $(seq 1 ${RUNS:-20}); do
  for mode in on off; do
    port=$([ $mode = on ] && echo 8411 || echo 8412)
    python3 "$BENCH_DIR/measure.py" --cmd "$PACTOWN up s.pactown.yaml --listen 127.0.0.1:0" --cwd "$WORK/sandbox-$mode" --ports $port --settle 0 \
      | sed "s/^/{\"mode\": \"$mode\", \"r\": /; s/$/}/" >> "$WORK/sandbox.jsonl"
  done
done
python3 - "$WORK/sandbox.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {m: statistics.median(r["r"]["ready_s"] for r in rows if r["mode"] == m) for m in ("on", "off")}
print(f"FastAPI start-to-ready: sandbox on {med['on']*1000:.0f} ms, off {med['off']*1000:.0f} ms (medians of {len(rows)//2}): ratio {med['on']/med['off']:.3f}")
PY
