//! The issues list: one place for every project's errors, filtered with the API's search
//! language, sorted, with 24 h / 14 d sparklines and bulk actions.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};

use crate::api::{QueryList, param, search};
use crate::server::AppState;
use crate::store::{IgnoreRule, Issue, IssueChange, Project};

use super::page::{Layout, WebError, WebResult, render};
use super::session::{Viewer, now};
use super::view::{self, Chart};

/// Issues per page.
const PER_PAGE: i64 = 25;

/// One row of the list, ready to show.
pub struct Row {
    pub id: i64,
    pub url: String,
    pub short_id: String,
    pub project: String,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub status: String,
    pub is_new: bool,
    pub regressed: bool,
    pub events: String,
    pub users: String,
    pub first_seen: String,
    pub last_seen: String,
    pub first_seen_iso: String,
    pub last_seen_iso: String,
    pub assignee: Option<String>,
    pub chart: Chart,
}

impl Row {
    /// Builds a row; `stats` are the issue's hourly counts.
    pub fn new(issue: &Issue, project: &Project, stats: &[(i64, i64)], period: &str) -> Row {
        let t = now();
        let chart = if period == "14d" {
            Chart::new(
                "spark",
                &view::buckets(stats, t as i64, 86400, 14),
                86400,
                96.0,
                24.0,
                &[],
                false,
            )
        } else {
            Chart::sparkline(stats, t as i64)
        };
        Row {
            id: issue.id,
            url: issue_url(project, issue.id),
            short_id: view::short_id(project, issue.short_id),
            project: project.slug.clone(),
            title: issue.title.clone(),
            culprit: issue.culprit.clone(),
            level: issue.level.clone(),
            status: issue.status.clone(),
            is_new: t - issue.first_seen < 86400.0,
            regressed: issue.is_regression,
            events: view::count(issue.times_seen),
            users: view::count(issue.user_count),
            first_seen: view::ago(issue.first_seen, t),
            last_seen: view::ago(issue.last_seen, t),
            first_seen_iso: view::iso(issue.first_seen),
            last_seen_iso: view::iso(issue.last_seen),
            assignee: issue.assignee_email.clone(),
            chart,
        }
    }
}

/// The issue page of an issue (what the API's `permalink` points at).
pub fn issue_url(project: &Project, id: i64) -> String {
    format!("/organizations/{}/issues/{id}/", project.org_slug)
}

/// Rows for issues, with their sparklines loaded in one query.
pub async fn rows(
    state: &AppState,
    issues: &[Issue],
    projects: &HashMap<i64, &Project>,
    period: &str,
) -> WebResult<Vec<Row>> {
    let days = if period == "14d" { 14 } else { 1 };
    let since = now() as i64 - days * 86400;
    let ids: Vec<i64> = issues.iter().map(|i| i.id).collect();
    let stats = state.store.issue_hourly(&ids, since).await?;
    Ok(issues
        .iter()
        .filter_map(|i| {
            let p = projects.get(&i.project_id)?;
            let s = stats.get(&i.id).map(Vec::as_slice).unwrap_or(&[]);
            Some(Row::new(i, p, s, period))
        })
        .collect())
}

/// A choice in a `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices(current: &str, options: &[(&str, &str)]) -> Vec<Choice> {
    options
        .iter()
        .map(|(v, l)| Choice {
            value: v.to_string(),
            label: l.to_string(),
            selected: *v == current,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "issues.html")]
struct IssuesPage {
    layout: Layout,
    query: String,
    environment: String,
    release: String,
    projects: Vec<Choice>,
    statuses: Vec<Choice>,
    levels: Vec<Choice>,
    sorts: Vec<Choice>,
    periods: Vec<Choice>,
    ranges: Vec<Choice>,
    rows: Vec<Row>,
    many_projects: bool,
    prev: Option<String>,
    next: Option<String>,
    here: String,
}

/// The page's URL with `page` replaced.
fn with_page(q: &[(String, String)], page: i64) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q.iter().filter(|(k, _)| k != "page") {
        s.append_pair(k, v);
    }
    if page > 1 {
        s.append_pair("page", &page.to_string());
    }
    format!("/issues/?{}", s.finish())
}

