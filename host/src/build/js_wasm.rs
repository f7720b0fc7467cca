//! JavaScript services → WASI components (componentize-js).
//!
//! A JavaScript service whose files hold a Worker (`export default { fetch(request, env, ctx) }`,
//! as Cloudflare Workers are written, or `addEventListener("fetch", …)`) and that has no run
//! block becomes a component exporting `wasi:http/incoming-handler`, a fresh instance per
//! request (the engine's fetch event) or, with `instance_reuse`, one exporting pactown's
//! `pactown:worker/handler` (`runtime/wit/worker.wit`: the whole exchange in one call each way,
//! implemented by `guest/pactown_worker_reuse.js`), whose instances serve several requests one
//! after another. pactown's Worker host, carried
//! in the binary, imports the module unchanged and gives `fetch` an `env` of the service's
//! variables and a binding per dependency (`env.API.fetch(…)`, by name through the host). componentize-js evaluates the
//! module while it builds (a snapshot), so an instance starts ready; a syntax or evaluation error
//! is reported at the README line.
//!
//! npm packages (`markpact:deps node`, or a `package.json` block) are installed as for a native
//! Node service (`node::ensure_modules`: fetched in a build sandbox, no package script with the
//! network) and bundled with the Worker into one module by esbuild (no network; Workers'
//! export conditions), so the component carries them. A package with a native addon cannot be
//! bundled: the build names it.
//!
//! componentize-js 0.23's engine exports `wasi:http/incoming-handler@0.2.10`, so the WIT it is
//! given is the engine's wasi:http tree (0.2.12, see [`WASI_HTTP_WIT`]) labelled 0.2.10: the two
//! differ only in items gated `@since(0.2.11)` or later, and wasmtime serves 0.2.10 imports with
//! its 0.2.x implementation. The world adds `wasi:cli/environment`, from which `env` is read at
//! run time (never baked into the cached component).

use std::path::Path;

use anyhow::Context;
use pactown_runtime::wasm::worker;

use super::cache::{Cache, digest};
use super::step::Step;
use super::toolchain::{Artifact, BuildContext, BuildError, Component, Toolchain, readme_span};
use super::tools::{COMPONENTIZE_JS_VERSION, ESBUILD_VERSION, WASI_HTTP_WIT};
use crate::spec::ecosystem::env_prefix;
use crate::spec::language::{
    Language, has_npm_packages, language, npm_packages, runtime_kind, worker_entry,
};
use crate::spec::service::FileBlock;
use crate::spec::{Diagnostic, Diagnostics, RuntimeKind, Service};

/// pactown's Worker host for a fresh instance per request, carried in the binary: the engine's
/// own fetch event (answers once per instance; the fastest to a first answer).
const HOST: &str = include_str!("guest/pactown_worker.js");
/// The host for `instance_reuse` above 1: it implements `pactown:worker/handler`, so an instance
/// answers any number of requests in turn, each in one call in and one out (through wasi:http's
/// resources a request took a dozen calls, ~10 µs each in componentize-js's bindings: 2.1x
/// fewer requests per second).
const HOST_REUSE: &str = include_str!("guest/pactown_worker_reuse.js");
/// The service binding and the Worker check both hosts import.
const BINDING: &str = include_str!("guest/pactown_binding.js");
/// What the reusing host imports before the service's module: it keeps a service worker's
/// listeners.
const PRELUDE: &str = include_str!("guest/pactown_prelude.js");
/// componentize-js's command (its `cli.js`), with one difference: the pre-initializer it runs
/// (wizer) gets the step's `HOME`. The command gives it an empty environment, so wizer's
/// compile cache goes to the home directory of the user's account; as root the build sandbox
/// names that home the step's scratch directory, but run by a user the account's real home is
/// what it finds, and the build may not write there.
const COMPONENTIZE: &str = r#"import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
const [tool, sourcePath, wit, worldName, out] = process.argv.slice(2);
const { componentize } = await import(pathToFileURL(tool).href);
const { component } = await componentize({
  sourcePath,
  witPath: resolve(wit),
  worldName,
  env: { HOME: process.env.HOME },
});
await writeFile(out, component);
"#;

