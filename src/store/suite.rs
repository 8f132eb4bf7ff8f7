//! One storage test suite, run against both backends.
//!
//! Every test is written once, as an `async fn(&TestDb)` that opens stores through
//! [`crate::store::open`] and asserts only what the [`Store`] trait shows. [`store_tests!`]
//! instantiates each of them twice, as ripgrep's `rgtest!` does per engine:
//!
//! - `<name>_sqlite`: a fresh SQLite file in a temporary directory;
//! - `<name>_postgres`: a fresh database `faultline_test_<uuid>` created on the server named by
//!   `FAULTLINE_TEST_DATABASE_URL` and dropped afterwards (also when the test fails). Unset, the
//!   test says it skipped; set but unreachable, the test fails.
//!
//! Tests that play several nodes open the same database more than once ([`TestDb::open`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use super::*;
use crate::spool::Position;

const PG_URL_VAR: &str = "FAULTLINE_TEST_DATABASE_URL";

/// An hour boundary (Unix seconds) all test timestamps start from.
const T0: f64 = 1_699_999_200.0;

// ---------------------------------------------------------------------------------------------
// Test databases

/// A fresh, empty database for one test, and the URL to open stores on it.
struct TestDb {
    url: String,
    /// The directory of a SQLite database, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database, dropped on drop.
    _pg: Option<PgDatabase>,
}

impl TestDb {
    /// A new SQLite file in a temporary directory.
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("faultline.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// A new PostgreSQL database, or `None` (after saying so) when no server is configured.
    async fn postgres() -> Option<TestDb> {
        let admin_url = match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                eprintln!("skipped: {PG_URL_VAR} is not set (PostgreSQL half of the store suite)");
                return None;
            }
        };
        let name = format!("faultline_test_{}", uuid::Uuid::new_v4().simple());
        let client = pg_admin(&admin_url).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CREATE DATABASE {name} on {}: {}",
                    redact(&admin_url),
                    pg_error(&e)
                )
            });
        let url = with_database(&admin_url, &name);
        Some(TestDb {
            url,
            _dir: None,
            _pg: Some(PgDatabase { admin_url, name }),
        })
    }

    /// Opens a store (one "node") on this database.
    async fn open(&self) -> Arc<dyn Store> {
        open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening the store at {}: {e}", redact(&self.url)))
    }
}

/// A per-test PostgreSQL database, dropped (`WITH (FORCE)`) when this guard goes, also while a
/// failing test unwinds.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // A thread with its own runtime: this may run inside (or after) the test's runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| pg_error(&e))?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| pg_error(&e))
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A connection to the configured server; an unreachable server fails the test.
async fn pg_admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{PG_URL_VAR} is set but PostgreSQL at {} is unreachable: {}",
                redact(url),
                pg_error(&e)
            )
        });
    tokio::spawn(conn);
    client
}

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    }
}

/// `url` with its database (path) replaced by `db`, query string kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..authority_end])
}

/// Instantiates each suite test for both backends: `<test> => <name>_sqlite, <name>_postgres;`.
macro_rules! store_tests {
    ($($test:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let db = TestDb::sqlite();
            $test(&db).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(db) = TestDb::postgres().await else {
                return;
            };
            $test(&db).await;
        }
    )*};
}

store_tests! {
    accounts => accounts_sqlite, accounts_postgres;
    organizations_and_projects => organizations_and_projects_sqlite,
        organizations_and_projects_postgres;
    keys => keys_sqlite, keys_postgres;
    digest_groups_events_into_issues => digest_groups_events_into_issues_sqlite,
        digest_groups_events_into_issues_postgres;
    digest_skips_duplicates => digest_skips_duplicates_sqlite, digest_skips_duplicates_postgres;
    reprocessed_events_replace_the_stored_ones
        => reprocessed_events_replace_the_stored_ones_sqlite,
        reprocessed_events_replace_the_stored_ones_postgres;
    project_hourly_adds_up_its_issues => project_hourly_adds_up_its_issues_sqlite,
        project_hourly_adds_up_its_issues_postgres;
    digest_reopens_resolved_issues => digest_reopens_resolved_issues_sqlite,
        digest_reopens_resolved_issues_postgres;
    digest_counts_hours_and_tags => digest_counts_hours_and_tags_sqlite,
        digest_counts_hours_and_tags_postgres;
    events_listing => events_listing_sqlite, events_listing_postgres;
    event_neighbours_follow_event_order => event_neighbours_follow_event_order_sqlite,
        event_neighbours_follow_event_order_postgres;
    reports_sessions_and_outcomes => reports_sessions_and_outcomes_sqlite,
        reports_sessions_and_outcomes_postgres;
    spool_position_is_saved_atomically => spool_position_is_saved_atomically_sqlite,
        spool_position_is_saved_atomically_postgres;
    list_issues_filters_and_sorts => list_issues_filters_and_sorts_sqlite,
        list_issues_filters_and_sorts_postgres;
    list_issues_tag_prefix_is_case_sensitive => list_issues_tag_prefix_is_case_sensitive_sqlite,
        list_issues_tag_prefix_is_case_sensitive_postgres;
    list_issues_text_ignores_case_beyond_ascii
        => list_issues_text_ignores_case_beyond_ascii_sqlite,
        list_issues_text_ignores_case_beyond_ascii_postgres;
    retention => retention_sqlite, retention_postgres;
    payload_dictionaries => payload_dictionaries_sqlite, payload_dictionaries_postgres;
    statistics_refreshed_without_autovacuum => statistics_refreshed_without_autovacuum_sqlite,
        statistics_refreshed_without_autovacuum_postgres;
    concurrent_nodes_share_issues => concurrent_nodes_share_issues_sqlite,
        concurrent_nodes_share_issues_postgres;
    concurrent_nodes_new_fingerprints_in_opposite_order
        => concurrent_nodes_new_fingerprints_in_opposite_order_sqlite,
        concurrent_nodes_new_fingerprints_in_opposite_order_postgres;
    concurrent_nodes_same_event_stored_once => concurrent_nodes_same_event_stored_once_sqlite,
        concurrent_nodes_same_event_stored_once_postgres;
    leases => leases_sqlite, leases_postgres;
    rate_counts => rate_counts_sqlite, rate_counts_postgres;
    migrations_are_idempotent => migrations_are_idempotent_sqlite,
        migrations_are_idempotent_postgres;
    web_sessions => web_sessions_sqlite, web_sessions_postgres;
    login_failures => login_failures_sqlite, login_failures_postgres;
    users_and_passwords => users_and_passwords_sqlite, users_and_passwords_postgres;
    members_see_their_projects => members_see_their_projects_sqlite,
        members_see_their_projects_postgres;
    invites => invites_sqlite, invites_postgres;
    tokens_and_keys_are_deleted_by_their_owner => tokens_and_keys_are_deleted_by_their_owner_sqlite,
        tokens_and_keys_are_deleted_by_their_owner_postgres;
    update_issues_writes_activity => update_issues_writes_activity_sqlite,
        update_issues_writes_activity_postgres;
    resolve_in_next_release => resolve_in_next_release_sqlite, resolve_in_next_release_postgres;
    ignored_issues_come_back => ignored_issues_come_back_sqlite,
        ignored_issues_come_back_postgres;
    trace_events_of_given_projects => trace_events_of_given_projects_sqlite,
        trace_events_of_given_projects_postgres;
    rising_issues_order => rising_issues_order_sqlite, rising_issues_order_postgres;
    alert_rules_crud_and_defaults => alert_rules_crud_and_defaults_sqlite,
        alert_rules_crud_and_defaults_postgres;
    fire_alerts_respects_the_interval => fire_alerts_respects_the_interval_sqlite,
        fire_alerts_respects_the_interval_postgres;
    concurrent_fire_alerts_fire_once => concurrent_fire_alerts_fire_once_sqlite,
        concurrent_fire_alerts_fire_once_postgres;
    notification_lifecycle => notification_lifecycle_sqlite, notification_lifecycle_postgres;
    concurrent_claims_never_share_a_notification
        => concurrent_claims_never_share_a_notification_sqlite,
        concurrent_claims_never_share_a_notification_postgres;
    issue_window_counts_events_and_users => issue_window_counts_events_and_users_sqlite,
        issue_window_counts_events_and_users_postgres;
    existing_projects_get_the_default_rules => existing_projects_get_the_default_rules_sqlite,
        existing_projects_get_the_default_rules_postgres;
    grouping_is_kept_once_per_fingerprint => grouping_is_kept_once_per_fingerprint_sqlite,
        grouping_is_kept_once_per_fingerprint_postgres;
    many_values_in_one_batch => many_values_in_one_batch_sqlite,
        many_values_in_one_batch_postgres;
    user_fields_are_searched_not_counted => user_fields_are_searched_not_counted_sqlite,
        user_fields_are_searched_not_counted_postgres;
    search_only_tags_leave_the_counters => search_only_tags_leave_the_counters_sqlite,
        search_only_tags_leave_the_counters_postgres;
    artifact_chunks => artifact_chunks_sqlite, artifact_chunks_postgres;
    artifact_bundles_are_found_by_debug_id_and_url
        => artifact_bundles_are_found_by_debug_id_and_url_sqlite,
        artifact_bundles_are_found_by_debug_id_and_url_postgres;
    releases_from_events_and_sessions => releases_from_events_and_sessions_sqlite,
        releases_from_events_and_sessions_postgres;
    releases_commits_and_deploys => releases_commits_and_deploys_sqlite,
        releases_commits_and_deploys_postgres;
    next_release_resolves_for_good => next_release_resolves_for_good_sqlite,
        next_release_resolves_for_good_postgres;
    existing_events_make_their_releases => existing_events_make_their_releases_sqlite,
        existing_events_make_their_releases_postgres;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `StoreResult` unwrapping with the call named in the message.
trait Must<T> {
    fn must(self, what: &str) -> T;
}

impl<T> Must<T> for StoreResult<T> {
    fn must(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e:?}"))
    }
}

fn expect_not_found<T: Debug>(r: StoreResult<T>, what: &str) {
    match r {
        Err(StoreError::NotFound) => {}
        other => panic!("{what}: expected StoreError::NotFound, got {other:?}"),
    }
}

fn expect_conflict<T: Debug>(r: StoreResult<T>, what: &str) {
    match r {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{what}: expected StoreError::Conflict, got {other:?}"),
    }
}

async fn setup_project(store: &Arc<dyn Store>, org: &str, slug: &str) -> Project {
    let org = store
        .ensure_organization(org)
        .await
        .must("ensure_organization");
    store
        .create_project(org.id, slug, slug)
        .await
        .must("create_project")
}

/// The normalized event JSON stored as the payload of `event_id`.
fn payload_json(event_id: &str, hash: &str) -> Value {
    json!({"event_id": event_id, "message": format!("boom in {hash}"), "extra": {"n": 1}})
}

/// An event with plain defaults; the `EventExt` methods change what a test cares about.
fn ev(project_id: i64, event_id: &str, hash: &str, timestamp: f64) -> NewEvent {
    let raw = serde_json::to_vec(&payload_json(event_id, hash)).expect("event JSON");
    NewEvent {
        project_id,
        event_id: event_id.to_string(),
        hash: hash.to_string(),
        grouping: json!({"hash": hash, "components": ["exception"]}),
        title: format!("Error: {hash}"),
        culprit: "app.main in handler".to_string(),
        level: "error".to_string(),
        event_type: "error".to_string(),
        metadata: json!({"type": "Error", "value": hash}),
        platform: "python".to_string(),
        logger: None,
        timestamp,
        received: timestamp + 0.5,
        release: None,
        environment: Some("production".to_string()),
        user_key: None,
        trace_id: None,
        tags: Vec::new(),
        search: Vec::new(),
        size: raw.len() as i64,
        payload: zstd::encode_all(&raw[..], 1).expect("zstd"),
        replaces: false,
    }
}

trait EventExt {
    fn user(self, user: &str) -> Self;
    fn trace(self, trace_id: &str) -> Self;
    fn release(self, release: &str) -> Self;
    fn level(self, level: &str) -> Self;
    fn tag(self, key: &str, value: &str) -> Self;
    fn searchable(self, key: &str, value: &str) -> Self;
    fn titled(self, title: &str, culprit: &str) -> Self;
}

impl EventExt for NewEvent {
    fn user(mut self, user: &str) -> Self {
        self.user_key = Some(user.to_string());
        self
    }
    fn trace(mut self, trace_id: &str) -> Self {
        self.trace_id = Some(trace_id.to_string());
        self
    }
    fn release(mut self, release: &str) -> Self {
        self.release = Some(release.to_string());
        self
    }
    fn level(mut self, level: &str) -> Self {
        self.level = level.to_string();
        self
    }
    fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_string(), value.to_string()));
        self
    }
    fn searchable(mut self, key: &str, value: &str) -> Self {
        self.search.push((key.to_string(), value.to_string()));
        self
    }
    fn titled(mut self, title: &str, culprit: &str) -> Self {
        self.title = title.to_string();
        self.culprit = culprit.to_string();
        self
    }
}

fn batch(node: &str, position: (u64, u64), events: Vec<NewEvent>) -> DigestBatch {
    DigestBatch {
        node_id: node.to_string(),
        position: Position {
            segment: position.0,
            offset: position.1,
        },
        events,
        ..Default::default()
    }
}

async fn save(store: &Arc<dyn Store>, events: Vec<NewEvent>) -> DigestResult {
    store
        .save_batch(Arc::new(batch("test-node", (1, 0), events)))
        .await
        .must("save_batch")
}

/// The issue an event was grouped into.
async fn issue_of(store: &Arc<dyn Store>, project_id: i64, event_id: &str) -> Issue {
    let e = store
        .event(project_id, event_id)
        .await
        .must(&format!("event {event_id}"));
    store.issue(e.issue_id).await.must("issue")
}

/// Asserts an issue's tag keys as `(key, distinct values, events counted)`, in key order.
async fn assert_tag_keys(store: &Arc<dyn Store>, issue_id: i64, expected: &[(&str, i64, i64)]) {
    let keys = store.issue_tag_keys(issue_id).await.must("issue_tag_keys");
    let keys: Vec<(&str, i64, i64)> = keys
        .iter()
        .map(|k| (k.key.as_str(), k.unique_values, k.total_values))
        .collect();
    assert_eq!(keys, expected);
}

