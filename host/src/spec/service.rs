//! A service's content, read from its README's blocks: files confined to the sandbox,
//! dependencies per installer, the run command, and tests parsed into structured checks.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::markpact::{Block, BlockKind, Loc, MetaItem, parse_blocks};
use super::source::SourceCache;

/// How a service runs. `native` is a process in a Linux sandbox; the wasm kinds run inside
/// wasmtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// A process: the run command through `sh -c`.
    Native,
    /// A component exporting `wasi:http/incoming-handler`, a fresh instance per request.
    WasmHttp,
    /// A long-running `wasi:cli/run` component with virtualized sockets.
    WasmCommand,
    /// A service pactown serves itself (`builtin:`), in-process.
    Builtin,
}

/// The services pactown serves itself (`builtin:` in the ecosystem file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Builtin {
    /// `/register`, `/unregister`, `/ping`, `/services`.
    Discovery,
    /// JSON documents: `POST /state`, `GET|PATCH|DELETE /state/:id`.
    SharedState,
    /// Durable, reversible multi-step jobs over services by name.
    JobControl,
}

impl Builtin {
    /// Every built-in with its spelling.
    pub const ALL: [(&'static str, Builtin); 3] = [
        ("discovery", Builtin::Discovery),
        ("shared-state", Builtin::SharedState),
        ("job-control", Builtin::JobControl),
    ];

    /// Parse its spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }

    /// Its spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("discovery", |(n, _)| n)
    }
}

impl RuntimeKind {
    /// Every kind with its spelling.
    pub const ALL: [(&'static str, RuntimeKind); 3] = [
        ("native", RuntimeKind::Native),
        ("wasm-http", RuntimeKind::WasmHttp),
        ("wasm-command", RuntimeKind::WasmCommand),
    ];

    /// Parse the spelling used in YAML and block headers.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }

    /// The spelling.
    pub fn as_str(self) -> &'static str {
        if self == RuntimeKind::Builtin {
            return "builtin";
        }
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("native", |(n, _)| n)
    }

    /// Does it run as a WebAssembly component?
    pub fn is_wasm(self) -> bool {
        self != RuntimeKind::Native
    }
}

/// A relative path inside a sandbox, normalised (`a/b.py`), never absolute, never escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SandboxPath(String);

impl SandboxPath {
    /// Check and normalise a user's path. The error says what is wrong.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("the path is empty".into());
        }
        if raw.contains('\0') {
            return Err("the path contains a NUL byte".into());
        }
        if raw.starts_with('/') {
            return Err(format!("`{raw}` is absolute"));
        }
        if raw.starts_with('~') {
            return Err(format!("`{raw}` points into a home directory"));
        }
        if raw.contains('\\') {
            return Err(format!(
                "`{raw}` contains a backslash; use `/` between directories"
            ));
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(format!("`{raw}` climbs out of the sandbox with `..`"));
                    }
                }
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return Err(format!(
                "`{raw}` names the sandbox itself, not a file in it"
            ));
        }
        Ok(Self(parts.join("/")))
    }

    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As a relative `Path`.
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

/// A file to write into the sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct FileBlock {
    /// Where, inside the sandbox.
    pub path: SandboxPath,
    /// The block's language.
    pub lang: Option<String>,
    /// The content, exactly as written.
    #[serde(skip)]
    pub content: String,
    /// `template=true`: `${env:NAME:-default}` and `${NAME}` are filled from the service's env.
    pub template: bool,
    /// `mode=755`: Unix permissions.
    pub mode: Option<u32>,
    /// The block header.
    pub loc: Loc,
}

/// Which tool installs a deps block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Installer {
    /// Python packages (installed with uv).
    Pip,
    /// npm packages.
    Npm,
    /// Go modules (`go get`).
    Go,
    /// Cargo dependency lines (`serde = "1"`) for Rust services.
    Cargo,
}

