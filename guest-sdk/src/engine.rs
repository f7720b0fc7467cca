//! Engine services: the commands of a `design.json` served at `/execute`, `/repeat` and
//! `/revert`, the way pactown's job-control calls them.
//!
//! ```json
//! {"name": "inventory", "description": "stock",
//!  "commands": {
//!    "reserve": {"description": "hold stock for an order",
//!                "input": {"type": "object", "required": ["sku", "qty"],
//!                          "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}},
//!                "result": {"reserved": {"$input": "qty"}, "sku": {"$input": "sku"}},
//!                "revert": {"released": {"$input": "qty"}}}}}
//! ```
//!
//! | method, path | body | answer |
//! |---|---|---|
//! | `POST /execute` | `{command, input}` | the command's result |
//! | `POST /repeat` | `{command, input}` | the same, run again (the handler sees `repeat`) |
//! | `POST /revert` | `{command, input, result}` | what undoing it gave |
//! | `GET /design` | | the design |
//! | `GET /health` | | `{"status": "ok"}` |
//!
//! A command without a handler answers its design's `result` (`{"$input": "path"}` replaced
//! by that part of the input), a revert without one its design's `revert` (default
//! `{"reverted": true}`). Input is checked against the command's schema (`type`, `required`,
//! `properties`, `enum`, `minimum`, `maximum`) before any handler runs: a mismatch is a 400
//! naming the field, which job-control does not retry. A handler's [`Failure::retry`] is a 503,
//! which it does.
//!
//! ```
//! use pactown_guest::engine::{Engine, Failure};
//! let design = r#"{"name": "pay", "commands": {"charge": {"input": {"type": "object", "required": ["amount"]}}}}"#;
//! let engine = Engine::from_design(design).unwrap().on("charge", |call| {
//!     let amount = call.input["amount"].as_f64().unwrap_or(0.0);
//!     if amount > 100.0 { return Err(Failure::new("declined: over the limit")); }
//!     Ok(serde_json::json!({"charged": amount}))
//! });
//! let (status, body) = engine.answer("POST", "/execute", br#"{"command": "charge", "input": {"amount": 5}}"#, None);
//! assert_eq!((status, body), (200, serde_json::json!({"charged": 5.0})));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `design.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Design {
    /// The engine's name.
    #[serde(default)]
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// Its commands.
    pub commands: BTreeMap<String, CommandDesign>,
}

/// One command of a design.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommandDesign {
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// The schema its input must match.
    #[serde(default)]
    pub input: Option<Value>,
    /// What it answers without a handler.
    #[serde(default)]
    pub result: Option<Value>,
    /// What undoing it answers without a handler.
    #[serde(default)]
    pub revert: Option<Value>,
}

/// A call to a command, as the handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The command.
    pub command: &'a str,
    /// Its input (checked against the schema).
    pub input: &'a Value,
    /// For a revert: what the command answered when it ran (else `null`).
    pub result: &'a Value,
    /// The caller's `Idempotency-Key` (job-control's is the job and the task: the same on
    /// every attempt).
    pub key: Option<&'a str>,
    /// Is it `/repeat`?
    pub repeat: bool,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// Worth another attempt (a 503) or not (a 422)?
    pub retry: bool,
}

impl Failure {
    /// A failure for good (422).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: false,
        }
    }

    /// A failure worth retrying (503).
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: true,
        }
    }
}

