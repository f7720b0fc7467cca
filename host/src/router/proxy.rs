//! `HTTP_PROXY` for native services: each native service gets its own proxy address, so the
//! proxy knows who calls, and every request through it is decided by the caller's
//! [`CallPolicy`] — the same rule the wasm resolver and the Landlock connect list follow. A
//! declared dependency (by name, `http://api/…`, or at its stable address) is reached through
//! its stable address (rate limit, metrics, logs); an `allowed_hosts` host is reached over the
//! network, plain HTTP or `CONNECT` (TLS), once the addresses its name resolves to are checked;
//! everything else — another loopback port, pactown's own admin address, a `*.localhost` name
//! of an undeclared service, any outside host — is refused with the reason, and logged.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{Body, Router, full, json_response};
use crate::plan::{Call, CallPolicy};

/// What a proxied request asks for: scheme (when known), host, port (when given).
fn target(req: &Request<Incoming>) -> (Option<String>, String, Option<u16>) {
    if req.method() == Method::CONNECT {
        let auth = req.uri().authority();
        return (
            None,
            auth.map(|a| a.host().to_string()).unwrap_or_default(),
            auth.and_then(|a| a.port_u16()),
        );
    }
    if let Some(host) = req.uri().host() {
        return (
            req.uri().scheme_str().map(str::to_string),
            host.to_string(),
            req.uri().port_u16(),
        );
    }
    // Origin-form with a Host header (a client that does not speak proxy).
    let h = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    match h.parse::<http::uri::Authority>() {
        Ok(a) => (None, a.host().to_string(), a.port_u16()),
        Err(_) => (None, h.to_string(), None),
    }
}

/// Answer one request sent to `policy.caller`'s proxy.
pub async fn handle(
    router: Router,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    policy: Arc<CallPolicy>,
) -> Response<Body> {
    let connect = req.method() == Method::CONNECT;
    let (scheme, host, port) = target(&req);
    let shown = port.map_or(host.clone(), |p| format!("{host}:{p}"));
    let caller = policy.caller.as_str();
    let refuse = |status: u16, message: String| {
        if let Some(me) = router.endpoint(caller) {
            let action = if connect {
                "proxy connect"
            } else {
                "http call"
            };
            me.service.denied(action, &shown, &message);
        }
        json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
            &serde_json::json!({"error": message, "caller": caller, "target": shown}),
        )
    };
    match policy.decide(scheme.as_deref(), &host, port) {
        Call::Refused { status, message } => refuse(status, message),
        Call::Service { name, port } => {
            // A dependency that runs elsewhere: by its name on the network, at its port.
            if let (Some(at), Some(p)) = (policy.elsewhere.get(&name), port) {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((at.as_str(), p))
                    .await
                    .map(Iterator::collect)
                    .unwrap_or_default();
                if addrs.is_empty() {
                    return refuse(502, format!("`{at}` does not resolve here"));
                }
                return if connect {
                    tunnel(req, &addrs).await
                } else {
                    pin(&mut req, addrs[0]);
                    router.pass_through(req).await
                };
            }
            let Some(ep) = router.endpoint(&name) else {
                return refuse(502, crate::plan::calls::unknown(&name));
            };
            if connect {
                return match port {
                    Some(p) => tunnel(req, &[SocketAddr::from(([127, 0, 0, 1], p))]).await,
                    None => refuse(502, format!("service `{name}` has no address")),
                };
            }
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            if let Ok(uri) = path.parse() {
                *req.uri_mut() = uri;
            }
            router.dispatch(req, &ep, peer, Some(caller)).await
        }
        Call::Egress => {
            let default = if connect || scheme.as_deref() == Some("https") {
                443
            } else {
                80
            };
            let port = port.unwrap_or(default);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(Iterator::collect)
                .unwrap_or_default();
            if let Err(message) = policy.check_resolved(&host, &addrs) {
                return refuse(403, message);
            }
            if connect {
                tunnel(req, &addrs).await
            } else {
                pin(&mut req, addrs[0]);
                router.pass_through(req).await
            }
        }
    }
}

/// Send a plain-HTTP request to the address that was checked, not to whatever its name
/// resolves to a moment later (a name that answers with an outside address for the check and
/// with 127.0.0.1 for the connection would otherwise reach this machine). The `Host` header
/// keeps the name.
fn pin(req: &mut Request<Incoming>, addr: SocketAddr) {
    let Some(authority) = req.uri().authority().cloned() else {
        return;
    };
    if !req.headers().contains_key(header::HOST)
        && let Ok(v) = header::HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = format!("http://{addr}{path}").parse() {
        *req.uri_mut() = uri;
    }
}

/// `CONNECT`: open the connection, answer 200, then join the client and the target.
async fn tunnel(mut req: Request<Incoming>, addrs: &[SocketAddr]) -> Response<Body> {
    let upgrade = hyper::upgrade::on(&mut req);
    let server = match tokio::net::TcpStream::connect(addrs).await {
        Ok(s) => s,
        Err(e) => {
            return json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({"error": format!("cannot connect to {}: {e}", addrs[0])}),
            );
        }
    };
    tokio::spawn(async move {
        if let Ok(client) = upgrade.await {
            let mut server = server;
            let _ = tokio::io::copy_bidirectional(
                &mut hyper_util::rt::TokioIo::new(client),
                &mut server,
            )
            .await;
        }
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::OK;
    r
}
