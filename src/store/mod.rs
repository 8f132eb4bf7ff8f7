//! Storage: the one interface every backend implements, and the records it speaks in.
//!
//! - [`artifacts`]: uploaded source maps and sources ([`ArtifactStore`], part of [`Store`]).
//! - [`Store`]: the domain-shaped trait (users, web sessions, members and invitations, projects,
//!   keys, digest batches, issues and their history, events, alert rules and the outbox of
//!   notifications).
//! - [`sql`]: its one implementation, in SQL both engines run.
//! - [`db`]: the seam to an engine: values, rows, connections, transactions.
//! - [`sqlite`]: the embedded default engine (WAL, one writer connection, a few readers).
//! - [`postgres`]: the engine for several nodes on one database.
//!
//! Handlers hold an `Arc<dyn Store>`; the database URL picks the engine at start ([`open`]).

pub mod artifacts;
pub mod db;
pub mod payload;
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

pub use artifacts::{ArtifactFile, ArtifactStore, BundleKind, NewArtifactFile, NewBundle};

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

/// A logged-in browser session.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub user: User,
    pub csrf: String,
    pub expires: f64,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub date_created: f64,
}

#[derive(Debug, Clone)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub date_created: f64,
}

/// A member of an organization, with the projects they were added to.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub role: String,
    pub project_ids: Vec<i64>,
}

/// An invitation link into an organization (only the SHA-256 of its token is stored).
#[derive(Debug, Clone)]
pub struct Invite {
    pub id: i64,
    pub org_id: i64,
    pub org_slug: String,
    pub role: String,
    pub project_ids: Vec<i64>,
    pub email: Option<String>,
    pub created_by: i64,
    pub date_created: f64,
    pub expires: f64,
    pub accepted_by: Option<i64>,
}

/// An invitation to store.
#[derive(Debug, Clone)]
pub struct NewInvite<'a> {
    pub token_hash: &'a str,
    pub org_id: i64,
    pub role: &'a str,
    pub project_ids: &'a [i64],
    pub email: Option<&'a str>,
    pub created_by: i64,
    pub now: f64,
    pub expires: f64,
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
    pub assignee_id: Option<i64>,
    /// The assignee's e-mail address.
    pub assignee_email: Option<String>,
    /// Set by "resolve in next release": events of this release leave the issue resolved.
    pub resolved_in_release: Option<String>,
    /// While ignored: back to unresolved once an event is received after this time…
    pub ignore_until: Option<f64>,
    /// …or `times_seen` reaches this…
    pub ignore_until_events: Option<i64>,
    /// …or `user_count` reaches this.
    pub ignore_until_users: Option<i64>,
}

/// One entry of an issue's history: a comment (`note`, data `{"text"}`), a status change
/// (`resolved`, `resolved_in_next_release` data `{"release"}`, `ignored` data
/// `{"until","events","users"}` as the [`IgnoreRule`] was given, `unresolved`, `regression`,
/// `unignored`), `assigned` (data `{"user_id","email"}`, both null = unassigned), `first_seen`.
/// `user_id` is `None` for what the server did by itself.
#[derive(Debug, Clone)]
pub struct Activity {
    pub id: i64,
    pub issue_id: i64,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub kind: String,
    pub data: Value,
    pub date_created: f64,
}

/// How long an ignore lasts; every `None` = forever. Counts are "N more" from now.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRule {
    pub until: Option<f64>,
    pub more_events: Option<i64>,
    pub more_users: Option<i64>,
}

/// A change a user makes to issues.
#[derive(Debug, Clone)]
pub enum IssueChange {
    Resolve,
    ResolveInNextRelease,
    Ignore(IgnoreRule),
    Unresolve,
    /// `None` unassigns.
    Assign(Option<i64>),
}

/// An error sharing a trace with another.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    pub project_id: i64,
    pub event_id: String,
    pub issue_id: i64,
    pub issue_short_id: i64,
    /// The issue's title, culprit and (latest) level.
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub timestamp: f64,
}

