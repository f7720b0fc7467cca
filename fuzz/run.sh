#!/usr/bin/env bash
# Fuzz the markpact parser and the ecosystem loader, each for SECONDS (default 660).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable compiler provide them.
#   cargo install cargo-fuzz && fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-660}"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
# Run the built binaries directly: a source change while fuzzing must not trigger a rebuild.
bin=target/x86_64-unknown-linux-gnu/release
for target in ${TARGETS:-markpact ecosystem}; do
  mkdir -p "corpus/$target" "artifacts/$target"
  "$bin/$target" -artifact_prefix="artifacts/$target/" "corpus/$target" "seeds/$target" \
    -max_total_time="$secs" -max_len=16384 -dict=dict.txt -print_final_stats=1 2>&1 | tee "run-$target.log" | tail -25
done
