//! `pactown validate FILE`: check an ecosystem file and every README it names.

use std::path::PathBuf;

use super::{ExitStatus, Term};

/// Check an ecosystem file and every README it names; errors point at file:line:col.
#[derive(Debug, clap::Args)]
pub struct ValidateCommand {
    /// The ecosystem file (`*.pactown.yaml`).
    pub file: PathBuf,
}

impl ValidateCommand {
    /// Run it.
    pub fn run(self, term: &Term) -> anyhow::Result<ExitStatus> {
        let loaded = super::load(&self.file, term)?;
        let eco = &loaded.ecosystem;
        let n = eco.services.len();
        let warnings = loaded.warnings.iter().count();
        term.success(&format!(
            "{}: ecosystem `{}` is valid ({n} service{}{})",
            self.file.display(),
            eco.name,
            if n == 1 { "" } else { "s" },
            match warnings {
                0 => String::new(),
                1 => ", 1 warning".into(),
                w => format!(", {w} warnings"),
            }
        ));
        Ok(ExitStatus::Success)
    }
}
