//! pactown's `wasi:http/outgoing-handler.handle`: routes requests without a body within the
//! guest's call (see [`handle`]); the routing itself is [`super::outgoing`]'s.

use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};

use super::outgoing::{answer, bodyless_request, is_zero_length, keep_until_finished, with_driver};
use super::state::HostState;

/// `wasi:http/outgoing-handler.handle`, in place of wasi:http's own.
///
/// wasi:http answers every call with a future backed by two tasks: one that sends the request
/// and one that drives the connection, and the guest waits for the first to wake it. A request
/// without a body (none, or `content-length: 0`) is routed here instead and its answer is
/// started in this call: a refusal is ready at once, and a wasm callee runs inline until it
/// answers or has to wait. Only an answer that has to wait (for a socket, a timer, another
/// service) goes on in a task of its own, so the guest is never held here while it could be
/// doing something else (sending other requests, timing this one out). A request with a body
/// goes wasi:http's way, since the guest writes its body only after this call returns.
pub fn handle(
    state: &mut HostState,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<wasmtime_wasi_http::RequestOptions>>,
) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, ErrorCode>> {
    let bodyless = {
        let r = state.table.get(&request)?;
        r.body.is_none() || is_zero_length(&r.headers)
    };
    if !bodyless {
        let mut view = state.http();
        return match outgoing_handler::Host::handle(&mut view, request, options) {
            Ok(r) => Ok(Ok(r)),
            Err(e) => e.downcast().map(Err),
        };
    }
    let options = match options {
        Some(o) => Some(*state.table.get(&o)?),
        None => None,
    };
    let mut r = state.table.delete(request)?;
    if let Some(body) = r.body.take() {
        keep_until_finished(&mut state.unsent, body);
    }
    let mut request = match bodyless_request(r, &mut state.hooks) {
        Ok(req) => req,
        Err(code) => return Ok(Err(code)),
    };
    let route = state.hooks.route(&mut request);
    let mut answer = answer(route, request, options);
    // One poll, here: if it has to wait, whatever it waits for is registered again by the
    // task that takes it over, so this poll needs no waker.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let future = match answer.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => HostFutureIncomingResponse::Ready(r.map(with_driver)),
        std::task::Poll::Pending => HostFutureIncomingResponse::Pending(
            tokio::spawn(async move { answer.await.map(with_driver) }).into(),
        ),
    };
    Ok(Ok(state.table.push(future)?))
}
