//! End-to-end tests: the real `pactown` binary on real READMEs, with real child processes and
//! real HTTP on 127.0.0.1. One test binary for link time; modules by area.

mod support;
mod support_up;

mod as_user;
mod attackers;
mod bench;
mod builds;
mod checks;
mod containment;
mod dashboard;
mod deploy;
mod devloop;
mod fresh;
mod grants;
mod jobs;
mod js_wasm;
mod python_wasm;
mod reference;
mod registry;
mod routing;
mod sandbox;
mod scene;
mod shared_state;
mod spec_cli;
mod up;
mod wasm;
