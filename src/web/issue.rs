//! The issue page (what broke, how often, for whom, since when, where in the code), its list of
//! events, the raw event and attachment downloads, and the forms that change an issue (status,
//! assignee, comments).
//!
//! The page loads one event payload (the one shown) plus its neighbours' ids; the events list
//! loads one page of events. What an event holds is turned into view data by
//! [`super::event_view`].

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::envelope::parse_event_id;
use crate::server::AppState;
use crate::store::{
    Activity, EventPick, EventRecord, IgnoreRule, Issue, IssueChange, Project, TagKey,
};

use super::event_view::{self, EventView};
use super::page::{Layout, WebError, WebResult, render};
use super::session::{Viewer, now};
use super::view::{Chart, Mark, ago, buckets, count, iso, percent, short_id};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{org}/issues/{id}/", get(issue_page))
        .route("/organizations/{org}/issues/{id}/events/", get(events_page))
        .route(
            "/organizations/{org}/issues/{id}/events/{event_id}/",
            get(issue_event_page),
        )
        .route(
            "/organizations/{org}/issues/{id}/events/{event_id}/json",
            get(event_json),
        )
        .route(
            "/organizations/{org}/issues/{id}/attachments/{attachment_id}",
            get(attachment),
        )
        .route("/organizations/{org}/issues/{id}/status", post(set_status))
        .route("/organizations/{org}/issues/{id}/assign", post(assign))
        .route("/organizations/{org}/issues/{id}/comments", post(comment))
        .route(
            "/organizations/{org}/issues/{id}/reprocess",
            post(reprocess),
        )
}

/// Events per page of the events list.
const EVENTS_PER_PAGE: i64 = 50;
/// Tag keys broken down on the page (an SDK can invent any number of them).
const MAX_TAG_KEYS: usize = 40;
/// Values shown per tag key; the rest is "other".
const TOP_VALUES: i64 = 5;
/// Releases marked on the trend charts.
const MAX_RELEASE_MARKERS: i64 = 50;
const ACTIVITY_LIMIT: i64 = 100;
const TRACE_LIMIT: i64 = 50;
const MAX_REPORTS: usize = 50;
/// Longest comment, in characters.
const MAX_COMMENT: usize = 10_000;
/// Tag keys shown first, in this order; the others follow by name.
const WELL_KNOWN_TAGS: &[&str] = &[
    "browser",
    "browser.name",
    "os",
    "os.name",
    "device",
    "release",
    "environment",
    "url",
    "user",
];

fn parse_id(s: &str) -> WebResult<i64> {
    s.parse().map_err(|_| WebError::NotFound)
}

fn issue_path(org: &str, id: i64) -> String {
    format!("/organizations/{org}/issues/{id}/")
}

// ---------------------------------------------------------------------------------------------
// The issue page
// ---------------------------------------------------------------------------------------------

/// The issue's summary, as the header shows it.
struct Header {
    id: i64,
    title: String,
    culprit: String,
    level: String,
    short_id: String,
    project: String,
    status: String,
    is_new: bool,
    is_regression: bool,
    events: String,
    users: String,
    first_seen_ago: String,
    first_seen_iso: String,
    last_seen_ago: String,
    last_seen_iso: String,
    first_release: Option<String>,
    last_release: Option<String>,
    assignee: Option<String>,
    /// "until 2026-…", "until 100 more events", "in the release after 1.2".
    status_detail: Option<String>,
}