/// The IDs of the issues `filter` lists, in ascending order.
async fn issue_ids(store: &Arc<dyn Store>, filter: &IssueFilter) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .list_issues(filter)
        .await
        .must("list_issues")
        .iter()
        .map(|i| i.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn event_ids(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

fn hour_of(ts: f64) -> i64 {
    (ts as i64).div_euclid(3600) * 3600
}

// ---------------------------------------------------------------------------------------------
// 1. Accounts

async fn accounts(db: &TestDb) {
    let s = db.open().await;
    assert_eq!(s.count_users().await.must("count_users"), 0);

    let ada = s
        .create_user("ada@example.com", "hash-ada", true)
        .await
        .must("create_user ada");
    assert_eq!(ada.email, "ada@example.com");
    assert_eq!(ada.password_hash, "hash-ada");
    assert!(ada.is_superuser);
    let bob = s
        .create_user("bob@example.com", "hash-bob", false)
        .await
        .must("create_user bob");
    assert!(!bob.is_superuser);
    assert_ne!(ada.id, bob.id);
    assert_eq!(s.count_users().await.must("count_users"), 2);

    let found = s
        .user_by_email("ada@example.com")
        .await
        .must("user_by_email");
    assert_eq!(
        (found.id, found.email.as_str(), found.password_hash.as_str()),
        (ada.id, "ada@example.com", "hash-ada")
    );
    assert!(found.is_superuser);
    assert!(
        !s.user_by_email("bob@example.com")
            .await
            .must("user_by_email bob")
            .is_superuser
    );
    expect_not_found(
        s.user_by_email("nobody@example.com").await,
        "user_by_email of an unknown address",
    );

    expect_conflict(
        s.create_user("ada@example.com", "other", false).await,
        "create_user with a taken e-mail",
    );
    assert_eq!(s.count_users().await.must("count_users"), 2);

    s.create_token(ada.id, "sha256-of-token", "cli")
        .await
        .must("create_token");
    let by_token = s
        .user_by_token("sha256-of-token")
        .await
        .must("user_by_token");
    assert_eq!(by_token.id, ada.id);
    assert_eq!(by_token.email, "ada@example.com");
    assert!(by_token.is_superuser);
    expect_not_found(
        s.user_by_token("unknown").await,
        "user_by_token of an unknown token",
    );
    expect_conflict(
        s.create_token(bob.id, "sha256-of-token", "again").await,
        "create_token with a taken hash",
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Organizations and projects

async fn organizations_and_projects(db: &TestDb) {
    let s = db.open().await;
    let acme = s.ensure_organization("acme").await.must("ensure acme");
    let again = s
        .ensure_organization("acme")
        .await
        .must("ensure acme again");
    assert_eq!(acme.id, again.id, "ensure_organization twice gives one org");
    assert_eq!(acme.slug, "acme");
    assert_eq!(
        s.organization("acme").await.must("organization").id,
        acme.id
    );
    expect_not_found(
        s.organization("nope").await,
        "organization of an unknown slug",
    );
    let globex = s.ensure_organization("globex").await.must("ensure globex");
    assert_ne!(globex.id, acme.id);

    let web = s
        .create_project(acme.id, "web", "Web")
        .await
        .must("create web");
    assert_eq!(
        (
            web.org_id,
            web.org_slug.as_str(),
            web.slug.as_str(),
            web.name.as_str()
        ),
        (acme.id, "acme", "web", "Web")
    );
    assert_eq!((web.retention_max_events, web.retention_days), (None, None));
    let api = s
        .create_project(acme.id, "api", "API")
        .await
        .must("create api");
    let globex_web = s
        .create_project(globex.id, "web", "Globex Web")
        .await
        .must("the same slug in another organization");
    expect_conflict(
        s.create_project(acme.id, "web", "Again").await,
        "create_project with a slug taken in the organization",
    );

    assert_eq!(
        s.project_by_slug("acme", "web").await.must("by slug").id,
        web.id
    );
    assert_eq!(
        s.project_by_slug("globex", "web").await.must("by slug").id,
        globex_web.id
    );
    expect_not_found(
        s.project_by_slug("acme", "nope").await,
        "project_by_slug of an unknown project",
    );
    expect_not_found(
        s.project_by_slug("nope", "web").await,
        "project_by_slug of an unknown organization",
    );
    assert_eq!(s.project(api.id).await.must("project").slug, "api");
    expect_not_found(s.project(987_654).await, "project of an unknown id");
    assert_eq!(s.all_projects().await.must("all_projects").len(), 3);

    let admin = s.create_user("admin@x", "h", true).await.must("admin");
    let member = s.create_user("member@x", "h", false).await.must("member");
    let stranger = s
        .create_user("stranger@x", "h", false)
        .await
        .must("stranger");
    s.add_member(acme.id, member.id, "member")
        .await
        .must("add_member");
    s.add_member(acme.id, member.id, "admin")
        .await
        .must("add_member again (role change)");

    let slugs = |ps: Vec<Project>| {
        ps.into_iter()
            .map(|p| format!("{}/{}", p.org_slug, p.slug))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        slugs(s.projects_for(&admin).await.must("projects_for admin")),
        ["acme/api", "acme/web", "globex/web"]
    );
    assert_eq!(
        slugs(s.projects_for(&member).await.must("projects_for member")),
        ["acme/api", "acme/web"]
    );
    assert!(
        s.projects_for(&stranger)
            .await
            .must("projects_for stranger")
            .is_empty()
    );

    let org_slugs = |os: Vec<Organization>| os.into_iter().map(|o| o.slug).collect::<Vec<_>>();
    assert_eq!(
        org_slugs(s.organizations_for(&admin).await.must("orgs admin")),
        ["acme", "globex"]
    );
    assert_eq!(
        org_slugs(s.organizations_for(&member).await.must("orgs member")),
        ["acme"]
    );
    assert!(
        s.organizations_for(&stranger)
            .await
            .must("orgs stranger")
            .is_empty()
    );

    s.set_retention(web.id, Some(500), Some(30))
        .await
        .must("set_retention");
    let p = s.project(web.id).await.must("project");
    assert_eq!(
        (p.retention_max_events, p.retention_days),
        (Some(500), Some(30))
    );
    let other = s.project(api.id).await.must("project");
    assert_eq!(
        (other.retention_max_events, other.retention_days),
        (None, None),
        "set_retention touches one project"
    );
    s.set_retention(web.id, None, None)
        .await
        .must("set_retention back");
    let p = s.project(web.id).await.must("project");
    assert_eq!((p.retention_max_events, p.retention_days), (None, None));
}

// ---------------------------------------------------------------------------------------------
// 3. Keys

async fn keys(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    let k1 = s.create_key(p.id, "pk-one", "Default").await.must("key 1");
    assert_eq!(
        (k1.project_id, k1.public_key.as_str(), k1.label.as_str()),
        (p.id, "pk-one", "Default")
    );
    assert!(k1.is_active);
    assert_eq!((k1.rate_limit_count, k1.rate_limit_window), (None, None));
    let k2 = s.create_key(p.id, "pk-two", "CI").await.must("key 2");
    expect_conflict(
        s.create_key(q.id, "pk-one", "Dup").await,
        "create_key with a taken public key",
    );

    let found = s.key_by_public("pk-one").await.must("key_by_public");
    assert_eq!((found.id, found.project_id), (k1.id, p.id));
    expect_not_found(s.key_by_public("pk-none").await, "key_by_public unknown");

    let ids: Vec<i64> = s
        .keys(p.id)
        .await
        .must("keys")
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, [k1.id, k2.id]);
    assert!(s.keys(q.id).await.must("keys q").is_empty());

    let k = s
        .update_key(k1.id, "Renamed", false, Some((10, 60)))
        .await
        .must("update_key");
    assert_eq!(k.label, "Renamed");
    assert!(!k.is_active);
    assert_eq!(
        (k.rate_limit_count, k.rate_limit_window),
        (Some(10), Some(60))
    );
    let k = s.key_by_public("pk-one").await.must("key_by_public");
    assert_eq!(k.label, "Renamed");
    assert!(!k.is_active);
    assert_eq!(
        (k.rate_limit_count, k.rate_limit_window),
        (Some(10), Some(60))
    );

    let k = s
        .update_key(k1.id, "Renamed", true, None)
        .await
        .must("update_key back");
    assert!(k.is_active);
    assert_eq!((k.rate_limit_count, k.rate_limit_window), (None, None));
    let k = s.key_by_public("pk-one").await.must("key_by_public");
    assert!(k.is_active);
    assert_eq!((k.rate_limit_count, k.rate_limit_window), (None, None));
    let untouched = s.key_by_public("pk-two").await.must("key_by_public 2");
    assert_eq!(untouched.label, "CI");

    expect_not_found(
        s.update_key(987_654, "x", true, None).await,
        "update_key of an unknown id",
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Digest

async fn digest_groups_events_into_issues(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;

    let r = save(
        &s,
        vec![
            ev(p.id, "a1", "hash-a", T0 + 10.0)
                .user("u1")
                .release("1.0")
                .titled("KeyError: 'x'", "views.index"),
            ev(p.id, "a2", "hash-a", T0 + 20.0)
                .user("u2")
                .release("1.1")
                .level("warning"),
            ev(p.id, "b1", "hash-b", T0 + 30.0).user("u1"),
        ],
    )
    .await;
    assert_eq!((r.stored, r.duplicates), (3, 0));
    assert_eq!(r.new_issues.len(), 2, "two fingerprints, two new issues");
    assert!(r.regressions.is_empty());

    let a = issue_of(&s, p.id, "a1").await;
    let b = issue_of(&s, p.id, "b1").await;
    assert!(r.new_issues.contains(&a.id) && r.new_issues.contains(&b.id));
    assert_eq!(issue_of(&s, p.id, "a2").await.id, a.id);
    assert_ne!(a.id, b.id);
    assert_eq!(a.project_id, p.id);
    assert_eq!(
        BTreeSet::from([a.short_id, b.short_id]),
        BTreeSet::from([1, 2]),
        "short ids count from 1 per project"
    );
    assert_eq!(
        (a.title.as_str(), a.culprit.as_str()),
        ("KeyError: 'x'", "views.index")
    );
    assert_eq!(
        (a.issue_type.as_str(), a.platform.as_str()),
        ("error", "python")
    );
    assert_eq!(a.metadata, json!({"type": "Error", "value": "hash-a"}));
    assert_eq!(a.logger, None);
    assert_eq!((a.status.as_str(), a.is_regression), ("unresolved", false));
    assert_eq!((a.times_seen, a.user_count), (2, 2));
    assert_eq!((a.first_seen, a.last_seen), (T0 + 10.0, T0 + 20.0));
    assert_eq!(
        (a.first_release.as_deref(), a.last_release.as_deref()),
        (Some("1.0"), Some("1.1"))
    );
    assert_eq!(a.level, "warning", "the level of the latest event");
    assert_eq!((b.times_seen, b.user_count), (1, 1));
    assert_eq!((b.first_release, b.last_release), (None, None));

    // An older event moves first_seen only; a newer one without a release keeps last_release;
    // u1 again is not a new user.
    let r = save(
        &s,
        vec![
            ev(p.id, "a3", "hash-a", T0 + 5.0).user("u1").level("fatal"),
            ev(p.id, "a4", "hash-a", T0 + 40.0)
                .user("u3")
                .level("error"),
        ],
    )
    .await;
    assert_eq!((r.stored, r.duplicates), (2, 0));
    assert!(r.new_issues.is_empty(), "known fingerprint: {r:?}");
    assert!(r.regressions.is_empty());
    let a = s.issue(a.id).await.must("issue a");
    assert_eq!((a.times_seen, a.user_count), (4, 3));
    assert_eq!((a.first_seen, a.last_seen), (T0 + 5.0, T0 + 40.0));
    assert_eq!(a.level, "error");
    assert_eq!(
        (a.first_release.as_deref(), a.last_release.as_deref()),
        (Some("1.0"), Some("1.1"))
    );

    let r = save(
        &s,
        vec![
            ev(p.id, "a5", "hash-a", T0 + 50.0)
                .user("u2")
                .release("2.0")
                .level("info"),
            // Older than last_seen: neither its level nor its release is the latest.
            ev(p.id, "a6", "hash-a", T0 + 45.0)
                .user("u4")
                .release("1.9")
                .level("fatal"),
        ],
    )
    .await;
    assert_eq!(r.stored, 2);
    let a = s.issue(a.id).await.must("issue a");
    assert_eq!((a.times_seen, a.user_count), (6, 4));
    assert_eq!(a.last_seen, T0 + 50.0);
    assert_eq!(a.level, "info");
    assert_eq!(
        (a.first_release.as_deref(), a.last_release.as_deref()),
        (Some("1.0"), Some("2.0"))
    );
    // The same user on another issue counts there too.
    let b = s.issue(b.id).await.must("issue b");
    assert_eq!((b.times_seen, b.user_count), (1, 1));
    assert_eq!(s.count_events(Some(p.id)).await.must("count_events"), 7);
}

/// A project's trend: events per hour over all its issues, from the given hour on.
async fn project_hourly_adds_up_its_issues(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    save(
        &s,
        vec![
            ev(p.id, "h1", "hash-a", T0 + 10.0),
            ev(p.id, "h2", "hash-b", T0 + 20.0),
            ev(p.id, "h3", "hash-a", T0 + 3600.0 + 5.0),
            ev(q.id, "h4", "hash-a", T0 + 30.0),
        ],
    )
    .await;
    let hour = |t: f64| (t as i64).div_euclid(3600) * 3600;
    assert_eq!(
        s.project_hourly(p.id, 0).await.must("hourly"),
        vec![(hour(T0 + 10.0), 2), (hour(T0 + 3605.0), 1)]
    );
    assert_eq!(
        s.project_hourly(p.id, hour(T0 + 3605.0))
            .await
            .must("since"),
        vec![(hour(T0 + 3605.0), 1)]
    );
}

/// A reprocessed event (`replaces`) takes the place of the stored event with its id, possibly
/// in another issue; an event with that id that is not a replacement stays a duplicate.
async fn reprocessed_events_replace_the_stored_ones(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    save(&s, vec![ev(p.id, "r1", "hash-minified", T0 + 1.0)]).await;
    let before = s.event(p.id, "r1").await.must("stored");

    let mut again = ev(p.id, "r1", "hash-resolved", T0 + 1.0);
    again.replaces = true;
    let r = save(&s, vec![again]).await;
    assert_eq!((r.stored, r.duplicates), (1, 0), "{r:?}");
    assert_eq!(
        r.new_issues.len(),
        1,
        "the resolved frames make a new issue: {r:?}"
    );
    let after = s.event(p.id, "r1").await.must("replaced");
    assert_ne!(
        after.issue_id, before.issue_id,
        "the event moved to the new issue"
    );
    assert_eq!(s.count_events(Some(p.id)).await.must("count"), 1);

    // The same id again without `replaces` is a duplicate, as always.
    let r = save(&s, vec![ev(p.id, "r1", "hash-other", T0 + 2.0)]).await;
    assert_eq!((r.stored, r.duplicates), (0, 1), "{r:?}");
    assert_eq!(
        s.event(p.id, "r1").await.must("kept").issue_id,
        after.issue_id
    );
}

async fn digest_skips_duplicates(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    let r = save(
        &s,
        vec![
            ev(p.id, "d1", "hash-d", T0 + 1.0).user("u1"),
            ev(p.id, "d2", "hash-d", T0 + 2.0).user("u2"),
            ev(p.id, "d1", "hash-other", T0 + 3.0).user("u3"),
        ],
    )
    .await;
    assert_eq!(
        (r.stored, r.duplicates),
        (2, 1),
        "a repeated id in one batch"
    );
    assert_eq!(r.new_issues.len(), 1, "the duplicate made no issue: {r:?}");
    assert_eq!(s.count_events(Some(p.id)).await.must("count"), 2);
    let d = issue_of(&s, p.id, "d1").await;
    assert_eq!((d.times_seen, d.user_count), (2, 2));
    assert_eq!(d.last_seen, T0 + 2.0);

    let r = save(
        &s,
        vec![
            ev(p.id, "d2", "hash-d", T0 + 4.0).user("u4"),
            ev(p.id, "d3", "hash-d", T0 + 5.0),
            // The same id in another project is another event.
            ev(q.id, "d1", "hash-d", T0 + 6.0),
        ],
    )
    .await;
    assert_eq!(
        (r.stored, r.duplicates),
        (2, 1),
        "a repeated id in a later batch"
    );
    assert_eq!(s.count_events(Some(p.id)).await.must("count p"), 3);
    assert_eq!(s.count_events(Some(q.id)).await.must("count q"), 1);
    assert_eq!(s.count_events(None).await.must("count all"), 4);
    let d = s.issue(d.id).await.must("issue");
    assert_eq!((d.times_seen, d.user_count), (3, 2));
    // The stored d1 is the first one.
    let e = s.event(p.id, "d1").await.must("event d1");
    assert_eq!(e.timestamp, T0 + 1.0);
    assert_eq!(e.issue_id, d.id);
}

async fn digest_reopens_resolved_issues(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;

    let r = save(&s, vec![ev(p.id, "r1", "hash-r", T0 + 1.0)]).await;
    let id = r.new_issues[0];
    s.set_issue_status(id, "resolved").await.must("resolve");
    let i = s.issue(id).await.must("issue");
    assert_eq!((i.status.as_str(), i.is_regression), ("resolved", false));

    let r = save(
        &s,
        vec![
            ev(p.id, "r2", "hash-r", T0 + 2.0),
            ev(p.id, "r3", "hash-r", T0 + 3.0),
        ],
    )
    .await;
    assert_eq!(r.regressions, [id], "one regression, listed once");
    assert!(r.new_issues.is_empty());
    let i = s.issue(id).await.must("issue");
    assert_eq!((i.status.as_str(), i.is_regression), ("unresolved", true));
    assert_eq!(i.times_seen, 3);

    // Further events of an unresolved issue are no regression.
    let r = save(&s, vec![ev(p.id, "r4", "hash-r", T0 + 4.0)]).await;
    assert!(r.regressions.is_empty(), "{r:?}");

    // Ignored issues stay ignored; changing the status clears the regression flag.
    s.set_issue_status(id, "ignored").await.must("ignore");
    let i = s.issue(id).await.must("issue");
    assert_eq!((i.status.as_str(), i.is_regression), ("ignored", false));
    let r = save(&s, vec![ev(p.id, "r5", "hash-r", T0 + 5.0)]).await;
    assert!(r.regressions.is_empty(), "{r:?}");
    assert_eq!(s.issue(id).await.must("issue").status, "ignored");

    s.set_issue_status(id, "resolved")
        .await
        .must("resolve again");
    let r = save(&s, vec![ev(p.id, "r6", "hash-r", T0 + 6.0)]).await;
    assert_eq!(r.regressions, [id]);
    let i = s.issue(id).await.must("issue");
    assert_eq!(
        (i.status.as_str(), i.is_regression, i.times_seen),
        ("unresolved", true, 6)
    );

    expect_not_found(
        s.set_issue_status(987_654, "resolved").await,
        "set_issue_status of an unknown issue",
    );
}

async fn digest_counts_hours_and_tags(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;

    let r = save(
        &s,
        vec![
            ev(p.id, "h1", "hash-h", T0 + 10.0)
                .tag("browser", "Chrome")
                .tag("os", "Linux"),
            ev(p.id, "h2", "hash-h", T0 + 3700.0)
                .tag("browser", "Chrome")
                .tag("os", "Linux"),
            ev(p.id, "h3", "hash-h", T0 + 3800.0)
                .tag("browser", "Firefox")
                .tag("os", "Linux"),
            ev(p.id, "other", "hash-other", T0 + 20.0).tag("browser", "Safari"),
        ],
    )
    .await;
    let id = issue_of(&s, p.id, "h1").await.id;
    let other = issue_of(&s, p.id, "other").await.id;
    assert_eq!(r.new_issues.len(), 2);

    // A later batch adds to the same rows and may bring older timestamps.
    save(
        &s,
        vec![
            ev(p.id, "h4", "hash-h", T0 + 3900.0)
                .tag("browser", "Chrome")
                .tag("os", "Linux"),
            ev(p.id, "h5", "hash-h", T0 + 5.0).tag("browser", "Chrome"),
        ],
    )
    .await;

    let hourly = s
        .issue_hourly(&[id, other], hour_of(T0))
        .await
        .must("issue_hourly");
    assert_eq!(
        hourly.get(&id),
        Some(&vec![(hour_of(T0), 2), (hour_of(T0) + 3600, 3)])
    );
    assert_eq!(hourly.get(&other), Some(&vec![(hour_of(T0), 1)]));
    let later = s
        .issue_hourly(&[id], hour_of(T0) + 3600)
        .await
        .must("issue_hourly since");
    assert_eq!(later.get(&id), Some(&vec![(hour_of(T0) + 3600, 3)]));
    assert_eq!(later.len(), 1);
    assert!(
        s.issue_hourly(&[], 0)
            .await
            .must("issue_hourly of nothing")
            .is_empty()
    );

    assert_tag_keys(&s, id, &[("browser", 2, 5), ("os", 1, 4)]).await;

    let values = s
        .issue_tag_values(id, "browser", 10, 0)
        .await
        .must("issue_tag_values");
    let values: Vec<(&str, &str, i64, f64, f64)> = values
        .iter()
        .map(|v| {
            (
                v.key.as_str(),
                v.value.as_str(),
                v.count,
                v.first_seen,
                v.last_seen,
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("browser", "Chrome", 4, T0 + 5.0, T0 + 3900.0),
            ("browser", "Firefox", 1, T0 + 3800.0, T0 + 3800.0),
        ]
    );
    let page = s
        .issue_tag_values(id, "browser", 1, 1)
        .await
        .must("issue_tag_values page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].value, "Firefox");
    let os = s
        .issue_tag_values(id, "os", 10, 0)
        .await
        .must("issue_tag_values os");
    assert_eq!(os.len(), 1);
    assert_eq!(
        (os[0].count, os[0].first_seen, os[0].last_seen),
        (4, T0 + 10.0, T0 + 3900.0)
    );
    assert!(
        s.issue_tag_values(id, "nope", 10, 0)
            .await
            .must("unknown key")
            .is_empty()
    );
    let other_keys = s.issue_tag_keys(other).await.must("other tag keys");
    assert_eq!(other_keys.len(), 1);
    assert_eq!(
        (other_keys[0].unique_values, other_keys[0].total_values),
        (1, 1)
    );
}

async fn events_listing(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    let mut events: Vec<NewEvent> = (1..=5)
        .map(|i| ev(p.id, &format!("e{i}"), "hash-e", T0 + i as f64))
        .collect();
    events.push(ev(p.id, "f1", "hash-f", T0 + 6.0));
    events.push(ev(q.id, "q1", "hash-e", T0 + 7.0));
    // Stored out of time order.
    events.swap(0, 4);
    save(&s, events).await;
    let issue = issue_of(&s, p.id, "e3").await;

    let all = s.issue_events(issue.id, 10, 0).await.must("issue_events");
    assert_eq!(
        event_ids(&all),
        ["e5", "e4", "e3", "e2", "e1"],
        "newest first"
    );
    let page = s
        .issue_events(issue.id, 2, 2)
        .await
        .must("issue_events page");
    assert_eq!(event_ids(&page), ["e3", "e2"]);
    assert!(
        s.issue_events(issue.id, 10, 5)
            .await
            .must("past the end")
            .is_empty()
    );

    let e3 = &all[2];
    assert_eq!(
        (e3.project_id, e3.issue_id, e3.timestamp, e3.received),
        (p.id, issue.id, T0 + 3.0, T0 + 3.5)
    );
    assert_eq!(
        e3.payload,
        payload_json("e3", "hash-e"),
        "payload round trip"
    );
    assert_eq!(
        e3.grouping,
        json!({"hash": "hash-e", "components": ["exception"]})
    );
    let raw_len = serde_json::to_vec(&payload_json("e3", "hash-e"))
        .expect("json")
        .len();
    assert_eq!(e3.size, raw_len as i64);

    assert_eq!(
        s.issue_event(issue.id, EventPick::Latest)
            .await
            .must("latest")
            .event_id,
        "e5"
    );
    assert_eq!(
        s.issue_event(issue.id, EventPick::Oldest)
            .await
            .must("oldest")
            .event_id,
        "e1"
    );
    expect_not_found(
        s.issue_event(987_654, EventPick::Latest).await,
        "issue_event of an unknown issue",
    );

    let one = s.event(p.id, "e2").await.must("event");
    assert_eq!(
        (one.event_id.as_str(), one.timestamp, one.issue_id),
        ("e2", T0 + 2.0, issue.id)
    );
    assert_eq!(one.payload, payload_json("e2", "hash-e"));
    expect_not_found(s.event(p.id, "nope").await, "event of an unknown id");
    expect_not_found(s.event(q.id, "e2").await, "event of another project");

    let n = |prev: Option<&str>, next: Option<&str>| {
        (prev.map(str::to_string), next.map(str::to_string))
    };
    assert_eq!(
        s.event_neighbours(issue.project_id, issue.id, T0 + 3.0, "e3")
            .await
            .must("neighbours"),
        n(Some("e2"), Some("e4"))
    );
    assert_eq!(
        s.event_neighbours(issue.project_id, issue.id, T0 + 1.0, "e1")
            .await
            .must("neighbours"),
        n(None, Some("e2"))
    );
    assert_eq!(
        s.event_neighbours(issue.project_id, issue.id, T0 + 5.0, "e5")
            .await
            .must("neighbours"),
        n(Some("e4"), None)
    );

    let pe = s.project_events(p.id, 10, 0).await.must("project_events");
    assert_eq!(event_ids(&pe), ["f1", "e5", "e4", "e3", "e2", "e1"]);
    let pe = s
        .project_events(p.id, 2, 1)
        .await
        .must("project_events page");
    assert_eq!(event_ids(&pe), ["e5", "e4"]);
    assert_eq!(
        event_ids(&s.project_events(q.id, 10, 0).await.must("q events")),
        ["q1"]
    );

    assert_eq!(s.count_events(Some(p.id)).await.must("count p"), 6);
    assert_eq!(s.count_events(Some(q.id)).await.must("count q"), 1);
    assert_eq!(s.count_events(None).await.must("count all"), 7);
    assert_eq!(s.count_events(Some(987_654)).await.must("count none"), 0);
}

/// Events with the same timestamp: walking `event_neighbours` from the latest event must visit
/// the events in the order `issue_events` lists them (what the UI's "older"/"newer" buttons do).
async fn event_neighbours_follow_event_order(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    // Stored in this order, all at one timestamp; their ids do not sort in storage order.
    let ids = ["c-event", "a-event", "b-event"];
    save(
        &s,
        ids.iter()
            .map(|id| ev(p.id, id, "hash-tie", T0 + 1.0))
            .collect(),
    )
    .await;
    let issue = issue_of(&s, p.id, "a-event").await;
    let listed = s.issue_events(issue.id, 10, 0).await.must("issue_events");
    let listed: Vec<String> = listed.into_iter().map(|e| e.event_id).collect();
    let latest = s
        .issue_event(issue.id, EventPick::Latest)
        .await
        .must("latest");
    let oldest = s
        .issue_event(issue.id, EventPick::Oldest)
        .await
        .must("oldest");
    assert_eq!(
        Some(&latest.event_id),
        listed.first(),
        "latest is the first listed"
    );
    assert_eq!(
        Some(&oldest.event_id),
        listed.last(),
        "oldest is the last listed"
    );

    let mut walked = vec![latest.event_id.clone()];
    let (_, newer) = s
        .event_neighbours(issue.project_id, issue.id, T0 + 1.0, &latest.event_id)
        .await
        .must("neighbours of the latest");
    assert_eq!(
        newer, None,
        "the latest event {} has no newer neighbour (listed: {listed:?})",
        latest.event_id
    );
    while walked.len() <= ids.len() {
        let current = walked.last().expect("non-empty").clone();
        let (older, _) = s
            .event_neighbours(issue.project_id, issue.id, T0 + 1.0, &current)
            .await
            .must("neighbours");
        match older {
            Some(id) => walked.push(id),
            None => break,
        }
    }
    assert_eq!(
        walked, listed,
        "following 'older' from the latest event visits events in issue_events order"
    );
}

async fn reports_sessions_and_outcomes(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    let report =
        |project_id: i64, event_id: Option<&str>, comments: &str, received: f64| NewUserReport {
            project_id,
            event_id: event_id.map(str::to_string),
            name: Some("Ann".to_string()),
            email: Some("ann@example.com".to_string()),
            comments: comments.to_string(),
            received,
        };
    let sessions = vec![
        SessionCounts {
            project_id: p.id,
            release: "1.0".into(),
            environment: "production".into(),
            hour: hour_of(T0),
            started: 5,
            exited: 3,
            errored: 1,
            crashed: 1,
            abnormal: 0,
            unhandled: 1,
        };
        2
    ];
    let session_users = vec![
        SessionUser {
            project_id: p.id,
            release: "1.0".into(),
            environment: "production".into(),
            did: "user-1".into(),
            crashed: false,
        },
        SessionUser {
            project_id: p.id,
            release: "1.0".into(),
            environment: "production".into(),
            did: "user-1".into(),
            crashed: true,
        },
    ];
    let outcomes = vec![
        Outcome {
            project_id: p.id,
            hour: hour_of(T0),
            source: "client",
            category: "error".into(),
            reason: "sample_rate".into(),
            quantity: 4,
        };
        2
    ];
    let attachments = vec![NewAttachment {
        project_id: p.id,
        event_id: "r1".into(),
        filename: "log.txt".into(),
        content_type: Some("text/plain".into()),
        attachment_type: "event.attachment".into(),
        data: b"hello".to_vec(),
    }];

    let mut first = batch(
        "node-1",
        (1, 10),
        vec![
            ev(p.id, "r1", "hash-r", T0 + 1.0),
            ev(p.id, "r2", "hash-r", T0 + 2.0),
            ev(p.id, "s1", "hash-s", T0 + 3.0),
        ],
    );
    first.user_reports = vec![
        report(p.id, Some("r1"), "it broke", T0 + 10.0),
        report(p.id, Some("r2"), "again", T0 + 11.0),
        report(p.id, Some("s1"), "other issue", T0 + 12.0),
        report(p.id, None, "no event", T0 + 13.0),
        report(p.id, Some("unknown"), "unknown event", T0 + 14.0),
    ];
    first.attachments = attachments.clone();
    first.sessions = sessions.clone();
    first.session_users = session_users.clone();
    first.outcomes = outcomes.clone();
    s.save_batch(Arc::new(first)).await.must("first batch");

    let r_issue = issue_of(&s, p.id, "r1").await.id;
    let s_issue = issue_of(&s, p.id, "s1").await.id;
    let reports = s.issue_user_reports(r_issue).await.must("reports");
    let summary: Vec<(Option<&str>, &str)> = reports
        .iter()
        .map(|r| (r.event_id.as_deref(), r.comments.as_str()))
        .collect();
    assert_eq!(
        summary,
        [(Some("r2"), "again"), (Some("r1"), "it broke")],
        "newest first"
    );
    assert_eq!(reports[1].name.as_deref(), Some("Ann"));
    assert_eq!(reports[1].email.as_deref(), Some("ann@example.com"));
    assert_eq!(reports[1].date_created, T0 + 10.0);
    assert_eq!(
        s.issue_user_reports(s_issue).await.must("reports s").len(),
        1
    );

    // The same sessions and outcomes again (upserts), a late report, and a report for the same
    // event id in another project.
    let mut second = batch("node-1", (1, 20), Vec::new());
    second.user_reports = vec![
        report(p.id, Some("r1"), "still broken", T0 + 20.0),
        report(q.id, Some("r1"), "other project", T0 + 21.0),
    ];
    second.attachments = attachments;
    second.sessions = sessions;
    second.session_users = session_users;
    second.outcomes = outcomes;
    s.save_batch(Arc::new(second))
        .await
        .must("second batch with the same sessions and outcomes");
    let reports = s.issue_user_reports(r_issue).await.must("reports");
    let comments: Vec<&str> = reports.iter().map(|r| r.comments.as_str()).collect();
    assert_eq!(comments, ["still broken", "again", "it broke"]);
    assert_eq!(s.count_events(Some(p.id)).await.must("count"), 3);
}

async fn spool_position_is_saved_atomically(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    assert_eq!(
        s.spool_position("node-1").await.must("position"),
        Position::default()
    );

    s.save_batch(Arc::new(batch("node-1", (3, 4096), Vec::new())))
        .await
        .must("an empty batch");
    assert_eq!(
        s.spool_position("node-1").await.must("position"),
        Position {
            segment: 3,
            offset: 4096
        }
    );
    s.save_batch(Arc::new(batch(
        "node-1",
        (4, 10),
        vec![ev(p.id, "x1", "hash-x", T0)],
    )))
    .await
    .must("a batch");
    s.save_batch(Arc::new(batch("node-2", (1, 7), Vec::new())))
        .await
        .must("another node");
    assert_eq!(
        s.spool_position("node-1").await.must("position"),
        Position {
            segment: 4,
            offset: 10
        }
    );
    assert_eq!(
        s.spool_position("node-2").await.must("position"),
        Position {
            segment: 1,
            offset: 7
        }
    );

    // A batch that fails stores nothing, not even its position.
    let failing = batch(
        "node-1",
        (9, 9),
        vec![
            ev(p.id, "x2", "hash-x", T0 + 1.0),
            ev(987_654, "x3", "hash-x", T0 + 2.0),
        ],
    );
    let r = s.save_batch(Arc::new(failing)).await;
    assert!(
        r.is_err(),
        "a batch with an event of an unknown project fails: {r:?}"
    );
    assert_eq!(
        s.spool_position("node-1").await.must("position"),
        Position {
            segment: 4,
            offset: 10
        }
    );
    assert_eq!(s.count_events(None).await.must("count"), 1);
    expect_not_found(s.event(p.id, "x2").await, "an event of a failed batch");
    assert_eq!(issue_of(&s, p.id, "x1").await.times_seen, 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Issue lists

async fn list_issues_filters_and_sorts(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    let i1 = |id: &str, t: f64| {
        ev(p.id, id, "i1", T0 + t)
            .titled(
                "TypeError: Cannot read property 'x'",
                "app/main.js in render",
            )
            .user("u1")
            .tag("browser", "Chrome 120")
            .tag("os", "Linux")
            .tag("promo", "500 off")
    };
    let i2 = |id: &str, t: f64, user: &str| {
        ev(p.id, id, "i2", T0 + t)
            .titled("ValueError: bad input", "worker.py in run")
            .level("warning")
            .user(user)
            .tag("browser", "Firefox")
            .tag("os", "Windows")
            .tag("env", "prod")
            .tag("promo", "50%_off")
    };
    let i3 = |id: &str, t: f64, user: &str| {
        ev(p.id, id, "i3", T0 + t)
            .titled("Database TIMEOUT", "db/pool.rs in acquire")
            .level("fatal")
            .user(user)
            .tag("os", "Linux")
    };
    save(
        &s,
        vec![
            i3("c1", 50.0, "u1"),
            i1("a1", 100.0),
            i1("a2", 150.0),
            i2("b1", 200.0, "u1"),
            i1("a3", 200.0),
            i2("b2", 220.0, "u2"),
            i2("b3", 250.0, "u3"),
            i1("a4", 300.0),
            i3("c2", 400.0, "u2"),
            ev(q.id, "d1", "i4", T0 + 500.0).titled("TypeError in q", "q.js"),
        ],
    )
    .await;
    let id1 = issue_of(&s, p.id, "a1").await.id;
    let id2 = issue_of(&s, p.id, "b1").await.id;
    let id3 = issue_of(&s, p.id, "c1").await.id;
    let id4 = issue_of(&s, q.id, "d1").await.id;
    s.set_issue_status(id3, "resolved").await.must("resolve I3");
    let names: HashMap<i64, &str> =
        HashMap::from([(id1, "I1"), (id2, "I2"), (id3, "I3"), (id4, "I4")]);

    let base = IssueFilter {
        project_ids: vec![p.id],
        ..Default::default()
    };
    let list = |f: IssueFilter| {
        let s = s.clone();
        let names = names.clone();
        async move {
            let issues = s
                .list_issues(&f)
                .await
                .unwrap_or_else(|e| panic!("list_issues {f:?}: {e:?}"));
            issues
                .iter()
                .map(|i| names.get(&i.id).copied().unwrap_or("?"))
                .collect::<Vec<_>>()
        }
    };
    let set = |f: IssueFilter| {
        let list = &list;
        async move {
            let mut v = list(f).await;
            v.sort_unstable();
            v
        }
    };

    // Projects.
    assert_eq!(set(base.clone()).await, ["I1", "I2", "I3"]);
    assert_eq!(
        set(IssueFilter {
            project_ids: vec![p.id, q.id],
            ..base.clone()
        })
        .await,
        ["I1", "I2", "I3", "I4"]
    );
    assert!(
        set(IssueFilter {
            project_ids: vec![],
            ..base.clone()
        })
        .await
        .is_empty(),
        "no project, no issues"
    );
    let i = s.issue(id1).await.must("issue");
    assert_eq!((i.times_seen, i.user_count), (4, 1));
    assert_eq!(
        s.issue(id4).await.must("issue").short_id,
        1,
        "short ids per project"
    );

    // Sorts.
    let sorted = |sort| IssueFilter {
        sort,
        ..base.clone()
    };
    assert_eq!(
        list(sorted(IssueSort::LastSeen)).await,
        ["I3", "I1", "I2"],
        "last seen"
    );
    assert_eq!(
        list(sorted(IssueSort::FirstSeen)).await,
        ["I2", "I1", "I3"],
        "first seen"
    );
    assert_eq!(
        list(sorted(IssueSort::Events)).await,
        ["I1", "I2", "I3"],
        "events"
    );
    assert_eq!(
        list(sorted(IssueSort::Users)).await,
        ["I2", "I3", "I1"],
        "users"
    );

    // Limit and offset.
    let page = |limit, offset| IssueFilter {
        sort: IssueSort::Events,
        limit,
        offset,
        ..base.clone()
    };
    assert_eq!(list(page(2, 0)).await, ["I1", "I2"]);
    assert_eq!(list(page(2, 2)).await, ["I3"]);
    assert!(list(page(2, 3)).await.is_empty());
    assert_eq!(list(page(1, 1)).await, ["I2"]);

    // Statuses and levels.
    let statuses = |st: &[&str]| IssueFilter {
        statuses: st.iter().map(|s| s.to_string()).collect(),
        ..base.clone()
    };
    assert_eq!(set(statuses(&["unresolved"])).await, ["I1", "I2"]);
    assert_eq!(set(statuses(&["resolved"])).await, ["I3"]);
    assert_eq!(
        set(statuses(&["resolved", "unresolved"])).await,
        ["I1", "I2", "I3"]
    );
    assert!(set(statuses(&["ignored"])).await.is_empty());
    let levels = |ls: &[&str]| IssueFilter {
        levels: ls.iter().map(|s| s.to_string()).collect(),
        ..base.clone()
    };
    assert_eq!(set(levels(&["error"])).await, ["I1"]);
    assert_eq!(set(levels(&["error", "fatal"])).await, ["I1", "I3"]);
    assert_eq!(set(levels(&["warning"])).await, ["I2"]);

    // Tags: exact, prefix, negated, combined.
    let tags = |ts: &[(&str, &str, bool)]| IssueFilter {
        tags: ts
            .iter()
            .map(|(k, v, n)| (k.to_string(), v.to_string(), *n))
            .collect(),
        ..base.clone()
    };
    assert_eq!(set(tags(&[("browser", "Chrome 120", false)])).await, ["I1"]);
    assert!(
        set(tags(&[("browser", "Chrome", false)])).await.is_empty(),
        "exact match is exact"
    );
    assert_eq!(set(tags(&[("browser", "Chr*", false)])).await, ["I1"]);
    assert_eq!(set(tags(&[("browser", "*", false)])).await, ["I1", "I2"]);
    assert_eq!(
        set(tags(&[("browser", "Chrome 120", true)])).await,
        ["I2", "I3"],
        "negated: issues without that value, including those without the key"
    );
    assert_eq!(set(tags(&[("os", "Linux", false)])).await, ["I1", "I3"]);
    assert_eq!(
        set(tags(&[("os", "Linux", false), ("browser", "Chr*", false)])).await,
        ["I1"]
    );
    assert_eq!(
        set(tags(&[("os", "Linux", false), ("browser", "Chr*", true)])).await,
        ["I3"]
    );
    assert_eq!(
        set(tags(&[("promo", "50%*", false)])).await,
        ["I2"],
        "% in a prefix is literal"
    );
    assert_eq!(
        set(tags(&[("promo", "50%_*", false)])).await,
        ["I2"],
        "_ in a prefix is literal"
    );
    assert!(
        set(tags(&[("promo", "5_0*", false)])).await.is_empty(),
        "_ is no wildcard"
    );
    assert!(set(tags(&[("nope", "x", false)])).await.is_empty());

    // Has.
    let has = |ks: &[&str]| IssueFilter {
        has: ks.iter().map(|s| s.to_string()).collect(),
        ..base.clone()
    };
    assert_eq!(set(has(&["env"])).await, ["I2"]);
    assert_eq!(set(has(&["browser"])).await, ["I1", "I2"]);
    assert_eq!(set(has(&["browser", "env"])).await, ["I2"]);
    assert!(set(has(&["nope"])).await.is_empty());

    // Text: every word, in the title or the culprit, ignoring case.
    let text = |ws: &[&str]| IssueFilter {
        text: ws.iter().map(|s| s.to_string()).collect(),
        ..base.clone()
    };
    assert_eq!(set(text(&["typeerror"])).await, ["I1"]);
    assert_eq!(set(text(&["RENDER"])).await, ["I1"], "matches the culprit");
    assert_eq!(set(text(&["database", "Timeout"])).await, ["I3"]);
    assert!(set(text(&["timeout", "render"])).await.is_empty());
    assert_eq!(set(text(&["error"])).await, ["I1", "I2"]);
    assert!(set(text(&["%"])).await.is_empty(), "% is literal");
    assert!(set(text(&["_"])).await.is_empty(), "_ is literal");
    assert_eq!(set(text(&["main.js"])).await, ["I1"]);

    // Times.
    assert_eq!(
        set(IssueFilter {
            first_seen_after: Some(T0 + 100.0),
            ..base.clone()
        })
        .await,
        ["I1", "I2"]
    );
    assert_eq!(
        set(IssueFilter {
            last_seen_after: Some(T0 + 300.0),
            ..base.clone()
        })
        .await,
        ["I1", "I3"]
    );
    assert_eq!(
        set(IssueFilter {
            times_seen_min: Some(3),
            ..base.clone()
        })
        .await,
        ["I1", "I2"]
    );

    // Everything at once.
    assert_eq!(
        list(IssueFilter {
            project_ids: vec![p.id, q.id],
            statuses: vec!["unresolved".into()],
            levels: vec!["error".into(), "warning".into()],
            tags: vec![("os".into(), "Win*".into(), true)],
            has: vec!["browser".into()],
            text: vec!["TYPEERROR".into()],
            first_seen_after: Some(T0),
            times_seen_min: Some(2),
            sort: IssueSort::Users,
            ..Default::default()
        })
        .await,
        ["I1"]
    );
}

/// A tag prefix (`key:Val*`) matches case-sensitively, as the exact match does, on both
/// backends.
async fn list_issues_tag_prefix_is_case_sensitive(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    save(
        &s,
        vec![ev(p.id, "a1", "hash-a", T0).tag("browser", "Chrome 120")],
    )
    .await;
    let count = |value: &str| {
        let s = s.clone();
        let f = IssueFilter {
            project_ids: vec![p.id],
            tags: vec![("browser".into(), value.into(), false)],
            ..Default::default()
        };
        async move { s.list_issues(&f).await.must("list_issues").len() }
    };
    assert_eq!(count("Chrome 120").await, 1);
    assert_eq!(
        count("chrome 120").await,
        0,
        "exact match is case-sensitive"
    );
    assert_eq!(count("Chrome*").await, 1);
    assert_eq!(
        count("chrome*").await,
        0,
        "a prefix match must be case-sensitive like the exact match (backends agree)"
    );
}

/// Text search ignores case for non-ASCII letters too, on both backends.
async fn list_issues_text_ignores_case_beyond_ascii(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    save(
        &s,
        vec![ev(p.id, "a1", "hash-a", T0).titled("Échec de connexion à la base", "db")],
    )
    .await;
    let count = |word: &str| {
        let s = s.clone();
        let f = IssueFilter {
            project_ids: vec![p.id],
            text: vec![word.into()],
            ..Default::default()
        };
        async move { s.list_issues(&f).await.must("list_issues").len() }
    };
    assert_eq!(count("Échec").await, 1, "the title's own word, same case");
    assert_eq!(count("connexion").await, 1);
    assert_eq!(
        count("échec").await,
        1,
        "'échec' finds 'Échec' (case-insensitive beyond ASCII)"
    );
    assert_eq!(count("ÉCHEC").await, 1, "'ÉCHEC' finds 'Échec'");
}

// ---------------------------------------------------------------------------------------------
// 6. Retention

/// A store with projects `acme/web` (holding events e1, e2, e3 of one issue) and `acme/api`.
async fn three_events(db: &TestDb) -> (Arc<dyn Store>, Project, Project) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    save(
        &s,
        (1..=3)
            .map(|i| ev(p.id, &format!("e{i}"), "hash-a", T0 + i as f64))
            .collect(),
    )
    .await;
    (s, p, q)
}

async fn statistics_refreshed_without_autovacuum(db: &TestDb) {
    let (s, _, _) = three_events(db).await;
    let analyzed = s.refresh_statistics().await.must("refresh_statistics");
    if db._pg.is_none() {
        assert!(!analyzed, "SQLite plans without statistics");
        return;
    }
    let client = pg_admin(&db.url).await;
    let autovacuum_off: bool = client
        .query_one("SELECT current_setting('autovacuum') = 'off'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(analyzed, autovacuum_off);
    if autovacuum_off {
        // ANALYZE counted the rows; before, the planner believed the table empty.
        let rows: f32 = client
            .query_one(
                "SELECT reltuples FROM pg_class WHERE relname = 'events'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 3.0);
    }
}

async fn payload_dictionaries(db: &TestDb) {
    use crate::store::payload::{self, EncoderDict};
    let (s, p, q) = three_events(db).await;
    let now = chrono::Utc::now().timestamp() as f64;
    assert_eq!(s.payload_dict_due(now, 3).await.must("due"), [p.id]);
    assert_eq!(
        s.payload_dict_due(now, 4).await.must("due"),
        Vec::<i64>::new()
    );
    let samples = s
        .sample_payloads(p.id, 2, 1 << 20, 1 << 20)
        .await
        .must("samples");
    let samples: Vec<Value> = samples
        .iter()
        .map(|j| serde_json::from_slice(j).expect("JSON"))
        .collect();
    assert_eq!(
        samples,
        [payload_json("e3", "hash-a"), payload_json("e2", "hash-a")],
        "the newest events' JSON"
    );
    let one = s
        .sample_payloads(p.id, 3, 1 << 20, 1)
        .await
        .must("samples within a byte budget");
    assert_eq!(one.len(), 1, "the budget is reached after the first");
    let none = s
        .sample_payloads(p.id, 3, 10, 1 << 20)
        .await
        .must("samples of small events");
    assert!(none.is_empty(), "every event is larger than 10 bytes");
    assert!(s.current_payload_dicts().await.must("current").is_empty());

    let corpus: Vec<Vec<u8>> = (0..300)
        .map(|i| serde_json::to_vec(&payload_json(&format!("{i:032x}"), "hash-a")).expect("JSON"))
        .collect();
    let (id, data) = payload::train(&corpus).expect("a dictionary");
    assert!(s.add_payload_dict(p.id, id, data.clone()).await.must("add"));
    assert!(
        !s.add_payload_dict(q.id, id, data.clone())
            .await
            .must("add again"),
        "an ID is kept once"
    );
    assert_eq!(
        s.current_payload_dicts().await.must("current"),
        [(p.id, id)]
    );
    assert_eq!(s.payload_dict(id).await.must("dict"), Some(data.clone()));
    assert_eq!(s.payload_dict(id ^ 1).await.must("no dict"), None);
    // A project with a dictionary newer than its events is not due another.
    assert_eq!(
        s.payload_dict_due(now - 60.0, 1).await.must("due"),
        Vec::<i64>::new()
    );
    assert_eq!(
        s.payload_dict_due(now + 60.0, 1).await.must("due"),
        Vec::<i64>::new()
    );

    // An event compressed with the dictionary reads back, on this node and on a fresh one.
    let dict = EncoderDict::new(&data).expect("prepared");
    let mut e4 = ev(p.id, "e4", "hash-a", T0 + 4.0);
    let raw = serde_json::to_vec(&payload_json("e4", "hash-a")).expect("JSON");
    e4.payload = payload::compress(&raw, Some(&dict));
    assert_eq!(payload::dict_id(&e4.payload), Some(id));
    save(&s, vec![e4]).await;
    for store in [s.clone(), db.open().await] {
        let e = store.event(p.id, "e4").await.must("event");
        assert_eq!(e.payload, payload_json("e4", "hash-a"));
        let listed = store.project_events(p.id, 10, 0).await.must("events");
        assert_eq!(listed[0].payload, payload_json("e4", "hash-a"));
        assert_eq!(listed[1].payload, payload_json("e3", "hash-a"));
    }
}

async fn retention(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    let mut events: Vec<NewEvent> = (1..=4)
        .map(|i| {
            ev(p.id, &format!("e{i}"), "hash-a", T0 + i as f64)
                .user(&format!("u{i}"))
                .tag("k", "v")
        })
        .collect();
    events.push(ev(p.id, "e5", "hash-b", T0 + 5.0));
    events.push(ev(p.id, "e6", "hash-b", T0 + 6.0));
    events.push(ev(q.id, "q1", "hash-a", T0 + 1.0));
    events.push(ev(q.id, "q2", "hash-a", T0 + 2.0));
    save(&s, events).await;
    let a = issue_of(&s, p.id, "e1").await;
    let b = issue_of(&s, p.id, "e5").await;
    let hourly_before = s.issue_hourly(&[a.id, b.id], 0).await.must("hourly");

    assert_eq!(
        s.enforce_retention(p.id, Some(3), None)
            .await
            .must("enforce_retention max 3"),
        3
    );
    assert_eq!(s.count_events(Some(p.id)).await.must("count p"), 3);
    assert_eq!(
        event_ids(&s.project_events(p.id, 10, 0).await.must("events")),
        ["e6", "e5", "e4"],
        "the newest are kept"
    );
    assert_eq!(
        s.count_events(Some(q.id)).await.must("count q"),
        2,
        "other projects untouched"
    );
    assert_eq!(
        s.enforce_retention(p.id, Some(3), None).await.must("again"),
        0
    );
    assert_eq!(
        s.enforce_retention(p.id, Some(10), None)
            .await
            .must("under the cap"),
        0
    );
    assert_eq!(
        s.enforce_retention(p.id, None, None)
            .await
            .must("no limits"),
        0
    );

    assert_eq!(
        s.enforce_retention(p.id, None, Some(T0 + 5.5))
            .await
            .must("min_timestamp"),
        2
    );
    assert_eq!(
        event_ids(&s.project_events(p.id, 10, 0).await.must("events")),
        ["e6"]
    );

    // Issues keep their counters.
    let a2 = s.issue(a.id).await.must("issue a");
    assert_eq!(
        (a2.times_seen, a2.user_count, a2.first_seen, a2.last_seen),
        (4, 4, T0 + 1.0, T0 + 4.0)
    );
    assert_eq!(s.issue(b.id).await.must("issue b").times_seen, 2);
    assert_eq!(
        s.issue_hourly(&[a.id, b.id], 0).await.must("hourly"),
        hourly_before
    );
    let tags = s.issue_tag_values(a.id, "k", 10, 0).await.must("tags");
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].count, 4);
    expect_not_found(
        s.issue_event(a.id, EventPick::Latest).await,
        "issue_event when every event of the issue was evicted",
    );
    assert_eq!(
        s.issue_event(b.id, EventPick::Latest)
            .await
            .must("latest b")
            .event_id,
        "e6"
    );

    // Equal timestamps: the events listed first are the ones kept.
    let r = setup_project(&s, "acme", "ties").await;
    save(
        &s,
        (1..=4)
            .map(|i| ev(r.id, &format!("t{i}"), "hash-t", T0))
            .collect(),
    )
    .await;
    let before = s.project_events(r.id, 10, 0).await.must("events");
    assert_eq!(
        s.enforce_retention(r.id, Some(3), None).await.must("ties"),
        1
    );
    let after = s.project_events(r.id, 10, 0).await.must("events");
    assert_eq!(event_ids(&after), event_ids(&before)[..3]);
}

// ---------------------------------------------------------------------------------------------
// 7. Several nodes on one database

const BROWSERS: [&str; 3] = ["Chrome", "Firefox", "Safari"];

/// What the events of one fingerprint must add up to.
#[derive(Default)]
struct Expected {
    event_ids: BTreeSet<String>,
    users: BTreeSet<String>,
    tags: BTreeMap<(String, String), (i64, f64, f64)>,
    hourly: BTreeMap<i64, i64>,
    first_seen: Option<f64>,
    last_seen: Option<f64>,
}

impl Expected {
    fn add(&mut self, e: &NewEvent) {
        self.event_ids.insert(e.event_id.clone());
        if let Some(u) = &e.user_key {
            self.users.insert(u.clone());
        }
        for (k, v) in &e.tags {
            let t =
                self.tags
                    .entry((k.clone(), v.clone()))
                    .or_insert((0, e.timestamp, e.timestamp));
            t.0 += 1;
            t.1 = t.1.min(e.timestamp);
            t.2 = t.2.max(e.timestamp);
        }
        *self.hourly.entry(hour_of(e.timestamp)).or_default() += 1;
        self.first_seen = Some(self.first_seen.map_or(e.timestamp, |t| t.min(e.timestamp)));
        self.last_seen = Some(self.last_seen.map_or(e.timestamp, |t| t.max(e.timestamp)));
    }
}

/// Saves `batches[node][round]` from `stores[node]`, every node's round `r` started together.
async fn race(
    stores: &[Arc<dyn Store>],
    batches: Vec<Vec<Arc<DigestBatch>>>,
) -> Vec<Vec<StoreResult<DigestResult>>> {
    let barrier = Arc::new(Barrier::new(stores.len()));
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .zip(batches)
        .map(|(store, batches)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for batch in batches {
                    barrier.wait().await;
                    results.push(store.save_batch(batch).await);
                }
                results
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("a node's task panicked"));
    }
    out
}

/// Fails with every error of `results` listed.
fn all_ok(results: Vec<Vec<StoreResult<DigestResult>>>) -> Vec<DigestResult> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (node, rs) in results.into_iter().enumerate() {
        for (round, r) in rs.into_iter().enumerate() {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => errors.push(format!("node {node}, round {round}: {e:?}")),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "save_batch failed on concurrent nodes:\n  {}",
        errors.join("\n  ")
    );
    ok
}

/// Checks one issue against what its events add up to.
async fn check_issue(s: &Arc<dyn Store>, project_id: i64, hash: &str, want: &Expected) -> i64 {
    let any = want.event_ids.iter().next().expect("events");
    let issue = issue_of(s, project_id, any).await;
    let listed = s
        .issue_events(issue.id, 100_000, 0)
        .await
        .must("issue_events");
    let listed: BTreeSet<String> = listed.into_iter().map(|e| e.event_id).collect();
    assert_eq!(listed, want.event_ids, "{hash}: every event in one issue");
    assert_eq!(
        issue.times_seen,
        want.event_ids.len() as i64,
        "{hash}: times_seen (lost updates?)"
    );
    assert_eq!(
        issue.user_count,
        want.users.len() as i64,
        "{hash}: user_count"
    );
    assert_eq!(
        (Some(issue.first_seen), Some(issue.last_seen)),
        (want.first_seen, want.last_seen),
        "{hash}: first/last seen"
    );
    let hourly = s.issue_hourly(&[issue.id], 0).await.must("issue_hourly");
    let hourly: BTreeMap<i64, i64> = hourly
        .get(&issue.id)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_eq!(hourly, want.hourly, "{hash}: hourly counts");
    let mut tags = BTreeMap::new();
    for key in s.issue_tag_keys(issue.id).await.must("tag keys") {
        for v in s
            .issue_tag_values(issue.id, &key.key, 1000, 0)
            .await
            .must("tag values")
        {
            tags.insert((v.key, v.value), (v.count, v.first_seen, v.last_seen));
        }
    }
    assert_eq!(tags, want.tags, "{hash}: tag values (count, first, last)");
    issue.id
}

/// Two nodes save batches at the same time whose events share fingerprints (one long-lived,
/// one new each round), users and tag values: one issue per fingerprint, exact counters.
async fn concurrent_nodes_share_issues(db: &TestDb) {
    const ROUNDS: usize = 8;
    const PER_BATCH: usize = 24;
    let a = db.open().await;
    let b = db.open().await;
    let p = setup_project(&a, "acme", "web").await;
    assert_eq!(
        b.project(p.id).await.must("node b sees the project").slug,
        "web"
    );
    let run = uuid::Uuid::new_v4().simple().to_string();
    let long_hash = format!("long-{run}");

    let nodes = ["node-a", "node-b"];
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut batches: Vec<Vec<Arc<DigestBatch>>> = vec![Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let round_hash = format!("round-{round}-{run}");
        for (n, node) in nodes.iter().enumerate() {
            let events: Vec<NewEvent> = (0..PER_BATCH)
                .map(|i| {
                    let hash = if i % 2 == 0 { &long_hash } else { &round_hash };
                    let ts = T0 + (round * 1800 + i * 10 + n) as f64;
                    ev(p.id, &format!("{node}-{round}-{i}"), hash, ts)
                        .user(&format!("user-{}", i % 5))
                        .tag("browser", BROWSERS[i % 3])
                        .tag("node", node)
                })
                .collect();
            for e in &events {
                expected.entry(e.hash.clone()).or_default().add(e);
            }
            batches[n].push(Arc::new(batch(
                node,
                (round as u64 + 1, 100 * (n as u64 + 1)),
                events,
            )));
        }
    }

    let results = all_ok(race(&[a.clone(), b.clone()], batches).await);
    let stored: usize = results.iter().map(|r| r.stored).sum();
    let duplicates: usize = results.iter().map(|r| r.duplicates).sum();
    assert_eq!(
        (stored, duplicates),
        (ROUNDS * 2 * PER_BATCH, 0),
        "stored, duplicates"
    );
    let mut new_issues: Vec<i64> = results.iter().flat_map(|r| r.new_issues.clone()).collect();
    new_issues.sort_unstable();
    new_issues.dedup();
    assert_eq!(
        new_issues.len(),
        ROUNDS + 1,
        "each fingerprint is reported new once: {new_issues:?}"
    );

    let issues = a
        .list_issues(&IssueFilter {
            project_ids: vec![p.id],
            limit: 1000,
            ..Default::default()
        })
        .await
        .must("list_issues");
    assert_eq!(
        issues.len(),
        ROUNDS + 1,
        "one issue per fingerprint (long-lived + one per round)"
    );
    let short_ids: BTreeSet<i64> = issues.iter().map(|i| i.short_id).collect();
    assert_eq!(short_ids.len(), issues.len(), "short ids are unique");
    let mut ids = BTreeSet::new();
    for (hash, want) in &expected {
        // Read through both nodes.
        ids.insert(check_issue(&a, p.id, hash, want).await);
        check_issue(&b, p.id, hash, want).await;
    }
    assert_eq!(ids.len(), ROUNDS + 1);
    assert_eq!(
        a.count_events(Some(p.id)).await.must("count"),
        (ROUNDS * 2 * PER_BATCH) as i64
    );
    for (n, node) in nodes.iter().enumerate() {
        assert_eq!(
            b.spool_position(node).await.must("position"),
            Position {
                segment: ROUNDS as u64,
                offset: 100 * (n as u64 + 1)
            },
            "{node}'s spool position"
        );
    }
}

/// Two nodes each get the first events of two new fingerprints, in opposite orders. Both
/// batches must succeed (no deadlock between the per-fingerprint locks).
async fn concurrent_nodes_new_fingerprints_in_opposite_order(db: &TestDb) {
    const ROUNDS: usize = 6;
    let a = db.open().await;
    let b = db.open().await;
    let p = setup_project(&a, "acme", "web").await;
    let mut batches: Vec<Vec<Arc<DigestBatch>>> = vec![Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let (h1, h2) = (format!("one-{round}"), format!("two-{round}"));
        let t = T0 + round as f64 * 10.0;
        batches[0].push(Arc::new(batch(
            "node-a",
            (round as u64 + 1, 0),
            vec![
                ev(p.id, &format!("a1-{round}"), &h1, t),
                ev(p.id, &format!("a2-{round}"), &h2, t + 1.0),
            ],
        )));
        batches[1].push(Arc::new(batch(
            "node-b",
            (round as u64 + 1, 0),
            vec![
                ev(p.id, &format!("b2-{round}"), &h2, t + 2.0),
                ev(p.id, &format!("b1-{round}"), &h1, t + 3.0),
            ],
        )));
    }
    let results = all_ok(race(&[a.clone(), b.clone()], batches).await);
    let new_issues: usize = results.iter().map(|r| r.new_issues.len()).sum();
    assert_eq!(new_issues, 2 * ROUNDS);
    for round in 0..ROUNDS {
        let one = issue_of(&a, p.id, &format!("a1-{round}")).await;
        assert_eq!(issue_of(&a, p.id, &format!("b1-{round}")).await.id, one.id);
        assert_eq!(one.times_seen, 2);
        let two = issue_of(&a, p.id, &format!("a2-{round}")).await;
        assert_eq!(issue_of(&a, p.id, &format!("b2-{round}")).await.id, two.id);
        assert_eq!(two.times_seen, 2);
    }
}

/// The same event reaches two nodes (an SDK retry through a load balancer) and both save it at
/// once: it is stored once, the other copy counts as a duplicate, and neither batch fails.
async fn concurrent_nodes_same_event_stored_once(db: &TestDb) {
    const ROUNDS: usize = 6;
    let a = db.open().await;
    let b = db.open().await;
    let p = setup_project(&a, "acme", "web").await;
    let mut batches: Vec<Vec<Arc<DigestBatch>>> = vec![Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let t = T0 + round as f64 * 10.0;
        for (n, node) in ["node-a", "node-b"].iter().enumerate() {
            batches[n].push(Arc::new(batch(
                node,
                (round as u64 + 1, 0),
                vec![
                    ev(p.id, &format!("shared-{round}"), "hash-s", t).user("u-shared"),
                    ev(p.id, &format!("{node}-{round}"), "hash-s", t + 1.0).user(node),
                ],
            )));
        }
    }
    let results = all_ok(race(&[a.clone(), b.clone()], batches).await);
    let stored: usize = results.iter().map(|r| r.stored).sum();
    let duplicates: usize = results.iter().map(|r| r.duplicates).sum();
    assert_eq!((stored, duplicates), (3 * ROUNDS, ROUNDS));
    assert_eq!(
        a.count_events(Some(p.id)).await.must("count"),
        3 * ROUNDS as i64
    );
    let issue = issue_of(&a, p.id, "shared-0").await;
    assert_eq!((issue.times_seen, issue.user_count), (3 * ROUNDS as i64, 3));
}

// ---------------------------------------------------------------------------------------------
// Cluster coordination: leases and shared rate-limit counts

async fn leases(db: &TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    assert!(a.try_lease("sweep", "node-a", 60.0).await.must("take"));
    assert!(
        !b.try_lease("sweep", "node-b", 60.0)
            .await
            .must("held elsewhere"),
        "another node's unexpired lease"
    );
    assert!(a.try_lease("sweep", "node-a", 60.0).await.must("renew"));
    assert!(
        b.try_lease("other", "node-b", 60.0)
            .await
            .must("another lease")
    );
    // An expired lease passes to whoever asks.
    assert!(
        a.try_lease("old", "node-a", -1.0)
            .await
            .must("expired at once")
    );
    assert!(b.try_lease("old", "node-b", 60.0).await.must("take over"));
    assert!(!a.try_lease("old", "node-a", 60.0).await.must("lost it"));

    // Two nodes asking at once: exactly one gets each lease.
    for round in 0..10 {
        let name = format!("race-{round}");
        let (ra, rb) = tokio::join!(
            tokio::spawn({
                let (a, name) = (a.clone(), name.clone());
                async move { a.try_lease(&name, "node-a", 60.0).await }
            }),
            tokio::spawn({
                let (b, name) = (b.clone(), name.clone());
                async move { b.try_lease(&name, "node-b", 60.0).await }
            }),
        );
        let ra = ra.expect("task").must("node a races");
        let rb = rb.expect("task").must("node b races");
        assert!(ra ^ rb, "{name}: exactly one holder (a: {ra}, b: {rb})");
    }
}

async fn rate_counts(db: &TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let w = 1_700_000_000;
    assert_eq!(a.add_rate_count(1, w, 3).await.must("add"), 3);
    assert_eq!(b.add_rate_count(1, w, 2).await.must("add on node b"), 5);
    assert_eq!(a.add_rate_count(1, w + 60, 1).await.must("next window"), 1);
    assert_eq!(a.add_rate_count(2, w, 7).await.must("other key"), 7);

    assert_eq!(
        a.try_add_rate_count(1, w, 4, 10).await.must("within"),
        Some(9)
    );
    assert_eq!(a.try_add_rate_count(1, w, 2, 10).await.must("beyond"), None);
    assert_eq!(
        a.try_add_rate_count(1, w, 1, 10).await.must("up to"),
        Some(10)
    );
    assert_eq!(
        a.add_rate_count(1, w, 0).await.must("unchanged"),
        10,
        "a refused add leaves the count"
    );
    assert_eq!(
        a.try_add_rate_count(3, w, 5, 5).await.must("fresh window"),
        Some(5)
    );
    assert_eq!(
        a.try_add_rate_count(4, w, 6, 5)
            .await
            .must("fresh, too many"),
        None
    );
    assert_eq!(a.add_rate_count(4, w, 0).await.must("nothing added"), 0);

    a.prune_rate_counts(w + 1).await.must("prune");
    assert_eq!(
        a.add_rate_count(1, w, 1).await.must("pruned window"),
        1,
        "windows before the cut are gone"
    );
    assert_eq!(
        a.add_rate_count(1, w + 60, 0).await.must("kept window"),
        1,
        "later windows stay"
    );

    // Two nodes admitting one event at a time against one limit: never more than the limit.
    const LIMIT: i64 = 50;
    let admit = |store: Arc<dyn Store>| {
        tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..40 {
                if store
                    .try_add_rate_count(9, w, 1, LIMIT)
                    .await
                    .must("try_add_rate_count")
                    .is_some()
                {
                    admitted += 1;
                }
            }
            admitted
        })
    };
    let (na, nb) = tokio::join!(admit(a.clone()), admit(b.clone()));
    let (na, nb) = (na.expect("task"), nb.expect("task"));
    assert_eq!(na + nb, LIMIT, "admitted by a ({na}) and b ({nb})");
    assert_eq!(a.add_rate_count(9, w, 0).await.must("total"), LIMIT);
}

// ---------------------------------------------------------------------------------------------
// Migrations

async fn migrations_are_idempotent(db: &TestDb) {
    // Two nodes starting at once on a fresh database both migrate (or wait) and succeed.
    let (first, second) = tokio::join!(
        tokio::spawn(open_owned(db.url.clone())),
        tokio::spawn(open_owned(db.url.clone())),
    );
    let first = first
        .expect("open task")
        .unwrap_or_else(|e| panic!("first of two concurrent opens: {e:?}"));
    let second = second
        .expect("open task")
        .unwrap_or_else(|e| panic!("second of two concurrent opens: {e:?}"));
    assert!(first.healthy().await && second.healthy().await);

    let user = first
        .create_user("ada@example.com", "h", true)
        .await
        .must("create_user");
    let p = setup_project(&second, "acme", "web").await;
    save(&first, vec![ev(p.id, "m1", "hash-m", T0)]).await;
    drop((first, second));

    // Opening again finds everything and migrates nothing twice.
    let again = db.open().await;
    assert!(again.healthy().await);
    assert_eq!(
        again
            .user_by_email("ada@example.com")
            .await
            .must("user after reopening")
            .id,
        user.id
    );
    assert_eq!(again.count_events(None).await.must("count"), 1);
    let third = db.open().await;
    assert_eq!(third.count_users().await.must("count_users"), 1);
    assert_eq!(
        third
            .project_by_slug("acme", "web")
            .await
            .must("project")
            .id,
        p.id
    );
    assert_eq!(third.all_projects().await.must("all_projects").len(), 1);
}

async fn open_owned(url: String) -> StoreResult<Arc<dyn Store>> {
    open(&url).await
}

// ---------------------------------------------------------------------------------------------
// 8. The web UI: sessions, logins, members, invites, tokens

async fn web_sessions(db: &TestDb) {
    let s = db.open().await;
    let ada = s.create_user("ada@x", "h", false).await.must("user");
    s.create_session("sess-1", ada.id, "csrf-1", T0, T0 + 100.0)
        .await
        .must("create_session");
    s.create_session("sess-2", ada.id, "csrf-2", T0, T0 + 1000.0)
        .await
        .must("create_session 2");
    expect_conflict(
        s.create_session("sess-1", ada.id, "x", T0, T0 + 1.0).await,
        "create_session with a taken id",
    );

    let w = s.session("sess-1", T0 + 50.0).await.must("session");
    assert_eq!((w.user.id, w.user.email.as_str()), (ada.id, "ada@x"));
    assert_eq!((w.csrf.as_str(), w.expires), ("csrf-1", T0 + 100.0));
    expect_not_found(s.session("sess-1", T0 + 100.0).await, "expired at now");
    expect_not_found(s.session("sess-1", T0 + 150.0).await, "expired");
    expect_not_found(s.session("nope", T0).await, "unknown session");

    // Another node sees the same session.
    let other = db.open().await;
    assert_eq!(
        other.session("sess-2", T0).await.must("other node").csrf,
        "csrf-2"
    );

    // Pruning removes what expired, keeps the rest.
    s.prune_web(T0 + 500.0, 0.0).await.must("prune_web");
    expect_not_found(s.session("sess-1", T0).await, "pruned");
    assert_eq!(s.session("sess-2", T0).await.must("kept").csrf, "csrf-2");

    s.delete_session("sess-2").await.must("delete_session");
    expect_not_found(s.session("sess-2", T0).await, "deleted");
    s.delete_session("sess-2")
        .await
        .must("delete_session again is no error");
}

async fn login_failures(db: &TestDb) {
    let s = db.open().await;
    for t in [10.0, 20.0, 30.0] {
        s.record_login_failure("ada@x", T0 + t)
            .await
            .must("record_login_failure");
    }
    s.record_login_failure("ip:10.0.0.1", T0 + 30.0)
        .await
        .must("record other key");
    let since = |key: &'static str, t: f64| {
        let s = s.clone();
        async move { s.login_failures_since(key, T0 + t).await.must("since") }
    };
    assert_eq!(since("ada@x", 0.0).await, 3);
    assert_eq!(since("ada@x", 20.0).await, 2, "at `since` counts");
    assert_eq!(since("ada@x", 31.0).await, 0);
    assert_eq!(since("bob@x", 0.0).await, 0);

    s.prune_web(T0, T0 + 15.0).await.must("prune_web");
    assert_eq!(
        since("ada@x", 0.0).await,
        2,
        "failures before `before` pruned"
    );

    s.clear_login_failures("ada@x").await.must("clear");
    assert_eq!(since("ada@x", 0.0).await, 0);
    assert_eq!(since("ip:10.0.0.1", 0.0).await, 1, "other keys kept");
}

async fn users_and_passwords(db: &TestDb) {
    let s = db.open().await;
    let bob = s.create_user("bob@x", "h1", false).await.must("bob");
    let ada = s.create_user("ada@x", "h2", true).await.must("ada");
    let u = s.user(bob.id).await.must("user");
    assert_eq!(
        (u.email.as_str(), u.password_hash.as_str()),
        ("bob@x", "h1")
    );
    assert!(!u.is_superuser);
    expect_not_found(s.user(987_654).await, "user of an unknown id");
    let emails: Vec<String> = s
        .users()
        .await
        .must("users")
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(emails, ["ada@x", "bob@x"], "by e-mail");

    s.set_password(bob.id, "h3").await.must("set_password");
    assert_eq!(s.user(bob.id).await.must("user").password_hash, "h3");
    assert_eq!(s.user(ada.id).await.must("user").password_hash, "h2");
    expect_not_found(
        s.set_password(987_654, "x").await,
        "set_password of an unknown user",
    );
}

fn project_slugs(ps: &[Project]) -> Vec<String> {
    ps.iter()
        .map(|p| format!("{}/{}", p.org_slug, p.slug))
        .collect()
}

fn emails(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.email.as_str()).collect()
}

async fn members_see_their_projects(db: &TestDb) {
    let s = db.open().await;
    let web = setup_project(&s, "acme", "web").await;
    let api = setup_project(&s, "acme", "api").await;
    let other = setup_project(&s, "globex", "shop").await;
    let acme = web.org_id;
    let globex = other.org_id;

    let root = s.create_user("root@x", "h", true).await.must("root");
    let owner = s.create_user("owner@x", "h", false).await.must("owner");
    let admin = s.create_user("admin@x", "h", false).await.must("admin");
    let member = s.create_user("member@x", "h", false).await.must("member");
    let idle = s.create_user("idle@x", "h", false).await.must("idle");
    for (user, role) in [(&owner, "owner"), (&admin, "admin"), (&member, "member")] {
        s.add_member(acme, user.id, role).await.must("add_member");
    }
    s.add_member(acme, idle.id, "member").await.must("add idle");
    s.add_member(globex, member.id, "member")
        .await
        .must("member of globex");

    let visible = |user: User| {
        let s = s.clone();
        async move { project_slugs(&s.projects_for(&user).await.must("projects_for")) }
    };
    assert_eq!(
        visible(root.clone()).await,
        ["acme/api", "acme/web", "globex/shop"]
    );
    assert_eq!(visible(owner.clone()).await, ["acme/api", "acme/web"]);
    assert_eq!(visible(admin.clone()).await, ["acme/api", "acme/web"]);
    assert!(
        visible(member.clone()).await.is_empty(),
        "a member sees no project before being added"
    );

    s.set_project_member(web.id, member.id, true)
        .await
        .must("add to web");
    s.set_project_member(web.id, member.id, true)
        .await
        .must("add to web again (idempotent)");
    s.set_project_member(other.id, member.id, true)
        .await
        .must("add to globex/shop");
    s.set_project_member(api.id, member.id, false)
        .await
        .must("remove from a project never joined");
    assert_eq!(visible(member.clone()).await, ["acme/web", "globex/shop"]);
    assert!(visible(idle.clone()).await.is_empty());
    let orgs: Vec<String> = s
        .organizations_for(&member)
        .await
        .must("organizations_for")
        .into_iter()
        .map(|o| o.slug)
        .collect();
    assert_eq!(orgs, ["acme", "globex"]);
    assert_eq!(
        s.organizations_for(&idle).await.must("orgs idle").len(),
        1,
        "a member without projects still belongs to the organization"
    );

    assert_eq!(
        emails(&s.project_members(web.id).await.must("project_members web")),
        ["admin@x", "member@x", "owner@x", "root@x"]
    );
    assert_eq!(
        emails(&s.project_members(api.id).await.must("project_members api")),
        ["admin@x", "owner@x", "root@x"]
    );

    let members = s.org_members(acme).await.must("org_members");
    let summary: Vec<(&str, &str, Vec<i64>)> = members
        .iter()
        .map(|m| {
            (
                m.user.email.as_str(),
                m.role.as_str(),
                m.project_ids.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("admin@x", "admin", vec![]),
            ("idle@x", "member", vec![]),
            ("member@x", "member", vec![web.id]),
            ("owner@x", "owner", vec![]),
        ],
        "by e-mail, with the projects of that organization only"
    );

    // Upgraded to admin: every project of the organization; back to member: only its own.
    s.add_member(acme, member.id, "admin").await.must("upgrade");
    assert_eq!(
        visible(member.clone()).await,
        ["acme/api", "acme/web", "globex/shop"]
    );
    s.add_member(acme, member.id, "member")
        .await
        .must("downgrade");
    assert_eq!(visible(member.clone()).await, ["acme/web", "globex/shop"]);

    s.set_project_member(web.id, member.id, false)
        .await
        .must("remove from web");
    assert_eq!(visible(member.clone()).await, ["globex/shop"]);

    // Removing a member drops their project memberships in that organization only.
    s.set_project_member(web.id, member.id, true)
        .await
        .must("add to web");
    s.remove_member(acme, member.id).await.must("remove_member");
    assert_eq!(visible(member.clone()).await, ["globex/shop"]);
    s.add_member(acme, member.id, "member").await.must("back");
    assert!(
        s.org_members(acme)
            .await
            .must("org_members")
            .iter()
            .find(|m| m.user.id == member.id)
            .expect("member again")
            .project_ids
            .is_empty(),
        "project memberships did not survive the removal"
    );
    assert_eq!(visible(member.clone()).await, ["globex/shop"]);
    expect_not_found(
        s.remove_member(acme, root.id).await,
        "remove_member of a non-member",
    );

    // The API's checks follow the rule: issues of an invisible project are not listed to them.
    assert!(
        !project_slugs(&s.projects_for(&member).await.must("projects_for"))
            .contains(&"acme/api".to_string())
    );
}

async fn invites(db: &TestDb) {
    let s = db.open().await;
    let web = setup_project(&s, "acme", "web").await;
    let api = setup_project(&s, "acme", "api").await;
    let foreign = setup_project(&s, "globex", "shop").await;
    let acme = web.org_id;
    let owner = s.create_user("owner@x", "h", false).await.must("owner");
    s.add_member(acme, owner.id, "owner").await.must("owner");
    let bob = s.create_user("bob@x", "h", false).await.must("bob");

    let new = |token: &'static str, role: &'static str, ids: &'static [i64], now: f64| NewInvite {
        token_hash: token,
        org_id: acme,
        role,
        project_ids: ids,
        email: None,
        created_by: owner.id,
        now,
        expires: now + 1000.0,
    };
    let ids: &'static [i64] = Box::leak(vec![web.id, foreign.id].into_boxed_slice());
    let first = s
        .create_invite(NewInvite {
            email: Some("bob@x"),
            ..new("tok-1", "member", ids, T0)
        })
        .await
        .must("create_invite");
    let second = s
        .create_invite(new("tok-2", "admin", &[], T0 + 10.0))
        .await
        .must("create_invite 2");
    let expired = s
        .create_invite(NewInvite {
            expires: T0 + 5.0,
            ..new("tok-3", "member", &[], T0 + 1.0)
        })
        .await
        .must("create_invite 3");
    expect_conflict(
        s.create_invite(new("tok-1", "member", &[], T0)).await,
        "create_invite with a taken token",
    );

    let i = s.invite("tok-1").await.must("invite");
    assert_eq!(
        (
            i.id,
            i.org_id,
            i.org_slug.as_str(),
            i.role.as_str(),
            i.project_ids.clone(),
            i.email.as_deref(),
            i.created_by,
            i.date_created,
            i.expires,
            i.accepted_by
        ),
        (
            first,
            acme,
            "acme",
            "member",
            vec![web.id, foreign.id],
            Some("bob@x"),
            owner.id,
            T0,
            T0 + 1000.0,
            None
        )
    );
    expect_not_found(s.invite("nope").await, "invite of an unknown token");
    let listed: Vec<i64> = s
        .invites(acme)
        .await
        .must("invites")
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, [second, expired, first], "newest first");

    let accepted = s
        .accept_invite("tok-1", bob.id, T0 + 20.0)
        .await
        .must("accept_invite");
    assert_eq!((accepted.id, accepted.accepted_by), (first, Some(bob.id)));
    assert_eq!(
        s.invite("tok-1").await.must("invite").accepted_by,
        Some(bob.id)
    );
    assert_eq!(
        project_slugs(&s.projects_for(&bob).await.must("projects_for")),
        ["acme/web"],
        "the invite's projects of its organization"
    );
    let m = s.org_members(acme).await.must("org_members");
    let m = m
        .iter()
        .find(|m| m.user.id == bob.id)
        .expect("bob is a member");
    assert_eq!(
        (m.role.as_str(), m.project_ids.clone()),
        ("member", vec![web.id])
    );
    expect_conflict(
        s.accept_invite("tok-1", bob.id, T0 + 21.0).await,
        "accepting twice",
    );
    expect_conflict(
        s.accept_invite("tok-3", bob.id, T0 + 5.0).await,
        "accepting at its expiry",
    );
    expect_not_found(
        s.accept_invite("nope", bob.id, T0).await,
        "accepting an unknown token",
    );
    let listed: Vec<i64> = s
        .invites(acme)
        .await
        .must("invites")
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, [second, expired], "accepted invites are not listed");

    // An admin invite upgrades a member; an existing owner keeps the higher role.
    s.accept_invite("tok-2", bob.id, T0 + 30.0)
        .await
        .must("accept admin invite");
    assert_eq!(
        project_slugs(&s.projects_for(&bob).await.must("projects_for")),
        ["acme/api", "acme/web"]
    );
    let t4 = s
        .create_invite(new("tok-4", "member", &[], T0 + 40.0))
        .await
        .must("create_invite 4");
    s.accept_invite("tok-4", owner.id, T0 + 41.0)
        .await
        .must("owner accepts a member invite");
    let roles: HashMap<i64, String> = s
        .org_members(acme)
        .await
        .must("org_members")
        .into_iter()
        .map(|m| (m.user.id, m.role))
        .collect();
    assert_eq!(roles[&owner.id], "owner");
    assert_eq!(roles[&bob.id], "admin");
    assert!(t4 > 0);

    // Deleting: only the organization's own invitations.
    expect_not_found(
        s.delete_invite(foreign.org_id, expired).await,
        "delete_invite of another organization",
    );
    s.delete_invite(acme, expired).await.must("delete_invite");
    expect_not_found(s.invite("tok-3").await, "deleted invite");
    assert!(s.invites(acme).await.must("invites").is_empty());
    let _ = api;
}

async fn tokens_and_keys_are_deleted_by_their_owner(db: &TestDb) {
    let s = db.open().await;
    let ada = s.create_user("ada@x", "h", false).await.must("ada");
    let bob = s.create_user("bob@x", "h", false).await.must("bob");
    s.create_token(ada.id, "hash-a1", "first")
        .await
        .must("token");
    s.create_token(ada.id, "hash-a2", "second")
        .await
        .must("token");
    s.create_token(bob.id, "hash-b1", "bob's")
        .await
        .must("token");
    let ada_tokens = s.tokens(ada.id).await.must("tokens");
    let names: Vec<&str> = ada_tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["second", "first"], "newest first");
    assert!(ada_tokens[0].date_created >= ada_tokens[1].date_created);
    let bob_tokens = s.tokens(bob.id).await.must("tokens bob");
    assert_eq!(bob_tokens.len(), 1);

    expect_not_found(
        s.delete_token(ada.id, bob_tokens[0].id).await,
        "delete_token of another user's token",
    );
    assert_eq!(
        s.user_by_token("hash-b1").await.must("still there").id,
        bob.id
    );
    s.delete_token(ada.id, ada_tokens[1].id)
        .await
        .must("delete_token");
    expect_not_found(s.user_by_token("hash-a1").await, "deleted token");
    assert_eq!(
        s.user_by_token("hash-a2").await.must("other token").id,
        ada.id
    );
    let names: Vec<String> = s
        .tokens(ada.id)
        .await
        .must("tokens")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["second"]);

    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    let k = s.create_key(p.id, "pk-1", "Default").await.must("key");
    s.create_key(p.id, "pk-2", "Other").await.must("key 2");
    expect_not_found(
        s.delete_key(q.id, k.id).await,
        "delete_key through another project",
    );
    s.delete_key(p.id, k.id).await.must("delete_key");
    expect_not_found(s.key_by_public("pk-1").await, "deleted key");
    assert_eq!(s.keys(p.id).await.must("keys").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. Issue workflow: changes, history, resolve in next release, ignores

/// `(kind, user email, data)` of an issue's history, newest first.
async fn history(s: &Arc<dyn Store>, issue_id: i64) -> Vec<(String, Option<String>, Value)> {
    s.issue_activity(issue_id, 100)
        .await
        .must("issue_activity")
        .into_iter()
        .map(|a| {
            assert_eq!(a.issue_id, issue_id);
            (a.kind, a.user_email, a.data)
        })
        .collect()
}

async fn update_issues_writes_activity(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let ada = s.create_user("ada@x", "h", false).await.must("ada");
    let bob = s.create_user("bob@x", "h", false).await.must("bob");
    save(
        &s,
        vec![
            ev(p.id, "a1", "hash-a", T0 + 1.0).release("1.0").user("u1"),
            ev(p.id, "a2", "hash-a", T0 + 2.0).release("1.1").user("u2"),
            ev(p.id, "b1", "hash-b", T0 + 3.0),
        ],
    )
    .await;
    let a = issue_of(&s, p.id, "a1").await.id;
    let b = issue_of(&s, p.id, "b1").await.id;
    let i = s.issue(a).await.must("issue");
    assert_eq!(
        (
            i.assignee_id,
            i.assignee_email.clone(),
            i.resolved_in_release.clone(),
            i.ignore_until,
            i.ignore_until_events,
            i.ignore_until_users
        ),
        (None, None, None, None, None, None)
    );
    assert_eq!(
        history(&s, a).await,
        [("first_seen".to_string(), None, Value::Null)],
        "a new issue starts its history"
    );

    let at = |n: f64| T0 + 1000.0 + n;
    s.update_issues(&[a, b], &IssueChange::Resolve, Some(ada.id), at(1.0))
        .await
        .must("resolve");
    for id in [a, b] {
        let i = s.issue(id).await.must("issue");
        assert_eq!(
            (i.status.as_str(), i.resolved_in_release),
            ("resolved", None)
        );
    }

    s.update_issues(
        &[a],
        &IssueChange::ResolveInNextRelease,
        Some(ada.id),
        at(2.0),
    )
    .await
    .must("resolve in next release");
    let i = s.issue(a).await.must("issue");
    assert_eq!(
        (i.status.as_str(), i.resolved_in_release.as_deref()),
        ("resolved", Some("1.1")),
        "the issue's last release at the time"
    );

    let rule = IgnoreRule {
        until: Some(at(100.0)),
        more_events: Some(10),
        more_users: Some(3),
    };
    s.update_issues(&[a], &IssueChange::Ignore(rule), Some(bob.id), at(3.0))
        .await
        .must("ignore");
    let i = s.issue(a).await.must("issue");
    assert_eq!(
        (
            i.status.as_str(),
            i.resolved_in_release.clone(),
            i.ignore_until,
            i.ignore_until_events,
            i.ignore_until_users
        ),
        ("ignored", None, Some(at(100.0)), Some(12), Some(5)),
        "absolute thresholds: times_seen 2 + 10, user_count 2 + 3"
    );

    s.update_issues(&[a], &IssueChange::Unresolve, None, at(4.0))
        .await
        .must("unresolve");
    let i = s.issue(a).await.must("issue");
    assert_eq!(
        (
            i.status.as_str(),
            i.ignore_until,
            i.ignore_until_events,
            i.ignore_until_users
        ),
        ("unresolved", None, None, None),
        "leaving ignored clears the thresholds"
    );

    s.update_issues(
        &[a, b],
        &IssueChange::Assign(Some(bob.id)),
        Some(ada.id),
        at(5.0),
    )
    .await
    .must("assign");
    let i = s.issue(a).await.must("issue");
    assert_eq!(
        (i.assignee_id, i.assignee_email.as_deref()),
        (Some(bob.id), Some("bob@x"))
    );
    let assigned = |user: i64| IssueFilter {
        project_ids: vec![p.id],
        assignee: Some(user),
        ..Default::default()
    };
    let listed = s.list_issues(&assigned(bob.id)).await.must("list_issues");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].assignee_email.as_deref(), Some("bob@x"));
    assert!(
        s.list_issues(&assigned(ada.id))
            .await
            .must("list")
            .is_empty()
    );

    s.update_issues(&[b], &IssueChange::Assign(None), Some(ada.id), at(6.0))
        .await
        .must("unassign");
    assert_eq!(s.issue(b).await.must("issue").assignee_id, None);
    assert_eq!(s.list_issues(&assigned(bob.id)).await.must("list").len(), 1);

    s.add_comment(a, ada.id, "looking into it", at(7.0))
        .await
        .must("add_comment");
    expect_not_found(
        s.add_comment(987_654, ada.id, "x", at(7.0)).await,
        "add_comment to an unknown issue",
    );

    let ada_e = Some("ada@x".to_string());
    let bob_e = Some("bob@x".to_string());
    assert_eq!(
        history(&s, a).await,
        [
            (
                "note".into(),
                ada_e.clone(),
                json!({"text": "looking into it"})
            ),
            (
                "assigned".into(),
                ada_e.clone(),
                json!({"user_id": bob.id, "email": "bob@x"})
            ),
            ("unresolved".into(), None, Value::Null),
            (
                "ignored".into(),
                bob_e.clone(),
                json!({"until": at(100.0), "events": 10, "users": 3})
            ),
            (
                "resolved_in_next_release".into(),
                ada_e.clone(),
                json!({"release": "1.1"})
            ),
            ("resolved".into(), ada_e.clone(), Value::Null),
            ("first_seen".into(), None, Value::Null),
        ]
    );
    let b_history = history(&s, b).await;
    assert_eq!(
        b_history[0],
        (
            "assigned".into(),
            ada_e.clone(),
            json!({"user_id": null, "email": null})
        )
    );
    assert_eq!(
        b_history.len(),
        4,
        "first_seen, resolved, assigned, unassigned"
    );
    let limited = s.issue_activity(a, 2).await.must("issue_activity limit");
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].kind, "note");
    assert_eq!(limited[0].user_id, Some(ada.id));
    assert_eq!(limited[0].date_created, at(7.0));

    // All or nothing: an unknown id fails the whole change.
    expect_not_found(
        s.update_issues(&[a, 987_654], &IssueChange::Resolve, None, at(8.0))
            .await,
        "update_issues with an unknown issue",
    );
    assert_eq!(s.issue(a).await.must("issue").status, "unresolved");
    assert_eq!(history(&s, a).await.len(), 7, "no activity written");
    expect_not_found(
        s.update_issues(&[a], &IssueChange::Assign(Some(987_654)), None, at(8.0))
            .await,
        "assigning to an unknown user",
    );

    // The API's status change is the same change, without an actor.
    s.set_issue_status(a, "ignored")
        .await
        .must("set_issue_status");
    let i = s.issue(a).await.must("issue");
    assert_eq!(
        (i.status.as_str(), i.ignore_until, i.ignore_until_events),
        ("ignored", None, None),
        "ignored forever"
    );
    let top = s.issue_activity(a, 1).await.must("issue_activity");
    assert_eq!(
        (top[0].kind.as_str(), top[0].user_id, &top[0].data),
        (
            "ignored",
            None,
            &json!({"until": null, "events": null, "users": null})
        )
    );
    assert!(s.set_issue_status(a, "bogus").await.is_err());
}

