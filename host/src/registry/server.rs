//! `pactown registry serve`: the reference's registry API (../shared/REFERENCE.md §4, the same
//! JSON, errors as `{"detail": …}` as FastAPI writes them), plus blobs by digest:
//!
//! | method, path | |
//! |---|---|
//! | `GET /health` | `{"status": "ok", "service": "pactown-registry"}` |
//! | `GET /v1/artifacts?namespace=&search=` | artifacts |
//! | `GET /v1/artifacts/{ns}/{name}` | one artifact |
//! | `GET /v1/artifacts/{ns}/{name}/{version}` | a version (`latest`, `*` or a semver range allowed) |
//! | `GET /v1/artifacts/{ns}/{name}/{version}/readme` | `{"content": …}` |
//! | `POST /v1/publish` | publish a version (immutable: 409 naming the existing checksum) |
//! | `DELETE /v1/artifacts/{ns}/{name}` | remove |
//! | `GET /v1/namespaces` | `{"namespaces": […]}` |
//! | `PUT /v1/blobs/sha256:{hex}` | store a blob (its content must have that digest) |
//! | `GET`, `HEAD /v1/blobs/sha256:{hex}` | a blob |
//!
//! With a token file, publishing, uploading and deleting need `Authorization: Bearer <token>`
//! (401 without one, 403 with a wrong one; compared in constant time), and with `--private`
//! reading does too. Without a token file the server listens on loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use subtle::ConstantTimeEq;

use super::store::{self, Publish, PublishError, Store};

/// How a registry serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where blobs and the index live.
    pub storage: PathBuf,
    /// The tokens that may publish (one per line of `--token-file`).
    pub tokens: Vec<String>,
    /// Reading needs a token too.
    pub private: bool,
    /// The largest blob or publish body accepted, in bytes.
    pub max_body: usize,
}

/// The default largest body: 64 MiB (a Python component is about 18 MB).
pub const MAX_BODY: usize = 64 << 20;

/// Read a token file: one token per line, blank lines and `#` comments ignored.
pub fn read_tokens(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file `{}`", path.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        bail!("the token file `{}` holds no token", path.display());
    }
    Ok(tokens)
}

struct State {
    store: Store,
    opts: ServeOptions,
}

/// Serve until the process is stopped; `ready` hears the bound address.
pub async fn serve(opts: ServeOptions, ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    if opts.tokens.is_empty() && !opts.addr.ip().is_loopback() {
        bail!(
            "refusing to serve on {} without a token: anyone who can reach it could publish and delete",
            opts.addr
        );
    }
    let store = Store::open(&opts.storage)?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .with_context(|| format!("cannot listen on {}", opts.addr))?;
    ready(listener.local_addr()?);
    let state = Arc::new(State { store, opts });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, body: &serde_json::Value) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

fn detail(status: StatusCode, detail: impl Into<String>) -> Answer {
    json(status, &serde_json::json!({"detail": detail.into()}))
}

/// Whether a request may do what it asks: `None` when it may, else the refusal.
fn refused(state: &State, req: &Request<hyper::body::Incoming>, writes: bool) -> Option<Answer> {
    if state.opts.tokens.is_empty() || (!writes && !state.opts.private) {
        return None;
    }
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let what = if writes {
        "publishing and deleting"
    } else {
        "this private registry"
    };
    match given {
        None => Some(detail(
            StatusCode::UNAUTHORIZED,
            format!(
                "{what} needs a token: send `Authorization: Bearer <token>` (pactown sends `--token`, else PACTOWN_REGISTRY_TOKEN, else the ecosystem's `registry.auth_token`)"
            ),
        )),
        Some(t) => {
            let ok = state.opts.tokens.iter().fold(0u8, |acc, known| {
                acc | u8::from(bool::from(known.as_bytes().ct_eq(t.as_bytes())))
            });
            (ok == 0).then(|| {
                detail(
                    StatusCode::FORBIDDEN,
                    "the token is not one this registry accepts (see its `--token-file`)",
                )
            })
        }
    }
}

async fn body(req: Request<hyper::body::Incoming>, limit: usize) -> Result<Bytes, Answer> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than this registry's limit of {} MiB",
                    limit >> 20
                ),
            ))
        }
        Err(_) => Err(detail(
            StatusCode::BAD_REQUEST,
            "the body could not be read",
        )),
    }
}

