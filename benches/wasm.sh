#!/usr/bin/env bash
# WASM benchmarks, in one run, on the same hello component (examples/hello-rust):
#   1. per-request instantiate + handle, in-process (criterion: cargo bench --bench hot_paths -- instantiate);
#   2. throughput through pactown vs `wasmtime serve` 48.0.8 (installed into benches/.work), wrk;
#   3. memory of the idle service, pactown vs wasmtime serve;
#   4. a warm `pactown up` of the Rust four-service platform, process start → all ready.
#
#   benches/wasm.sh
# Targets (issue 4): throughput ≥ 1.0× wasmtime serve; warm up of the Rust platform < 150 ms.
source "$(dirname "$0")/common.sh"
need wrk wrk
build_pactown
export PACTOWN_CACHE_DIR="$WORK/wasm-cache"
WASMTIME="$WORK/wasmtime-48.0.8/bin/wasmtime"
if [ ! -x "$WASMTIME" ]; then
  echo "installing wasmtime-cli 48.0.8 into $WORK (once, several minutes) ..." >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root "$WORK/wasmtime-48.0.8" >&2
fi
echo "== 1. per-request instantiate + handle (in-process)"
(cd "$ROOT" && cargo bench --quiet --bench hot_paths -- instantiate)

HELLO="$WORK/hello"
rm -rf "$HELLO" && cp -r "$ROOT/examples/hello-rust" "$HELLO" && rm -rf "$HELLO/.pactown"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 500); do curl -sf "http://127.0.0.1:$1/" >/dev/null && return 0; sleep 0.02; done; return 1; }
P1=$(free_port); P2=$(free_port)
ARTIFACT=$("$PACTOWN" build "$HELLO/README.md" --json | python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin).values()))["wasm"])')
"$PACTOWN" run "$HELLO/README.md" --port "$P1" --listen 127.0.0.1:0 >/dev/null 2>"$WORK/hello-pactown.log" &
PID1=$!
wait_port "$P1"
"$WASMTIME" compile "$ARTIFACT" -o "$WORK/hello.cwasm"
"$WASMTIME" serve --addr "127.0.0.1:$P2" -Scli --allow-precompiled "$WORK/hello.cwasm" >/dev/null 2>"$WORK/hello-wasmtime.log" &
PID2=$!
wait_port "$P2"
echo "== 2. throughput, wrk -t2 -c8 -d10s, alternating, two rounds each"
rps() { wrk_rps 8 "http://127.0.0.1:$1/?name=bench"; }
: > "$WORK/rps.txt"
for round in 1 2; do
  echo "pactown $(rps "$P1")" | tee -a "$WORK/rps.txt"
  echo "wasmtime-serve $(rps "$P2")" | tee -a "$WORK/rps.txt"
done
echo "== 3. memory after the load (PSS / RSS, KiB)"
for who in pactown:$PID1 wasmtime-serve:$PID2; do
  pid=${who#*:}
  echo "${who%%:*} $(awk '/^Pss:/ {p=$2} /^Rss:/ {r=$2} END {print p, r}' /proc/$pid/smaps_rollup)"
done | tee "$WORK/mem.txt"
kill -INT "$PID1" "$PID2"; wait "$PID1" "$PID2" 2>/dev/null || true
python3 - "$WORK/rps.txt" "$WORK/mem.txt" <<'PY'
import sys, statistics
r = {}
for line in open(sys.argv[1]):
    k, v = line.split(); r.setdefault(k, []).append(float(v))
a, b = statistics.mean(r["pactown"]), statistics.mean(r["wasmtime-serve"])
print(f"throughput: pactown {a:.0f} req/s, wasmtime serve {b:.0f} req/s, ratio {a/b:.2f}x")
m = dict((l.split()[0], l.split()[1:]) for l in open(sys.argv[2]))
p, w = int(m["pactown"][0]), int(m["wasmtime-serve"][0])
print(f"memory (PSS): pactown {p/1024:.1f} MiB, wasmtime serve {w/1024:.1f} MiB, ratio {p/w:.2f}x")
PY

echo "== 4. warm up of the Rust platform, process start → every service ready"
PLAT="$WORK/platform-rust"
rm -rf "$PLAT" && cp -r "$ROOT/examples/platform-rust" "$PLAT" && rm -rf "$PLAT/.pactown"
# once to fill the caches (builds, precompiles)
python3 "$BENCH_DIR/measure.py" --cmd "$PACTOWN up platform.pactown.yaml" --cwd "$PLAT" --ports 8200,8201,8202,8203 --settle 0 --timeout 900 >/dev/null
for i in 1 2 3 4 5; do
  python3 "$BENCH_DIR/measure.py" --cmd "$PACTOWN up platform.pactown.yaml" --cwd "$PLAT" --ports 8200,8201,8202,8203 --settle 1
done | tee "$WORK/platform-rust.jsonl"
python3 - "$WORK/platform-rust.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"warm up of the Rust platform: median {statistics.median(r['ready_s'] for r in rows)*1000:.0f} ms "
      f"(runs: {', '.join(str(round(r['ready_s']*1000)) for r in rows)} ms); "
      f"pactown memory with 4 wasm services: {statistics.median(r['orchestrator_pss_kb'] for r in rows)/1024:.1f} MiB PSS")
PY
