//! Messages for people, on stderr: errors, warnings, hints, progress. Colour only on a terminal
//! (or when forced), never when `NO_COLOR` is set, and nothing that needs colour to be read.

use std::io::{IsTerminal, Write};

use crate::spec::Diagnostics;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Where people's messages go.
#[derive(Debug, Clone)]
pub struct Term {
    /// Whether to use ANSI colour on stderr.
    pub color: bool,
}

impl Term {
    /// Decide colour once.
    pub fn new(choice: ColorChoice) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
        };
        Self { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// `error: …`
    pub fn error(&self, msg: &str) {
        self.line(&format!("{} {msg}", self.paint("1;31", "error:")));
    }

    /// `warning: …`
    pub fn warn(&self, msg: &str) {
        self.line(&format!("{} {msg}", self.paint("1;33", "warning:")));
    }

    /// `hint: …`
    pub fn hint(&self, msg: &str) {
        self.line(&format!("{} {msg}", self.paint("1;36", "hint:")));
    }

    /// An indented note.
    pub fn note(&self, msg: &str) {
        self.line(&format!("  {msg}"));
    }

    /// A success line.
    pub fn success(&self, msg: &str) {
        self.line(&format!("{} {msg}", self.paint("1;32", "✓")));
    }

    /// Progress or information.
    pub fn info(&self, msg: &str) {
        self.line(msg);
    }

    /// Bold text (for tables).
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Dim text.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A coloured word; `code` is an ANSI SGR code.
    pub fn colored(&self, code: &str, text: &str) -> String {
        self.paint(code, text)
    }

    /// Render diagnostics with their source lines.
    pub fn diagnostics(&self, diags: &Diagnostics) {
        if diags.is_empty() {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{}", diags.render(self.color));
    }
}
