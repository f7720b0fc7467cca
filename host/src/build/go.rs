//! Go services: Go provisioned by pactown when the machine has none (or one too old), modules
//! downloaded and the service compiled at build time, in a build sandbox, so that the run
//! block's `go run main.go` compiles nothing new and needs no network.
//!
//! The build works on a copy of the service's files in a cache entry, with `-trimpath`, so the
//! compiled packages and the linked program land in pactown's shared `GOCACHE` under the same
//! keys the service's own `go run` (with the same flags, from its sandbox dir) looks up. The
//! service gets the module cache and the build cache read-only, `GOPROXY=off` and
//! `GOTOOLCHAIN=local`: nothing to fetch, nothing to download.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::cache::{Cache, digest, make_read_only};
use super::native::Prepared;
use super::step::{Step, take_back};
use super::toolchain::{Artifact, BuildContext, BuildError, Toolchain};
use crate::spec::Service;
use crate::spec::service::Installer;

/// `GOFLAGS` of builds and services alike (the build cache keys depend on them).
pub const GOFLAGS: &str = "-mod=mod -trimpath";

/// The Go toolchain: Go provisioned, modules fetched and the run targets compiled ahead.
pub struct Go;

impl Toolchain for Go {
    fn name(&self) -> &'static str {
        "go"
    }

    fn detect(&self, service: &Service) -> bool {
        is_go(service)
    }

    fn reason(&self, service: &Service) -> String {
        match service
            .content
            .files
            .iter()
            .find(|f| f.path.as_str() == "go.mod" || f.path.as_str().ends_with(".go"))
        {
            Some(f) => format!("`{}` ({})", f.path.as_str(), f.loc),
            None => "`markpact:deps go`".into(),
        }
    }

    fn cache_key(&self, service: &Service) -> String {
        let bin = super::tools::which("go").unwrap_or_else(|| super::tools::GO_VERSION.into());
        key(service, &bin)
    }

    fn build(&self, service: &Service, ctx: &BuildContext<'_>) -> Result<Artifact, BuildError> {
        let built = build(service, ctx.cache, ctx.say)
            .with_context(|| format!("cannot build the Go service `{}`", service.name))?;
        let root = cap_std::fs::Dir::open_ambient_dir(ctx.sandbox, cap_std::ambient_authority())?;
        for f in ["go.mod", "go.sum"] {
            if service.content.file(f).is_none()
                && let Ok(text) = std::fs::read_to_string(built.entry.join(f))
            {
                super::native::write_generated(&root, f, &text)?;
            }
        }
        Ok(Artifact::Native(Prepared {
            path_prefix: vec![built.bin.clone()],
            env: built.env(),
            read_only: vec![
                built.root(),
                built.mod_cache.clone(),
                built.build_cache.clone(),
            ],
            overlays: Vec::new(),
        }))
    }
}

/// Its run command, or nothing.
fn run_command(service: &Service) -> String {
    service
        .content
        .run
        .as_ref()
        .map(|r| r.command.clone())
        .unwrap_or_default()
}

