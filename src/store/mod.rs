//! Storage: the one interface every backend implements, and the records it speaks in.
//!
//! - [`Store`]: the domain-shaped trait (users, projects, keys, digest batches, issues, events).
//! - [`sql`]: its one implementation, in SQL both engines run.
//! - [`db`]: the seam to an engine: values, rows, connections, transactions.
//! - [`sqlite`]: the embedded default engine (WAL, one writer connection, a few readers).
//! - [`postgres`]: the engine for several nodes on one database.
//!
//! Handlers hold an `Arc<dyn Store>`; the database URL picks the engine at start ([`open`]).

pub mod db;
pub mod postgres;
pub mod sql;
pub mod sqlite;
#[cfg(test)]
mod suite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::spool::Position;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage error: {0}")]
    Other(String),
}

/// Opens the backend named by `url` and brings its schema up to date.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let engine = sqlite::Sqlite::open(path.as_ref()).await?;
        Ok(Arc::new(sql::SqlStore::new(engine)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let engine = postgres::Postgres::open(url).await?;
        Ok(Arc::new(sql::SqlStore::new(engine)))
    } else {
        Err(StoreError::Other(format!(
            "unsupported database URL {}: expected sqlite://PATH or postgres://…",
            redact(url)
        )))
    }
}

/// A database URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub is_superuser: bool,
}

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub date_created: f64,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: i64,
    pub org_id: i64,
    pub org_slug: String,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    pub date_created: f64,
    /// Most events kept; the oldest are evicted first. `None` = the server default.
    pub retention_max_events: Option<i64>,
    /// Oldest event age kept, in days. `None` = the server default.
    pub retention_days: Option<i64>,
}

/// A DSN key of a project.
#[derive(Debug, Clone)]
pub struct ProjectKey {
    pub id: i64,
    pub project_id: i64,
    pub public_key: String,
    pub label: String,
    pub is_active: bool,
    /// Events allowed per `rate_limit_window` seconds; `None` = unlimited.
    pub rate_limit_count: Option<i64>,
    pub rate_limit_window: Option<i64>,
    pub date_created: f64,
}

/// A group of events with the same fingerprint.
#[derive(Debug, Clone)]
pub struct Issue {
    pub id: i64,
    pub project_id: i64,
    pub short_id: i64,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub issue_type: String,
    pub metadata: Value,
    pub platform: String,
    pub logger: Option<String>,
    /// `unresolved`, `resolved` or `ignored`.
    pub status: String,
    pub is_regression: bool,
    pub first_seen: f64,
    pub last_seen: f64,
    pub times_seen: i64,
    pub user_count: i64,
    pub first_release: Option<String>,
    pub last_release: Option<String>,
}

/// A stored event: its index columns and the normalized payload.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub project_id: i64,
    pub event_id: String,
    pub issue_id: i64,
    pub timestamp: f64,
    pub received: f64,
    pub size: i64,
    /// The grouping components that made the issue.
    pub grouping: Value,
    /// The normalized event.
    pub payload: Value,
}

/// An event ready to be stored, as digestion produced it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub project_id: i64,
    pub event_id: String,
    pub hash: String,
    pub grouping: Value,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub event_type: String,
    pub metadata: Value,
    pub platform: String,
    pub logger: Option<String>,
    pub timestamp: f64,
    pub received: f64,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub user_key: Option<String>,
    pub trace_id: Option<String>,
    pub tags: Vec<(String, String)>,
    /// The normalized event as JSON, zstd-compressed.
    pub payload: Vec<u8>,
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub project_id: i64,
    pub event_id: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub attachment_type: String,
    pub data: Vec<u8>,
}

/// A stored attachment, without its bytes.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: i64,
    pub event_id: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub attachment_type: String,
    pub size: i64,
}

/// User feedback (`user_report` or `feedback` items).
#[derive(Debug, Clone)]
pub struct NewUserReport {
    pub project_id: i64,
    pub event_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub comments: String,
    pub received: f64,
}

/// Stored user feedback.
#[derive(Debug, Clone)]
pub struct UserReport {
    pub id: i64,
    pub event_id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub comments: String,
    pub date_created: f64,
}

/// Session counts for one project / release / environment / hour.
#[derive(Debug, Clone, Default)]
pub struct SessionCounts {
    pub project_id: i64,
    pub release: String,
    pub environment: String,
    pub hour: i64,
    pub started: i64,
    pub exited: i64,
    pub errored: i64,
    pub crashed: i64,
    pub abnormal: i64,
    pub unhandled: i64,
}

/// One distinct user (`did`) seen in a release's sessions, and whether they crashed.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub project_id: i64,
    pub release: String,
    pub environment: String,
    pub did: String,
    pub crashed: bool,
}