async fn resolve_in_next_release(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let r = save(&s, vec![ev(p.id, "n1", "hash-n", T0 + 1.0).release("1.0")]).await;
    let id = r.new_issues[0];
    s.update_issues(&[id], &IssueChange::ResolveInNextRelease, None, T0 + 2.0)
        .await
        .must("resolve in next release");

    // More events of 1.0 (the release current when it was resolved): still resolved.
    let r = save(
        &s,
        vec![
            ev(p.id, "n2", "hash-n", T0 + 3.0).release("1.0"),
            ev(p.id, "n3", "hash-n", T0 + 4.0).release("1.0"),
        ],
    )
    .await;
    assert!(r.regressions.is_empty(), "{r:?}");
    let i = s.issue(id).await.must("issue");
    assert_eq!(
        (
            i.status.as_str(),
            i.is_regression,
            i.times_seen,
            i.resolved_in_release.as_deref()
        ),
        ("resolved", false, 3, Some("1.0")),
        "stays resolved, counts grow"
    );

    // An event of another release in the same batch as one of 1.0: a regression.
    let r = save(
        &s,
        vec![
            ev(p.id, "n4", "hash-n", T0 + 5.0).release("1.0"),
            ev(p.id, "n5", "hash-n", T0 + 6.0).release("1.1"),
        ],
    )
    .await;
    assert_eq!(r.regressions, [id]);
    let i = s.issue(id).await.must("issue");
    assert_eq!(
        (
            i.status.as_str(),
            i.is_regression,
            i.times_seen,
            i.resolved_in_release
        ),
        ("unresolved", true, 5, None)
    );
    let kinds: Vec<String> = history(&s, id).await.into_iter().map(|h| h.0).collect();
    assert_eq!(
        kinds,
        ["regression", "resolved_in_next_release", "first_seen"]
    );

    // Resolved again in the next release: an event without a release also reopens it.
    s.update_issues(&[id], &IssueChange::ResolveInNextRelease, None, T0 + 7.0)
        .await
        .must("resolve in next release again");
    assert_eq!(
        s.issue(id)
            .await
            .must("issue")
            .resolved_in_release
            .as_deref(),
        Some("1.1")
    );
    let r = save(&s, vec![ev(p.id, "n6", "hash-n", T0 + 8.0)]).await;
    assert_eq!(r.regressions, [id]);

    // A plain resolve regresses on any release.
    s.update_issues(&[id], &IssueChange::Resolve, None, T0 + 9.0)
        .await
        .must("resolve");
    let r = save(&s, vec![ev(p.id, "n7", "hash-n", T0 + 10.0).release("1.1")]).await;
    assert_eq!(r.regressions, [id]);
}

