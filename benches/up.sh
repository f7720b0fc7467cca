#!/usr/bin/env bash
# `up` of an example with the Python reference (pactown 0.1.173, installed into benches/.work)
# and with ours, in the same run, with cold and warm caches. Reports time from process start to
# every service answering its health check, the orchestrator's own memory, and the time to stop.
#
#   benches/up.sh [platform|microservices] [WARM_RUNS=3]
#
# platform:      our examples/platform (database → api → web → gateway, FastAPI)
# microservices: the reference's own examples/microservices (Python ML + Node API + Go gateway),
#                from its PyPI sdist, unchanged
# Targets: platform (issue 3) warm ≤ 1/3 of the reference's time, cold ≤ 1/2, orchestrator
# memory ≤ 1/10; microservices (issue 11): both come up, figures as ratios.
source "$(dirname "$0")/common.sh"
REF_TIMEOUT="${REF_TIMEOUT:-}"
EXAMPLE="${1:-platform}"
RUNS="${2:-3}"
build_pactown
install_reference
case "$EXAMPLE" in
  platform)
    SRC="$ROOT/examples/platform"; FILE=platform.pactown.yaml; PORTS=8100,8101,8102,8103
    REF_TIMEOUT="${REF_TIMEOUT:-600}" ;;
  microservices)
    fetch_reference_examples
    SRC="$REF_EXAMPLES/microservices"; FILE=saas.pactown.yaml; PORTS=8010,3000,8080
    REF_TIMEOUT="${REF_TIMEOUT:-180}" ;;
  *) echo "usage: benches/up.sh [platform|microservices] [WARM_RUNS]" >&2; exit 2 ;;
esac
for who in ours ref; do
  rm -rf "$WORK/up-$who"
  cp -r "$SRC" "$WORK/up-$who"
  rm -rf "$WORK/up-$who/.pactown" "$WORK/up-$who/.pactown-sandboxes"
done
# The reference is given REF_TIMEOUT seconds (default 600; 180 for microservices, whose Go
# gateway it cannot start on a machine without Go); what it left running afterwards (its
# services outlive it when it is killed) is counted and killed, so it never holds the next run's
# ports.
orphans() { # dir → kill and count processes whose working directory is below it
  local n=0 p c
  for p in /proc/[0-9]*; do
    c=$(readlink "$p/cwd" 2>/dev/null) || continue
    case "$c" in "$1"*) kill -9 "${p#/proc/}" 2>/dev/null && n=$((n + 1)) ;; esac
  done
  echo $n
}
run() { # who label [env...]   (who: ours, waves (ours with --waves), ref)
  local who=$1 label=$2; shift 2
  local cmd timeout=600 dir=$who results="$WORK/up-results.jsonl"
  case "$who" in
    ours) cmd="$PACTOWN up $FILE" ;;
    waves) cmd="$PACTOWN up --waves $FILE"; dir=ours; results="$WORK/up-waves.jsonl" ;;
    *) cmd="$REF up $FILE"; timeout=$REF_TIMEOUT ;;
  esac
  local envs=(--env PIP_NO_CACHE_DIR=1)
  for e in "$@"; do envs+=(--env "$e"); done
  python3 "$BENCH_DIR/measure.py" --cmd "$cmd" --cwd "$WORK/up-$dir" --ports $PORTS "${envs[@]}" \
    --log "$WORK/up-$who-$label.log" --timeout "$timeout" | tee -a "$results" | sed "s/^/$who $label: /" || true
  local left
  left=$(orphans "$WORK/up-$dir")
  [ "$left" = 0 ] || echo "$who $label: left $left processes running after it was stopped (killed now)"
}
: > "$WORK/up-results.jsonl"
: > "$WORK/up-waves.jsonl"
OURS_CACHE="$WORK/up-ours-cache"
# cold: empty caches (ours: its cache dir, uv and the toolchains included; the reference: its
# sandbox root, which holds its venv cache)
rm -rf "$OURS_CACHE" "$WORK/up-ref/.pactown-sandboxes"
run ours cold PACTOWN_CACHE_DIR="$OURS_CACHE"
run ref cold
for i in $(seq 1 "$RUNS"); do
  run ours "warm$i" PACTOWN_CACHE_DIR="$OURS_CACHE"
  run waves "warm$i" PACTOWN_CACHE_DIR="$OURS_CACHE"
  run ref "warm$i"
done
python3 - "$WORK/up-results.jsonl" "$WORK/up-ref-cold.log" "$WORK/up-waves.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ours, ref = rows[0::2], rows[1::2]
waves = [json.loads(l) for l in open(sys.argv[3])]
def med(rs, k):
    ok = [r[k] for r in rs if k in r]
    return statistics.median(ok) if ok else None
def show(v, unit=1):
    return "failed" if v is None else f"{v / unit:10.3f}"
def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:6.3f}"
print("\n                     ours        reference   ours/reference")
for label, o, r in [("cold ready (s)", ours[:1], ref[:1]), ("warm ready (s)", ours[1:], ref[1:]), ("warm, --waves (s)", waves, ref[1:])]:
    a, b = med(o, "ready_s"), med(r, "ready_s")
    print(f"{label:18} {show(a):>10}  {show(b):>10}      {ratio(a, b)}")
for label, key, unit in [("orchestrator MiB", "orchestrator_pss_kb", 1024), ("services MiB", "services_pss_kb", 1024), ("stop (s)", "stop_s", 1)]:
    a, b = med(ours[1:], key), med(ref[1:], key)
    a, b = (None if a is None else a / unit), (None if b is None else b / unit)
    print(f"{label:18} {show(a):>10}  {show(b):>10}      {ratio(a, b)}")
failed = [r for r in ref if "error" in r]
if failed:
    print(f"\nthe reference failed {len(failed)} of {len(ref)} runs: {failed[0]}")
    # Where both brought a service up, compare the time to it.
    print("per service, time to healthy (median over runs where it came up):")
    for label, o, r in [("cold", ours[:1], ref[:1]), ("warm", ours[1:], ref[1:])]:
        ports = sorted({p for x in o + r for p in x.get("came_up_s", {})}, key=int)
        for p in ports:
            a = med([{"t": x["came_up_s"][p]} for x in o if p in x.get("came_up_s", {})], "t")
            b = med([{"t": x["came_up_s"][p]} for x in r if p in x.get("came_up_s", {})], "t")
            print(f"  {label} :{p:5} ours {show(a)}  reference {show(b)}  ours/reference {ratio(a, b)}")
    try:
        tail = open(sys.argv[2], errors="replace").read().strip().splitlines()[-12:]
        print("its cold run's last lines:\n  " + "\n  ".join(tail))
    except OSError:
        pass
PY
