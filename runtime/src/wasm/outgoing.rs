//! Where a guest's outgoing HTTP requests go. The host resolves the request's host name
//! (`http://api/users` → `api`) to a [`Route`]: a stable address to forward to, another wasm
//! service to call in-process, or a refusal answered as an HTTP response the guest can read.
//! Nothing reaches the network unless the host's resolver says so.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Header counting service-to-service hops, to stop loops.
pub const HOPS_HEADER: &str = "x-pactown-hops";
/// Most hops a request may take.
pub const MAX_HOPS: u32 = 16;
/// Header naming the calling service on forwarded requests.
pub const CALLER_HEADER: &str = "x-pactown-caller";
/// Header proving to pactown's router that a forwarded request comes from pactown itself (a
/// secret of the running `up`), so it may believe the caller header. Only requests the host
/// forwards to a stable address carry it; the router removes it.
pub const PROOF_HEADER: &str = "x-pactown-proof";

/// The host's decision for one outgoing request.
pub enum Route {
    /// Send it to this address (a service's stable address).
    Forward(SocketAddr),
    /// Send it to a service that runs elsewhere, by its name on the network (a cluster's DNS),
    /// at its port: the name is looked up for each request.
    ForwardTo {
        /// Its host name.
        host: String,
        /// Its port.
        port: u16,
    },
    /// Handle it in this process, without TCP.
    InProcess(Arc<dyn InProcess>),
    /// Answer it here with a status and a JSON message.
    Respond {
        /// HTTP status.
        status: u16,
        /// The `error` message.
        message: String,
    },
    /// Send it to the network (an outside host the service may reach), once `check` has
    /// accepted the addresses its name resolves to.
    External(EgressCheck),
}

/// Accepts or refuses (with a message for the guest) the addresses an outside host resolved to.
pub type EgressCheck = Arc<dyn Fn(&[SocketAddr]) -> Result<(), String> + Send + Sync>;

/// What an outgoing request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `http` or `https`, when the request says.
    pub scheme: Option<&'a str>,
    /// Its host (a service name, an address, an outside host).
    pub host: &'a str,
    /// Its port, when it gave one.
    pub port: Option<u16>,
}

/// A service that can take a request in-process (a wasm HTTP service).
pub trait InProcess: Send + Sync {
    /// Handle the request; the response body streams from the callee.
    fn call(
        &self,
        request: http::Request<WasiBody>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;
}

/// Decides a [`Route`] from what the request asks for.
pub type Resolver = Arc<dyn Fn(&Target<'_>) -> Route + Send + Sync>;

/// The `WasiHttpHooks` of one instance.
#[derive(Clone)]
pub struct OutgoingHooks {
    resolver: Option<Resolver>,
    caller: Arc<str>,
    hops: u32,
    proof: Option<Arc<str>>,
}

impl OutgoingHooks {
    /// Hooks for `caller`; without a resolver every outgoing request is refused.
    pub fn new(caller: &str, resolver: Option<Resolver>) -> Self {
        Self {
            resolver,
            caller: caller.into(),
            hops: 0,
            proof: None,
        }
    }

    /// The same hooks, proving the caller of requests forwarded to a stable address.
    pub fn with_proof(mut self, proof: Arc<str>) -> Self {
        self.proof = Some(proof);
        self
    }

    /// The same hooks for a request that already took `hops` hops.
    pub fn with_hops(&self, hops: u32) -> Self {
        Self {
            hops,
            ..self.clone()
        }
    }
}

/// A JSON error response (`{"error": message}`), with the body error type the receiver needs:
/// a guest receives one instead of a connection, a client when a guest failed.
pub fn json_response<E: 'static>(
    status: u16,
    message: &str,
) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, E>> {
    let body = serde_json::json!({"error": message}).to_string();
    let mut r = http::Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A guest's request body as seen by whoever receives it (a callee in-process, or hyper
/// sending it over TCP). Like a socket buffer, it lets the guest finish writing even when the
/// receiver is done with the body early (answered without reading it, or saw it was empty):
/// dropped before its end, it reads what the guest has written already, and if the guest is
/// still writing, a task reads the rest and discards it. Without this, wstd's client, which
/// writes the body while awaiting the response, fails with "connection reset" whenever the
/// other side is quicker. Read to its end (the common case), it costs nothing: no task, no
/// channel. The body's size hint is kept, so framing (content-length or chunked) is unchanged.
pub struct DrainedBody {
    body: WasiBody,
    ended: bool,
}

impl DrainedBody {
    /// Wrap `body`.
    pub fn new(body: WasiBody) -> Self {
        use http_body::Body as _;
        let ended = body.is_end_stream();
        Self { body, ended }
    }

    /// As the boxed body type of wasi:http.
    pub fn boxed(self) -> WasiBody {
        BodyExt::boxed_unsync(self)
    }
}

impl http_body::Body for DrainedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for DrainedBody {
    fn drop(&mut self) {
        use http_body::Body as _;
        use std::task::{Context, Poll, Waker};
        if self.ended {
            return;
        }
        // What the guest wrote already is read here; only a guest still writing needs a task.
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match std::pin::Pin::new(&mut self.body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_)) | None) => return,
                Poll::Pending => break,
            }
        }
        let mut body = std::mem::replace(
            &mut self.body,
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        }
    }
}

