//! Rust services → WASI components.
//!
//! A service whose file blocks are Rust becomes a cargo project in pactown's cache: its
//! `Cargo.toml` block is used as is, or one is generated from its `markpact:deps` lines (cargo
//! dependency lines) plus `wstd` and `pactown-guest`, whose source pactown carries and writes into
//! the cache (no registry needed for it). All services share one target dir. The component is
//! stored under the SHA-256 of everything that affects it; on a hit, cargo does not run at all.
//! pactown adds the `wasm32-wasip2` target itself when it is missing, and maps compiler errors
//! back to the README line they come from.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::cache::{Cache, digest};
use super::step::Step;
use super::toolchain::{Artifact, BuildContext, BuildError, Component, Toolchain, readme_span};
use crate::spec::service::{FileBlock, Installer};
use crate::spec::{Diagnostic, Diagnostics, Service};

/// The target guests are built for.
pub const TARGET: &str = crate::facts::WASM_TARGET;

/// pactown-guest's source, carried in the binary.
const SDK_LIB: &str = include_str!("../../../guest-sdk/src/lib.rs");
const SDK_WASI: &str = include_str!("../../../guest-sdk/src/wasi.rs");
const SDK_ENGINE: &str = include_str!("../../../guest-sdk/src/engine.rs");
const SDK_MANIFEST: &str = r#"[package]
name = "pactown-guest"
version = "0.1.0"
edition = "2024"
description = "pactown's guest SDK, written here by pactown"

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[target.'cfg(target_os = "wasi")'.dependencies]
wstd = "0.6"
wasip2 = "1"
"#;

/// The Rust toolchain: a service with `.rs` or `Cargo.toml` blocks becomes a WASI component.
pub struct Rust;

impl Toolchain for Rust {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn detect(&self, service: &Service) -> bool {
        crate::spec::language::language(service) == crate::spec::language::Language::Rust
    }

