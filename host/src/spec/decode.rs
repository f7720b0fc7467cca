//! Typed reads of YAML nodes: every read either returns a value or records a diagnostic that
//! points at the node and says which type was expected. Scalars are interpolated (`${VAR}`)
//! before they are interpreted, so `port: ${API_PORT:-8001}` is a port.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::diagnostic::{Diagnostic, Diagnostics, SourceFile, did_you_mean};
use super::interpolate::{InterpolateError, interpolate};
use super::yaml::{Node, NodeKind, is_merge_key};

/// Looks a variable up in the host environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A plausible value for a field, for "for example `field: value`" hints.
fn example_for(field: &str) -> &'static str {
    match field {
        "readme" => "services/api/README.md",
        "name" => "my-shop",
        "url" => "http://localhost:8800",
        "health_check" | "path" => "/health",
        "endpoint" => "http://localhost:8003",
        "env_var" => "DATABASE_URL",
        "sandbox_root" | "sandbox_path" => "./.pactown-sandboxes",
        "version" => "1.0.0",
        _ => "text",
    }
}

/// A mapping's entries as read: key text, key span, value.
pub struct Entry<'n> {
    /// The key.
    pub key: &'n str,
    /// Where the key is.
    pub key_span: Range<usize>,
    /// The value.
    pub value: &'n Node,
}

/// Reads nodes of one file, recording what is wrong.
pub struct Decoder<'a> {
    /// The file the nodes come from.
    pub source: &'a Arc<SourceFile>,
    /// Where problems go.
    pub diags: &'a mut Diagnostics,
    /// The host environment for `${VAR}`.
    pub env: EnvLookup<'a>,
}

