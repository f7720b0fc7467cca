# Shared by the bench scripts: paths, the release binary, the Python reference installed into
# the bench's own folder (never the user's environment).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
WORK="$BENCH_DIR/.work"
mkdir -p "$WORK"
PACTOWN="$ROOT/target/release/pactown"

build_pactown() {
  (cd "$ROOT" && cargo build --release --quiet)
}

# The Python pactown 0.1.173 from PyPI, in benches/.work/reference (installed once).
REF_VENV="$WORK/reference"
REF="$REF_VENV/bin/pactown"
install_reference() {
  if [ ! -x "$REF" ]; then
    echo "installing the reference (pactown 0.1.173 from PyPI) into $REF_VENV ..." >&2
    python3 -m venv "$REF_VENV"
    "$REF_VENV/bin/pip" install --quiet --disable-pip-version-check "pactown==0.1.173"
  fi
}

# Requests per second of `wrk -t2 -c CONNS -d10s URL`.
wrk_rps() {
  wrk -t2 -c"$1" -d10s "$2" | awk '/Requests\/sec/ {print $2}'
}

need() {
  command -v "$1" >/dev/null || { echo "this bench needs \`$1\` (apt-get install $2)" >&2; exit 1; }
}

# The reference's own examples (its PyPI sdist, unchanged), in benches/.work (fetched once).
REF_EXAMPLES="$WORK/reference-sdist/pactown-0.1.173/examples"
fetch_reference_examples() {
  if [ ! -d "$REF_EXAMPLES" ]; then
    echo "fetching the reference's examples (pactown 0.1.173 sdist from PyPI) ..." >&2
    mkdir -p "$WORK/reference-sdist"
    python3 -m pip download --quiet --no-deps --no-binary :all: "pactown==0.1.173" -d "$WORK/reference-sdist"
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
      "$WORK/reference-sdist/pactown-0.1.173.tar.gz" "$WORK/reference-sdist"
  fi
}
