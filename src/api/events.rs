//! `/api/0/…/events/`: an issue's events, one event in full, and a project's events.

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::issues::visible_issue;
use super::{Page, QueryList, base_url, param, serialize, visible_project};
use crate::envelope::parse_event_id;
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::store::{EventPick, EventRecord};

async fn full(state: &AppState, e: &EventRecord) -> Result<Value, ApiError> {
    let issue = state.store.issue(e.issue_id).await?;
    let neighbours = state
        .store
        .event_neighbours(e.project_id, e.issue_id, e.timestamp, &e.event_id)
        .await?;
    let report = state
        .store
        .issue_user_reports(e.issue_id)
        .await?
        .into_iter()
        .find(|r| r.event_id.as_deref() == Some(e.event_id.as_str()))
        .map(|r| serialize::user_report(&r, e.issue_id));
    Ok(serialize::event(e, &issue.title, neighbours, report))
}

/// `GET /api/0/issues/{id}/events/`
pub async fn list_issue(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let (issue, _) = visible_issue(&state, &user, &id).await?;
    let page = Page::from_query(&q);
    let mut events = state
        .store
        .issue_events(issue.id, page.limit + 1, page.offset)
        .await?;
    let has_next = events.len() as i64 > page.limit;
    events.truncate(page.limit as usize);
    let full_shape = param(&q, "full").is_some_and(|f| f == "true" || f == "1");
    let mut body = Vec::new();
    for e in &events {
        body.push(if full_shape {
            full(&state, e).await?
        } else {
            serialize::event_summary(e, &issue.title)
        });
    }
    let headers = page.link_header(&base_url(&state, uri.path(), &q), has_next);
    Ok((headers, Json(json!(body))).into_response())
}

/// `GET /api/0/issues/{id}/events/{latest|oldest|recommended|<event_id>}/`
pub async fn get_issue_event(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((id, which)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (issue, _) = visible_issue(&state, &user, &id).await?;
    let e = match which.as_str() {
        "latest" | "recommended" => state.store.issue_event(issue.id, EventPick::Latest).await?,
        "oldest" => state.store.issue_event(issue.id, EventPick::Oldest).await?,
        other => {
            let event_id = parse_event_id(other).ok_or_else(ApiError::not_found)?;
            let e = state.store.event(issue.project_id, &event_id).await?;
            if e.issue_id != issue.id {
                return Err(ApiError::not_found());
            }
            e
        }
    };
    Ok(Json(full(&state, &e).await?))
}

/// `GET /api/0/projects/{org}/{project}/events/`
pub async fn list_project(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let page = Page::from_query(&q);
    let mut events = state
        .store
        .project_events(project.id, page.limit + 1, page.offset)
        .await?;
    let has_next = events.len() as i64 > page.limit;
    events.truncate(page.limit as usize);
    let body: Vec<Value> = events
        .iter()
        .map(|e| serialize::event_summary(e, &crate::digest::title::title(&e.payload)))
        .collect();
    let headers = page.link_header(&base_url(&state, uri.path(), &q), has_next);
    Ok((headers, Json(json!(body))).into_response())
}

async fn project_event(
    state: &AppState,
    user: &crate::store::User,
    org: &str,
    slug: &str,
    event_id: &str,
) -> Result<EventRecord, ApiError> {
    let project = visible_project(state, user, org, slug).await?;
    let event_id = parse_event_id(event_id).ok_or_else(ApiError::not_found)?;
    Ok(state.store.event(project.id, &event_id).await?)
}

/// `GET /api/0/projects/{org}/{project}/events/{event_id}/`
pub async fn get_project_event(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, event_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let e = project_event(&state, &user, &org, &slug, &event_id).await?;
    Ok(Json(full(&state, &e).await?))
}

/// `GET /api/0/projects/{org}/{project}/events/{event_id}/json/`: the stored normalized event.
pub async fn get_project_event_json(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, event_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let e = project_event(&state, &user, &org, &slug, &event_id).await?;
    Ok(Json(e.payload))
}

fn attachment_json(a: &crate::store::Attachment) -> Value {
    json!({
        "id": a.id.to_string(),
        "eventId": a.event_id,
        "name": a.filename,
        "type": a.attachment_type,
        "mimetype": a.content_type,
        "size": a.size,
    })
}

/// `GET /api/0/projects/{org}/{project}/events/{event_id}/attachments/`
pub async fn attachments(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, event_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let event_id = parse_event_id(&event_id).ok_or_else(ApiError::not_found)?;
    let list = state.store.event_attachments(project.id, &event_id).await?;
    Ok(Json(json!(
        list.iter().map(attachment_json).collect::<Vec<_>>()
    )))
}

/// `GET …/events/{event_id}/attachments/{id}/`: the metadata, or with `?download=1` the bytes
/// (always as a download, never rendered inline: their content is attacker-controlled).
pub async fn attachment(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, event_id, id)): Path<(String, String, String, String)>,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let event_id = parse_event_id(&event_id).ok_or_else(ApiError::not_found)?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found())?;
    let (meta, data) = state.store.attachment(project.id, id).await?;
    if meta.event_id != event_id {
        return Err(ApiError::not_found());
    }
    if param(&q, "download").is_none_or(|d| d == "0") {
        return Ok(Json(attachment_json(&meta)).into_response());
    }
    let safe_name: String = meta
        .filename
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(100)
        .collect();
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_name}\""),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                "nosniff".to_string(),
            ),
        ],
        data,
    )
        .into_response())
}
