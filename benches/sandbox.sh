#!/usr/bin/env bash
# Start-to-ready of a FastAPI service in one run, alternating (20 runs each by default, warm
# caches), in three modes:
#   full     the hardened sandbox: PID/mount/IPC namespaces, a dedicated uid, no capabilities,
#            Landlock with scopes, seccomp with user notifications, cgroups
#   no-ns    the same without the namespaces (PACTOWN_DISABLE_LAYERS=namespaces)
#   off      `sandbox: off`
# Targets: full ≤ 5% slower than off (issue 14), and than no-ns (issue 13).
source "$(dirname "$0")/common.sh"
build_pactown
export PACTOWN_CACHE_DIR="$WORK/sandbox-cache"
MODES="full no-ns off"
port_of() { case $1 in full) echo 8411;; no-ns) echo 8413;; off) echo 8412;; esac; }
for mode in $MODES; do
  d="$WORK/sandbox-$mode"
  rm -rf "$d" && mkdir -p "$d"
  cp -r "$ROOT/examples/quickstart/services/api" "$d/api"
  printf 'base_port: 0\nservices:\n  api:\n    port: %s\n    health_check: /health\n    sandbox: %s\n' \
    "$(port_of $mode)" "$([ $mode = off ] && echo off || echo on)" > "$d/s.pactown.yaml"
done
run() {  # mode → one measurement (JSON)
  local mode=$1
  if [ "$mode" = no-ns ]; then export PACTOWN_DISABLE_LAYERS=namespaces; else unset PACTOWN_DISABLE_LAYERS; fi
  python3 "$BENCH_DIR/measure.py" --cmd "$PACTOWN up s.pactown.yaml --listen 127.0.0.1:0" \
    --cwd "$WORK/sandbox-$mode" --ports "$(port_of $mode)" --settle 0 "${@:2}"
}
# warm the Python environment once
run full --timeout 600 >/dev/null
: > "$WORK/sandbox.jsonl"
for i in $(seq 1 ${RUNS:-20}); do
  for mode in $MODES; do
    run $mode | sed "s/^/{\"mode\": \"$mode\", \"r\": /; s/$/}/" >> "$WORK/sandbox.jsonl"
  done
done
python3 - "$WORK/sandbox.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {m: statistics.median(r["r"]["ready_s"] for r in rows if r["mode"] == m) for m in ("full", "no-ns", "off")}
n = len(rows) // 3
print(f"FastAPI start-to-ready, medians of {n} alternating runs:")
for m in ("full", "no-ns", "off"):
    print(f"  {m:6} {med[m]*1000:6.0f} ms")
print(f"  hardened sandbox / off:            {med['full']/med['off']:.3f}  (target <= 1.05)")
print(f"  with namespaces / without:         {med['full']/med['no-ns']:.3f}  (target <= 1.05)")
PY