impl Header {
    fn new(issue: &Issue, project: &Project, now: f64) -> Header {
        let status_detail = match issue.status.as_str() {
            "resolved" => issue
                .resolved_in_release
                .as_ref()
                .map(|r| format!("in the next release after {r}")),
            "ignored" => {
                let mut until = Vec::new();
                if let Some(t) = issue.ignore_until {
                    until.push(format!("until {}", iso(t)));
                }
                if let Some(n) = issue.ignore_until_events {
                    until.push(format!("until {n} events"));
                }
                if let Some(n) = issue.ignore_until_users {
                    until.push(format!("until {n} users"));
                }
                (!until.is_empty()).then(|| until.join(" or "))
            }
            _ => None,
        };
        Header {
            id: issue.id,
            title: issue.title.clone(),
            culprit: issue.culprit.clone(),
            level: issue.level.clone(),
            short_id: short_id(project, issue.short_id),
            project: project.slug.clone(),
            status: issue.status.clone(),
            is_new: now - issue.first_seen < 86400.0,
            is_regression: issue.is_regression,
            events: count(issue.times_seen),
            users: count(issue.user_count),
            first_seen_ago: ago(issue.first_seen, now),
            first_seen_iso: iso(issue.first_seen),
            last_seen_ago: ago(issue.last_seen, now),
            last_seen_iso: iso(issue.last_seen),
            first_release: issue.first_release.clone(),
            last_release: issue.last_release.clone(),
            assignee: issue.assignee_email.clone(),
            status_detail,
        }
    }
}

/// One value of a tag breakdown, with its bar (SVG widths out of 100).
struct TagBar {
    value: String,
    count: String,
    percent: String,
    href: Option<String>,
    width: f64,
}

struct TagBreakdown {
    key: String,
    values: Vec<TagBar>,
}

/// Where the event navigation links point.
struct EventNav {
    event_id: String,
    time_ago: String,
    time_iso: String,
    received_iso: String,
    json_href: String,
    oldest: Option<String>,
    previous: Option<String>,
    next: Option<String>,
    latest: Option<String>,
}

struct AttachmentRow {
    name: String,
    size: String,
    kind: String,
    href: String,
}

struct ReportRow {
    who: String,
    comments: String,
    when_ago: String,
    when_iso: String,
    event_href: Option<String>,
}

struct TraceRow {
    href: String,
    project: String,
    short_id: String,
    title: String,
    culprit: String,
    level: String,
    when_ago: String,
    when_iso: String,
}

struct ActivityRow {
    who: String,
    what: String,
    text: Option<String>,
    when_ago: String,
    when_iso: String,
}

/// The event shown on the issue page, with what belongs to it.
struct Shown {
    nav: EventNav,
    event: EventView,
    attachments: Vec<AttachmentRow>,
    trace: Vec<TraceRow>,
}

struct MemberOption {
    id: i64,
    email: String,
    selected: bool,
}

/// "3 events since the last deploy to production (shop@1.2, 2 h ago)".
struct SinceDeploy {
    events: String,
    environment: String,
    version: String,
    at_ago: String,
    at_iso: String,
}

#[derive(Template)]
#[template(path = "issue.html")]
struct IssuePage {
    layout: Layout,
    /// `/organizations/{org}/issues/{id}`, without the trailing slash.
    base: String,
    header: Header,
    chart_day: Chart,
    chart_month: Chart,
    /// Events of the issue since the project's latest deploy, in that deploy's environment.
    since_deploy: Option<SinceDeploy>,
    tags: Vec<TagBreakdown>,
    tags_omitted: usize,
    /// The event shown; `None` when the issue has no stored event any more (retention).
    shown: Option<Shown>,
    reports: Vec<ReportRow>,
    activity: Vec<ActivityRow>,
    members: Vec<MemberOption>,
    /// The assignee is no longer someone who can see the project.
    unassigned: bool,
}

/// `GET /organizations/{org}/issues/{id}/`: the issue with its latest event.
async fn issue_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
) -> WebResult {
    show(&state, &viewer, &org, &id, "latest").await
}

/// `GET /organizations/{org}/issues/{id}/events/{event_id}/`: the issue with that event.
async fn issue_event_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id, event_id)): Path<(String, String, String)>,
) -> WebResult {
    show(&state, &viewer, &org, &id, &event_id).await
}

