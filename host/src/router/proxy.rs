//! `HTTP_PROXY` for native services: each native service gets its own proxy address, so the
//! proxy knows who calls. A request for `http://api/...` goes to `api` when the caller declared
//! it in `depends_on` (through the same path as its stable address: rate limit, metrics, logs),
//! is refused with 403 and the missing `depends_on` otherwise, and a single-label name that is
//! no service gets a clear 502. Other hosts pass through (native services have the network; the
//! sandbox decides what they may reach).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{Body, Router, json_response};

/// Why `caller` may not call `target`, and what would fix it (native and wasm callers alike).
pub fn undeclared(caller: &str, target: &str) -> String {
    format!(
        "`{caller}` may not call `{target}`: it is not in `{caller}`'s `depends_on`; add it there"
    )
}

/// The refusal of a name that is no service.
pub fn unknown(target: &str) -> String {
    format!("no service `{target}` in this ecosystem")
}

/// Answer one request sent to `caller`'s proxy.
pub async fn handle(
    router: Router,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    caller: Arc<str>,
    deps: Arc<HashSet<String>>,
) -> Response<Body> {
    if req.method() == http::Method::CONNECT {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "the pactown proxy routes plain HTTP to services by name; HTTPS does not go through it"}),
        );
    }
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(n, _)| n).to_string())
        })
        .unwrap_or_default();
    if let Some(ep) = router.endpoints.get(&host) {
        if !deps.contains(&host) {
            let message = undeclared(&caller, &host);
            if let Some(me) = router.endpoints.get(&*caller) {
                me.service.log.denied("http call", &host, &message);
            }
            return json_response(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": message, "caller": &*caller, "target": host}),
            );
        }
        let ep = ep.clone();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
        return router.dispatch(req, &ep, peer, Some(&caller)).await;
    }
    if !host.contains('.') && !matches!(host.as_str(), "localhost" | "") {
        return json_response(
            StatusCode::BAD_GATEWAY,
            &serde_json::json!({"error": unknown(&host), "caller": &*caller}),
        );
    }
    router.pass_through(req).await
}