/// Counted items: client reports (`source = "client"`) and items accepted but not stored
/// (`source = "server"`).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub project_id: i64,
    pub hour: i64,
    pub source: &'static str,
    pub category: String,
    pub reason: String,
    pub quantity: i64,
}

/// Everything digested from one run of spool records, stored in one transaction together with
/// the spool position it reached.
#[derive(Debug, Clone, Default)]
pub struct DigestBatch {
    pub node_id: String,
    pub position: Position,
    pub events: Vec<NewEvent>,
    pub attachments: Vec<NewAttachment>,
    pub user_reports: Vec<NewUserReport>,
    pub sessions: Vec<SessionCounts>,
    pub session_users: Vec<SessionUser>,
    pub outcomes: Vec<Outcome>,
}

impl DigestBatch {
    /// Moves everything `other` holds to the end of this batch.
    pub fn append(&mut self, other: DigestBatch) {
        self.events.extend(other.events);
        self.attachments.extend(other.attachments);
        self.user_reports.extend(other.user_reports);
        self.sessions.extend(other.sessions);
        self.session_users.extend(other.session_users);
        self.outcomes.extend(other.outcomes);
    }
}

/// What a digest batch did to issues (input for alerts).
#[derive(Debug, Clone, Default)]
pub struct DigestResult {
    pub stored: usize,
    pub duplicates: usize,
    pub new_issues: Vec<i64>,
    pub regressions: Vec<i64>,
}

/// Issue list ordering (`sort=` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueSort {
    /// Last seen, newest first (`date`).
    LastSeen,
    /// First seen, newest first (`new`).
    FirstSeen,
    /// Event count (`freq`).
    Events,
    /// Users affected (`user`).
    Users,
}

/// A filter over issues; every condition must hold.
#[derive(Debug, Clone)]
pub struct IssueFilter {
    pub project_ids: Vec<i64>,
    pub statuses: Vec<String>,
    /// `(key, value, negated)`; values may end with `*` for a prefix match.
    pub tags: Vec<(String, String, bool)>,
    /// Tag keys that must be present.
    pub has: Vec<String>,
    pub levels: Vec<String>,
    /// Words that must all appear in the title or culprit.
    pub text: Vec<String>,
    pub first_seen_after: Option<f64>,
    pub last_seen_after: Option<f64>,
    pub times_seen_min: Option<i64>,
    pub sort: IssueSort,
    pub limit: i64,
    pub offset: i64,
}

impl Default for IssueFilter {
    fn default() -> Self {
        IssueFilter {
            project_ids: Vec::new(),
            statuses: Vec::new(),
            tags: Vec::new(),
            has: Vec::new(),
            levels: Vec::new(),
            text: Vec::new(),
            first_seen_after: None,
            last_seen_after: None,
            times_seen_min: None,
            sort: IssueSort::LastSeen,
            limit: 100,
            offset: 0,
        }
    }
}

/// The counts of one value of one tag on an issue.
#[derive(Debug, Clone)]
pub struct TagValue {
    pub key: String,
    pub value: String,
    pub count: i64,
    pub first_seen: f64,
    pub last_seen: f64,
}

/// A tag key of an issue with its totals.
#[derive(Debug, Clone)]
pub struct TagKey {
    pub key: String,
    pub unique_values: i64,
    pub total_values: i64,
}

/// Which events to list and from where (`cursor` pagination by offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPick {
    Latest,
    Oldest,
}

/// The storage interface. Every method is one short transaction.
#[async_trait]
pub trait Store: Send + Sync {
    // --- health and the spool cursor ---
    /// Whether the database answers and accepts writes.
    async fn healthy(&self) -> bool;
    /// Takes or renews the lease `name` for `holder` until `now + ttl` seconds; `false` while
    /// another holder's lease has not expired. Background work that one node of a cluster must
    /// do at a time runs only while its lease is held.
    async fn try_lease(&self, name: &str, holder: &str, ttl: f64) -> StoreResult<bool>;
    /// Adds `n` to the cluster's count of a key's rate-limit window; returns the new total.
    async fn add_rate_count(&self, key_id: i64, window_start: i64, n: i64) -> StoreResult<i64>;
    /// Adds `n` to a window's count only if the total stays within `limit`; returns the new
    /// total, or `None` when it would not.
    async fn try_add_rate_count(
        &self,
        key_id: i64,
        window_start: i64,
        n: i64,
        limit: i64,
    ) -> StoreResult<Option<i64>>;
    /// Drops rate-limit windows that started before `before` (Unix seconds).
    async fn prune_rate_counts(&self, before: i64) -> StoreResult<()>;
    /// Where this node's digestion stopped.
    async fn spool_position(&self, node_id: &str) -> StoreResult<Position>;

