//! The embedded SQLite backend: WAL mode, one writer connection, a small pool of readers.
//!
//! Every call runs on tokio's blocking pool. Writes go through the single writer connection
//! (SQLite allows one writer at a time anyway); a digest batch is one `BEGIN IMMEDIATE`
//! transaction in which per-issue counters, hourly counts and tag counts are aggregated in
//! memory first, so a batch of a thousand events touches each counter row once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use super::*;

const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/0001_init.sql")];
const READERS: usize = 4;

/// The SQLite backend.
pub struct Sqlite {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(f, msg)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Conflict(msg.unwrap_or_else(|| "constraint violation".into()))
            }
            other => StoreError::Other(other.to_string()),
        }
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -4000;",
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let version = version.max(0) as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()
}

impl Sqlite {
    /// Opens (creating) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Sqlite> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(e.to_string()))?;
            }
            let mut writer = connect(&path)?;
            migrate(&mut writer)?;
            let readers = (0..READERS)
                .map(|_| connect(&path).map(Mutex::new))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Sqlite {
                writer: Arc::new(Mutex::new(writer)),
                readers: Arc::new(readers),
                next_reader: AtomicUsize::new(0),
            })
        })
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[i]
                .lock()
                .map_err(|_| StoreError::Other("reader poisoned".into()))?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
    }

    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| StoreError::Other("writer poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Other(e.to_string()))?
    }
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

const USER_COLS: &str = "id, email, password_hash, is_superuser";
fn user_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        is_superuser: r.get(3)?,
    })
}

const ORG_COLS: &str = "o.id, o.slug, o.name, o.date_created";
fn org_row(r: &Row) -> rusqlite::Result<Organization> {
    Ok(Organization {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        date_created: r.get(3)?,
    })
}

const PROJECT_COLS: &str = "p.id, p.org_id, o.slug, p.slug, p.name, p.platform, p.date_created, \
     p.retention_max_events, p.retention_days";
fn project_row(r: &Row) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        org_id: r.get(1)?,
        org_slug: r.get(2)?,
        slug: r.get(3)?,
        name: r.get(4)?,
        platform: r.get(5)?,
        date_created: r.get(6)?,
        retention_max_events: r.get(7)?,
        retention_days: r.get(8)?,
    })
}

const KEY_COLS: &str = "id, project_id, public_key, label, is_active, rate_limit_count, rate_limit_window, date_created";
fn key_row(r: &Row) -> rusqlite::Result<ProjectKey> {
    Ok(ProjectKey {
        id: r.get(0)?,
        project_id: r.get(1)?,
        public_key: r.get(2)?,
        label: r.get(3)?,
        is_active: r.get(4)?,
        rate_limit_count: r.get(5)?,
        rate_limit_window: r.get(6)?,
        date_created: r.get(7)?,
    })
}

const ISSUE_COLS: &str = "i.id, i.project_id, i.short_id, i.title, i.culprit, i.level, i.issue_type, \
     i.metadata, i.platform, i.logger, i.status, i.is_regression, i.first_seen, i.last_seen, \
     i.times_seen, i.user_count, i.first_release, i.last_release";
fn issue_row(r: &Row) -> rusqlite::Result<Issue> {
    let metadata: String = r.get(7)?;
    Ok(Issue {
        id: r.get(0)?,
        project_id: r.get(1)?,
        short_id: r.get(2)?,
        title: r.get(3)?,
        culprit: r.get(4)?,
        level: r.get(5)?,
        issue_type: r.get(6)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
        platform: r.get(8)?,
        logger: r.get(9)?,
        status: r.get(10)?,
        is_regression: r.get(11)?,
        first_seen: r.get(12)?,
        last_seen: r.get(13)?,
        times_seen: r.get(14)?,
        user_count: r.get(15)?,
        first_release: r.get(16)?,
        last_release: r.get(17)?,
    })
}

const EVENT_COLS: &str =
    "e.project_id, e.event_id, e.issue_id, e.timestamp, e.received, e.size, e.grouping, e.payload";
