//! The `pactown` binary: all logic lives in `pactown-host`.
fn main() -> std::process::ExitCode {
    pactown_host::cli::main()
}
