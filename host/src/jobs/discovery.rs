//! `builtin: discovery`: what runs, and where.
//!
//! | method, path | |
//! |---|---|
//! | `POST /register` | `{name, url, health_url?, metadata?, ttl?}`: an outside process announces itself |
//! | `POST /unregister` | `{name}` |
//! | `POST /ping` | `{name}`: it is still there (its expiry starts again) |
//! | `GET /services` | pactown's own services (with their health, checked now, and an engine's commands from its `/design`) and the registered ones |
//! | `GET /services/:name` | one of them |
//!
//! A registration with a `health_url` is checked every 5 s (or a third of its `ttl`, when
//! shorter); each passing check (or ping) keeps it alive, and one not seen for `ttl` seconds
//! (default 30) is dropped. Only a process outside pactown may give a `health_url`: pactown
//! checks it from outside every sandbox, so a service's registration with one (the router
//! names the caller, `x-pactown-caller`) would have pactown probe, for it, an address its
//! sandbox keeps it from, and tell it the answer: refused (403).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use rusqlite::params;

use super::db::Db;
use super::{Answer, Context, Handler, In, Known, body_json, error, json, now_ms, segments};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS registrations (
    name TEXT PRIMARY KEY, url TEXT NOT NULL, health_url TEXT, metadata TEXT NOT NULL,
    ttl_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, healthy INTEGER NOT NULL,
    registered_at TEXT NOT NULL
);";

/// How often a registered health URL is checked (a third of its `ttl` when that is shorter).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How often discovery looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);
/// How long a registration lives without a ping or a passing check, by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The discovery service.
pub struct Discovery {
    db: Db,
    services: Vec<Known>,
    http: super::client::Http,
    /// When each registration's health was last checked (ms since the epoch).
    checked: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Discovery {
    /// Open its database and start checking registrations.
    pub fn open(ctx: Context) -> anyhow::Result<Arc<dyn Handler>> {
        let d = Arc::new(Self {
            db: Db::open(&ctx.db, SCHEMA)?,
            services: ctx.services.clone(),
            http: super::client::Http::new(),
            checked: Default::default(),
        });
        let weak = Arc::downgrade(&d);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let Some(d) = weak.upgrade() else { return };
                d.check_registrations().await;
            }
        });
        Ok(d)
    }

    /// Check the registrations whose health check is due (every [`HEALTH_INTERVAL`], or a
    /// third of their `ttl` when that is shorter), all at once; drop the expired.
    async fn check_registrations(&self) {
        let now = now_ms();
        let due: Vec<(String, String)> = self
            .db
            .with(|c| {
                let mut s = c.prepare("SELECT name, health_url, ttl_ms FROM registrations WHERE health_url IS NOT NULL")?;
                s
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _, ttl)| {
                let every = (HEALTH_INTERVAL.as_millis() as i64).min(ttl / 3);
                let last = self.checked.lock().expect("checked").get(name).copied().unwrap_or(0);
                last + every <= now
            })
            .map(|(name, url, _)| (name, url))
            .collect();
        let checks = due.iter().map(|(name, url)| async move {
            self.checked
                .lock()
                .expect("checked")
                .insert(name.clone(), now);
            (name, self.http.healthy(url, Duration::from_secs(2)).await)
        });
        for (name, ok) in futures_util::future::join_all(checks).await {
            let _ = self.db.with(|c| {
                if ok {
                    c.execute(
                        "UPDATE registrations SET healthy = 1, last_seen_ms = ?2 WHERE name = ?1",
                        params![name, now_ms()],
                    )
                } else {
                    c.execute(
                        "UPDATE registrations SET healthy = 0 WHERE name = ?1",
                        params![name],
                    )
                }
            });
        }
        self.expire();
    }

    fn expire(&self) {
        let _ = self.db.with(|c| {
            c.execute(
                "DELETE FROM registrations WHERE last_seen_ms + ttl_ms < ?1",
                params![now_ms()],
            )
        });
    }

    /// pactown's own services, each checked now (all at once).
    async fn own(&self) -> Vec<serde_json::Value> {
        futures_util::future::join_all(self.services.iter().map(|k| self.own_one(k))).await
    }

    async fn own_one(&self, k: &Known) -> serde_json::Value {
        let url = k.port.map(|p| format!("http://127.0.0.1:{p}"));
        let health_url = url
            .as_ref()
            .map(|u| format!("{u}{}", k.health.as_deref().unwrap_or("")));
        let healthy = match &health_url {
            Some(h) => Some(self.http.healthy(h, Duration::from_secs(1)).await),
            None => None,
        };
        // An engine service says what it runs at `/design`.
        let commands = match (&url, healthy) {
            (Some(u), Some(true)) if !super::is_builtin_kind(&k.kind) => self
                .http
                .call(
                    http::Method::GET,
                    &format!("{u}/design"),
                    &[],
                    &serde_json::Value::Null,
                    Duration::from_secs(1),
                )
                .await
                .ok()
                .filter(|r| r.status.is_success())
                .and_then(|r| {
                    r.body["commands"]
                        .as_object()
                        .map(|c| c.keys().cloned().collect::<Vec<_>>())
                }),
            _ => None,
        };
        serde_json::json!({
            "name": k.name, "url": url, "source": "pactown", "kind": k.kind,
            "health_url": k.health.as_ref().and(health_url),
            "healthy": healthy, "engine": commands.is_some(), "commands": commands,
        })
    }

    fn registered(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.expire();
        self.db.with(|c| {
            let mut s = c.prepare(
                "SELECT name, url, health_url, metadata, ttl_ms, last_seen_ms, healthy, registered_at FROM registrations ORDER BY name",
            )?;
            s
                .query_map([], |r| {
                    let (ttl, seen): (i64, i64) = (r.get(4)?, r.get(5)?);
                    Ok(serde_json::json!({
                        "name": r.get::<_, String>(0)?,
                        "url": r.get::<_, String>(1)?,
                        "health_url": r.get::<_, Option<String>>(2)?,
                        "metadata": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(3)?).unwrap_or_default(),
                        "source": "registered",
                        "healthy": r.get::<_, i64>(6)? == 1,
                        "registered_at": r.get::<_, String>(7)?,
                        "expires_in_ms": (seen + ttl - now_ms()).max(0),
                    }))
                })?
                .collect::<Result<Vec<_>, _>>()
        })
    }

    /// `caller`: the pactown service that sent it, if one did.
    fn register(
        &self,
        v: &serde_json::Value,
        caller: Option<&str>,
    ) -> Result<serde_json::Value, (StatusCode, String)> {
        let bad = |e: &str| (StatusCode::BAD_REQUEST, e.to_string());
        let name = v["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("`name` is required"))?;
        let url = v["url"]
            .as_str()
            .filter(|u| u.starts_with("http"))
            .ok_or_else(|| bad("`url` (http://…) is required"))?;
        if let Some(caller) = caller
            && !v["health_url"].is_null()
        {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "`{caller}` is a pactown service: its registration may not give a `health_url` (pactown would probe that address for it, from outside its sandbox); register without one and keep it alive with `POST /ping`"
                ),
            ));
        }
        if self.services.iter().any(|k| k.name == name) {
            return Err(bad(&format!(
                "`{name}` is a service of this ecosystem: pactown lists it itself"
            )));
        }
        let ttl = match &v["ttl"] {
            serde_json::Value::Null => DEFAULT_TTL,
            serde_json::Value::Number(n) => {
                Duration::from_secs_f64(n.as_f64().unwrap_or(30.0).max(1.0))
            }
            serde_json::Value::String(s) => {
                humantime::parse_duration(s).map_err(|e| bad(&format!("`ttl`: {e}")))?
            }
            _ => return Err(bad("`ttl` is seconds, or a duration such as \"30s\"")),
        };
        let health = v["health_url"].as_str().map(str::to_string);
        let metadata = if v["metadata"].is_null() {
            serde_json::json!({})
        } else {
            v["metadata"].clone()
        };
        self.db
            .with(|c| {
                c.execute(
                    "INSERT INTO registrations (name, url, health_url, metadata, ttl_ms, last_seen_ms, healthy, registered_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
                     ON CONFLICT (name) DO UPDATE SET url = excluded.url, health_url = excluded.health_url,
                       metadata = excluded.metadata, ttl_ms = excluded.ttl_ms, last_seen_ms = excluded.last_seen_ms",
                    params![name, url, health, metadata.to_string(), ttl.as_millis() as i64, now_ms(), super::now()],
                )
            })
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        Ok(serde_json::json!({"registered": name, "ttl_ms": ttl.as_millis() as u64}))
    }
}

