//! Components exporting `pactown:worker/handler` (`runtime/wit/worker.wit`): a whole HTTP
//! exchange in one call each way, for a guest that serves many requests per instance and whose
//! every host call is dear (a JavaScript Worker with `instance_reuse`: componentize-js's bindings
//! run interpreted, ~10 µs a call, and a wasi:http exchange takes a dozen). Here: the request as
//! one record in, the response as one record out, bodies whole both ways.

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

pub use bindings::exports::pactown::worker::handler::{Request, Response};
pub use bindings::{Served, ServedPre};

/// The interface, for the builds that target it.
pub const WIT: &str = include_str!("../../wit/worker.wit");

/// The export that marks such a component.
pub const EXPORT: &str = "pactown:worker/handler@0.1.0";

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
        Some(a) => a.as_str().to_string(),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string(),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = String::with_capacity(256);
    for (name, value) in &parts.headers {
        if !headers.is_empty() {
            headers.push('\n');
        }
        headers.push_str(name.as_str());
        headers.push('\n');
        headers.extend(value.as_bytes().iter().map(|&b| b as char));
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
    Ok(Request {
        method: parts.method.as_str().to_string(),
        url: format!("http://{authority}{path}"),
        headers,
        body: bytes,
    })
}

/// The guest's answer as an HTTP response.
pub(super) fn response(r: Response) -> Result<http::Response<Full<Bytes>>, String> {
    let status = StatusCode::from_u16(r.status).map_err(|_| {
        format!(
            "the guest answered with status {}, not an HTTP status",
            r.status
        )
    })?;
    let mut out = http::Response::new(Full::new(Bytes::from(r.body)));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    if !r.headers.is_empty() {
        let mut parts = r.headers.split('\n');
        while let Some(name) = parts.next() {
            let value = parts.next().ok_or_else(|| {
                format!("the guest's header `{name}` has no value (names and values alternate)")
            })?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("the guest answered with a bad header name `{name}`"))?;
            if HOST_SET.contains(&name.as_str()) {
                continue;
            }
            let bytes: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c).ok()).collect();
            let value = bytes
                .and_then(|b| HeaderValue::from_bytes(&b).ok())
                .ok_or_else(|| format!("the guest's header `{name}` has a bad value `{value}`"))?;
            headers.append(name, value);
        }
    }
    Ok(out)
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
    async fn a_request_becomes_one_record_with_its_header_bytes_as_latin1_characters() {
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
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "http://shop:8080/a/b?c=d");
        assert_eq!(
            r.headers,
            "host\nshop:8080\nx-twice\n1\nx-twice\n2\nx-latin\ncafé"
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

    #[test]
    fn a_response_keeps_its_status_repeated_headers_and_latin1_values() {
        let r = response(Response {
            status: 201,
            headers: "set-cookie\na=1\nset-cookie\nb=2\nx-latin\ncafé\nconnection\nclose\ncontent-length\n99".into(),
            body: b"made".to_vec(),
            pending: false,
        })
        .unwrap();
        assert_eq!(r.status(), 201);
        let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(r.headers()["x-latin"].as_bytes(), b"caf\xe9");
        // What the host sets itself is not taken from the guest.
        assert!(r.headers().get("connection").is_none());
        assert!(r.headers().get("content-length").is_none());
    }

    #[test]
    fn a_malformed_response_says_what_is_wrong() {
        let bad = |status, headers: &str| {
            response(Response {
                status,
                headers: headers.into(),
                body: vec![],
                pending: false,
            })
            .unwrap_err()
        };
        assert!(bad(1000, "").contains("status 1000"));
        assert!(bad(200, "x-lonely").contains("no value"));
        assert!(bad(200, "bad name\nv").contains("bad header name"));
        assert!(bad(200, "x\n\u{2603}").contains("bad value"));
    }
}
