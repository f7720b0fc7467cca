//! The shim's command line, owned here: one type writes it (pactown, starting a sandbox) and
//! parses it (the shim), so the two cannot drift apart.

use serde::{Deserialize, Serialize};

use super::sandbox::SandboxPolicy;

/// What `pactown sandbox-exec` runs and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimArgs {
    /// The pid pactown had when it started us; if our parent is already another process, pactown
    /// died before we could ask for the death signal.
    pub parent_pid: Option<i32>,
    /// Sandbox layers to apply.
    pub policy: SandboxPolicy,
    /// The command and its arguments.
    pub argv: Vec<String>,
}

impl ShimArgs {
    /// The subcommand of the pactown binary that runs the shim.
    pub const SUBCOMMAND: &'static str = "sandbox-exec";
    const SPEC: &'static str = "--spec";

    /// The arguments after the pactown binary's path.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            Self::SUBCOMMAND.to_string(),
            Self::SPEC.to_string(),
            serde_json::to_string(self).expect("shim arguments serialize"),
        ]
    }

    /// Parse the arguments after the subcommand.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        match args {
            [flag, spec] if flag == Self::SPEC => {
                serde_json::from_str(spec).map_err(|e| format!("bad {}: {e}", Self::SPEC))
            }
            _ => Err(format!(
                "usage: pactown {} {} JSON (pactown starts this itself)",
                Self::SUBCOMMAND,
                Self::SPEC
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = ShimArgs {
            parent_pid: Some(7),
            policy: SandboxPolicy {
                no_new_privs: true,
                ..Default::default()
            },
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
        };
        let args = a.to_args();
        assert_eq!(args[0], ShimArgs::SUBCOMMAND);
        assert_eq!(ShimArgs::parse(&args[1..]), Ok(a));
        assert!(ShimArgs::parse(&["--policy".into(), "{}".into()]).is_err());
    }
}
