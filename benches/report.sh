#!/usr/bin/env bash
# Regenerate docs/benchmarks.md: every figure in it comes from this one run, on this machine.
#   benches/report.sh
# It runs `pactown bench compare` on the three hello examples (a JavaScript Worker, a Python
# WSGI app, Rust), `pactown bench coldstart --build` on each (their builds, cold and warm),
# `pactown bench coldstart` on examples/polyglot, and `pactown bench density` with 1,000
# services, each peer installed into the bench's own cache on first use.
source "$(dirname "$0")/common.sh"
build_pactown
export PACTOWN_CACHE_DIR="$WORK/report-cache"
OUT="$WORK/report"
rm -rf "$OUT" && mkdir -p "$OUT"
cd "$ROOT"
for ex in hello-worker hello-python hello-rust; do
  echo "== bench compare examples/$ex" >&2
  "$PACTOWN" bench compare "examples/$ex/README.md" -o "$OUT"
done
for ex in hello-worker hello-python hello-rust; do
  echo "== bench coldstart --build examples/$ex" >&2
  "$PACTOWN" bench coldstart "examples/$ex/README.md" --build --json --starts 1 --requests 200 \
    --duration 1s --no-per-service > "$OUT/build-$ex.json"
done
echo "== bench coldstart examples/polyglot" >&2
"$PACTOWN" bench coldstart examples/polyglot/shop.pactown.yaml --json > "$OUT/coldstart-polyglot.json"
echo "== bench density" >&2
"$PACTOWN" bench density --services 1000 --json > "$OUT/density.json"
cp "$OUT"/compare-*.svg docs/ 2>/dev/null || true
python3 "$BENCH_DIR/report.py" "$OUT" > docs/benchmarks.md
echo "wrote docs/benchmarks.md (and its charts in docs/)" >&2