async fn ignored_issues_come_back(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let r = save(
        &s,
        vec![
            ev(p.id, "e1", "hash-events", T0 + 1.0),
            ev(p.id, "t1", "hash-time", T0 + 1.0),
            ev(p.id, "u1", "hash-users", T0 + 1.0).user("u1"),
            ev(p.id, "f1", "hash-forever", T0 + 1.0),
        ],
    )
    .await;
    assert!(r.unignored.is_empty());
    let by_events = issue_of(&s, p.id, "e1").await.id;
    let by_time = issue_of(&s, p.id, "t1").await.id;
    let by_users = issue_of(&s, p.id, "u1").await.id;
    let forever = issue_of(&s, p.id, "f1").await.id;

    // by_events was a regression before; ignoring clears the flag and coming back (no
    // regression) leaves it so.
    s.set_issue_status(by_events, "resolved")
        .await
        .must("resolve");
    let r = save(&s, vec![ev(p.id, "e2", "hash-events", T0 + 2.0)]).await;
    assert_eq!(r.regressions, [by_events]);

    let ignore = |id: i64, rule: IgnoreRule| {
        let s = s.clone();
        async move {
            s.update_issues(&[id], &IssueChange::Ignore(rule), None, T0 + 3.0)
                .await
                .must("ignore")
        }
    };
    ignore(
        by_events,
        IgnoreRule {
            more_events: Some(2),
            ..Default::default()
        },
    )
    .await;
    ignore(
        by_time,
        IgnoreRule {
            until: Some(T0 + 100.0),
            ..Default::default()
        },
    )
    .await;
    ignore(
        by_users,
        IgnoreRule {
            more_users: Some(1),
            ..Default::default()
        },
    )
    .await;
    ignore(forever, IgnoreRule::default()).await;
    assert_eq!(
        s.issue(by_events).await.must("issue").ignore_until_events,
        Some(4)
    );

    // Not yet: one more event (of two), an event received before the time, the same user.
    let r = save(
        &s,
        vec![
            ev(p.id, "e3", "hash-events", T0 + 4.0),
            ev(p.id, "t2", "hash-time", T0 + 50.0),
            ev(p.id, "u2", "hash-users", T0 + 4.0).user("u1"),
            ev(p.id, "f2", "hash-forever", T0 + 4.0),
        ],
    )
    .await;
    assert!(r.unignored.is_empty(), "{r:?}");
    for id in [by_events, by_time, by_users, forever] {
        assert_eq!(s.issue(id).await.must("issue").status, "ignored");
    }

    // Now: the second more event, an event received after the time, a new user.
    let r = save(
        &s,
        vec![
            ev(p.id, "e4", "hash-events", T0 + 5.0),
            ev(p.id, "t3", "hash-time", T0 + 200.0),
            ev(p.id, "u3", "hash-users", T0 + 5.0).user("u2"),
            ev(p.id, "f3", "hash-forever", T0 + 5.0),
            ev(p.id, "f4", "hash-forever", T0 + 500.0).user("u9"),
        ],
    )
    .await;
    let mut back = r.unignored.clone();
    back.sort_unstable();
    let mut want = vec![by_events, by_time, by_users];
    want.sort_unstable();
    assert_eq!(back, want);
    assert!(r.regressions.is_empty() && r.new_issues.is_empty(), "{r:?}");
    for id in [by_events, by_time, by_users] {
        let i = s.issue(id).await.must("issue");
        assert_eq!(
            (
                i.status.as_str(),
                i.ignore_until,
                i.ignore_until_events,
                i.ignore_until_users
            ),
            ("unresolved", None, None, None),
            "issue {id} came back with its thresholds cleared"
        );
        assert_eq!(history(&s, id).await[0].0, "unignored");
    }
    for id in [by_events, by_time, by_users] {
        assert!(
            !s.issue(id).await.must("issue").is_regression,
            "coming back is no regression"
        );
    }
    let f = s.issue(forever).await.must("issue");
    assert_eq!(
        (f.status.as_str(), f.times_seen),
        ("ignored", 4),
        "ignored forever"
    );
    assert_eq!(
        history(&s, by_time).await[0],
        ("unignored".to_string(), None, Value::Null)
    );
    let top = s.issue_activity(by_time, 1).await.must("activity");
    assert_eq!(
        top[0].date_created,
        T0 + 200.5,
        "when the event was received"
    );

    // Further events of an unresolved issue change nothing.
    let r = save(&s, vec![ev(p.id, "e5", "hash-events", T0 + 6.0)]).await;
    assert!(r.unignored.is_empty() && r.regressions.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 10. Traces and rising issues

async fn trace_events_of_given_projects(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    let r = setup_project(&s, "globex", "shop").await;
    save(
        &s,
        vec![
            ev(p.id, "p1", "hash-a", T0 + 1.0).trace("trace-1"),
            ev(q.id, "q1", "hash-b", T0 + 3.0)
                .trace("trace-1")
                .titled("DbError", "db.query"),
            ev(r.id, "r1", "hash-c", T0 + 4.0).trace("trace-1"),
            ev(p.id, "p2", "hash-a", T0 + 2.0).trace("trace-1"),
            ev(p.id, "p3", "hash-a", T0 + 5.0).trace("trace-2"),
            ev(p.id, "p4", "hash-a", T0 + 6.0),
        ],
    )
    .await;
    let found = s
        .trace_events("trace-1", &[p.id, q.id], 10)
        .await
        .must("trace_events");
    let ids: Vec<&str> = found.iter().map(|t| t.event_id.as_str()).collect();
    assert_eq!(ids, ["q1", "p2", "p1"], "newest first, given projects only");
    let q1 = &found[0];
    let issue = issue_of(&s, q.id, "q1").await;
    assert_eq!(
        (
            q1.project_id,
            q1.issue_id,
            q1.issue_short_id,
            q1.title.as_str(),
            q1.culprit.as_str(),
            q1.level.as_str(),
            q1.timestamp
        ),
        (
            q.id,
            issue.id,
            issue.short_id,
            "DbError",
            "db.query",
            "error",
            T0 + 3.0
        )
    );
    assert_eq!(
        s.trace_events("trace-1", &[p.id, q.id], 2)
            .await
            .must("limit")
            .len(),
        2
    );
    assert!(
        s.trace_events("trace-1", &[], 10)
            .await
            .must("no projects")
            .is_empty()
    );
    assert!(
        s.trace_events("trace-9", &[p.id], 10)
            .await
            .must("unknown trace")
            .is_empty()
    );
}

async fn rising_issues_order(db: &TestDb) {
    const H: f64 = 3600.0;
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    let now = T0 + 24.0 * H;
    let mut events = Vec::new();
    let series = |project: i64, hash: &str, times: Vec<f64>| -> Vec<NewEvent> {
        times
            .into_iter()
            .enumerate()
            .map(|(n, t)| ev(project, &format!("{hash}-{n}"), hash, t))
            .collect()
    };
    // New and busy: 5 recent, nothing before.
    events.extend(series(
        p.id,
        "fresh",
        (0..5).map(|n| now - 2.0 * H + n as f64).collect(),
    ));
    // 21 events over the 21 hours before (3 per 3 hours), 6 recent: twice its rate.
    events.extend(series(
        p.id,
        "doubling",
        (0..21)
            .map(|h| T0 + h as f64 * H + 10.0)
            .chain((0..6).map(|n| now - H + n as f64))
            .collect(),
    ));
    // Twice a baseline below 1: 2 recent.
    events.extend(series(p.id, "pair", vec![now - 2.5 * H, now - 10.0]));
    // 70 before (10 per 3 hours), 1 recent: a tenth of its rate.
    events.extend(series(
        p.id,
        "calming",
        (0..70)
            .map(|n| T0 + (n % 21) as f64 * H + n as f64)
            .chain([now - 30.0])
            .collect(),
    ));
    // Nothing in the last 3 hours.
    events.extend(series(p.id, "quiet", vec![T0 + H, T0 + 20.0 * H]));
    // Another project.
    events.extend(series(
        q.id,
        "elsewhere",
        (0..9).map(|n| now - H + n as f64).collect(),
    ));
    save(&s, events).await;

    let rising = s
        .rising_issues(&[p.id], now, 10)
        .await
        .must("rising_issues");
    let summary: Vec<(String, i64, f64)> = rising
        .iter()
        .map(|r| {
            (
                r.issue.metadata["value"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                r.recent,
                r.baseline,
            )
        })
        .collect();
    let want: Vec<(String, i64, f64)> = vec![
        ("fresh".into(), 5, 0.0),
        ("doubling".into(), 6, 3.0),
        ("pair".into(), 2, 0.0),
        ("calming".into(), 1, 10.0),
    ];
    assert_eq!(summary, want);
    assert_eq!(rising[0].issue.times_seen, 5);

    let top = s.rising_issues(&[p.id, q.id], now, 2).await.must("rising");
    let names: Vec<&str> = top
        .iter()
        .map(|r| r.issue.metadata["value"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["elsewhere", "fresh"]);
    assert!(s.rising_issues(&[], now, 10).await.must("none").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Alerts: rules, firing once per interval, the notification outbox

fn rule(name: &str, trigger: &str) -> NewAlertRule {
    NewAlertRule {
        name: name.to_string(),
        trigger: trigger.to_string(),
        threshold: None,
        window_minutes: None,
        factor: None,
        filters: json!({}),
        interval_minutes: 60,
        actions: json!([{"type": "email", "to": ["members"]}]),
    }
}

/// A firing of `rule_id` for `issue_id` with one webhook notification tagged `tag`.
fn firing(p: &Project, rule_id: i64, issue_id: i64, interval: i64, tag: &str) -> Firing {
    Firing {
        rule_id,
        project_id: p.id,
        issue_id,
        interval_minutes: interval,
        notifications: vec![NewNotification {
            action: json!({"type": "webhook", "url": "https://hooks.example.com/x"}),
            payload: json!({"tag": tag}),
        }],
    }
}

/// `(tag, status)` of a project's notifications, newest first.
async fn outbox(s: &Arc<dyn Store>, p: &Project) -> Vec<(String, String)> {
    s.notifications(p.id, 1000)
        .await
        .must("notifications")
        .into_iter()
        .map(|n| {
            (
                n.payload["tag"].as_str().unwrap_or("?").to_string(),
                n.status,
            )
        })
        .collect()
}

async fn alert_rules_crud_and_defaults(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;

    // Every new project starts with two rules: new issues and regressions, to its members.
    let defaults = s.alert_rules(p.id).await.must("alert_rules");
    let summary: Vec<(&str, &str, i64, &Value, &Value)> = defaults
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.trigger.as_str(),
                r.interval_minutes,
                &r.filters,
                &r.actions,
            )
        })
        .collect();
    let members = json!([{"type": "email", "to": ["members"]}]);
    assert_eq!(
        summary,
        vec![
            (
                "Notify members of new issues",
                "new_issue",
                60,
                &json!({}),
                &members
            ),
            (
                "Notify members of regressions",
                "regression",
                60,
                &json!({}),
                &members
            ),
        ]
    );
    assert!(defaults.iter().all(|r| r.project_id == p.id
        && r.threshold.is_none()
        && r.window_minutes.is_none()
        && r.factor.is_none()));
    assert_eq!(s.alert_rules(q.id).await.must("q's rules").len(), 2);

    // Create, read, list.
    let mut spike = rule("Checkout spikes", "spike");
    spike.threshold = Some(50);
    spike.window_minutes = Some(30);
    spike.factor = Some(2.5);
    spike.filters =
        json!({"level": "error", "environment": "production", "tags": {"browser": "Firefox"}});
    spike.interval_minutes = 0;
    spike.actions = json!([
        {"type": "webhook", "url": "https://hooks.example.com/a", "secret": "s3cret"},
        {"type": "slack", "url": "https://hooks.slack.com/services/T/B/X"},
    ]);
    let created = s
        .create_alert_rule(p.id, &spike, T0)
        .await
        .must("create_alert_rule");
    assert_eq!(
        (
            created.project_id,
            created.name.as_str(),
            created.trigger.as_str()
        ),
        (p.id, "Checkout spikes", "spike")
    );
    assert_eq!(
        (created.threshold, created.window_minutes, created.factor),
        (Some(50), Some(30), Some(2.5))
    );
    assert_eq!(
        (&created.filters, &created.actions, created.interval_minutes),
        (&spike.filters, &spike.actions, 0)
    );
    assert_eq!((created.date_created, created.date_updated), (T0, T0));
    let read = s.alert_rule(p.id, created.id).await.must("alert_rule");
    assert_eq!(
        (read.id, &read.filters, &read.actions, read.factor),
        (created.id, &spike.filters, &spike.actions, Some(2.5))
    );
    let ids: Vec<i64> = s
        .alert_rules(p.id)
        .await
        .must("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        ids,
        vec![defaults[0].id, defaults[1].id, created.id],
        "by id"
    );
    expect_not_found(
        s.alert_rule(q.id, created.id).await,
        "another project's rule",
    );
    expect_not_found(s.alert_rule(p.id, 999_999).await, "unknown rule");

    // Update replaces the whole rule; its creation date stays.
    let mut freq = rule("Busy", "frequency");
    freq.threshold = Some(100);
    freq.window_minutes = Some(60);
    let updated = s
        .update_alert_rule(p.id, created.id, &freq, T0 + 10.0)
        .await
        .must("update_alert_rule");
    assert_eq!(
        (
            updated.id,
            updated.name.as_str(),
            updated.trigger.as_str(),
            updated.threshold,
            updated.factor,
            updated.interval_minutes
        ),
        (created.id, "Busy", "frequency", Some(100), None, 60)
    );
    assert_eq!(
        (updated.date_created, updated.date_updated),
        (T0, T0 + 10.0)
    );
    assert_eq!(updated.filters, json!({}));
    assert_eq!(
        s.alert_rule(p.id, created.id).await.must("reread").name,
        "Busy"
    );
    expect_not_found(
        s.update_alert_rule(q.id, created.id, &freq, T0).await,
        "updating another project's rule",
    );

    // Deleting a rule keeps its notifications, without the rule.
    save(&s, vec![ev(p.id, "e1", "h1", T0)]).await;
    let issue = issue_of(&s, p.id, "e1").await;
    let fired = s
        .fire_alerts(&[firing(&p, created.id, issue.id, 60, "kept")], T0 + 20.0)
        .await
        .must("fire_alerts");
    assert_eq!(fired, vec![(created.id, issue.id)]);
    let claimed = s
        .claim_notifications("node-a", T0 + 20.0, 30.0, 10)
        .await
        .must("claim");
    s.finish_notification(claimed[0].id, &Delivery::Sent, T0 + 21.0)
        .await
        .must("finish");
    expect_not_found(
        s.delete_alert_rule(q.id, created.id).await,
        "deleting from q",
    );
    s.delete_alert_rule(p.id, created.id)
        .await
        .must("delete_alert_rule");
    expect_not_found(s.alert_rule(p.id, created.id).await, "deleted rule");
    expect_not_found(s.delete_alert_rule(p.id, created.id).await, "deleted twice");
    assert_eq!(s.alert_rules(p.id).await.must("after delete").len(), 2);
    let kept = s.notifications(p.id, 10).await.must("notifications");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].rule_id, kept[0].issue_id, kept[0].status.as_str()),
        (None, Some(issue.id), "sent")
    );
    // A firing of a rule deleted meanwhile is skipped, not an error.
    let late = s
        .fire_alerts(&[firing(&p, created.id, issue.id, 0, "late")], T0 + 9999.0)
        .await
        .must("fire a deleted rule");
    assert!(late.is_empty(), "{late:?}");
    // So are firings of a missing issue, or of a rule for another project's issue.
    let q_rule = s.alert_rules(q.id).await.must("q's rules")[0].id;
    let stray = s
        .fire_alerts(
            &[
                firing(&p, defaults[0].id, 999_999, 0, "no issue"),
                firing(&q, q_rule, issue.id, 0, "q's rule, p's issue"),
                firing(&q, defaults[0].id, issue.id, 0, "p's rule named as q's"),
            ],
            T0 + 9999.0,
        )
        .await
        .must("stray firings");
    assert!(stray.is_empty(), "{stray:?}");
    assert_eq!(s.notifications(p.id, 10).await.must("still one").len(), 1);
}

