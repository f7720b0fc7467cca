//! The stable address of every service. The host binds each service's port itself and proxies
//! HTTP to the replicas that are ready, round-robin; while the service is starting, a request
//! is held until it is ready (or fails: then a 503 naming it), and while none is ready otherwise
//! it answers 503 with a JSON body. A replica that refuses the connection (it just died) costs an idempotent request one
//! retry on the next replica, not an error. A restarted replica never changes the address its
//! dependents use.
//!
//! Every request through a stable address is rate-limited (when the service asks for it),
//! counted ([`metrics`]) and logged with its caller ([`requests`]). [`admin`] serves the live
//! status, Prometheus metrics and a `<service>.localhost` gateway; [`proxy`] lets native services
//! call others by name through `HTTP_PROXY`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use indexmap::IndexMap;
use pactown_runtime::wasm::outgoing::{CALLER_HEADER, HOPS_HEADER, PROOF_HEADER};

use crate::control::status::ServiceStatus;
use crate::spec::ecosystem::RateLimit;

pub mod admin;
pub mod dashboard;
pub mod limit;
pub mod metrics;
pub mod proxy;
pub mod requests;

use limit::TokenBucket;
use metrics::Metrics;
pub use requests::RequestLog;

/// Response bodies of the router.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Errors of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body from bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn boxed(b: Incoming) -> Body {
    b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Bind the stable address of a service: the preferred port when free, else the next free port
/// from `base` upward, skipping `reserved`. Binding is the check, so no other process can take
/// the port between the check and its use. Port 0 asks the OS for any free port.
pub fn bind(
    host: std::net::IpAddr,
    preferred: u16,
    base: u16,
    reserved: &[u16],
) -> std::io::Result<(std::net::TcpListener, bool)> {
    match std::net::TcpListener::bind((host, preferred)) {
        Ok(l) => return Ok((l, false)),
        Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => {}
    }
    let mut port = u32::from(base.max(1));
    while port <= 65535 {
        let p = port as u16;
        if p != preferred
            && !reserved.contains(&p)
            && let Ok(l) = std::net::TcpListener::bind((host, p))
        {
            return Ok((l, true));
        }
        port += 1;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port at or above the base port",
    ))
}

/// What the router needs of a service (the orchestrator's supervisor provides it): where its
/// requests go right now, its status, and its log for what it was refused.
pub trait Upstream: Send + Sync {
    /// Its name.
    fn name(&self) -> &str;
    /// Its rate limit.
    fn rate_limit(&self) -> Option<RateLimit>;
    /// The in-process handler of a wasm-http service (a fresh instance per request).
    fn http_handler(&self) -> Option<Arc<pactown_runtime::wasm::HttpService>>;
    /// Internal ports of its ready replicas, the next one in round-robin order first.
    fn ready_ports(&self) -> Vec<u16>;
    /// Its status.
    fn status(&self) -> ServiceStatus;
    /// Record something it was refused (its log and the anomaly log).
    fn denied(&self, action: &str, target: &str, detail: &str);
    /// While it is starting (not yet ready, not failed, not stopped): a receiver that sees each
    /// change of its state, and how long a request may be held for it.
    fn starting(&self) -> Option<(tokio::sync::watch::Receiver<u64>, std::time::Duration)>;
}

/// Hold a request to a service that is still starting until it has somewhere to go: `Err`
/// with the answer when it failed, stopped, or did not become ready in time (a 503 naming it),
/// the way a socket-activated unit's first connection waits for it.
async fn hold(service: &dyn Upstream) -> Result<(), Response<Body>> {
    let ready = |s: &dyn Upstream| s.http_handler().is_some() || !s.ready_ports().is_empty();
    let Some((mut changed, wait)) = service.starting() else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changed.borrow_and_update();
        if ready(service) {
            return Ok(());
        }
        if service.starting().is_none() {
            return Err(unavailable(service));
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            return Err(unavailable(service));
        }
    }
}