/// The event `which` (`latest`, `oldest` or an event id) of an issue.
async fn pick_event(state: &AppState, issue: &Issue, which: &str) -> WebResult<EventRecord> {
    let e = match which {
        "latest" => state.store.issue_event(issue.id, EventPick::Latest).await?,
        "oldest" => state.store.issue_event(issue.id, EventPick::Oldest).await?,
        other => {
            let event_id = parse_event_id(other).ok_or(WebError::NotFound)?;
            let e = state.store.event(issue.project_id, &event_id).await?;
            if e.issue_id != issue.id {
                return Err(WebError::NotFound);
            }
            e
        }
    };
    Ok(e)
}

async fn show(state: &AppState, viewer: &Viewer, org: &str, id: &str, which: &str) -> WebResult {
    let (issue, project) = viewer.issue(state, org, parse_id(id)?).await?;
    let t = now();
    let base = format!("/organizations/{org}/issues/{}", issue.id);
    let record = match pick_event(state, &issue, which).await {
        Ok(r) => Some(r),
        // Every event of the issue was evicted: the issue page still shows the issue.
        Err(WebError::NotFound) if matches!(which, "latest" | "oldest") => None,
        Err(e) => return Err(e),
    };
    let events_href = |e: &str| format!("{base}/events/{e}/");
    let shown = match &record {
        Some(record) => Some(shown_event(state, viewer, &base, record, t).await?),
        None => None,
    };

    // Trend: hourly for a day, daily for a month, with releases marked where first seen.
    let since = t as i64 - 30 * 86400;
    let hourly = state
        .store
        .issue_hourly(&[issue.id], since)
        .await?
        .remove(&issue.id)
        .unwrap_or_default();
    let mut marks: Vec<Mark> = state
        .store
        .issue_tag_values(issue.id, "release", MAX_RELEASE_MARKERS, 0)
        .await?
        .into_iter()
        .map(|v| {
            (
                v.first_seen,
                format!("release {} first seen", v.value),
                "release",
            )
        })
        .collect();
    // Deploys of the project's releases, as lines of their own.
    let deploys = state
        .store
        .project_deploys(project.id, since as f64)
        .await?;
    marks.extend(deploys.iter().map(|d| {
        (
            d.date_finished,
            format!("{} deployed to {}", d.version, d.environment),
            "deploy",
        )
    }));
    let since_deploy = match deploys.last() {
        Some(d) => Some(SinceDeploy {
            events: count(
                state
                    .store
                    .issue_events_since(issue.id, &d.environment, d.date_finished)
                    .await?,
            ),
            environment: d.environment.clone(),
            version: d.version.clone(),
            at_ago: ago(d.date_finished, t),
            at_iso: iso(d.date_finished),
        }),
        None => None,
    };
    let day = buckets(&hourly, t as i64, 3600, 24);
    let month = buckets(&hourly, t as i64, 86400, 30);
    let chart_day = Chart::new("chart", &day, 3600, 480.0, 90.0, &marks, true);
    let chart_month = Chart::new("chart", &month, 86400, 480.0, 90.0, &marks, true);

    let (tags, tags_omitted) = tag_breakdown(state, issue.id).await?;

    let reports = state
        .store
        .issue_user_reports(issue.id)
        .await?
        .into_iter()
        .take(MAX_REPORTS)
        .map(|r| ReportRow {
            who: match (&r.name, &r.email) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (Some(n), None) => n.clone(),
                (None, Some(e)) => e.clone(),
                (None, None) => "Anonymous".to_string(),
            },
            comments: event_view::clip(&r.comments, event_view::MAX_VALUE),
            when_ago: ago(r.date_created, t),
            when_iso: iso(r.date_created),
            event_href: r.event_id.as_deref().map(events_href),
        })
        .collect();
    let activity = state
        .store
        .issue_activity(issue.id, ACTIVITY_LIMIT)
        .await?
        .iter()
        .map(|a| activity_row(a, t))
        .collect();
    let members: Vec<MemberOption> = state
        .store
        .project_members(project.id)
        .await?
        .into_iter()
        .map(|u| MemberOption {
            selected: issue.assignee_id == Some(u.id),
            id: u.id,
            email: u.email,
        })
        .collect();
    let unassigned = issue.assignee_id.is_some() && !members.iter().any(|m| m.selected);

    let title = format!("{} {}", short_id(&project, issue.short_id), issue.title);
    render(&IssuePage {
        layout: Layout::new(viewer, title, "issues"),
        header: Header::new(&issue, &project, t),
        base,
        chart_day,
        chart_month,
        since_deploy,
        tags,
        tags_omitted,
        shown,
        reports,
        activity,
        members,
        unassigned,
    })
}

