//! `${VAR}` interpolation of ecosystem-file values from the host environment, with the forms
//! docker compose users know:
//!
//! | form | value |
//! |---|---|
//! | `${VAR}` | `VAR`, or empty with a warning when unset |
//! | `${VAR:-default}` / `${VAR-default}` | `default` when `VAR` is unset or empty / unset |
//! | `${VAR:?message}` / `${VAR?message}` | an error with `message` when unset or empty / unset |
//! | `$$` | a literal `$` |
//!
//! Defaults may nest (`${A:-${B:-x}}`). A bare `$NAME` is left alone on purpose: values such as
//! passwords often contain `$`, and only the braced form is unambiguous.

use std::ops::Range;

/// What went wrong, with byte ranges relative to the interpolated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${` without its `}`.
    Unterminated {
        /// Where the `${` starts.
        at: usize,
    },
    /// `${}` or a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    BadName {
        /// The text between the braces.
        range: Range<usize>,
    },
    /// `${VAR:?message}` with `VAR` unset (or empty).
    Required {
        /// The variable.
        name: String,
        /// The user's message, possibly empty.
        message: String,
        /// The whole `${...}`.
        range: Range<usize>,
    },
}

/// A variable that was unset and became the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset {
    /// The variable.
    pub name: String,
    /// The whole `${...}`.
    pub range: Range<usize>,
}

/// Expand every `${...}` in `input` with `lookup`. Returns the value and the variables that
/// were unset without a default.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<Unset>), InterpolateError> {
    let mut unset = Vec::new();
    let out = expand(input, 0, lookup, &mut unset)?;
    Ok((out, unset))
}

fn expand(
    input: &str,
    base: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<Unset>,
) -> Result<String, InterpolateError> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = input[i..].find('$').map_or(input.len(), |j| i + j);
            out.push_str(&input[i..next]);
            i = next;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                let close = matching_brace(input, i + 2)
                    .ok_or(InterpolateError::Unterminated { at: base + i })?;
                let inner = &input[i + 2..close];
                let whole = base + i..base + close + 1;
                out.push_str(&substitute(inner, base + i + 2, whole, lookup, unset)?);
                i = close + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Index of the `}` closing a `${` whose content starts at `from`, allowing nested `${...}`.
fn matching_brace(input: &str, from: usize) -> Option<usize> {
    let bytes = input.as_bytes();
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn substitute(
    inner: &str,
    base: usize,
    whole: Range<usize>,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<Unset>,
) -> Result<String, InterpolateError> {
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let name = &inner[..name_len];
    let rest = &inner[name_len..];
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let (op, arg) = if let Some(a) = rest.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = rest.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = rest.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = rest.strip_prefix('?') {
        ("?", a)
    } else if rest.is_empty() {
        ("", "")
    } else {
        return Err(InterpolateError::BadName {
            range: base..base + inner.len(),
        });
    };
    if !valid {
        return Err(InterpolateError::BadName {
            range: base..base + inner.len(),
        });
    }
    let value = lookup(name);
    let arg_base = base + name_len + op.len();
    let missing = match op {
        ":-" | ":?" => value.as_deref().is_none_or(str::is_empty),
        _ => value.is_none(),
    };
    match op {
        ":-" | "-" if missing => expand(arg, arg_base, lookup, unset),
        ":?" | "?" if missing => Err(InterpolateError::Required {
            name: name.to_string(),
            message: expand(arg, arg_base, lookup, unset)?,
            range: whole,
        }),
        "" if value.is_none() => {
            unset.push(Unset {
                name: name.to_string(),
                range: whole,
            });
            Ok(String::new())
        }
        _ => Ok(value.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/u".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<(String, Vec<Unset>), InterpolateError> {
        interpolate(s, &env)
    }

    #[test]
    fn forms() {
        assert_eq!(run("${HOME}/x").unwrap().0, "/home/u/x");
        assert_eq!(run("${NOPE:-d}").unwrap().0, "d");
        assert_eq!(run("${EMPTY:-d}").unwrap().0, "d");
        assert_eq!(run("${EMPTY-d}").unwrap().0, "");
        assert_eq!(run("${NOPE-d}").unwrap().0, "d");
        assert_eq!(run("${NOPE:-${HOME}}").unwrap().0, "/home/u");
        assert_eq!(run("a$$b $c").unwrap().0, "a$b $c");
        assert_eq!(
            run("${EMPTY:?x}").unwrap_err(),
            InterpolateError::Required {
                name: "EMPTY".into(),
                message: "x".into(),
                range: 0..11
            }
        );
        assert!(run("${EMPTY?x}").is_ok());
    }

    #[test]
    fn unset_is_reported() {
        let (v, unset) = run("x${NOPE}y").unwrap();
        assert_eq!(v, "xy");
        assert_eq!(
            unset,
            vec![Unset {
                name: "NOPE".into(),
                range: 1..8
            }]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            run("ab${X").unwrap_err(),
            InterpolateError::Unterminated { at: 2 }
        );
        assert_eq!(
            run("${1A}").unwrap_err(),
            InterpolateError::BadName { range: 2..4 }
        );
        assert_eq!(
            run("${}").unwrap_err(),
            InterpolateError::BadName { range: 2..2 }
        );
        assert_eq!(
            run("${A B}").unwrap_err(),
            InterpolateError::BadName { range: 2..5 }
        );
    }
}