async fn fire_alerts_respects_the_interval(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let r = s
        .create_alert_rule(p.id, &rule("ten minutes", "new_issue"), T0)
        .await
        .must("rule")
        .id;
    let r0 = s
        .create_alert_rule(p.id, &rule("every time", "new_issue"), T0)
        .await
        .must("rule")
        .id;
    save(
        &s,
        vec![ev(p.id, "a1", "ha", T0), ev(p.id, "b1", "hb", T0 + 1.0)],
    )
    .await;
    let a = issue_of(&s, p.id, "a1").await.id;
    let b = issue_of(&s, p.id, "b1").await.id;

    let t = T0 + 100.0;
    let fired = s
        .fire_alerts(
            &[
                firing(&p, r, b, 10, "r-b-1"),
                firing(&p, r, a, 10, "r-a-1"),
                firing(&p, r0, a, 0, "r0-a-1"),
            ],
            t,
        )
        .await
        .must("first firing");
    assert_eq!(fired, vec![(r, a), (r, b), (r0, a)], "(rule, issue) order");
    let pending = s.notifications(p.id, 10).await.must("notifications");
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|n| n.status == "pending"
        && n.attempts == 0
        && n.next_attempt == t
        && n.date_created == t
        && n.date_sent.is_none()
        && n.last_error.is_none()
        && n.project_id == p.id));
    let pair: Vec<(Option<i64>, Option<i64>)> =
        pending.iter().map(|n| (n.rule_id, n.issue_id)).collect();
    assert_eq!(
        pair,
        vec![(Some(r0), Some(a)), (Some(r), Some(b)), (Some(r), Some(a))]
    );
    assert_eq!(
        pending[0].action,
        json!({"type": "webhook", "url": "https://hooks.example.com/x"})
    );

    // Within the interval: nothing; the pair of interval 0 fires again at a later time only.
    let again = s
        .fire_alerts(
            &[
                firing(&p, r, a, 10, "r-a-2"),
                firing(&p, r0, a, 0, "r0-a-2"),
            ],
            t,
        )
        .await
        .must("same instant");
    assert!(again.is_empty(), "{again:?}");
    let later = s
        .fire_alerts(
            &[
                firing(&p, r, a, 10, "r-a-3"),
                firing(&p, r0, a, 0, "r0-a-3"),
            ],
            t + 599.0,
        )
        .await
        .must("9:59 later");
    assert_eq!(later, vec![(r0, a)]);
    let boundary = s
        .fire_alerts(&[firing(&p, r, a, 10, "r-a-4")], t + 600.0)
        .await
        .must("exactly 10 minutes after");
    assert!(
        boundary.is_empty(),
        "a firing at t holds the pair through t + interval"
    );
    let after = s
        .fire_alerts(&[firing(&p, r, a, 10, "r-a-5")], t + 600.5)
        .await
        .must("after the interval");
    assert_eq!(after, vec![(r, a)]);
    // The interval counts from the last firing, not the first.
    let held = s
        .fire_alerts(&[firing(&p, r, a, 10, "r-a-6")], t + 1000.0)
        .await
        .must("within the new interval");
    assert!(held.is_empty());
    // The same pair twice in one call fires once.
    let twice = s
        .fire_alerts(
            &[firing(&p, r, b, 10, "r-b-7"), firing(&p, r, b, 10, "r-b-8")],
            t + 5000.0,
        )
        .await
        .must("twice in one call");
    assert_eq!(twice, vec![(r, b)]);
    let tags: Vec<String> = outbox(&s, &p).await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        tags,
        ["r-b-7", "r-a-5", "r0-a-3", "r0-a-1", "r-b-1", "r-a-1"],
        "notifications of the firings that won, newest first"
    );
    assert!(s.fire_alerts(&[], t).await.must("nothing").is_empty());
}

