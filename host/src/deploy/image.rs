//! The images of a deployment, built locally (no registry needed):
//!
//! - the ecosystem's image, `FROM scratch`: pactown and the C libraries it links, the ecosystem
//!   file and its READMEs (includes resolved) under `/app`, and its components with their code
//!   compiled ahead for the target CPU under `/cache`, so a wasm service needs no toolchain at
//!   run time and starts by mapping its code;
//! - per native service, an image from its language's base image (`python:3.12-slim`, …, or
//!   `--base-image`) with the same files, whose dependencies `pactown build --only` installs
//!   while the image is built.
//!
//! [`context`] writes a build context (`Containerfile`s and a `rootfs/`); [`build`] runs podman
//! (or docker) on it when one is there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use indexmap::IndexMap;

use super::{APP, BIN, CACHE, Deployment, Options, UID};
use crate::build::{Built, Cache};
use crate::plan::Plan;
use crate::spec::Ecosystem;

/// One image to build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSpec {
    /// Its name and tag.
    pub name: String,
    /// Its Containerfile, in the context.
    pub containerfile: PathBuf,
}

/// Write the build context into `dir`: `rootfs/`, `Containerfile` (the ecosystem's image) and
/// `<service>.Containerfile` for each native service. The images to build.
pub fn context(
    d: &Deployment,
    plan: &Plan,
    eco: &Ecosystem,
    built: &IndexMap<String, Built>,
    cache: &Cache,
    opts: &Options,
    dir: &Path,
) -> anyhow::Result<Vec<ImageSpec>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot clear `{}`", dir.display()))?;
    }
    let root = dir.join("rootfs");
    for d in [
        "usr/local/bin",
        "etc",
        "tmp",
        "app",
        "cache/wasm/artifacts",
        "cache/wasm/compiled",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    let exe = std::env::current_exe()?;
    std::fs::copy(&exe, root.join(BIN.trim_start_matches('/')))?;
    for lib in linked_libraries(&exe)? {
        let to = root.join(lib.to_string_lossy().trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("a folder"))?;
        std::fs::copy(&lib, &to).with_context(|| format!("cannot copy `{}`", lib.display()))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{UID}:nonroot:/tmp:/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        root.join("etc/group"),
        format!("root:x:0:\nnonroot:x:{UID}:\n"),
    )?;
    // The ecosystem: its file as written, and each README bundled at its own path.
    let app = root.join(APP.trim_start_matches('/'));
    let file_rel = eco
        .source
        .path
        .strip_prefix(&eco.dir)
        .unwrap_or(&eco.source.path)
        .to_path_buf();
    std::fs::write(app.join(&file_rel), &eco.source.text)?;
    let base = std::path::absolute(eco.dir.join("."))?;
    for s in eco.services.values() {
        let rel = std::path::absolute(&s.readme)?
            .strip_prefix(&base)
            .map(Path::to_path_buf)
            .map_err(|_| {
                anyhow::anyhow!(
                    "the README of `{}` (`{}`) is outside the ecosystem file's folder; a deployment holds only what is below it",
                    s.name,
                    s.readme.display()
                )
            })?;
        let to = app.join(&rel);
        std::fs::create_dir_all(to.parent().expect("a folder"))?;
        std::fs::write(&to, crate::spec::markpact::bundle(&s.readme)?)?;
    }
    // Components, and their code compiled for the target CPU.
    let engine = pactown_runtime::wasm::WasmEngine::new(
        &pactown_runtime::wasm::EngineConfig {
            cpu: opts.cpu,
            ..Default::default()
        },
        cache.path(&["wasm", "compiled"]),
    )?;
    for b in built.values() {
        if let Built::Component(c) = b {
            let key = &c.key[..32];
            engine.load(&c.wasm, key)?;
            let name = c.wasm.file_name().context("a component file")?;
            std::fs::copy(&c.wasm, root.join("cache/wasm/artifacts").join(name))?;
            let compiled = engine.compiled_path(key);
            let name = compiled.file_name().context("a compiled file")?;
            std::fs::copy(&compiled, root.join("cache/wasm/compiled").join(name))?;
        }
    }
    let cpu = match opts.cpu {
        pactown_runtime::wasm::CpuTarget::Baseline => "baseline",
        pactown_runtime::wasm::CpuTarget::Native => "native",
    };
    let env = format!(
        "ENV PACTOWN_CACHE_DIR={CACHE} HOME=/tmp {}={cpu}",
        pactown_runtime::wasm::engine::CPU_VAR
    );
    std::fs::write(
        dir.join("Containerfile"),
        format!(
            "# {} {}: pactown, the ecosystem's files and its components, compiled for the {cpu} CPU.\nFROM scratch\nCOPY rootfs/ /\n{env}\nUSER {UID}:{UID}\nENTRYPOINT [\"{BIN}\"]\n",
            eco.name, eco.version
        ),
    )?;
    let mut images = vec![ImageSpec {
        name: d.image.clone(),
        containerfile: dir.join("Containerfile"),
    }];
    for u in d.units.iter().filter(|u| !u.kind.is_wasm()) {
        let sp = &plan.services[u.name.as_str()];
        let base = opts
            .base_images
            .get(sp.language.as_str())
            .cloned()
            .unwrap_or_else(|| super::default_base_image(sp.language.as_str()).to_string());
        let file = dir.join(format!("{}.Containerfile", u.dns));
        std::fs::write(
            &file,
            format!(
                "# `{}` of {} {} ({}, native): its base image, pactown and its dependencies, installed now.\nFROM {base}\nCOPY rootfs/usr/local/bin/pactown {BIN}\nCOPY rootfs/app {APP}\n{env}\nRUN [\"{BIN}\", \"build\", \"{}\", \"--only\", \"{}\"]\nRUN chmod -R a+rX {CACHE}\nUSER {UID}:{UID}\nENTRYPOINT [\"{BIN}\"]\n",
                u.name,
                eco.name,
                eco.version,
                sp.language.as_str(),
                d.file_in_image,
                u.name
            ),
        )?;
        images.push(ImageSpec {
            name: u.image.clone(),
            containerfile: file,
        });
    }
    Ok(images)
}

/// The shared libraries `exe` loads, and its loader (from `ldd`).
fn linked_libraries(exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .context("cannot run `ldd` to find the libraries pactown needs")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, or the loader's own path.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    if libs.is_empty() && !text.contains("statically linked") {
        bail!("`ldd {}` named no library:\n{text}", exe.display());
    }
    Ok(libs)
}

/// The container engine here: podman, else docker.
pub fn engine() -> Option<PathBuf> {
    crate::facts::which("podman").or_else(|| crate::facts::which("docker"))
}

/// Build `images` from the context in `dir` with `engine`.
pub fn build(
    engine: &Path,
    dir: &Path,
    images: &[ImageSpec],
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    for i in images {
        say(&format!(
            "building image {} with {}",
            i.name,
            engine.display()
        ));
        let status = Command::new(engine)
            .arg("build")
            .arg("-t")
            .arg(&i.name)
            .arg("-f")
            .arg(&i.containerfile)
            .arg(dir)
            .status()
            .with_context(|| format!("cannot run `{}`", engine.display()))?;
        if !status.success() {
            bail!(
                "`{} build` of {} failed ({status})",
                engine.display(),
                i.name
            );
        }
    }
    Ok(())
}
