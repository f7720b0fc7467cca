//! The `pactown` command line: one module per command, each a clap struct with `run`.
//!
//! Exit codes: 0 success, 1 a user error (bad input, a service that failed), 2 an internal
//! error. Data goes to stdout; messages for people go to stderr.

mod bench;
mod build;
mod control_cmds;
mod deploy;
mod export;
mod generate;
mod graph;
mod init;
mod job;
mod job_view;
mod output;
mod plan;
mod probe;
mod registry;
mod scan;
mod session;
mod test;
mod up;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::{ColorChoice, Term};

/// Whole systems of services from Markdown, sandboxed, in one command.
#[derive(Debug, Parser)]
#[command(
    name = "pactown",
    version,
    about = "Run a whole system of services from Markdown READMEs, each sandboxed (WebAssembly first), with one command.",
    long_about = "Run a whole system of services from Markdown READMEs, each sandboxed (WebAssembly first), with one command.\n\nA service is a README whose code blocks are tagged `markpact:file`, `markpact:deps`, `markpact:run` and `markpact:test`; an ecosystem file (`*.pactown.yaml`) names the services, their ports and dependencies. Start with `pactown init`, then `pactown up FILE`.",
    max_term_width = 100
)]
pub struct Cli {
    /// When to use colour on stderr (`NO_COLOR` is respected in `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// More logging (`-v` debug, `-vv` trace); `PACTOWN_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an ecosystem file and every README it names
    Validate(validate::ValidateCommand),
    /// Show what `up` would do, per service
    Plan(plan::PlanCommand),
    /// Show the dependency graph
    Graph(graph::GraphCommand),
    /// Write a runnable starter ecosystem with two services
    Init(init::InitCommand),
    /// List the markpact READMEs in a folder
    Scan(scan::ScanCommand),
    /// Write an ecosystem file for a folder of READMEs
    Generate(generate::GenerateCommand),
    /// Build every service without starting anything
    Build(build::BuildCommand),
    /// Start every service and keep them running
    Up(up::UpCommand),
    /// Run one README as a service, in the foreground
    Run(up::RunCommand),
    /// Run every service's `markpact:test` checks against its stable address
    Test(test::TestCommand),
    /// Stop a running ecosystem
    Down(control_cmds::DownCommand),
    /// Show what is running
    Status(control_cmds::StatusCommand),
    /// Show service logs
    Logs(control_cmds::LogsCommand),
    /// Restart a service of a running ecosystem
    Restart(control_cmds::ServiceCommand),
    /// Stop one service of a running ecosystem
    Stop(control_cmds::ServiceCommand),
    /// Watch a running ecosystem's files; rebuild and roll what changed
    Watch(control_cmds::WatchCommand),
    /// Start a stopped service of a running ecosystem again
    Start(control_cmds::ServiceCommand),
    /// Run durable, reversible jobs over the services (`builtin: job-control`) and look at them
    Job(job::JobCommand),
    /// Publish the ecosystem's services to a registry
    Publish(registry::PublishCommand),
    /// Fetch the services the ecosystem depends on from registries, into `pactown.lock`
    Pull(registry::PullCommand),
    /// Serve a registry, or read one
    Registry(registry::RegistryCommand),
    /// Measure cold starts, per-request cost, throughput and memory, against peers
    Bench(bench::BenchCommand),
    /// Write (and build) a deployment for Kubernetes, Compose or Podman Quadlet
    Deploy(deploy::DeployCommand),
    /// Write what another runtime runs (a workerd config of the Workers)
    Export(export::ExportCommand),
    /// GET a URL once and succeed on 2xx/3xx (a container's health check)
    Probe(probe::ProbeCommand),
    /// Internal: the sandbox shim pactown starts native services through
    #[command(hide = true)]
    SandboxExec(SandboxExecCommand),
}

/// `pactown sandbox-exec --spec JSON`: the runtime owns the format ([`pactown_runtime::native::ShimArgs`]).
#[derive(Debug, clap::Args)]
pub struct SandboxExecCommand {
    /// The shim's arguments, as the runtime wrote them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub raw: Vec<String>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exit 0.
    Success,
    /// Exit 1: the user's input or services failed; the message was already printed.
    Failure,
}

