#!/usr/bin/env bash
# `up` of the four-service platform (examples/platform: database → api → web → gateway, FastAPI)
# with the Python reference (pactown 0.1.173, installed into benches/.work) and with ours, in the
# same run, with cold and warm caches. Reports time from process start to every service
# answering its health check, the orchestrator's own memory, and the time to stop.
#
#   benches/up.sh [WARM_RUNS=3]
# Targets (issue 3): warm ≤ 1/3 of the reference's time, cold ≤ 1/2, orchestrator memory ≤ 1/10.
source "$(dirname "$0")/common.sh"
RUNS="${1:-3}"
build_pactown
install_reference
PORTS=8100,8101,8102,8103
for who in ours ref; do
  rm -rf "$WORK/up-$who"
  cp -r "$ROOT/examples/platform" "$WORK/up-$who"
  rm -rf "$WORK/up-$who/.pactown" "$WORK/up-$who/.pactown-sandboxes"
done
run() { # who label [env...]
  local who=$1 label=$2; shift 2
  local cmd
  if [ "$who" = ours ]; then cmd="$PACTOWN up platform.pactown.yaml"; else cmd="$REF up platform.pactown.yaml"; fi
  local envs=(--env PIP_NO_CACHE_DIR=1)
  for e in "$@"; do envs+=(--env "$e"); done
  python3 "$BENCH_DIR/measure.py" --cmd "$cmd" --cwd "$WORK/up-$who" --ports $PORTS "${envs[@]}" \
    --log "$WORK/up-$who-$label.log" --timeout 600 | tee -a "$WORK/up-results.jsonl" | sed "s/^/$who $label: /"
}
: > "$WORK/up-results.jsonl"
OURS_CACHE="$WORK/up-ours-cache"
# cold: empty caches (ours: its cache dir, uv included; the reference: its sandbox root, which
# holds its venv cache)
rm -rf "$OURS_CACHE" "$WORK/up-ref/.pactown-sandboxes"
run ours cold PACTOWN_CACHE_DIR="$OURS_CACHE"
run ref cold
for i in $(seq 1 "$RUNS"); do
  run ours "warm$i" PACTOWN_CACHE_DIR="$OURS_CACHE"
  run ref "warm$i"
done
python3 - "$WORK/up-results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ours, ref = rows[0::2], rows[1::2]
def med(rs, k): return statistics.median(r[k] for r in rs)
print("\n                     ours        reference   ours/reference")
for label, o, r in [("cold ready (s)", ours[:1], ref[:1]), ("warm ready (s)", ours[1:], ref[1:])]:
    a, b = med(o, "ready_s"), med(r, "ready_s")
    print(f"{label:18} {a:10.3f}  {b:10.3f}      {a/b:6.3f}")
a, b = med(ours[1:], "orchestrator_pss_kb") / 1024, med(ref[1:], "orchestrator_pss_kb") / 1024
print(f"{'orchestrator MiB':18} {a:10.1f}  {b:10.1f}      {a/b:6.3f}   (PSS; ours = up + shims)")
a, b = med(ours[1:], "services_pss_kb") / 1024, med(ref[1:], "services_pss_kb") / 1024
print(f"{'services MiB':18} {a:10.1f}  {b:10.1f}      {a/b:6.3f}")
a, b = med(ours[1:], "stop_s"), med(ref[1:], "stop_s")
print(f"{'stop (s)':18} {a:10.3f}  {b:10.3f}      {a/b:6.3f}")
PY
