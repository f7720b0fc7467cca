//! The HTTP client of the built-in services: job-control calling services at their stable
//! addresses, discovery checking health URLs.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A keep-alive HTTP/1 client.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its body, as JSON when it is (else a JSON string of its text).
    pub body: serde_json::Value,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client.
    pub fn new() -> Self {
        let mut c = HttpConnector::new();
        c.set_nodelay(true);
        c.set_connect_timeout(Some(Duration::from_secs(5)));
        Self(Client::builder(TokioExecutor::new()).build(c))
    }

    /// Send a request with a JSON body (none for `Null`), waiting at most `timeout`.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let bytes = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let req = req
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| format!("bad request to {url}: {e}"))?;
        let answer = async {
            let resp = self
                .0
                .request(req)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: the answer was cut short: {e}"))?
                .to_bytes();
            let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
            });
            Ok(Reply { status, body })
        };
        tokio::time::timeout(timeout, answer).await.map_err(|_| {
            format!(
                "{url} did not answer within {}",
                humantime::format_duration(timeout)
            )
        })?
    }

    /// Does `url` answer a GET with 2xx or 3xx within `timeout`?
    pub async fn healthy(&self, url: &str, timeout: Duration) -> bool {
        self.call(Method::GET, url, &[], &serde_json::Value::Null, timeout)
            .await
            .is_ok_and(|r| r.status.is_success() || r.status.is_redirection())
    }
}
