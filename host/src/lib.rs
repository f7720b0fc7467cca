//! pactown's host: everything between the user's files and the runtime.
//!
//! Data flows one way: [`spec`] parses what the user wrote, [`graph`] orders it, [`plan`]
//! describes what will run, and the CLI ([`cli`]) drives it. The runtime crate never sees
//! Markdown or YAML.

pub mod cli;
pub mod graph;
pub mod plan;
pub mod spec;
pub mod telemetry;
