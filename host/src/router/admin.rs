//! The host's own address (`up --listen`, default 127.0.0.1:7100): the dashboard at `/`
//! ([`super::dashboard`]), the live status at `/_pactown/services`, Prometheus metrics at
//! `/_pactown/metrics`, and every service reachable
//! from a browser as `http://<service>.localhost:<port>/` (browsers resolve `*.localhost` to the
//! loopback address).

use std::net::SocketAddr;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{Body, Router, full, json_response, metrics};
use crate::control::status::{EcosystemStatus, State};

/// Answer a request on the admin/gateway address.
pub async fn handle(
    router: Router,
    req: Request<Incoming>,
    peer: SocketAddr,
    dashboard: &super::dashboard::Dashboard,
) -> Response<Body> {
    let ecosystem = dashboard.ecosystem.as_str();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    if let Some(service) = hostname.strip_suffix(".localhost") {
        return match router.endpoint(service) {
            Some(ep) => router.dispatch(req, &ep, peer, Some("gateway")).await,
            None => json_response(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!("no service `{service}` in {ecosystem}"), "services": router.endpoints().keys().cloned().collect::<Vec<_>>()}),
            ),
        };
    }
    if let Some(answer) = dashboard.handle(&router, &req).await {
        return answer;
    }
    match req.uri().path() {
        "/_pactown/services" => json_response(
            StatusCode::OK,
            &serde_json::to_value(status(&router, ecosystem)).unwrap_or_default(),
        ),
        "/_pactown/metrics" => {
            let endpoints = router.endpoints();
            let samples: Vec<metrics::Sample<'_>> = endpoints
                .iter()
                .map(|(name, ep)| {
                    let st = ep.service.status();
                    let instances = match ep.service.http_handler() {
                        Some(h) => h.active.load(std::sync::atomic::Ordering::Relaxed),
                        None => st
                            .replicas
                            .iter()
                            .filter(|r| r.state == State::Ready)
                            .count() as u64,
                    };
                    metrics::Sample {
                        service: name,
                        metrics: &ep.metrics,
                        instances,
                        restarts: u64::from(st.restarts),
                        up: st.state == State::Ready,
                    }
                })
                .collect();
            let mut r = Response::new(full(metrics::render(&samples)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        other => json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": format!("no `{other}` here"), "try": ["/", "/_pactown/services", "/_pactown/metrics", "http://<service>.localhost:<port>/"]}),
        ),
    }
}

/// The live status, as `status --json` prints it.
pub fn status(router: &Router, ecosystem: &str) -> EcosystemStatus {
    EcosystemStatus::live(
        ecosystem,
        None,
        router
            .endpoints()
            .values()
            .map(|e| e.service.status())
            .collect(),
    )
}