impl Decoder<'_> {
    /// Record an error at `span`.
    pub fn error(
        &mut self,
        code: &'static str,
        span: Range<usize>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        let d = Diagnostic::error(code, msg, self.source, span).with_help(help);
        self.diags.push(d);
    }

    fn type_error(&mut self, node: &Node, what: &str, expected: &str, example: &str) {
        let d = Diagnostic::error(
            "yaml::type",
            format!("`{what}` must be {expected}, found {}", node.describe()),
            self.source,
            node.span.clone(),
        )
        .with_help(format!("for example `{what}: {example}`"));
        self.diags.push(d);
    }

    /// The entries of a mapping, with `<<` merges applied and unknown keys reported (with a
    /// suggestion). `what` names the mapping in messages (`service \`api\``).
    pub fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<Vec<Entry<'n>>> {
        let NodeKind::Map(pairs) = &node.kind else {
            let d = Diagnostic::error(
                "yaml::type",
                format!(
                    "{what} must be a mapping of `key: value` pairs, found {}",
                    node.describe()
                ),
                self.source,
                node.span.clone(),
            );
            self.diags.push(d);
            return None;
        };
        let mut entries: Vec<Entry<'n>> = Vec::new();
        let mut merged: Vec<Entry<'n>> = Vec::new();
        for (k, v) in pairs {
            if is_merge_key(k) {
                let sources: Vec<&Node> = match &v.kind {
                    NodeKind::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for s in sources {
                    if let Some(inner) = self.mapping(s, what, known) {
                        merged.extend(inner);
                    }
                }
                continue;
            }
            let Some(key) = k.as_scalar() else {
                self.error(
                    "yaml::key",
                    k.span.clone(),
                    "keys must be plain words",
                    "write the key as a word, e.g. `port:`",
                );
                continue;
            };
            // `x-…` keys are extension fields for anchors and tools, as in docker compose.
            if key.starts_with("x-") && !known.is_empty() {
                continue;
            }
            if !known.is_empty() && !known.contains(&key) {
                let help = match did_you_mean(key, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known fields: {}", known.join(", ")),
                };
                self.error(
                    "yaml::unknown-field",
                    k.span.clone(),
                    format!("unknown field `{key}` in {what}"),
                    help,
                );
                continue;
            }
            entries.push(Entry {
                key,
                key_span: k.span.clone(),
                value: v,
            });
        }
        // Explicit keys win over merged ones, as in YAML 1.1.
        for m in merged {
            if !entries.iter().any(|e| e.key == m.key) {
                entries.push(m);
            }
        }
        Some(entries)
    }

    /// A scalar's interpolated text. `None` (with an error) for lists and mappings.
    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let NodeKind::Scalar { value, .. } = &node.kind else {
            self.type_error(node, what, "a string", example_for(what));
            return None;
        };
        self.interpolate(node, value)
    }

    /// A string or `None` for null.
    pub fn opt_string(&mut self, node: &Node, what: &str) -> Option<Option<String>> {
        if node.is_null() {
            return Some(None);
        }
        self.string(node, what).map(Some)
    }

    fn interpolate(&mut self, node: &Node, value: &str) -> Option<String> {
        if !value.contains('$') {
            return Some(value.to_string());
        }
        // Offsets inside the value map onto the file when the value is written literally.
        let raw = &self.source.text[node.span.clone()];
        let offset = raw.find(value).map(|i| node.span.start + i);
        let at = |r: Range<usize>| match offset {
            Some(o) => o + r.start..o + r.end,
            None => node.span.clone(),
        };
        match interpolate(value, self.env) {
            Ok((out, unset)) => {
                for u in unset {
                    let d = Diagnostic::warning(
                        "yaml::unset-variable",
                        format!("variable `{}` is not set; using an empty string", u.name),
                        self.source,
                        at(u.range),
                    )
                    .with_help(format!(
                        "set it in the environment, or give a default: `${{{}:-value}}`",
                        u.name
                    ));
                    self.diags.push(d);
                }
                Some(out)
            }
            Err(InterpolateError::Unterminated { at: i }) => {
                self.error(
                    "yaml::interpolation",
                    at(i..i + 2),
                    "`${` is never closed",
                    "close it with `}`, or write `$$` for a literal `$`",
                );
                None
            }
            Err(InterpolateError::BadName { range }) => {
                self.error(
                    "yaml::interpolation",
                    at(range),
                    "invalid variable reference",
                    "write `${NAME}`, `${NAME:-default}` or `${NAME:?message}` with NAME made of letters, digits and `_`",
                );
                None
            }
            Err(InterpolateError::Required {
                name,
                message,
                range,
            }) => {
                let msg = if message.is_empty() {
                    format!("required variable `{name}` is not set")
                } else {
                    format!("required variable `{name}` is not set: {message}")
                };
                self.error(
                    "yaml::required-variable",
                    at(range),
                    msg,
                    format!("set `{name}` in the environment before running pactown"),
                );
                None
            }
        }
    }

    /// An integer in `range`.
    pub fn int(
        &mut self,
        node: &Node,
        what: &str,
        range: std::ops::RangeInclusive<i64>,
        example: &str,
    ) -> Option<i64> {
        let NodeKind::Scalar { .. } = &node.kind else {
            self.type_error(node, what, "a number", example);
            return None;
        };
        let text = self.string(node, what)?;
        let parsed = text.trim().replace('_', "").parse::<i64>();
        match parsed {
            Ok(v) if range.contains(&v) => Some(v),
            Ok(v) => {
                self.error(
                    "yaml::range",
                    node.span.clone(),
                    format!(
                        "`{what}` is {v}, outside {}..={}",
                        range.start(),
                        range.end()
                    ),
                    format!("for example `{what}: {example}`"),
                );
                None
            }
            Err(_) => {
                self.error(
                    "yaml::type",
                    node.span.clone(),
                    format!("`{what}` must be a whole number, found `{text}`"),
                    format!("for example `{what}: {example}`"),
                );
                None
            }
        }
    }

    /// A boolean. YAML 1.1 spellings (`yes`, `on`, ...) are accepted, as PyYAML does for the
    /// reference's files.
    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        let text = match &node.kind {
            NodeKind::Scalar { .. } => self.string(node, what)?,
            _ => {
                self.type_error(node, what, "true or false", "true");
                return None;
            }
        };
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Some(true),
            "false" | "no" | "off" | "n" => Some(false),
            _ => {
                self.error(
                    "yaml::type",
                    node.span.clone(),
                    format!("`{what}` must be true or false, found `{text}`"),
                    format!("for example `{what}: true`"),
                );
                None
            }
        }
    }

    /// A duration: a number of seconds (`60`, `0.5`) or a string with a unit (`500ms`, `2m`).
    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = self.string(node, what)?;
        let t = text.trim();
        let parsed = match t.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
            Ok(_) => None,
            Err(_) => humantime::parse_duration(t).ok().filter(|d| !d.is_zero()),
        };
        if parsed.is_none() {
            self.error(
                "yaml::duration",
                node.span.clone(),
                format!("`{what}` must be a positive duration, found `{text}`"),
                format!("write seconds (`{what}: 30`) or a duration with a unit (`{what}: 500ms`, `{what}: 2m`)"),
            );
        }
        parsed
    }

    /// A size in bytes: a number, or a number with a unit (`64M`, `64MiB`, `1G`, `512k`).
    pub fn byte_size(&mut self, node: &Node, what: &str) -> Option<u64> {
        let text = self.string(node, what)?;
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: Option<u64> = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => Some(1),
            "k" | "kb" | "kib" => Some(1 << 10),
            "m" | "mb" | "mib" => Some(1 << 20),
            "g" | "gb" | "gib" => Some(1 << 30),
            _ => None,
        };
        match (num.parse::<f64>(), mult) {
            (Ok(n), Some(m)) if n > 0.0 => Some((n * m as f64) as u64),
            _ => {
                self.error(
                    "yaml::size",
                    node.span.clone(),
                    format!("`{what}` must be a size, found `{text}`"),
                    format!(
                        "write bytes or a size with a unit, e.g. `{what}: 64M` or `{what}: 1G`"
                    ),
                );
                None
            }
        }
    }

    /// A list; a single scalar is not silently promoted.
    pub fn seq<'n>(&mut self, node: &'n Node, what: &str, example: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.type_error(node, what, "a list", example);
                None
            }
        }
    }
}