impl Installer {
    /// The installer for a deps block's language; old-style blocks without one mean pip.
    pub fn for_lang(lang: Option<&str>) -> Option<Self> {
        Some(match lang.map(str::to_ascii_lowercase).as_deref() {
            None | Some("python" | "python3" | "py" | "pip" | "requirements" | "txt") => Self::Pip,
            Some("node" | "js" | "javascript" | "npm" | "ts" | "typescript") => Self::Npm,
            Some("go" | "golang") => Self::Go,
            Some("rust" | "cargo" | "toml" | "rs") => Self::Cargo,
            Some(_) => return None,
        })
    }
}

/// One dependency line.
#[derive(Debug, Clone, Serialize)]
pub struct Dep {
    /// The line, trimmed and without comments (`fastapi==0.110`, `serde = "1"`).
    pub spec: String,
    /// Where it was written.
    pub loc: Loc,
}

/// A service's run command.
#[derive(Debug, Clone, Serialize)]
pub struct RunBlock {
    /// The command text, given to `sh -c` unchanged.
    pub command: String,
    /// The block's language.
    pub lang: Option<String>,
    /// `runtime=…` on the block header.
    pub runtime: Option<RuntimeKind>,
    /// The block header.
    pub loc: Loc,
}

/// An explicit build command.
#[derive(Debug, Clone, Serialize)]
pub struct BuildBlock {
    /// The command text.
    pub command: String,
    /// The block header.
    pub loc: Loc,
}

/// One HTTP check: `METHOD /path [EXPECT code] [BODY json]`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCheck {
    /// Upper-case method.
    pub method: String,
    /// Path starting with `/`.
    pub path: String,
    /// Expected status; without one, 200–399 passes.
    pub expect: Option<u16>,
    /// JSON body sent with `Content-Type: application/json`.
    pub body: Option<serde_json::Value>,
    /// Where it was written.
    pub loc: Loc,
}

/// A test block's checks.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "checks", rename_all = "lowercase")]
pub enum Tests {
    /// HTTP checks against the service.
    Http(Vec<HttpCheck>),
    /// Shell commands run in the sandbox; exit 0 passes.
    Shell(Vec<ShellCheck>),
}

/// A shell test line.
#[derive(Debug, Clone, Serialize)]
pub struct ShellCheck {
    /// The command.
    pub command: String,
    /// Where it was written.
    pub loc: Loc,
}

/// A block that only the reference acts on; kept so nothing the user wrote is lost.
#[derive(Debug, Clone, Serialize)]
pub struct ExtraBlock {
    /// Its kind.
    pub kind: BlockKind,
    /// Its language.
    pub lang: Option<String>,
    /// Its body.
    pub body: String,
    /// Its header.
    pub loc: Loc,
}

/// Everything a README says about its service.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceSource {
    /// Files to write, in document order.
    pub files: Vec<FileBlock>,
    /// Dependencies per installer, in document order.
    pub deps: BTreeMap<Installer, Vec<Dep>>,
    /// The run command.
    pub run: Option<RunBlock>,
    /// The build command.
    pub build: Option<BuildBlock>,
    /// Tests.
    pub tests: Vec<Tests>,
    /// Reference-only blocks.
    pub extras: Vec<ExtraBlock>,
}

impl ServiceSource {
    /// Parse the README at `path` (following includes).
    pub fn load(path: &Path, cache: &SourceCache, diags: &mut Diagnostics) -> Self {
        let blocks = parse_blocks(path, cache, diags);
        Self::from_blocks(&blocks, diags)
    }

    /// Parse README text as if it were at `path` (includes are still read from disk).
    pub fn from_text(path: &Path, text: String, diags: &mut Diagnostics) -> Self {
        let cache = SourceCache::default();
        cache.insert(path, text);
        Self::load(path, &cache, diags)
    }

