//! JavaScript services → WASI components (componentize-js).
//!
//! A JavaScript service whose files hold a Worker (`export default { fetch(request, env, ctx) }`,
//! as Cloudflare Workers are written, or `addEventListener("fetch", …)`) and that has no run
//! block becomes a component exporting `wasi:http/incoming-handler`, a fresh instance per
//! request. pactown's Worker host (`guest/pactown_worker.js`, carried in the binary) imports the
//! module unchanged and gives `fetch` an `env` of the service's variables and a binding per
//! dependency (`env.API.fetch(…)`, by name through the host). componentize-js evaluates the
//! module while it builds (a snapshot), so an instance starts ready; a syntax or evaluation error
//! is reported at the README line.
//!
//! componentize-js 0.23's engine exports `wasi:http/incoming-handler@0.2.10`, so the WIT it is
//! given is the engine's wasi:http tree (0.2.12, see [`WASI_HTTP_WIT`]) labelled 0.2.10: the two
//! differ only in items gated `@since(0.2.11)` or later, and wasmtime serves 0.2.10 imports with
//! its 0.2.x implementation. The world adds `wasi:cli/environment`, from which `env` is read at
//! run time (never baked into the cached component).

use std::path::Path;

use anyhow::Context;

use super::cache::{Cache, digest};
use super::step::Step;
use super::toolchain::{Artifact, BuildContext, BuildError, Component, Toolchain, readme_span};
use super::tools::{COMPONENTIZE_JS_VERSION, WASI_HTTP_WIT};
use crate::spec::ecosystem::env_prefix;
use crate::spec::language::{Language, language, runtime_kind, worker_entry};
use crate::spec::service::FileBlock;
use crate::spec::{Diagnostic, Diagnostics, RuntimeKind, Service};

/// pactown's Worker host, carried in the binary.
const HOST: &str = include_str!("guest/pactown_worker.js");
/// The WASI version componentize-js's engine is built against.
const ENGINE_WASI: &str = "0.2.10";
/// The world a Worker component is built for: wasi:http's proxy, and the environment.
const WORLD: &str = "package pactown:worker;\n\nworld worker {\n  include wasi:http/proxy@0.2.10;\n  import wasi:cli/environment@0.2.10;\n}\n";

/// The JavaScript component toolchain.
pub struct JsComponent;

impl Toolchain for JsComponent {
    fn name(&self) -> &'static str {
        "js-wasm"
    }

    fn detect(&self, service: &Service) -> bool {
        language(service) == Language::Node && runtime_kind(service).0 == RuntimeKind::WasmHttp
    }

    fn reason(&self, service: &Service) -> String {
        worker_entry(service).map_or("a Worker module".into(), |f| {
            format!("the Worker in `{}` ({})", f.path.as_str(), f.loc)
        })
    }

    fn makes_component(&self) -> bool {
        true
    }

    fn cache_key(&self, service: &Service) -> String {
        Sources::of(service).key
    }

    fn build(&self, service: &Service, ctx: &BuildContext<'_>) -> Result<Artifact, BuildError> {
        build(service, ctx.cache, ctx.say).map(Artifact::Component)
    }
}

/// What a Worker component is built from, and the key they give.
struct Sources<'a> {
    host: String,
    files: Vec<&'a FileBlock>,
    key: String,
}

impl<'a> Sources<'a> {
    fn of(service: &'a Service) -> Self {
        let entry = worker_entry(service).map_or("index.js", |f| f.path.as_str());
        let bindings: Vec<[String; 2]> = service
            .depends_on
            .iter()
            .map(|d| [env_prefix(&d.name), d.name.clone()])
            .collect();
        let host = HOST.replace("__PACTOWN_ENTRY__", entry).replace(
            "__PACTOWN_BINDINGS__",
            &serde_json::to_string(&bindings).expect("strings"),
        );
        let mut files: Vec<&FileBlock> = service.content.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let key = digest(
            [
                b"js-wasm-v1".as_slice(),
                COMPONENTIZE_JS_VERSION.as_bytes(),
                WASI_HTTP_WIT.version.as_bytes(),
                WORLD.as_bytes(),
                host.as_bytes(),
            ]
            .into_iter()
            .chain(
                files
                    .iter()
                    .flat_map(|f| [f.path.as_str().as_bytes(), f.content.as_bytes()]),
            ),
        );
        Self { host, files, key }
    }
}