impl OutgoingHooks {
    /// Decide where `request` goes, marking it with the hop count and the caller on the way.
    pub(super) fn route(&self, request: &mut http::Request<WasiBody>) -> Route {
        let hops = self.hops + 1;
        if hops > MAX_HOPS {
            return Route::Respond {
                status: 508,
                message: format!("request loop: more than {MAX_HOPS} hops between services"),
            };
        }
        let route = match &self.resolver {
            Some(r) => r(&Target {
                scheme: request.uri().scheme_str(),
                host: request.uri().host().unwrap_or_default(),
                port: request.uri().port_u16(),
            }),
            None => Route::Respond {
                status: 403,
                message: format!("outgoing HTTP is not allowed for `{}`", self.caller),
            },
        };
        let headers = request.headers_mut();
        headers.insert(HOPS_HEADER, http::HeaderValue::from(hops));
        if let Ok(v) = http::HeaderValue::from_str(&self.caller) {
            headers.insert(CALLER_HEADER, v);
        }
        // What the guest wrote is never taken for proof; only what pactown adds for a forward.
        headers.remove(PROOF_HEADER);
        if let (Route::Forward(_), Some(p)) = (&route, &self.proof)
            && let Ok(v) = http::HeaderValue::from_str(p)
        {
            headers.insert(PROOF_HEADER, v);
        }
        route
    }
}

/// Point a forwarded request at `addr`, keeping its path and query.
fn retarget(request: &mut http::Request<WasiBody>, addr: SocketAddr) -> Result<(), Error> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = format!("http://{addr}{path}")
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    Ok(())
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutgoingHooks {
    fn default_scheme(&mut self) -> Option<Scheme> {
        Some(Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        // Whatever happens to it, the guest's body is read to its end, so the guest never sees
        // its write fail because we were quicker (see `DrainedBody`).
        let mut request = request.map(|b| DrainedBody::new(b).boxed());
        let route = self.route(&mut request);
        let answer = answer(route, request, options);
        Box::new(async move {
            let (resp, io) = answer.await?;
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = match io {
                Some(io) => Box::new(io),
                None => Box::new(async { Ok(()) }),
            };
            Ok((resp, io))
        })
    }
}

/// What drives a forwarded response's connection, as hyper hands it over.
type IoFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// A response on its way, with the connection to drive if it came over one.
type Answer = std::pin::Pin<
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, Option<IoFuture>), Error>> + Send>,
>;