/// An issue whose rate grows: events in the last 3 hours against its average 3 hours over the
/// 21 hours before.
#[derive(Debug, Clone)]
pub struct RisingIssue {
    pub issue: Issue,
    pub recent: i64,
    pub baseline: f64,
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

/// Keys that issues can be searched by (`user.email:a@b`) but that no tag breakdown shows: the
/// user's fields, one value per user or more. Digestion records them apart from the counted
/// tags, once per issue and value.
pub const SEARCH_ONLY: &[&str] = &["user.id", "user.email", "user.username", "user.ip"];

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
    /// Counted per issue, key and value (the tag breakdowns).
    pub tags: Vec<(String, String)>,
    /// Recorded once per issue, key and value, for searching only (keys of [`SEARCH_ONLY`]).
    pub search: Vec<(String, String)>,
    /// The normalized event as JSON, zstd-compressed.
    pub payload: Vec<u8>,
    pub size: i64,
    /// Replaces a stored event with the same id (reprocessing) instead of being a duplicate.
    pub replaces: bool,
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

/// A release: a version of an organization's code, used by one or more of its projects.
#[derive(Debug, Clone)]
pub struct Release {
    pub id: i64,
    pub org_id: i64,
    pub version: String,
    /// The VCS reference it was built from (`ref` in the API).
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_created: f64,
    pub date_started: Option<f64>,
    /// When it was finalized (released); `None` while unreleased.
    pub date_released: Option<f64>,
    /// `open` or `archived`.
    pub status: String,
    pub projects: Vec<ReleaseProject>,
    pub commit_count: i64,
    /// The first commit given to `set-commits` (the newest one).
    pub last_commit: Option<Commit>,
    /// Distinct commit authors, `(name, email)`.
    pub authors: Vec<(Option<String>, Option<String>)>,
    pub deploy_count: i64,
    pub last_deploy: Option<Deploy>,
}

/// A release within one project, with what its events did there.
#[derive(Debug, Clone)]
pub struct ReleaseProject {
    pub project_id: i64,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    pub first_event: Option<f64>,
    pub last_event: Option<f64>,
    pub event_count: i64,
    /// Issues first seen in this release.
    pub new_groups: i64,
}

/// A release to create (or, when it exists, to link to more projects).
#[derive(Debug, Clone, Default)]
pub struct NewRelease {
    pub version: String,
    pub project_ids: Vec<i64>,
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<f64>,
    pub date_released: Option<f64>,
}

/// Fields of a release to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ReleaseChange {
    pub git_ref: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<f64>,
    pub date_released: Option<f64>,
    pub status: Option<String>,
}

/// A commit of a release.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub id: String,
    pub repository: Option<String>,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub message: Option<String>,
    pub timestamp: Option<f64>,
}

/// A deploy of a release to an environment.
#[derive(Debug, Clone, Default)]
pub struct Deploy {
    pub id: i64,
    pub version: String,
    pub environment: String,
    pub name: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<f64>,
    pub date_finished: f64,
}

/// Release health of one release in one project, from the stored session counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReleaseHealth {
    pub project_id: i64,
    pub sessions: i64,
    pub crashed: i64,
    /// Sessions that ended with errors, crashed, abnormal or unhandled.
    pub errored: i64,
    pub abnormal: i64,
    pub unhandled: i64,
    /// Distinct users (`did`) and those of them with a crashed session.
    pub users: i64,
    pub crashed_users: i64,
    /// Sessions of this release in the last 24 hours, and of every release of the project.
    pub sessions_24h: i64,
    pub project_sessions_24h: i64,
}

impl ReleaseHealth {
    /// Crash-free sessions in percent; `None` without sessions.
    pub fn crash_free_sessions(&self) -> Option<f64> {
        (self.sessions > 0).then(|| 100.0 * (1.0 - self.crashed as f64 / self.sessions as f64))
    }

    /// Crash-free users in percent; `None` without users.
    pub fn crash_free_users(&self) -> Option<f64> {
        (self.users > 0).then(|| 100.0 * (1.0 - self.crashed_users as f64 / self.users as f64))
    }

    /// This release's share of the project's sessions in the last 24 hours, in percent.
    pub fn adoption(&self) -> Option<f64> {
        (self.project_sessions_24h > 0)
            .then(|| 100.0 * self.sessions_24h as f64 / self.project_sessions_24h as f64)
    }
}

