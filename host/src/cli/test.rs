//! `pactown test FILE` and `pactown run README.md --once`: every service's `markpact:test` checks,
//! sent to its stable address. `test` checks a running ecosystem as it is; one that is not
//! running is started for the checks and stopped after them. Exit 1 when any check fails.

use std::path::PathBuf;

use super::session::{print_check, summary};
use super::{ExitStatus, Term};
use crate::control::StateDir;
use crate::orchestrator::checks;

/// Run every service's `markpact:test` checks against its stable address.
#[derive(Debug, clap::Args)]
pub struct TestCommand {
    /// The ecosystem file, or one README.
    pub file: PathBuf,
    /// Where the admin endpoint and gateway listen when the ecosystem is started for the checks
    /// (see `up --listen`).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

impl TestCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let eco = super::load(&self.file, term)?.ecosystem;
        if !eco.services.values().any(|s| !s.content.tests.is_empty()) {
            term.info(&format!(
                "{}: no service has a `markpact:test` block; nothing to check",
                eco.name
            ));
            return Ok(ExitStatus::Success);
        }
        let state = StateDir::new(&eco.state_dir);
        let running = state.try_lock()?.is_none();
        if !running {
            // Service output goes to the log files only: the results are what this shows.
            return super::session::block_on(super::session::up(
                eco,
                term.clone(),
                super::session::UpHow {
                    listen: self.listen,
                    once: true,
                    ..Default::default()
                },
            ));
        }
        // Running (`up -d`, or `up` in another terminal): check it as it is.
        let Some(ports) = state.read_state().map(|s| s.ports) else {
            return Err(super::user_error(
                format!("ecosystem `{}` is starting or stopping", eco.name),
                Some("try again once `pactown status` shows it running"),
            ));
        };
        let term = term.clone();
        super::session::block_on(async move {
            let port_of = |name: &str| ports.get(name).copied().flatten();
            let tally = checks::run(&eco, &port_of, &|r| print_check(&term, r)).await;
            Ok(summary(&term, &eco.name, tally))
        })
    }
}