/// The WASI version componentize-js's engine is built against.
const ENGINE_WASI: &str = "0.2.10";
/// The worlds a Worker component is built for: wasi:http's proxy and the environment (a fresh
/// instance per request, served by the engine's fetch event); or, for `instance_reuse`,
/// wasi:http's imports (a Worker's own `fetch`), the environment, and pactown's one-call
/// handler.
const WORLDS: &str = "world worker {\n  include wasi:http/proxy@0.2.10;\n  import wasi:cli/environment@0.2.10;\n}\n\nworld reuse {\n  include wasi:http/imports@0.2.10;\n  import wasi:cli/environment@0.2.10;\n  export handler;\n}\n";
/// The handler interface, as pactown serves it.
const HANDLER_WIT: &str = worker::WIT;

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
    /// The reusing host's prelude, or empty.
    prelude: &'static str,
    /// The world it is built for (in [`WORLDS`]).
    world: String,
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
        let (template, prelude, world) = if service.instance_reuse.0 > 1 {
            (HOST_REUSE, PRELUDE, worker::world("reuse"))
        } else {
            (HOST, "", worker::world("worker"))
        };
        let host = template.replace("__PACTOWN_ENTRY__", entry).replace(
            "__PACTOWN_BINDINGS__",
            &serde_json::to_string(&bindings).expect("strings"),
        );
        let mut files: Vec<&FileBlock> = service.content.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        // What is bundled: the manifest its packages are installed from, and the bundler.
        let packages = if has_npm_packages(service) {
            format!("{ESBUILD_VERSION}\n{}", super::node::package_json(service))
        } else {
            String::new()
        };
        let key = digest(
            [
                b"js-wasm-v2".as_slice(),
                COMPONENTIZE_JS_VERSION.as_bytes(),
                WASI_HTTP_WIT.version.as_bytes(),
                WORLDS.as_bytes(),
                HANDLER_WIT.as_bytes(),
                host.as_bytes(),
                BINDING.as_bytes(),
                prelude.as_bytes(),
                world.as_bytes(),
                packages.as_bytes(),
            ]
            .into_iter()
            .chain(
                files
                    .iter()
                    .flat_map(|f| [f.path.as_str().as_bytes(), f.content.as_bytes()]),
            ),
        );
        Self {
            host,
            prelude,
            world,
            files,
            key,
        }
    }
}

/// Build (or find) the component of a JavaScript Worker. Blocking.
pub fn build(
    service: &Service,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> Result<Component, BuildError> {
    let src = Sources::of(service);
    if let Some(found) = Component::cached(cache, &src.key) {
        return Ok(found);
    }
    let wasm = Component::path(cache, &src.key);
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
    let module = if has_npm_packages(service) {
        bundle(service, &code, "pactown_worker.js", "bundle.js", cache, say)?;
        "bundle.js"
    } else {
        "pactown_worker.js"
    };
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
    let run = work.path().join("componentize.mjs");
    std::fs::write(&run, COMPONENTIZE)?;
    let (output, _) = Step::new(
        format!("componentize-js for `{}`", service.name),
        &[&node.join("node").to_string_lossy(), &run.to_string_lossy()],
        &code,
    )
    .arg(cli.with_file_name("componentize.js"))
    .arg(module)
    .arg(&engine_wit)
    .arg(&src.world)
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
    let root = write_files(dir, src.files.iter().copied())?;
    root.write("pactown_worker.js", &src.host)?;
    root.write("pactown_binding.js", BINDING)?;
    if !src.prelude.is_empty() {
        root.write("pactown_prelude.js", src.prelude)?;
    }
    Ok(())
}

/// Write file blocks into `dir` (created), through a handle on it: the open directory.
pub fn write_files<'a>(
    dir: &Path,
    files: impl Iterator<Item = &'a FileBlock>,
) -> anyhow::Result<cap_std::fs::Dir> {
    std::fs::create_dir_all(dir)?;
    let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
    for f in files {
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
    Ok(root)
}

/// Install the service's npm packages and bundle them with the module `entry` of `code` into
/// `out` there (esbuild, no network, Workers' export conditions): the module componentize-js is
/// given, or the one a workerd config embeds.
pub fn bundle(
    service: &Service,
    code: &Path,
    entry: &str,
    out: &str,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> Result<(), BuildError> {
    let modules = super::node::ensure_modules(service, cache, say)
        .with_context(|| format!("cannot install the npm packages of `{}`", service.name))?;
    if let Some(diags) = native_addons(service, &modules.modules()) {
        return Err(BuildError::Code(diags));
    }
    let link = code.join("node_modules");
    std::os::unix::fs::symlink(modules.modules(), &link)
        .context("cannot link the installed npm packages")?;
    let esbuild = super::tools::esbuild(cache, say)?;
    let output = Step::new(
        format!("esbuild for `{}`", service.name),
        &[&esbuild.to_string_lossy()],
        code,
    )
    .arg(entry)
    .arg_all(&[
        "--bundle",
        "--format=esm",
        "--platform=neutral",
        "--target=es2022",
        "--main-fields=module,main",
        // What a package exports for Workers (and other fetch-based runtimes) first.
        "--conditions=workerd,worker,browser",
        "--external:wasi:*",
        "--log-level=error",
        "--color=false",
    ])
    .arg(format!("--outfile={out}"))
    .read(&modules.entry)
    .write(code)
    .output();
    let _ = std::fs::remove_file(&link);
    let (output, _) = output?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let diags = bundle_errors(service, &stderr);
        if diags.has_errors() {
            return Err(BuildError::Code(diags));
        }
        return Err(BuildError::Other(anyhow::anyhow!(
            "esbuild could not bundle `{}`:\n{}",
            service.name,
            super::step::tail(&stderr, 25)
        )));
    }
    Ok(())
}

/// The installed packages with a native addon (`binding.gyp`, or a compiled `.node` file),
/// each at the line that declares it (or the package that brought it in).
fn native_addons(service: &Service, modules: &Path) -> Option<Diagnostics> {
    fn has_addon(dir: &Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    depth < 8 && name != "node_modules" && has_addon(&p, depth + 1)
                }
                Ok(t) if t.is_file() => name == "binding.gyp" || name.ends_with(".node"),
                _ => false,
            }
        })
    }
    let mut packages: Vec<(String, std::path::PathBuf)> = Vec::new();
    for e in std::fs::read_dir(modules).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if name.starts_with('@') {
            for inner in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let n = format!("{name}/{}", inner.file_name().to_string_lossy());
                packages.push((n, inner.path()));
            }
        } else {
            packages.push((name, e.path()));
        }
    }
    packages.sort();
    let native: Vec<String> = packages
        .into_iter()
        .filter(|(_, dir)| has_addon(dir, 0))
        .map(|(n, _)| n)
        .collect();
    if native.is_empty() {
        return None;
    }
    let declared = npm_packages(service);
    let (name, loc) = declared
        .iter()
        .find(|(n, _)| native.contains(n))
        .or(declared.first())?;
    let mut diags = Diagnostics::default();
    let what = if native.contains(name) {
        format!("`{name}` has")
    } else {
        format!(
            "`{name}` brings in {}, which {}",
            native
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if native.len() == 1 { "has" } else { "have" }
        )
    };
    diags.push(
        Diagnostic::error(
            "js::native-addon",
            format!("`{}`: {what} a native addon, which cannot be bundled into a component", service.name),
            &loc.file,
            loc.span.clone(),
        )
        .with_help("use a pure-JavaScript package, or `runtime: native` with a run block that starts the service under Node.js"),
    );
    Some(diags)
}