async fn handle(state: &State, req: Request<hyper::body::Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let writes = matches!(method, Method::POST | Method::PUT | Method::DELETE);
    if path != "/health"
        && let Some(no) = refused(state, &req, writes)
    {
        // Read what the client is sending (up to the limit) before answering, so it hears the
        // refusal instead of a reset in the middle of its upload.
        let mut body = req.into_body();
        let mut read = 0;
        while read <= state.opts.max_body
            && let Some(Ok(frame)) = body.frame().await
        {
            read += frame.data_ref().map_or(0, |d| d.len());
        }
        return no;
    }
    let store = &state.store;
    let answer = match (&method, segs.as_slice()) {
        (&Method::GET, ["health"]) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "service": "pactown-registry"}),
        )),
        (&Method::GET, ["v1", "artifacts"]) => {
            let param = |k: &str| {
                form_urlencoded::parse(query.as_bytes())
                    .find(|(key, v)| key == k && !v.is_empty())
                    .map(|(_, v)| v.into_owned())
            };
            let (ns, search) = (param("namespace"), param("search"));
            store
                .list(ns.as_deref(), search.as_deref())
                .map(|list| json(StatusCode::OK, &serde_json::to_value(list).expect("json")))
        }
        (&Method::GET, ["v1", "namespaces"]) => store
            .namespaces()
            .map(|n| json(StatusCode::OK, &serde_json::json!({"namespaces": n}))),
        (&Method::GET, ["v1", "artifacts", ns, name]) => store.artifact(ns, name).map(|a| match a {
            Some(a) => json(StatusCode::OK, &serde_json::to_value(a).expect("json")),
            None => detail(StatusCode::NOT_FOUND, "Artifact not found"),
        }),
        (&Method::GET, ["v1", "artifacts", ns, name, version]) => {
            version_answer(store, ns, name, version, false)
        }
        (&Method::GET, ["v1", "artifacts", ns, name, version, "readme"]) => {
            version_answer(store, ns, name, version, true)
        }
        (&Method::DELETE, ["v1", "artifacts", ns, name]) => store.delete(ns, name).map(|gone| {
            if gone {
                json(
                    StatusCode::OK,
                    &serde_json::json!({"success": true, "message": format!("Deleted {ns}/{name}")}),
                )
            } else {
                detail(StatusCode::NOT_FOUND, "Artifact not found")
            }
        }),
        (&Method::POST, ["v1", "publish"]) => {
            let max = state.opts.max_body;
            return match body(req, max).await {
                Ok(b) => publish(store, &b),
                Err(a) => a,
            };
        }
        (&Method::PUT, ["v1", "blobs", digest]) => {
            let Some(hex) = digest.strip_prefix("sha256:") else {
                return detail(StatusCode::BAD_REQUEST, "blobs are named `sha256:<hex>`");
            };
            if let Err(e) = store::check_digest(hex) {
                return detail(StatusCode::BAD_REQUEST, e);
            }
            let hex = hex.to_string();
            let max = state.opts.max_body;
            return match body(req, max).await {
                Ok(b) if store::sha256(&b) != hex => detail(
                    StatusCode::BAD_REQUEST,
                    format!("the body's SHA-256 is {}, not {hex}", store::sha256(&b)),
                ),
                Ok(b) => match store.put_blob(&b) {
                    Ok(_) => json(StatusCode::CREATED, &serde_json::json!({"digest": format!("sha256:{hex}"), "size": b.len()})),
                    Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
                },
                Err(a) => a,
            };
        }
        (&Method::GET | &Method::HEAD, ["v1", "blobs", digest]) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            store.read_blob(hex).map(|b| match b {
                Some(bytes) => Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/octet-stream")
                    .header("content-length", bytes.len())
                    .header("docker-content-digest", format!("sha256:{hex}"))
                    .body(Full::new(if method == Method::HEAD {
                        Bytes::new()
                    } else {
                        Bytes::from(bytes)
                    }))
                    .expect("a response"),
                None => detail(StatusCode::NOT_FOUND, "Blob not found"),
            })
        }
        _ => Ok(detail(StatusCode::NOT_FOUND, "Not Found")),
    };
    answer.unwrap_or_else(|e| detail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
}

fn version_answer(
    store: &Store,
    ns: &str,
    name: &str,
    version: &str,
    readme_only: bool,
) -> anyhow::Result<Answer> {
    if store.artifact(ns, name)?.is_none() {
        return Ok(detail(StatusCode::NOT_FOUND, "Artifact not found"));
    }
    Ok(match store.version(ns, name, version)? {
        None => detail(StatusCode::NOT_FOUND, "Version not found"),
        Some(v) if readme_only => json(
            StatusCode::OK,
            &serde_json::json!({"content": v.readme_content}),
        ),
        Some(v) => json(StatusCode::OK, &serde_json::to_value(v).expect("json")),
    })
}

fn publish(store: &Store, body: &[u8]) -> Answer {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let (Some(name), Some(version), Some(readme)) =
        (text("name"), text("version"), text("readme_content"))
    else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a publish needs `name`, `version` and `readme_content` (strings)",
        );
    };
    let metadata = v
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let component = metadata
        .pointer("/pactown/component/digest")
        .and_then(|d| d.as_str())
        .map(|d| d.trim_start_matches("sha256:").to_string());
    let p = Publish {
        namespace: text("namespace").unwrap_or_else(|| "default".into()),
        name,
        version,
        readme,
        description: text("description").unwrap_or_default(),
        tags: v
            .get("tags")
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        metadata,
        component,
    };
    match store.publish(&p) {
        Ok(checksum) => json(
            StatusCode::OK,
            &serde_json::json!({
                "success": true,
                "artifact": format!("{}/{}", p.namespace, p.name),
                "version": semver::Version::parse(p.version.trim()).map_or(p.version.clone(), |v| v.to_string()),
                "checksum": checksum,
            }),
        ),
        Err(PublishError::Exists { checksum, .. }) => json(
            StatusCode::CONFLICT,
            &serde_json::json!({
                "success": false,
                "detail": format!("{}/{} {} is already published; versions never change: publish a new version", p.namespace, p.name, p.version),
                "checksum": checksum,
            }),
        ),
        Err(PublishError::Invalid(e)) => detail(StatusCode::BAD_REQUEST, e),
        Err(PublishError::Storage(e)) => {
            detail(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
        }
    }
}

/// A path segment, `%XX` decoded (`+` stays a `+`: semver build metadata uses it).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