impl Handler for Discovery {
    fn handle(&self, req: In) -> Answer<'_> {
        Box::pin(async move {
            let segs = segments(&req);
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let name_of = |v: &serde_json::Value| v["name"].as_str().map(str::to_string);
            match (req.method().clone(), segs.as_slice()) {
                (Method::GET, ["health"]) => json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok", "service": "discovery"}),
                ),
                (Method::POST, ["register"]) => match body_json(&req) {
                    Err(e) => error(StatusCode::BAD_REQUEST, e),
                    Ok(v) => {
                        let caller = req
                            .headers()
                            .get(pactown_runtime::wasm::outgoing::CALLER_HEADER)
                            .and_then(|c| c.to_str().ok());
                        match self.register(&v, caller) {
                            Ok(r) => json(StatusCode::OK, &r),
                            Err((status, e)) => error(status, e),
                        }
                    }
                },
                (Method::POST, [verb @ ("unregister" | "ping")]) => {
                    match body_json(&req).map(|v| name_of(&v)) {
                        Err(e) => error(StatusCode::BAD_REQUEST, e),
                        Ok(None) => error(StatusCode::BAD_REQUEST, "`name` is required"),
                        Ok(Some(name)) => {
                            let n = self.db.with(|c| {
                            if *verb == "ping" {
                                c.execute("UPDATE registrations SET last_seen_ms = ?2 WHERE name = ?1", params![name, now_ms()])
                            } else {
                                c.execute("DELETE FROM registrations WHERE name = ?1", params![name])
                            }
                        });
                            match n {
                                Ok(0) => error(
                                    StatusCode::NOT_FOUND,
                                    format!("`{name}` is not registered"),
                                ),
                                Ok(_) => json(StatusCode::OK, &serde_json::json!({*verb: name})),
                                Err(e) => {
                                    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
                                }
                            }
                        }
                    }
                }
                (Method::GET, ["services", rest @ ..]) => {
                    let mut all = self.own().await;
                    match self.registered() {
                        Ok(r) => all.extend(r),
                        Err(e) => {
                            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
                        }
                    }
                    match rest {
                        [] => json(StatusCode::OK, &serde_json::json!({"services": all})),
                        [name] => match all.into_iter().find(|s| s["name"] == *name) {
                            Some(s) => json(StatusCode::OK, &s),
                            None => error(StatusCode::NOT_FOUND, format!("no service `{name}`")),
                        },
                        _ => error(
                            StatusCode::NOT_FOUND,
                            "discovery answers /services and /services/:name",
                        ),
                    }
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "discovery answers /register, /unregister, /ping and /services",
                ),
            }
        })
    }
}