/// esbuild's errors (`✘ [ERROR] Could not resolve "x"` then `    index.js:3:14:`) at the README
/// line they come from; one inside an installed package names the package and where it is
/// declared.
fn bundle_errors(service: &Service, stderr: &str) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        let Some(message) = line.split_once("[ERROR]").map(|(_, m)| m.trim()) else {
            continue;
        };
        let place = lines
            .by_ref()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .and_then(|l| l.strip_suffix(':'))
            .and_then(|l| {
                let mut parts = l.rsplitn(3, ':');
                let col = parts.next()?.parse::<usize>().ok()?;
                let row = parts.next()?.parse::<usize>().ok()?;
                Some((parts.next()?.to_string(), row, col))
            });
        let Some((path, row, col)) = place else {
            continue;
        };
        let path = path.trim_start_matches("./");
        if let Some(block) = service
            .content
            .files
            .iter()
            .find(|f| f.path.as_str() == path)
        {
            let loc = readme_span(&block.loc, row, col + 1, col + 2);
            diags.push(
                Diagnostic::error(
                    "js::bundle",
                    format!("`{}`: {message}", service.name),
                    &loc.file,
                    loc.span,
                )
                .with_help("a Worker may import its own files and the npm packages it declares; Node's built-in modules are not there"),
            );
            break;
        }
        // Inside an installed package: `node_modules/<pkg>/…` (or `@scope/pkg`).
        let inside = path.rsplit_once("node_modules/").map(|(_, rest)| {
            let mut parts = rest.split('/');
            let first = parts.next().unwrap_or_default();
            if first.starts_with('@') {
                format!("{first}/{}", parts.next().unwrap_or_default())
            } else {
                first.to_string()
            }
        });
        let declared = npm_packages(service);
        let Some((name, loc)) = inside
            .as_ref()
            .and_then(|p| declared.iter().find(|(n, _)| n == p))
            .or(declared.first())
        else {
            continue;
        };
        let by = inside.as_deref().unwrap_or(name);
        diags.push(
            Diagnostic::error(
                "js::bundle",
                format!("`{}`: the npm package `{by}` cannot be bundled for a Worker: {message}", service.name),
                &loc.file,
                loc.span.clone(),
            )
            .with_help("it needs Node.js itself (its built-in modules): use a package made for Workers or the web, or `runtime: native` with a run block"),
        );
        break;
    }
    diags
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
    std::fs::write(
        to.join("worlds.wit"),
        format!("{}\n\n{WORLDS}", worker::PACKAGE),
    )?;
    std::fs::write(to.join("handler.wit"), HANDLER_WIT)?;
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