/// The event view of `record`: navigation among the issue's events, the event itself, its
/// attachments and the other errors of its trace.
async fn shown_event(
    state: &AppState,
    viewer: &Viewer,
    base: &str,
    record: &EventRecord,
    t: f64,
) -> WebResult<Shown> {
    let (previous, next) = state
        .store
        .event_neighbours(
            record.project_id,
            record.issue_id,
            record.timestamp,
            &record.event_id,
        )
        .await?;
    let event = event_view::build(&record.payload, &record.grouping, record.timestamp);
    let events_href = |e: &str| format!("{base}/events/{e}/");
    let nav = EventNav {
        event_id: record.event_id.clone(),
        time_ago: ago(record.timestamp, t),
        time_iso: iso(record.timestamp),
        received_iso: iso(record.received),
        json_href: format!("{base}/events/{}/json", record.event_id),
        oldest: previous.as_ref().map(|_| events_href("oldest")),
        latest: next.as_ref().map(|_| events_href("latest")),
        previous: previous.as_deref().map(events_href),
        next: next.as_deref().map(events_href),
    };
    let attachments = state
        .store
        .event_attachments(record.project_id, &record.event_id)
        .await?
        .into_iter()
        .map(|a| AttachmentRow {
            name: event_view::clip(&a.filename, 200),
            size: size(a.size),
            kind: a.attachment_type.clone(),
            href: format!("{base}/attachments/{}", a.id),
        })
        .collect();
    let trace = match &event.trace_id {
        Some(trace_id) => same_trace(state, viewer, trace_id, record, t).await?,
        None => Vec::new(),
    };
    Ok(Shown {
        nav,
        event,
        attachments,
        trace,
    })
}

/// The issue's tag keys, well-known ones first, each with its top values and "other".
async fn tag_breakdown(state: &AppState, issue_id: i64) -> WebResult<(Vec<TagBreakdown>, usize)> {
    let mut keys: Vec<TagKey> = state.store.issue_tag_keys(issue_id).await?;
    keys.sort_by(|a, b| {
        let rank = |k: &str| {
            WELL_KNOWN_TAGS
                .iter()
                .position(|w| *w == k)
                .unwrap_or(WELL_KNOWN_TAGS.len())
        };
        (rank(&a.key), &a.key).cmp(&(rank(&b.key), &b.key))
    });
    let omitted = keys.len().saturating_sub(MAX_TAG_KEYS);
    keys.truncate(MAX_TAG_KEYS);
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let top = state
            .store
            .issue_tag_values(issue_id, &k.key, TOP_VALUES, 0)
            .await?;
        let total = k.total_values.max(1);
        let width = |n: i64| (n as f64 * 100.0 / total as f64).clamp(0.0, 100.0);
        let mut values: Vec<TagBar> = top
            .iter()
            .map(|v| TagBar {
                value: event_view::clip(&v.value, 200),
                count: count(v.count),
                percent: percent(v.count, total),
                href: Some(event_view::tag_search(&k.key, &v.value)),
                width: width(v.count),
            })
            .collect();
        let other = k.total_values - top.iter().map(|v| v.count).sum::<i64>();
        if other > 0 {
            values.push(TagBar {
                value: "other".to_string(),
                count: count(other),
                percent: percent(other, total),
                href: None,
                width: width(other),
            });
        }
        out.push(TagBreakdown { key: k.key, values });
    }
    Ok((out, omitted))
}

