//! The parts that only exist inside a component: HTTP helpers on top of wstd.

use wstd::http::{Body, Client, Request, Response};

/// HTTP types for handlers.
pub mod http {
    pub use wstd::http::{Body, Client, Error, HeaderValue, Method, Request, Response, StatusCode};

    /// Handler result.
    pub type Result<T> = std::result::Result<T, Error>;
}

/// `GET` another service's `path`, by name.
pub async fn get(service: &str, path: &str) -> Result<Response<Body>, wstd::http::Error> {
    let req = Request::get(crate::service_url(service, path)).body(Body::empty())?;
    Client::new().send(req).await
}

/// `POST` JSON to another service's `path`, by name.
pub async fn post_json<T: serde::Serialize>(
    service: &str,
    path: &str,
    value: &T,
) -> Result<Response<Body>, wstd::http::Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| wstd::http::Error::msg(e.to_string()))?;
    // A known length, not chunked: simple servers read `content-length`.
    let req = Request::post(crate::service_url(service, path))
        .header("content-type", "application/json")
        .header("content-length", bytes.len())
        .body(Body::from(bytes))?;
    Client::new().send(req).await
}

/// A JSON response (with its length, so it is not sent chunked).
pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    respond(status, "application/json", text)
}

/// A plain-text response (with its length).
pub fn text(status: u16, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Body> {
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = wstd::http::StatusCode::from_u16(status)
        .unwrap_or(wstd::http::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        wstd::http::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert("content-length", len.into());
    r
}