/// One service as the router sees it: where requests go, its counters, its rate limit.
pub struct Endpoint {
    /// The service.
    pub service: Arc<dyn Upstream>,
    /// Its traffic counters.
    pub metrics: Metrics,
    bucket: Option<TokenBucket>,
}

impl Endpoint {
    /// An endpoint for `service`, with its rate limit.
    pub fn new(service: Arc<dyn Upstream>) -> Arc<Self> {
        Arc::new(Self {
            bucket: service.rate_limit().map(TokenBucket::new),
            metrics: Metrics::default(),
            service,
        })
    }
}

/// Every service's endpoint by name, in file order.
pub type Endpoints = IndexMap<String, Arc<Endpoint>>;

/// The proxy shared by all listeners.
#[derive(Clone)]
pub struct Router {
    client: Client<HttpConnector, Incoming>,
    retry_client: Client<HttpConnector, Empty<Bytes>>,
    /// Every service's endpoint, in file order (a new map when a reload adds or removes one).
    endpoints: Arc<std::sync::RwLock<Arc<Endpoints>>>,
    requests: RequestLog,
    /// The secret that proves a forwarded request's caller header was set by pactown.
    proof: Arc<str>,
}

/// A secret for one running ecosystem, from the kernel's random source.
pub fn new_secret() -> Arc<str> {
    let mut bytes = [0u8; 16];
    // getrandom(2) never fails for 16 bytes once the pool is initialized.
    // SAFETY: writes at most `bytes.len()` bytes into the buffer.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    hex::encode(bytes).into()
}