/// The other errors of the event's trace in projects the viewer can see.
async fn same_trace(
    state: &AppState,
    viewer: &Viewer,
    trace_id: &str,
    record: &EventRecord,
    t: f64,
) -> WebResult<Vec<TraceRow>> {
    let projects: HashMap<i64, Project> = viewer
        .projects(state)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let ids: Vec<i64> = projects.keys().copied().collect();
    let events = state
        .store
        .trace_events(trace_id, &ids, TRACE_LIMIT + 1)
        .await?;
    Ok(events
        .into_iter()
        .filter(|e| !(e.project_id == record.project_id && e.event_id == record.event_id))
        .filter_map(|e| {
            let p = projects.get(&e.project_id)?;
            Some(TraceRow {
                href: format!(
                    "/organizations/{}/issues/{}/events/{}/",
                    p.org_slug, e.issue_id, e.event_id
                ),
                project: p.slug.clone(),
                short_id: short_id(p, e.issue_short_id),
                title: e.title,
                culprit: e.culprit,
                level: e.level,
                when_ago: ago(e.timestamp, t),
                when_iso: iso(e.timestamp),
            })
        })
        .take(TRACE_LIMIT as usize)
        .collect())
}

fn activity_row(a: &Activity, t: f64) -> ActivityRow {
    let d = &a.data;
    let num = |k: &str| d.get(k).and_then(serde_json::Value::as_i64);
    let text = |k: &str| {
        d.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let what = match a.kind.as_str() {
        "note" => "commented".to_string(),
        "resolved" => "marked this issue resolved".to_string(),
        "resolved_in_release" => match text("release") {
            Some(r) => format!("resolved this issue for good: release {r} came out"),
            None => "resolved this issue for good: the next release came out".to_string(),
        },
        "resolved_in_next_release" => match text("release") {
            Some(r) => format!("marked this issue resolved in the next release after {r}"),
            None => "marked this issue resolved in the next release".to_string(),
        },
        "ignored" => {
            let mut until = Vec::new();
            if let Some(u) = d.get("until").and_then(serde_json::Value::as_f64) {
                until.push(format!("until {}", iso(u)));
            }
            if let Some(n) = num("events") {
                until.push(format!("until {n} more events"));
            }
            if let Some(n) = num("users") {
                until.push(format!("until {n} more users"));
            }
            if until.is_empty() {
                "ignored this issue".to_string()
            } else {
                format!("ignored this issue {}", until.join(" or "))
            }
        }
        "unresolved" => "reopened this issue".to_string(),
        "regression" => {
            "marked this issue as a regression (an event came after it was resolved)".to_string()
        }
        "unignored" => "brought this issue back from ignored".to_string(),
        "assigned" => match text("email") {
            Some(e) => format!("assigned this issue to {e}"),
            None => "unassigned this issue".to_string(),
        },
        "first_seen" => "first saw this issue".to_string(),
        other => other.replace('_', " "),
    };
    ActivityRow {
        who: a
            .user_email
            .clone()
            .unwrap_or_else(|| "Faultline".to_string()),
        what,
        text: (a.kind == "note")
            .then(|| text("text"))
            .flatten()
            .map(|s| event_view::clip(&s, MAX_COMMENT * 4)),
        when_ago: ago(a.date_created, t),
        when_iso: iso(a.date_created),
    }
}

/// 512 B, 1.5 KB, 3.2 MB.
fn size(n: i64) -> String {
    match n {
        i64::MIN..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KB", n as f64 / 1024.0),
        _ => format!("{:.1} MB", n as f64 / 1_048_576.0),
    }
}

// ---------------------------------------------------------------------------------------------
// The events list
// ---------------------------------------------------------------------------------------------

struct EventRow {
    href: String,
    event_id: String,
    when_ago: String,
    when_iso: String,
    release: String,
    environment: String,
    user: String,
    summary: String,
    level: String,
}

#[derive(Template)]
#[template(path = "issue_events.html")]
struct EventsPage {
    layout: Layout,
    base: String,
    header: Header,
    rows: Vec<EventRow>,
    page: i64,
    previous: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<String>,
}

/// `GET /organizations/{org}/issues/{id}/events/?page=N`: the issue's events, newest first.
async fn events_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> WebResult {
    let (issue, project) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    let t = now();
    let page = q
        .page
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let mut events = state
        .store
        .issue_events(issue.id, EVENTS_PER_PAGE + 1, (page - 1) * EVENTS_PER_PAGE)
        .await?;
    let has_next = events.len() as i64 > EVENTS_PER_PAGE;
    events.truncate(EVENTS_PER_PAGE as usize);
    let base = format!("/organizations/{org}/issues/{}", issue.id);
    let text = |p: &serde_json::Value, k: &str| {
        p.get(k)
            .and_then(serde_json::Value::as_str)
            .map(|s| event_view::clip(s, 200))
            .unwrap_or_default()
    };
    let rows = events
        .iter()
        .map(|e| EventRow {
            href: format!("{base}/events/{}/", e.event_id),
            event_id: e.event_id.clone(),
            when_ago: ago(e.timestamp, t),
            when_iso: iso(e.timestamp),
            release: text(&e.payload, "release"),
            environment: text(&e.payload, "environment"),
            user: event_view::user_label(&e.payload).unwrap_or_default(),
            summary: event_view::summary(&e.payload),
            level: text(&e.payload, "level"),
        })
        .collect();
    let title = format!("Events of {}", short_id(&project, issue.short_id));
    render(&EventsPage {
        layout: Layout::new(&viewer, title, "issues"),
        header: Header::new(&issue, &project, t),
        previous: (page > 1).then(|| format!("{base}/events/?page={}", page - 1)),
        next: has_next.then(|| format!("{base}/events/?page={}", page + 1)),
        base,
        rows,
        page,
    })
}

// ---------------------------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------------------------

/// A file name safe in a `Content-Disposition` header.
fn safe_filename(name: &str, fallback: &str) -> String {
    let s: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(100)
        .collect();
    if s.trim_matches('.').is_empty() {
        fallback.to_string()
    } else {
        s
    }
}

/// `GET …/events/{event_id}/json`: the stored (normalized) event as a JSON download.
async fn event_json(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id, event_id)): Path<(String, String, String)>,
) -> WebResult {
    let (issue, _) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    let e = pick_event(&state, &issue, &event_id).await?;
    let body =
        serde_json::to_vec_pretty(&e.payload).map_err(|e| WebError::Internal(e.to_string()))?;
    let name = safe_filename(&e.event_id, "event");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.json\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Image types a browser may show as they are (no SVG: it can carry script).
const SAFE_IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// `GET …/attachments/{attachment_id}`: an attachment of the issue's project, always as a
/// download (its bytes are attacker-controlled).
async fn attachment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id, attachment_id)): Path<(String, String, String)>,
) -> WebResult {
    let (issue, _) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    let (meta, data) = state
        .store
        .attachment(issue.project_id, parse_id(&attachment_id)?)
        .await?;
    let declared = meta
        .content_type
        .as_deref()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let content_type = if SAFE_IMAGE_TYPES.contains(&declared.as_str()) {
        declared
    } else {
        "application/octet-stream".to_string()
    };
    let name = safe_filename(&meta.filename, "attachment");
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        data,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Forms
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct StatusForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    ignore_minutes: Option<String>,
    ignore_events: Option<String>,
    ignore_users: Option<String>,
}