async fn concurrent_fire_alerts_fire_once(db: &TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let p = setup_project(&a, "acme", "web").await;
    let rules = a.alert_rules(p.id).await.must("rules");
    let (r1, r2) = (rules[0].id, rules[1].id);
    let events: Vec<NewEvent> = (0..10)
        .map(|i| ev(p.id, &format!("e{i}"), &format!("h{i}"), T0 + i as f64))
        .collect();
    save(&a, events).await;
    let mut issues = Vec::new();
    for i in 0..10 {
        issues.push(issue_of(&a, p.id, &format!("e{i}")).await.id);
    }
    for round in 0..10 {
        let now = T0 + 10_000.0 * (round + 1) as f64;
        // Both nodes fire every pair at the same instant, in opposite orders.
        let mut mine: Vec<Firing> = issues
            .iter()
            .flat_map(|&i| {
                [
                    firing(&p, r1, i, 60, &format!("a-{round}")),
                    firing(&p, r2, i, 60, &format!("a-{round}")),
                ]
            })
            .collect();
        let mut theirs: Vec<Firing> = mine
            .iter()
            .map(|f| firing(&p, f.rule_id, f.issue_id, 60, &format!("b-{round}")))
            .collect();
        theirs.reverse();
        if round % 2 == 1 {
            std::mem::swap(&mut mine, &mut theirs);
        }
        let barrier = Arc::new(Barrier::new(2));
        let run = |store: Arc<dyn Store>, firings: Vec<Firing>| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.fire_alerts(&firings, now).await
            })
        };
        let (fa, fb) = tokio::join!(run(a.clone(), mine), run(b.clone(), theirs));
        let fa = fa.expect("task").must("node a fires");
        let fb = fb.expect("task").must("node b fires");
        let mut all: Vec<(i64, i64)> = fa.iter().chain(&fb).copied().collect();
        all.sort();
        let mut want: Vec<(i64, i64)> = issues.iter().flat_map(|&i| [(r1, i), (r2, i)]).collect();
        want.sort();
        assert_eq!(all, want, "round {round}: every pair fired exactly once");
        let notes = a.notifications(p.id, 10_000).await.must("notifications");
        let this_round = notes.iter().filter(|n| n.date_created == now).count();
        assert_eq!(this_round, 20, "round {round}: one notification per pair");
    }
}

