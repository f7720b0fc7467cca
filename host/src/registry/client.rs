//! A client of the registry API (ours, or the reference's `pactown-registry`, for what it
//! has): reads, publishes, blobs with their digests checked, progress on long transfers, and
//! errors that say what to do.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::store::{ArtifactInfo, VersionInfo, sha256};

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Base URL (`http://127.0.0.1:8800`).
    pub url: String,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Where the token came from, for messages.
    pub token_source: String,
}

/// A client.
pub struct Client {
    registry: Registry,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    rt: tokio::runtime::Runtime,
    progress: bool,
}

/// A reply: status and body.
struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .context("the registry answered with something that is not JSON")
    }

    fn detail(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| {
                v.get("detail")
                    .map(|d| d.as_str().map_or(d.to_string(), str::to_string))
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(300)
                    .collect()
            })
    }
}

impl Client {
    /// A client of `registry`; progress bars on stderr when it is a terminal.
    pub fn new(registry: Registry) -> anyhow::Result<Self> {
        if !registry.url.starts_with("http://") {
            bail!(
                "registry URL `{}` is not an http:// URL (pactown talks plain HTTP to registries; put TLS in front with a proxy)",
                registry.url
            );
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            registry,
            http,
            rt,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.registry.url
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
        what: &str,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.registry.url.trim_end_matches('/'));
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.registry.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let (bytes, kind) = body.unwrap_or((Bytes::new(), "application/json"));
        let total = bytes.len();
        let req = req
            .header(http::header::CONTENT_TYPE, kind)
            .body(Full::new(bytes))
            .context("a bad request")?;
        let bar = (self.progress && total > (4 << 20)).then(|| {
            let b = indicatif::ProgressBar::new_spinner()
                .with_message(format!("{what}: sending {:.1} MB", total as f64 / 1e6));
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let reply = self.rt.block_on(async {
            let resp = tokio::time::timeout(Duration::from_secs(300), self.http.request(req))
                .await
                .map_err(|_| anyhow::anyhow!("the registry at {} did not answer within 300 s", self.registry.url))?
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no registry answers at {} ({e}); start one with `pactown registry serve --storage DIR`, or point to another with `--registry URL` or PACTOWN_REGISTRY",
                        self.registry.url
                    )
                })?;
            let status = resp.status();
            let length = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let down = match (self.progress, length) {
                (true, Some(n)) if n > (4 << 20) => Some(transfer_bar(n, what)),
                _ => None,
            };
            let mut body = resp.into_body();
            let mut buf = Vec::with_capacity(length.unwrap_or(0) as usize);
            while let Some(frame) = body.frame().await {
                let frame = frame.context("the registry's answer was cut short")?;
                if let Some(d) = frame.data_ref() {
                    buf.extend_from_slice(d);
                    if let Some(b) = &down {
                        b.set_position(buf.len() as u64);
                    }
                }
            }
            if let Some(b) = down {
                b.finish_and_clear();
            }
            anyhow::Ok(Reply {
                status,
                body: Bytes::from(buf),
            })
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let reply = reply?;
        match reply.status {
            StatusCode::UNAUTHORIZED => bail!(
                "the registry at {} needs a token to {what}; pass `--token`, or set PACTOWN_REGISTRY_TOKEN or the ecosystem's `registry.auth_token`",
                self.registry.url
            ),
            StatusCode::FORBIDDEN => bail!(
                "the registry at {} refused the token from {} to {what}: {}",
                self.registry.url,
                self.registry.token_source,
                reply.detail()
            ),
            _ => Ok(reply),
        }
    }

    /// Is it up?
    pub fn health(&self) -> anyhow::Result<()> {
        let r = self.request(Method::GET, "/health", None, "check its health")?;
        if r.status != StatusCode::OK {
            bail!(
                "the registry at {} is not healthy: {} {}",
                self.registry.url,
                r.status,
                r.detail()
            );
        }
        Ok(())
    }

    /// `GET /v1/artifacts`.
    pub fn list(
        &self,
        namespace: Option<&str>,
        search: Option<&str>,
    ) -> anyhow::Result<Vec<ArtifactInfo>> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(n) = namespace {
            q.append_pair("namespace", n);
        }
        if let Some(s) = search {
            q.append_pair("search", s);
        }
        let q = q.finish();
        let path = if q.is_empty() {
            "/v1/artifacts".to_string()
        } else {
            format!("/v1/artifacts?{q}")
        };
        let r = self.request(Method::GET, &path, None, "list its artifacts")?;
        if r.status != StatusCode::OK {
            bail!("listing failed: {} {}", r.status, r.detail());
        }
        let v = r.json()?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(artifact_info)
            .collect())
    }

    /// `GET /v1/artifacts/{ns}/{name}/{version}` (`version` may be `latest` or a range).
    pub fn version(
        &self,
        ns: &str,
        name: &str,
        version: &str,
    ) -> anyhow::Result<Option<VersionInfo>> {
        let path = format!("/v1/artifacts/{}/{}/{}", seg(ns), seg(name), seg(version));
        let r = self.request(Method::GET, &path, None, &format!("read {ns}/{name}"))?;
        match r.status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let v = r.json()?;
                Ok(Some(VersionInfo {
                    version: v["version"].as_str().unwrap_or_default().into(),
                    readme_content: v["readme_content"].as_str().unwrap_or_default().into(),
                    checksum: v["checksum"].as_str().unwrap_or_default().into(),
                    published_at: v["published_at"].as_str().unwrap_or_default().into(),
                    metadata: v["metadata"].clone(),
                }))
            }
            s => bail!("reading {ns}/{name} {version} failed: {s} {}", r.detail()),
        }
    }

    /// `POST /v1/publish`: the checksum, or the existing one when the version was published
    /// before (`Err` carries the registry's words).
    pub fn publish(&self, body: &serde_json::Value) -> anyhow::Result<Published> {
        let r = self.request(
            Method::POST,
            "/v1/publish",
            Some((Bytes::from(body.to_string()), "application/json")),
            "publish to it",
        )?;
        let v = r.json().unwrap_or_default();
        match r.status {
            StatusCode::OK => Ok(Published::New {
                checksum: v["checksum"].as_str().unwrap_or_default().into(),
            }),
            StatusCode::CONFLICT => Ok(Published::Exists {
                checksum: v["checksum"].as_str().unwrap_or_default().into(),
            }),
            s => bail!("{s}: {}", r.detail()),
        }
    }

    /// `DELETE /v1/artifacts/{ns}/{name}`.
    pub fn delete(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let path = format!("/v1/artifacts/{}/{}", seg(ns), seg(name));
        let r = self.request(Method::DELETE, &path, None, &format!("delete {ns}/{name}"))?;
        match r.status {
            StatusCode::OK => Ok(()),
            s => bail!("deleting {ns}/{name} failed: {s} {}", r.detail()),
        }
    }

    /// Upload a blob unless the registry has it: its digest (hex), or `None` when the registry
    /// takes no blobs (the Python pactown's does not).
    pub fn put_blob(&self, bytes: Bytes, what: &str) -> anyhow::Result<Option<String>> {
        let what = &format!("upload {what}");
        let hex = sha256(&bytes);
        let path = format!("/v1/blobs/sha256:{hex}");
        let head = self.request(Method::HEAD, &path, None, what)?;
        if head.status == StatusCode::OK {
            return Ok(Some(hex));
        }
        let body = Some((bytes, "application/octet-stream"));
        let r = self.request(Method::PUT, &path, body, what)?;
        match r.status {
            StatusCode::CREATED | StatusCode::OK => Ok(Some(hex)),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(None),
            s => bail!("uploading {what} failed: {s} {}", r.detail()),
        }
    }

    /// `GET /v1/artifacts/{ns}/{name}`.
    pub fn artifact(&self, ns: &str, name: &str) -> anyhow::Result<Option<ArtifactInfo>> {
        let path = format!("/v1/artifacts/{}/{}", seg(ns), seg(name));
        let r = self.request(Method::GET, &path, None, &format!("read {ns}/{name}"))?;
        match r.status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => Ok(Some(artifact_info(&r.json()?))),
            s => bail!("reading {ns}/{name} failed: {s} {}", r.detail()),
        }
    }

    /// A version matching `wanted` (exact, `latest`, or a semver range), resolved by the
    /// registry, or here from its list of versions when the registry takes only exact ones
    /// (the Python pactown's).
    pub fn resolve(
        &self,
        ns: &str,
        name: &str,
        wanted: &str,
    ) -> anyhow::Result<Option<VersionInfo>> {
        if let Some(v) = self.version(ns, name, wanted)? {
            return Ok(Some(v));
        }
        let Some(artifact) = self.artifact(ns, name)? else {
            return Ok(None);
        };
        match super::store::resolve(&artifact, wanted) {
            Some(exact) if exact != wanted => self.version(ns, name, &exact),
            _ => Ok(None),
        }
    }

    /// Download a blob and check its digest.
    pub fn get_blob(&self, hex: &str, what: &str) -> anyhow::Result<Bytes> {
        let action = format!("download {what}");
        let r = self.request(
            Method::GET,
            &format!("/v1/blobs/sha256:{hex}"),
            None,
            &action,
        )?;
        if r.status != StatusCode::OK {
            bail!(
                "downloading {what} (sha256:{hex}) failed: {} {}",
                r.status,
                r.detail()
            );
        }
        let got = sha256(&r.body);
        if got != hex {
            bail!(
                "{what} from {} has SHA-256 {got}, not the {hex} it was published with: refused",
                self.registry.url
            );
        }
        Ok(r.body)
    }
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// A new version, with its checksum.
    New {
        /// SHA-256 of the README bundle.
        checksum: String,
    },
    /// The version existed, with this checksum.
    Exists {
        /// SHA-256 of what is published.
        checksum: String,
    },
}

fn artifact_info(a: &serde_json::Value) -> ArtifactInfo {
    ArtifactInfo {
        name: a["name"].as_str().unwrap_or_default().into(),
        namespace: a["namespace"].as_str().unwrap_or_default().into(),
        description: a["description"].as_str().unwrap_or_default().into(),
        latest_version: a["latest_version"].as_str().map(str::to_string),
        versions: strings(&a["versions"]),
        tags: strings(&a["tags"]),
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        // The reference's models give versions as a map in places.
        serde_json::Value::Object(o) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn transfer_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("a template"),
    );
    bar.set_message(what.to_string());
    bar
}
