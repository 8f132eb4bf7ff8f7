//! `/api/0/…/issues/`: list, search, read and update issues; their tag breakdowns.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Page, QueryList, base_url, check_access, param, search, serialize, visible_project};
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::store::{Issue, IssueFilter, Project, User};

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// `GET /api/0/projects/{org}/{project}/issues/`
pub async fn list_project(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    list(&state, vec![project], uri.path(), &q).await
}

/// `GET /api/0/organizations/{org}/issues/`: across the projects of the organization the user
/// can see (optionally narrowed with `project=ID`).
pub async fn list_org(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let wanted: Vec<i64> = q
        .iter()
        .filter(|(k, _)| k == "project")
        .filter_map(|(_, v)| v.parse().ok())
        .filter(|id| *id != -1)
        .collect();
    let projects: Vec<Project> = state
        .store
        .projects_for(&user)
        .await?
        .into_iter()
        .filter(|p| p.org_slug == org)
        .filter(|p| wanted.is_empty() || wanted.contains(&p.id))
        .collect();
    if projects.is_empty() {
        state.store.organization(&org).await?;
    }
    list(&state, projects, uri.path(), &q).await
}

async fn list(
    state: &AppState,
    projects: Vec<Project>,
    path: &str,
    q: &[(String, String)],
) -> Result<Response, ApiError> {
    let page = Page::from_query(q);
    let ids = projects.iter().map(|p| p.id).collect();
    let filter = IssueFilter {
        limit: page.limit + 1,
        offset: page.offset,
        ..search::from_params(ids, q, now())
    };
    let mut issues = state.store.list_issues(&filter).await?;
    let has_next = issues.len() as i64 > page.limit;
    issues.truncate(page.limit as usize);
    let period = param(q, "statsPeriod")
        .or(param(q, "groupStatsPeriod"))
        .unwrap_or("24h");
    let stats = stats_for(state, &issues, period).await?;
    let by_id: HashMap<i64, &Project> = projects.iter().map(|p| (p.id, p)).collect();
    let body: Vec<Value> = issues
        .iter()
        .filter_map(|i| {
            let project = by_id.get(&i.project_id)?;
            let s = stats
                .as_ref()
                .map(|(name, m)| (name.as_str(), m.get(&i.id).cloned().unwrap_or_default()));
            Some(serialize::issue(i, project, &state.public_url, s))
        })
        .collect();
    let headers = page.link_header(&base_url(state, path, q), has_next);
    Ok((headers, Json(body)).into_response())
}

type Stats = Option<(String, HashMap<i64, Vec<(i64, i64)>>)>;

/// Per-issue trend buckets for `24h` (hourly) or `14d` (daily); `""` = none.
async fn stats_for(state: &AppState, issues: &[Issue], period: &str) -> Result<Stats, ApiError> {
    let (size, n) = match period {
        "" => return Ok(None),
        "14d" => (86400, 14),
        "30d" => (86400, 30),
        _ => (3600, 24),
    };
    let now = now() as i64;
    let since = now - size * n;
    let ids: Vec<i64> = issues.iter().map(|i| i.id).collect();
    let hourly = state.store.issue_hourly(&ids, since).await?;
    let out = ids
        .iter()
        .map(|id| {
            let h = hourly.get(id).map(Vec::as_slice).unwrap_or(&[]);
            (*id, serialize::buckets(h, now, size, n))
        })
        .collect();
    let name = if size == 3600 { "24h" } else { period };
    Ok(Some((name.to_string(), out)))
}

/// The issue if the user may see it, with its project.
pub async fn visible_issue(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<(Issue, Project), ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    let issue = state.store.issue(id).await?;
    let project = state.store.project(issue.project_id).await?;
    check_access(state, user, &project).await?;
    Ok((issue, project))
}

/// `GET /api/0/issues/{id}/`
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (issue, project) = visible_issue(&state, &user, &id).await?;
    detail(&state, &issue, &project).await
}

