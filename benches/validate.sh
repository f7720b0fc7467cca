#!/usr/bin/env bash
# `pactown validate` on a generated 200-service ecosystem (target: under 50 ms), beside the
# Python reference's `pactown validate` on the same files, measured in the same run.
#
#   benches/validate.sh [--no-reference]
source "$(dirname "$0")/common.sh"
need hyperfine hyperfine
build_pactown
N=200
ECO="$WORK/validate-$N"
rm -rf "$ECO" && mkdir -p "$ECO"
{
  echo "name: big"
  echo "base_port: 20000"
  echo "services:"
  for i in $(seq 1 $N); do
    mkdir -p "$ECO/services/s$i"
    cat > "$ECO/services/s$i/README.md" <<MD
# s$i

\`\`\`python markpact:file path=app/main.py
import os
from fastapi import FastAPI
app = FastAPI()

@app.get("/health")
def health():
    return {"status": "ok", "dep": os.environ.get("DEP_URL")}
\`\`\`

\`\`\`markpact:deps python
fastapi
uvicorn
\`\`\`

\`\`\`markpact:run python
uvicorn app.main:app --port \${MARKPACT_PORT:-8000}
\`\`\`

\`\`\`markpact:test http
GET /health EXPECT 200
\`\`\`
MD
    echo "  s$i:"
    echo "    readme: services/s$i/README.md"
    echo "    health_check: /health"
    echo "    env: {LEVEL: info, INDEX: \"$i\"}"
    if [ "$i" -gt 1 ]; then
      echo "    depends_on:"
      echo "      - s$(( (i - 1) ))"
      [ "$i" -gt 10 ] && echo "      - {name: s$(( i / 2 )), env_var: DEP_URL}"
    fi
  done
} > "$ECO/big.pactown.yaml"
"$PACTOWN" validate "$ECO/big.pactown.yaml"
cmds=("$PACTOWN validate $ECO/big.pactown.yaml")
if [ "${1:-}" != "--no-reference" ]; then
  install_reference
  cmds+=("$REF validate $ECO/big.pactown.yaml")
fi
hyperfine --warmup 3 --min-runs 10 --export-json "$WORK/validate.json" "${cmds[@]}"
