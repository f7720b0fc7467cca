//! `builtin: shared-state`: JSON documents by id.
//!
//! | method, path | |
//! |---|---|
//! | `POST /state` | create a document from the body (an object); `201 {"id": …, "document": …}` |
//! | `GET /state` | every document's id, newest first |
//! | `GET /state/:id` | the document |
//! | `PUT /state/:id` | replace it (or create it with that id) |
//! | `PATCH /state/:id` | merge the body into it (JSON Merge Patch, RFC 7396: `null` removes), creating it when it is not there, unless the request says `If-Match: *` (then 412) |
//! | `DELETE /state/:id` | remove it |
//!
//! Each change is one SQLite transaction, so concurrent PATCHes of one document never lose an
//! update.

use http::{Method, StatusCode};
use rusqlite::{OptionalExtension, params};

use super::db::Db;
use super::{Answer, Context, Handler, In, body_json, error, json, segments};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, document TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);";

/// The shared-state service.
pub struct SharedState {
    db: Db,
}

impl SharedState {
    /// Open its database.
    pub fn open(ctx: &Context) -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::open(&ctx.db, SCHEMA)?,
        })
    }

    fn get(&self, id: &str) -> anyhow::Result<Option<serde_json::Value>> {
        self.db
            .with(|c| {
                c.query_row(
                    "SELECT document FROM documents WHERE id = ?1",
                    params![id],
                    |r| r.get::<_, String>(0),
                )
                .optional()
            })
            .map(|d| d.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Store `doc` as `id` (`merge`: merged into what is there), in one transaction.
    fn put(
        &self,
        id: &str,
        doc: serde_json::Value,
        merge: bool,
    ) -> anyhow::Result<(serde_json::Value, bool)> {
        self.db.with(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let old: Option<String> = tx
                .query_row("SELECT document FROM documents WHERE id = ?1", params![id], |r| r.get(0))
                .optional()?;
            let created = old.is_none();
            let mut new = match (&old, merge) {
                (Some(t), true) => serde_json::from_str(t).unwrap_or(serde_json::json!({})),
                _ => serde_json::json!({}),
            };
            if merge {
                json_patch::merge(&mut new, &doc);
            } else {
                new = doc;
            }
            let now = super::now();
            tx.execute(
                "INSERT INTO documents (id, document, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
                params![id, new.to_string(), now],
            )?;
            tx.commit()?;
            Ok((new, created))
        })
    }
}

/// A new document id.
fn new_id() -> String {
    let mut b = [0u8; 8];
    // SAFETY: writes at most `b.len()` bytes into `b`.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    hex::encode(b)
}

impl Handler for SharedState {
    fn handle(&self, req: In) -> Answer<'_> {
        Box::pin(async move {
            let segs = segments(&req);
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let result = match (req.method().clone(), segs.as_slice()) {
                (Method::GET, ["health"]) => Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok", "service": "shared-state"}),
                )),
                (Method::POST, ["state"]) => match body_json(&req) {
                    Err(e) => Ok(error(StatusCode::BAD_REQUEST, e)),
                    Ok(doc) if !(doc.is_object() || doc.is_null()) => Ok(error(
                        StatusCode::BAD_REQUEST,
                        "a document is a JSON object",
                    )),
                    Ok(doc) => {
                        let id = new_id();
                        let doc = if doc.is_null() {
                            serde_json::json!({})
                        } else {
                            doc
                        };
                        self.put(&id, doc, false).map(|(document, _)| {
                            json(
                                StatusCode::CREATED,
                                &serde_json::json!({"id": id, "document": document}),
                            )
                        })
                    }
                },
                (Method::GET, ["state"]) => self
                    .db
                    .with(|c| {
                        let mut s =
                            c.prepare("SELECT id FROM documents ORDER BY updated_at DESC")?;
                        s.query_map([], |r| r.get::<_, String>(0))?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map(|ids| json(StatusCode::OK, &serde_json::json!({"documents": ids}))),
                (Method::GET, ["state", id]) => self.get(id).map(|d| match d {
                    Some(d) => json(StatusCode::OK, &d),
                    None => error(StatusCode::NOT_FOUND, format!("no document `{id}`")),
                }),
                (Method::PUT | Method::PATCH, ["state", id]) => match body_json(&req) {
                    Err(e) => Ok(error(StatusCode::BAD_REQUEST, e)),
                    Ok(doc) if !doc.is_object() => Ok(error(
                        StatusCode::BAD_REQUEST,
                        "a document (or a patch) is a JSON object",
                    )),
                    Ok(doc) => {
                        // `If-Match: *` (RFC 9110): only a document that is there.
                        let must_exist = req
                            .headers()
                            .get(http::header::IF_MATCH)
                            .is_some_and(|v| v == "*");
                        if must_exist && self.get(id).ok().flatten().is_none() {
                            Ok(error(
                                StatusCode::PRECONDITION_FAILED,
                                format!("no document `{id}`"),
                            ))
                        } else {
                            let merge = req.method() == Method::PATCH;
                            self.put(id, doc, merge).map(|(d, created)| {
                                json(
                                    if created {
                                        StatusCode::CREATED
                                    } else {
                                        StatusCode::OK
                                    },
                                    &d,
                                )
                            })
                        }
                    }
                },
                (Method::DELETE, ["state", id]) => self
                    .db
                    .with(|c| c.execute("DELETE FROM documents WHERE id = ?1", params![id]))
                    .map(|n| {
                        if n > 0 {
                            json(StatusCode::OK, &serde_json::json!({"deleted": id}))
                        } else {
                            error(StatusCode::NOT_FOUND, format!("no document `{id}`"))
                        }
                    }),
                _ => Ok(error(
                    StatusCode::NOT_FOUND,
                    "shared-state answers /state and /state/:id",
                )),
            };
            result.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
        })
    }
}