impl Router {
    /// A router over `endpoints`, with a pooled keep-alive client and a request log.
    pub fn new(
        endpoints: IndexMap<String, Arc<Endpoint>>,
        requests: RequestLog,
        proof: Arc<str>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector.clone());
        let retry_client = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            client,
            retry_client,
            endpoints: Arc::new(std::sync::RwLock::new(Arc::new(endpoints))),
            requests,
            proof,
        }
    }

    /// Every service's endpoint now, in file order.
    pub fn endpoints(&self) -> Arc<Endpoints> {
        self.endpoints.read().expect("endpoints").clone()
    }

    /// A service's endpoint.
    pub fn endpoint(&self, name: &str) -> Option<Arc<Endpoint>> {
        self.endpoints.read().expect("endpoints").get(name).cloned()
    }

    /// A service added while running (a reload).
    pub fn add_endpoint(&self, name: &str, endpoint: Arc<Endpoint>) {
        let mut guard = self.endpoints.write().expect("endpoints");
        let mut map = (**guard).clone();
        map.insert(name.to_string(), endpoint);
        *guard = Arc::new(map);
    }

    /// A service removed while running (a reload).
    pub fn remove_endpoint(&self, name: &str) {
        let mut guard = self.endpoints.write().expect("endpoints");
        let mut map = (**guard).clone();
        map.shift_remove(name);
        *guard = Arc::new(map);
    }

    /// Serve a service's stable address until the task is dropped.
    pub async fn serve(self, listener: TcpListener, endpoint: Arc<Endpoint>) {
        self.serve_with(listener, move |router, req, peer| {
            let endpoint = endpoint.clone();
            async move {
                let response = router.dispatch(req, &endpoint, peer, None).await;
                if response.status().as_u16() < 500 {
                    crate::telemetry::start::mark(crate::telemetry::start::Stage::Answered);
                }
                response
            }
        })
        .await
    }

    /// Accept HTTP/1 connections on `listener` and answer each request with `handle`.
    pub async fn serve_with<F, Fut>(self, listener: TcpListener, handle: F)
    where
        F: Fn(Router, Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
    {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                // A client that gave up before being accepted: next.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
                // Out of file descriptors or memory: give others time to close theirs instead of
                // spinning on the same error.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = self.clone();
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let fut = handle(router.clone(), req, peer);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    /// One request to a service: rate limit, forward, count, log. `caller` is the calling
    /// service when pactown knows it (its proxy); a request pactown forwarded for a wasm guest
    /// proves its caller header with the run's secret. Every other `x-pactown-*` header a client
    /// sends is removed: no client can pass itself off as a service.
    pub async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        endpoint: &Endpoint,
        peer: SocketAddr,
        caller: Option<&str>,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let proven = req
            .headers()
            .get(PROOF_HEADER)
            .is_some_and(|p| constant_time_eq(p.as_bytes(), self.proof.as_bytes()));
        let caller = caller.map(str::to_string).or_else(|| {
            proven
                .then(|| {
                    req.headers()
                        .get(CALLER_HEADER)?
                        .to_str()
                        .ok()
                        .map(str::to_string)
                })
                .flatten()
        });
        // Only a proven request keeps its hop count (loops through native services still end).
        let strip: Vec<header::HeaderName> = req
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("x-pactown-"))
            .filter(|k| !(proven && k.as_str() == HOPS_HEADER))
            .cloned()
            .collect();
        for k in strip {
            req.headers_mut().remove(k);
        }
        if let Some(v) = caller
            .as_deref()
            .and_then(|c| header::HeaderValue::from_str(c).ok())
        {
            req.headers_mut().insert(CALLER_HEADER, v);
        }
        let caller = caller.unwrap_or_else(|| "-".to_string());
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let resp = match endpoint.bucket.as_ref().map(TokenBucket::take) {
            Some(Err(wait)) => {
                endpoint
                    .metrics
                    .rate_limited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                endpoint
                    .service
                    .denied("request over rate limit", &caller, "answered 429");
                rate_limited(
                    endpoint.service.name(),
                    endpoint.bucket.as_ref().map(TokenBucket::limit),
                    wait,
                )
            }
            _ => self.forward(req, &*endpoint.service, peer).await,
        };
        let latency = started.elapsed();
        endpoint.metrics.record(resp.status().as_u16(), latency);
        self.requests.record(
            &caller,
            endpoint.service.name(),
            &method,
            &path,
            resp.status().as_u16(),
            latency,
        );
        resp
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        service: &dyn Upstream,
        peer: SocketAddr,
    ) -> Response<Body> {
        let name = service.name();
        // Read once: each read of the ready ports moves the round robin on.
        let mut ports = Vec::new();
        if service.http_handler().is_none() {
            ports = service.ready_ports();
            if ports.is_empty() {
                if let Err(refused) = hold(service).await {
                    return refused;
                }
                ports = service.ready_ports();
            }
        }
        if let Some(handler) = service.http_handler() {
            // In-process: a fresh instance for this request. The guest sees its own name as
            // the authority, whatever Host the client sent.
            let path = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            if let Ok(uri) = format!("http://{name}{path}").parse() {
                *req.uri_mut() = uri;
            }
            return handler.handle(req).await;
        }
        let Some(&first) = ports.first() else {
            return unavailable(service);
        };
        // A protocol switch (WebSocket, say) keeps its `upgrade` headers, and once the replica
        // agrees, the two connections are joined byte for byte.
        let upgrade = wants_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let retryable = upgrade.is_none() && is_idempotent(req.method()) && body_is_empty(&req);
        let (mut parts, body) = req.into_parts();
        let protocol = parts.headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(&mut parts.headers);
        if let (Some(_), Some(p)) = (&upgrade, protocol) {
            parts.headers.insert(header::UPGRADE, p);
            parts.headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("upgrade"),
            );
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.headers.insert(
            "x-forwarded-for",
            header::HeaderValue::from_str(&peer.ip().to_string()).expect("ip is a header value"),
        );
        // Keep a copy for a retry only when one is possible.
        let keep = retryable.then(|| parts.clone());
        parts.uri = format!("http://127.0.0.1:{first}{path}")
            .parse()
            .expect("valid uri");
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => match upgrade {
                Some(client) => join_upgraded(client, resp),
                None => bad_gateway_msg(name, "switched protocols without being asked to"),
            },
            Ok(resp) => relay(resp),
            // The replica is gone (refused, or a pooled connection it closed as it died): an
            // idempotent request without a body is safe to send again, to a replica ready now.
            Err(e) if keep.is_some() => {
                let keep = keep.expect("checked");
                // The replicas ready now (a rolling restart may have replaced some since), the
                // one that failed last; none yet while it restarts: held until one is.
                let mut again: Vec<u16> = service.ready_ports();
                if again.is_empty() && hold(service).await.is_ok() {
                    again = service.ready_ports();
                }
                again.sort_by_key(|p| *p == first);
                for port in again {
                    let mut p = keep.clone();
                    p.uri = format!("http://127.0.0.1:{port}{path}")
                        .parse()
                        .expect("valid uri");
                    match self
                        .retry_client
                        .request(Request::from_parts(p, Empty::new()))
                        .await
                    {
                        Ok(resp) => return relay(resp),
                        Err(_) => continue,
                    }
                }
                if e.is_connect() {
                    unavailable(service)
                } else {
                    bad_gateway(name, &e)
                }
            }
            Err(e) => bad_gateway(name, &e),
        }
    }

    /// Send a request to an address outside pactown (the native proxy's pass-through).
    pub async fn pass_through(&self, req: Request<Incoming>) -> Response<Body> {
        let host = req.uri().host().unwrap_or_default().to_string();
        match self.client.request(req).await {
            Ok(resp) => relay(resp),
            Err(e) => json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({"error": format!("`{host}` failed to answer: {e}")}),
            ),
        }
    }
}

