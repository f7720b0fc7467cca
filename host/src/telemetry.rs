//! Logging: `tracing` events from every crate, written to stderr by the one subscriber the
//! binary installs. `-v` / `-vv` raise pactown's level; `PACTOWN_LOG` (an `EnvFilter`
//! directive such as `pactown_host=debug`) overrides both.

use tracing_subscriber::EnvFilter;

/// Install the subscriber. Safe to call once per process.
pub fn init(verbose: u8, color: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "pactown_host=debug,pactown_runtime=debug,warn",
        _ => "pactown_host=trace,pactown_runtime=trace,info",
    };
    let filter = EnvFilter::try_from_env("PACTOWN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(verbose > 0)
        .try_init();
}

pub mod start;