/// A positive whole number from an optional form field (empty = none).
fn positive(field: Option<&str>, what: &str) -> WebResult<Option<i64>> {
    match field.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n > 0 && n <= 1_000_000_000 => Ok(Some(n)),
            _ => Err(WebError::BadRequest(format!(
                "{what} must be a whole number above zero."
            ))),
        },
    }
}

/// `POST …/status`: resolve, resolve in the next release, ignore (for a while, or until N more
/// events or users) or reopen.
async fn set_status(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
    Form(form): Form<StatusForm>,
) -> WebResult {
    viewer.check_csrf(&form.csrf)?;
    let (issue, _) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    let t = now();
    let change = match form.action.as_str() {
        "resolve" => IssueChange::Resolve,
        "resolve_next" => IssueChange::ResolveInNextRelease,
        "unresolve" => IssueChange::Unresolve,
        "ignore" => {
            let minutes = positive(form.ignore_minutes.as_deref(), "Minutes")?;
            IssueChange::Ignore(IgnoreRule {
                until: minutes.map(|m| t + m as f64 * 60.0),
                more_events: positive(form.ignore_events.as_deref(), "Events")?,
                more_users: positive(form.ignore_users.as_deref(), "Users")?,
            })
        }
        _ => return Err(WebError::BadRequest("Unknown action.".into())),
    };
    state
        .store
        .update_issues(&[issue.id], &change, Some(viewer.user.id), t)
        .await?;
    Ok(Redirect::to(&issue_path(&org, issue.id)).into_response())
}

