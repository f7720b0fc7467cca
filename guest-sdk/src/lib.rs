//! pactown-guest: what a Rust pactown service is written against.
//!
//! A service is an HTTP handler (built on [`wstd`]) that pactown compiles to a WASI component
//! and serves with a fresh instance per request:
//!
//! ```ignore
//! use pactown_guest::http::{Body, Request, Response, Result};
//!
//! #[wstd::http_server]
//! async fn main(req: Request<Body>) -> Result<Response<Body>> {
//!     let users = pactown_guest::get("api", "/users").await?;   // another service, by name
//!     Ok(pactown_guest::json(200, &serde_json::json!({"ok": true})))
//! }
//! ```
//!
//! Calls by name (`http://api/...`) are routed by the host, and only to services the caller
//! declared in `depends_on`: a wasm service runs in-process (no TCP), a native one is reached at
//! its stable address. Configuration comes from the service's
//! environment, typed with [`config`]. Everything but the HTTP helpers also compiles for the host,
//! so the crate's tests, docs and lints run everywhere.

#![deny(missing_docs)]

use serde::de::DeserializeOwned;

/// The URL of another service's `path`, by name: `service_url("api", "/users")` is
/// `http://api/users`. The host routes it; no port or address is ever hard-coded.
pub fn service_url(service: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("http://{service}{path}")
    } else {
        format!("http://{service}/{path}")
    }
}

/// A variable of the service's environment.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The port a long-running (`wasm-command`) service must listen on.
pub fn port() -> Option<u16> {
    env("PORT").and_then(|p| p.parse().ok())
}

/// Why the configuration could not be read.
#[derive(Debug)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid service configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The service's configuration, typed: each field of `T` is read from the environment variable
/// of the same name in upper case (`greeting` ← `GREETING`). Values that parse as JSON numbers,
/// booleans, arrays or objects are read as such; anything else is a string.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config { greeting: Option<String> }
/// let c: Config = pactown_guest::config().unwrap();
/// ```
pub fn config<T: DeserializeOwned>() -> Result<T, ConfigError> {
    config_from(std::env::vars())
}

/// [`config`] from explicit variables.
pub fn config_from<T: DeserializeOwned>(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut map = serde_json::Map::new();
    for (k, v) in vars {
        let value = match serde_json::from_str::<serde_json::Value>(&v) {
            Ok(
                parsed @ (serde_json::Value::Number(_)
                | serde_json::Value::Bool(_)
                | serde_json::Value::Array(_)
                | serde_json::Value::Object(_)),
            ) => parsed,
            _ => serde_json::Value::String(v),
        };
        map.insert(k.to_ascii_lowercase(), value);
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| ConfigError(e.to_string()))
}

pub mod engine;

#[cfg(target_os = "wasi")]
mod wasi;
#[cfg(target_os = "wasi")]
pub use wasi::*;
#[cfg(target_os = "wasi")]
pub use wstd;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Config {
        greeting: String,
        workers: u32,
        debug: bool,
        missing: Option<String>,
    }

    #[test]
    fn config_is_typed_from_env() {
        let vars = [
            ("GREETING", "hi"),
            ("WORKERS", "4"),
            ("DEBUG", "true"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c: Config = config_from(vars).unwrap();
        assert_eq!(
            c,
            Config {
                greeting: "hi".into(),
                workers: 4,
                debug: true,
                missing: None
            }
        );
        let err = config_from::<Config>([]).unwrap_err();
        assert!(err.to_string().contains("greeting"));
    }

    #[test]
    fn urls_by_name() {
        assert_eq!(service_url("api", "/users"), "http://api/users");
        assert_eq!(service_url("api", "users"), "http://api/users");
    }
}