/// `GET /issues/`: the issues of every project the user can see (or of `project=ID`).
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    axum::extract::Query(q): QueryList,
) -> WebResult {
    let visible = viewer.projects(&state).await?;
    let wanted: Option<i64> = param(&q, "project").and_then(|p| p.parse().ok());
    let shown: Vec<&Project> = visible
        .iter()
        .filter(|p| wanted.is_none_or(|w| w == p.id))
        .collect();
    if wanted.is_some() && shown.is_empty() {
        return Err(WebError::NotFound);
    }
    let t = now();
    let page: i64 = param(&q, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1i64)
        .max(1);
    let mut filter = search::from_params(shown.iter().map(|p| p.id).collect(), &q, t);
    // The status select narrows the query's `is:` (the select wins when both are given).
    match param(&q, "status").unwrap_or("") {
        "" => {}
        "all" => filter.statuses.clear(),
        s => filter.statuses = vec![s.to_string()],
    }
    let range = param(&q, "range").unwrap_or("");
    let secs = match range {
        "1h" => Some(3600.0),
        "24h" => Some(86400.0),
        "7d" => Some(7.0 * 86400.0),
        "14d" => Some(14.0 * 86400.0),
        "30d" => Some(30.0 * 86400.0),
        _ => None,
    };
    if let Some(secs) = secs {
        filter.last_seen_after = Some(t - secs);
    }
    filter.limit = PER_PAGE + 1;
    filter.offset = (page - 1) * PER_PAGE;
    let mut issues = state.store.list_issues(&filter).await?;
    let has_next = issues.len() as i64 > PER_PAGE;
    issues.truncate(PER_PAGE as usize);
    let period = match param(&q, "period") {
        Some("14d") => "14d",
        _ => "24h",
    };
    let by_id: HashMap<i64, &Project> = shown.iter().map(|p| (p.id, *p)).collect();
    let rows = rows(&state, &issues, &by_id, period).await?;

    let mut projects = vec![Choice {
        value: String::new(),
        label: "All projects".into(),
        selected: wanted.is_none(),
    }];
    projects.extend(visible.iter().map(|p| Choice {
        value: p.id.to_string(),
        label: format!("{}/{}", p.org_slug, p.slug),
        selected: wanted == Some(p.id),
    }));
    let query = param(&q, "query").unwrap_or("is:unresolved").to_string();
    let here = with_page(&q, page);
    render(&IssuesPage {
        layout: Layout::new(&viewer, "Issues", "issues"),
        environment: param(&q, "environment").unwrap_or("").to_string(),
        release: param(&q, "release").unwrap_or("").to_string(),
        projects,
        statuses: choices(
            param(&q, "status").unwrap_or(""),
            &[
                ("", "Status from the query"),
                ("unresolved", "Unresolved"),
                ("resolved", "Resolved"),
                ("ignored", "Ignored"),
                ("all", "Any status"),
            ],
        ),
        levels: choices(
            param(&q, "level").unwrap_or(""),
            &[
                ("", "Any level"),
                ("fatal", "Fatal"),
                ("error", "Error"),
                ("warning", "Warning"),
                ("info", "Info"),
                ("debug", "Debug"),
            ],
        ),
        sorts: choices(
            param(&q, "sort").unwrap_or("date"),
            &[
                ("date", "Last seen"),
                ("new", "First seen"),
                ("freq", "Events"),
                ("user", "Users"),
            ],
        ),
        periods: choices(period, &[("24h", "24 hours"), ("14d", "14 days")]),
        ranges: choices(
            range,
            &[
                ("", "Any time"),
                ("1h", "Seen in the last hour"),
                ("24h", "Seen in the last 24 h"),
                ("7d", "Seen in the last 7 d"),
                ("14d", "Seen in the last 14 d"),
                ("30d", "Seen in the last 30 d"),
            ],
        ),
        rows,
        many_projects: shown.len() > 1,
        prev: (page > 1).then(|| with_page(&q, page - 1)),
        next: has_next.then(|| with_page(&q, page + 1)),
        here,
        query,
    })
}

/// `POST /issues/bulk`: resolve, ignore or reopen the checked issues (`ids`, repeated).
pub async fn bulk(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> WebResult {
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    viewer.check_csrf(&get("csrf"))?;
    let change = match get("action").as_str() {
        "resolve" => IssueChange::Resolve,
        "ignore" => IssueChange::Ignore(IgnoreRule::default()),
        "unresolve" => IssueChange::Unresolve,
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    let visible: Vec<i64> = viewer
        .projects(&state)
        .await?
        .iter()
        .map(|p| p.id)
        .collect();
    let mut ids = Vec::new();
    for id in fields
        .iter()
        .filter(|(k, _)| k == "ids")
        .filter_map(|(_, v)| v.parse::<i64>().ok())
        .take(1000)
    {
        let issue = state.store.issue(id).await?;
        if !visible.contains(&issue.project_id) {
            return Err(WebError::NotFound);
        }
        ids.push(id);
    }
    if !ids.is_empty() {
        state
            .store
            .update_issues(&ids, &change, Some(viewer.user.id), now())
            .await?;
    }
    let back = get("back");
    let back = if back.starts_with("/issues/") {
        back
    } else {
        "/issues/".to_string()
    };
    Ok(Redirect::to(&back).into_response())
}
