//! Python services → WASI components (componentize-py).
//!
//! A Python service whose file blocks define a WSGI `app` (PEP 3333: Flask, Bottle, a plain
//! callable) and that has no run block becomes a component exporting
//! `wasi:http/incoming-handler`, a fresh instance per request, or, with `instance_reuse`, one
//! exporting pactown's `pactown:worker/handler` (`runtime/wit/worker.wit`: the request whole in
//! one call, the answer whole in its result), whose instances serve several requests in turn.
//! pactown's WSGI host
//! (`guest/pactown_wsgi.py`, carried in the binary) turns each request into a WSGI environ, calls
//! `app`, and streams back what it returns; `urllib.request` reaches other services by name
//! through the host, under the service's call policy. componentize-py imports the app while it
//! builds and snapshots the interpreter's heap, so an instance starts ready. Its pure-Python
//! dependencies (wheels only: no package code runs at build time) are bundled. An import that
//! fails at build time is reported at the README line it comes from.

use std::path::Path;

use anyhow::Context;
use pactown_runtime::wasm::worker;

use super::cache::{Cache, digest};
use super::step::Step;
use super::toolchain::{Artifact, BuildContext, BuildError, Component, Toolchain, readme_span};
use super::tools::{COMPONENTIZE_PY_VERSION, Interpreter, WASI_HTTP_WIT};
use crate::spec::language::{Language, language, runtime_kind, wsgi_entry};
use crate::spec::service::{FileBlock, Installer};
use crate::spec::{Diagnostic, Diagnostics, RuntimeKind, Service};

/// pactown's WSGI host, carried in the binary.
const ADAPTER: &str = include_str!("guest/pactown_wsgi.py");
/// The module componentize-py builds from (it imports the service's app).
const ADAPTER_MODULE: &str = "pactown_wsgi";
/// The handler interface, as pactown serves it.
const HANDLER_WIT: &str = worker::WIT;
/// The Python version componentize-py embeds (dependencies are chosen for it).
const GUEST_PYTHON: &str = "3.14";

/// The Python component toolchain.
pub struct PythonComponent;

impl Toolchain for PythonComponent {
    fn name(&self) -> &'static str {
        "python-wasm"
    }

    fn detect(&self, service: &Service) -> bool {
        language(service) == Language::Python && runtime_kind(service).0 == RuntimeKind::WasmHttp
    }

    fn reason(&self, service: &Service) -> String {
        wsgi_entry(service).map_or("a WSGI `app`".into(), |f| {
            format!("the WSGI `app` of `{}` ({})", f.path.as_str(), f.loc)
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

/// What a Python component is built from, and the key they give.
struct Sources<'a> {
    /// The module holding `app` (`app` for `app.py`, `pkg.web` for `pkg/web.py`).
    module: String,
    /// Built for pactown's one-call handler (`instance_reuse`), not wasi:http's.
    reuse: bool,
    files: Vec<&'a FileBlock>,
    deps: Vec<String>,
    key: String,
}

impl<'a> Sources<'a> {
    fn of(service: &'a Service) -> Self {
        let module = wsgi_entry(service)
            .map(|f| f.path.as_str().trim_end_matches(".py").replace('/', "."))
            .unwrap_or_else(|| "app".into());
        let mut files: Vec<&FileBlock> = service.content.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut deps: Vec<String> = service
            .content
            .deps
            .get(&Installer::Pip)
            .map(|d| d.iter().map(|d| d.spec.clone()).collect())
            .unwrap_or_default();
        if let Some(reqs) = service.content.file("requirements.txt") {
            deps.extend(
                reqs.content
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or_default().trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
        let reuse = service.instance_reuse.0 > 1;
        let key = digest(
            [
                b"python-wasm-v1".as_slice(),
                if reuse {
                    HANDLER_WIT.as_bytes()
                } else {
                    b"wasi:http/proxy"
                },
                COMPONENTIZE_PY_VERSION.as_bytes(),
                WASI_HTTP_WIT.version.as_bytes(),
                GUEST_PYTHON.as_bytes(),
                ADAPTER.as_bytes(),
                module.as_bytes(),
            ]
            .into_iter()
            .chain(deps.iter().flat_map(|d| [b"dep".as_slice(), d.as_bytes()]))
            .chain(
                files
                    .iter()
                    .flat_map(|f| [f.path.as_str().as_bytes(), f.content.as_bytes()]),
            ),
        );
        Self {
            module,
            reuse,
            files,
            deps,
            key,
        }
    }
}

/// Build (or find) the component of a Python service. Blocking.
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
    let tool = super::tools::componentize_py(cache, say)?;
    let wit = super::tools::wasi_http_wit(cache)?;
    let python = Interpreter::find(cache)?.path;
    let work_root = cache.path(&["python-wasm", "work"]);
    std::fs::create_dir_all(&work_root)?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", &src.key[..12]))
        .tempdir_in(&work_root)?;
    let (code, site) = (work.path().join("src"), work.path().join("site"));
    write_sources(&code, &src)?;
    // wasi:http's proxy world, or pactown's handler with wasi:http's imports (a service's own
    // outgoing requests).
    let (wit, world) = if src.reuse {
        let ours = work.path().join("wit");
        write_reuse_wit(&wit, &ours)?;
        (ours, worker::world("reuse"))
    } else {
        (wit, format!("wasi:http/proxy@{}", WASI_HTTP_WIT.version))
    };
    if !src.deps.is_empty() {
        install_deps(cache, &python, &site, &src.deps, say)?;
    }
    say(&format!(
        "building `{}` (Python → wasi:http component)",
        service.name
    ));
    let out = work.path().join("component.wasm");
    let mut step = Step::new(
        format!("componentize-py for `{}`", service.name),
        &[
            &python.to_string_lossy(),
            "-c",
            "import sys; from componentize_py import script; sys.exit(script())",
        ],
        work.path(),
    )
    .env("PYTHONPATH", &tool)
    .arg("-d")
    .arg(&wit)
    .arg("-w")
    .arg(world)
    .arg("componentize")
    .arg(ADAPTER_MODULE)
    .arg("-p")
    .arg(&code);
    if site.is_dir() {
        step = step.arg("-p").arg(&site);
    }
    let (output, _) = step
        .arg("-o")
        .arg(&out)
        .read(&python)
        .read(&tool)
        .read(&wit)
        .write(work.path())
        .output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let diags = import_errors(service, &stderr);
        if diags.has_errors() {
            return Err(BuildError::Code(diags));
        }
        return Err(BuildError::Other(anyhow::anyhow!(
            "componentize-py could not build `{}`:\n{}",
            service.name,
            super::step::tail(&stderr, 25)
        )));
    }
    std::fs::create_dir_all(wasm.parent().expect("artifact dir"))?;
    let tmp = wasm.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::copy(&out, &tmp)
        .with_context(|| format!("componentize-py wrote no `{}`", out.display()))?;
    std::fs::rename(&tmp, &wasm)?;
    Ok(Component {
        wasm,
        key: src.key,
        built: true,
    })
}

/// The service's files, pactown's WSGI host, and the module that names the service's `app`.
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
    root.write(format!("{ADAPTER_MODULE}.py"), ADAPTER)?;
    root.write(
        "pactown_app.py",
        format!("from {} import app  # noqa: F401\n", src.module),
    )?;
    Ok(())
}

/// The WIT of a component built for `instance_reuse`: wasi:http's tree as its dependencies,
/// pactown's handler interface, and the world exporting it.
fn write_reuse_wit(wasi: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.join("deps"))?;
    for e in std::fs::read_dir(wasi.join("deps"))? {
        let e = e?;
        std::fs::copy(e.path(), to.join("deps").join(e.file_name()))?;
    }
    std::fs::write(to.join("handler.wit"), HANDLER_WIT)?;
    std::fs::write(
        to.join("reuse.wit"),
        format!(
            "{}\n\nworld reuse {{\n  include wasi:http/imports@{};\n  export handler;\n}}\n",
            worker::PACKAGE,
            WASI_HTTP_WIT.version
        ),
    )?;
    Ok(())
}