    // --- accounts ---
    async fn count_users(&self) -> StoreResult<i64>;
    async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        superuser: bool,
    ) -> StoreResult<User>;
    async fn user_by_email(&self, email: &str) -> StoreResult<User>;
    /// Stores a token (by its SHA-256) for a user.
    async fn create_token(&self, user_id: i64, token_hash: &str, name: &str) -> StoreResult<()>;
    async fn user_by_token(&self, token_hash: &str) -> StoreResult<User>;

    // --- organizations and projects ---
    /// Returns the organization, creating it when missing.
    async fn ensure_organization(&self, slug: &str) -> StoreResult<Organization>;
    async fn organization(&self, slug: &str) -> StoreResult<Organization>;
    async fn add_member(&self, org_id: i64, user_id: i64, role: &str) -> StoreResult<()>;
    /// Organizations a user belongs to (all of them for superusers).
    async fn organizations_for(&self, user: &User) -> StoreResult<Vec<Organization>>;
    async fn create_project(&self, org_id: i64, slug: &str, name: &str) -> StoreResult<Project>;
    async fn project(&self, id: i64) -> StoreResult<Project>;
    async fn project_by_slug(&self, org_slug: &str, slug: &str) -> StoreResult<Project>;
    /// Every project (for background sweeps).
    async fn all_projects(&self) -> StoreResult<Vec<Project>>;
    /// Projects a user may see (all of them for superusers).
    async fn projects_for(&self, user: &User) -> StoreResult<Vec<Project>>;
    async fn set_retention(
        &self,
        project_id: i64,
        max_events: Option<i64>,
        days: Option<i64>,
    ) -> StoreResult<()>;

    // --- DSN keys ---
    async fn create_key(
        &self,
        project_id: i64,
        public_key: &str,
        label: &str,
    ) -> StoreResult<ProjectKey>;
    async fn key_by_public(&self, public_key: &str) -> StoreResult<ProjectKey>;
    async fn keys(&self, project_id: i64) -> StoreResult<Vec<ProjectKey>>;
    /// Changes a key's label, state and rate limit (`None` = unlimited).
    async fn update_key(
        &self,
        id: i64,
        label: &str,
        is_active: bool,
        rate_limit: Option<(i64, i64)>,
    ) -> StoreResult<ProjectKey>;

    // --- digestion ---
    /// Stores a digested batch and the spool position it reached, atomically.
    async fn save_batch(&self, batch: Arc<DigestBatch>) -> StoreResult<DigestResult>;
    /// Total stored events (for tests and benchmarks).
    async fn count_events(&self, project_id: Option<i64>) -> StoreResult<i64>;
    /// Evicts events beyond a project's cap or age; returns how many were removed.
    async fn enforce_retention(
        &self,
        project_id: i64,
        max_events: Option<i64>,
        min_timestamp: Option<f64>,
    ) -> StoreResult<u64>;

    // --- issues ---
    async fn list_issues(&self, filter: &IssueFilter) -> StoreResult<Vec<Issue>>;
    async fn issue(&self, id: i64) -> StoreResult<Issue>;
    async fn set_issue_status(&self, id: i64, status: &str) -> StoreResult<()>;
    /// Hourly event counts `(hour_start_unix, count)` of issues since `since` (Unix seconds).
    async fn issue_hourly(
        &self,
        issue_ids: &[i64],
        since: i64,
    ) -> StoreResult<HashMap<i64, Vec<(i64, i64)>>>;
    async fn issue_tag_keys(&self, issue_id: i64) -> StoreResult<Vec<TagKey>>;
    async fn issue_tag_values(
        &self,
        issue_id: i64,
        key: &str,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<TagValue>>;

    // --- events ---
    async fn issue_events(
        &self,
        issue_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>>;
    async fn issue_event(&self, issue_id: i64, pick: EventPick) -> StoreResult<EventRecord>;
    async fn event(&self, project_id: i64, event_id: &str) -> StoreResult<EventRecord>;
    /// Ids of the events before and after this one in its issue.
    async fn event_neighbours(
        &self,
        issue_id: i64,
        timestamp: f64,
        event_id: &str,
    ) -> StoreResult<(Option<String>, Option<String>)>;
    /// The attachments of an event.
    async fn event_attachments(
        &self,
        project_id: i64,
        event_id: &str,
    ) -> StoreResult<Vec<Attachment>>;
    /// One attachment of a project, with its bytes.
    async fn attachment(&self, project_id: i64, id: i64) -> StoreResult<(Attachment, Vec<u8>)>;
    /// User feedback attached to the events of an issue, newest first.
    async fn issue_user_reports(&self, issue_id: i64) -> StoreResult<Vec<UserReport>>;
    async fn project_events(
        &self,
        project_id: i64,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<EventRecord>>;
}