#[derive(Deserialize)]
struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: String,
}

/// `POST …/assign`: assign to someone who can see the project, or (empty) unassign.
async fn assign(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
    Form(form): Form<AssignForm>,
) -> WebResult {
    viewer.check_csrf(&form.csrf)?;
    let (issue, project) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    let assignee = match form.user_id.trim() {
        "" => None,
        s => {
            let user_id: i64 = s
                .parse()
                .map_err(|_| WebError::BadRequest("Unknown user.".into()))?;
            let members = state.store.project_members(project.id).await?;
            if !members.iter().any(|u| u.id == user_id) {
                return Err(WebError::BadRequest(
                    "Issues can only be assigned to someone who can see the project.".into(),
                ));
            }
            Some(user_id)
        }
    };
    state
        .store
        .update_issues(
            &[issue.id],
            &IssueChange::Assign(assignee),
            Some(viewer.user.id),
            now(),
        )
        .await?;
    Ok(Redirect::to(&issue_path(&org, issue.id)).into_response())
}

#[derive(Deserialize)]
struct CommentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

/// `POST …/comments`: a comment in the issue's activity.
async fn comment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
    Form(form): Form<CommentForm>,
) -> WebResult {
    viewer.check_csrf(&form.csrf)?;
    let (issue, _) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    let text = form.text.trim();
    if text.is_empty() {
        return Err(WebError::BadRequest("A comment needs some text.".into()));
    }
    if text.chars().count() > MAX_COMMENT {
        return Err(WebError::BadRequest(format!(
            "A comment can be at most {MAX_COMMENT} characters long."
        )));
    }
    state
        .store
        .add_comment(issue.id, viewer.user.id, text, now())
        .await?;
    Ok(Redirect::to(&issue_path(&org, issue.id)).into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST …/reprocess`: the issue's events digested again (after their source maps were
/// uploaded).
async fn reprocess(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    viewer.check_csrf(&form.csrf)?;
    let (issue, project) = viewer.issue(&state, &org, parse_id(&id)?).await?;
    state.symbolicator.forget_lookups();
    crate::symbolicate::reprocess::reprocess_issue(
        state.store.as_ref(),
        &state.spool,
        project.id,
        issue.id,
    )
    .await
    .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(Redirect::to(&issue_path(&org, issue.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_keep_only_safe_characters() {
        assert_eq!(safe_filename("report \"x\".txt", "f"), "reportx.txt");
        assert_eq!(safe_filename("../..", "f"), "f");
        assert_eq!(safe_filename("", "f"), "f");
    }

    #[test]
    fn form_numbers_are_positive() {
        assert_eq!(positive(None, "x").unwrap(), None);
        assert_eq!(positive(Some(" "), "x").unwrap(), None);
        assert_eq!(positive(Some("30"), "x").unwrap(), Some(30));
        assert!(positive(Some("0"), "x").is_err());
        assert!(positive(Some("-5"), "x").is_err());
        assert!(positive(Some("abc"), "x").is_err());
    }

    #[test]
    fn sizes_read_in_bytes_kilobytes_and_megabytes() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KB");
        assert_eq!(size(3 * 1_048_576), "3.0 MB");
    }
}
