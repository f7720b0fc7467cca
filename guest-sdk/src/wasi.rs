//! The parts that only exist inside a component: HTTP helpers on top of wstd.

use wstd::http::{Body, Client, Request, Response};

/// HTTP types for handlers.
pub mod http {
    pub use wstd::http::{Body, Client, Error, HeaderValue, Method, Request, Response, StatusCode};

    /// Handler result.
    pub type Result<T> = std::result::Result<T, Error>;
}

/// `GET` another service's `path`, by name, and read the whole answer.
///
/// The request is sent without a body, so the host answers it within the call (another wasm
/// service runs inline, with no TCP) and the answer is read without waiting on the host. For a
/// body to stream, use [`wstd::http::Client`].
pub async fn get(service: &str, path: &str) -> Result<Response<Body>, wstd::http::Error> {
    use wasip2::http::types::{Fields, OutgoingRequest};
    use wasip2::io::streams::StreamError;
    use wstd::http::{Error, HeaderName, HeaderValue, StatusCode};

    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    // No scheme: pactown's is http, and a service name means nothing to any other host.
    let req = OutgoingRequest::new(Fields::new());
    let rejected = |what: &str| Error::msg(format!("invalid {what} for a request to `{service}`"));
    req.set_authority(Some(service))
        .map_err(|()| rejected("service name"))?;
    req.set_path_with_query(Some(&path))
        .map_err(|()| rejected("path"))?;
    let pending = wasip2::http::outgoing_handler::handle(req, None)?;
    let answer = match pending.get() {
        Some(answer) => answer,
        None => {
            wstd::io::AsyncPollable::new(pending.subscribe())
                .wait_for()
                .await;
            pending
                .get()
                .ok_or_else(|| Error::msg("the response was not ready"))?
        }
    };
    let incoming = answer.map_err(|()| Error::msg("the response was taken twice"))??;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(incoming.status())?;
    for (name, value) in incoming.headers().entries() {
        response.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_bytes(&value)?,
        );
    }
    let body = incoming
        .consume()
        .map_err(|()| Error::msg("the response body was taken twice"))?;
    let stream = body
        .stream()
        .map_err(|()| Error::msg("the response body stream was taken twice"))?;
    // With a length, the last byte ends the read: no call only to hear that the stream closed.
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut data = Vec::with_capacity(length.unwrap_or(0).min(1 << 20));
    while length != Some(data.len()) {
        match stream.read(64 * 1024) {
            Ok(chunk) if chunk.is_empty() => {
                wstd::io::AsyncPollable::new(stream.subscribe())
                    .wait_for()
                    .await
            }
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Error::msg(format!(
                    "reading the answer of `{service}`: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
    // A stream goes before the body it belongs to.
    drop(stream);
    drop(body);
    *response.body_mut() = Body::from(data);
    Ok(response)
}

/// `POST` JSON to another service's `path`, by name.
pub async fn post_json<T: serde::Serialize>(
    service: &str,
    path: &str,
    value: &T,
) -> Result<Response<Body>, wstd::http::Error> {
    send_json("POST", service, path, value).await
}

/// Send JSON with `method` (`PUT`, `PATCH`, …) to another service's `path`, by name.
pub async fn send_json<T: serde::Serialize>(
    method: &str,
    service: &str,
    path: &str,
    value: &T,
) -> Result<Response<Body>, wstd::http::Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| wstd::http::Error::msg(e.to_string()))?;
    // A known length, not chunked: simple servers read `content-length`.
    let req = Request::builder()
        .method(method)
        .uri(crate::service_url(service, path))
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

/// Serve an [`crate::engine::Engine`]: `/execute`, `/repeat`, `/revert`, `/design`, `/health`.
///
/// ```ignore
/// #[wstd::http_server]
/// async fn main(req: Request<Body>) -> Result<Response<Body>> {
///     let engine = Engine::from_design(include_str!("../design.json"))?.on("reserve", reserve);
///     pactown_guest::serve_engine(&engine, req).await
/// }
/// ```
pub async fn serve_engine(
    engine: &crate::engine::Engine,
    mut req: Request<Body>,
) -> Result<Response<Body>, wstd::http::Error> {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let body = req.body_mut().str_contents().await?.to_string();
    let (status, answer) = engine.answer(&method, &path, body.as_bytes(), key.as_deref());
    if let Some((service, document)) = engine.ledger()
        && let Some(entry) = engine.ledger_entry(&path, body.as_bytes(), key.as_deref(), status)
    {
        // What it was asked, in the shared-state document: one key per call, so concurrent
        // calls never overwrite each other's entries.
        let path = format!("/state/{document}");
        let recorded = send_json("PATCH", service, &path, &entry).await?;
        if !recorded.status().is_success() {
            return Ok(json(
                503,
                &serde_json::json!({"error": format!("the ledger `{document}` on `{service}` answered {}", recorded.status())}),
            ));
        }
    }
    Ok(json(status, &answer))
}