    fn reason(&self, service: &Service) -> String {
        let f = service
            .content
            .files
            .iter()
            .find(|f| f.path.as_str().ends_with(".rs") || f.path.as_str() == "Cargo.toml");
        f.map_or("Rust sources".into(), |f| {
            format!("`{}` ({})", f.path.as_str(), f.loc)
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

/// What a Rust guest is built from: its manifest (with the SDK's path left symbolic) and its
/// files, and the key they give.
struct Sources<'a> {
    name: String,
    files: Vec<&'a FileBlock>,
    sdk_key: String,
    key: String,
}

impl<'a> Sources<'a> {
    fn of(service: &'a Service) -> Self {
        let sdk_key = digest([
            SDK_LIB.as_bytes(),
            SDK_WASI.as_bytes(),
            SDK_ENGINE.as_bytes(),
            SDK_MANIFEST.as_bytes(),
        ]);
        // Keyed by content alone, and the crate named after the key: identical sources build
        // once, whatever the services that hold them are called.
        let manifest = manifest(service, "<crate>", Path::new("<pactown-guest>"));
        let mut files: Vec<&FileBlock> = service
            .content
            .files
            .iter()
            .filter(|f| f.path.as_str() != "Cargo.toml")
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let key = digest(
            [
                b"rust-wasm-v2".as_slice(),
                TARGET.as_bytes(),
                sdk_key.as_bytes(),
                manifest.as_bytes(),
            ]
            .into_iter()
            .chain(
                files
                    .iter()
                    .flat_map(|f| [f.path.as_str().as_bytes(), f.content.as_bytes()]),
            ),
        );
        Self {
            name: format!("guest_{}", &key[..16]),
            files,
            sdk_key,
            key,
        }
    }
}

/// Build (or find) the component of a Rust service. Blocking.
pub fn build(
    service: &Service,
    cache: &Cache,
    say: &dyn Fn(&str),
) -> Result<Component, BuildError> {
    let Sources {
        name,
        files,
        sdk_key,
        key,
    } = Sources::of(service);
    let sdk_dir = cache.path(&["rust", &format!("pactown-guest-{}", &sdk_key[..12])]);
    let manifest = manifest(service, &name, &sdk_dir);
    if let Some(found) = Component::cached(cache, &key) {
        return Ok(found);
    }
    let wasm = Component::path(cache, &key);
    let cargo = super::tools::which("cargo")
        .context("Rust services need `cargo`; install Rust from https://rustup.rs")?;
    ensure_target(cache, say)?;
    write_sdk(&sdk_dir)?;
    // One project per README (not per content), so cargo's incremental state carries over.
    let readme_key = digest([std::path::absolute(&service.readme)
        .unwrap_or_default()
        .as_os_str()
        .as_encoded_bytes()]);
    let project = cache.path(&["rust", "projects", &readme_key[..16]]);
    write_project(&project, &manifest, &files)?;
    say(&format!(
        "building `{}` (Rust → {TARGET} component)",
        service.name
    ));
    let target_dir = cache.path(&["rust", "target"]);
    let cargo_home = cache.path(&["rust", "cargo-home"]);
    for d in [&target_dir, &cargo_home] {
        std::fs::create_dir_all(d)?;
    }
    // Crates are fetched with the network and no build script runs; then everything is built
    // offline, so a build script (or a proc macro) cannot reach the network.
    let cargo = cargo.to_string_lossy().into_owned();
    let step = |what: &str, args: &[&str]| {
        let mut s = Step::new(what, &[cargo.as_str()], &project)
            .arg_all(args)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_HOME", &cargo_home)
            .env("CARGO_TERM_COLOR", "never")
            .read(&sdk_dir)
            .write(&project)
            .write(&target_dir)
            .write(&cargo_home);
        if let Some(rustup) = rustup_home() {
            s = s.env("RUSTUP_HOME", &rustup).read(rustup);
        }
        s
    };
    step("cargo fetch", &["fetch", "--quiet", "--target", TARGET])
        .network()
        .run()
        .map_err(BuildError::Other)?;
    let (out, _) = step(
        "cargo build",
        &[
            "build",
            "--release",
            "--quiet",
            "--offline",
            "--message-format=json",
            "--target",
            TARGET,
        ],
    )
    .output()
    .map_err(BuildError::Other)?;
    if !out.status.success() {
        let diags = compiler_errors(service, &String::from_utf8_lossy(&out.stdout), &project);
        if diags.has_errors() {
            return Err(BuildError::Code(diags));
        }
        return Err(BuildError::Other(anyhow::anyhow!(
            "cargo could not build `{}`:\n{}",
            service.name,
            super::step::tail(&String::from_utf8_lossy(&out.stderr), 25)
        )));
    }
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{name}.wasm"));
    std::fs::create_dir_all(wasm.parent().expect("artifact dir"))?;
    let tmp = wasm.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::copy(&built, &tmp).with_context(|| format!("cargo built no `{}`", built.display()))?;
    std::fs::rename(&tmp, &wasm)?;
    Ok(Component {
        wasm,
        key,
        built: true,
    })
}

/// The service's `Cargo.toml`: its own block, or one made from its deps.
fn manifest(service: &Service, name: &str, sdk: &Path) -> String {
    if let Some(own) = service.content.file("Cargo.toml") {
        return own.content.clone();
    }
    let deps: Vec<&str> = service
        .content
        .deps
        .get(&Installer::Cargo)
        .map(|d| d.iter().map(|d| d.spec.as_str()).collect())
        .unwrap_or_default();
    let declared = |krate: &str| {
        deps.iter().any(|d| {
            d.split(['=', '.', ' '])
                .next()
                .is_some_and(|n| n.trim() == krate)
        })
    };
    let mut m = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\n"
    );
    m.push_str(&format!(
        "pactown-guest = {{ path = \"{}\" }}\n",
        sdk.display()
    ));
    for (krate, line) in [
        ("wstd", "wstd = \"0.6\""),
        (
            "serde",
            "serde = { version = \"1\", features = [\"derive\"] }",
        ),
        ("serde_json", "serde_json = \"1\""),
    ] {
        if !declared(krate) {
            m.push_str(line);
            m.push('\n');
        }
    }
    for d in deps {
        m.push_str(d);
        m.push('\n');
    }
    let has_src_main = service.content.file("src/main.rs").is_some();
    if !has_src_main && service.content.file("main.rs").is_some() {
        m.push_str(&format!(
            "\n[[bin]]\nname = \"{name}\"\npath = \"main.rs\"\n"
        ));
    }
    m.push_str("\n[profile.release]\ndebug = false\nstrip = true\n\n[workspace]\n");
    m
}

fn write_sdk(dir: &Path) -> anyhow::Result<()> {
    Cache::build_entry(dir, |d| {
        std::fs::create_dir_all(d.join("src"))?;
        std::fs::write(d.join("Cargo.toml"), SDK_MANIFEST)?;
        std::fs::write(d.join("src/lib.rs"), SDK_LIB)?;
        std::fs::write(d.join("src/wasi.rs"), SDK_WASI)?;
        std::fs::write(d.join("src/engine.rs"), SDK_ENGINE)?;
        Ok(())
    })
}

fn write_project(project: &Path, manifest: &str, files: &[&FileBlock]) -> anyhow::Result<()> {
    // Start from a clean tree (a file removed from the README must not linger), keeping the lock.
    if project.exists() {
        for e in std::fs::read_dir(project)?.flatten() {
            if e.file_name() != "Cargo.lock" {
                let p = e.path();
                if e.file_type()?.is_dir() {
                    std::fs::remove_dir_all(p)?;
                } else {
                    std::fs::remove_file(p)?;
                }
            }
        }
    }
    std::fs::create_dir_all(project)?;
    let root = cap_std::fs::Dir::open_ambient_dir(project, cap_std::ambient_authority())?;
    root.write("Cargo.toml", manifest)?;
    for f in files {
        if let Some(parent) = f
            .path
            .as_path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            root.create_dir_all(parent)?;
        }
        root.write(f.path.as_str(), &f.content)?;
    }
    Ok(())
}

/// rustup's home (toolchains), which build steps read: their own `HOME` is a scratch dir.
fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))
        .filter(|p| p.is_dir())
}

