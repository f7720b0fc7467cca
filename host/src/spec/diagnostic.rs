//! Diagnostics: every mistake in a README or an ecosystem file becomes one [`Diagnostic`] that
//! names the file, the line and the column, says what is wrong and, where we know it, what would
//! be right. Parsers never stop at the first error: they collect into [`Diagnostics`] so a user
//! fixes everything in one round.
//!
//! Rendering goes through miette's graphical handler (source line plus caret); colour is used
//! only when asked for, which the CLI decides from the terminal and `NO_COLOR`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// A file as read from disk, shared by every diagnostic that points into it.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as it is shown to the user (relative to the working directory when it was given so).
    pub path: PathBuf,
    /// The whole text of the file.
    pub text: String,
}

impl SourceFile {
    /// Wrap a file's text for diagnostics.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            path: path.into(),
            text: text.into(),
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// Byte range of the 1-based line `line`, without its newline.
    pub fn line_range(&self, line: usize) -> Range<usize> {
        let mut start = 0;
        for _ in 1..line {
            match self.text[start..].find('\n') {
                Some(i) => start += i + 1,
                None => return self.text.len()..self.text.len(),
            }
        }
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let end = if self.text[start..end].ends_with('\r') {
            end - 1
        } else {
            end
        };
        start..end
    }

    /// `path:line:col` for a byte offset, the form editors and terminals recognise.
    pub fn location(&self, offset: usize) -> String {
        let (line, col) = self.line_col(offset);
        format!("{}:{line}:{col}", self.path.display())
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stops `validate`, `plan` and `up` before anything starts.
    Error,
    /// Printed, nothing stops.
    Warning,
}

/// A labelled range in the diagnostic's source file.
#[derive(Debug, Clone)]
pub struct Label {
    /// Byte range in the source text.
    pub span: Range<usize>,
    /// Text shown under the caret.
    pub text: Option<String>,
}

/// One problem in the user's input.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable machine-readable code, e.g. `yaml::unknown-field`.
    pub code: &'static str,
    /// What is wrong, lowercase, values in backticks.
    pub message: String,
    /// The file the labels point into, when there is one.
    pub source: Option<Arc<SourceFile>>,
    /// Primary label first.
    pub labels: Vec<Label>,
    /// What would be right.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error pointing at `span` in `source`.
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        source: &Arc<SourceFile>,
        span: Range<usize>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            source: Some(source.clone()),
            labels: vec![Label { span, text: None }],
            help: None,
        }
    }

    /// A warning pointing at `span` in `source`.
    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        source: &Arc<SourceFile>,
        span: Range<usize>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message, source, span)
        }
    }

    /// An error about a file as a whole (missing, unreadable), with no position inside it.
    pub fn file_error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            source: None,
            labels: Vec::new(),
            help: None,
        }
    }

    /// Set the text under the primary caret.
    #[must_use]
    pub fn with_label(mut self, text: impl Into<String>) -> Self {
        if let Some(first) = self.labels.first_mut() {
            first.text = Some(text.into());
        }
        self
    }

    /// Add a secondary label in the same file.
    #[must_use]
    pub fn with_secondary(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: Some(text.into()),
        });
        self
    }

    /// Say what would be right.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `path:line:col` of the primary label, or the path alone.
    pub fn location(&self) -> Option<String> {
        let source = self.source.as_ref()?;
        Some(match self.labels.first() {
            Some(label) => source.location(label.span.start),
            None => source.path.display().to_string(),
        })
    }

    /// Render for a person: source line, caret, help. `color` adds ANSI styling.
    pub fn render(&self, color: bool) -> String {
        use miette::{GraphicalReportHandler, GraphicalTheme};
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false);
        let mut out = String::new();
        if handler.render_report(&mut out, self).is_err() {
            out = format!("{self}\n");
        }
        out
    }
}

/// The message alone: renderers show the location in their own way (miette in its header,
/// [`Diagnostics`]' `Display` as a `path:line:col:` prefix).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_deref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().enumerate().map(|(i, l)| {
            let span = miette::SourceSpan::new(l.span.start.into(), l.span.len());
            if i == 0 {
                miette::LabeledSpan::new_primary_with_span(l.text.clone(), span)
            } else {
                miette::LabeledSpan::new_with_span(l.text.clone(), span)
            }
        })))
    }
}

/// miette reads the text and shows the file's name in the header (`╭─[path:line:col]`).
impl miette::SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.path.display().to_string(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Everything found while loading a spec: errors and warnings, in the order they were found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Record one diagnostic.
    pub fn push(&mut self, diag: Diagnostic) {
        self.items.push(diag);
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// All diagnostics in order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// Take all diagnostics from `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Render all, in order, separated by blank lines.
    pub fn render(&self, color: bool) -> String {
        self.items
            .iter()
            .map(|d| d.render(color))
            .collect::<Vec<_>>()
            .join("")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            match d.location() {
                Some(loc) => writeln!(f, "{loc}: {d}")?,
                None => writeln!(f, "{d}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self { items: vec![d] }
    }
}

/// Suggest the closest of `candidates` to a misspelt `word`, if one is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("x", "ab\nźdé\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // 'ź' is two bytes: the 'd' after it is column 2
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.line_range(2), 3..8);
        assert_eq!(f.line_range(9), 9..9);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("helth_check", ["health_check", "port"]),
            Some("health_check")
        );
        assert_eq!(did_you_mean("zzz", ["health_check", "port"]), None);
    }
}
