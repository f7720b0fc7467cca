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
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Header counting service-to-service hops, to stop loops.
pub const HOPS_HEADER: &str = "x-pactown-hops";
/// Most hops a request may take.
pub const MAX_HOPS: u32 = 16;
/// Header naming the calling service on forwarded requests.
pub const CALLER_HEADER: &str = "x-pactown-caller";

/// The host's decision for one outgoing request.
pub enum Route {
    /// Send it to this address (a service's stable address).
    Forward(SocketAddr),
    /// Handle it in this process, without TCP.
    InProcess(Arc<dyn InProcess>),
    /// Answer it here with a status and a JSON message.
    Respond {
        /// HTTP status.
        status: u16,
        /// The `error` message.
        message: String,
    },
}

/// A service that can take a request in-process (a wasm HTTP service).
pub trait InProcess: Send + Sync {
    /// Handle the request; the response body streams from the callee.
    fn call(
        &self,
        request: http::Request<WasiBody>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;
}

/// Decides a [`Route`] from the request's host name and port (if it gave one).
pub type Resolver = Arc<dyn Fn(&str, Option<u16>) -> Route + Send + Sync>;

/// The `WasiHttpHooks` of one instance.
#[derive(Clone)]
pub struct OutgoingHooks {
    resolver: Option<Resolver>,
    caller: Arc<str>,
    hops: u32,
}

impl OutgoingHooks {
    /// Hooks for `caller`; without a resolver every outgoing request is refused.
    pub fn new(caller: &str, resolver: Option<Resolver>) -> Self {
        Self {
            resolver,
            caller: caller.into(),
            hops: 0,
        }
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
        let done =
            || Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<(), Error>> + Send>;
        // Whatever happens to it, the guest's body is read to its end, so the guest never sees
        // its write fail because we were quicker (see `DrainedBody`).
        let mut request = request.map(|b| DrainedBody::new(b).boxed());
        let host = request.uri().host().unwrap_or_default().to_string();
        let port = request.uri().port_u16();
        let hops = self.hops + 1;
        if hops > MAX_HOPS {
            let msg = format!("request loop: more than {MAX_HOPS} hops between services");
            return Box::new(async move { Ok((json_response(508, &msg), done())) });
        }
        let route = match &self.resolver {
            Some(r) => r(&host, port),
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
        match route {
            Route::Respond { status, message } => {
                Box::new(async move { Ok((json_response(status, &message), done())) })
            }
            Route::InProcess(callee) => {
                Box::new(async move { Ok((callee.call(request).await, done())) })
            }
            Route::Forward(addr) => {
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                *request.uri_mut() = match format!("http://{addr}{path}").parse() {
                    Ok(u) => u,
                    Err(_) => return Box::new(async { Err(Error::HttpRequestUriInvalid) }),
                };
                Box::new(async move {
                    let (resp, io) =
                        wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((
                        resp.map(BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = _> + Send>,
                    ))
                })
            }
        }
    }
}
