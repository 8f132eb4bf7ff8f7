//! The storage interface implemented once, in SQL that SQLite and PostgreSQL both run.
//!
//! [`SqlStore`] turns every [`Store`] call into statements on a [`Backend`]'s connection. The
//! statements use numbered `?N` placeholders and only syntax both engines share
//! (`ON CONFLICT … DO UPDATE`, `RETURNING`, `CASE` instead of the scalar `min`/`max` that only
//! SQLite has, integers for booleans). What differs lives in the engines' own files: connection
//! handling, migrations, and the per-fingerprint lock that makes grouping race-free when several
//! nodes write to one PostgreSQL database.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::db::{Backend, Conn, Row, SqlValue};
use super::payload::DictCache;
use super::*;
use crate::sql_params;

/// The one [`Store`] implementation, over any [`Backend`].
pub struct SqlStore<B: Backend> {
    backend: B,
    /// Dictionaries that stored payloads were compressed with, by ID.
    dicts: Arc<DictCache>,
}

impl<B: Backend> SqlStore<B> {
    pub fn new(backend: B) -> SqlStore<B> {
        SqlStore {
            backend,
            dicts: Arc::default(),
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.backend.read(f).await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.backend.transaction(f).await
    }
}

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

fn all<T>(rows: Vec<Row>, f: impl Fn(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

const USER_COLS: &str = "id, email, password_hash, is_superuser";
fn user_row(r: &Row) -> StoreResult<User> {
    Ok(User {
        id: r.int(0)?,
        email: r.text(1)?,
        password_hash: r.text(2)?,
        is_superuser: r.bool(3)?,
    })
}

/// [`USER_COLS`] of a `users u` joined in another query.
const U_COLS: &str = "u.id, u.email, u.password_hash, u.is_superuser";

/// An organization role's rank as SQL: `owner` > `admin` > anything else (`member`).
fn role_rank(role: &str) -> String {
    format!("CASE {role} WHEN 'owner' THEN 3 WHEN 'admin' THEN 2 ELSE 1 END")
}

/// The visibility rule, once, as an SQL condition over expressions of the caller's query: the
/// user `user_id` (a superuser when `superuser` is not 0) sees project `p` when a superuser,
/// when an `owner` or `admin` of its organization, or when a `member` added to the project.
fn can_see(p: &str, user_id: &str, superuser: &str) -> String {
    format!(
        "({superuser} <> 0 OR EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = {p}.org_id \
         AND m.user_id = {user_id} AND ({} >= 2 OR EXISTS (SELECT 1 FROM project_members pm \
         WHERE pm.project_id = {p}.id AND pm.user_id = {user_id}))))",
        role_rank("m.role")
    )
}

const ORG_COLS: &str = "o.id, o.slug, o.name, o.date_created";
fn org_row(r: &Row) -> StoreResult<Organization> {
    Ok(Organization {
        id: r.int(0)?,
        slug: r.text(1)?,
        name: r.text(2)?,
        date_created: r.real(3)?,
    })
}

const PROJECT_SELECT: &str = "SELECT p.id, p.org_id, o.slug, p.slug, p.name, p.platform, \
     p.date_created, p.retention_max_events, p.retention_days \
     FROM projects p JOIN organizations o ON o.id = p.org_id";
fn project_row(r: &Row) -> StoreResult<Project> {
    Ok(Project {
        id: r.int(0)?,
        org_id: r.int(1)?,
        org_slug: r.text(2)?,
        slug: r.text(3)?,
        name: r.text(4)?,
        platform: r.opt_text(5)?,
        date_created: r.real(6)?,
        retention_max_events: r.opt_int(7)?,
        retention_days: r.opt_int(8)?,
    })
}

const KEY_COLS: &str = "id, project_id, public_key, label, is_active, rate_limit_count, \
     rate_limit_window, date_created";
fn key_row(r: &Row) -> StoreResult<ProjectKey> {
    Ok(ProjectKey {
        id: r.int(0)?,
        project_id: r.int(1)?,
        public_key: r.text(2)?,
        label: r.text(3)?,
        is_active: r.bool(4)?,
        rate_limit_count: r.opt_int(5)?,
        rate_limit_window: r.opt_int(6)?,
        date_created: r.real(7)?,
    })
}

const ISSUE_COLS: &str = "i.id, i.project_id, i.short_id, i.title, i.culprit, i.level, \
     i.issue_type, i.metadata, i.platform, i.logger, i.status, i.is_regression, i.first_seen, \
     i.last_seen, i.times_seen, i.user_count, i.first_release, i.last_release, i.assignee_id, \
     au.email, i.resolved_in_release, i.ignore_until, i.ignore_until_events, \
     i.ignore_until_users";
/// Where [`ISSUE_COLS`] come from.
const ISSUE_FROM: &str = "issues i LEFT JOIN users au ON au.id = i.assignee_id";
fn issue_row(r: &Row) -> StoreResult<Issue> {
    Ok(Issue {
        id: r.int(0)?,
        project_id: r.int(1)?,
        short_id: r.int(2)?,
        title: r.text(3)?,
        culprit: r.text(4)?,
        level: r.text(5)?,
        issue_type: r.text(6)?,
        metadata: serde_json::from_str(&r.text(7)?).unwrap_or(Value::Null),
        platform: r.text(8)?,
        logger: r.opt_text(9)?,
        status: r.text(10)?,
        is_regression: r.bool(11)?,
        first_seen: r.real(12)?,
        last_seen: r.real(13)?,
        times_seen: r.int(14)?,
        user_count: r.int(15)?,
        first_release: r.opt_text(16)?,
        last_release: r.opt_text(17)?,
        assignee_id: r.opt_int(18)?,
        assignee_email: r.opt_text(19)?,
        resolved_in_release: r.opt_text(20)?,
        ignore_until: r.opt_real(21)?,
        ignore_until_events: r.opt_int(22)?,
        ignore_until_users: r.opt_int(23)?,
    })
}

const INVITE_SELECT: &str = "SELECT v.id, v.org_id, o.slug, v.role, v.project_ids, v.email, \
     v.created_by, v.date_created, v.expires, v.accepted_by, \
     CASE WHEN v.date_accepted IS NULL THEN 0 ELSE 1 END \
     FROM invites v JOIN organizations o ON o.id = v.org_id";
fn invite_row(r: &Row) -> StoreResult<Invite> {
    Ok(Invite {
        id: r.int(0)?,
        org_id: r.int(1)?,
        org_slug: r.text(2)?,
        role: r.text(3)?,
        project_ids: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
        email: r.opt_text(5)?,
        created_by: r.int(6)?,
        date_created: r.real(7)?,
        expires: r.real(8)?,
        accepted_by: r.opt_int(9)?,
    })
}

const ACTIVITY_SELECT: &str = "SELECT a.id, a.issue_id, a.user_id, u.email, a.kind, a.data, \
     a.date_created FROM activity a LEFT JOIN users u ON u.id = a.user_id";
fn activity_row(r: &Row) -> StoreResult<Activity> {
    Ok(Activity {
        id: r.int(0)?,
        issue_id: r.int(1)?,
        user_id: r.opt_int(2)?,
        user_email: r.opt_text(3)?,
        kind: r.text(4)?,
        data: serde_json::from_str(&r.text(5)?).unwrap_or(Value::Null),
        date_created: r.real(6)?,
    })
}

/// An event's grouping is its fingerprint's (events stored before 0009 carry their own).
const EVENT_COLS: &str = "e.project_id, e.event_id, e.issue_id, e.timestamp, e.received, e.size, \
     coalesce((SELECT g.grouping FROM group_hashes g \
         WHERE g.project_id = e.project_id AND g.hash = e.hash), e.grouping), e.payload";
fn event_row(c: &mut dyn Conn, dicts: &DictCache, r: &Row) -> StoreResult<EventRecord> {
    let payload = payload_json(c, dicts, &r.blob(7)?)?
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or(Value::Null);
    Ok(EventRecord {
        project_id: r.int(0)?,
        event_id: r.text(1)?,
        issue_id: r.int(2)?,
        timestamp: r.real(3)?,
        received: r.real(4)?,
        size: r.int(5)?,
        grouping: serde_json::from_str(&r.text(6)?).unwrap_or(Value::Null),
        payload,
    })
}

/// The JSON of a stored payload (`None` when it cannot be read), with the dictionary it names
/// loaded from the database the first time.
fn payload_json(c: &mut dyn Conn, dicts: &DictCache, frame: &[u8]) -> StoreResult<Option<Vec<u8>>> {
    dicts.decompress(frame, |id| dict_bytes(c, id))
}

/// A payload dictionary's bytes by its ID.
fn dict_bytes(c: &mut dyn Conn, id: u32) -> StoreResult<Option<Vec<u8>>> {
    c.query_opt(
        "SELECT data FROM payload_dicts WHERE id = ?1",
        &sql_params![id as i64],
    )?
    .map(|r| r.blob(0))
    .transpose()
}

const ATTACHMENT_COLS: &str = "id, event_id, filename, content_type, attachment_type, size";
fn attachment_row(r: &Row) -> StoreResult<Attachment> {
    Ok(Attachment {
        id: r.int(0)?,
        event_id: r.text(1)?,
        filename: r.text(2)?,
        content_type: r.opt_text(3)?,
        attachment_type: r.text(4)?,
        size: r.int(5)?,
    })
}

fn tag_value_row(r: &Row) -> StoreResult<TagValue> {
    Ok(TagValue {
        key: r.text(0)?,
        value: r.text(1)?,
        count: r.int(2)?,
        first_seen: r.real(3)?,
        last_seen: r.real(4)?,
    })
}

const RULE_COLS: &str = "id, project_id, name, trigger_type, threshold, window_minutes, factor, \
     filters, interval_minutes, actions, date_created, date_updated";
fn rule_row(r: &Row) -> StoreResult<AlertRule> {
    Ok(AlertRule {
        id: r.int(0)?,
        project_id: r.int(1)?,
        name: r.text(2)?,
        trigger: r.text(3)?,
        threshold: r.opt_int(4)?,
        window_minutes: r.opt_int(5)?,
        factor: r.opt_real(6)?,
        filters: serde_json::from_str(&r.text(7)?).unwrap_or_else(|_| json!({})),
        interval_minutes: r.int(8)?,
        actions: serde_json::from_str(&r.text(9)?).unwrap_or_else(|_| json!([])),
        date_created: r.real(10)?,
        date_updated: r.real(11)?,
    })
}

const NOTIFICATION_COLS: &str = "id, rule_id, project_id, issue_id, action, payload, status, \
     attempts, next_attempt, last_error, date_created, date_sent";
fn notification_row(r: &Row) -> StoreResult<Notification> {
    Ok(Notification {
        id: r.int(0)?,
        rule_id: r.opt_int(1)?,
        project_id: r.int(2)?,
        issue_id: r.opt_int(3)?,
        action: serde_json::from_str(&r.text(4)?).unwrap_or(Value::Null),
        payload: serde_json::from_str(&r.text(5)?).unwrap_or(Value::Null),
        status: r.text(6)?,
        attempts: r.int(7)?,
        next_attempt: r.real(8)?,
        last_error: r.opt_text(9)?,
        date_created: r.real(10)?,
        date_sent: r.opt_real(11)?,
    })
}

/// The rules every project starts with (`migrations/*/0006_alerts.sql` gives projects that
/// existed before the same two): e-mail the project's members (`"members"`, resolved when
/// sending) about new issues and about regressions, at most once an hour per issue.
pub const DEFAULT_RULES: [(&str, &str); 2] = [
    ("Notify members of new issues", "new_issue"),
    ("Notify members of regressions", "regression"),
];

fn add_default_rules(c: &mut dyn Conn, project_id: i64, now: f64) -> StoreResult<()> {
    let actions = json!([{"type": "email", "to": ["members"]}]).to_string();
    for (name, trigger) in DEFAULT_RULES {
        c.execute(
            "INSERT INTO alert_rules (project_id, name, trigger_type, filters, interval_minutes, \
             actions, date_created, date_updated) VALUES (?1, ?2, ?3, ?4, 60, ?5, ?6, ?6)",
            &sql_params![project_id, name, trigger, "{}", &actions, now],
        )?;
    }
    Ok(())
}

/// NotFound when a statement changed no row.
fn changed(rows: u64) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// `?{start}, ?{start+1}, …` for `n` values.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    async fn healthy(&self) -> bool {
        self.backend.healthy().await
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: f64) -> StoreResult<bool> {
        let now = now();
        let params = sql_params![name, holder, now + ttl, now];
        self.write(move |c| {
            Ok(c.query_opt(
                "INSERT INTO leases (name, holder, expires) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 expires = excluded.expires \
                 WHERE leases.expires < ?4 OR leases.holder = excluded.holder RETURNING holder",
                &params,
            )?
            .is_some())
        })
        .await
    }

    async fn current_payload_dicts(&self) -> StoreResult<Vec<(i64, u32)>> {
        self.read(|c| {
            all(
                c.query(
                    "SELECT d.project_id, d.id FROM payload_dicts d WHERE d.date_created = \
                     (SELECT max(n.date_created) FROM payload_dicts n \
                      WHERE n.project_id = d.project_id) ORDER BY d.project_id, d.id",
                    &[],
                )?,
                |r| Ok((r.int(0)?, r.int(1)? as u32)),
            )
        })
        .await
    }

    async fn payload_dict(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        self.read(move |c| dict_bytes(c, id)).await
    }

    async fn add_payload_dict(&self, project_id: i64, id: u32, data: Vec<u8>) -> StoreResult<bool> {
        let params = sql_params![id as i64, project_id, data, now()];
        self.write(move |c| {
            Ok(c.query_opt(
                "INSERT INTO payload_dicts (id, project_id, data, date_created) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING RETURNING id",
                &params,
            )?
            .is_some())
        })
        .await
    }

    async fn payload_dict_due(&self, made_before: f64, min_events: i64) -> StoreResult<Vec<i64>> {
        self.read(move |c| {
            // The count stops at `min_events`: an index range of the newest events, never the
            // whole table.
            all(
                c.query(
                    "SELECT m.id FROM (SELECT p.id, coalesce((SELECT max(d.date_created) \
                         FROM payload_dicts d WHERE d.project_id = p.id), 0) AS made \
                         FROM projects p) m \
                     WHERE m.made < ?1 AND (SELECT count(*) FROM (SELECT 1 FROM events e \
                         WHERE e.project_id = m.id AND e.timestamp > m.made LIMIT ?2) s) >= ?2 \
                     ORDER BY m.id",
                    &sql_params![made_before, min_events],
                )?,
                |r| r.int(0),
            )
        })
        .await
    }

    async fn sample_payloads(
        &self,
        project_id: i64,
        n: i64,
        max_event: i64,
        max_total: usize,
    ) -> StoreResult<Vec<Vec<u8>>> {
        let dicts = self.dicts.clone();
        self.read(move |c| {
            let rows = c.query(
                "SELECT payload FROM events WHERE project_id = ?1 AND size <= ?3 \
                 ORDER BY timestamp DESC LIMIT ?2",
                &sql_params![project_id, n, max_event],
            )?;
            let (mut samples, mut total) = (Vec::with_capacity(rows.len()), 0);
            for r in &rows {
                if total >= max_total {
                    break;
                }
                if let Some(json) = payload_json(c, &dicts, &r.blob(0)?)? {
                    total += json.len();
                    samples.push(json);
                }
            }
            Ok(samples)
        })
        .await
    }

    async fn add_rate_count(&self, key_id: i64, window_start: i64, n: i64) -> StoreResult<i64> {
        self.write(move |c| {
            c.query_one(
                "INSERT INTO rate_counts (key_id, window_start, count) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key_id, window_start) \
                 DO UPDATE SET count = rate_counts.count + excluded.count RETURNING count",
                &sql_params![key_id, window_start, n],
            )?
            .int(0)
        })
        .await
    }

    async fn try_add_rate_count(
        &self,
        key_id: i64,
        window_start: i64,
        n: i64,
        limit: i64,
    ) -> StoreResult<Option<i64>> {
        if n > limit {
            return Ok(None);
        }
        self.write(move |c| {
            c.query_opt(
                "INSERT INTO rate_counts (key_id, window_start, count) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key_id, window_start) \
                 DO UPDATE SET count = rate_counts.count + excluded.count \
                 WHERE rate_counts.count + excluded.count <= ?4 RETURNING count",
                &sql_params![key_id, window_start, n, limit],
            )?
            .map(|r| r.int(0))
            .transpose()
        })
        .await
    }

    async fn prune_rate_counts(&self, before: i64) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM rate_counts WHERE window_start < ?1",
                &sql_params![before],
            )?;
            Ok(())
        })
        .await
    }

    async fn spool_position(&self, node_id: &str) -> StoreResult<Position> {
        let node_id = node_id.to_string();
        self.read(move |c| {
            let row = c.query_opt(
                "SELECT segment, \"offset\" FROM spool_cursor WHERE node_id = ?1",
                &sql_params![node_id],
            )?;
            Ok(match row {
                Some(r) => Position {
                    segment: r.int(0)?.max(0) as u64,
                    offset: r.int(1)?.max(0) as u64,
                },
                None => Position::default(),
            })
        })
        .await
    }

    async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        now: f64,
        expires: f64,
    ) -> StoreResult<()> {
        let params = sql_params![id_hash, user_id, csrf, now, expires];
        self.write(move |c| {
            c.execute(
                "INSERT INTO web_sessions (id_hash, user_id, csrf, date_created, expires) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                &params,
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &str, now: f64) -> StoreResult<WebSession> {
        let params = sql_params![id_hash, now];
        self.read(move |c| {
            let r = c.query_one(
                &format!(
                    "SELECT {U_COLS}, s.csrf, s.expires FROM web_sessions s \
                     JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1 AND s.expires > ?2"
                ),
                &params,
            )?;
            Ok(WebSession {
                user: user_row(&r)?,
                csrf: r.text(4)?,
                expires: r.real(5)?,
            })
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let params = sql_params![id_hash];
        self.write(move |c| {
            c.execute("DELETE FROM web_sessions WHERE id_hash = ?1", &params)?;
            Ok(())
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: i64, keep_id_hash: &str) -> StoreResult<()> {
        let params = sql_params![user_id, keep_id_hash];
        self.write(move |c| {
            c.execute(
                "DELETE FROM web_sessions WHERE user_id = ?1 AND id_hash <> ?2",
                &params,
            )?;
            Ok(())
        })
        .await
    }

    async fn prune_web(&self, now: f64, before: f64) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM web_sessions WHERE expires <= ?1",
                &sql_params![now],
            )?;
            c.execute(
                "DELETE FROM login_failures WHERE at < ?1",
                &sql_params![before],
            )?;
            Ok(())
        })
        .await
    }

    async fn record_login_failure(&self, key: &str, at: f64) -> StoreResult<()> {
        let params = sql_params![key, at];
        self.write(move |c| {
            c.execute(
                "INSERT INTO login_failures (key, at) VALUES (?1, ?2)",
                &params,
            )?;
            Ok(())
        })
        .await
    }

    async fn login_failures_since(&self, key: &str, since: f64) -> StoreResult<i64> {
        let params = sql_params![key, since];
        self.read(move |c| {
            c.query_one(
                "SELECT count(*) FROM login_failures WHERE key = ?1 AND at >= ?2",
                &params,
            )?
            .int(0)
        })
        .await
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        let params = sql_params![key];
        self.write(move |c| {
            c.execute("DELETE FROM login_failures WHERE key = ?1", &params)?;
            Ok(())
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<i64> {
        self.read(|c| c.query_one("SELECT count(*) FROM users", &[])?.int(0))
            .await
    }

    async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        superuser: bool,
    ) -> StoreResult<User> {
        let params = sql_params![email, password_hash, superuser, now()];
        self.write(move |c| {
            user_row(&c.query_one(
                &format!(
                    "INSERT INTO users (email, password_hash, is_superuser, date_created) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING {USER_COLS}"
                ),
                &params,
            )?)
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<User> {
        let params = sql_params![email];
        self.read(move |c| {
            user_row(&c.query_one(
                &format!("SELECT {USER_COLS} FROM users WHERE email = ?1"),
                &params,
            )?)
        })
        .await
    }

    async fn user(&self, id: i64) -> StoreResult<User> {
        self.read(move |c| {
            user_row(&c.query_one(
                &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
                &sql_params![id],
            )?)
        })
        .await
    }

    async fn users(&self) -> StoreResult<Vec<User>> {
        self.read(|c| {
            all(
                c.query(
                    &format!("SELECT {USER_COLS} FROM users ORDER BY email"),
                    &[],
                )?,
                user_row,
            )
        })
        .await
    }

    async fn set_password(&self, user_id: i64, password_hash: &str) -> StoreResult<()> {
        let params = sql_params![user_id, password_hash];
        self.write(move |c| {
            changed(c.execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", &params)?)
        })
        .await
    }

    async fn create_token(&self, user_id: i64, token_hash: &str, name: &str) -> StoreResult<()> {
        let params = sql_params![user_id, token_hash, name, now()];
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_tokens (user_id, token_hash, name, date_created) \
                 VALUES (?1, ?2, ?3, ?4)",
                &params,
            )?;
            Ok(())
        })
        .await
    }

    async fn user_by_token(&self, token_hash: &str) -> StoreResult<User> {
        let params = sql_params![token_hash];
        self.read(move |c| {
            user_row(&c.query_one(
                &format!(
                    "SELECT {U_COLS} FROM api_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.token_hash = ?1"
                ),
                &params,
            )?)
        })
        .await
    }

    async fn tokens(&self, user_id: i64) -> StoreResult<Vec<ApiToken>> {
        self.read(move |c| {
            let rows = c.query(
                "SELECT id, name, date_created FROM api_tokens WHERE user_id = ?1 \
                 ORDER BY date_created DESC, id DESC",
                &sql_params![user_id],
            )?;
            all(rows, |r| {
                Ok(ApiToken {
                    id: r.int(0)?,
                    name: r.text(1)?,
                    date_created: r.real(2)?,
                })
            })
        })
        .await
    }

    async fn delete_token(&self, user_id: i64, token_id: i64) -> StoreResult<()> {
        self.write(move |c| {
            changed(c.execute(
                "DELETE FROM api_tokens WHERE id = ?2 AND user_id = ?1",
                &sql_params![user_id, token_id],
            )?)
        })
        .await
    }

    async fn ensure_organization(&self, slug: &str) -> StoreResult<Organization> {
        let params = sql_params![slug, now()];
        self.write(move |c| {
            c.execute(
                "INSERT INTO organizations (slug, name, date_created) VALUES (?1, ?1, ?2) \
                 ON CONFLICT (slug) DO NOTHING",
                &params,
            )?;
            org_row(&c.query_one(
                &format!("SELECT {ORG_COLS} FROM organizations o WHERE o.slug = ?1"),
                &params[..1],
            )?)
        })
        .await
    }

    async fn organization(&self, slug: &str) -> StoreResult<Organization> {
        let params = sql_params![slug];
        self.read(move |c| {
            org_row(&c.query_one(
                &format!("SELECT {ORG_COLS} FROM organizations o WHERE o.slug = ?1"),
                &params,
            )?)
        })
        .await
    }

    async fn add_member(&self, org_id: i64, user_id: i64, role: &str) -> StoreResult<()> {
        let params = sql_params![org_id, user_id, role];
        self.write(move |c| {
            c.execute(
                "INSERT INTO org_members (org_id, user_id, role) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                &params,
            )?;
            Ok(())
        })
        .await
    }

    async fn org_members(&self, org_id: i64) -> StoreResult<Vec<Member>> {
        self.read(move |c| {
            let mut projects: HashMap<i64, Vec<i64>> = HashMap::new();
            for r in c.query(
                "SELECT pm.user_id, pm.project_id FROM project_members pm \
                 JOIN projects p ON p.id = pm.project_id WHERE p.org_id = ?1 \
                 ORDER BY pm.project_id",
                &sql_params![org_id],
            )? {
                projects.entry(r.int(0)?).or_default().push(r.int(1)?);
            }
            let rows = c.query(
                &format!(
                    "SELECT {U_COLS}, m.role FROM org_members m JOIN users u ON u.id = m.user_id \
                     WHERE m.org_id = ?1 ORDER BY u.email"
                ),
                &sql_params![org_id],
            )?;
            all(rows, |r| {
                let user = user_row(r)?;
                Ok(Member {
                    project_ids: projects.get(&user.id).cloned().unwrap_or_default(),
                    role: r.text(4)?,
                    user,
                })
            })
        })
        .await
    }

    async fn remove_member(&self, org_id: i64, user_id: i64) -> StoreResult<()> {
        let params = sql_params![org_id, user_id];
        self.write(move |c| {
            c.execute(
                "DELETE FROM project_members WHERE user_id = ?2 \
                 AND project_id IN (SELECT id FROM projects WHERE org_id = ?1)",
                &params,
            )?;
            changed(c.execute(
                "DELETE FROM org_members WHERE org_id = ?1 AND user_id = ?2",
                &params,
            )?)
        })
        .await
    }

    async fn set_project_member(
        &self,
        project_id: i64,
        user_id: i64,
        member: bool,
    ) -> StoreResult<()> {
        let params = sql_params![project_id, user_id];
        self.write(move |c| {
            c.execute(
                if member {
                    "INSERT INTO project_members (project_id, user_id) VALUES (?1, ?2) \
                     ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM project_members WHERE project_id = ?1 AND user_id = ?2"
                },
                &params,
            )?;
            Ok(())
        })
        .await
    }

    async fn project_members(&self, project_id: i64) -> StoreResult<Vec<User>> {
        self.read(move |c| {
            let rows = c.query(
                &format!(
                    "SELECT {U_COLS} FROM users u JOIN projects p ON p.id = ?1 \
                     WHERE {} ORDER BY u.email",
                    can_see("p", "u.id", "u.is_superuser")
                ),
                &sql_params![project_id],
            )?;
            all(rows, user_row)
        })
        .await
    }

    async fn create_invite(&self, invite: NewInvite<'_>) -> StoreResult<i64> {
        let params = sql_params![
            invite.token_hash,
            invite.org_id,
            invite.role,
            json!(invite.project_ids).to_string(),
            invite.email,
            invite.created_by,
            invite.now,
            invite.expires,
        ];
        self.write(move |c| {
            c.query_one(
                "INSERT INTO invites (token_hash, org_id, role, project_ids, email, created_by, \
                 date_created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                &params,
            )?
            .int(0)
        })
        .await
    }

    async fn invite(&self, token_hash: &str) -> StoreResult<Invite> {
        let params = sql_params![token_hash];
        self.read(move |c| {
            invite_row(&c.query_one(&format!("{INVITE_SELECT} WHERE v.token_hash = ?1"), &params)?)
        })
        .await
    }

    async fn invites(&self, org_id: i64) -> StoreResult<Vec<Invite>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "{INVITE_SELECT} WHERE v.org_id = ?1 AND v.date_accepted IS NULL \
                         ORDER BY v.date_created DESC, v.id DESC"
                    ),
                    &sql_params![org_id],
                )?,
                invite_row,
            )
        })
        .await
    }

    async fn delete_invite(&self, org_id: i64, id: i64) -> StoreResult<()> {
        self.write(move |c| {
            changed(c.execute(
                "DELETE FROM invites WHERE id = ?2 AND org_id = ?1",
                &sql_params![org_id, id],
            )?)
        })
        .await
    }

    async fn accept_invite(&self, token_hash: &str, user_id: i64, now: f64) -> StoreResult<Invite> {
        let token_hash = token_hash.to_string();
        self.write(move |c| {
            let row = c.query_one(
                &format!("{INVITE_SELECT} WHERE v.token_hash = ?1"),
                &sql_params![token_hash],
            )?;
            let mut invite = invite_row(&row)?;
            if row.bool(10)? {
                return Err(StoreError::Conflict("invitation already accepted".into()));
            }
            if invite.expires <= now {
                return Err(StoreError::Conflict("invitation expired".into()));
            }
            // Two acceptances at once: the second waits for the first and then changes nothing.
            if c.execute(
                "UPDATE invites SET accepted_by = ?2, date_accepted = ?3 \
                 WHERE id = ?1 AND date_accepted IS NULL",
                &sql_params![invite.id, user_id, now],
            )? == 0
            {
                return Err(StoreError::Conflict("invitation already accepted".into()));
            }
            c.execute(
                &format!(
                    "INSERT INTO org_members (org_id, user_id, role) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (org_id, user_id) DO UPDATE SET role = CASE WHEN {} > {} \
                     THEN excluded.role ELSE org_members.role END",
                    role_rank("excluded.role"),
                    role_rank("org_members.role")
                ),
                &sql_params![invite.org_id, user_id, &invite.role],
            )?;
            for project_id in &invite.project_ids {
                // Only projects still in the organization.
                c.execute(
                    "INSERT INTO project_members (project_id, user_id) \
                     SELECT id, CAST(?2 AS BIGINT) FROM projects WHERE id = ?1 AND org_id = ?3 \
                     ON CONFLICT DO NOTHING",
                    &sql_params![*project_id, user_id, invite.org_id],
                )?;
            }
            invite.accepted_by = Some(user_id);
            Ok(invite)
        })
        .await
    }

    async fn organizations_for(&self, user: &User) -> StoreResult<Vec<Organization>> {
        let (superuser, id) = (user.is_superuser, user.id);
        self.read(move |c| {
            let rows = if superuser {
                c.query(
                    &format!("SELECT {ORG_COLS} FROM organizations o ORDER BY o.slug"),
                    &[],
                )?
            } else {
                c.query(
                    &format!(
                        "SELECT {ORG_COLS} FROM organizations o JOIN org_members m \
                         ON m.org_id = o.id AND m.user_id = ?1 ORDER BY o.slug"
                    ),
                    &sql_params![id],
                )?
            };
            all(rows, org_row)
        })
        .await
    }

    async fn create_project(&self, org_id: i64, slug: &str, name: &str) -> StoreResult<Project> {
        let now = now();
        let params = sql_params![org_id, slug, name, now];
        self.write(move |c| {
            let id = c
                .query_one(
                    "INSERT INTO projects (org_id, slug, name, date_created) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    &params,
                )?
                .int(0)?;
            add_default_rules(c, id, now)?;
            project_row(&c.query_one(
                &format!("{PROJECT_SELECT} WHERE p.id = ?1"),
                &sql_params![id],
            )?)
        })
        .await
    }

    async fn project(&self, id: i64) -> StoreResult<Project> {
        self.read(move |c| {
            project_row(&c.query_one(
                &format!("{PROJECT_SELECT} WHERE p.id = ?1"),
                &sql_params![id],
            )?)
        })
        .await
    }

    async fn project_by_slug(&self, org_slug: &str, slug: &str) -> StoreResult<Project> {
        let params = sql_params![org_slug, slug];
        self.read(move |c| {
            project_row(&c.query_one(
                &format!("{PROJECT_SELECT} WHERE o.slug = ?1 AND p.slug = ?2"),
                &params,
            )?)
        })
        .await
    }

    async fn all_projects(&self) -> StoreResult<Vec<Project>> {
        self.read(|c| all(c.query(PROJECT_SELECT, &[])?, project_row))
            .await
    }

    async fn projects_for(&self, user: &User) -> StoreResult<Vec<Project>> {
        let (superuser, id) = (user.is_superuser, user.id);
        self.read(move |c| {
            let rows = c.query(
                &format!(
                    "{PROJECT_SELECT} WHERE {} ORDER BY o.slug, p.slug",
                    can_see("p", "?1", "?2")
                ),
                &sql_params![id, superuser],
            )?;
            all(rows, project_row)
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
                &sql_params![project_id, max_events, days],
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
        let params = sql_params![project_id, public_key, label, now()];
        self.write(move |c| {
            key_row(&c.query_one(
                &format!(
                    "INSERT INTO project_keys (project_id, public_key, label, date_created) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING {KEY_COLS}"
                ),
                &params,
            )?)
        })
        .await
    }

    async fn key_by_public(&self, public_key: &str) -> StoreResult<ProjectKey> {
        let params = sql_params![public_key];
        self.read(move |c| {
            key_row(&c.query_one(
                &format!("SELECT {KEY_COLS} FROM project_keys WHERE public_key = ?1"),
                &params,
            )?)
        })
        .await
    }

    async fn keys(&self, project_id: i64) -> StoreResult<Vec<ProjectKey>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {KEY_COLS} FROM project_keys WHERE project_id = ?1 ORDER BY id"
                    ),
                    &sql_params![project_id],
                )?,
                key_row,
            )
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
        let params = sql_params![
            id,
            label,
            is_active,
            rate_limit.map(|r| r.0),
            rate_limit.map(|r| r.1)
        ];
        self.write(move |c| {
            key_row(&c.query_one(
                &format!(
                    "UPDATE project_keys SET label = ?2, is_active = ?3, rate_limit_count = ?4, \
                     rate_limit_window = ?5 WHERE id = ?1 RETURNING {KEY_COLS}"
                ),
                &params,
            )?)
        })
        .await
    }

    async fn delete_key(&self, project_id: i64, key_id: i64) -> StoreResult<()> {
        self.write(move |c| {
            changed(c.execute(
                "DELETE FROM project_keys WHERE id = ?2 AND project_id = ?1",
                &sql_params![project_id, key_id],
            )?)
        })
        .await
    }

    async fn save_batch(&self, batch: Arc<DigestBatch>) -> StoreResult<DigestResult> {
        self.write(move |c| save_batch(c, &batch)).await
    }

    async fn count_events(&self, project_id: Option<i64>) -> StoreResult<i64> {
        self.read(move |c| match project_id {
            Some(p) => c
                .query_one(
                    "SELECT count(*) FROM events WHERE project_id = ?1",
                    &sql_params![p],
                )?
                .int(0),
            None => c.query_one("SELECT count(*) FROM events", &[])?.int(0),
        })
        .await
    }

    async fn refresh_statistics(&self) -> StoreResult<bool> {
        // Outside a transaction: the statistics are committed table by table.
        self.read(|c| c.refresh_statistics()).await
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
                    &sql_params![project_id, ts],
                )?;
            }
            if let Some(max) = max_events {
                // The oldest event that stays; everything older goes.
                let keep = c.query_opt(
                    "SELECT timestamp, id FROM events WHERE project_id = ?1 \
                     ORDER BY timestamp DESC, id DESC LIMIT 1 OFFSET ?2",
                    &sql_params![project_id, (max - 1).max(0)],
                )?;
                if let Some(keep) = keep.filter(|_| max > 0) {
                    removed += c.execute(
                        "DELETE FROM events WHERE project_id = ?1 AND \
                         (timestamp < ?2 OR (timestamp = ?2 AND id < ?3))",
                        &sql_params![project_id, keep.real(0)?, keep.int(1)?],
                    )?;
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn list_issues(&self, filter: &IssueFilter) -> StoreResult<Vec<Issue>> {
        let (sql, args) = issue_query(filter);
        self.read(move |c| all(c.query(&sql, &args)?, issue_row))
            .await
    }

    async fn issue(&self, id: i64) -> StoreResult<Issue> {
        self.read(move |c| {
            issue_row(&c.query_one(
                &format!("SELECT {ISSUE_COLS} FROM {ISSUE_FROM} WHERE i.id = ?1"),
                &sql_params![id],
            )?)
        })
        .await
    }

    async fn set_issue_status(&self, id: i64, status: &str) -> StoreResult<()> {
        let change = match status {
            "resolved" => IssueChange::Resolve,
            "unresolved" => IssueChange::Unresolve,
            "ignored" => IssueChange::Ignore(IgnoreRule::default()),
            other => return Err(StoreError::Other(format!("unknown issue status {other:?}"))),
        };
        self.update_issues(&[id], &change, None, now()).await
    }

    async fn update_issues(
        &self,
        ids: &[i64],
        change: &IssueChange,
        actor: Option<i64>,
        now: f64,
    ) -> StoreResult<()> {
        // In id order, as digestion updates issues: two writers lock rows in the same order.
        let ids: BTreeSet<i64> = ids.iter().copied().collect();
        let change = change.clone();
        self.write(move |c| {
            let assignee = match change {
                IssueChange::Assign(Some(user)) => Some((
                    user,
                    c.query_one("SELECT email FROM users WHERE id = ?1", &sql_params![user])?
                        .text(0)?,
                )),
                _ => None,
            };
            for id in ids {
                let found = match &change {
                    IssueChange::Resolve => move_issue(c, id, Move::Resolve, actor, now)?,
                    IssueChange::ResolveInNextRelease => {
                        move_issue(c, id, Move::ResolveInNextRelease, actor, now)?
                    }
                    IssueChange::Ignore(rule) => move_issue(c, id, Move::Ignore(rule), actor, now)?,
                    IssueChange::Unresolve => move_issue(c, id, Move::Unresolve, actor, now)?,
                    IssueChange::Assign(_) => assign_issue(c, id, assignee.as_ref(), actor, now)?,
                };
                if !found {
                    return Err(StoreError::NotFound);
                }
            }
            Ok(())
        })
        .await
    }

    async fn add_comment(
        &self,
        issue_id: i64,
        user_id: i64,
        text: &str,
        now: f64,
    ) -> StoreResult<()> {
        let data = json!({ "text": text });
        self.write(move |c| {
            c.query_one("SELECT 1 FROM issues WHERE id = ?1", &sql_params![issue_id])?;
            add_activity(c, issue_id, Some(user_id), "note", &data, now)
        })
        .await
    }

    async fn issue_activity(&self, issue_id: i64, limit: i64) -> StoreResult<Vec<Activity>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!("{ACTIVITY_SELECT} WHERE a.issue_id = ?1 ORDER BY a.id DESC LIMIT ?2"),
                    &sql_params![issue_id, limit],
                )?,
                activity_row,
            )
        })
        .await
    }

    async fn rising_issues(
        &self,
        project_ids: &[i64],
        now: f64,
        limit: i64,
    ) -> StoreResult<Vec<RisingIssue>> {
        const HOUR: i64 = 3600;
        let ids = project_ids.to_vec();
        let window = now - 3.0 * HOUR as f64;
        // The hourly buckets overlapping the last 3 hours, and the 21 before them.
        let recent_from = (window.floor() as i64).div_euclid(HOUR) * HOUR;
        let baseline_from = recent_from - 21 * HOUR;
        self.read(move |c| {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {ISSUE_COLS}, r.recent, r.baseline FROM {ISSUE_FROM} JOIN (\
                   SELECT c.id, \
                   CAST(sum(CASE WHEN h.hour >= ?1 THEN h.count ELSE 0 END) AS BIGINT) \
                     AS recent, \
                   CAST(sum(CASE WHEN h.hour < ?1 THEN h.count ELSE 0 END) \
                     AS DOUBLE PRECISION) / 7 AS baseline \
                   FROM issues c JOIN issue_hourly h ON h.issue_id = c.id \
                   AND h.hour >= ?2 AND h.hour <= ?3 \
                   WHERE c.last_seen >= ?4 AND c.project_id IN ({}) GROUP BY c.id\
                 ) r ON r.id = i.id WHERE r.recent > 0 \
                 ORDER BY CAST(r.recent AS DOUBLE PRECISION) / \
                   CASE WHEN r.baseline > 1 THEN r.baseline ELSE 1 END DESC, \
                 r.recent DESC, i.last_seen DESC, i.id DESC LIMIT ?5",
                placeholders(6, ids.len())
            );
            let mut args = sql_params![
                recent_from,
                baseline_from,
                now.floor() as i64,
                window,
                limit
            ]
            .to_vec();
            args.extend(ids.into_iter().map(SqlValue::Int));
            all(c.query(&sql, &args)?, |r| {
                Ok(RisingIssue {
                    issue: issue_row(r)?,
                    recent: r.int(24)?,
                    baseline: r.real(25)?,
                })
            })
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
            let sql = format!(
                "SELECT issue_id, hour, count FROM issue_hourly WHERE hour >= ?1 \
                 AND issue_id IN ({}) ORDER BY hour",
                placeholders(2, ids.len())
            );
            let mut args = vec![SqlValue::Int(since)];
            args.extend(ids.into_iter().map(SqlValue::Int));
            for r in c.query(&sql, &args)? {
                out.entry(r.int(0)?)
                    .or_default()
                    .push((r.int(1)?, r.int(2)?));
            }
            Ok(out)
        })
        .await
    }

    async fn project_hourly(&self, project_id: i64, since: i64) -> StoreResult<Vec<(i64, i64)>> {
        self.read(move |c| {
            let rows = c.query(
                "SELECT h.hour, CAST(sum(h.count) AS BIGINT) FROM issue_hourly h \
                 JOIN issues i ON i.id = h.issue_id \
                 WHERE i.project_id = ?1 AND h.hour >= ?2 GROUP BY h.hour ORDER BY h.hour",
                &sql_params![project_id, since],
            )?;
            all(rows, |r| Ok((r.int(0)?, r.int(1)?)))
        })
        .await
    }

    async fn issue_tag_keys(&self, issue_id: i64) -> StoreResult<Vec<TagKey>> {
        self.read(move |c| {
            let rows = c.query(
                "SELECT key, values_seen, total FROM issue_tag_keys \
                 WHERE issue_id = ?1 ORDER BY key",
                &sql_params![issue_id],
            )?;
            all(rows, |r| {
                Ok(TagKey {
                    key: r.text(0)?,
                    unique_values: r.int(1)?,
                    total_values: r.int(2)?,
                })
            })
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
        let params = sql_params![issue_id, key, limit, offset];
        self.read(move |c| {
            all(
                c.query(
                    "SELECT key, value, count, first_seen, last_seen FROM issue_tags \
                     WHERE issue_id = ?1 AND key = ?2 ORDER BY count DESC, value \
                     LIMIT ?3 OFFSET ?4",
                    &params,
                )?,
                tag_value_row,
            )
        })
        .await
    }

    async fn issue_events(
        &self,
        issue_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        self.events_where("e.issue_id = ?1", issue_id, limit, offset)
            .await
    }

    async fn issue_event(&self, issue_id: i64, pick: EventPick) -> StoreResult<EventRecord> {
        let order = match pick {
            EventPick::Latest => "DESC",
            EventPick::Oldest => "ASC",
        };
        let dicts = self.dicts.clone();
        self.read(move |c| {
            let row = c.query_one(
                &format!(
                    "SELECT {EVENT_COLS} FROM events e WHERE e.issue_id = ?1 \
                     ORDER BY e.timestamp {order}, e.id {order} LIMIT 1"
                ),
                &sql_params![issue_id],
            )?;
            event_row(c, &dicts, &row)
        })
        .await
    }

    async fn event(&self, project_id: i64, event_id: &str) -> StoreResult<EventRecord> {
        let params = sql_params![project_id, event_id];
        let dicts = self.dicts.clone();
        self.read(move |c| {
            let row = c.query_one(
                &format!(
                    "SELECT {EVENT_COLS} FROM events e WHERE e.project_id = ?1 AND e.event_id = ?2"
                ),
                &params,
            )?;
            event_row(c, &dicts, &row)
        })
        .await
    }

    async fn event_neighbours(
        &self,
        project_id: i64,
        issue_id: i64,
        timestamp: f64,
        event_id: &str,
    ) -> StoreResult<(Option<String>, Option<String>)> {
        // The event's row id comes through the unique (project_id, event_id) index, never by
        // walking the issue's events.
        let params = sql_params![issue_id, timestamp, event_id, project_id];
        self.read(move |c| {
            // The same order as the event lists: timestamp, then storage order.
            let prev = c.query_opt(
                "SELECT event_id FROM events WHERE issue_id = ?1 AND (timestamp < ?2 OR \
                 (timestamp = ?2 AND id < (SELECT id FROM events WHERE project_id = ?4 \
                 AND event_id = ?3))) ORDER BY timestamp DESC, id DESC LIMIT 1",
                &params,
            )?;
            let next = c.query_opt(
                "SELECT event_id FROM events WHERE issue_id = ?1 AND (timestamp > ?2 OR \
                 (timestamp = ?2 AND id > (SELECT id FROM events WHERE project_id = ?4 \
                 AND event_id = ?3))) ORDER BY timestamp ASC, id ASC LIMIT 1",
                &params,
            )?;
            Ok((
                prev.map(|r| r.text(0)).transpose()?,
                next.map(|r| r.text(0)).transpose()?,
            ))
        })
        .await
    }

    async fn event_attachments(
        &self,
        project_id: i64,
        event_id: &str,
    ) -> StoreResult<Vec<Attachment>> {
        let params = sql_params![project_id, event_id];
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {ATTACHMENT_COLS} FROM attachments \
                         WHERE project_id = ?1 AND event_id = ?2 ORDER BY id"
                    ),
                    &params,
                )?,
                attachment_row,
            )
        })
        .await
    }

    async fn attachment(&self, project_id: i64, id: i64) -> StoreResult<(Attachment, Vec<u8>)> {
        self.read(move |c| {
            let row = c.query_one(
                &format!(
                    "SELECT {ATTACHMENT_COLS}, data FROM attachments \
                     WHERE project_id = ?1 AND id = ?2"
                ),
                &sql_params![project_id, id],
            )?;
            Ok((attachment_row(&row)?, row.blob(6)?))
        })
        .await
    }

    async fn issue_user_reports(&self, issue_id: i64) -> StoreResult<Vec<UserReport>> {
        self.read(move |c| {
            let rows = c.query(
                // Reports are few and events many: walk the project's reports and check each
                // one's event through the unique (project, event id) index.
                "SELECT r.id, r.event_id, r.name, r.email, r.comments, r.date_created \
                 FROM user_reports r \
                 WHERE r.project_id = (SELECT project_id FROM issues WHERE id = ?1) \
                 AND EXISTS (SELECT 1 FROM events e WHERE e.project_id = r.project_id \
                 AND e.event_id = r.event_id AND e.issue_id = ?1) ORDER BY r.id DESC LIMIT 100",
                &sql_params![issue_id],
            )?;
            all(rows, |r| {
                Ok(UserReport {
                    id: r.int(0)?,
                    event_id: r.opt_text(1)?,
                    name: r.opt_text(2)?,
                    email: r.opt_text(3)?,
                    comments: r.text(4)?,
                    date_created: r.real(5)?,
                })
            })
        })
        .await
    }

    async fn project_events(
        &self,
        project_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        self.events_where("e.project_id = ?1", project_id, limit, offset)
            .await
    }

    async fn trace_events(
        &self,
        trace_id: &str,
        project_ids: &[i64],
        limit: i64,
    ) -> StoreResult<Vec<TraceEvent>> {
        let ids = project_ids.to_vec();
        let trace_id = trace_id.to_string();
        self.read(move |c| {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT e.project_id, e.event_id, e.issue_id, i.short_id, i.title, i.culprit, \
                 i.level, e.timestamp FROM events e JOIN issues i ON i.id = e.issue_id \
                 WHERE e.trace_id = ?1 AND e.project_id IN ({}) \
                 ORDER BY e.timestamp DESC, e.id DESC LIMIT ?2",
                placeholders(3, ids.len())
            );
            let mut args = sql_params![trace_id, limit].to_vec();
            args.extend(ids.into_iter().map(SqlValue::Int));
            all(c.query(&sql, &args)?, |r| {
                Ok(TraceEvent {
                    project_id: r.int(0)?,
                    event_id: r.text(1)?,
                    issue_id: r.int(2)?,
                    issue_short_id: r.int(3)?,
                    title: r.text(4)?,
                    culprit: r.text(5)?,
                    level: r.text(6)?,
                    timestamp: r.real(7)?,
                })
            })
        })
        .await
    }
    async fn alert_rules(&self, project_id: i64) -> StoreResult<Vec<AlertRule>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {RULE_COLS} FROM alert_rules WHERE project_id = ?1 ORDER BY id"
                    ),
                    &sql_params![project_id],
                )?,
                rule_row,
            )
        })
        .await
    }

    async fn alert_rule(&self, project_id: i64, id: i64) -> StoreResult<AlertRule> {
        self.read(move |c| {
            rule_row(&c.query_one(
                &format!("SELECT {RULE_COLS} FROM alert_rules WHERE project_id = ?1 AND id = ?2"),
                &sql_params![project_id, id],
            )?)
        })
        .await
    }

    async fn create_alert_rule(
        &self,
        project_id: i64,
        rule: &NewAlertRule,
        now: f64,
    ) -> StoreResult<AlertRule> {
        let params = sql_params![
            project_id,
            &rule.name,
            &rule.trigger,
            rule.threshold,
            rule.window_minutes,
            rule.factor,
            rule.filters.to_string(),
            rule.interval_minutes,
            rule.actions.to_string(),
            now,
        ];
        self.write(move |c| {
            rule_row(&c.query_one(
                &format!(
                    "INSERT INTO alert_rules (project_id, name, trigger_type, threshold, \
                     window_minutes, factor, filters, interval_minutes, actions, date_created, \
                     date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
                     RETURNING {RULE_COLS}"
                ),
                &params,
            )?)
        })
        .await
    }

    async fn update_alert_rule(
        &self,
        project_id: i64,
        id: i64,
        rule: &NewAlertRule,
        now: f64,
    ) -> StoreResult<AlertRule> {
        let params = sql_params![
            project_id,
            id,
            &rule.name,
            &rule.trigger,
            rule.threshold,
            rule.window_minutes,
            rule.factor,
            rule.filters.to_string(),
            rule.interval_minutes,
            rule.actions.to_string(),
            now,
        ];
        self.write(move |c| {
            rule_row(&c.query_one(
                &format!(
                    "UPDATE alert_rules SET name = ?3, trigger_type = ?4, threshold = ?5, \
                     window_minutes = ?6, factor = ?7, filters = ?8, interval_minutes = ?9, \
                     actions = ?10, date_updated = ?11 WHERE project_id = ?1 AND id = ?2 \
                     RETURNING {RULE_COLS}"
                ),
                &params,
            )?)
        })
        .await
    }

    async fn delete_alert_rule(&self, project_id: i64, id: i64) -> StoreResult<()> {
        self.write(move |c| {
            changed(c.execute(
                "DELETE FROM alert_rules WHERE project_id = ?1 AND id = ?2",
                &sql_params![project_id, id],
            )?)
        })
        .await
    }

    async fn fire_alerts(&self, firings: &[Firing], now: f64) -> StoreResult<Vec<(i64, i64)>> {
        // In (rule, issue) order: two nodes firing overlapping sets lock rows in the same order.
        let mut firings = firings.to_vec();
        firings.sort_by_key(|f| (f.rule_id, f.issue_id));
        if firings.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |c| {
            let mut fired = Vec::new();
            for f in &firings {
                // One statement decides: a concurrent caller for the same pair waits for this
                // row and then finds it fired at `now`, within the interval.
                let won = c
                    .query_opt(
                        "INSERT INTO alert_fired (rule_id, issue_id, last_fired) \
                         SELECT r.id, i.id, CAST(?3 AS DOUBLE PRECISION) \
                         FROM alert_rules r JOIN issues i ON i.id = ?2 \
                         AND i.project_id = r.project_id WHERE r.id = ?1 AND r.project_id = ?5 \
                         ON CONFLICT (rule_id, issue_id) DO UPDATE \
                         SET last_fired = excluded.last_fired \
                         WHERE alert_fired.last_fired < excluded.last_fired - ?4 RETURNING rule_id",
                        &sql_params![
                            f.rule_id,
                            f.issue_id,
                            now,
                            (f.interval_minutes.max(0) * 60) as f64,
                            f.project_id
                        ],
                    )?
                    .is_some();
                if !won {
                    continue;
                }
                insert_notifications(c, f, now)?;
                fired.push((f.rule_id, f.issue_id));
            }
            Ok(fired)
        })
        .await
    }

    async fn queue_notifications(&self, firing: &Firing, now: f64) -> StoreResult<()> {
        let firing = firing.clone();
        self.write(move |c| insert_notifications(c, &firing, now))
            .await
    }

    async fn claim_notifications(
        &self,
        holder: &str,
        now: f64,
        lease_seconds: f64,
        limit: i64,
    ) -> StoreResult<Vec<Notification>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let params = sql_params![holder, now, now + lease_seconds, limit];
        self.write(move |c| {
            let sql = format!(
                "UPDATE notifications SET claimed_by = ?1, claimed_until = ?3 WHERE id IN (\
                   SELECT id FROM notifications WHERE status = 'pending' AND next_attempt <= ?2 \
                   AND (claimed_until IS NULL OR claimed_until <= ?2) ORDER BY id LIMIT ?4{}\
                 ) RETURNING {NOTIFICATION_COLS}",
                c.skip_locked()
            );
            let mut claimed = all(c.query(&sql, &params)?, notification_row)?;
            claimed.sort_by_key(|n| n.id);
            Ok(claimed)
        })
        .await
    }

    async fn finish_notification(&self, id: i64, outcome: &Delivery, now: f64) -> StoreResult<()> {
        const DONE: &str = "attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL";
        let (sql, params) = match outcome {
            Delivery::Sent => (
                format!(
                    "UPDATE notifications SET {DONE}, status = 'sent', date_sent = ?2 \
                     WHERE id = ?1"
                ),
                sql_params![id, now].to_vec(),
            ),
            Delivery::Retry {
                next_attempt,
                error,
            } => (
                format!(
                    "UPDATE notifications SET {DONE}, status = 'pending', next_attempt = ?2, \
                     last_error = ?3 WHERE id = ?1"
                ),
                sql_params![id, *next_attempt, error].to_vec(),
            ),
            Delivery::Failed { error } => (
                format!(
                    "UPDATE notifications SET {DONE}, status = 'failed', last_error = ?2 \
                     WHERE id = ?1"
                ),
                sql_params![id, error].to_vec(),
            ),
        };
        self.write(move |c| changed(c.execute(&sql, &params)?))
            .await
    }

    async fn notifications(&self, project_id: i64, limit: i64) -> StoreResult<Vec<Notification>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {NOTIFICATION_COLS} FROM notifications WHERE project_id = ?1 \
                         ORDER BY id DESC LIMIT ?2"
                    ),
                    &sql_params![project_id, limit],
                )?,
                notification_row,
            )
        })
        .await
    }

    async fn issue_window_counts(&self, issue_id: i64, since: f64) -> StoreResult<(i64, i64)> {
        self.read(move |c| {
            // Through the (issue_id, timestamp) index.
            let r = c.query_one(
                "SELECT count(*), count(DISTINCT user_key) FROM events \
                 WHERE issue_id = ?1 AND timestamp >= ?2",
                &sql_params![issue_id, since],
            )?;
            Ok((r.int(0)?, r.int(1)?))
        })
        .await
    }

    async fn create_release(
        &self,
        org_id: i64,
        new: &NewRelease,
        now: f64,
    ) -> StoreResult<(Release, bool)> {
        let new = new.clone();
        self.write(move |c| {
            let created = c.execute(
                "INSERT INTO releases (org_id, version, ref, url, date_created, date_started, \
                 date_released) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (org_id, version) DO NOTHING",
                &sql_params![
                    org_id,
                    &new.version,
                    new.git_ref.as_ref(),
                    new.url.as_ref(),
                    now,
                    new.date_started,
                    new.date_released
                ],
            )? > 0;
            for project_id in &new.project_ids {
                c.execute(
                    "INSERT INTO release_projects (release_id, project_id) \
                     SELECT r.id, p.id FROM releases r JOIN projects p ON p.org_id = r.org_id \
                     WHERE r.org_id = ?1 AND r.version = ?2 AND p.id = ?3 \
                     ON CONFLICT (release_id, project_id) DO NOTHING",
                    &sql_params![org_id, &new.version, *project_id],
                )?;
                finish_next_release(c, *project_id, &new.version, now)?;
            }
            Ok((load_release(c, org_id, &new.version)?, created))
        })
        .await
    }

    async fn release(&self, org_id: i64, version: &str) -> StoreResult<Release> {
        let version = version.to_string();
        self.read(move |c| load_release(c, org_id, &version)).await
    }

    async fn releases(
        &self,
        org_id: i64,
        project_ids: &[i64],
        query: Option<&str>,
        status: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> StoreResult<Vec<Release>> {
        if project_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = project_ids.to_vec();
        let pattern = query.map(|q| format!("%{}%", like_escape(q)));
        let status = status.map(str::to_string);
        self.read(move |c| {
            let mut params = sql_params![org_id, pattern, limit, offset, status].to_vec();
            params.extend(ids.iter().map(|&i| SqlValue::Int(i)));
            let rows = c.query(
                &format!(
                    "SELECT {RELEASE_COLS} FROM releases r WHERE r.org_id = ?1 \
                     AND (CAST(?2 AS TEXT) IS NULL OR r.version LIKE ?2 ESCAPE '\\') \
                     AND (CAST(?5 AS TEXT) IS NULL OR r.status = ?5) \
                     AND EXISTS (SELECT 1 FROM release_projects rp WHERE rp.release_id = r.id \
                         AND rp.project_id IN ({})) \
                     ORDER BY r.date_created DESC, r.id DESC LIMIT ?3 OFFSET ?4",
                    placeholders(6, ids.len())
                ),
                &params,
            )?;
            rows.iter().map(|r| release_full(c, r)).collect()
        })
        .await
    }

    async fn update_release(
        &self,
        org_id: i64,
        version: &str,
        change: &ReleaseChange,
    ) -> StoreResult<Release> {
        let (version, ch) = (version.to_string(), change.clone());
        self.write(move |c| {
            changed(c.execute(
                "UPDATE releases SET ref = coalesce(?3, ref), url = coalesce(?4, url), \
                 date_started = coalesce(?5, date_started), \
                 date_released = coalesce(?6, date_released), status = coalesce(?7, status) \
                 WHERE org_id = ?1 AND version = ?2",
                &sql_params![
                    org_id,
                    &version,
                    ch.git_ref,
                    ch.url,
                    ch.date_started,
                    ch.date_released,
                    ch.status
                ],
            )?)?;
            load_release(c, org_id, &version)
        })
        .await
    }

    async fn delete_release(&self, org_id: i64, version: &str) -> StoreResult<()> {
        let version = version.to_string();
        self.write(move |c| {
            changed(c.execute(
                "DELETE FROM releases WHERE org_id = ?1 AND version = ?2",
                &sql_params![org_id, &version],
            )?)
        })
        .await
    }

    async fn set_release_commits(&self, release_id: i64, commits: &[Commit]) -> StoreResult<()> {
        let commits = commits.to_vec();
        self.write(move |c| {
            c.execute(
                "DELETE FROM release_commits WHERE release_id = ?1",
                &sql_params![release_id],
            )?;
            for m in &commits {
                c.execute(
                    "INSERT INTO release_commits (release_id, commit_id, repository, \
                     author_name, author_email, message, timestamp) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (release_id, commit_id) DO NOTHING",
                    &sql_params![
                        release_id,
                        &m.id,
                        m.repository.as_ref(),
                        m.author_name.as_ref(),
                        m.author_email.as_ref(),
                        m.message.as_ref(),
                        m.timestamp
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn release_commits(&self, release_id: i64) -> StoreResult<Vec<Commit>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {COMMIT_COLS} FROM release_commits WHERE release_id = ?1 \
                         ORDER BY id"
                    ),
                    &sql_params![release_id],
                )?,
                commit_row,
            )
        })
        .await
    }

    async fn create_deploy(&self, release_id: i64, deploy: &Deploy) -> StoreResult<Deploy> {
        let d = deploy.clone();
        self.write(move |c| {
            let id = c
                .query_one(
                    "INSERT INTO deploys (release_id, environment, name, url, date_started, \
                     date_finished) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    &sql_params![
                        release_id,
                        &d.environment,
                        d.name.as_ref(),
                        d.url.as_ref(),
                        d.date_started,
                        d.date_finished
                    ],
                )?
                .int(0)?;
            deploy_row(&c.query_one(
                &format!(
                    "SELECT {DEPLOY_COLS} FROM deploys d JOIN releases r ON r.id = d.release_id \
                     WHERE d.id = ?1"
                ),
                &sql_params![id],
            )?)
        })
        .await
    }

    async fn deploys(&self, release_id: i64) -> StoreResult<Vec<Deploy>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {DEPLOY_COLS} FROM deploys d \
                         JOIN releases r ON r.id = d.release_id WHERE d.release_id = ?1 \
                         ORDER BY d.date_finished DESC, d.id DESC"
                    ),
                    &sql_params![release_id],
                )?,
                deploy_row,
            )
        })
        .await
    }

    async fn project_deploys(&self, project_id: i64, since: f64) -> StoreResult<Vec<Deploy>> {
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {DEPLOY_COLS} FROM release_projects rp \
                         JOIN deploys d ON d.release_id = rp.release_id \
                         JOIN releases r ON r.id = d.release_id \
                         WHERE rp.project_id = ?1 AND d.date_finished >= ?2 \
                         ORDER BY d.date_finished, d.id"
                    ),
                    &sql_params![project_id, since],
                )?,
                deploy_row,
            )
        })
        .await
    }

    async fn release_health(
        &self,
        project_ids: &[i64],
        version: &str,
        environment: Option<&str>,
        now: f64,
    ) -> StoreResult<Vec<ReleaseHealth>> {
        let (ids, version) = (project_ids.to_vec(), version.to_string());
        let env = environment.map(str::to_string);
        let day_ago = ((now - 86_400.0) as i64).div_euclid(3600) * 3600;
        self.read(move |c| {
            let mut out = Vec::new();
            for project_id in ids {
                let p = sql_params![project_id, &version, env.as_ref(), day_ago];
                let s = c.query_one(
                    "SELECT CAST(coalesce(sum(started), 0) AS BIGINT), \
                     CAST(coalesce(sum(crashed), 0) AS BIGINT), \
                     CAST(coalesce(sum(errored), 0) AS BIGINT), \
                     CAST(coalesce(sum(abnormal), 0) AS BIGINT), \
                     CAST(coalesce(sum(unhandled), 0) AS BIGINT), \
                     CAST(coalesce(sum(CASE WHEN hour >= ?4 THEN started ELSE 0 END), 0) \
                         AS BIGINT) \
                     FROM session_counts WHERE project_id = ?1 AND release = ?2 \
                     AND (CAST(?3 AS TEXT) IS NULL OR environment = ?3)",
                    &p,
                )?;
                if s.int(0)? == 0 {
                    continue;
                }
                let u = c.query_one(
                    "SELECT count(DISTINCT did), \
                     count(DISTINCT CASE WHEN crashed = 1 THEN did END) FROM session_users \
                     WHERE project_id = ?1 AND release = ?2 \
                     AND (CAST(?3 AS TEXT) IS NULL OR environment = ?3)",
                    &p[..3],
                )?;
                let all_24h = c
                    .query_one(
                        "SELECT CAST(coalesce(sum(started), 0) AS BIGINT) FROM session_counts \
                         WHERE project_id = ?1 AND hour >= ?3 \
                         AND (CAST(?2 AS TEXT) IS NULL OR environment = ?2)",
                        &sql_params![project_id, env.as_ref(), day_ago],
                    )?
                    .int(0)?;
                out.push(ReleaseHealth {
                    project_id,
                    sessions: s.int(0)?,
                    crashed: s.int(1)?,
                    errored: s.int(2)?,
                    abnormal: s.int(3)?,
                    unhandled: s.int(4)?,
                    users: u.int(0)?,
                    crashed_users: u.int(1)?,
                    sessions_24h: s.int(5)?,
                    project_sessions_24h: all_24h,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn issue_events_since(
        &self,
        issue_id: i64,
        environment: &str,
        since: f64,
    ) -> StoreResult<i64> {
        let env = environment.to_string();
        self.read(move |c| {
            c.query_one(
                "SELECT count(*) FROM events WHERE issue_id = ?1 AND environment = ?2 \
                 AND timestamp >= ?3",
                &sql_params![issue_id, &env, since],
            )?
            .int(0)
        })
        .await
    }
}

impl<B: Backend> SqlStore<B> {
    /// A page of events, newest first, matching `cond` (with `?1` bound to `id`).
    async fn events_where(
        &self,
        cond: &'static str,
        id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        let dicts = self.dicts.clone();
        self.read(move |c| {
            let rows = c.query(
                &format!(
                    "SELECT {EVENT_COLS} FROM events e WHERE {cond} \
                     ORDER BY e.timestamp DESC, e.id DESC LIMIT ?2 OFFSET ?3"
                ),
                &sql_params![id, limit, offset],
            )?;
            rows.iter().map(|r| event_row(c, &dicts, r)).collect()
        })
        .await
    }
}

/// Builds the issue list query for a filter: SQL and its positional arguments.
fn issue_query(f: &IssueFilter) -> (String, Vec<SqlValue>) {
    let mut args: Vec<SqlValue> = Vec::new();
    let arg = |v: SqlValue, args: &mut Vec<SqlValue>| {
        args.push(v);
        format!("?{}", args.len())
    };
    let list = |values: Vec<SqlValue>, args: &mut Vec<SqlValue>| {
        values
            .into_iter()
            .map(|v| arg(v, args))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut conds = Vec::new();
    if f.project_ids.is_empty() {
        conds.push("1 = 0".to_string());
    } else {
        let ids = f.project_ids.iter().map(|p| SqlValue::Int(*p)).collect();
        conds.push(format!("i.project_id IN ({})", list(ids, &mut args)));
    }
    if !f.statuses.is_empty() {
        let values = f.statuses.iter().map(SqlValue::from).collect();
        conds.push(format!("i.status IN ({})", list(values, &mut args)));
    }
    if !f.levels.is_empty() {
        let values = f.levels.iter().map(SqlValue::from).collect();
        conds.push(format!("i.level IN ({})", list(values, &mut args)));
    }
    for (key, value, negated) in &f.tags {
        let table = tag_table(key);
        let k = arg(key.into(), &mut args);
        let cond = if let Some(prefix) = value.strip_suffix('*') {
            // Case-sensitive on both engines (SQLite's LIKE ignores ASCII case).
            let n = arg((prefix.chars().count() as i64).into(), &mut args);
            let v = arg(prefix.into(), &mut args);
            format!("substr(t.value, 1, {n}) = {v}")
        } else {
            format!("t.value = {}", arg(value.into(), &mut args))
        };
        let not = if *negated { "NOT " } else { "" };
        conds.push(format!(
            "{not}EXISTS (SELECT 1 FROM {table} t WHERE t.issue_id = i.id AND t.key = {k} \
             AND {cond})"
        ));
    }
    for key in &f.has {
        let table = tag_table(key);
        let k = arg(key.into(), &mut args);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM {table} t WHERE t.issue_id = i.id AND t.key = {k})"
        ));
    }
    for word in &f.text {
        let w = arg(
            format!("%{}%", like_escape(&word.to_lowercase())).into(),
            &mut args,
        );
        conds.push(format!(
            "(lower(i.title) LIKE {w} ESCAPE '\\' OR lower(i.culprit) LIKE {w} ESCAPE '\\')"
        ));
    }
    if let Some(t) = f.first_seen_after {
        conds.push(format!("i.first_seen >= {}", arg(t.into(), &mut args)));
    }
    if let Some(t) = f.last_seen_after {
        conds.push(format!("i.last_seen >= {}", arg(t.into(), &mut args)));
    }
    if let Some(n) = f.times_seen_min {
        conds.push(format!("i.times_seen >= {}", arg(n.into(), &mut args)));
    }
    if let Some(user) = f.assignee {
        conds.push(format!("i.assignee_id = {}", arg(user.into(), &mut args)));
    }
    let order = match f.sort {
        IssueSort::LastSeen => "i.last_seen DESC",
        IssueSort::FirstSeen => "i.first_seen DESC",
        IssueSort::Events => "i.times_seen DESC",
        IssueSort::Users => "i.user_count DESC",
    };
    let limit = arg(f.limit.into(), &mut args);
    let offset = arg(f.offset.into(), &mut args);
    (
        format!(
            "SELECT {ISSUE_COLS} FROM {ISSUE_FROM} WHERE {} ORDER BY {order}, i.id DESC \
             LIMIT {limit} OFFSET {offset}",
            conds.join(" AND ")
        ),
        args,
    )
}

/// The table holding an issue's values of a tag key: the counted tags, or the values kept for
/// searching only.
fn tag_table(key: &str) -> &'static str {
    if SEARCH_ONLY.contains(&key) {
        "issue_search"
    } else {
        "issue_tags"
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A move of an issue from one status to another: by a user, or by digestion.
#[derive(Clone, Copy)]
enum Move<'a> {
    Resolve,
    ResolveInNextRelease,
    Ignore(&'a IgnoreRule),
    Unresolve,
    /// A resolved issue got an event.
    Regress,
    /// An ignored issue's ignore ran out.
    Unignore,
}

/// Moves one issue to another status and writes the activity row; every status change of an
/// issue goes through here. Leaving a status clears what belonged to it (the ignore
/// thresholds, the release resolved in). `false` when there is no such issue, or (for
/// digestion's moves) it is no longer in the status the move starts from.
fn move_issue(
    c: &mut dyn Conn,
    id: i64,
    mv: Move,
    actor: Option<i64>,
    at: f64,
) -> StoreResult<bool> {
    let forever = IgnoreRule::default();
    // (status, is_regression (None = kept), resolved in next release, ignore rule,
    //  required current status, activity kind)
    let (status, regression, next_release, rule, from, kind) = match mv {
        Move::Resolve => ("resolved", Some(false), false, None, None, "resolved"),
        Move::ResolveInNextRelease => (
            "resolved",
            Some(false),
            true,
            None,
            None,
            "resolved_in_next_release",
        ),
        Move::Ignore(rule) => ("ignored", Some(false), false, Some(rule), None, "ignored"),
        Move::Unresolve => ("unresolved", None, false, None, None, "unresolved"),
        Move::Regress => (
            "unresolved",
            Some(true),
            false,
            None,
            Some("resolved"),
            "regression",
        ),
        Move::Unignore => (
            "unresolved",
            None,
            false,
            None,
            Some("ignored"),
            "unignored",
        ),
    };
    let limits = rule.unwrap_or(&forever);
    let row = c.query_opt(
        "UPDATE issues SET status = ?2, is_regression = coalesce(?3, is_regression), \
         resolved_in_release = CASE WHEN ?4 = 1 THEN last_release ELSE NULL END, \
         ignore_until = ?5, ignore_until_events = times_seen + ?6, \
         ignore_until_users = user_count + ?7 \
         WHERE id = ?1 AND (CAST(?8 AS TEXT) IS NULL OR status = ?8) \
         RETURNING resolved_in_release",
        &sql_params![
            id,
            status,
            regression,
            next_release,
            limits.until,
            limits.more_events,
            limits.more_users,
            from,
        ],
    )?;
    let Some(row) = row else {
        return Ok(false);
    };
    let data = match mv {
        Move::ResolveInNextRelease => json!({ "release": row.opt_text(0)? }),
        Move::Ignore(r) => json!({
            "until": r.until,
            "events": r.more_events,
            "users": r.more_users,
        }),
        _ => Value::Null,
    };
    add_activity(c, id, actor, kind, &data, at)?;
    Ok(true)
}

/// Assigns an issue to `assignee` (its id and e-mail; `None` unassigns) and writes the
/// activity row. `false` when there is no such issue.
fn assign_issue(
    c: &mut dyn Conn,
    id: i64,
    assignee: Option<&(i64, String)>,
    actor: Option<i64>,
    at: f64,
) -> StoreResult<bool> {
    let user_id = assignee.map(|a| a.0);
    if c.execute(
        "UPDATE issues SET assignee_id = ?2 WHERE id = ?1",
        &sql_params![id, user_id],
    )? == 0
    {
        return Ok(false);
    }
    let data = json!({ "user_id": user_id, "email": assignee.map(|a| &a.1) });
    add_activity(c, id, actor, "assigned", &data, at)?;
    Ok(true)
}

/// One entry of an issue's history.
fn add_activity(
    c: &mut dyn Conn,
    issue_id: i64,
    user_id: Option<i64>,
    kind: &str,
    data: &Value,
    at: f64,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO activity (issue_id, user_id, kind, data, date_created) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        &sql_params![issue_id, user_id, kind, data.to_string(), at],
    )?;
    Ok(())
}

/// What digestion knows of an issue's status when it first meets its fingerprint in a batch.
enum Known {
    /// Unresolved or ignored (an ignore is checked after counting).
    Open,
    /// Resolved, with the release it was resolved in, if any: events of that release leave it
    /// resolved, any other event reopens it.
    Resolved(Option<String>),
}

/// Per-issue aggregate of one batch.
struct IssueDelta {
    times_seen: i64,
    new_users: i64,
    first_seen: f64,
    last_seen: f64,
    level: String,
    last_release: Option<String>,
    first_release: Option<String>,
    /// The latest time an event of the issue was received (ends an ignore `until`).
    last_received: f64,
    /// When an event that reopens the resolved issue was received.
    regressed_at: Option<f64>,
}

/// Stores a digest batch inside the caller's transaction.
///
/// Counters are aggregated in memory first and written once per row, in key order: a batch of
/// a thousand events touches each counter row once, and two nodes writing the same rows take
/// their locks in the same order (no deadlocks on PostgreSQL).
/// Adds a firing's notifications to the outbox, pending and due at `now`.
fn insert_notifications(c: &mut dyn Conn, f: &Firing, now: f64) -> StoreResult<()> {
    for n in &f.notifications {
        c.execute(
            "INSERT INTO notifications (rule_id, project_id, issue_id, action, \
             payload, status, attempts, next_attempt, date_created) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
            &sql_params![
                f.rule_id,
                f.project_id,
                f.issue_id,
                n.action.to_string(),
                n.payload.to_string(),
                now
            ],
        )?;
    }
    Ok(())
}

/// An issue's tag value: (issue, key, value).
type TagRow<'a> = (i64, &'a str, &'a str);
/// What a batch adds to a tag value: (events, first seen, last seen).
type TagDelta = (i64, f64, f64);

fn save_batch(c: &mut dyn Conn, batch: &DigestBatch) -> StoreResult<DigestResult> {
    let mut result = DigestResult::default();
    let mut issue_of_hash: HashMap<(i64, &str), (i64, Known)> = HashMap::new();
    let mut seen_ids: BTreeSet<(i64, &str)> = BTreeSet::new();
    let mut deltas: BTreeMap<i64, IssueDelta> = BTreeMap::new();
    let mut hourly: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut tags: BTreeMap<TagRow, TagDelta> = BTreeMap::new();
    let mut users: BTreeSet<(i64, &str)> = BTreeSet::new();
    let mut search: BTreeSet<(i64, &str, &str)> = BTreeSet::new();
    // Per (project, release): what this batch adds to the release (one upsert each).
    let mut releases: BTreeMap<(i64, &str), ReleaseDelta> = BTreeMap::new();

    // Every fingerprint of the batch is locked first, in one order for all writers: two nodes
    // never wait on each other in a circle, and a node that sees an event another node is
    // storing waits for that node's commit, then sees the event (and skips it as a duplicate).
    let fingerprints: BTreeSet<(i64, &str)> = batch
        .events
        .iter()
        .map(|ev| (ev.project_id, ev.hash.as_str()))
        .collect();
    for (project_id, hash) in fingerprints {
        c.lock_fingerprint(project_id, hash)?;
    }

    let mut latest: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    // Events to store, with their issue: duplicates are left out, issues found or created.
    let mut pending: Vec<(usize, i64)> = Vec::with_capacity(batch.events.len());
    for (index, ev) in batch.events.iter().enumerate() {
        if ev.replaces && !seen_ids.contains(&(ev.project_id, ev.event_id.as_str())) {
            // Reprocessing: the event stored with this id goes, its replacement comes in.
            c.execute(
                "DELETE FROM events WHERE project_id = ?1 AND event_id = ?2",
                &sql_params![ev.project_id, &ev.event_id],
            )?;
        }
        // A stored duplicate must not create an issue: look for it first, unless its issue is
        // already known in this batch (then the insert below finds it).
        if !seen_ids.insert((ev.project_id, ev.event_id.as_str()))
            || (!issue_of_hash.contains_key(&(ev.project_id, ev.hash.as_str()))
                && c.query_opt(
                    "SELECT 1 FROM events WHERE project_id = ?1 AND event_id = ?2",
                    &sql_params![ev.project_id, &ev.event_id],
                )?
                .is_some())
        {
            result.duplicates += 1;
            continue;
        }
        let (issue_id, _) = match issue_of_hash.entry((ev.project_id, ev.hash.as_str())) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let before = result.new_issues.len();
                let found = find_or_create_issue(c, ev, &mut result)?;
                if result.new_issues.len() > before
                    && let Some(release) = ev.release.as_deref().filter(|r| !r.is_empty())
                {
                    releases
                        .entry((ev.project_id, release))
                        .or_default()
                        .new_groups += 1;
                }
                e.insert(found)
            }
        };
        pending.push((index, *issue_id));
    }
    // The batch's new events in a few multi-row statements; the ones another node stored
    // meanwhile (or a duplicate the look-up above could not see) do not come back.
    let event_rows: Vec<SqlValue> = pending
        .iter()
        .flat_map(|&(index, issue_id)| {
            let ev = &batch.events[index];
            sql_params![
                ev.project_id,
                &ev.event_id,
                issue_id,
                ev.timestamp,
                ev.received,
                ev.release.as_ref(),
                ev.environment.as_ref(),
                ev.trace_id.as_ref(),
                ev.size,
                "",
                ev.payload.clone(),
                ev.user_key.as_ref(),
                &ev.hash,
            ]
        })
        .collect();
    let inserted: HashSet<(i64, String)> = insert_rows(
        c,
        "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, release, \
         environment, trace_id, size, grouping, payload, user_key, hash)",
        (13, EVENT_ROWS),
        &event_rows,
        "ON CONFLICT (project_id, event_id) DO NOTHING RETURNING project_id, event_id",
    )?
    .into_iter()
    .map(|r| Ok((r.int(0)?, r.text(1)?)))
    .collect::<StoreResult<_>>()?;
    drop(event_rows);

    for &(index, issue_id) in &pending {
        let ev = &batch.events[index];
        if !inserted.contains(&(ev.project_id, ev.event_id.to_owned())) {
            result.duplicates += 1;
            continue;
        }
        let known = issue_of_hash
            .get(&(ev.project_id, ev.hash.as_str()))
            .map(|(_, known)| known);
        result.stored += 1;
        if let Some(release) = ev.release.as_deref().filter(|r| !r.is_empty()) {
            let r = releases.entry((ev.project_id, release)).or_default();
            r.events += 1;
            r.first_event = Some(r.first_event.map_or(ev.timestamp, |t| t.min(ev.timestamp)));
            r.last_event = Some(r.last_event.map_or(ev.timestamp, |t| t.max(ev.timestamp)));
            r.first_received = Some(r.first_received.map_or(ev.received, |t| t.min(ev.received)));
        }
        let l = latest.entry(issue_id).or_insert((ev.timestamp, index));
        if ev.timestamp >= l.0 {
            *l = (ev.timestamp, index);
        }

        let d = deltas.entry(issue_id).or_insert_with(|| IssueDelta {
            times_seen: 0,
            new_users: 0,
            first_seen: f64::MAX,
            last_seen: f64::MIN,
            level: ev.level.clone(),
            last_release: None,
            first_release: None,
            last_received: f64::MIN,
            regressed_at: None,
        });
        d.times_seen += 1;
        d.last_received = d.last_received.max(ev.received);
        if let Some(Known::Resolved(release)) = known
            && d.regressed_at.is_none()
            && (release.is_none() || *release != ev.release)
        {
            d.regressed_at = Some(ev.received);
        }
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
            users.insert((issue_id, user));
        }
        let hour = (ev.timestamp as i64).div_euclid(3600) * 3600;
        *hourly.entry((issue_id, hour)).or_default() += 1;
        for (k, v) in &ev.tags {
            let e = tags
                .entry((issue_id, k, v))
                .or_insert((0, ev.timestamp, ev.timestamp));
            e.0 += 1;
            e.1 = e.1.min(ev.timestamp);
            e.2 = e.2.max(ev.timestamp);
        }
        search.extend(
            ev.search
                .iter()
                .map(|(k, v)| (issue_id, k.as_str(), v.as_str())),
        );
    }

    let user_rows: Vec<SqlValue> = users
        .iter()
        .flat_map(|&(issue_id, user)| sql_params![issue_id, user])
        .collect();
    // Only the rows inserted come back: users this issue had not seen.
    for r in insert_rows(
        c,
        "INSERT INTO issue_users (issue_id, user_key)",
        (2, SMALL_ROWS),
        &user_rows,
        "ON CONFLICT DO NOTHING RETURNING issue_id",
    )? {
        if let Some(d) = deltas.get_mut(&r.int(0)?) {
            d.new_users += 1;
        }
    }
    // Status changes happen here, in id order with the counters, and only where one happens.
    for (issue_id, d) in &deltas {
        // Whether an ignored issue comes back: its ignore ran out with these events.
        let ignore_ended = c
            .query_one(
                "UPDATE issues SET times_seen = times_seen + ?2, user_count = user_count + ?3, \
                 first_seen = CASE WHEN ?4 < first_seen THEN ?4 ELSE first_seen END, \
                 level = CASE WHEN ?5 >= last_seen THEN ?6 ELSE level END, \
                 last_release = CASE WHEN ?5 >= last_seen AND CAST(?7 AS TEXT) IS NOT NULL \
                     THEN ?7 ELSE last_release END, \
                 first_release = coalesce(first_release, ?8), \
                 last_seen = CASE WHEN ?5 > last_seen THEN ?5 ELSE last_seen END WHERE id = ?1 \
                 RETURNING CASE WHEN status = 'ignored' AND (ignore_until < ?9 \
                     OR times_seen >= ignore_until_events OR user_count >= ignore_until_users) \
                 THEN 1 ELSE 0 END",
                &sql_params![
                    *issue_id,
                    d.times_seen,
                    d.new_users,
                    d.first_seen,
                    d.last_seen,
                    &d.level,
                    d.last_release.as_ref(),
                    d.first_release.as_ref(),
                    d.last_received,
                ],
            )?
            .bool(0)?;
        if ignore_ended && move_issue(c, *issue_id, Move::Unignore, None, d.last_received)? {
            result.unignored.push(*issue_id);
        }
        if let Some(at) = d.regressed_at
            && move_issue(c, *issue_id, Move::Regress, None, at)?
        {
            result.regressions.push(*issue_id);
        }
    }
    let hourly_rows: Vec<SqlValue> = hourly
        .into_iter()
        .flat_map(|((issue_id, hour), n)| sql_params![issue_id, hour, n])
        .collect();
    insert_rows(
        c,
        "INSERT INTO issue_hourly (issue_id, hour, count)",
        (3, SMALL_ROWS),
        &hourly_rows,
        "ON CONFLICT (issue_id, hour) DO UPDATE SET count = issue_hourly.count + excluded.count",
    )?;
    // Per issue and key: events that had the key, and values seen for the first time (a row
    // whose count after the upsert is what this batch added is new).
    let tags: Vec<(TagRow, TagDelta)> = tags.into_iter().collect();
    let tag_rows: Vec<SqlValue> = tags
        .iter()
        .flat_map(|&((issue_id, k, v), (n, first, last))| {
            sql_params![issue_id, k, v, n, first, last]
        })
        .collect();
    let mut key_totals: BTreeMap<(i64, &str), (i64, i64)> = BTreeMap::new();
    for &((issue_id, k, _), (n, _, _)) in &tags {
        key_totals.entry((issue_id, k)).or_default().0 += n;
    }
    for r in insert_rows(
        c,
        "INSERT INTO issue_tags (issue_id, key, value, count, first_seen, last_seen)",
        (6, SMALL_ROWS),
        &tag_rows,
        "ON CONFLICT (issue_id, key, value) DO UPDATE SET \
         count = issue_tags.count + excluded.count, \
         first_seen = CASE WHEN excluded.first_seen < issue_tags.first_seen \
             THEN excluded.first_seen ELSE issue_tags.first_seen END, \
         last_seen = CASE WHEN excluded.last_seen > issue_tags.last_seen \
             THEN excluded.last_seen ELSE issue_tags.last_seen END \
         RETURNING issue_id, key, value, count",
    )? {
        let (issue_id, key, value) = (r.int(0)?, r.text(1)?, r.text(2)?);
        let found = tags.binary_search_by(|((i, k, v), _)| {
            (*i, *k, *v).cmp(&(issue_id, key.as_str(), value.as_str()))
        });
        if let Ok(at) = found
            && let ((i, k, _), (n, _, _)) = tags[at]
            && r.int(3)? == n
            && let Some(t) = key_totals.get_mut(&(i, k))
        {
            t.1 += 1;
        }
    }
    let key_rows: Vec<SqlValue> = key_totals
        .into_iter()
        .flat_map(|((issue_id, k), (total, new_values))| {
            sql_params![issue_id, k, total, new_values]
        })
        .collect();
    insert_rows(
        c,
        "INSERT INTO issue_tag_keys (issue_id, key, total, values_seen)",
        (4, SMALL_ROWS),
        &key_rows,
        "ON CONFLICT (issue_id, key) DO UPDATE SET \
         total = issue_tag_keys.total + excluded.total, \
         values_seen = issue_tag_keys.values_seen + excluded.values_seen",
    )?;
    // Values to search by: written once, then only looked up (no counter to update).
    let search_rows: Vec<SqlValue> = search
        .into_iter()
        .flat_map(|(issue_id, k, v)| sql_params![issue_id, k, v])
        .collect();
    insert_rows(
        c,
        "INSERT INTO issue_search (issue_id, key, value)",
        (3, SMALL_ROWS),
        &search_rows,
        "ON CONFLICT DO NOTHING",
    )?;
    for a in &batch.attachments {
        c.execute(
            "INSERT INTO attachments (project_id, event_id, filename, content_type, \
             attachment_type, size, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &sql_params![
                a.project_id,
                &a.event_id,
                &a.filename,
                a.content_type.as_ref(),
                &a.attachment_type,
                a.data.len() as i64,
                a.data.clone()
            ],
        )?;
    }
    for r in &batch.user_reports {
        c.execute(
            "INSERT INTO user_reports (project_id, event_id, name, email, comments, \
             date_created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &sql_params![
                r.project_id,
                r.event_id.as_ref(),
                r.name.as_ref(),
                r.email.as_ref(),
                &r.comments,
                r.received
            ],
        )?;
    }
    for s in &batch.sessions {
        c.execute(
            "INSERT INTO session_counts (project_id, release, environment, hour, started, \
             exited, errored, crashed, abnormal, unhandled) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (project_id, release, environment, hour) DO UPDATE SET \
             started = session_counts.started + excluded.started, \
             exited = session_counts.exited + excluded.exited, \
             errored = session_counts.errored + excluded.errored, \
             crashed = session_counts.crashed + excluded.crashed, \
             abnormal = session_counts.abnormal + excluded.abnormal, \
             unhandled = session_counts.unhandled + excluded.unhandled",
            &sql_params![
                s.project_id,
                &s.release,
                &s.environment,
                s.hour,
                s.started,
                s.exited,
                s.errored,
                s.crashed,
                s.abnormal,
                s.unhandled
            ],
        )?;
    }
    for u in &batch.session_users {
        c.execute(
            "INSERT INTO session_users (project_id, release, environment, did, crashed) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project_id, release, environment, did) \
             DO UPDATE SET crashed = CASE WHEN excluded.crashed > session_users.crashed \
                 THEN excluded.crashed ELSE session_users.crashed END",
            &sql_params![u.project_id, &u.release, &u.environment, &u.did, u.crashed],
        )?;
    }
    for s in &batch.sessions {
        if !s.release.is_empty() {
            releases
                .entry((s.project_id, s.release.as_str()))
                .or_default();
        }
    }
    let at = now();
    // Projects with an issue waiting for their next release (usually none: one look each).
    let mut waiting: BTreeMap<i64, bool> = BTreeMap::new();
    for ((project_id, release), d) in &releases {
        add_release_delta(c, *project_id, release, d, d.first_received.unwrap_or(at))?;
        let waits = match waiting.get(project_id) {
            Some(w) => *w,
            None => {
                let w = c
                    .query_opt(
                        "SELECT 1 FROM issues WHERE project_id = ?1 \
                         AND resolved_in_release IS NOT NULL LIMIT 1",
                        &sql_params![*project_id],
                    )?
                    .is_some();
                waiting.insert(*project_id, w);
                w
            }
        };
        if waits {
            finish_next_release(c, *project_id, release, at)?;
        }
    }
    for o in &batch.outcomes {
        c.execute(
            "INSERT INTO outcomes (project_id, hour, source, category, reason, quantity) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (project_id, hour, source, category, reason) \
             DO UPDATE SET quantity = outcomes.quantity + excluded.quantity",
            &sql_params![
                o.project_id,
                o.hour,
                o.source,
                &o.category,
                &o.reason,
                o.quantity
            ],
        )?;
    }
    c.execute(
        "INSERT INTO spool_cursor (node_id, segment, \"offset\") VALUES (?1, ?2, ?3) \
         ON CONFLICT (node_id) DO UPDATE SET segment = excluded.segment, \
         \"offset\" = excluded.\"offset\"",
        &sql_params![
            &batch.node_id,
            batch.position.segment as i64,
            batch.position.offset as i64
        ],
    )?;
    result.touched = latest.into_iter().map(|(id, (_, i))| (id, i)).collect();
    Ok(result)
}