type Handler = Box<dyn Fn(&Call<'_>) -> Result<Value, Failure>>;

/// An engine: a design and the handlers of its commands.
pub struct Engine {
    design: Design,
    execute: BTreeMap<String, Handler>,
    revert: BTreeMap<String, Handler>,
    ledger: Option<(String, String)>,
}

impl Engine {
    /// An engine from a `design.json`'s text.
    pub fn from_design(text: &str) -> Result<Self, String> {
        let design: Design = serde_json::from_str(text)
            .map_err(|e| format!("design.json:{}:{}: {e}", e.line(), e.column()))?;
        Ok(Self {
            design,
            execute: BTreeMap::new(),
            revert: BTreeMap::new(),
            ledger: None,
        })
    }

    /// Handle `command` (it must be in the design).
    pub fn on(
        self,
        command: &str,
        f: impl Fn(&Call<'_>) -> Result<Value, Failure> + 'static,
    ) -> Self {
        self.with(command, false, Box::new(f))
    }

    /// Undo `command`.
    pub fn on_revert(
        self,
        command: &str,
        f: impl Fn(&Call<'_>) -> Result<Value, Failure> + 'static,
    ) -> Self {
        self.with(command, true, Box::new(f))
    }

    fn with(mut self, command: &str, revert: bool, f: Handler) -> Self {
        assert!(
            self.design.commands.contains_key(command),
            "`{command}` is not a command of design.json"
        );
        let handlers = if revert {
            &mut self.revert
        } else {
            &mut self.execute
        };
        handlers.insert(command.to_string(), f);
        self
    }

    /// Record every call to a command in the shared-state `document` of `service` (a
    /// `builtin: shared-state` it depends on): `{engine: {"<key>@<time>": {path, command,
    /// status}}}`, an audit of what it was asked that survives every restart.
    pub fn record_to(mut self, service: &str, document: &str) -> Self {
        self.ledger = Some((service.to_string(), document.to_string()));
        self
    }

    /// Where calls are recorded.
    pub fn ledger(&self) -> Option<(&str, &str)> {
        self.ledger.as_ref().map(|(s, d)| (s.as_str(), d.as_str()))
    }

    /// The merge patch recording one call (none for `/design` and `/health`).
    pub fn ledger_entry(
        &self,
        path: &str,
        body: &[u8],
        key: Option<&str>,
        status: u16,
    ) -> Option<Value> {
        if !matches!(path, "/execute" | "/repeat" | "/revert") {
            return None;
        }
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let entry = format!("{}@{nanos}", key.unwrap_or("-"));
        Some(serde_json::json!({ self.design.name.clone(): { entry: {
            "path": path, "command": req["command"], "status": status,
        }}}))
    }

    /// Its design.
    pub fn design(&self) -> &Design {
        &self.design
    }

    /// Answer a request: its status and JSON body.
    pub fn answer(&self, method: &str, path: &str, body: &[u8], key: Option<&str>) -> (u16, Value) {
        let path = path.split('?').next().unwrap_or(path);
        let bad = |status: u16, message: String| (status, serde_json::json!({"error": message}));
        match (method, path) {
            ("GET", "/health") => (
                200,
                serde_json::json!({"status": "ok", "engine": self.design.name}),
            ),
            ("GET", "/design") => (
                200,
                serde_json::to_value(&self.design).unwrap_or(Value::Null),
            ),
            ("POST", "/execute" | "/repeat" | "/revert") => {
                let req: Value = if body.is_empty() {
                    Value::Null
                } else {
                    match serde_json::from_slice(body) {
                        Ok(v) => v,
                        Err(e) => return bad(400, format!("the body is not JSON: {e}")),
                    }
                };
                let Some(command) = req["command"].as_str() else {
                    return bad(
                        400,
                        "the body needs `command` (one of the design's commands)".into(),
                    );
                };
                let Some(spec) = self.design.commands.get(command) else {
                    let known: Vec<&str> =
                        self.design.commands.keys().map(String::as_str).collect();
                    return bad(
                        404,
                        format!(
                            "`{command}` is not a command of {}: it has {}",
                            self.design.name,
                            known.join(", ")
                        ),
                    );
                };
                let input = &req["input"];
                if let Some(schema) = &spec.input
                    && let Err(e) = check(schema, input, "input")
                {
                    return bad(400, e);
                }
                let reverting = path == "/revert";
                let call = Call {
                    command,
                    input,
                    result: &req["result"],
                    key,
                    repeat: path == "/repeat",
                };
                let handler = if reverting {
                    self.revert.get(command)
                } else {
                    self.execute.get(command)
                };
                let outcome = match handler {
                    Some(f) => f(&call),
                    None if reverting => Ok(spec
                        .revert
                        .as_ref()
                        .map_or_else(|| serde_json::json!({"reverted": true}), |t| fill(t, input))),
                    None => Ok(spec.result.as_ref().map_or_else(
                        || serde_json::json!({"command": command, "ok": true}),
                        |t| fill(t, input),
                    )),
                };
                match outcome {
                    Ok(v) => (200, v),
                    Err(f) => bad(if f.retry { 503 } else { 422 }, f.message),
                }
            }
            _ => bad(
                404,
                "an engine answers POST /execute, /repeat, /revert and GET /design, /health".into(),
            ),
        }
    }
}

/// `template` with every `{"$input": "a.b"}` replaced by that part of `input`.
fn fill(template: &Value, input: &Value) -> Value {
    match template {
        Value::Object(m) if m.len() == 1 && m.contains_key("$input") => {
            let path = m["$input"].as_str().unwrap_or("");
            let pointer: String = path
                .split('.')
                .filter(|p| !p.is_empty())
                .map(|p| format!("/{p}"))
                .collect();
            input.pointer(&pointer).cloned().unwrap_or(Value::Null)
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), fill(v, input))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| fill(v, input)).collect()),
        other => other.clone(),
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Check `v` against a JSON Schema's `type`, `required`, `properties`, `enum`, `minimum`,
/// `maximum` (and `items`); the first mismatch, named by its path.
pub fn check(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(want) = schema["type"].as_str() {
        let got = type_of(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            return Err(format!("`{at}` must be {want}, not {got}"));
        }
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(v)
    {
        return Err(format!(
            "`{at}` must be one of {}",
            Value::Array(choices.clone())
        ));
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), v.as_f64())
        && n < min
    {
        return Err(format!("`{at}` must be at least {min}"));
    }
    if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), v.as_f64())
        && n > max
    {
        return Err(format!("`{at}` must be at most {max}"));
    }
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if v.get(name).is_none_or(Value::is_null) {
            return Err(format!("`{at}.{name}` is required"));
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, s) in props {
            if let Some(x) = v.get(name).filter(|x| !x.is_null()) {
                check(s, x, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(items, x, &format!("{at}.{i}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN: &str = r#"{"name": "inventory", "commands": {
        "reserve": {"input": {"type": "object", "required": ["sku", "qty"],
                              "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}},
                    "result": {"reserved": {"$input": "qty"}}},
        "count": {}}}"#;

    #[test]
    fn commands_are_checked_run_and_undone() {
        let e = Engine::from_design(DESIGN).unwrap().on("count", |c| {
            if c.repeat {
                Err(Failure::retry("busy"))
            } else {
                Ok(serde_json::json!({"key": c.key}))
            }
        });
        let run = |path: &str, body: &str| e.answer("POST", path, body.as_bytes(), Some("job-1/t"));
        assert_eq!(
            run(
                "/execute",
                r#"{"command": "reserve", "input": {"sku": "tea", "qty": 2}}"#
            ),
            (200, serde_json::json!({"reserved": 2}))
        );
        let (s, b) = run(
            "/execute",
            r#"{"command": "reserve", "input": {"sku": "tea", "qty": 0}}"#,
        );
        assert_eq!(
            (s, b["error"].as_str().unwrap()),
            (400, "`input.qty` must be at least 1")
        );
        let (s, b) = run("/execute", r#"{"command": "reserve", "input": {"qty": 1}}"#);
        assert_eq!(
            (s, b["error"].as_str().unwrap()),
            (400, "`input.sku` is required")
        );
        assert_eq!(
            run("/execute", r#"{"command": "count"}"#),
            (200, serde_json::json!({"key": "job-1/t"}))
        );
        assert_eq!(run("/repeat", r#"{"command": "count"}"#).0, 503);
        assert_eq!(
            run(
                "/revert",
                r#"{"command": "reserve", "input": {"sku": "tea", "qty": 2}}"#
            ),
            (200, serde_json::json!({"reverted": true}))
        );
        assert_eq!(run("/execute", r#"{"command": "fly"}"#).0, 404);
        assert_eq!(e.answer("GET", "/design", b"", None).1["name"], "inventory");
    }
}
