//! `pactown-registry`: `pactown registry serve` under the Python pactown's command name.

fn main() -> std::process::ExitCode {
    pactown_host::cli::registry_main()
}
