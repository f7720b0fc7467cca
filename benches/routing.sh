#!/usr/bin/env bash
# Routing benchmarks, in one run:
#   1. what a wasm → wasm call by name adds over calling the handler directly (in-process, p50);
#   2. throughput through a service's stable address vs straight to its native replica (wrk),
#      on a Node.js hello server, so the router's own cost is not hidden behind a slow backend.
# Targets (issue 5): added latency ≤ 50 µs at p50; the stable address loses ≤ 15%.
source "$(dirname "$0")/common.sh"
need wrk wrk
build_pactown
export PACTOWN_CACHE_DIR="$WORK/routing-cache"
echo "== 1. call by name, in-process"
(cd "$ROOT" && cargo bench --quiet --bench routing -- 20000)

echo "== 2. stable address vs replica, wrk -t2 -c16 -d10s"
ECO="$WORK/routing-eco"
rm -rf "$ECO" && mkdir -p "$ECO/node"
cat > "$ECO/node/README.md" <<'MD'
# node hello

```javascript markpact:file path=server.js
require("http").createServer((req, res) => res.end("hello")).listen(+process.env.PORT, "127.0.0.1");
```

```bash markpact:run
exec node server.js
```
MD
printf 'base_port: 0\nservices:\n  node: {}\n' > "$ECO/r.pactown.yaml"
(cd "$ECO" && "$PACTOWN" up -d r.pactown.yaml --listen 127.0.0.1:0 >/dev/null)
STATUS=$(cd "$ECO" && "$PACTOWN" status r.pactown.yaml --json)
STABLE=$(echo "$STATUS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"][0]["port"])')
REPLICA=$(echo "$STATUS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"][0]["replicas"][0]["port"])')
rps() { wrk_rps 16 "http://127.0.0.1:$1/"; }
: > "$WORK/routing-rps.txt"
for round in 1 2; do
  echo "stable $(rps "$STABLE")" | tee -a "$WORK/routing-rps.txt"
  echo "replica $(rps "$REPLICA")" | tee -a "$WORK/routing-rps.txt"
done
(cd "$ECO" && "$PACTOWN" down r.pactown.yaml >/dev/null)
python3 - "$WORK/routing-rps.txt" <<'PY'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    k, v = line.split(); r.setdefault(k, []).append(float(v))
a, b = statistics.mean(r["stable"]), statistics.mean(r["replica"])
print(f"stable address {a:.0f} req/s, replica directly {b:.0f} req/s: the stable address keeps {a/b:.0%} ({1-a/b:.0%} lost)")
PY
