#!/usr/bin/env bash
# `pactown deploy --build` of examples/platform-rust (all wasm) to the gateway answering in
# podman through calls by name: the image's size, and the time from the command to the answer.
#   benches/deploy.sh        (needs podman, podman-compose and runc; see tests/e2e/deploy.rs)
source "$(dirname "$0")/common.sh"
need podman podman
need podman-compose podman-compose
build_pactown
export PACTOWN_CACHE_DIR="$WORK/deploy-cache"
OUT="$WORK/deploy"
rm -rf "$OUT"
cd "$ROOT/examples/platform-rust"
"$PACTOWN" build platform.pactown.yaml >/dev/null 2>&1   # components built once, not timed
start=$(date +%s.%N)
"$PACTOWN" deploy platform.pactown.yaml --target compose --build -o "$OUT" >/dev/null 2>&1
built=$(date +%s.%N)
podman-compose -f "$OUT/compose.yaml" up -d >/dev/null 2>&1
until curl -sf localhost:8203/ >/dev/null; do sleep 0.05; done
answered=$(date +%s.%N)
size=$(podman image inspect localhost/platform-rust:0.1.0 --format '{{.Size}}')
podman-compose -f "$OUT/compose.yaml" down >/dev/null 2>&1
python3 -c "import sys; s,b,a,z=map(float,sys.argv[1:]); print(f'image {z/1e6:.1f} MB; deploy --build {b-s:.1f} s; compose up to the gateway answering {a-b:.1f} s; in all {a-s:.1f} s')" "$start" "$built" "$answered" "$size"
