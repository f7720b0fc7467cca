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
        // The toolchains each service needs: present, or installed by pactown on first use.
        let facts = crate::facts::HostFacts::for_ecosystem(eco);
        let mut missing = 0;
        for s in eco.services.values() {
            let lang = crate::spec::language::language(s);
            for (tool, status) in facts
                .tools
                .iter()
                .filter(|(t, _)| crate::facts::tools_needed_by(s).contains(t))
            {
                let line = format!(
                    "`{}` ({}) needs {}: {}",
                    s.name,
                    lang.as_str(),
                    tool.as_str(),
                    status.describe()
                );
                if status.usable() {
                    term.info(&line);
                } else {
                    missing += 1;
                    term.error(&line);
                }
            }
        }
        if missing > 0 {
            return Ok(ExitStatus::Failure);
        }
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