/// A failure caused by the user's input, reported without "internal error".
#[derive(Debug)]
pub struct UserError {
    /// What is wrong.
    pub message: String,
    /// What would be right.
    pub hint: Option<String>,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

/// Return a [`UserError`] from a command.
pub fn user_error(message: impl Into<String>, hint: Option<&str>) -> anyhow::Error {
    UserError {
        message: message.into(),
        hint: hint.map(str::to_string),
    }
    .into()
}

/// Run the CLI with the process's arguments.
pub fn main() -> ExitCode {
    if starts_services(std::env::args_os().skip(1)) {
        crate::telemetry::start::mark(crate::telemetry::start::Stage::Main);
        crate::orchestrator::engine_start::EngineStart::ahead();
    }
    let cli = Cli::parse();
    // The shim must stay single-threaded and quiet: dispatch it before anything else.
    if let Command::SandboxExec(c) = cli.command {
        pactown_runtime::native::shim::main(&c.raw);
    }
    let term = Term::new(cli.color);
    crate::telemetry::init(cli.verbose, term.color);
    let result = match cli.command {
        Command::Validate(c) => c.run(&term),
        Command::Plan(c) => c.run(&term),
        Command::Graph(c) => c.run(&term),
        Command::Init(c) => c.run(&term),
        Command::Scan(c) => c.run(&term),
        Command::Generate(c) => c.run(&term),
        Command::Build(c) => c.run(&term),
        Command::Up(c) => c.run(&term),
        Command::Run(c) => c.run(&term),
        Command::Test(c) => c.run(&term),
        Command::Down(c) => c.run(&term),
        Command::Status(c) => c.run(&term),
        Command::Logs(c) => c.run(&term),
        Command::Restart(c) => c.run(control_cmds::ServiceAction::Restart, &term),
        Command::Stop(c) => c.run(control_cmds::ServiceAction::Stop, &term),
        Command::Watch(c) => c.run(&term),
        Command::Start(c) => c.run(control_cmds::ServiceAction::Start, &term),
        Command::Job(c) => c.run(&term),
        Command::Publish(c) => c.run(&term),
        Command::Pull(c) => c.run(&term),
        Command::Registry(c) => c.run(&term),
        Command::Bench(c) => c.run(&term),
        Command::Deploy(c) => c.run(&term),
        Command::Export(c) => c.run(&term),
        Command::Probe(c) => c.run(&term),
        Command::SandboxExec(_) => unreachable!("dispatched above"),
    };
    finish(result, &term)
}

/// Whether the command line (without the program's name) is a command that starts services
/// (`run`, `up`, `test`): its first word that is neither a global option nor an option's value.
/// Asked before the command line is parsed, to begin the wasm engine at once; a wrong guess
/// costs an engine made on the other core and dropped.
fn starts_services(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--color") => drop(args.next()),
            Some(a) if a.starts_with("--color=") || a == "--verbose" => {}
            Some(a)
                if a.starts_with('-')
                    && !a.starts_with("--")
                    && a[1..].bytes().all(|b| b == b'v') => {}
            Some(word) => return matches!(word, "run" | "up" | "test"),
            None => return false,
        }
    }
    false
}

/// `pactown-registry`: the registry server, with the Python pactown's flags (`--host`,
/// `--port`, `--storage`, `--reload`) and ours (`--token-file`, `--private`).
#[derive(Debug, Parser)]
#[command(
    name = "pactown-registry",
    version,
    about = "Serve a pactown registry: publish and pull services, immutable, verified and authorised",
    max_term_width = 100
)]
struct RegistryCli {
    #[command(flatten)]
    serve: registry::ServeCommand,
}

/// Run `pactown-registry` with the process's arguments.
pub fn registry_main() -> ExitCode {
    let cli = RegistryCli::parse();
    let term = Term::new(ColorChoice::Auto);
    crate::telemetry::init(0, term.color);
    finish(cli.serve.run(&term), &term)
}

/// Turn a command's result into the process exit code, printing any error.
pub fn finish(result: anyhow::Result<ExitStatus>, term: &Term) -> ExitCode {
    match result {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Failure) => ExitCode::from(1),
        Err(err) => {
            if let Some(diags) = err.downcast_ref::<crate::spec::Diagnostics>() {
                term.diagnostics(diags);
                let n = diags.error_count();
                term.error(&format!(
                    "{n} error{} found; nothing was started",
                    if n == 1 { "" } else { "s" }
                ));
                return ExitCode::from(1);
            }
            if let Some(user) = err.downcast_ref::<UserError>() {
                term.error(&user.message);
                for cause in err.chain().skip(1) {
                    term.note(&format!("caused by: {cause}"));
                }
                if let Some(h) = &user.hint {
                    term.hint(h);
                }
                return ExitCode::from(1);
            }
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            term.error(&format!("internal error: {err}"));
            for cause in err.chain().skip(1) {
                term.note(&format!("caused by: {cause}"));
            }
            term.hint("this is a bug in pactown; please report it with the command you ran");
            ExitCode::from(2)
        }
    }
}

/// A closed stdout (`pactown plan --json | head`): the error itself, not one it was caused by
/// (a socket pactown talks to that closed on it is a real failure).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    // `anyhow`'s own downcast looks through context; the outermost error alone counts here.
    let outer = err.chain().next();
    outer
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        // `serde_json::to_writer` wraps the writer's error in its own.
        || outer
            .and_then(|e| e.downcast_ref::<serde_json::Error>())
            .and_then(|e| e.io_error_kind())
            == Some(std::io::ErrorKind::BrokenPipe)
}

/// Load an ecosystem (or a single README, as a one-service ecosystem), print its warnings,
/// and turn errors into the CLI's failure.
pub(crate) fn load(path: &std::path::Path, term: &Term) -> anyhow::Result<crate::spec::Loaded> {
    let env = |k: &str| std::env::var(k).ok();
    let is_readme = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("md"));
    let result = if is_readme {
        crate::spec::load_readme(path, None)
    } else {
        crate::spec::load(path, &env)
    };
    match result {
        Ok(loaded) => {
            term.diagnostics(&loaded.warnings);
            Ok(loaded)
        }
        Err(diags) => Err(diags.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    /// The guess made before parsing agrees with the parse, whatever global options come first.
    #[test]
    fn the_engine_is_begun_ahead_exactly_for_commands_that_start_services() {
        for line in [
            "run README.md",
            "--color never run README.md --port=8001",
            "--color=never up shop.pactown.yaml",
            "-vv test README.md",
            "--verbose -v up x.pactown.yaml -d",
            "validate run",
            "--color never validate up.pactown.yaml",
            "build README.md",
            "bench coldstart README.md",
            "sandbox-exec run",
            "status shop.pactown.yaml",
        ] {
            let args: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            let parsed = Cli::try_parse_from(std::iter::once("pactown".into()).chain(args.clone()))
                .unwrap_or_else(|e| panic!("`{line}`: {e}"));
            let starts = matches!(
                parsed.command,
                Command::Run(_) | Command::Up(_) | Command::Test(_)
            );
            assert_eq!(starts_services(args), starts, "`{line}`");
        }
    }
}
