//! `pactown bench density --services N`: many copies of one hello service in one pactown.
//! For each step (10, 20, 50, 100, … up to N) an ecosystem of that many copies is started with
//! `up -d` (which returns once every service is ready) and timed, pactown's memory measured
//! (PSS of it and everything it started), and stopped. The copies share one README, so they
//! are built once (identical sources build once, whatever the services are called) and loaded
//! once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::process::Memory;
use super::{Machine, ms};

/// The hello service's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Hello {
    /// A Rust component (wstd).
    Rust,
    /// A JavaScript Worker component.
    Js,
    /// A Python WSGI component.
    Python,
}

impl Hello {
    /// Its README.
    pub fn readme(self) -> &'static str {
        match self {
            Hello::Rust => concat!(
                "# hello\n\n```rust markpact:file path=src/main.rs\n",
                "use pactown_guest::http::{Body, Request, Response, Result};\n\n",
                "#[wstd::http_server]\nasync fn main(_req: Request<Body>) -> Result<Response<Body>> {\n",
                "    Ok(pactown_guest::text(200, \"hello\\n\"))\n}\n```\n"
            ),
            Hello::Js => concat!(
                "# hello\n\n```javascript markpact:file path=index.js\n",
                "export default { fetch() { return new Response(\"hello\\n\"); } };\n```\n"
            ),
            Hello::Python => concat!(
                "# hello\n\n```python markpact:file path=app.py\n",
                "def app(environ, start_response):\n",
                "    start_response(\"200 OK\", [(\"Content-Type\", \"text/plain\")])\n",
                "    return [b\"hello\\n\"]\n```\n"
            ),
        }
    }
}

/// What a density bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The hello service.
    pub hello: Hello,
    /// Building the copies from an empty artifact cache entry (none if already built), ms.
    pub build_ms: f64,
    /// Each step.
    pub steps: Vec<Step>,
    /// PSS each added service costs: the slope of PSS over services (least squares), KiB.
    pub per_added_service_pss_kib: f64,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Services in the ecosystem.
    pub services: usize,
    /// `up -d` start → every service ready, ms.
    pub ready_ms: f64,
    /// pactown and everything it started, once ready.
    pub memory: Memory,
    /// PSS divided by services, KiB.
    pub pss_per_service_kib: f64,
}

/// The steps up to `n`: 10, 20, 50, 100, 200, 500, 1000, … and `n` itself.
pub fn steps(n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = [1usize, 2, 5]
        .iter()
        .cycle()
        .scan(1usize, |decade, &m| {
            let v = m * *decade * 10;
            if m == 5 {
                *decade *= 10;
            }
            Some(v)
        })
        .take_while(|&v| v < n)
        .collect();
    out.push(n);
    out
}

/// Run it.
pub fn run(
    services: usize,
    hello: Hello,
    work: &Path,
    cache: &crate::build::Cache,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Report> {
    if services == 0 {
        bail!("`--services` must be at least 1");
    }
    let readme = work.join("hello/README.md");
    std::fs::create_dir_all(readme.parent().expect("a folder"))?;
    std::fs::write(&readme, hello.readme())?;
    let file = ecosystem(work, services)?;
    // Built once for all: every copy has the same sources.
    let began = Instant::now();
    let loaded = crate::spec::load(&file, &|k| std::env::var(k).ok())
        .map_err(anyhow::Error::from)?
        .ecosystem;
    let prepared = super::Prepared::new(&file, loaded, None, cache, say)?;
    let build_ms = ms(began.elapsed());
    drop(prepared);
    let mut out = Vec::new();
    for n in steps(services) {
        let file = ecosystem(work, n)?;
        let (ready, pid) = up(&file)?;
        let memory = Memory::of_tree(pid);
        down(&file)?;
        let step = Step {
            services: n,
            ready_ms: ms(ready),
            memory,
            pss_per_service_kib: (memory.pss_kib as f64 / n as f64).round(),
        };
        say(&format!(
            "{:5} services: ready in {:8.1} ms · {:8.1} MiB PSS · {:6.0} KiB each",
            n,
            step.ready_ms,
            memory.pss_kib as f64 / 1024.0,
            step.pss_per_service_kib
        ));
        out.push(step);
    }
    let per_added = slope(
        &out.iter()
            .map(|s| (s.services as f64, s.memory.pss_kib as f64))
            .collect::<Vec<_>>(),
    );
    Ok(Report {
        machine: Machine::here(),
        hello,
        build_ms,
        steps: out,
        per_added_service_pss_kib: per_added.round(),
    })
}

/// The ecosystem of `n` copies (ports from the OS).
fn ecosystem(work: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let services: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            (
                format!("hello-{i}"),
                serde_json::json!({"readme": "hello/README.md"}),
            )
        })
        .collect();
    super::write_ecosystem(
        work,
        &format!("density-{n}"),
        &serde_json::json!({"name": format!("density-{n}"), "base_port": 0, "services": services}),
    )
}

/// `pactown up -d FILE`: how long until it returned (every service ready), and the pid of the
/// pactown that runs them.
fn up(file: &Path) -> anyhow::Result<(Duration, u32)> {
    let exe = super::pactown_exe()?;
    let began = Instant::now();
    let out = Command::new(&exe)
        .args(["--color", "never", "up", "-d"])
        .arg(file)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .context("cannot run `pactown up -d`")?;
    let ready = began.elapsed();
    if !out.status.success() {
        bail!(
            "`pactown up -d {}` failed:\n{}",
            file.display(),
            crate::build::step::tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    let status = Command::new(&exe)
        .args(["status", "--json"])
        .arg(file)
        .output()?;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout)
        .context("`pactown status --json` printed no JSON")?;
    let pid = json["pid"]
        .as_u64()
        .context("`pactown status --json` has no pid")?;
    Ok((ready, pid as u32))
}

fn down(file: &Path) -> anyhow::Result<()> {
    let out = Command::new(super::pactown_exe()?)
        .args(["--color", "never", "down"])
        .arg(file)
        .output()?;
    if !out.status.success() {
        bail!(
            "`pactown down` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return points.first().map_or(0.0, |(x, y)| y / x.max(1.0));
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let num: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_grow_by_1_2_5_up_to_n() {
        assert_eq!(steps(1000), vec![10, 20, 50, 100, 200, 500, 1000]);
        assert_eq!(steps(300), vec![10, 20, 50, 100, 200, 300]);
        assert_eq!(steps(5), vec![5]);
    }

    #[test]
    fn the_slope_is_the_cost_per_added_service() {
        let s = slope(&[(10.0, 1100.0), (20.0, 2100.0), (50.0, 5100.0)]);
        assert!((s - 100.0).abs() < 1e-9, "{s}");
    }
}
