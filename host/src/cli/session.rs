//! The CLI's side of a session (see [`crate::orchestrator::session`]): it runs one in a tokio
//! runtime, prints what it reports, relays it to a parent waiting on a detached `up`, and turns
//! how it ended into an exit status. `up`, `run` and `test` all go through here.

use std::io::Write;
use std::sync::Arc;

use super::{ExitStatus, Term, user_error};
use crate::control::status;
use crate::orchestrator::StartFailure;
use crate::orchestrator::checks::{CheckResult, Tally};
use crate::orchestrator::session::{
    self, AlreadyRunning, Ended, Mode, Ready, Reporter, SessionOptions,
};
use crate::spec::Ecosystem;

/// A multi-threaded runtime for the orchestrator (children are forked from its worker threads,
/// which live as long as it does; see the parent-death signal in the shim).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = rt.block_on(f);
    // Everything was stopped in order already; do not wait on stragglers to exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    out
}

/// What a detached `up` tells the parent waiting for it, one JSON line each.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "relay", rename_all = "snake_case")]
pub(crate) enum RelayMessage {
    /// Progress for the user (`pactown: …`).
    Say {
        /// The text (may span lines).
        text: String,
    },
    /// A warning.
    Warn {
        /// The text.
        text: String,
    },
    /// Every service is ready.
    Ready,
    /// `up` failed; everything it started is stopped.
    Failed {
        /// What went wrong (may span lines).
        text: String,
    },
}

/// The pipe to a detaching parent: [`RelayMessage`]s while starting, then `Ready` or
/// `Failed`. Clones share the pipe.
#[derive(Clone)]
pub(crate) struct Relay(Arc<std::sync::Mutex<Option<std::fs::File>>>);

impl Relay {
    pub(crate) fn new(f: std::fs::File) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(f))))
    }

    fn send(&self, msg: &RelayMessage) {
        if let Ok(mut g) = self.0.lock()
            && let Some(f) = g.as_mut()
            && let Ok(line) = serde_json::to_string(msg)
        {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }

    /// Send the last message and close the pipe.
    fn finish(&self, msg: &RelayMessage) {
        self.send(msg);
        if let Ok(mut g) = self.0.lock() {
            g.take();
        }
    }
}

/// How `up` runs.
#[derive(Default)]
pub(crate) struct UpHow {
    /// Copy service output to the terminal.
    pub console: bool,
    /// A detaching parent to tell.
    pub ready: Option<Relay>,
    /// The admin/gateway address.
    pub listen: Option<std::net::SocketAddr>,
    /// Where stable addresses are bound.
    pub bind: Option<std::net::IpAddr>,
    /// Run the checks once ready, then stop.
    pub once: bool,
    /// Start in dependency waves instead of all at once.
    pub waves: bool,
    /// Restart buttons on the dashboard.
    pub dashboard_actions: bool,
    /// Watch and reload (`Some(cascade)`).
    pub watch: Option<bool>,
}

/// Bring `eco` up; with `once`, run its checks when it is ready and stop, else keep it running
/// until it is told to stop. The lifecycle is the session's; this prints what it reports and
/// relays it to a waiting parent.
pub(crate) async fn up(eco: Ecosystem, term: Term, how: UpHow) -> anyhow::Result<ExitStatus> {
    let UpHow {
        console,
        ready,
        listen,
        bind,
        once,
        waves,
        dashboard_actions,
        watch,
    } = how;
    let name = eco.name.clone();
    let reporter = Arc::new(CliReporter {
        term: term.clone(),
        relay: ready.clone(),
    });
    let opts = SessionOptions {
        console,
        color: term.color,
        listen,
        bind: bind.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        mode: if once { Mode::Check } else { Mode::Serve },
        waves,
        dashboard_actions,
        watch,
    };
    match session::run(eco, opts, reporter).await {
        Ok(Ended::Stopped) => Ok(ExitStatus::Success),
        Ok(Ended::Checked(tally)) => Ok(summary(&term, &name, tally)),
        Ok(Ended::Interrupted) => {
            notify(
                &ready,
                RelayMessage::Failed {
                    text: "interrupted while starting".into(),
                },
            );
            Ok(ExitStatus::Failure)
        }
        Err(e) => {
            if let Some(running) = e.downcast_ref::<AlreadyRunning>() {
                notify(
                    &ready,
                    RelayMessage::Failed {
                        text: running.message.clone(),
                    },
                );
                return Err(user_error(
                    running.message.clone(),
                    Some("see it with `pactown status`, stop it with `pactown down`"),
                ));
            }
            notify(
                &ready,
                RelayMessage::Failed {
                    text: failure_text(&e),
                },
            );
            report_failure(&term, &e);
            Ok(ExitStatus::Failure)
        }
    }
}

/// What the session reports, on the terminal and to a waiting parent.
struct CliReporter {
    term: Term,
    relay: Option<Relay>,
}