/// `GET /api/0/organizations/{org}/issues/{id}/`
pub async fn get_in_org(
    state: State<AppState>,
    user: AuthUser,
    Path((_org, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get(state, user, Path(id)).await
}

async fn detail(
    state: &AppState,
    issue: &Issue,
    project: &Project,
) -> Result<Json<Value>, ApiError> {
    let stats = stats_for(state, std::slice::from_ref(issue), "24h").await?;
    let s = stats
        .as_ref()
        .map(|(n, m)| (n.as_str(), m.get(&issue.id).cloned().unwrap_or_default()));
    let mut v = serialize::issue(issue, project, &state.public_url, s);
    let keys = state.store.issue_tag_keys(issue.id).await?;
    if let Value::Object(m) = &mut v {
        m.insert(
            "tags".into(),
            json!(
                keys.iter()
                    .map(|k| json!({"key": k.key, "name": k.key, "totalValues": k.total_values}))
                    .collect::<Vec<_>>()
            ),
        );
        m.insert("activity".into(), json!([]));
        let reports = state.store.issue_user_reports(issue.id).await?;
        m.insert("userReportCount".into(), json!(reports.len()));
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
pub struct IssueUpdate {
    status: Option<String>,
}

/// `PUT /api/0/issues/{id}/`: `{"status": "resolved" | "unresolved" | "ignored"}`.
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(body): Json<IssueUpdate>,
) -> Result<Json<Value>, ApiError> {
    let (issue, project) = visible_issue(&state, &user, &id).await?;
    if let Some(status) = body.status {
        let status = match status.as_str() {
            "resolved" | "resolvedInNextRelease" => "resolved",
            "unresolved" => "unresolved",
            "ignored" | "muted" | "archived" => "ignored",
            other => return Err(ApiError::bad_request(format!("unknown status {other:?}"))),
        };
        state.store.set_issue_status(issue.id, status).await?;
    }
    let issue = state.store.issue(issue.id).await?;
    detail(&state, &issue, &project).await
}

/// `PUT /api/0/organizations/{org}/issues/{id}/`
pub async fn update_in_org(
    state: State<AppState>,
    user: AuthUser,
    Path((_org, id)): Path<(String, String)>,
    body: Json<IssueUpdate>,
) -> Result<Json<Value>, ApiError> {
    update(state, user, Path(id), body).await
}

fn tag_value_json(v: &crate::store::TagValue) -> Value {
    json!({
        "key": v.key,
        "name": v.value,
        "value": v.value,
        "count": v.count,
        "firstSeen": serialize::iso(v.first_seen),
        "lastSeen": serialize::iso(v.last_seen),
    })
}

/// `GET /api/0/issues/{id}/tags/`: every tag key with its top values and their share.
pub async fn tags(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (issue, _) = visible_issue(&state, &user, &id).await?;
    let keys = state.store.issue_tag_keys(issue.id).await?;
    let mut out = Vec::new();
    for k in keys {
        let top = state.store.issue_tag_values(issue.id, &k.key, 9, 0).await?;
        out.push(json!({
            "key": k.key,
            "name": k.key,
            "uniqueValues": k.unique_values,
            "totalValues": k.total_values,
            "topValues": top.iter().map(tag_value_json).collect::<Vec<_>>(),
        }));
    }
    Ok(Json(json!(out)))
}

/// `GET /api/0/issues/{id}/tags/{key}/`
pub async fn tag(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (issue, _) = visible_issue(&state, &user, &id).await?;
    let keys = state.store.issue_tag_keys(issue.id).await?;
    let k = keys
        .into_iter()
        .find(|k| k.key == key)
        .ok_or_else(ApiError::not_found)?;
    let top = state.store.issue_tag_values(issue.id, &key, 9, 0).await?;
    Ok(Json(json!({
        "key": k.key,
        "name": k.key,
        "uniqueValues": k.unique_values,
        "totalValues": k.total_values,
        "topValues": top.iter().map(tag_value_json).collect::<Vec<_>>(),
    })))
}

/// `GET /api/0/issues/{id}/tags/{key}/values/`
pub async fn tag_values(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, key)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let (issue, _) = visible_issue(&state, &user, &id).await?;
    let page = Page::from_query(&q);
    let mut values = state
        .store
        .issue_tag_values(issue.id, &key, page.limit + 1, page.offset)
        .await?;
    let has_next = values.len() as i64 > page.limit;
    values.truncate(page.limit as usize);
    let headers = page.link_header(&base_url(&state, uri.path(), &q), has_next);
    Ok((
        headers,
        Json(json!(values.iter().map(tag_value_json).collect::<Vec<_>>())),
    )
        .into_response())
}

/// `GET /api/0/issues/{id}/user-reports/`: feedback users left on the issue's events.
pub async fn user_reports(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (issue, _) = visible_issue(&state, &user, &id).await?;
    let reports = state.store.issue_user_reports(issue.id).await?;
    Ok(Json(json!(
        reports
            .iter()
            .map(|r| json!({
                "id": r.id.to_string(),
                "eventID": r.event_id,
                "name": r.name,
                "email": r.email,
                "comments": r.comments,
                "dateCreated": serialize::iso(r.date_created),
                "issue": {"id": issue.id.to_string()},
            }))
            .collect::<Vec<_>>()
    )))
}