/// What a digest batch did to issues (input for alerts).
#[derive(Debug, Clone, Default)]
pub struct DigestResult {
    pub stored: usize,
    pub duplicates: usize,
    pub new_issues: Vec<i64>,
    pub regressions: Vec<i64>,
    /// Ignored issues that came back (their ignore ran out with this batch).
    pub unignored: Vec<i64>,
    /// Every issue that got events, with the index in the batch of its latest stored event.
    pub touched: Vec<(i64, usize)>,
}

/// An alert rule of a project (JSON shapes of `filters` and `actions` as in the API,
/// `src/api/alerts.rs`). `factor` is a spike rule's "how many times the usual rate" (`None`
/// for other triggers).
#[derive(Debug, Clone)]
pub struct AlertRule {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub trigger: String,
    pub threshold: Option<i64>,
    pub window_minutes: Option<i64>,
    pub factor: Option<f64>,
    pub filters: Value,
    pub interval_minutes: i64,
    pub actions: Value,
    pub date_created: f64,
    pub date_updated: f64,
}

/// An alert rule to store (created, or replacing a rule as a whole).
#[derive(Debug, Clone)]
pub struct NewAlertRule {
    pub name: String,
    pub trigger: String,
    pub threshold: Option<i64>,
    pub window_minutes: Option<i64>,
    pub factor: Option<f64>,
    pub filters: Value,
    pub interval_minutes: i64,
    pub actions: Value,
}

/// One message to deliver (a row of the persisted outbox).
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: i64,
    pub rule_id: Option<i64>,
    pub project_id: i64,
    pub issue_id: Option<i64>,
    pub action: Value,
    pub payload: Value,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt: f64,
    pub last_error: Option<String>,
    pub date_created: f64,
    pub date_sent: Option<f64>,
}

/// A notification to queue: what to do (one action of a rule) and what to say.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub action: Value,
    pub payload: Value,
}

/// A rule that matched an issue: fires only if the rule has not fired for that issue within
/// `interval_minutes`.
#[derive(Debug, Clone)]
pub struct Firing {
    pub rule_id: i64,
    pub project_id: i64,
    pub issue_id: i64,
    pub interval_minutes: i64,
    pub notifications: Vec<NewNotification>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub enum Delivery {
    Sent,
    Retry { next_attempt: f64, error: String },
    Failed { error: String },
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
    /// Issues assigned to this user.
    pub assignee: Option<i64>,
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
            assignee: None,
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
pub trait Store: ArtifactStore + Send + Sync {
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

    // --- payload dictionaries (see [`payload`]) ---
    /// The newest dictionary of every project that has one: `(project_id, dictionary id)`.
    async fn current_payload_dicts(&self) -> StoreResult<Vec<(i64, u32)>>;
    /// A dictionary's bytes.
    async fn payload_dict(&self, id: u32) -> StoreResult<Option<Vec<u8>>>;
    /// Keeps a project's newly trained dictionary; `false` when one with its ID exists.
    async fn add_payload_dict(&self, project_id: i64, id: u32, data: Vec<u8>) -> StoreResult<bool>;
    /// Projects due a (new) dictionary: without one made after `made_before`, and with at least
    /// `min_events` stored events newer than their newest dictionary.
    async fn payload_dict_due(&self, made_before: f64, min_events: i64) -> StoreResult<Vec<i64>>;
    /// The JSON of a project's newest stored events, to train a dictionary on: at most `n`,
    /// none larger than `max_event` bytes, and no more than `max_total` bytes together.
    async fn sample_payloads(
        &self,
        project_id: i64,
        n: i64,
        max_event: i64,
        max_total: usize,
    ) -> StoreResult<Vec<Vec<u8>>>;

    // --- web ---
    // Sessions and login. A session or login failure is a row: any node serves any request.
    /// Stores a browser session (by the SHA-256 of its id).
    async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        now: f64,
        expires: f64,
    ) -> StoreResult<()>;
    /// NotFound when missing or expired at `now` (`expires <= now`).
    async fn session(&self, id_hash: &str, now: f64) -> StoreResult<WebSession>;
    /// Deletes a session; nothing happens when there is none.
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    /// Ends every session of a user except `keep_id_hash` (after a password change).
    async fn delete_user_sessions(&self, user_id: i64, keep_id_hash: &str) -> StoreResult<()>;
    /// Deletes sessions expired before `now` and login failures older than `before`.
    async fn prune_web(&self, now: f64, before: f64) -> StoreResult<()>;
    async fn record_login_failure(&self, key: &str, at: f64) -> StoreResult<()>;
    /// Failures of `key` at or after `since`.
    async fn login_failures_since(&self, key: &str, since: f64) -> StoreResult<i64>;
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;

    // --- accounts ---
    async fn count_users(&self) -> StoreResult<i64>;
    async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        superuser: bool,
    ) -> StoreResult<User>;
    async fn user_by_email(&self, email: &str) -> StoreResult<User>;
    async fn user(&self, id: i64) -> StoreResult<User>;
    /// Every user, by e-mail.
    async fn users(&self) -> StoreResult<Vec<User>>;
    /// NotFound for an unknown user.
    async fn set_password(&self, user_id: i64, password_hash: &str) -> StoreResult<()>;
    /// Stores a token (by its SHA-256) for a user.
    async fn create_token(&self, user_id: i64, token_hash: &str, name: &str) -> StoreResult<()>;
    async fn user_by_token(&self, token_hash: &str) -> StoreResult<User>;
    /// A user's tokens, newest first.
    async fn tokens(&self, user_id: i64) -> StoreResult<Vec<ApiToken>>;
    /// NotFound unless the token is that user's.
    async fn delete_token(&self, user_id: i64, token_id: i64) -> StoreResult<()>;

