//! pactown's host: everything between the user's files and the runtime.
//!
//! Data flows one way: [`spec`] parses what the user wrote, [`graph`] orders it, [`plan`]
//! describes what will run, [`build`] prepares sandboxes, [`orchestrator`] runs them behind the
//! [`router`]'s stable addresses, [`control`] lets any terminal reach a running ecosystem, and
//! the CLI ([`cli`]) drives it all. The runtime crate never sees
//! Markdown or YAML.

pub mod bench;
pub mod build;
pub mod cli;
pub mod control;
pub mod deploy;
pub mod facts;
pub mod jobs;
pub mod jsonlog;
pub mod orchestrator;
pub mod plan;
pub mod registry;
pub mod router;
pub mod spec;
pub mod telemetry;
