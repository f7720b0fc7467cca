//! Components exporting `pactown:worker/handler` (`runtime/wit/worker.wit`): a whole HTTP
//! exchange in one call each way, for a guest that serves many requests per instance and whose
//! every host call is dear (a JavaScript Worker with `instance_reuse`: componentize-js's bindings
//! run interpreted, ~10 µs a call, and a wasi:http exchange takes a dozen). Here: the request as
//! its head's text and its body in, the response as one list of bytes out, bodies whole both
//! ways.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};

mod bindings {
    //! Generated from `runtime/wit/worker.wit`.
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "wit/worker.wit",
        world: "served",
        exports: { default: async },
    });
}

pub use bindings::{Served, ServedPre};

/// The interface, for the builds that target it.
pub const WIT: &str = include_str!("../../wit/worker.wit");

/// The interface's version: a component built against another one is not served as a handler.
macro_rules! version {
    () => {
        "0.2.0"
    };
}

/// The export that marks such a component.
pub const EXPORT: &str = concat!("pactown:worker/handler@", version!());

/// The WIT package line of a world a guest is built for, beside `WIT`.
pub const PACKAGE: &str = concat!("package pactown:worker@", version!(), ";");

/// The name of `world`, one of the guest's worlds in `PACKAGE` (`reuse` → `pactown:worker/reuse@…`).
pub fn world(world: &str) -> String {
    format!("pactown:worker/{world}@{}", version!())
}

/// Headers about one connection, which the host sets and a guest's answer does not (as
/// wasi:http refuses them), and the length, which the host sets from the body it sends.
const HOST_SET: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "te",
    "trailer",
    "http2-settings",
    "content-length",
];

/// Why a request never reached the guest: the answer its client gets instead.
#[derive(Debug)]
pub(super) struct Refused {
    /// 413 (a body over the limit) or 400 (a body that could not be read).
    pub status: u16,
    /// Why, in words.
    pub why: String,
}

/// A request as the guest takes it: its head (`METHOD url`, then the headers) and its body.
#[derive(Debug)]
pub(super) struct Request {
    pub head: String,
    pub body: Vec<u8>,
}

/// A guest's answer.
#[derive(Debug)]
pub(super) struct Answer {
    pub response: http::Response<Full<Bytes>>,
    /// It has work left to do (`settle` it before its next request).
    pub pending: bool,
}

/// The request as the guest takes it. Its body is read whole, and refused past `limit` bytes
/// (the guest's memory could not hold it).
pub(super) async fn request<B>(req: http::Request<B>, limit: usize) -> Result<Request, Refused>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (parts, body) = req.into_parts();
    let mut body = std::pin::pin!(body);
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost"),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("{} http://{authority}{path}", parts.method);
    for (name, value) in &parts.headers {
        head.push('\n');
        head.push_str(name.as_str());
        head.push('\n');
        match value.to_str() {
            Ok(text) => head.push_str(text),
            Err(_) => head.extend(value.as_bytes().iter().map(|&b| b as char)),
        }
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refused {
            status: 400,
            why: format!("reading the request body: {}", e.into()),
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(Refused {
                    status: 413,
                    why: format!(
                        "the request body is over {} MiB, the service's memory limit",
                        limit >> 20
                    ),
                });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Request { head, body: bytes })
}