/// The response `route` gives `request`: made here, from another service in this process, or
/// from the network.
pub(super) fn answer(
    route: Route,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Answer {
    match route {
        Route::Respond { status, message } => Box::pin(std::future::ready(Ok((
            json_response(status, &message),
            None,
        )))),
        Route::InProcess(callee) => Box::pin(async move { Ok((callee.call(request).await, None)) }),
        Route::Forward(addr) => match retarget(&mut request, addr) {
            Ok(()) => Box::pin(async move {
                let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                let io: IoFuture = Box::pin(io);
                Ok((resp.map(BodyExt::boxed_unsync), Some(io)))
            }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        },
        Route::ForwardTo { host, port } => Box::pin(async move {
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()
                .and_then(|mut a| a.next());
            let Some(addr) = addr else {
                let message = format!(
                    "`{host}` does not resolve: the service runs elsewhere and its name is not known here"
                );
                return Ok((json_response(502, &message), None));
            };
            retarget(&mut request, addr)?;
            let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: IoFuture = Box::pin(io);
            Ok((resp.map(BodyExt::boxed_unsync), Some(io)))
        }),
        Route::External(check) => Box::pin(async move {
            let host = request.uri().host().unwrap_or_default().to_string();
            let port = request.uri().port_u16().unwrap_or(
                if request.uri().scheme() == Some(&Scheme::HTTPS) {
                    443
                } else {
                    80
                },
            );
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(Iterator::collect)
                .unwrap_or_default();
            if let Err(message) = check(&addrs) {
                return Ok((json_response(403, &message), None));
            }
            // Plain HTTP goes to the address that was checked, not to a second lookup of the name
            // (which could answer with this machine); its Host header keeps the name. TLS needs
            // the name for the certificate, so it connects by name.
            if request.uri().scheme() != Some(&Scheme::HTTPS) {
                let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
                if let Ok(uri) = format!("http://{}{path}", addrs[0]).parse() {
                    *request.uri_mut() = uri;
                }
            }
            let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: IoFuture = Box::pin(io);
            Ok((resp.map(BodyExt::boxed_unsync), Some(io)))
        }),
    }
}

/// A response as wasi:http keeps it: with a handle on the task driving its connection (a task
/// with nothing to do when there is none, since wasi:http wants one in every case).
pub(super) fn with_driver(
    (resp, io): (http::Response<WasiBody>, Option<IoFuture>),
) -> (
    http::Response<WasiBody>,
    wasmtime_wasi::runtime::AbortOnDropJoinHandle<()>,
) {
    let driver = tokio::spawn(async move {
        if let Some(io) = io {
            let _ = io.await;
        }
    });
    (resp, driver.into())
}

/// Hold the body of a request sent without it (declared empty) until the guest finishes it:
/// the guest's writer fails if the other end is gone. The finished ones are let go.
pub(super) fn keep_until_finished(unsent: &mut Vec<WasiBody>, body: WasiBody) {
    use http_body::Body as _;
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    // Kept: those still open. Let go: those finished, or aborted by the guest.
    unsent.retain_mut(|b| {
        loop {
            match std::pin::Pin::new(&mut *b).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_)) | None) => break false,
                Poll::Pending => break true,
            }
        }
    });
    unsent.push(body);
}

/// A guest's headers say its request has no content.
pub(super) fn is_zero_length(headers: &http::HeaderMap) -> bool {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    matches!((values.next(), values.next()), (Some(v), None) if v == "0")
}

/// The guest's request, with an empty body, as wasi:http builds it for its sender.
pub(super) fn bodyless_request(
    r: HostOutgoingRequest,
    hooks: &mut OutgoingHooks,
) -> Result<http::Request<WasiBody>, ErrorCode> {
    use wasmtime_wasi_http::p2::bindings::http::types::{Method as M, Scheme as S};
    let method = match r.method {
        M::Get => http::Method::GET,
        M::Head => http::Method::HEAD,
        M::Post => http::Method::POST,
        M::Put => http::Method::PUT,
        M::Delete => http::Method::DELETE,
        M::Connect => http::Method::CONNECT,
        M::Options => http::Method::OPTIONS,
        M::Trace => http::Method::TRACE,
        M::Patch => http::Method::PATCH,
        M::Other(m) => http::Method::from_bytes(m.as_bytes())
            .map_err(|_| ErrorCode::HttpRequestMethodInvalid)?,
    };
    let scheme = match r.scheme {
        Some(S::Http) => Scheme::HTTP,
        Some(S::Https) => Scheme::HTTPS,
        Some(S::Other(s)) => {
            Scheme::try_from(s.as_str()).map_err(|_| ErrorCode::HttpProtocolError)?
        }
        None => hooks.default_scheme().ok_or(ErrorCode::HttpProtocolError)?,
    };
    if !hooks.is_supported_scheme(&scheme) {
        return Err(ErrorCode::HttpProtocolError);
    }
    let authority = r.authority.unwrap_or_default();
    let mut uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str());
    if let Some(path) = r.path_with_query {
        uri = uri.path_and_query(path);
    }
    let uri = uri.build().map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    let mut headers = http::HeaderMap::from(r.headers);
    // `content-length: 0` only said "no body"; a GET or HEAD without content has no such header.
    if matches!(method, http::Method::GET | http::Method::HEAD) {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    if hooks.set_host_header()
        && let Ok(v) = http::HeaderValue::from_str(&authority)
    {
        headers.insert(http::header::HOST, v);
    }
    let mut request = http::Request::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}