/// Rows per multi-row statement: a few fixed shapes, so that each is prepared once per
/// connection and reused.
const ROW_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];
/// At most this many rows per statement for rows of small values (counters, tag values).
const SMALL_ROWS: usize = 256;
/// At most this many events (each with its compressed payload, ~8 KB) per statement: the
/// values of a statement are copied into the database client's buffers, which keep their
/// largest size, so a statement's size is memory every connection may hold on to.
const EVENT_ROWS: usize = 16;

/// `head VALUES (…), (…) tail` for every row of `values` (rows of `width` parameters, one
/// after the other), in as few statements as the fixed shapes up to `max_rows` allow: one
/// round trip for hundreds of rows. Returns what `tail`'s `RETURNING` gives, if it has one.
fn insert_rows(
    c: &mut dyn Conn,
    head: &str,
    (width, max_rows): (usize, usize),
    values: &[SqlValue],
    tail: &str,
) -> StoreResult<Vec<Row>> {
    let mut out = Vec::new();
    let mut rest = values;
    while rest.len() >= width && width > 0 {
        let rows = rest.len() / width;
        let n = ROW_CHUNKS
            .into_iter()
            .find(|&c| c <= rows && c <= max_rows)
            .unwrap_or(1);
        let (chunk, next) = rest.split_at(n * width);
        let mut sql = format!("{head} VALUES ");
        for row in 0..n {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for col in 0..width {
                if col > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", row * width + col + 1));
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        out.extend(c.query(&sql, chunk)?);
        rest = next;
    }
    Ok(out)
}

/// The issue of an event's fingerprint and what is known of its status, created when new
/// (with its `first_seen` activity).
///
/// The caller holds the fingerprint's lock, which makes the look-up and the creation one step
/// for every writer of the database: the first events of a new issue arriving at several nodes
/// make one issue.
fn find_or_create_issue(
    c: &mut dyn Conn,
    ev: &NewEvent,
    result: &mut DigestResult,
) -> StoreResult<(i64, Known)> {
    let found = c.query_opt(
        "SELECT g.issue_id, i.status, i.resolved_in_release, g.grouping IS NULL \
         FROM group_hashes g JOIN issues i ON i.id = g.issue_id \
         WHERE g.project_id = ?1 AND g.hash = ?2",
        &sql_params![ev.project_id, &ev.hash],
    )?;
    if let Some(row) = found {
        if row.bool(3)? {
            // A fingerprint from before its grouping was kept with it.
            c.execute(
                "UPDATE group_hashes SET grouping = ?3 WHERE project_id = ?1 AND hash = ?2",
                &sql_params![ev.project_id, &ev.hash, ev.grouping.to_string()],
            )?;
        }
        let known = if row.text(1)? == "resolved" {
            Known::Resolved(row.opt_text(2)?)
        } else {
            Known::Open
        };
        return Ok((row.int(0)?, known));
    }
    let short = c
        .query_one(
            "UPDATE projects SET next_short_id = next_short_id + 1 WHERE id = ?1 \
             RETURNING next_short_id - 1",
            &sql_params![ev.project_id],
        )?
        .int(0)?;
    let id = c
        .query_one(
            "INSERT INTO issues (project_id, short_id, title, culprit, level, issue_type, \
             metadata, platform, logger, first_seen, last_seen, first_release, last_release) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?11) RETURNING id",
            &sql_params![
                ev.project_id,
                short,
                &ev.title,
                &ev.culprit,
                &ev.level,
                &ev.event_type,
                ev.metadata.to_string(),
                &ev.platform,
                ev.logger.as_ref(),
                ev.timestamp,
                ev.release.as_ref(),
            ],
        )?
        .int(0)?;
    c.execute(
        "INSERT INTO group_hashes (project_id, hash, issue_id, grouping) \
         VALUES (?1, ?2, ?3, ?4)",
        &sql_params![ev.project_id, &ev.hash, id, ev.grouping.to_string()],
    )?;
    add_activity(c, id, None, "first_seen", &Value::Null, ev.received)?;
    result.new_issues.push(id);
    Ok((id, Known::Open))
}

const ARTIFACT_COLS: &str = "f.id, f.bundle_id, f.release, f.dist, f.url, f.file_type, \
                             f.debug_id, f.sourcemap, f.headers, f.size, f.sha1, f.date_created";
fn artifact_row(r: &Row) -> StoreResult<ArtifactFile> {
    Ok(ArtifactFile {
        id: r.int(0)?,
        bundle_id: r.int(1)?,
        release: r.text(2)?,
        dist: r.text(3)?,
        url: r.text(4)?,
        file_type: r.text(5)?,
        debug_id: r.opt_text(6)?,
        sourcemap: r.opt_text(7)?,
        headers: serde_json::from_str(&r.text(8)?).unwrap_or(Value::Null),
        size: r.int(9)?,
        sha1: r.text(10)?,
        date_created: r.real(11)?,
    })
}

/// Files that serve project `?1`: of its organization, from a bundle for that project or for
/// every project of the organization.
const SERVES_PROJECT: &str = "JOIN projects p ON p.id = ?1 AND p.org_id = f.org_id \
     WHERE (EXISTS (SELECT 1 FROM artifact_bundle_projects bp \
                    WHERE bp.bundle_id = f.bundle_id AND bp.project_id = ?1) \
            OR NOT EXISTS (SELECT 1 FROM artifact_bundle_projects bp \
                           WHERE bp.bundle_id = f.bundle_id))";

#[async_trait]
impl<B: Backend> ArtifactStore for SqlStore<B> {
    async fn put_chunks(
        &self,
        org_id: i64,
        chunks: Vec<(String, Vec<u8>)>,
        expires: f64,
        now: f64,
    ) -> StoreResult<()> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM artifact_chunks WHERE expires < ?1",
                &sql_params![now],
            )?;
            for (sha1, data) in chunks {
                c.execute(
                    "INSERT INTO artifact_chunks (org_id, sha1, data, expires) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (org_id, sha1) \
                     DO UPDATE SET expires = excluded.expires",
                    &sql_params![org_id, sha1, data, expires],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn missing_chunks(
        &self,
        org_id: i64,
        sha1s: &[String],
        now: f64,
    ) -> StoreResult<Vec<String>> {
        let wanted = sha1s.to_vec();
        self.read(move |c| {
            let mut present = BTreeSet::new();
            for part in wanted.chunks(500) {
                let mut params = sql_params![org_id, now].to_vec();
                params.extend(part.iter().map(SqlValue::from));
                let rows = c.query(
                    &format!(
                        "SELECT sha1 FROM artifact_chunks WHERE org_id = ?1 AND expires >= ?2 \
                         AND sha1 IN ({})",
                        placeholders(3, part.len())
                    ),
                    &params,
                )?;
                for r in rows {
                    present.insert(r.text(0)?);
                }
            }
            let mut seen = BTreeSet::new();
            Ok(wanted
                .into_iter()
                .filter(|s| !present.contains(s) && seen.insert(s.clone()))
                .collect())
        })
        .await
    }

    async fn chunks(&self, org_id: i64, sha1s: &[String]) -> StoreResult<Vec<Vec<u8>>> {
        let wanted = sha1s.to_vec();
        self.read(move |c| {
            wanted
                .iter()
                .map(|sha1| {
                    c.query_one(
                        "SELECT data FROM artifact_chunks WHERE org_id = ?1 AND sha1 = ?2",
                        &sql_params![org_id, sha1],
                    )?
                    .blob(0)
                })
                .collect()
        })
        .await
    }

    async fn bundle_by_checksum(
        &self,
        org_id: i64,
        checksum: &str,
        release: &str,
    ) -> StoreResult<Option<i64>> {
        let params = sql_params![org_id, checksum, release];
        self.read(move |c| {
            c.query_opt(
                "SELECT id FROM artifact_bundles WHERE org_id = ?1 AND checksum = ?2 \
                 AND release = ?3 ORDER BY id DESC LIMIT 1",
                &params,
            )?
            .map(|r| r.int(0))
            .transpose()
        })
        .await
    }

    async fn add_bundle_projects(&self, bundle_id: i64, project_ids: &[i64]) -> StoreResult<()> {
        let ids = project_ids.to_vec();
        self.write(move |c| {
            let serves_all = c
                .query_opt(
                    "SELECT 1 FROM artifact_bundle_projects WHERE bundle_id = ?1",
                    &sql_params![bundle_id],
                )?
                .is_none();
            if serves_all {
                return Ok(());
            }
            for project_id in ids {
                c.execute(
                    "INSERT INTO artifact_bundle_projects (bundle_id, project_id) \
                     VALUES (?1, ?2) ON CONFLICT (bundle_id, project_id) DO NOTHING",
                    &sql_params![bundle_id, project_id],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn save_bundle(&self, bundle: NewBundle) -> StoreResult<i64> {
        use sha1::{Digest, Sha1};
        self.write(move |c| {
            let id = c
                .query_one(
                    "INSERT INTO artifact_bundles (org_id, checksum, kind, release, dist, \
                     date_created) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    &sql_params![
                        bundle.org_id,
                        &bundle.checksum,
                        bundle.kind.as_str(),
                        &bundle.release,
                        &bundle.dist,
                        bundle.now
                    ],
                )?
                .int(0)?;
            for project_id in &bundle.project_ids {
                c.execute(
                    "INSERT INTO artifact_bundle_projects (bundle_id, project_id) \
                     VALUES (?1, ?2) ON CONFLICT (bundle_id, project_id) DO NOTHING",
                    &sql_params![id, *project_id],
                )?;
            }
            for f in bundle.files {
                let sha1 = hex::encode(Sha1::digest(&f.data));
                let size = f.data.len() as i64;
                c.execute(
                    "INSERT INTO artifact_files (bundle_id, org_id, release, dist, url, \
                     file_type, debug_id, sourcemap, headers, size, sha1, data, date_created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    &sql_params![
                        id,
                        bundle.org_id,
                        &bundle.release,
                        &bundle.dist,
                        f.url,
                        f.file_type,
                        f.debug_id,
                        f.sourcemap,
                        f.headers.to_string(),
                        size,
                        sha1,
                        f.data,
                        bundle.now
                    ],
                )?;
            }
            Ok(id)
        })
        .await
    }

    async fn release_files(
        &self,
        org_id: i64,
        project_id: Option<i64>,
        release: &str,
    ) -> StoreResult<Vec<ArtifactFile>> {
        let release = release.to_string();
        self.read(move |c| {
            let rows = match project_id {
                Some(project_id) => c.query(
                    &format!(
                        "SELECT {ARTIFACT_COLS} FROM artifact_files f {SERVES_PROJECT} \
                         AND f.org_id = ?2 AND f.release = ?3 ORDER BY f.id"
                    ),
                    &sql_params![project_id, org_id, release],
                )?,
                None => c.query(
                    &format!(
                        "SELECT {ARTIFACT_COLS} FROM artifact_files f \
                         WHERE f.org_id = ?1 AND f.release = ?2 ORDER BY f.id"
                    ),
                    &sql_params![org_id, release],
                )?,
            };
            all(rows, artifact_row)
        })
        .await
    }

    async fn delete_release_file(&self, org_id: i64, release: &str, id: i64) -> StoreResult<()> {
        let params = sql_params![org_id, release, id];
        self.write(move |c| {
            changed(c.execute(
                "DELETE FROM artifact_files WHERE org_id = ?1 AND release = ?2 AND id = ?3",
                &params,
            )?)
        })
        .await
    }

    async fn artifact_by_debug_id(
        &self,
        project_id: i64,
        debug_id: &str,
        file_types: &[&str],
    ) -> StoreResult<Option<ArtifactFile>> {
        let mut params = sql_params![project_id, debug_id].to_vec();
        params.extend(file_types.iter().map(|t| SqlValue::from(*t)));
        let n = file_types.len();
        self.read(move |c| {
            c.query_opt(
                &format!(
                    "SELECT {ARTIFACT_COLS} FROM artifact_files f {SERVES_PROJECT} \
                     AND f.debug_id = ?2 AND f.file_type IN ({}) ORDER BY f.id DESC LIMIT 1",
                    placeholders(3, n)
                ),
                &params,
            )?
            .map(|r| artifact_row(&r))
            .transpose()
        })
        .await
    }

    async fn artifacts_by_url(
        &self,
        project_id: i64,
        release: &str,
        dist: &str,
        urls: &[String],
    ) -> StoreResult<Vec<ArtifactFile>> {
        if urls.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = sql_params![project_id, release, dist].to_vec();
        params.extend(urls.iter().map(SqlValue::from));
        let n = urls.len();
        self.read(move |c| {
            all(
                c.query(
                    &format!(
                        "SELECT {ARTIFACT_COLS} FROM artifact_files f {SERVES_PROJECT} \
                         AND f.release = ?2 AND f.dist = ?3 AND f.url IN ({}) \
                         ORDER BY f.id DESC",
                        placeholders(4, n)
                    ),
                    &params,
                )?,
                artifact_row,
            )
        })
        .await
    }

    async fn artifact_data(&self, id: i64) -> StoreResult<Vec<u8>> {
        self.read(move |c| {
            c.query_one(
                "SELECT data FROM artifact_files WHERE id = ?1",
                &sql_params![id],
            )?
            .blob(0)
        })
        .await
    }
}

const RELEASE_COLS: &str = "r.id, r.org_id, r.version, r.ref, r.url, r.date_created, \
    r.date_started, r.date_released, r.status";

const COMMIT_COLS: &str = "commit_id, repository, author_name, author_email, message, timestamp";
fn commit_row(r: &Row) -> StoreResult<Commit> {
    Ok(Commit {
        id: r.text(0)?,
        repository: r.opt_text(1)?,
        author_name: r.opt_text(2)?,
        author_email: r.opt_text(3)?,
        message: r.opt_text(4)?,
        timestamp: r.opt_real(5)?,
    })
}

const DEPLOY_COLS: &str =
    "d.id, r.version, d.environment, d.name, d.url, d.date_started, d.date_finished";
fn deploy_row(r: &Row) -> StoreResult<Deploy> {
    Ok(Deploy {
        id: r.int(0)?,
        version: r.text(1)?,
        environment: r.text(2)?,
        name: r.opt_text(3)?,
        url: r.opt_text(4)?,
        date_started: r.opt_real(5)?,
        date_finished: r.real(6)?,
    })
}

/// A release row with its projects, commit and deploy summaries.
fn release_full(c: &mut dyn Conn, r: &Row) -> StoreResult<Release> {
    let id = r.int(0)?;
    let projects = all(
        c.query(
            "SELECT p.id, p.slug, p.name, p.platform, rp.first_event, rp.last_event, \
             rp.event_count, rp.new_groups FROM release_projects rp \
             JOIN projects p ON p.id = rp.project_id WHERE rp.release_id = ?1 ORDER BY p.slug",
            &sql_params![id],
        )?,
        |r| {
            Ok(ReleaseProject {
                project_id: r.int(0)?,
                slug: r.text(1)?,
                name: r.text(2)?,
                platform: r.opt_text(3)?,
                first_event: r.opt_real(4)?,
                last_event: r.opt_real(5)?,
                event_count: r.int(6)?,
                new_groups: r.int(7)?,
            })
        },
    )?;
    let commit_count = c
        .query_one(
            "SELECT count(*) FROM release_commits WHERE release_id = ?1",
            &sql_params![id],
        )?
        .int(0)?;
    let last_commit = c
        .query_opt(
            &format!(
                "SELECT {COMMIT_COLS} FROM release_commits WHERE release_id = ?1 \
                 ORDER BY id LIMIT 1"
            ),
            &sql_params![id],
        )?
        .map(|r| commit_row(&r))
        .transpose()?;
    let authors = c
        .query(
            "SELECT author_name, author_email FROM release_commits WHERE release_id = ?1 \
             GROUP BY author_name, author_email ORDER BY min(id)",
            &sql_params![id],
        )?
        .iter()
        .map(|r| Ok((r.opt_text(0)?, r.opt_text(1)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    let deploy_count = c
        .query_one(
            "SELECT count(*) FROM deploys WHERE release_id = ?1",
            &sql_params![id],
        )?
        .int(0)?;
    let last_deploy = c
        .query_opt(
            &format!(
                "SELECT {DEPLOY_COLS} FROM deploys d JOIN releases r ON r.id = d.release_id \
                 WHERE d.release_id = ?1 ORDER BY d.date_finished DESC, d.id DESC LIMIT 1"
            ),
            &sql_params![id],
        )?
        .map(|r| deploy_row(&r))
        .transpose()?;
    Ok(Release {
        id,
        org_id: r.int(1)?,
        version: r.text(2)?,
        git_ref: r.opt_text(3)?,
        url: r.opt_text(4)?,
        date_created: r.real(5)?,
        date_started: r.opt_real(6)?,
        date_released: r.opt_real(7)?,
        status: r.text(8)?,
        projects,
        commit_count,
        last_commit,
        authors,
        deploy_count,
        last_deploy,
    })
}

fn load_release(c: &mut dyn Conn, org_id: i64, version: &str) -> StoreResult<Release> {
    let row = c.query_one(
        &format!("SELECT {RELEASE_COLS} FROM releases r WHERE r.org_id = ?1 AND r.version = ?2"),
        &sql_params![org_id, version],
    )?;
    release_full(c, &row)
}

/// Issues of a project resolved "in the next release" after a release older than `version`
/// become resolved for good: from now on any event of theirs is a regression. A release is
/// older when it was created earlier (or no longer exists).
fn finish_next_release(
    c: &mut dyn Conn,
    project_id: i64,
    version: &str,
    at: f64,
) -> StoreResult<()> {
    let ids = c.query(
        "UPDATE issues SET resolved_in_release = NULL WHERE project_id = ?1 \
         AND resolved_in_release IS NOT NULL AND status = 'resolved' \
         AND resolved_in_release <> ?2 \
         AND NOT EXISTS (SELECT 1 FROM projects p \
             JOIN releases n ON n.org_id = p.org_id AND n.version = ?2 \
             JOIN releases o ON o.org_id = p.org_id AND o.version = issues.resolved_in_release \
             WHERE p.id = ?1 AND o.date_created >= n.date_created) \
         RETURNING id",
        &sql_params![project_id, version],
    )?;
    for r in ids {
        add_activity(
            c,
            r.int(0)?,
            None,
            "resolved_in_release",
            &json!({ "release": version }),
            at,
        )?;
    }
    Ok(())
}

/// What one batch of events and sessions adds to a release in a project.
#[derive(Default)]
struct ReleaseDelta {
    first_event: Option<f64>,
    last_event: Option<f64>,
    events: i64,
    new_groups: i64,
    /// When the first of these events was received: the release's creation time if new.
    first_received: Option<f64>,
}

/// Creates the release of a project if needed and adds what a batch did to it: one statement
/// pair per distinct (project, release) of the batch.
fn add_release_delta(
    c: &mut dyn Conn,
    project_id: i64,
    version: &str,
    d: &ReleaseDelta,
    at: f64,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO releases (org_id, version, date_created) \
         SELECT org_id, CAST(?2 AS TEXT), CAST(?3 AS DOUBLE PRECISION) FROM projects \
         WHERE id = ?1 ON CONFLICT (org_id, version) DO NOTHING",
        &sql_params![project_id, version, at],
    )?;
    c.execute(
        "INSERT INTO release_projects (release_id, project_id, first_event, last_event, \
         event_count, new_groups) \
         SELECT r.id, p.id, CAST(?3 AS DOUBLE PRECISION), CAST(?4 AS DOUBLE PRECISION), \
         CAST(?5 AS BIGINT), CAST(?6 AS BIGINT) FROM projects p \
         JOIN releases r ON r.org_id = p.org_id AND r.version = ?2 WHERE p.id = ?1 \
         ON CONFLICT (release_id, project_id) DO UPDATE SET \
         first_event = CASE WHEN release_projects.first_event IS NULL \
             OR excluded.first_event < release_projects.first_event \
             THEN excluded.first_event ELSE release_projects.first_event END, \
         last_event = CASE WHEN release_projects.last_event IS NULL \
             OR excluded.last_event > release_projects.last_event \
             THEN excluded.last_event ELSE release_projects.last_event END, \
         event_count = release_projects.event_count + excluded.event_count, \
         new_groups = release_projects.new_groups + excluded.new_groups",
        &sql_params![
            project_id,
            version,
            d.first_event,
            d.last_event,
            d.events,
            d.new_groups
        ],
    )?;
    Ok(())
}