    /// Interpret parsed blocks.
    pub fn from_blocks(blocks: &[Block], diags: &mut Diagnostics) -> Self {
        let mut out = Self::default();
        let mut seen: BTreeMap<SandboxPath, Loc> = BTreeMap::new();
        for block in blocks {
            match block.kind {
                BlockKind::File => {
                    if let Some(f) = file_block(block, diags) {
                        match seen.get(&f.path) {
                            Some(first) => diags.push(duplicate_path(&f, first)),
                            None => {
                                seen.insert(f.path.clone(), f.loc.clone());
                                out.files.push(f);
                            }
                        }
                    }
                }
                BlockKind::Deps => match Installer::for_lang(block.lang.as_deref()) {
                    Some(installer) => out
                        .deps
                        .entry(installer)
                        .or_default()
                        .extend(deps_lines(block, installer)),
                    None => diags.push(
                        Diagnostic::error(
                            "readme::deps-language",
                            format!(
                                "no installer for `{}` dependencies",
                                block.lang.as_deref().unwrap_or_default()
                            ),
                            &block.loc.file,
                            block.loc.span.clone(),
                        )
                        .with_help("use one of: python (pip), node (npm), go, rust (cargo)"),
                    ),
                },
                BlockKind::Run => {
                    let run = RunBlock {
                        command: block.body.trim_end().to_string(),
                        lang: block.lang.clone(),
                        runtime: runtime_option(block, diags),
                        loc: block.loc.clone(),
                    };
                    if run.command.trim().is_empty() {
                        diags.push(
                            Diagnostic::error(
                                "readme::empty-run",
                                "the run block is empty",
                                &block.loc.file,
                                block.loc.span.clone(),
                            )
                            .with_help(
                                "write the command that starts the service, e.g. `python3 main.py`",
                            ),
                        );
                    }
                    if let Some(first) = &out.run {
                        diags.push(second_block("run", block, first.loc.clone()));
                    } else {
                        out.run = Some(run);
                    }
                }
                BlockKind::Build => {
                    if let Some(first) = &out.build {
                        diags.push(second_block("build", block, first.loc.clone()));
                    } else {
                        out.build = Some(BuildBlock {
                            command: block.body.trim_end().to_string(),
                            loc: block.loc.clone(),
                        });
                    }
                }
                BlockKind::Test => out.tests.push(test_block(block, diags)),
                kind => out.extras.push(ExtraBlock {
                    kind,
                    lang: block.lang.clone(),
                    body: block.body.clone(),
                    loc: block.loc.clone(),
                }),
            }
        }
        check_file_dir_conflicts(&out.files, diags);
        out
    }

    /// The file at `path`, if the README writes one.
    pub fn file(&self, path: &str) -> Option<&FileBlock> {
        self.files.iter().find(|f| f.path.as_str() == path)
    }
}

fn second_block(kind: &str, block: &Block, first: Loc) -> Diagnostic {
    let mut d = Diagnostic::error(
        "readme::second-block",
        format!("a README has at most one `markpact:{kind}` block"),
        &block.loc.file,
        block.loc.span.clone(),
    )
    .with_label("second block");
    if std::sync::Arc::ptr_eq(&first.file, &block.loc.file) {
        d = d.with_secondary(first.span.clone(), "first block");
    }
    d.with_help(format!(
        "the first one is at {first}; merge the commands (e.g. with `&&`) or remove one"
    ))
}

fn runtime_option(block: &Block, diags: &mut Diagnostics) -> Option<RuntimeKind> {
    let m = block.option("runtime")?;
    let kind = RuntimeKind::parse(&m.value);
    if kind.is_none() {
        diags.push(invalid_option(m, "native, wasm-http or wasm-command"));
    }
    kind
}

fn invalid_option(m: &MetaItem, expected: &str) -> Diagnostic {
    Diagnostic::error(
        "readme::option-value",
        format!("invalid value `{}` for `{}`", m.value, m.key),
        &m.loc.file,
        m.loc.span.clone(),
    )
    .with_help(format!("expected {expected}"))
}