/// The guest's answer (its head's text, a NUL byte, its body) as an HTTP response.
pub(super) fn response(answer: Vec<u8>) -> Result<Answer, String> {
    let mut answer = Bytes::from(answer);
    let end = answer
        .iter()
        .position(|&b| b == 0)
        .ok_or("the guest's answer has no end of its head (a NUL byte)")?;
    let body = answer.split_off(end + 1);
    let head = std::str::from_utf8(&answer[..end])
        .map_err(|e| format!("the guest's answer's head is not UTF-8 text ({e})"))?;
    let mut lines = head.split('\n');
    let first = lines.next().unwrap_or_default();
    let (status, pending) = match first.strip_suffix(" pending") {
        Some(status) => (status, true),
        None => (first, false),
    };
    let status = status
        .parse()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("the guest answered with status `{status}`, not an HTTP status"))?;
    let mut out = http::Response::new(Full::new(body));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    while let Some(name) = lines.next() {
        let value = lines.next().ok_or_else(|| {
            format!("the guest's header `{name}` has no value (names and values alternate)")
        })?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("the guest answered with a bad header name `{name}`"))?;
        if HOST_SET.contains(&name.as_str()) {
            continue;
        }
        // Values are Latin-1 characters, one per byte; ASCII (nearly every value) is its own bytes.
        let parsed = if value.is_ascii() {
            HeaderValue::from_str(value).ok()
        } else {
            let bytes: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c).ok()).collect();
            bytes.and_then(|b| HeaderValue::from_bytes(&b).ok())
        };
        let value = parsed
            .ok_or_else(|| format!("the guest's header `{name}` has a bad value `{value}`"))?;
        headers.append(name, value);
    }
    Ok(Answer {
        response: out,
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(
        b: &[u8],
    ) -> impl http_body::Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + use<> {
        Full::new(Bytes::copy_from_slice(b))
            .map_err(|n| -> wasmtime_wasi_http::Error { match n {} })
    }

    #[tokio::test]
    async fn a_request_becomes_its_head_and_body_with_header_bytes_as_latin1_characters() {
        let req = http::Request::builder()
            .method("POST")
            .uri("/a/b?c=d")
            .header("host", "shop:8080")
            .header("x-twice", "1")
            .header("x-twice", "2")
            .header("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap())
            .body(body(b"hello"))
            .unwrap();
        let r = request(req, 1 << 20).await.unwrap();
        assert_eq!(
            r.head,
            "POST http://shop:8080/a/b?c=d\nhost\nshop:8080\nx-twice\n1\nx-twice\n2\nx-latin\ncafé"
        );
        assert_eq!(r.body, b"hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let req = http::Request::new(body(&[0; 2048]));
        let e = request(req, 1024).await.unwrap_err();
        assert_eq!(e.status, 413);
        assert!(e.why.contains("request body"), "{e:?}");
    }

    fn answer(head: &str, body: &[u8]) -> Vec<u8> {
        [head.as_bytes(), b"\0", body].concat()
    }

    #[tokio::test]
    async fn a_response_keeps_its_status_repeated_headers_latin1_values_and_binary_body() {
        let a = response(answer(
            "201\nset-cookie\na=1\nset-cookie\nb=2\nx-latin\ncafé\nx-empty\n\nconnection\nclose\ncontent-length\n99",
            b"made\0\n\xff",
        ))
        .unwrap();
        assert!(!a.pending);
        let r = a.response;
        assert_eq!(r.status(), 201);
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(r.headers()["x-latin"].as_bytes(), b"caf\xe9");
        assert_eq!(r.headers()["x-empty"], "");
        // What the host sets itself is not taken from the guest.
        assert!(r.headers().get("connection").is_none());
        assert!(r.headers().get("content-length").is_none());
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"made\0\n\xff");
    }

    #[test]
    fn an_answer_with_work_left_says_so() {
        let a = response(answer("200 pending", b"")).unwrap();
        assert!(a.pending);
        assert_eq!(a.response.status(), 200);
        assert!(a.response.headers().is_empty());
    }

    #[test]
    fn the_wit_is_the_version_the_guests_are_built_for() {
        assert!(WIT.starts_with(PACKAGE), "{PACKAGE}");
        assert_eq!(EXPORT, world("handler"));
    }

    #[test]
    fn a_malformed_response_says_what_is_wrong() {
        let bad = |head: &[u8]| response([head, b"\0"].concat()).unwrap_err();
        assert!(response(b"200".to_vec()).unwrap_err().contains("NUL"));
        assert!(bad(b"1000").contains("status `1000`"));
        assert!(bad(b"ok").contains("status `ok`"));
        assert!(bad(b"200\nx-lonely").contains("no value"));
        assert!(bad(b"200\nbad name\nv").contains("bad header name"));
        assert!(bad("200\nx\n\u{2603}".as_bytes()).contains("bad value"));
        assert!(bad(b"200\nx\n\xe9").contains("not UTF-8"));
    }
}
