#!/usr/bin/env bash
# Routing benchmarks, in one run:
#   1. what a wasm → wasm call by name adds over calling the handler directly (in-process, p50);
#   2. throughput through a service's stable address vs straight to its native replica (wrk),
#      beside nginx proxying to the same replica (the peer), on a Node.js hello server (so the
#      proxies' own cost is not hidden behind a slow backend) and on FastAPI (a real service).
# Targets (issue 5): added latency ≤ 50 µs at p50; the stable address loses ≤ 15%.
source "$(dirname "$0")/common.sh"
need wrk wrk
build_pactown
export PACTOWN_CACHE_DIR="$WORK/routing-cache"
echo "== 1. call by name, in-process"
(cd "$ROOT" && cargo bench --quiet --bench routing -- 20000)

echo "== 2. stable address vs replica vs nginx, wrk -t2 -c16 -d10s"
need nginx nginx-light
ECO="$WORK/routing-eco"
rm -rf "$ECO" && mkdir -p "$ECO/node" "$ECO/fastapi"
cat > "$ECO/node/README.md" <<'MD'
# node hello

```javascript markpact:file path=server.js
require("http").createServer((req, res) => res.end("hello")).listen(+process.env.PORT, "127.0.0.1");
```

```bash markpact:run
exec node server.js
```
MD
cp "$ROOT/examples/quickstart/services/api/README.md" "$ECO/fastapi/README.md"
printf 'base_port: 0\nservices:\n  node: {}\n  fastapi: {health_check: /health}\n' > "$ECO/r.pactown.yaml"
(cd "$ECO" && "$PACTOWN" up -d r.pactown.yaml --listen 127.0.0.1:0 >/dev/null)
STATUS=$(cd "$ECO" && "$PACTOWN" status r.pactown.yaml --json)
field() { echo "$STATUS" | python3 -c "import json,sys; s={x['name']: x for x in json.load(sys.stdin)['services']}; print($1)"; }
: > "$WORK/routing-rps.txt"
for svc in node fastapi; do
  STABLE=$(field "s['$svc']['port']")
  REPLICA=$(field "s['$svc']['replicas'][0]['port']")
  NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/nginx-$svc"
  cat > "$WORK/nginx-$svc/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx-$svc/nginx.pid;
error_log $WORK/nginx-$svc/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  upstream replica { server 127.0.0.1:$REPLICA; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { proxy_pass http://replica; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
  nginx -c "$WORK/nginx-$svc/nginx.conf"
  path=$([ $svc = fastapi ] && echo /api/hello || echo /)
  for round in 1 2; do
    echo "$svc stable $(wrk_rps 16 "http://127.0.0.1:$STABLE$path")" | tee -a "$WORK/routing-rps.txt"
    echo "$svc nginx $(wrk_rps 16 "http://127.0.0.1:$NGINX_PORT$path")" | tee -a "$WORK/routing-rps.txt"
    echo "$svc replica $(wrk_rps 16 "http://127.0.0.1:$REPLICA$path")" | tee -a "$WORK/routing-rps.txt"
  done
  kill "$(cat "$WORK/nginx-$svc/nginx.pid")"
done
(cd "$ECO" && "$PACTOWN" down r.pactown.yaml >/dev/null)
python3 - "$WORK/routing-rps.txt" <<'PY'
import statistics, sys
r = {}
for line in open(sys.argv[1]):
    svc, k, v = line.split(); r.setdefault((svc, k), []).append(float(v))
for svc in ("node", "fastapi"):
    a, n, b = (statistics.mean(r[(svc, k)]) for k in ("stable", "nginx", "replica"))
    print(f"{svc:8} replica {b:7.0f} req/s | pactown stable address {a:7.0f} ({a/b:.0%} kept) | nginx {n:7.0f} ({n/b:.0%} kept) | pactown/nginx {a/n:.2f}")
PY