fn event_row(r: &Row) -> rusqlite::Result<EventRecord> {
    let grouping: String = r.get(6)?;
    let payload: Vec<u8> = r.get(7)?;
    Ok(EventRecord {
        project_id: r.get(0)?,
        event_id: r.get(1)?,
        issue_id: r.get(2)?,
        timestamp: r.get(3)?,
        received: r.get(4)?,
        size: r.get(5)?,
        grouping: serde_json::from_str(&grouping).unwrap_or(Value::Null),
        payload: decode_payload(&payload),
    })
}

/// Decompresses and parses a stored event payload.
pub fn decode_payload(data: &[u8]) -> Value {
    zstd::decode_all(data)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or(Value::Null)
}

/// The ids of projects a user may see.
fn visible_projects_sql(user: &User) -> String {
    if user.is_superuser {
        format!(
            "SELECT {PROJECT_COLS} FROM projects p JOIN organizations o ON o.id = p.org_id \
             ORDER BY o.slug, p.slug"
        )
    } else {
        format!(
            "SELECT {PROJECT_COLS} FROM projects p JOIN organizations o ON o.id = p.org_id \
             JOIN org_members m ON m.org_id = p.org_id AND m.user_id = ?1 ORDER BY o.slug, p.slug"
        )
    }
}

#[async_trait]
impl Store for Sqlite {
    async fn healthy(&self) -> bool {
        self.write(|c| {
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
            Ok(())
        })
        .await
        .is_ok()
    }