/// Install the dependencies for the guest's Python into `site`: wheels only (no package code
/// runs here), chosen for the interpreter componentize-py embeds.
fn install_deps(
    cache: &Cache,
    python: &Path,
    site: &Path,
    deps: &[String],
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let uv = super::tools::uv(cache, say)?;
    let uv_cache = cache.path(&["uv"]);
    std::fs::create_dir_all(&uv_cache)?;
    std::fs::create_dir_all(site)?;
    say(&format!(
        "installing Python dependencies for a component: {}",
        deps.join(" ")
    ));
    Step::new(
        "uv pip install (component dependencies)",
        &[&uv.to_string_lossy(), "pip", "install", "--quiet"],
        site,
    )
    .arg_all(&[
        "--only-binary",
        ":all:",
        "--python-version",
        GUEST_PYTHON,
        "--python-platform",
        "x86_64-manylinux_2_28",
        "--python",
    ])
    .arg(python)
    .arg("--target")
    .arg(site)
    .arg_all(&deps.iter().map(String::as_str).collect::<Vec<_>>())
    .env("UV_CACHE_DIR", &uv_cache)
    .env("UV_PYTHON_DOWNLOADS", "never")
    .read(python)
    .write(site)
    .write(&uv_cache)
    .network()
    .run()?;
    Ok(())
}

/// Where componentize-py's import of the app failed, at the README line it comes from: the
/// innermost frame in one of the service's files, and the exception's last line.
fn import_errors(service: &Service, stderr: &str) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let lines: Vec<&str> = stderr.lines().collect();
    let Some(last) = lines
        .iter()
        .rev()
        .find(|l| {
            let t = l.trim_start();
            t.contains("Error") || t.contains("Exception")
        })
        .map(|l| l.trim())
    else {
        return diags;
    };
    // `  File "/1/app.py", line 3, in <module>`: the guest sees its sources under a numbered
    // directory.
    let frame = lines.iter().rev().find_map(|l| {
        let rest = l.trim_start().strip_prefix("File \"")?;
        let (path, rest) = rest.split_once('"')?;
        let line: usize = rest
            .trim_start_matches(", line ")
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()?;
        let block = service.content.files.iter().find(|f| {
            let p = f.path.as_str();
            path.strip_suffix(p)
                .is_some_and(|pre| pre.ends_with('/') || pre.is_empty())
        })?;
        Some((block, line))
    });
    let Some((block, line)) = frame else {
        return diags;
    };
    let text = &block.loc.file.text[block.loc.file.line_range(block.loc.line() + line)];
    let indent = text.len() - text.trim_start().len();
    let loc = readme_span(&block.loc, line, indent + 1, text.trim_end().len() + 1);
    let missing = last
        .strip_prefix("ModuleNotFoundError: No module named '")
        .and_then(|m| m.split(['\'', '.']).next());
    let mut d = Diagnostic::error(
        "python::import",
        format!("`{}`: {last}", service.name),
        &loc.file,
        loc.span,
    );
    d = match missing {
        Some(m) => d.with_help(format!(
            "a component bundles what `markpact:deps` lists, as pure-Python wheels: add `{m}` there, or, if it has compiled parts and no WASI build, use `runtime: native` with a run block"
        )),
        None => d.with_help(
            "componentize-py imports the app while it builds: this line failed then".to_string(),
        ),
    };
    diags.push(d);
    diags
}