/// Its file blocks, by path.
fn sorted_files(service: &Service) -> Vec<&crate::spec::service::FileBlock> {
    let mut files: Vec<_> = service.content.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The key of a Go build: the toolchain, the flags, the run command, the deps, the files.
fn key(service: &Service, bin: &Path) -> String {
    let (run, files) = (run_command(service), sorted_files(service));
    digest(
        [
            b"go-build-v1".as_slice(),
            bin.as_os_str().as_encoded_bytes(),
            GOFLAGS.as_bytes(),
            run.as_bytes(),
        ]
        .into_iter()
        .chain(deps(service).iter().map(|d| d.as_bytes()))
        .chain(
            files
                .iter()
                .flat_map(|f| [f.path.as_str().as_bytes(), f.content.as_bytes()]),
        ),
    )
}

fn deps(service: &Service) -> Vec<String> {
    service
        .content
        .deps
        .get(&Installer::Go)
        .into_iter()
        .flatten()
        .map(|d| d.spec.clone())
        .collect()
}

/// A built Go service.
#[derive(Debug, Clone)]
pub struct GoBuild {
    /// The toolchain's `bin` directory.
    pub bin: PathBuf,
    /// The entry holding the copy it was built from (with the `go.mod` and `go.sum` the build
    /// settled on).
    pub entry: PathBuf,
    /// The shared module cache.
    pub mod_cache: PathBuf,
    /// The shared build cache.
    pub build_cache: PathBuf,
}

impl GoBuild {
    /// What the service's environment gets.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("GOCACHE", self.build_cache.display().to_string()),
            ("GOMODCACHE", self.mod_cache.display().to_string()),
            ("GOFLAGS", GOFLAGS.to_string()),
            ("GOPROXY", "off".to_string()),
            ("GOSUMDB", "off".to_string()),
            ("GOTOOLCHAIN", "local".to_string()),
            ("GOTELEMETRY", "off".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The toolchain's installation (read by the service).
    pub fn root(&self) -> PathBuf {
        super::confine::installation(&self.bin)
    }
}

/// Is this a Go service (a `go.mod` or `.go` block, or Go dependencies)?
pub fn is_go(service: &Service) -> bool {
    service.content.deps.contains_key(&Installer::Go)
        || service
            .content
            .files
            .iter()
            .any(|f| f.path.as_str() == "go.mod" || f.path.as_str().ends_with(".go"))
}

/// The packages a run command builds: the arguments of each `go run` or `go build` in it.
pub fn run_targets(run: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for part in run.split(['\n', ';', '&', '|']) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some(i) = words
            .windows(2)
            .position(|w| w[0] == "go" && matches!(w[1], "run" | "build"))
        else {
            continue;
        };
        let mut pkgs = Vec::new();
        let mut rest = words[i + 2..].iter();
        while let Some(w) = rest.next() {
            if *w == "-o" {
                rest.next();
                continue;
            }
            if w.starts_with('-') {
                continue;
            }
            // `go run main.go util.go args…`: the .go files; `go run ./cmd/x args…`: one package.
            if w.ends_with(".go") {
                pkgs.push(w.to_string());
                continue;
            }
            if pkgs.is_empty() {
                pkgs.push(w.to_string());
            }
            break;
        }
        if pkgs.is_empty() {
            pkgs.push(".".into());
        }
        out.push(pkgs);
    }
    out
}

/// Build (or find) a Go service. Blocking.
pub fn build(service: &Service, cache: &Cache, say: &dyn Fn(&str)) -> anyhow::Result<GoBuild> {
    let bin = super::tools::go(cache, say)?;
    let mod_cache = cache.path(&["go", "mod"]);
    let build_cache = cache.path(&["go", "build"]);
    let (run, files) = (run_command(service), sorted_files(service));
    let deps = deps(service);
    let key = key(service, &bin);
    let entry = cache.path(&["go", "src", &key[..32]]);
    let built = GoBuild {
        bin: bin.clone(),
        entry: entry.clone(),
        mod_cache: mod_cache.clone(),
        build_cache: build_cache.clone(),
    };
    if Cache::is_complete(&entry) {
        return Ok(built);
    }
    for d in [&mod_cache, &build_cache] {
        std::fs::create_dir_all(d)?;
    }
    Cache::build_entry(&entry, |dir| {
        say(&format!("building `{}` (Go)", service.name));
        let root = cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority())?;
        for f in &files {
            if let Some(p) = f
                .path
                .as_path()
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                root.create_dir_all(p)?;
            }
            root.write(f.path.as_str(), &f.content)
                .with_context(|| format!("cannot write `{}` ({})", f.path.as_str(), f.loc))?;
        }
        let go = bin.join("go").to_string_lossy().into_owned();
        let step = |what: String, args: &[&str], online: bool| {
            let s = Step::new(what, &[go.as_str()], dir)
                .arg_all(args)
                .env("GOCACHE", &build_cache)
                .env("GOMODCACHE", &mod_cache)
                .env("GOFLAGS", GOFLAGS)
                .env("GOTOOLCHAIN", "local")
                .env("GOTELEMETRY", "off")
                .read(built.root())
                .write(dir)
                .write(&build_cache);
            if online {
                s.write(&mod_cache).network()
            } else {
                s.read(&mod_cache)
                    .env("GOPROXY", "off")
                    .env("GOSUMDB", "off")
            }
        };
        let name = &service.name;
        if !dir.join("go.mod").exists() {
            step(
                format!("go mod init for `{name}`"),
                &["mod", "init", name],
                false,
            )
            .run()?;
        }
        for d in &deps {
            let spec = d.split_whitespace().next().unwrap_or(d);
            step(format!("go get {spec} for `{name}`"), &["get", spec], true).run()?;
        }
        let text = std::fs::read_to_string(dir.join("go.mod")).unwrap_or_default();
        if text.contains("require") {
            step(
                format!("go mod download for `{name}`"),
                &["mod", "download"],
                true,
            )
            .run()?;
        }
        step(
            format!("go build for `{name}` (offline)"),
            &["build", "./..."],
            false,
        )
        .run()?;
        for pkgs in run_targets(&run) {
            let args: Vec<&str> = ["build", "-o", "/dev/null"]
                .into_iter()
                .chain(pkgs.iter().map(String::as_str))
                .collect();
            step(
                format!("go build {} for `{name}` (offline)", pkgs.join(" ")),
                &args,
                false,
            )
            .run()?;
        }
        take_back(dir);
        Ok(())
    })?;
    make_read_only(&entry);
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_run_commands() {
        assert_eq!(
            run_targets("go run main.go"),
            vec![vec!["main.go".to_string()]]
        );
        assert_eq!(
            run_targets("go mod download && go run . --port $PORT"),
            vec![vec![".".to_string()]]
        );
        assert_eq!(
            run_targets("go build -o app ./cmd/server && ./app"),
            vec![vec!["./cmd/server".to_string()]]
        );
        assert!(run_targets("python3 server.py").is_empty());
    }
}