impl Reporter for CliReporter {
    fn say(&self, text: &str) {
        self.term.info(&format!("pactown: {text}"));
        if let Some(r) = &self.relay {
            r.send(&RelayMessage::Say {
                text: text.to_string(),
            });
        }
    }

    fn warn(&self, text: &str) {
        self.term.warn(text);
        if let Some(r) = &self.relay {
            r.send(&RelayMessage::Warn {
                text: text.to_string(),
            });
        }
    }

    fn ready(&self, ready: &Ready) {
        let stats = ready.stats;
        let wasm = if stats.compiled + stats.loaded > 0 {
            format!(
                "; wasm: {} toolchain build{}, {} compiled, {} loaded precompiled",
                stats.toolchain_builds,
                if stats.toolchain_builds == 1 { "" } else { "s" },
                stats.compiled,
                stats.loaded
            )
        } else {
            String::new()
        };
        self.term.info(&format!(
            "\n{}\n{} ready in {} ms (state in {}{wasm})",
            status::table(&ready.status, self.term.color).trim_end(),
            ready.status.ecosystem,
            ready.elapsed.as_millis(),
            ready.state_dir.display()
        ));
        notify(&self.relay, RelayMessage::Ready);
    }

    fn check(&self, result: &CheckResult<'_>) {
        print_check(&self.term, result);
    }
}

fn failure_text(e: &anyhow::Error) -> String {
    if let Some(d) = e.downcast_ref::<crate::spec::Diagnostics>() {
        let n = d.error_count();
        return format!(
            "{}\n{n} error{} found; nothing was started",
            d.render(false).trim_end(),
            if n == 1 { "" } else { "s" }
        );
    }
    match e.downcast_ref::<StartFailure>() {
        Some(f) => {
            let mut s = f.message.clone();
            for l in &f.tail {
                s.push_str("\n    ");
                s.push_str(l);
            }
            s
        }
        None => format!("{e:#}"),
    }
}

fn report_failure(term: &Term, e: &anyhow::Error) {
    if let Some(d) = e.downcast_ref::<crate::spec::Diagnostics>() {
        term.diagnostics(d);
        let n = d.error_count();
        term.error(&format!(
            "{n} error{} found; nothing was started",
            if n == 1 { "" } else { "s" }
        ));
        return;
    }
    match e.downcast_ref::<StartFailure>() {
        Some(f) => {
            term.error(&f.message);
            if !f.tail.is_empty() {
                term.note("last lines of its log:");
                for l in &f.tail {
                    term.note(&format!("  {l}"));
                }
            }
            term.note(&format!("full log: {}", f.log.display()));
            term.note("everything that was started has been stopped");
        }
        None => {
            term.error(&format!("{e:#}"));
            term.note("everything that was started has been stopped");
        }
    }
}

pub(crate) fn notify(ready: &Option<Relay>, msg: RelayMessage) {
    if let Some(r) = ready {
        r.finish(&msg);
    }
}

/// Print one check's result: `ok` with how it went, or the failure with its README line.
pub(crate) fn print_check(term: &Term, r: &CheckResult<'_>) {
    match &r.outcome {
        Ok(how) => term.info(&format!("  ok    {}  {}  {how}", r.service, r.what)),
        Err(why) => {
            let at = r.loc.map_or(String::new(), |loc| {
                let (line, col) = loc.file.line_col(loc.span.start);
                format!("\n  --> {}:{line}:{col}", loc.file.path.display())
            });
            term.error(&format!("{}  {}: {why}{at}", r.service, r.what));
        }
    }
}

/// Print the tally; the exit status follows it.
pub(crate) fn summary(term: &Term, ecosystem: &str, t: Tally) -> ExitStatus {
    term.info(&format!(
        "{ecosystem}: {} check{} passed, {} failed",
        t.passed,
        if t.passed == 1 { "" } else { "s" },
        t.failed
    ));
    if t.failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::RelayMessage;

    #[test]
    fn relay_messages_on_the_wire() {
        let cases = [
            (
                RelayMessage::Say {
                    text: "building\nwith uv".into(),
                },
                r#"{"relay":"say","text":"building\nwith uv"}"#,
            ),
            (
                RelayMessage::Warn { text: "w".into() },
                r#"{"relay":"warn","text":"w"}"#,
            ),
            (RelayMessage::Ready, r#"{"relay":"ready"}"#),
            (
                RelayMessage::Failed { text: "x".into() },
                r#"{"relay":"failed","text":"x"}"#,
            ),
        ];
        for (msg, wire) in cases {
            // One line each: a text's newlines are escaped, never split the message.
            assert_eq!(serde_json::to_string(&msg).unwrap(), wire);
            assert_eq!(serde_json::from_str::<RelayMessage>(wire).unwrap(), msg);
        }
        assert!(serde_json::from_str::<RelayMessage>(r#"{"relay":"ok"}"#).is_err());
    }
}