fn file_block(block: &Block, diags: &mut Diagnostics) -> Option<FileBlock> {
    // The reference writes `main.py` when a file block has no path; so do we.
    let (raw, loc) = match block.option("path") {
        Some(m) => (m.value.as_str(), m.loc.clone()),
        None => ("main.py", block.loc.clone()),
    };
    let path = match SandboxPath::parse(raw) {
        Ok(p) => p,
        Err(why) => {
            diags.push(
                Diagnostic::error(
                    "readme::file-path",
                    format!("file path {why}"),
                    &loc.file,
                    loc.span.clone(),
                )
                .with_label("must stay inside the service's sandbox")
                .with_help("use a relative path below the sandbox, e.g. `path=app/main.py`"),
            );
            return None;
        }
    };
    let template = match block.option("template") {
        None => false,
        Some(m) => match m.value.as_str() {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" => false,
            _ => {
                diags.push(invalid_option(m, "`true` or `false`"));
                false
            }
        },
    };
    let mode = match block.option("mode") {
        None => None,
        Some(m) => match u32::from_str_radix(&m.value, 8) {
            Ok(v) if v <= 0o777 => Some(v),
            _ => {
                diags.push(invalid_option(
                    m,
                    "octal permissions such as `755` or `0644`",
                ));
                None
            }
        },
    };
    Some(FileBlock {
        path,
        lang: block.lang.clone(),
        content: block.body.clone(),
        template,
        mode,
        loc: block.loc.clone(),
    })
}

fn duplicate_path(f: &FileBlock, first: &Loc) -> Diagnostic {
    let mut d = Diagnostic::error(
        "readme::duplicate-file",
        format!("file `{}` is written twice", f.path.as_str()),
        &f.loc.file,
        f.loc.span.clone(),
    )
    .with_label("second block for this path");
    if std::sync::Arc::ptr_eq(&first.file, &f.loc.file) {
        d = d.with_secondary(first.span.clone(), "first block");
    }
    d.with_help(format!(
        "the first block is at {first}; each file comes from exactly one block"
    ))
}

/// `app` as a file and `app/main.py` cannot both exist.
fn check_file_dir_conflicts(files: &[FileBlock], diags: &mut Diagnostics) {
    for f in files {
        let prefix = format!("{}/", f.path.as_str());
        if let Some(inner) = files.iter().find(|g| g.path.as_str().starts_with(&prefix)) {
            diags.push(
                Diagnostic::error(
                    "readme::file-dir-conflict",
                    format!(
                        "`{}` is a file here, but `{}` needs it to be a directory",
                        f.path.as_str(),
                        inner.path.as_str()
                    ),
                    &f.loc.file,
                    f.loc.span.clone(),
                )
                .with_help(format!(
                    "rename one of them (the other block is at {})",
                    inner.loc
                )),
            );
        }
    }
}

fn deps_lines(block: &Block, installer: Installer) -> Vec<Dep> {
    block
        .body
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let spec = strip_comment(line, installer).trim();
            (!spec.is_empty()).then(|| Dep {
                spec: spec.to_string(),
                loc: block.body_loc(i, Some(spec)),
            })
        })
        .collect()
}

/// Comments: `#` at the start of a line, or after whitespace (pip's rule). Cargo lines keep `#`
/// inside strings.
fn strip_comment(line: &str, installer: Installer) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with("//") && installer == Installer::Npm {
        return "";
    }
    if installer == Installer::Cargo {
        let mut in_str = false;
        for (i, c) in line.char_indices() {
            match c {
                '"' => in_str = !in_str,
                '#' if !in_str => return &line[..i],
                _ => {}
            }
        }
        return line;
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => &line[..i],
        None => line,
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn test_block(block: &Block, diags: &mut Diagnostics) -> Tests {
    let shell = matches!(
        block.lang.as_deref(),
        Some("shell" | "sh" | "bash" | "console")
    );
    if shell {
        let checks = block
            .body
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| ShellCheck {
                command: l.trim().to_string(),
                loc: block.body_loc(i, Some(l.trim())),
            })
            .collect();
        return Tests::Shell(checks);
    }
    if let Some(lang) = block.lang.as_deref().filter(|l| *l != "http") {
        diags.push(
            Diagnostic::warning(
                "readme::test-language",
                format!("test language `{lang}` is not `http` or `shell`; the lines are read as HTTP checks"),
                &block.loc.file,
                block.loc.span.clone(),
            )
            .with_help("write `markpact:test http` for HTTP checks or `markpact:test shell` for commands"),
        );
    }
    let checks = block
        .body
        .lines()
        .enumerate()
        .filter_map(|(i, line)| http_check(block, i, line, diags))
        .collect();
    Tests::Http(checks)
}