/// `rustup target add wasm32-wasip2` when the target's standard library is missing (a
/// toolchain install, like uv's: it runs as the invoking user, outside the build sandbox).
pub fn ensure_target(cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    super::tools::which("rustc")
        .context("Rust services need `rustc`; install Rust from https://rustup.rs")?;
    if crate::facts::target_installed() {
        return Ok(());
    }
    // One `rustup target add` at a time, even across processes.
    std::fs::create_dir_all(cache.path(&["tools"]))?;
    let lock = std::fs::File::create(cache.path(&["tools", "rustup-target.lock"]))?;
    lock.lock()
        .context("cannot lock the rustup target install")?;
    if crate::facts::target_installed() {
        return Ok(()); // another process added it while we waited
    }
    let rustup = super::tools::which("rustup").context(format!(
        "the `{TARGET}` target is missing and `rustup` is not on PATH to add it"
    ))?;
    say(&format!(
        "adding the Rust target {TARGET} (first use; rustup target add {TARGET})"
    ));
    let st = Command::new(rustup)
        .args(["target", "add", TARGET])
        .output()?;
    if !st.status.success() {
        bail!(
            "`rustup target add {TARGET}` failed:\n{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    Ok(())
}

/// Compiler errors from cargo's JSON messages, at the README lines of the file blocks.
fn compiler_errors(service: &Service, json: &str, project: &Path) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for line in json.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-message" || msg["message"]["level"] != "error" {
            continue;
        }
        let m = &msg["message"];
        let text = m["message"].as_str().unwrap_or("compile error").to_string();
        let Some(span) = m["spans"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["is_primary"] == true))
        else {
            if let Some(rendered) = m["rendered"].as_str() {
                diags.push(Diagnostic::file_error(
                    "rust::compile",
                    format!("`{}`: {}", service.name, rendered.trim_end()),
                ));
            }
            continue;
        };
        let file = span["file_name"].as_str().unwrap_or_default();
        let file = Path::new(file)
            .strip_prefix(project)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| PathBuf::from(file));
        let block = service
            .content
            .files
            .iter()
            .find(|f| f.path.as_path() == file);
        let help = m["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                c["message"]
                    .as_str()
                    .map(|t| format!("{}: {t}", c["level"].as_str().unwrap_or("note")))
            })
            .collect::<Vec<_>>()
            .join("\n");
        match block {
            Some(b) => {
                let line_no = span["line_start"].as_u64().unwrap_or(1) as usize;
                let col = span["column_start"].as_u64().unwrap_or(1) as usize;
                let end_col = if span["line_end"] == span["line_start"] {
                    span["column_end"].as_u64().unwrap_or(col as u64 + 1) as usize
                } else {
                    col + 1
                };
                let loc = readme_span(&b.loc, line_no, col, end_col);
                let mut d = Diagnostic::error("rust::compile", text, &loc.file, loc.span);
                if let Some(label) = span["label"].as_str() {
                    d = d.with_label(label);
                }
                if !help.is_empty() {
                    d = d.with_help(help);
                }
                diags.push(d);
            }
            None => {
                let rendered = m["rendered"]
                    .as_str()
                    .unwrap_or(&text)
                    .trim_end()
                    .to_string();
                diags.push(Diagnostic::file_error(
                    "rust::compile",
                    format!("`{}`: {rendered}", service.name),
                ));
            }
        }
    }
    diags
}
