//! What a sandbox's supervisor tells pactown while the service runs, one JSON line each, on a
//! pipe the service itself never holds (descriptor 3 of the shim, closed on exec).

use std::io::Write;
use std::os::fd::{BorrowedFd, FromRawFd};

use serde::{Deserialize, Serialize};

/// The descriptor the shim receives its report pipe on.
pub const REPORT_FD: i32 = 3;

/// One report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case", deny_unknown_fields)]
pub enum Report {
    /// The kernel (through the supervisor) refused something the service tried.
    Denied {
        /// What it tried (`tcp connect`, `syscall`, `socket`).
        action: String,
        /// At what (`127.0.0.1:8003`, `io_uring_setup`, `AF_INET stream protocol 262`).
        target: String,
        /// How many times so far (reports are sent at 1, 10, 100, … of the same denial).
        count: u64,
    },
    /// The sandbox could not be made (a grant refused, a mount the kernel would not make):
    /// nothing of the service ran, and starting it again as it is would fail the same way.
    SandboxFailed {
        /// Why, as the shim says it.
        error: String,
    },
}

impl Report {
    /// Send it on the report pipe; dropped when the pipe is full or gone (a report never
    /// blocks the service).
    pub fn send(&self) {
        // SAFETY: fd 3 is the report pipe when the shim was given one; a closed descriptor only
        // makes the write fail. `ManuallyDrop` keeps it open.
        let Ok(mut line) = serde_json::to_string(self) else {
            return;
        };
        line.push('\n');
        let fd = unsafe { BorrowedFd::borrow_raw(REPORT_FD) };
        if rustix::io::fcntl_getfd(fd).is_err() {
            return;
        }
        let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(REPORT_FD) });
        // One write of less than PIPE_BUF bytes is atomic among the shim's processes.
        let _ = f.write(line.as_bytes());
    }

    /// Parse one line.
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let r = Report::Denied {
            action: "tcp connect".into(),
            target: "127.0.0.1:9".into(),
            count: 1,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"report":"denied","action":"tcp connect","target":"127.0.0.1:9","count":1}"#
        );
        assert_eq!(Report::parse(&text), Some(r));
    }
}