fn http_check(
    block: &Block,
    index: usize,
    line: &str,
    diags: &mut Diagnostics,
) -> Option<HttpCheck> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let err = |needle: &str, msg: String, help: &str| {
        let loc = block.body_loc(index, Some(needle));
        Diagnostic::error("readme::test-line", msg, &loc.file, loc.span.clone())
            .with_help(help.to_string())
    };
    const FORM: &str =
        "a check is `METHOD /path [EXPECT code] [BODY {json}]`, e.g. `GET /health EXPECT 200`";
    let mut rest = trimmed;
    let method = next_word(&mut rest);
    let upper = method.to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        diags.push(err(
            method,
            format!("`{method}` is not an HTTP method"),
            FORM,
        ));
        return None;
    }
    let path = next_word(&mut rest);
    if !path.starts_with('/') {
        let msg = if path.is_empty() {
            "the check has no path".to_string()
        } else {
            format!("path `{path}` does not start with `/`")
        };
        diags.push(err(if path.is_empty() { method } else { path }, msg, FORM));
        return None;
    }
    let mut check = HttpCheck {
        method: upper,
        path: path.to_string(),
        expect: None,
        body: None,
        loc: block.body_loc(index, Some(trimmed)),
    };
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            break;
        }
        let word = next_word(&mut rest);
        match word {
            "EXPECT" => {
                let code = next_word(&mut rest);
                match code.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => check.expect = Some(c),
                    _ => {
                        diags.push(err(
                            if code.is_empty() { word } else { code },
                            format!("`{code}` is not an HTTP status code"),
                            "EXPECT takes a status between 100 and 599, e.g. `EXPECT 201`",
                        ));
                        return None;
                    }
                }
            }
            "BODY" => {
                let json = rest.trim_start();
                let mut stream =
                    serde_json::Deserializer::from_str(json).into_iter::<serde_json::Value>();
                match stream.next() {
                    Some(Ok(v)) => {
                        check.body = Some(v);
                        rest = &json[stream.byte_offset()..];
                    }
                    _ => {
                        diags.push(err(
                            if json.is_empty() { word } else { json },
                            "BODY is not valid JSON".to_string(),
                            "write the body as one JSON value on the same line, e.g. `BODY {\"name\":\"x\"}`",
                        ));
                        return None;
                    }
                }
            }
            other => {
                diags.push(err(
                    other,
                    format!("unexpected `{other}` in a test check"),
                    FORM,
                ));
                return None;
            }
        }
    }
    Some(check)
}

fn next_word<'a>(rest: &mut &'a str) -> &'a str {
    let s = rest.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let (w, r) = s.split_at(end);
    *rest = r;
    w
}

/// A `user:` value as uid and gid: `uid:gid`, a numeric uid, or a user name.
pub fn resolve_user(spec: &str) -> Option<(u32, u32)> {
    if let Some((u, g)) = spec.split_once(':') {
        return Some((u.trim().parse().ok()?, g.trim().parse().ok()?));
    }
    if let Ok(uid) = spec.trim().parse::<u32>() {
        return Some((uid, uid));
    }
    let name = std::ffi::CString::new(spec.trim()).ok()?;
    // SAFETY: getpwnam reads the password database; we copy the fields out immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null result of getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths() {
        assert_eq!(
            SandboxPath::parse("a/./b/../c.py").unwrap().as_str(),
            "a/c.py"
        );
        assert!(SandboxPath::parse("../x").is_err());
        assert!(SandboxPath::parse("a/../../x").is_err());
        assert!(SandboxPath::parse("/etc/passwd").is_err());
        assert!(SandboxPath::parse("a/..").is_err());
        assert!(SandboxPath::parse("").is_err());
    }

    #[test]
    fn comments_in_deps() {
        assert_eq!(
            strip_comment("fastapi  # web", Installer::Pip).trim(),
            "fastapi"
        );
        assert_eq!(
            strip_comment("x = { git = \"a#b\" } # c", Installer::Cargo),
            "x = { git = \"a#b\" } "
        );
        assert_eq!(strip_comment("# all", Installer::Pip), "");
    }
}