/// Compare two secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn rate_limited(name: &str, limit: Option<RateLimit>, wait: std::time::Duration) -> Response<Body> {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let what = limit.map_or(String::new(), |l| {
        format!(
            " of {} requests per {}",
            l.requests,
            humantime::format_duration(l.per)
        )
    });
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({"error": format!("rate limit{what} exceeded for `{name}`"), "service": name, "retry_after": secs}),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    r
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): about one connection, never forwarded. Passing a
/// replica's `connection: close` to the client would close the client's connection too.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
        .collect();
    for n in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        headers.remove(n);
    }
}

fn relay(mut resp: Response<Incoming>) -> Response<Body> {
    strip_hop_by_hop(resp.headers_mut());
    // Answer in our own protocol version, whatever the replica spoke (an HTTP/1.0 server would
    // otherwise turn every client connection into one that closes).
    *resp.version_mut() = http::Version::HTTP_11;
    resp.map(boxed)
}

/// The request asks to switch protocols (`Connection: upgrade` with an `Upgrade` header).
fn wants_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Answer the client with the replica's 101 and, once both sides have switched, copy bytes
/// between the two connections until either closes.
fn join_upgraded(
    client: hyper::upgrade::OnUpgrade,
    mut resp: Response<Incoming>,
) -> Response<Body> {
    let replica = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        if let (Ok(client), Ok(replica)) = (client.await, replica.await) {
            let _ = tokio::io::copy_bidirectional(
                &mut hyper_util::rt::TokioIo::new(client),
                &mut hyper_util::rt::TokioIo::new(replica),
            )
            .await;
        }
    });
    let (mut parts, _) = resp.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(p) = protocol {
        parts.headers.insert(header::UPGRADE, p);
    }
    parts.headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    Response::from_parts(parts, full(Bytes::new()))
}

fn is_idempotent(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::DELETE
            | http::Method::PUT
    )
}

fn body_is_empty(req: &Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    req.body().size_hint().exact() == Some(0)
}

fn unavailable(service: &dyn Upstream) -> Response<Body> {
    let status = service.status();
    let why = match status.state {
        crate::control::status::State::Failed => "has no ready instance (it failed)",
        crate::control::status::State::Starting => "has no ready instance (it is still starting)",
        _ => "has no ready instance",
    };
    let mut r = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({
            "error": format!("service `{}` {why}", status.name),
            "service": status.name,
            "state": status.state,
        }),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

fn bad_gateway(name: &str, e: &hyper_util::client::legacy::Error) -> Response<Body> {
    bad_gateway_msg(name, &e.to_string())
}

fn bad_gateway_msg(name: &str, why: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_GATEWAY,
        &serde_json::json!({"error": format!("service `{name}` failed to answer: {why}"), "service": name}),
    )
}