async fn notification_lifecycle(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    let r = s.alert_rules(p.id).await.must("rules")[0].id;
    let rq = s.alert_rules(q.id).await.must("rules")[0].id;
    save(
        &s,
        vec![
            ev(p.id, "e1", "h1", T0),
            ev(p.id, "e2", "h2", T0),
            ev(p.id, "e3", "h3", T0),
            ev(q.id, "e4", "h4", T0),
        ],
    )
    .await;
    let i1 = issue_of(&s, p.id, "e1").await.id;
    let i2 = issue_of(&s, p.id, "e2").await.id;
    let i3 = issue_of(&s, p.id, "e3").await.id;
    let i4 = issue_of(&s, q.id, "e4").await.id;
    let t = T0 + 100.0;
    s.fire_alerts(&[firing(&p, r, i1, 60, "one")], t)
        .await
        .must("fire one");
    s.fire_alerts(&[firing(&p, r, i2, 60, "two")], t + 1.0)
        .await
        .must("fire two");
    s.fire_alerts(&[firing(&q, rq, i4, 60, "other")], t + 2.0)
        .await
        .must("fire other");
    s.fire_alerts(&[firing(&p, r, i3, 60, "future")], t + 500.0)
        .await
        .must("fire future");

    // Due at t + 10: the first three, oldest first, at most `limit`.
    let now = t + 10.0;
    let first = s
        .claim_notifications("node-a", now, 30.0, 2)
        .await
        .must("claim");
    let tags: Vec<&str> = first
        .iter()
        .map(|n| n.payload["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["one", "two"]);
    let rest = s
        .claim_notifications("node-b", now, 30.0, 10)
        .await
        .must("claim the rest");
    let tags: Vec<&str> = rest
        .iter()
        .map(|n| n.payload["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        ["other"],
        "held rows and rows not yet due are not claimed"
    );
    assert!(
        s.claim_notifications("node-c", now + 29.0, 30.0, 10)
            .await
            .must("all held")
            .is_empty()
    );
    assert!(
        s.claim_notifications("node-c", now, 30.0, 0)
            .await
            .must("limit 0")
            .is_empty()
    );

    let (one, two) = (&first[0], &first[1]);
    // Sent.
    s.finish_notification(one.id, &Delivery::Sent, now + 1.0)
        .await
        .must("sent");
    // Retry in a minute.
    s.finish_notification(
        two.id,
        &Delivery::Retry {
            next_attempt: now + 60.0,
            error: "HTTP 503".into(),
        },
        now + 1.0,
    )
    .await
    .must("retry");
    // Nothing is claimable while "other" is held and the retry is not due.
    assert!(
        s.claim_notifications("node-c", now + 29.9, 30.0, 10)
            .await
            .must("held and not due")
            .is_empty()
    );
    // The claim of "other" (held by node-b for 30 s) expires: another node takes it over.
    let taken = s
        .claim_notifications("node-d", now + 30.0, 100.0, 10)
        .await
        .must("expired claim");
    let tags: Vec<&str> = taken
        .iter()
        .map(|n| n.payload["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["other"]);
    assert!(
        s.claim_notifications("node-a", now + 59.9, 30.0, 10)
            .await
            .must("held by node-d")
            .is_empty()
    );
    s.finish_notification(taken[0].id, &Delivery::Sent, now + 31.0)
        .await
        .must("sent by node-d");

    // The retry is released but not due before its time; then it is claimed again.
    assert!(
        s.claim_notifications("node-c", now + 59.0, 30.0, 10)
            .await
            .must("retry not due")
            .is_empty()
    );
    let again = s
        .claim_notifications("node-c", now + 60.0, 30.0, 10)
        .await
        .must("retry due");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (
            again[0].id,
            again[0].attempts,
            again[0].status.as_str(),
            again[0].last_error.as_deref(),
            again[0].next_attempt
        ),
        (two.id, 1, "pending", Some("HTTP 503"), now + 60.0)
    );
    s.finish_notification(
        two.id,
        &Delivery::Failed {
            error: "HTTP 404".into(),
        },
        now + 61.0,
    )
    .await
    .must("failed");

    // Sent and failed rows are never claimed again; the future one is claimed when due.
    let due = s
        .claim_notifications("node-e", t + 500.0, 30.0, 10)
        .await
        .must("later");
    let tags: Vec<&str> = due
        .iter()
        .map(|n| n.payload["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["future"]);

    // What the UI shows: newest first, failures visible, per project.
    let listed = s.notifications(p.id, 10).await.must("notifications");
    /// Tag, status, attempts, last error, date sent.
    type Row<'a> = (&'a str, &'a str, i64, Option<&'a str>, Option<f64>);
    let summary: Vec<Row> = listed
        .iter()
        .map(|n| {
            (
                n.payload["tag"].as_str().unwrap(),
                n.status.as_str(),
                n.attempts,
                n.last_error.as_deref(),
                n.date_sent,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("future", "pending", 0, None, None),
            ("two", "failed", 2, Some("HTTP 404"), None),
            ("one", "sent", 1, None, Some(now + 1.0)),
        ]
    );
    assert_eq!(s.notifications(p.id, 1).await.must("limit").len(), 1);
    assert_eq!(
        outbox(&s, &q).await,
        vec![("other".to_string(), "sent".to_string())]
    );
    expect_not_found(
        s.finish_notification(999_999, &Delivery::Sent, now).await,
        "finishing an unknown notification",
    );
}

async fn concurrent_claims_never_share_a_notification(db: &TestDb) {
    const N: usize = 60;
    let a = db.open().await;
    let b = db.open().await;
    let p = setup_project(&a, "acme", "web").await;
    let r = a.alert_rules(p.id).await.must("rules")[0].id;
    let events: Vec<NewEvent> = (0..N)
        .map(|i| ev(p.id, &format!("e{i}"), &format!("h{i}"), T0))
        .collect();
    save(&a, events).await;
    let mut firings = Vec::new();
    for i in 0..N {
        let issue = issue_of(&a, p.id, &format!("e{i}")).await.id;
        firings.push(firing(&p, r, issue, 60, &format!("n{i}")));
    }
    let now = T0 + 100.0;
    assert_eq!(a.fire_alerts(&firings, now).await.must("fire").len(), N);

    let barrier = Arc::new(Barrier::new(2));
    let drain = |store: Arc<dyn Store>, holder: &'static str| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            let mut ids = Vec::new();
            loop {
                let got = store
                    .claim_notifications(holder, now, 60.0, 7)
                    .await
                    .must("claim");
                if got.is_empty() {
                    return ids;
                }
                ids.extend(got.iter().map(|n| n.id));
            }
        })
    };
    let (ia, ib) = tokio::join!(drain(a.clone(), "node-a"), drain(b.clone(), "node-b"));
    let (ia, ib) = (ia.expect("task"), ib.expect("task"));
    let sa: BTreeSet<i64> = ia.iter().copied().collect();
    let sb: BTreeSet<i64> = ib.iter().copied().collect();
    assert_eq!(
        (sa.len(), sb.len()),
        (ia.len(), ib.len()),
        "no row twice to one node"
    );
    assert!(
        sa.is_disjoint(&sb),
        "a row claimed by both: {:?}",
        sa.intersection(&sb).collect::<Vec<_>>()
    );
    assert_eq!(
        sa.len() + sb.len(),
        N,
        "every row claimed (a: {}, b: {})",
        sa.len(),
        sb.len()
    );
}

async fn issue_window_counts_events_and_users(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    save(
        &s,
        vec![
            ev(p.id, "w1", "hw", T0).user("id:1"),
            ev(p.id, "w2", "hw", T0 + 60.0).user("id:2"),
            ev(p.id, "w3", "hw", T0 + 120.0).user("id:1"),
            ev(p.id, "w4", "hw", T0 + 180.0),
            ev(p.id, "w5", "hw", T0 + 240.0).user("id:3"),
            ev(p.id, "x1", "hx", T0 + 240.0).user("id:9"),
        ],
    )
    .await;
    let issue = issue_of(&s, p.id, "w1").await.id;
    let count = |since: f64| {
        let s = s.clone();
        async move {
            s.issue_window_counts(issue, since)
                .await
                .must("issue_window_counts")
        }
    };
    assert_eq!(count(T0).await, (5, 3), "all: users 1, 2, 3");
    assert_eq!(count(T0 + 60.0).await, (4, 3), "since is inclusive");
    assert_eq!(
        count(T0 + 61.0).await,
        (3, 2),
        "users 1 and 3; one event without a user"
    );
    assert_eq!(count(T0 + 180.0).await, (2, 1));
    assert_eq!(count(T0 + 241.0).await, (0, 0));
    // Events stored in later batches count too.
    save(&s, vec![ev(p.id, "w6", "hw", T0 + 300.0).user("id:2")]).await;
    assert_eq!(count(T0 + 61.0).await, (4, 3));
}

/// A batch with hundreds of distinct users and tag values (stored in multi-row statements of
/// several sizes) counts each of them, and the next batch tells known values from new ones.
async fn many_values_in_one_batch(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "org", "many").await;
    let batch_of = |round: usize, from: usize, to: usize| {
        (from..to)
            .map(|i| {
                ev(p.id, &format!("e{round}-{i}"), "hash-many", T0 + i as f64)
                    .user(&format!("user-{i}"))
                    .tag("url", &format!("/page/{i}"))
                    .tag("browser", if i % 2 == 0 { "Chrome" } else { "Firefox" })
            })
            .collect::<Vec<_>>()
    };
    save(&s, batch_of(1, 0, 301)).await;
    // 50 values seen before, 50 new ones.
    save(&s, batch_of(2, 251, 351)).await;
    let issue = issue_of(&s, p.id, "e1-0").await;
    assert_eq!((issue.times_seen, issue.user_count), (401, 351));
    assert_tag_keys(&s, issue.id, &[("browser", 2, 401), ("url", 351, 401)]).await;
    let values = s
        .issue_tag_values(issue.id, "url", 1000, 0)
        .await
        .must("issue_tag_values");
    assert_eq!(values.len(), 351);
    assert_eq!(values.iter().map(|v| v.count).sum::<i64>(), 401);
    let hourly = s.issue_hourly(&[issue.id], 0).await.must("issue_hourly");
    let hourly_total: i64 = hourly[&issue.id].iter().map(|(_, n)| n).sum();
    assert_eq!(hourly_total, 401);
}

/// Issues are found by their users' fields (exact, prefix, negated, `has:`), in the batch that
/// brought a value and after later batches brought it again; the tag breakdowns do not list them.
async fn user_fields_are_searched_not_counted(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "org", "search").await;
    let ada = |id: &str, hash: &str| {
        ev(p.id, id, hash, T0)
            .user("id:7")
            .tag("browser", "Firefox")
            .searchable("user.id", "7")
            .searchable("user.email", "ada@example.com")
    };
    save(
        &s,
        vec![
            ada("a1", "hash-ada"),
            ada("a2", "hash-ada"),
            ev(p.id, "b1", "hash-bob", T0).searchable("user.email", "bob@example.com"),
            ev(p.id, "n1", "hash-nobody", T0),
        ],
    )
    .await;
    save(&s, vec![ada("a3", "hash-ada")]).await;
    let issue = issue_of(&s, p.id, "a1").await;
    let bob = issue_of(&s, p.id, "b1").await;
    let nobody = issue_of(&s, p.id, "n1").await;
    let found = |tags: &[(&str, &str, bool)], has: &[&str]| {
        let s = s.clone();
        let filter = IssueFilter {
            project_ids: vec![p.id],
            tags: tags
                .iter()
                .map(|(k, v, n)| (k.to_string(), v.to_string(), *n))
                .collect(),
            has: has.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        };
        async move { issue_ids(&s, &filter).await }
    };
    assert_eq!(
        found(&[("user.email", "ada@example.com", false)], &[]).await,
        [issue.id]
    );
    assert_eq!(found(&[("user.id", "7", false)], &[]).await, [issue.id]);
    assert_eq!(
        found(&[("user.email", "bob@*", false)], &[]).await,
        [bob.id]
    );
    assert_eq!(
        found(&[("user.email", "ada@example.com", true)], &[]).await,
        [bob.id, nobody.id]
    );
    assert_eq!(found(&[], &["user.email"]).await, [issue.id, bob.id]);
    assert!(
        found(&[("user.email", "ada@example", false)], &[])
            .await
            .is_empty()
    );
    // Counted tags alongside them still work.
    assert_eq!(
        found(
            &[("browser", "Firefox", false), ("user.id", "7", false)],
            &[]
        )
        .await,
        [issue.id]
    );
    assert_tag_keys(&s, issue.id, &[("browser", 1, 3)]).await;
    assert_eq!(
        (issue.times_seen, issue.user_count),
        (3, 1),
        "the issue's own counters"
    );
}

/// A database from before user fields were kept apart (schema 10) keeps its issues searchable
/// by them, and its tag breakdowns lose the user fields' counters and keep the rest.
async fn search_only_tags_leave_the_counters(db: &TestDb) {
    let old_payload = zstd::encode_all(&br#"{"event_id":"e-old"}"#[..], 1).expect("zstd");
    old_database(
        db,
        10,
        "INSERT INTO organizations (slug, name, date_created) VALUES ('old', 'old', 1); \
         INSERT INTO projects (org_id, slug, name, date_created) \
         VALUES (1, 'legacy', 'legacy', 1); \
         INSERT INTO issues (project_id, short_id, title, level, issue_type, first_seen, \
         last_seen) VALUES (1, 1, 'old issue', 'error', 'error', 100, 100); \
         INSERT INTO group_hashes (project_id, hash, issue_id) VALUES (1, 'hash-old', 1); \
         INSERT INTO issue_tags (issue_id, key, value, count, first_seen, last_seen) VALUES \
         (1, 'user.email', 'old@example.com', 2, 100, 100), \
         (1, 'browser', 'Firefox', 2, 100, 100); \
         INSERT INTO issue_tag_keys (issue_id, key, total, values_seen) VALUES \
         (1, 'user.email', 2, 1), (1, 'browser', 2, 1); \
         INSERT INTO events (project_id, event_id, issue_id, timestamp, received, size, \
         grouping, payload) VALUES (1, 'e-old', 1, 100, 100, 1, '', ?1)",
        old_payload,
    )
    .await;
    let s = db.open().await;
    let p = s.project_by_slug("old", "legacy").await.must("old project");
    let by_email = |email: &str| IssueFilter {
        project_ids: vec![p.id],
        tags: vec![("user.email".into(), email.into(), false)],
        ..Default::default()
    };
    let found = s
        .list_issues(&by_email("old@example.com"))
        .await
        .must("list_issues");
    assert_eq!(
        found.iter().map(|i| i.title.as_str()).collect::<Vec<_>>(),
        ["old issue"]
    );
    assert_tag_keys(&s, found[0].id, &[("browser", 1, 2)]).await;
    // The next event of that issue adds its own value beside the old one.
    save(
        &s,
        vec![ev(p.id, "e-new", "hash-old", T0).searchable("user.email", "new@example.com")],
    )
    .await;
    for email in ["old@example.com", "new@example.com"] {
        assert_eq!(
            issue_ids(&s, &by_email(email)).await,
            [found[0].id],
            "{email}"
        );
    }
}

/// Builds the database of `db` at schema version `before`, holding `old_data`: statements
/// separated by "; ", the last of which gets `blob` as its parameter ?1.
async fn old_database(db: &TestDb, before: usize, old_data: &str, blob: Vec<u8>) {
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path).expect("open the old SQLite database");
        for sql in &super::sqlite::MIGRATIONS[..before] {
            conn.execute_batch(sql).expect("an old migration");
        }
        conn.execute_batch(&format!("PRAGMA user_version = {before}"))
            .expect("version");
        let (batch, last) = old_data.rsplit_once("; ").expect("statements");
        conn.execute_batch(batch).expect("old data");
        conn.execute(last, [blob]).expect("old event");
    } else {
        let client = pg_admin(&db.url).await;
        client
            .batch_execute(
                "CREATE TABLE faultline_migrations (version BIGINT PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await
            .expect("migrations table");
        for (i, sql) in super::postgres::MIGRATIONS[..before].iter().enumerate() {
            client.batch_execute(sql).await.expect("an old migration");
            client
                .execute(
                    "INSERT INTO faultline_migrations (version) VALUES ($1)",
                    &[&(i as i64 + 1)],
                )
                .await
                .expect("version");
        }
        let (batch, last) = old_data.rsplit_once("; ").expect("statements");
        client.batch_execute(batch).await.expect("old data");
        client
            .execute(&last.replace("?1", "$1"), &[&blob])
            .await
            .expect("old event");
    }
}

/// Events stored before fingerprints kept their grouping (schema 8) keep their own; the next
/// event of such a fingerprint gives the fingerprint its grouping, which later events show.
async fn grouping_is_kept_once_per_fingerprint(db: &TestDb) {
    let old_payload = zstd::encode_all(&br#"{"event_id":"e-old"}"#[..], 1).expect("zstd");
    old_database(
        db,
        8,
        "INSERT INTO organizations (slug, name, date_created) VALUES ('old', 'old', 1); \
         INSERT INTO projects (org_id, slug, name, date_created) \
         VALUES (1, 'legacy', 'legacy', 1); \
         INSERT INTO issues (project_id, short_id, title, level, issue_type, first_seen, \
         last_seen) VALUES (1, 1, 'old issue', 'error', 'error', 100, 100); \
         INSERT INTO group_hashes (project_id, hash, issue_id) VALUES (1, 'hash-old', 1); \
         INSERT INTO events (project_id, event_id, issue_id, timestamp, received, size, \
         grouping, payload) VALUES (1, 'e-old', 1, 100, 100, 1, \
         '{\"hash\": \"hash-old\", \"components\": [\"old\"]}', ?1)",
        old_payload,
    )
    .await;
    let s = db.open().await;
    let p = s.project_by_slug("old", "legacy").await.must("old project");
    save(&s, vec![ev(p.id, "e-new", "hash-old", T0)]).await;
    save(&s, vec![ev(p.id, "e-later", "hash-old", T0 + 1.0)]).await;
    let issue = issue_of(&s, p.id, "e-new").await;
    let events = s.issue_events(issue.id, 10, 0).await.must("issue_events");
    let groupings: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| (e.event_id.as_str(), &e.grouping))
        .collect();
    let new = json!({"hash": "hash-old", "components": ["exception"]});
    let old = json!({"hash": "hash-old", "components": ["old"]});
    assert_eq!(
        groupings,
        [("e-later", &new), ("e-new", &new), ("e-old", &old)]
    );
}

/// A database at schema version 5 (before alerting) with two projects: migrating it gives each
/// project the two default rules, and its events count in windows (without users).
async fn existing_projects_get_the_default_rules(db: &TestDb) {
    const BEFORE: usize = 5;
    let old_data = "INSERT INTO organizations (slug, name, date_created) VALUES ('old', 'old', 1); \
         INSERT INTO projects (org_id, slug, name, date_created) \
         VALUES (1, 'legacy', 'legacy', 1), (1, 'other', 'other', 1); \
         INSERT INTO issues (project_id, short_id, title, level, issue_type, first_seen, \
         last_seen) VALUES (1, 1, 'old issue', 'error', 'error', 100, 100); \
         INSERT INTO events (project_id, event_id, issue_id, timestamp, received, size, \
         grouping, payload) VALUES (1, 'e-old', 1, 100, 100, 1, '{}', ?1)";
    old_database(db, BEFORE, old_data, b"x".to_vec()).await;

    let s = db.open().await;
    let before_migration = 1_700_000_000.0;
    for slug in ["legacy", "other"] {
        let p = s.project_by_slug("old", slug).await.must("old project");
        let rules = s.alert_rules(p.id).await.must("rules");
        let summary: Vec<(&str, &str, i64, &Value, &Value)> = rules
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.trigger.as_str(),
                    r.interval_minutes,
                    &r.filters,
                    &r.actions,
                )
            })
            .collect();
        let members = json!([{"type": "email", "to": ["members"]}]);
        assert_eq!(
            summary,
            vec![
                (
                    "Notify members of new issues",
                    "new_issue",
                    60,
                    &json!({}),
                    &members
                ),
                (
                    "Notify members of regressions",
                    "regression",
                    60,
                    &json!({}),
                    &members
                ),
            ],
            "{slug}"
        );
        assert!(
            rules
                .iter()
                .all(|r| r.date_created > before_migration && r.date_updated == r.date_created),
            "dated when migrated: {rules:?}"
        );
    }
    let issue = s.issue(1).await.must("old issue");
    assert_eq!(
        s.issue_window_counts(issue.id, 0.0).await.must("window"),
        (1, 0),
        "old events count, without users"
    );
    // New projects get theirs at creation, as before.
    let p = setup_project(&s, "old", "fresh").await;
    assert_eq!(s.alert_rules(p.id).await.must("fresh rules").len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Artifacts (source maps)

async fn artifact_chunks(db: &TestDb) {
    let s = db.open().await;
    let acme = setup_project(&s, "acme", "web").await;
    let other = setup_project(&s, "globex", "web").await;
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    s.put_chunks(
        acme.org_id,
        vec![(a.clone(), vec![0, 1, 2, 255])],
        T0 + 60.0,
        T0,
    )
    .await
    .must("put_chunks");
    // Uploading the same chunk again only extends it.
    s.put_chunks(
        acme.org_id,
        vec![(a.clone(), vec![0, 1, 2, 255])],
        T0 + 120.0,
        T0,
    )
    .await
    .must("put_chunks again");
    assert_eq!(
        s.missing_chunks(acme.org_id, &[a.clone(), b.clone(), b.clone()], T0)
            .await
            .must("missing_chunks"),
        vec![b.clone()],
        "missing chunks are named once"
    );
    assert_eq!(
        s.missing_chunks(other.org_id, std::slice::from_ref(&a), T0)
            .await
            .must("missing_chunks of another org"),
        vec![a.clone()],
        "chunks belong to one organization"
    );
    assert_eq!(
        s.chunks(acme.org_id, std::slice::from_ref(&a))
            .await
            .must("chunks"),
        [vec![0u8, 1, 2, 255]]
    );
    expect_not_found(
        s.chunks(acme.org_id, &[a.clone(), b.clone()]).await,
        "a missing chunk",
    );
    // Expired chunks count as missing, and the next upload drops them.
    assert_eq!(
        s.missing_chunks(acme.org_id, std::slice::from_ref(&a), T0 + 121.0)
            .await
            .must("missing_chunks after expiry"),
        vec![a.clone()]
    );
    s.put_chunks(
        acme.org_id,
        vec![(b.clone(), vec![9])],
        T0 + 500.0,
        T0 + 200.0,
    )
    .await
    .must("put_chunks later");
    expect_not_found(s.chunks(acme.org_id, &[a]).await, "an expired chunk");
}

async fn artifact_bundles_are_found_by_debug_id_and_url(db: &TestDb) {
    let s = db.open().await;
    let web = setup_project(&s, "acme", "web").await;
    let api = setup_project(&s, "acme", "api").await;
    let elsewhere = setup_project(&s, "globex", "web").await;
    let debug_id = "3b1cb0b8-8a4c-4c1b-9c7a-6b2f3e0a1d11";
    let file = |url: &str, ty: &str, debug_id: Option<&str>, data: &[u8]| NewArtifactFile {
        url: url.into(),
        file_type: ty.into(),
        debug_id: debug_id.map(str::to_string),
        sourcemap: (ty == "minified_source").then(|| "app.min.js.map".to_string()),
        headers: json!({"sourcemap": "app.min.js.map"}),
        data: data.to_vec(),
    };
    let bundle = |project_ids: Vec<i64>, release: &str, dist: &str, files| NewBundle {
        org_id: web.org_id,
        checksum: "c".repeat(40),
        kind: BundleKind::ArtifactBundle,
        project_ids,
        release: release.into(),
        dist: dist.into(),
        files,
        now: T0,
    };
    s.save_bundle(bundle(
        vec![web.id],
        "",
        "",
        vec![
            file("~/app.min.js", "minified_source", Some(debug_id), b"min"),
            file(
                "~/app.min.js.map",
                "source_map",
                Some(debug_id),
                b"{\"version\":3}",
            ),
        ],
    ))
    .await
    .must("save a debug-id bundle");
    let map = s
        .artifact_by_debug_id(web.id, debug_id, &["source_map"])
        .await
        .must("artifact_by_debug_id")
        .expect("the map is found by its debug id");
    assert_eq!(map.url, "~/app.min.js.map");
    assert_eq!(
        s.artifact_data(map.id).await.must("artifact_data"),
        b"{\"version\":3}"
    );
    assert_eq!(map.size, 13);
    assert_eq!(map.sha1.len(), 40);
    let minified = s
        .artifact_by_debug_id(web.id, debug_id, &["minified_source", "source"])
        .await
        .must("minified by debug id")
        .expect("the minified file is found by its debug id");
    assert_eq!(minified.sourcemap.as_deref(), Some("app.min.js.map"));
    assert_eq!(minified.headers["sourcemap"], "app.min.js.map");
    for (project, what) in [
        (api.id, "another project"),
        (elsewhere.id, "another organization"),
    ] {
        assert_eq!(
            s.artifact_by_debug_id(project, debug_id, &["source_map"])
                .await
                .must("artifact_by_debug_id elsewhere"),
            None,
            "{what} does not see the bundle"
        );
    }
    assert!(
        s.bundle_by_checksum(web.org_id, &"c".repeat(40), "")
            .await
            .must("bundle_by_checksum")
            .is_some()
    );
    // The same bundle uploaded for the api project serves it too.
    let first = s
        .bundle_by_checksum(web.org_id, &"c".repeat(40), "")
        .await
        .must("bundle_by_checksum")
        .expect("the bundle is found by its checksum");
    s.add_bundle_projects(first, &[api.id, api.id])
        .await
        .must("add_bundle_projects");
    assert!(
        s.artifact_by_debug_id(api.id, debug_id, &["source_map"])
            .await
            .must("artifact_by_debug_id for the added project")
            .is_some()
    );
    s.add_bundle_projects(first, &[])
        .await
        .must("add_bundle_projects with none");
    assert_eq!(
        s.artifact_by_debug_id(elsewhere.id, debug_id, &["source_map"])
            .await
            .must("artifact_by_debug_id elsewhere"),
        None
    );
    assert_eq!(
        s.bundle_by_checksum(web.org_id, &"c".repeat(40), "r1")
            .await
            .must("bundle_by_checksum of a release"),
        None
    );

    // A release bundle for every project of the organization, then a newer upload of one file.
    s.save_bundle(bundle(
        Vec::new(),
        "shop@1",
        "",
        vec![
            file("~/static/app.js", "minified_source", None, b"old"),
            file("~/static/app.js.map", "source_map", None, b"{}"),
        ],
    ))
    .await
    .must("save a release bundle");
    s.save_bundle(bundle(
        vec![web.id],
        "shop@1",
        "",
        vec![file("~/static/app.js", "minified_source", None, b"new")],
    ))
    .await
    .must("save a newer file");
    let urls = [
        "https://h/static/app.js".to_string(),
        "~/static/app.js".to_string(),
    ];
    let found = s
        .artifacts_by_url(web.id, "shop@1", "", &urls)
        .await
        .must("artifacts_by_url");
    assert_eq!(found.len(), 2);
    assert_eq!(
        s.artifact_data(found[0].id).await.must("data"),
        b"new",
        "newest first"
    );
    let for_api = s
        .artifacts_by_url(api.id, "shop@1", "", &urls)
        .await
        .must("artifacts_by_url for another project");
    assert_eq!(
        for_api.len(),
        1,
        "the organization-wide bundle serves every project"
    );
    assert!(
        s.artifacts_by_url(web.id, "shop@1", "ios", &urls)
            .await
            .must("another dist")
            .is_empty()
    );
    assert!(
        s.artifacts_by_url(elsewhere.id, "shop@1", "", &urls)
            .await
            .must("another organization")
            .is_empty()
    );

    // Release files: listed per organization or project, deleted one by one.
    let all = s
        .release_files(web.org_id, None, "shop@1")
        .await
        .must("release_files");
    assert_eq!(all.len(), 3);
    let of_api = s
        .release_files(web.org_id, Some(api.id), "shop@1")
        .await
        .must("release_files of a project");
    assert_eq!(of_api.len(), 2);
    s.delete_release_file(web.org_id, "shop@1", all[0].id)
        .await
        .must("delete_release_file");
    expect_not_found(
        s.delete_release_file(web.org_id, "shop@1", all[0].id).await,
        "deleting twice",
    );
    expect_not_found(
        s.delete_release_file(web.org_id, "shop@2", all[1].id).await,
        "deleting through another release",
    );
    assert_eq!(
        s.release_files(web.org_id, None, "shop@1")
            .await
            .must("release_files after delete")
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Releases

fn session_counts(project_id: i64, release: &str, env: &str, hour: i64) -> SessionCounts {
    SessionCounts {
        project_id,
        release: release.into(),
        environment: env.into(),
        hour,
        ..Default::default()
    }
}

fn session_user(
    project_id: i64,
    release: &str,
    env: &str,
    did: &str,
    crashed: bool,
) -> SessionUser {
    SessionUser {
        project_id,
        release: release.into(),
        environment: env.into(),
        did: did.into(),
        crashed,
    }
}

async fn releases_from_events_and_sessions(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    let org = s.organization("acme").await.must("organization");

    // Two new issues in 1.0, one event without a release, one of 1.0 in the other project.
    save(
        &s,
        vec![
            ev(p.id, "r1", "hash-a", T0 + 10.0).release("1.0"),
            ev(p.id, "r2", "hash-a", T0 + 5.0).release("1.0"),
            ev(p.id, "r3", "hash-b", T0 + 20.0).release("1.0"),
            ev(p.id, "r4", "hash-c", T0 + 30.0),
            ev(q.id, "r5", "hash-a", T0 + 40.0).release("1.0"),
        ],
    )
    .await;
    // A later batch: an old issue in 1.0 (no new issue), and a new one first seen in 1.1.
    save(
        &s,
        vec![
            ev(p.id, "r6", "hash-b", T0 + 50.0).release("1.0"),
            ev(p.id, "r7", "hash-d", T0 + 60.0).release("1.1"),
        ],
    )
    .await;

    let r = s.release(org.id, "1.0").await.must("release 1.0");
    let per_project: Vec<_> = r
        .projects
        .iter()
        .map(|rp| {
            (
                rp.slug.as_str(),
                rp.event_count,
                rp.new_groups,
                rp.first_event,
                rp.last_event,
            )
        })
        .collect();
    assert_eq!(
        per_project,
        [
            ("api", 1, 1, Some(T0 + 40.0), Some(T0 + 40.0)),
            ("web", 4, 2, Some(T0 + 5.0), Some(T0 + 50.0)),
        ]
    );
    assert_eq!((r.status.as_str(), r.date_released), ("open", None));
    let r11 = s.release(org.id, "1.1").await.must("release 1.1");
    assert_eq!(
        (r11.projects.len(), r11.projects[0].new_groups),
        (1, 1),
        "{r11:?}"
    );
    assert!(r11.date_created >= r.date_created);
    // A duplicate event counts nothing.
    save(&s, vec![ev(p.id, "r6", "hash-b", T0 + 50.0).release("1.0")]).await;
    let r = s.release(org.id, "1.0").await.must("release 1.0");
    assert_eq!(r.projects[1].event_count, 4);

    // Sessions create their release too, and give it health.
    let hour = hour_of(T0);
    let batch = DigestBatch {
        node_id: "test-node".into(),
        sessions: vec![
            SessionCounts {
                started: 8,
                exited: 6,
                errored: 3,
                crashed: 2,
                ..session_counts(p.id, "2.0", "production", hour)
            },
            SessionCounts {
                started: 2,
                exited: 2,
                ..session_counts(p.id, "2.0", "staging", hour)
            },
            SessionCounts {
                started: 10,
                exited: 10,
                ..session_counts(p.id, "1.0", "production", hour - 86_400)
            },
        ],
        session_users: vec![
            session_user(p.id, "2.0", "production", "u1", true),
            session_user(p.id, "2.0", "production", "u2", false),
            session_user(p.id, "2.0", "production", "u3", false),
            session_user(p.id, "2.0", "staging", "u4", false),
        ],
        ..Default::default()
    };
    s.save_batch(Arc::new(batch)).await.must("sessions");
    let r2 = s.release(org.id, "2.0").await.must("release 2.0");
    assert_eq!(
        (
            r2.projects.len(),
            r2.projects[0].event_count,
            r2.projects[0].first_event
        ),
        (1, 0, None)
    );
    let now = T0 + 3600.0;
    let all = s
        .release_health(&[p.id, q.id], "2.0", None, now)
        .await
        .must("health");
    assert_eq!(
        all,
        [ReleaseHealth {
            project_id: p.id,
            sessions: 10,
            crashed: 2,
            errored: 3,
            abnormal: 0,
            unhandled: 0,
            users: 4,
            crashed_users: 1,
            sessions_24h: 10,
            project_sessions_24h: 10,
        }],
        "the 1.0 sessions are older than a day, and the api project has none"
    );
    assert_eq!(all[0].crash_free_sessions(), Some(80.0));
    assert_eq!(all[0].crash_free_users(), Some(75.0));
    assert_eq!(all[0].adoption(), Some(100.0));
    let prod = s
        .release_health(&[p.id], "2.0", Some("production"), now)
        .await
        .must("health in production");
    assert_eq!(
        (prod[0].sessions, prod[0].users, prod[0].crash_free_users()),
        (8, 3, Some(100.0 * 2.0 / 3.0))
    );
    let old = s
        .release_health(&[p.id], "1.0", None, now)
        .await
        .must("health of 1.0");
    assert_eq!(
        (
            old[0].sessions,
            old[0].adoption(),
            old[0].crash_free_users()
        ),
        (10, Some(0.0), None)
    );
    assert!(
        s.release_health(&[p.id], "1.1", None, now)
            .await
            .must("no sessions")
            .is_empty()
    );
}

async fn releases_commits_and_deploys(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let q = setup_project(&s, "acme", "api").await;
    let other = setup_project(&s, "other", "web").await;
    let org = s.organization("acme").await.must("organization");

    let new = NewRelease {
        version: "shop@1.0+7".into(),
        project_ids: vec![p.id],
        git_ref: Some("main".into()),
        date_started: Some(T0),
        ..Default::default()
    };
    let (r, created) = s
        .create_release(org.id, &new, T0 + 1.0)
        .await
        .must("create");
    assert!(created);
    assert_eq!(
        (
            r.version.as_str(),
            r.git_ref.as_deref(),
            r.date_created,
            r.date_started,
            r.projects.len()
        ),
        ("shop@1.0+7", Some("main"), T0 + 1.0, Some(T0), 1)
    );
    // Again, with the other project: the same release, linked to both.
    let again = NewRelease {
        project_ids: vec![q.id],
        ..new.clone()
    };
    let (r, created) = s
        .create_release(org.id, &again, T0 + 2.0)
        .await
        .must("again");
    assert!(!created);
    assert_eq!(r.date_created, T0 + 1.0);
    let slugs: Vec<&str> = r.projects.iter().map(|p| p.slug.as_str()).collect();
    assert_eq!(slugs, ["api", "web"]);

    let r = s
        .update_release(
            org.id,
            "shop@1.0+7",
            &ReleaseChange {
                date_released: Some(T0 + 3.0),
                ..Default::default()
            },
        )
        .await
        .must("finalize");
    assert_eq!(
        (r.date_released, r.git_ref.as_deref()),
        (Some(T0 + 3.0), Some("main"))
    );
    expect_not_found(
        s.update_release(org.id, "nope", &ReleaseChange::default())
            .await,
        "update of an unknown release",
    );

    let commit = |id: &str, name: &str| Commit {
        id: id.into(),
        repository: Some("shop".into()),
        author_name: Some(name.into()),
        author_email: Some(format!("{}@example.com", name.to_lowercase())),
        message: Some(format!("commit {id}")),
        timestamp: Some(T0),
    };
    s.set_release_commits(
        r.id,
        &[
            commit("c3", "Ann"),
            commit("c2", "Bob"),
            commit("c1", "Ann"),
        ],
    )
    .await
    .must("commits");
    let r = s.release(org.id, "shop@1.0+7").await.must("release");
    assert_eq!(r.commit_count, 3);
    assert_eq!(r.last_commit.as_ref().map(|c| c.id.as_str()), Some("c3"));
    assert_eq!(
        r.authors,
        [
            (Some("Ann".into()), Some("ann@example.com".into())),
            (Some("Bob".into()), Some("bob@example.com".into()))
        ]
    );
    // Setting commits replaces them.
    s.set_release_commits(r.id, &[commit("c4", "Cy")])
        .await
        .must("commits again");
    let ids: Vec<String> = s
        .release_commits(r.id)
        .await
        .must("release_commits")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["c4"]);

    for (env, at) in [("staging", T0 + 10.0), ("production", T0 + 20.0)] {
        let d = s
            .create_deploy(
                r.id,
                &Deploy {
                    environment: env.into(),
                    name: Some(format!("to {env}")),
                    date_finished: at,
                    ..Default::default()
                },
            )
            .await
            .must("deploy");
        assert_eq!(
            (d.version.as_str(), d.environment.as_str()),
            ("shop@1.0+7", env)
        );
    }
    let envs: Vec<String> = s
        .deploys(r.id)
        .await
        .must("deploys")
        .into_iter()
        .map(|d| d.environment)
        .collect();
    assert_eq!(envs, ["production", "staging"], "newest first");
    let r = s.release(org.id, "shop@1.0+7").await.must("release");
    assert_eq!(r.deploy_count, 2);
    assert_eq!(
        r.last_deploy
            .as_ref()
            .map(|d| (d.environment.as_str(), d.date_finished)),
        Some(("production", T0 + 20.0))
    );
    let since: Vec<f64> = s
        .project_deploys(q.id, T0 + 15.0)
        .await
        .must("project deploys")
        .iter()
        .map(|d| d.date_finished)
        .collect();
    assert_eq!(since, [T0 + 20.0]);
    assert!(
        s.project_deploys(other.id, 0.0)
            .await
            .must("none")
            .is_empty()
    );

    // Listing: by visible project, by part of the version, by status; newest first.
    let new2 = NewRelease {
        version: "shop@2.0".into(),
        project_ids: vec![p.id],
        ..Default::default()
    };
    s.create_release(org.id, &new2, T0 + 30.0)
        .await
        .must("create 2.0");
    let versions = |rs: Vec<Release>| rs.into_iter().map(|r| r.version).collect::<Vec<_>>();
    let list = s
        .releases(org.id, &[p.id], None, None, 0, 10)
        .await
        .must("list");
    assert_eq!(versions(list), ["shop@2.0", "shop@1.0+7"]);
    let list = s
        .releases(org.id, &[q.id], None, None, 0, 10)
        .await
        .must("list q");
    assert_eq!(versions(list), ["shop@1.0+7"]);
    let list = s
        .releases(org.id, &[p.id], Some("1.0+"), None, 0, 10)
        .await
        .must("query");
    assert_eq!(versions(list), ["shop@1.0+7"]);
    let list = s
        .releases(org.id, &[p.id], Some("%"), None, 0, 10)
        .await
        .must("%");
    assert!(list.is_empty(), "LIKE wildcards are plain characters");
    let list = s
        .releases(org.id, &[p.id], None, None, 1, 10)
        .await
        .must("page 2");
    assert_eq!(versions(list), ["shop@1.0+7"]);
    let other_org = s.organization("other").await.must("other org");
    assert!(
        s.releases(other_org.id, &[other.id], None, None, 0, 10)
            .await
            .must("other org")
            .is_empty()
    );
    s.update_release(
        org.id,
        "shop@2.0",
        &ReleaseChange {
            status: Some("archived".into()),
            ..Default::default()
        },
    )
    .await
    .must("archive");
    let list = s
        .releases(org.id, &[p.id], None, Some("open"), 0, 10)
        .await
        .must("open");
    assert_eq!(versions(list), ["shop@1.0+7"]);
    let list = s
        .releases(org.id, &[p.id], None, Some("archived"), 0, 10)
        .await
        .must("archived");
    assert_eq!(versions(list), ["shop@2.0"]);

    s.delete_release(org.id, "shop@1.0+7").await.must("delete");
    expect_not_found(s.release(org.id, "shop@1.0+7").await, "deleted release");
    assert!(
        s.project_deploys(q.id, 0.0)
            .await
            .must("deploys gone")
            .is_empty()
    );
    expect_not_found(
        s.delete_release(org.id, "shop@1.0+7").await,
        "deleted twice",
    );
}

async fn next_release_resolves_for_good(db: &TestDb) {
    let s = db.open().await;
    let p = setup_project(&s, "acme", "web").await;
    let org = s.organization("acme").await.must("organization");
    let r = save(
        &s,
        vec![
            ev(p.id, "n1", "hash-a", T0 + 1.0).release("1.0"),
            ev(p.id, "n2", "hash-b", T0 + 2.0).release("1.0"),
        ],
    )
    .await;
    let (a, b) = (r.new_issues[0], r.new_issues[1]);
    s.update_issues(&[a, b], &IssueChange::ResolveInNextRelease, None, T0 + 3.0)
        .await
        .must("resolve in next release");

    // sentry-cli announces 1.1: both issues are now resolved for good.
    let new = NewRelease {
        version: "1.1".into(),
        project_ids: vec![p.id],
        ..Default::default()
    };
    s.create_release(org.id, &new, T0 + 4.0)
        .await
        .must("create 1.1");
    for id in [a, b] {
        let i = s.issue(id).await.must("issue");
        assert_eq!(
            (i.status.as_str(), i.resolved_in_release.as_deref()),
            ("resolved", None)
        );
        let h = history(&s, id).await;
        assert_eq!(
            (h[0].0.as_str(), &h[0].2),
            ("resolved_in_release", &json!({"release": "1.1"}))
        );
    }
    // So even a straggler event of 1.0 is a regression now.
    let r = save(&s, vec![ev(p.id, "n3", "hash-a", T0 + 5.0).release("1.0")]).await;
    assert_eq!(r.regressions, [a]);

    // Resolved in the next release after 1.1; an event of 1.0 (older) changes nothing; the
    // first event of 1.2 (of another issue) resolves it for good.
    s.update_issues(&[b], &IssueChange::ResolveInNextRelease, None, T0 + 6.0)
        .await
        .must("resolve b");
    s.update_issues(&[a], &IssueChange::Resolve, None, T0 + 6.0)
        .await
        .must("resolve a");
    let ib = s.issue(b).await.must("b");
    assert_eq!(
        ib.resolved_in_release.as_deref(),
        Some("1.0"),
        "last seen in 1.0"
    );
    // Make b last seen in 1.1.
    let r = save(&s, vec![ev(p.id, "n4", "hash-b", T0 + 7.0).release("1.1")]).await;
    assert_eq!(
        r.regressions,
        [b],
        "1.1 is newer than 1.0, which b was resolved in"
    );
    s.update_issues(&[b], &IssueChange::ResolveInNextRelease, None, T0 + 8.0)
        .await
        .must("resolve b again");
    assert_eq!(
        s.issue(b).await.must("b").resolved_in_release.as_deref(),
        Some("1.1")
    );
    save(&s, vec![ev(p.id, "n5", "hash-c", T0 + 9.0).release("1.0")]).await;
    assert_eq!(
        s.issue(b).await.must("b").resolved_in_release.as_deref(),
        Some("1.1"),
        "1.0 is older than 1.1"
    );
    save(&s, vec![ev(p.id, "n6", "hash-c", T0 + 10.0).release("1.2")]).await;
    let ib = s.issue(b).await.must("b");
    assert_eq!(
        (ib.status.as_str(), ib.resolved_in_release.as_deref()),
        ("resolved", None)
    );
    let r = save(&s, vec![ev(p.id, "n7", "hash-b", T0 + 11.0).release("1.1")]).await;
    assert_eq!(
        r.regressions,
        [b],
        "resolved for good: any event is a regression"
    );
}

/// A version-6 database (before releases) gets the releases its events and sessions named.
async fn existing_events_make_their_releases(db: &TestDb) {
    const BEFORE: usize = 6;
    let old_data = "INSERT INTO organizations (slug, name, date_created) VALUES ('old', 'old', 1); \
         INSERT INTO projects (org_id, slug, name, date_created) VALUES (1, 'legacy', 'legacy', 1); \
         INSERT INTO issues (project_id, short_id, title, level, issue_type, first_seen, \
         last_seen, first_release) VALUES (1, 1, 'a', 'error', 'error', 100, 300, '1.0'), \
         (1, 2, 'b', 'error', 'error', 50, 50, '0.9'); \
         INSERT INTO session_counts (project_id, release, environment, hour, started, crashed) \
         VALUES (1, '2.0', 'production', 3600, 4, 1); \
         INSERT INTO events (project_id, event_id, issue_id, timestamp, received, release, size, \
         grouping, payload) VALUES (1, 'e1', 1, 100, 101, '1.0', 1, '{}', ?1), \
         (1, 'e2', 1, 300, 301, '1.0', 1, '{}', ?1), (1, 'e3', 2, 50, 51, '0.9', 1, '{}', ?1)";
    old_database(db, BEFORE, old_data, b"x".to_vec()).await;

    let s = db.open().await;
    let org = s.organization("old").await.must("old organization");
    let summary = |r: &Release| {
        let p = &r.projects[0];
        (
            r.date_created,
            p.slug.clone(),
            p.event_count,
            p.new_groups,
            p.first_event,
            p.last_event,
        )
    };
    let r = s.release(org.id, "1.0").await.must("release 1.0");
    assert_eq!(
        summary(&r),
        (101.0, "legacy".into(), 2, 1, Some(100.0), Some(300.0))
    );
    let r = s.release(org.id, "0.9").await.must("release 0.9");
    assert_eq!(
        summary(&r),
        (51.0, "legacy".into(), 1, 1, Some(50.0), Some(50.0))
    );
    let r = s
        .release(org.id, "2.0")
        .await
        .must("release of the sessions");
    assert_eq!(summary(&r), (3600.0, "legacy".into(), 0, 0, None, None));
    let h = s
        .release_health(&[r.projects[0].project_id], "2.0", None, 7200.0)
        .await
        .must("health");
    assert_eq!(h[0].crash_free_sessions(), Some(75.0));
}