    // --- organizations and projects ---
    /// Returns the organization, creating it when missing.
    async fn ensure_organization(&self, slug: &str) -> StoreResult<Organization>;
    async fn organization(&self, slug: &str) -> StoreResult<Organization>;
    /// Adds a member to an organization, or sets the role of one.
    async fn add_member(&self, org_id: i64, user_id: i64, role: &str) -> StoreResult<()>;
    /// The members of an organization, by e-mail.
    async fn org_members(&self, org_id: i64) -> StoreResult<Vec<Member>>;
    /// Removes a member and their project memberships in that organization; NotFound when they
    /// are no member.
    async fn remove_member(&self, org_id: i64, user_id: i64) -> StoreResult<()>;
    /// Adds (`member = true`) or removes a user's membership of a project; idempotent.
    async fn set_project_member(
        &self,
        project_id: i64,
        user_id: i64,
        member: bool,
    ) -> StoreResult<()>;
    /// Users who can see the project (see [`Store::projects_for`]), by e-mail.
    async fn project_members(&self, project_id: i64) -> StoreResult<Vec<User>>;
    /// Stores an invitation; returns its id.
    async fn create_invite(&self, invite: NewInvite<'_>) -> StoreResult<i64>;
    /// An invitation by the SHA-256 of its token (accepted or expired ones too).
    async fn invite(&self, token_hash: &str) -> StoreResult<Invite>;
    /// An organization's invitations not yet accepted (expired ones too), newest first.
    async fn invites(&self, org_id: i64) -> StoreResult<Vec<Invite>>;
    /// NotFound unless the invitation is the organization's.
    async fn delete_invite(&self, org_id: i64, id: i64) -> StoreResult<()>;
    /// In one transaction: NotFound for an unknown token; Conflict if already accepted or
    /// expired at `now`; else marks it accepted by `user_id`, adds the org membership with the
    /// invite's role (keeping a higher existing role) and the project memberships (of projects
    /// still in that organization).
    async fn accept_invite(&self, token_hash: &str, user_id: i64, now: f64) -> StoreResult<Invite>;
    /// Organizations a user belongs to (all of them for superusers).
    async fn organizations_for(&self, user: &User) -> StoreResult<Vec<Organization>>;
    /// Creates a project with its default alert rules (`sql::DEFAULT_RULES`), in one
    /// transaction.
    async fn create_project(&self, org_id: i64, slug: &str, name: &str) -> StoreResult<Project>;
    async fn project(&self, id: i64) -> StoreResult<Project>;
    async fn project_by_slug(&self, org_slug: &str, slug: &str) -> StoreResult<Project>;
    /// Every project (for background sweeps).
    async fn all_projects(&self) -> StoreResult<Vec<Project>>;
    /// Projects a user may see: all of them for superusers; every project of an organization
    /// where they are `owner` or `admin`; where they are `member`, the projects they were added
    /// to ([`Store::set_project_member`]).
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
    /// NotFound unless the key is the project's.
    async fn delete_key(&self, project_id: i64, key_id: i64) -> StoreResult<()>;

    // --- digestion ---
    /// Stores a digested batch and the spool position it reached, atomically.
    async fn save_batch(&self, batch: Arc<DigestBatch>) -> StoreResult<DigestResult>;
    /// Total stored events (for tests and benchmarks).
    async fn count_events(&self, project_id: Option<i64>) -> StoreResult<i64>;
    /// Refreshes the database's planner statistics if the database does not do it by itself
    /// (see [`db::Conn::refresh_statistics`]); whether it did.
    async fn refresh_statistics(&self) -> StoreResult<bool>;
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
    /// `resolved`, `unresolved` or `ignored` (forever), as [`Store::update_issues`] does it
    /// without an actor.
    async fn set_issue_status(&self, id: i64, status: &str) -> StoreResult<()>;
    /// Applies one change to issues (all in the same transaction; NotFound, and nothing
    /// changed, when one is missing), writing one activity row per issue with `actor`.
    /// ResolveInNextRelease stores the issue's current last_release as the release it was
    /// resolved in. Ignore stores absolute thresholds: until time, times_seen + more_events,
    /// user_count + more_users. Leaving `ignored` clears the thresholds; NotFound when assigning
    /// to an unknown user.
    async fn update_issues(
        &self,
        ids: &[i64],
        change: &IssueChange,
        actor: Option<i64>,
        now: f64,
    ) -> StoreResult<()>;
    /// NotFound for an unknown issue.
    async fn add_comment(
        &self,
        issue_id: i64,
        user_id: i64,
        text: &str,
        now: f64,
    ) -> StoreResult<()>;
    /// An issue's history, newest first (in the order it was written: digestion dates its
    /// entries by when the event was received, which may precede a user's later change).
    async fn issue_activity(&self, issue_id: i64, limit: i64) -> StoreResult<Vec<Activity>>;
    /// Issues of the projects with events in the last 3 hours before `now`, ordered by
    /// recent/max(baseline,1) descending, then recent descending. Counted in hourly buckets:
    /// `recent` sums the hours that overlap the last 3 hours, `baseline` is the average per 3
    /// hours of the 21 hours before those.
    async fn rising_issues(
        &self,
        project_ids: &[i64],
        now: f64,
        limit: i64,
    ) -> StoreResult<Vec<RisingIssue>>;
    /// Hourly event counts `(hour_start_unix, count)` of issues since `since` (Unix seconds).
    async fn issue_hourly(
        &self,
        issue_ids: &[i64],
        since: i64,
    ) -> StoreResult<HashMap<i64, Vec<(i64, i64)>>>;
    /// Events per hour of all of a project's issues from `since` on (the project's trend).
    async fn project_hourly(&self, project_id: i64, since: i64) -> StoreResult<Vec<(i64, i64)>>;
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
        project_id: i64,
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
    /// Errors of the given projects sharing a trace id, newest first.
    async fn trace_events(
        &self,
        trace_id: &str,
        project_ids: &[i64],
        limit: i64,
    ) -> StoreResult<Vec<TraceEvent>>;

    // --- alerts ---
    /// A project's alert rules, by id.
    async fn alert_rules(&self, project_id: i64) -> StoreResult<Vec<AlertRule>>;
    /// NotFound unless the rule is the project's.
    async fn alert_rule(&self, project_id: i64, id: i64) -> StoreResult<AlertRule>;
    async fn create_alert_rule(
        &self,
        project_id: i64,
        rule: &NewAlertRule,
        now: f64,
    ) -> StoreResult<AlertRule>;
    /// Replaces the whole rule (its creation date stays); NotFound unless it is the project's.
    async fn update_alert_rule(
        &self,
        project_id: i64,
        id: i64,
        rule: &NewAlertRule,
        now: f64,
    ) -> StoreResult<AlertRule>;
    /// NotFound unless the rule is the project's. Its notifications stay (their `rule_id`
    /// becomes `None`), pending ones included.
    async fn delete_alert_rule(&self, project_id: i64, id: i64) -> StoreResult<()>;
    /// Atomically, for each firing whose (rule, issue) has not fired within its interval
    /// before `now` (a last firing at `t` holds the pair while `t >= now - interval`): records
    /// `now` as its last firing and inserts its notifications as pending (`next_attempt = now`).
    /// Returns the (rule_id, issue_id) pairs that fired, in (rule, issue) order. Several nodes
    /// calling it at once for the same pair: exactly one fires it (one upsert with a condition
    /// on the last firing time, no read-then-write). Firings whose rule (deleted meanwhile) or
    /// issue is missing, or not both of `project_id`, are skipped.
    async fn fire_alerts(&self, firings: &[Firing], now: f64) -> StoreResult<Vec<(i64, i64)>>;
    /// Queues a firing's notifications now, without recording a firing (a "send a test" from
    /// the UI must not hold back the rule's next real alert for that issue).
    async fn queue_notifications(&self, firing: &Firing, now: f64) -> StoreResult<()>;
    /// Claims up to `limit` pending notifications due at `now` (`next_attempt <= now`) that
    /// nobody holds, or whose claim expired, for `holder` during `lease_seconds`; oldest first.
    /// Two nodes never claim the same row (PostgreSQL: `FOR UPDATE SKIP LOCKED`).
    async fn claim_notifications(
        &self,
        holder: &str,
        now: f64,
        lease_seconds: f64,
        limit: i64,
    ) -> StoreResult<Vec<Notification>>;
    /// Records the outcome of one attempt (attempts + 1; Sent: status `sent` and `date_sent`;
    /// Retry: stays `pending` with `next_attempt` and `last_error`; Failed: status `failed` and
    /// `last_error`) and releases the claim. NotFound for an unknown id.
    async fn finish_notification(&self, id: i64, outcome: &Delivery, now: f64) -> StoreResult<()>;
    /// A project's notifications, newest first.
    async fn notifications(&self, project_id: i64, limit: i64) -> StoreResult<Vec<Notification>>;
    /// Events of an issue with `timestamp >= since`, and the distinct users among them.
    async fn issue_window_counts(&self, issue_id: i64, since: f64) -> StoreResult<(i64, i64)>;

    // --- releases, commits, deploys, release health ---
    /// Creates a release of an organization linked to `new.project_ids` (at least one), or,
    /// when the version exists, links it to those projects too. `true` when it was created.
    /// Issues of those projects resolved "in the next release" after an older release become
    /// resolved for good.
    async fn create_release(
        &self,
        org_id: i64,
        new: &NewRelease,
        now: f64,
    ) -> StoreResult<(Release, bool)>;
    /// NotFound for an unknown version.
    async fn release(&self, org_id: i64, version: &str) -> StoreResult<Release>;
    /// Releases linked to any of `project_ids`, newest first; `query` matches part of the
    /// version, `status` (`open`, `archived`) narrows when given.
    async fn releases(
        &self,
        org_id: i64,
        project_ids: &[i64],
        query: Option<&str>,
        status: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> StoreResult<Vec<Release>>;
    async fn update_release(
        &self,
        org_id: i64,
        version: &str,
        change: &ReleaseChange,
    ) -> StoreResult<Release>;
    /// Deletes a release with its commits and deploys (events keep their release name).
    async fn delete_release(&self, org_id: i64, version: &str) -> StoreResult<()>;
    /// Replaces the commits of a release (newest first, as `git log` lists them).
    async fn set_release_commits(&self, release_id: i64, commits: &[Commit]) -> StoreResult<()>;
    async fn release_commits(&self, release_id: i64) -> StoreResult<Vec<Commit>>;
    async fn create_deploy(&self, release_id: i64, deploy: &Deploy) -> StoreResult<Deploy>;
    /// Deploys of a release, newest first.
    async fn deploys(&self, release_id: i64) -> StoreResult<Vec<Deploy>>;
    /// Deploys of the releases of a project finished at or after `since`, oldest first.
    async fn project_deploys(&self, project_id: i64, since: f64) -> StoreResult<Vec<Deploy>>;
    /// Health of a release in each of `project_ids` that has sessions, optionally in one
    /// environment; `now` ends the 24 hours adoption looks at.
    async fn release_health(
        &self,
        project_ids: &[i64],
        version: &str,
        environment: Option<&str>,
        now: f64,
    ) -> StoreResult<Vec<ReleaseHealth>>;
    /// Events of an issue in `environment` with `timestamp >= since`.
    async fn issue_events_since(
        &self,
        issue_id: i64,
        environment: &str,
        since: f64,
    ) -> StoreResult<i64>;
}