    async fn spool_position(&self, node_id: &str) -> StoreResult<Position> {
        let node_id = node_id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT segment, \"offset\" FROM spool_cursor WHERE node_id = ?1",
                [node_id],
                |r| {
                    Ok(Position {
                        segment: r.get::<_, i64>(0)? as u64,
                        offset: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<i64> {
        self.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        superuser: bool,
    ) -> StoreResult<User> {
        let (email, hash) = (email.to_string(), password_hash.to_string());
        self.write(move |c| {
            Ok(c.query_row(
                &format!(
                    "INSERT INTO users (email, password_hash, is_superuser, date_created) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING {USER_COLS}"
                ),
                params![email, hash, superuser, now()],
                user_row,
            )?)
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<User> {
        let email = email.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE email = ?1"),
                [email],
                user_row,
            )?)
        })
        .await
    }

    async fn create_token(&self, user_id: i64, token_hash: &str, name: &str) -> StoreResult<()> {
        let (hash, name) = (token_hash.to_string(), name.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_tokens (user_id, token_hash, name, date_created) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![user_id, hash, name, now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_token(&self, token_hash: &str) -> StoreResult<User> {
        let hash = token_hash.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT u.id, u.email, u.password_hash, u.is_superuser FROM api_tokens t \
                 JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                [hash],
                user_row,
            )?)
        })
        .await
    }

    async fn ensure_organization(&self, slug: &str) -> StoreResult<Organization> {
        let slug = slug.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO organizations (slug, name, date_created) VALUES (?1, ?1, ?2) \
                 ON CONFLICT (slug) DO NOTHING",
                params![slug, now()],
            )?;
            Ok(c.query_row(
                &format!("SELECT {ORG_COLS} FROM organizations o WHERE o.slug = ?1"),
                [slug],
                org_row,
            )?)
        })
        .await
    }

    async fn organization(&self, slug: &str) -> StoreResult<Organization> {
        let slug = slug.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ORG_COLS} FROM organizations o WHERE o.slug = ?1"),
                [slug],
                org_row,
            )?)
        })
        .await
    }

    async fn add_member(&self, org_id: i64, user_id: i64, role: &str) -> StoreResult<()> {
        let role = role.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT INTO org_members (org_id, user_id, role) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                params![org_id, user_id, role],
            )?;
            Ok(())
        })
        .await
    }

    async fn organizations_for(&self, user: &User) -> StoreResult<Vec<Organization>> {
        let user = user.clone();
        self.read(move |c| {
            let sql = if user.is_superuser {
                format!("SELECT {ORG_COLS} FROM organizations o ORDER BY o.slug")
            } else {
                format!(
                    "SELECT {ORG_COLS} FROM organizations o JOIN org_members m \
                     ON m.org_id = o.id AND m.user_id = ?1 ORDER BY o.slug"
                )
            };
            let mut stmt = c.prepare(&sql)?;
            let rows = if user.is_superuser {
                stmt.query_map([], org_row)?
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                stmt.query_map([user.id], org_row)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            Ok(rows)
        })
        .await
    }

    async fn create_project(&self, org_id: i64, slug: &str, name: &str) -> StoreResult<Project> {
        let (slug, name) = (slug.to_string(), name.to_string());
        self.write(move |c| {
            let id: i64 = c.query_row(
                "INSERT INTO projects (org_id, slug, name, date_created) VALUES (?1, ?2, ?3, ?4) \
                 RETURNING id",
                params![org_id, slug, name, now()],
                |r| r.get(0),
            )?;
            Ok(c.query_row(
                &format!(
                    "SELECT {PROJECT_COLS} FROM projects p JOIN organizations o \
                     ON o.id = p.org_id WHERE p.id = ?1"
                ),
                [id],
                project_row,
            )?)
        })
        .await
    }

    async fn project(&self, id: i64) -> StoreResult<Project> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {PROJECT_COLS} FROM projects p JOIN organizations o \
                     ON o.id = p.org_id WHERE p.id = ?1"
                ),
                [id],
                project_row,
            )?)
        })
        .await
    }

    async fn project_by_slug(&self, org_slug: &str, slug: &str) -> StoreResult<Project> {
        let (org, slug) = (org_slug.to_string(), slug.to_string());
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {PROJECT_COLS} FROM projects p JOIN organizations o \
                     ON o.id = p.org_id WHERE o.slug = ?1 AND p.slug = ?2"
                ),
                [org, slug],
                project_row,
            )?)
        })
        .await
    }

    async fn all_projects(&self) -> StoreResult<Vec<Project>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {PROJECT_COLS} FROM projects p JOIN organizations o ON o.id = p.org_id"
            ))?;
            Ok(stmt
                .query_map([], project_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn projects_for(&self, user: &User) -> StoreResult<Vec<Project>> {
        let user = user.clone();
        self.read(move |c| {
            let sql = visible_projects_sql(&user);
            let mut stmt = c.prepare(&sql)?;
            let rows = if user.is_superuser {
                stmt.query_map([], project_row)?
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                stmt.query_map([user.id], project_row)?
                    .collect::<Result<Vec<_>, _>>()?
            };
            Ok(rows)
        })
        .await
    }

    async fn set_retention(
        &self,
        project_id: i64,
        max_events: Option<i64>,
        days: Option<i64>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "UPDATE projects SET retention_max_events = ?2, retention_days = ?3 WHERE id = ?1",
                params![project_id, max_events, days],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_key(
        &self,
        project_id: i64,
        public_key: &str,
        label: &str,
    ) -> StoreResult<ProjectKey> {
        let (key, label) = (public_key.to_string(), label.to_string());
        self.write(move |c| {
            Ok(c.query_row(
                &format!(
                    "INSERT INTO project_keys (project_id, public_key, label, date_created) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING {KEY_COLS}"
                ),
                params![project_id, key, label, now()],
                key_row,
            )?)
        })
        .await
    }

    async fn key_by_public(&self, public_key: &str) -> StoreResult<ProjectKey> {
        let key = public_key.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {KEY_COLS} FROM project_keys WHERE public_key = ?1"),
                [key],
                key_row,
            )?)
        })
        .await
    }

    async fn keys(&self, project_id: i64) -> StoreResult<Vec<ProjectKey>> {
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {KEY_COLS} FROM project_keys WHERE project_id = ?1 ORDER BY id"
            ))?;
            Ok(stmt
                .query_map([project_id], key_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn update_key(
        &self,
        id: i64,
        label: &str,
        is_active: bool,
        rate_limit: Option<(i64, i64)>,
    ) -> StoreResult<ProjectKey> {
        let label = label.to_string();
        self.write(move |c| {
            Ok(c.query_row(
                &format!(
                    "UPDATE project_keys SET label = ?2, is_active = ?3, rate_limit_count = ?4, \
                     rate_limit_window = ?5 WHERE id = ?1 RETURNING {KEY_COLS}"
                ),
                params![
                    id,
                    label,
                    is_active,
                    rate_limit.map(|r| r.0),
                    rate_limit.map(|r| r.1)
                ],
                key_row,
            )?)
        })
        .await
    }

    async fn save_batch(&self, batch: Arc<DigestBatch>) -> StoreResult<DigestResult> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let result = save_batch(&tx, batch)?;
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    async fn count_events(&self, project_id: Option<i64>) -> StoreResult<i64> {
        self.read(move |c| {
            Ok(match project_id {
                Some(p) => c.query_row(
                    "SELECT count(*) FROM events WHERE project_id = ?1",
                    [p],
                    |r| r.get(0),
                )?,
                None => c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?,
            })
        })
        .await
    }

    async fn enforce_retention(
        &self,
        project_id: i64,
        max_events: Option<i64>,
        min_timestamp: Option<f64>,
    ) -> StoreResult<u64> {
        self.write(move |c| {
            let mut removed = 0;
            if let Some(ts) = min_timestamp {
                removed += c.execute(
                    "DELETE FROM events WHERE project_id = ?1 AND timestamp < ?2",
                    params![project_id, ts],
                )? as u64;
            }
            if let Some(max) = max_events {
                // Find the timestamp/id of the newest event that must go, then delete it and
                // everything older.
                let cutoff: Option<i64> = c
                    .query_row(
                        "SELECT id FROM events WHERE project_id = ?1 \
                         ORDER BY timestamp DESC, id DESC LIMIT 1 OFFSET ?2",
                        params![project_id, max],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = cutoff {
                    removed += c.execute(
                        "DELETE FROM events WHERE project_id = ?1 AND id IN (SELECT id FROM \
                         events WHERE project_id = ?1 ORDER BY timestamp DESC, id DESC \
                         LIMIT -1 OFFSET ?2)",
                        params![project_id, max],
                    )? as u64;
                    let _ = id;
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn list_issues(&self, filter: &IssueFilter) -> StoreResult<Vec<Issue>> {
        let filter = filter.clone();
        self.read(move |c| {
            let (sql, args) = issue_query(&filter);
            let mut stmt = c.prepare(&sql)?;
            Ok(stmt
                .query_map(params_from_iter(args.iter()), issue_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn issue(&self, id: i64) -> StoreResult<Issue> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ISSUE_COLS} FROM issues i WHERE i.id = ?1"),
                [id],
                issue_row,
            )?)
        })
        .await
    }

    async fn set_issue_status(&self, id: i64, status: &str) -> StoreResult<()> {
        let status = status.to_string();
        self.write(move |c| {
            let n = c.execute(
                "UPDATE issues SET status = ?2, \
                 is_regression = CASE WHEN ?2 = 'unresolved' THEN is_regression ELSE 0 END \
                 WHERE id = ?1",
                params![id, status],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn issue_hourly(
        &self,
        issue_ids: &[i64],
        since: i64,
    ) -> StoreResult<HashMap<i64, Vec<(i64, i64)>>> {
        let ids = issue_ids.to_vec();
        self.read(move |c| {
            let mut out: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
            if ids.is_empty() {
                return Ok(out);
            }
            let placeholders = (0..ids.len())
                .map(|i| format!("?{}", i + 2))
                .collect::<Vec<_>>()
                .join(",");
            let mut stmt = c.prepare(&format!(
                "SELECT issue_id, hour, count FROM issue_hourly WHERE hour >= ?1 \
                 AND issue_id IN ({placeholders}) ORDER BY hour"
            ))?;
            let mut args: Vec<i64> = vec![since];
            args.extend(ids);
            let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (issue, hour, count) = row?;
                out.entry(issue).or_default().push((hour, count));
            }
            Ok(out)
        })
        .await
    }

    async fn issue_tag_keys(&self, issue_id: i64) -> StoreResult<Vec<TagKey>> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT key, count(*), sum(count) FROM issue_tags WHERE issue_id = ?1 \
                 GROUP BY key ORDER BY key",
            )?;
            Ok(stmt
                .query_map([issue_id], |r| {
                    Ok(TagKey {
                        key: r.get(0)?,
                        unique_values: r.get(1)?,
                        total_values: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn issue_tag_values(
        &self,
        issue_id: i64,
        key: &str,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<TagValue>> {
        let key = key.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT key, value, count, first_seen, last_seen FROM issue_tags \
                 WHERE issue_id = ?1 AND key = ?2 ORDER BY count DESC, value LIMIT ?3 OFFSET ?4",
            )?;
            Ok(stmt
                .query_map(params![issue_id, key, limit, offset], |r| {
                    Ok(TagValue {
                        key: r.get(0)?,
                        value: r.get(1)?,
                        count: r.get(2)?,
                        first_seen: r.get(3)?,
                        last_seen: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn issue_events(
        &self,
        issue_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {EVENT_COLS} FROM events e WHERE e.issue_id = ?1 \
                 ORDER BY e.timestamp DESC, e.id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            Ok(stmt
                .query_map(params![issue_id, limit, offset], event_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn issue_event(&self, issue_id: i64, pick: EventPick) -> StoreResult<EventRecord> {
        self.read(move |c| {
            let order = match pick {
                EventPick::Latest => "DESC",
                EventPick::Oldest => "ASC",
            };
            Ok(c.query_row(
                &format!(
                    "SELECT {EVENT_COLS} FROM events e WHERE e.issue_id = ?1 \
                     ORDER BY e.timestamp {order}, e.id {order} LIMIT 1"
                ),
                [issue_id],
                event_row,
            )?)
        })
        .await
    }

    async fn event(&self, project_id: i64, event_id: &str) -> StoreResult<EventRecord> {
        let event_id = event_id.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {EVENT_COLS} FROM events e WHERE e.project_id = ?1 AND e.event_id = ?2"
                ),
                params![project_id, event_id],
                event_row,
            )?)
        })
        .await
    }

    async fn event_neighbours(
        &self,
        issue_id: i64,
        timestamp: f64,
        event_id: &str,
    ) -> StoreResult<(Option<String>, Option<String>)> {
        let event_id = event_id.to_string();
        self.read(move |c| {
            let prev = c
                .query_row(
                    "SELECT event_id FROM events WHERE issue_id = ?1 AND \
                     (timestamp < ?2 OR (timestamp = ?2 AND event_id < ?3)) \
                     ORDER BY timestamp DESC, event_id DESC LIMIT 1",
                    params![issue_id, timestamp, event_id],
                    |r| r.get(0),
                )
                .optional()?;
            let next = c
                .query_row(
                    "SELECT event_id FROM events WHERE issue_id = ?1 AND \
                     (timestamp > ?2 OR (timestamp = ?2 AND event_id > ?3)) \
                     ORDER BY timestamp ASC, event_id ASC LIMIT 1",
                    params![issue_id, timestamp, event_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok((prev, next))
        })
        .await
    }

    async fn issue_user_reports(&self, issue_id: i64) -> StoreResult<Vec<UserReport>> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT r.id, r.event_id, r.name, r.email, r.comments, r.date_created \
                 FROM user_reports r JOIN events e ON e.project_id = r.project_id \
                 AND e.event_id = r.event_id WHERE e.issue_id = ?1 ORDER BY r.id DESC LIMIT 100",
            )?;
            Ok(stmt
                .query_map([issue_id], |r| {
                    Ok(UserReport {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        name: r.get(2)?,
                        email: r.get(3)?,
                        comments: r.get(4)?,
                        date_created: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn project_events(
        &self,
        project_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {EVENT_COLS} FROM events e WHERE e.project_id = ?1 \
                 ORDER BY e.timestamp DESC, e.id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            Ok(stmt
                .query_map(params![project_id, limit, offset], event_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

/// Builds the issue list query for a filter. Returns SQL and its positional arguments.
fn issue_query(f: &IssueFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut args: Vec<V> = Vec::new();
    let arg = |v: V, args: &mut Vec<V>| {
        args.push(v);
        format!("?{}", args.len())
    };
    let mut conds = Vec::new();
    if f.project_ids.is_empty() {
        conds.push("0".to_string());
    } else {
        let list = f
            .project_ids
            .iter()
            .map(|p| arg(V::Integer(*p), &mut args))
            .collect::<Vec<_>>()
            .join(",");
        conds.push(format!("i.project_id IN ({list})"));
    }
    if !f.statuses.is_empty() {
        let list = f
            .statuses
            .iter()
            .map(|s| arg(V::Text(s.clone()), &mut args))
            .collect::<Vec<_>>()
            .join(",");
        conds.push(format!("i.status IN ({list})"));
    }
    if !f.levels.is_empty() {
        let list = f
            .levels
            .iter()
            .map(|s| arg(V::Text(s.clone()), &mut args))
            .collect::<Vec<_>>()
            .join(",");
        conds.push(format!("i.level IN ({list})"));
    }
    for (key, value, negated) in &f.tags {
        let k = arg(V::Text(key.clone()), &mut args);
        let cond = if let Some(prefix) = value.strip_suffix('*') {
            let v = arg(V::Text(format!("{}%", like_escape(prefix))), &mut args);
            format!("t.value LIKE {v} ESCAPE '\\'")
        } else {
            let v = arg(V::Text(value.clone()), &mut args);
            format!("t.value = {v}")
        };
        let not = if *negated { "NOT " } else { "" };
        conds.push(format!(
            "{not}EXISTS (SELECT 1 FROM issue_tags t WHERE t.issue_id = i.id AND t.key = {k} AND {cond})"
        ));
    }
    for key in &f.has {
        let k = arg(V::Text(key.clone()), &mut args);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM issue_tags t WHERE t.issue_id = i.id AND t.key = {k})"
        ));
    }
    for word in &f.text {
        let w = arg(V::Text(format!("%{}%", like_escape(word))), &mut args);
        conds.push(format!(
            "(i.title LIKE {w} ESCAPE '\\' OR i.culprit LIKE {w} ESCAPE '\\')"
        ));
    }
    if let Some(t) = f.first_seen_after {
        conds.push(format!("i.first_seen >= {}", arg(V::Real(t), &mut args)));
    }
    if let Some(t) = f.last_seen_after {
        conds.push(format!("i.last_seen >= {}", arg(V::Real(t), &mut args)));
    }
    if let Some(n) = f.times_seen_min {
        conds.push(format!("i.times_seen >= {}", arg(V::Integer(n), &mut args)));
    }
    let order = match f.sort {
        IssueSort::LastSeen => "i.last_seen DESC",
        IssueSort::FirstSeen => "i.first_seen DESC",
        IssueSort::Events => "i.times_seen DESC",
        IssueSort::Users => "i.user_count DESC",
    };
    let limit = arg(V::Integer(f.limit), &mut args);
    let offset = arg(V::Integer(f.offset), &mut args);
    (
        format!(
            "SELECT {ISSUE_COLS} FROM issues i WHERE {} ORDER BY {order}, i.id DESC \
             LIMIT {limit} OFFSET {offset}",
            conds.join(" AND ")
        ),
        args,
    )
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Per-issue aggregate of one batch.
#[derive(Default)]
struct IssueDelta {
    times_seen: i64,
    new_users: i64,
    first_seen: f64,
    last_seen: f64,
    level: String,
    last_release: Option<String>,
    first_release: Option<String>,
}

fn save_batch(tx: &rusqlite::Transaction, batch: Arc<DigestBatch>) -> StoreResult<DigestResult> {
    let mut result = DigestResult::default();
    let mut hash_cache: HashMap<(i64, String), i64> = HashMap::new();
    let mut seen_ids: HashSet<(i64, String)> = HashSet::new();
    let mut deltas: HashMap<i64, IssueDelta> = HashMap::new();
    let mut hourly: HashMap<(i64, i64), i64> = HashMap::new();
    let mut tags: HashMap<(i64, String, String), (i64, f64, f64)> = HashMap::new();
    let mut users: HashSet<(i64, String)> = HashSet::new();

    let mut exists =
        tx.prepare_cached("SELECT 1 FROM events WHERE project_id = ?1 AND event_id = ?2")?;
    let mut find_hash = tx.prepare_cached(
        "SELECT g.issue_id, i.status FROM group_hashes g JOIN issues i ON i.id = g.issue_id \
         WHERE g.project_id = ?1 AND g.hash = ?2",
    )?;
    let mut next_short = tx.prepare_cached(
        "UPDATE projects SET next_short_id = next_short_id + 1 WHERE id = ?1 \
         RETURNING next_short_id - 1",
    )?;
    let mut new_issue = tx.prepare_cached(
        "INSERT INTO issues (project_id, short_id, title, culprit, level, issue_type, metadata, \
         platform, logger, first_seen, last_seen, first_release, last_release) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?11) RETURNING id",
    )?;
    let mut new_hash = tx.prepare_cached(
        "INSERT INTO group_hashes (project_id, hash, issue_id) VALUES (?1, ?2, ?3)",
    )?;
    let mut reopen = tx.prepare_cached(
        "UPDATE issues SET status = 'unresolved', is_regression = 1 WHERE id = ?1",
    )?;
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, release, \
         environment, trace_id, size, grouping, payload) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;

    for ev in &batch.events {
        let id_key = (ev.project_id, ev.event_id.clone());
        if seen_ids.contains(&id_key)
            || exists
                .query_row(params![ev.project_id, ev.event_id], |_| Ok(()))
                .optional()?
                .is_some()
        {
            result.duplicates += 1;
            continue;
        }
        seen_ids.insert(id_key);

        let hash_key = (ev.project_id, ev.hash.clone());
        let issue_id = match hash_cache.get(&hash_key) {
            Some(id) => *id,
            None => {
                let found: Option<(i64, String)> = find_hash
                    .query_row(params![ev.project_id, ev.hash], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                let id = match found {
                    Some((id, status)) => {
                        if status == "resolved" {
                            reopen.execute([id])?;
                            result.regressions.push(id);
                        }
                        id
                    }
                    None => {
                        let short: i64 = next_short.query_row([ev.project_id], |r| r.get(0))?;
                        let id: i64 = new_issue.query_row(
                            params![
                                ev.project_id,
                                short,
                                ev.title,
                                ev.culprit,
                                ev.level,
                                ev.event_type,
                                ev.metadata.to_string(),
                                ev.platform,
                                ev.logger,
                                ev.timestamp,
                                ev.release,
                            ],
                            |r| r.get(0),
                        )?;
                        new_hash.execute(params![ev.project_id, ev.hash, id])?;
                        result.new_issues.push(id);
                        id
                    }
                };
                hash_cache.insert(hash_key, id);
                id
            }
        };

        insert_event.execute(params![
            ev.project_id,
            ev.event_id,
            issue_id,
            ev.timestamp,
            ev.received,
            ev.release,
            ev.environment,
            ev.trace_id,
            ev.size,
            ev.grouping.to_string(),
            ev.payload,
        ])?;
        result.stored += 1;

        let d = deltas.entry(issue_id).or_insert_with(|| IssueDelta {
            first_seen: f64::MAX,
            last_seen: f64::MIN,
            ..Default::default()
        });
        d.times_seen += 1;
        d.first_seen = d.first_seen.min(ev.timestamp);
        if ev.timestamp >= d.last_seen {
            d.last_seen = ev.timestamp;
            d.level = ev.level.clone();
            if ev.release.is_some() {
                d.last_release = ev.release.clone();
            }
        }
        if d.first_release.is_none() {
            d.first_release = ev.release.clone();
        }
        if let Some(user) = &ev.user_key {
            users.insert((issue_id, user.clone()));
        }
        let hour = (ev.timestamp as i64).div_euclid(3600) * 3600;
        *hourly.entry((issue_id, hour)).or_default() += 1;
        for (k, v) in &ev.tags {
            let e = tags.entry((issue_id, k.clone(), v.clone())).or_insert((
                0,
                ev.timestamp,
                ev.timestamp,
            ));
            e.0 += 1;
            e.1 = e.1.min(ev.timestamp);
            e.2 = e.2.max(ev.timestamp);
        }
    }

    let mut add_user = tx
        .prepare_cached("INSERT OR IGNORE INTO issue_users (issue_id, user_key) VALUES (?1, ?2)")?;
    for (issue_id, user) in users {
        if add_user.execute(params![issue_id, user])? == 1
            && let Some(d) = deltas.get_mut(&issue_id)
        {
            d.new_users += 1;
        }
    }
    let mut update_issue = tx.prepare_cached(
        "UPDATE issues SET times_seen = times_seen + ?2, user_count = user_count + ?3, \
         first_seen = min(first_seen, ?4), \
         level = CASE WHEN ?5 >= last_seen THEN ?6 ELSE level END, \
         last_release = CASE WHEN ?5 >= last_seen AND ?7 IS NOT NULL THEN ?7 ELSE last_release END, \
         first_release = coalesce(first_release, ?8), \
         last_seen = max(last_seen, ?5) WHERE id = ?1",
    )?;
    for (issue_id, d) in &deltas {
        update_issue.execute(params![
            issue_id,
            d.times_seen,
            d.new_users,
            d.first_seen,
            d.last_seen,
            d.level,
            d.last_release,
            d.first_release,
        ])?;
    }
    let mut add_hourly = tx.prepare_cached(
        "INSERT INTO issue_hourly (issue_id, hour, count) VALUES (?1, ?2, ?3) \
         ON CONFLICT (issue_id, hour) DO UPDATE SET count = count + excluded.count",
    )?;
    for ((issue_id, hour), n) in hourly {
        add_hourly.execute(params![issue_id, hour, n])?;
    }
    let mut add_tag = tx.prepare_cached(
        "INSERT INTO issue_tags (issue_id, key, value, count, first_seen, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (issue_id, key, value) DO UPDATE SET \
         count = count + excluded.count, first_seen = min(first_seen, excluded.first_seen), \
         last_seen = max(last_seen, excluded.last_seen)",
    )?;
    for ((issue_id, k, v), (n, first, last)) in tags {
        add_tag.execute(params![issue_id, k, v, n, first, last])?;
    }

    let mut add_attachment = tx.prepare_cached(
        "INSERT INTO attachments (project_id, event_id, filename, content_type, attachment_type, \
         size, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for a in &batch.attachments {
        add_attachment.execute(params![
            a.project_id,
            a.event_id,
            a.filename,
            a.content_type,
            a.attachment_type,
            a.data.len() as i64,
            a.data
        ])?;
    }
    let mut add_report = tx.prepare_cached(
        "INSERT INTO user_reports (project_id, event_id, name, email, comments, date_created) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in &batch.user_reports {
        add_report.execute(params![
            r.project_id,
            r.event_id,
            r.name,
            r.email,
            r.comments,
            r.received
        ])?;
    }
    let mut add_sessions = tx.prepare_cached(
        "INSERT INTO session_counts (project_id, release, environment, hour, started, exited, \
         errored, crashed, abnormal, unhandled) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (project_id, release, environment, hour) DO UPDATE SET \
         started = started + excluded.started, exited = exited + excluded.exited, \
         errored = errored + excluded.errored, crashed = crashed + excluded.crashed, \
         abnormal = abnormal + excluded.abnormal, unhandled = unhandled + excluded.unhandled",
    )?;
    for s in &batch.sessions {
        add_sessions.execute(params![
            s.project_id,
            s.release,
            s.environment,
            s.hour,
            s.started,
            s.exited,
            s.errored,
            s.crashed,
            s.abnormal,
            s.unhandled
        ])?;
    }
    let mut add_session_user = tx.prepare_cached(
        "INSERT INTO session_users (project_id, release, environment, did, crashed) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project_id, release, environment, did) \
         DO UPDATE SET crashed = max(crashed, excluded.crashed)",
    )?;
    for u in &batch.session_users {
        add_session_user.execute(params![
            u.project_id,
            u.release,
            u.environment,
            u.did,
            u.crashed
        ])?;
    }
    let mut add_outcome = tx.prepare_cached(
        "INSERT INTO outcomes (project_id, hour, source, category, reason, quantity) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (project_id, hour, source, category, reason) \
         DO UPDATE SET quantity = quantity + excluded.quantity",
    )?;
    for o in &batch.outcomes {
        add_outcome.execute(params![
            o.project_id,
            o.hour,
            o.source,
            o.category,
            o.reason,
            o.quantity
        ])?;
    }
    tx.execute(
        "INSERT INTO spool_cursor (node_id, segment, \"offset\") VALUES (?1, ?2, ?3) \
         ON CONFLICT (node_id) DO UPDATE SET segment = excluded.segment, \"offset\" = excluded.\"offset\"",
        params![
            batch.node_id,
            batch.position.segment as i64,
            batch.position.offset as i64
        ],
    )?;
    Ok(result)
}
