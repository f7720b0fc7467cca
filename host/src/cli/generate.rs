//! `pactown generate DIR [-o FILE] [-p BASE_PORT]`: an ecosystem file for a folder of READMEs.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::scan::{Found, scan};
use super::{ExitStatus, Term, user_error};

/// Write an ecosystem file for every markpact README below a folder. Ports never collide (a
/// run command's own default port is kept when free), health checks come from the READMEs'
/// tests, and `depends_on` from the `<NAME>_URL` variables their files use. The result is
/// checked with `validate` before it is written.
#[derive(Debug, clap::Args)]
pub struct GenerateCommand {
    /// The folder to search.
    pub dir: PathBuf,
    /// Where to write (default: stdout, with README paths relative to the current folder).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// First port for services without one of their own.
    #[arg(short = 'p', long, default_value_t = 8000)]
    pub base_port: u16,
    /// Ecosystem name (default: the folder's name).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Overwrite the output file.
    #[arg(long)]
    pub force: bool,
}

impl GenerateCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let found = scan(&self.dir)?;
        if found.is_empty() {
            return Err(user_error(
                format!("no markpact README found below `{}`", self.dir.display()),
                Some(
                    "a service README has code blocks tagged `markpact:file`, `markpact:run`, ...",
                ),
            ));
        }
        if let Some(out) = &self.output
            && out.exists()
            && !self.force
        {
            return Err(user_error(
                format!("`{}` already exists; nothing was written", out.display()),
                Some("choose another file with `-o`, or pass `--force`"),
            ));
        }
        let target = self
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("generated.pactown.yaml"));
        let base = target.parent().unwrap_or(Path::new("")).to_path_buf();
        let name = self.name.clone().unwrap_or_else(|| {
            std::fs::canonicalize(&self.dir)
                .ok()
                .and_then(|p| {
                    p.file_name()
                        .map(|n| crate::spec::sanitize_name(&n.to_string_lossy()))
                })
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "generated".into())
        });
        let yaml = render(&name, self.base_port, &found, &base)?;
        // Prove it before anyone relies on it.
        let env = |k: &str| std::env::var(k).ok();
        if let Err(diags) = crate::spec::load_str(&target, yaml.clone(), &env) {
            term.diagnostics(&diags);
            return Err(user_error(
                "the generated ecosystem does not validate (the errors above are in the READMEs it names)",
                Some("fix the READMEs, then run `pactown generate` again"),
            ));
        }
        match &self.output {
            Some(path) => {
                std::fs::write(path, &yaml)?;
                term.success(&format!(
                    "wrote {} with {} services",
                    path.display(),
                    found.len()
                ));
            }
            None => std::io::stdout().lock().write_all(yaml.as_bytes())?,
        }
        Ok(ExitStatus::Success)
    }
}

/// The YAML text. README paths are relative to `base` (the output file's folder).
fn render(name: &str, base_port: u16, found: &[Found], base: &Path) -> anyhow::Result<String> {
    // Ports: run-command defaults first when unique, then base_port upward.
    let mut used: HashSet<u16> = HashSet::new();
    let mut ports: Vec<Option<u16>> = vec![None; found.len()];
    for (i, f) in found.iter().enumerate() {
        if let Some(p) = f.port_hint
            && used.insert(p)
        {
            ports[i] = Some(p);
        }
    }
    let mut next = u32::from(base_port);
    for slot in ports.iter_mut().filter(|p| p.is_none()) {
        while next <= 65535 && used.contains(&(next as u16)) {
            next += 1;
        }
        if next > 65535 {
            return Err(user_error(
                "ran out of ports above the base port",
                Some("pass a lower `-p BASE_PORT`"),
            ));
        }
        used.insert(next as u16);
        *slot = Some(next as u16);
    }
    // Dependencies, dropping any edge that would close a cycle.
    let index = |n: &str| found.iter().position(|f| f.name == n);
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); found.len()];
    for (i, f) in found.iter().enumerate() {
        for r in &f.refers_to {
            if let Some(j) = index(r)
                && !reaches(&deps, j, i)
            {
                deps[i].push(j);
            }
        }
    }
    let mut y = String::new();
    writeln!(y, "# Generated by `pactown generate`; edit freely.")?;
    writeln!(y, "name: {name}")?;
    writeln!(y, "version: 0.1.0")?;
    writeln!(y, "base_port: {base_port}")?;
    writeln!(y)?;
    writeln!(y, "services:")?;
    for (i, f) in found.iter().enumerate() {
        writeln!(y, "  {}:", f.name)?;
        writeln!(y, "    readme: {}", relative(&f.readme, base).display())?;
        if let Some(p) = ports[i] {
            writeln!(y, "    port: {p}")?;
        }
        if let Some(h) = &f.health_check {
            writeln!(y, "    health_check: {h}")?;
        }
        if !deps[i].is_empty() {
            writeln!(y, "    depends_on:")?;
            for &j in &deps[i] {
                writeln!(y, "      - {}", found[j].name)?;
            }
        }
    }
    Ok(y)
}

/// Is `to` reachable from `from` along `deps`?
fn reaches(deps: &[Vec<usize>], from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; deps.len()];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if !std::mem::replace(&mut seen[n], true) {
            stack.extend(&deps[n]);
        }
    }
    false
}

/// `path` relative to `base`, both relative to the current folder or both absolute.
fn relative(path: &Path, base: &Path) -> PathBuf {
    let abs = |p: &Path| {
        if p.is_absolute() {
            crate::spec::source::normalize(p)
        } else {
            crate::spec::source::normalize(&std::env::current_dir().unwrap_or_default().join(p))
        }
    };
    let (path, base) = (abs(path), abs(base));
    let common = path
        .components()
        .zip(base.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in base.components().skip(common) {
        out.push("..");
    }
    for c in path.components().skip(common) {
        out.push(c);
    }
    out
}