/// Build (or find) the component of a JavaScript Worker. Blocking.
pub fn build(
    service: &Service,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> Result<Component, BuildError> {
    let src = Sources::of(service);
    let wasm = cache.path(&["wasm", "artifacts", &format!("{}.wasm", &src.key[..32])]);
    if wasm.is_file() {
        return Ok(Component {
            wasm,
            key: src.key,
            built: false,
        });
    }
    let cli = super::tools::componentize_js(cache, say)?;
    let node = super::tools::node(cache, say)?;
    let wit = super::tools::wasi_http_wit(cache)?;
    let work_root = cache.path(&["js-wasm", "work"]);
    std::fs::create_dir_all(&work_root)?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", &src.key[..12]))
        .tempdir_in(&work_root)?;
    let (code, engine_wit) = (work.path().join("src"), work.path().join("wit"));
    write_sources(&code, &src)?;
    write_engine_wit(&wit, &engine_wit)?;
    say(&format!(
        "building `{}` (JavaScript → wasi:http component)",
        service.name
    ));
    let out = work.path().join("component.wasm");
    let tool = cli
        .ancestors()
        .nth(5)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cli.clone());
    let (output, _) = Step::new(
        format!("componentize-js for `{}`", service.name),
        &[&node.join("node").to_string_lossy(), &cli.to_string_lossy()],
        &code,
    )
    .arg("pactown_worker.js")
    .arg("--wit")
    .arg(&engine_wit)
    .arg("-n")
    .arg("pactown:worker/worker")
    .arg("-o")
    .arg(&out)
    .read(&node)
    .read(&tool)
    .write(work.path())
    .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let diags = script_errors(service, &stderr);
        if diags.has_errors() {
            return Err(BuildError::Code(diags));
        }
        return Err(BuildError::Other(anyhow::anyhow!(
            "componentize-js could not build `{}`:\n{}",
            service.name,
            super::step::tail(&stderr, 25)
        )));
    }
    std::fs::create_dir_all(wasm.parent().expect("artifact dir"))?;
    let tmp = wasm.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::copy(&out, &tmp)
        .with_context(|| format!("componentize-js wrote no `{}`", out.display()))?;
    std::fs::rename(&tmp, &wasm)?;
    Ok(Component {
        wasm,
        key: src.key,
        built: true,
    })
}

/// The service's files and pactown's Worker host beside them.
fn write_sources(dir: &Path, src: &Sources<'_>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
    for f in &src.files {
        if let Some(parent) = f
            .path
            .as_path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            root.create_dir_all(parent)?;
        }
        root.write(f.path.as_str(), &f.content)
            .with_context(|| format!("cannot write `{}` ({})", f.path.as_str(), f.loc))?;
    }
    root.write("pactown_worker.js", &src.host)?;
    Ok(())
}

/// The WIT the engine is built against: the wasi:http tree labelled [`ENGINE_WASI`] (see the
/// module's documentation), and pactown's world.
fn write_engine_wit(from: &Path, to: &Path) -> anyhow::Result<()> {
    let ours = format!("@{}", WASI_HTTP_WIT.version);
    let engine = format!("@{ENGINE_WASI}");
    std::fs::create_dir_all(to.join("deps"))?;
    for e in std::fs::read_dir(from.join("deps"))? {
        let e = e?;
        let text = std::fs::read_to_string(e.path())?;
        let text = text.replace(&ours, &engine).replace(
            &format!("@since(version = {})", WASI_HTTP_WIT.version),
            &format!("@since(version = {ENGINE_WASI})"),
        );
        std::fs::write(to.join("deps").join(e.file_name()), text)?;
    }
    std::fs::write(to.join("worker.wit"), WORLD)?;
    Ok(())
}

/// Where evaluating the module failed while componentize-js built it (`index.js:3:14
/// SyntaxError: …`), at the README line it comes from.
fn script_errors(service: &Service, stderr: &str) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for line in stderr.lines() {
        let Some((place, message)) = line.split_once(' ') else {
            continue;
        };
        let mut parts = place.rsplitn(3, ':');
        let (Some(col), Some(row), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(col), Ok(row)) = (col.parse::<usize>(), row.parse::<usize>()) else {
            continue;
        };
        let Some(block) = service
            .content
            .files
            .iter()
            .find(|f| f.path.as_str() == path.trim_start_matches("./"))
        else {
            continue;
        };
        let message = message.trim_end_matches(':');
        if !message.contains("Error") {
            continue;
        }
        let loc = readme_span(&block.loc, row, col, col + 1);
        diags.push(
            Diagnostic::error(
                "js::evaluate",
                format!("`{}`: {message}", service.name),
                &loc.file,
                loc.span,
            )
            .with_help("componentize-js evaluates the module while it builds: this failed then"),
        );
        break;
    }
    diags
}
