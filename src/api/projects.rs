//! `/api/0/` index, organizations, projects and their DSN keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{serialize, visible_project};
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::store::{Organization, Project, ProjectKey};

/// `GET /api/0/`: who the token belongs to.
pub async fn index(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({
        "version": "0",
        "auth": {"scopes": ["org:read", "project:read", "project:write", "project:releases", "event:read", "event:write"]},
        "user": {"id": user.id.to_string(), "email": user.email, "username": user.email, "isSuperuser": user.is_superuser},
    }))
}

fn org_json(o: &Organization) -> Value {
    json!({
        "id": o.id.to_string(),
        "slug": o.slug,
        "name": o.name,
        "dateCreated": serialize::iso(o.date_created),
        "status": {"id": "active", "name": "active"},
        "features": [],
    })
}

fn project_json(p: &Project) -> Value {
    json!({
        "id": p.id.to_string(),
        "slug": p.slug,
        "name": p.name,
        "platform": p.platform,
        "dateCreated": serialize::iso(p.date_created),
        "organization": {"slug": p.org_slug},
        "retentionMaxEvents": p.retention_max_events,
        "retentionDays": p.retention_days,
        "status": "active",
        "isMember": true,
        "hasAccess": true,
        "features": [],
    })
}

/// The DSN of a key, as SDKs are configured with it.
pub fn dsn(public_url: &str, key: &str, project_id: i64) -> String {
    match public_url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{key}@{rest}/{project_id}"),
        None => format!("http://{key}@{public_url}/{project_id}"),
    }
}

fn key_json(public_url: &str, k: &ProjectKey) -> Value {
    let dsn = dsn(public_url, &k.public_key, k.project_id);
    let api = format!("{public_url}/api/{}", k.project_id);
    json!({
        "id": k.public_key,
        "name": k.label,
        "label": k.label,
        "public": k.public_key,
        "secret": null,
        "projectId": k.project_id,
        "isActive": k.is_active,
        "rateLimit": k.rate_limit_count.map(|c| json!({"count": c, "window": k.rate_limit_window})),
        "dsn": {
            "public": dsn,
            "secret": dsn,
            "csp": format!("{api}/security/?sentry_key={}", k.public_key),
            "security": format!("{api}/security/?sentry_key={}", k.public_key),
            "minidump": format!("{api}/minidump/?sentry_key={}", k.public_key),
            "nel": format!("{api}/nel/?sentry_key={}", k.public_key),
            "unreal": format!("{api}/unreal/{}/", k.public_key),
            "cdn": null,
        },
        "dateCreated": serialize::iso(k.date_created),
    })
}

/// `GET /api/0/organizations/`
pub async fn organizations(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let orgs = state.store.organizations_for(&user).await?;
    Ok(Json(json!(orgs.iter().map(org_json).collect::<Vec<_>>())))
}

/// `GET /api/0/organizations/{org}/projects/`
pub async fn org_projects(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let projects: Vec<Value> = state
        .store
        .projects_for(&user)
        .await?
        .iter()
        .filter(|p| p.org_slug == org)
        .map(project_json)
        .collect();
    Ok(Json(json!(projects)))
}

/// `GET /api/0/projects/`: every project the user can see, in any organization.
pub async fn all(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let projects = state.store.projects_for(&user).await?;
    Ok(Json(json!(
        projects.iter().map(project_json).collect::<Vec<_>>()
    )))
}

/// `GET /api/0/projects/{org}/{project}/`
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    Ok(Json(project_json(&project)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUpdate {
    /// Most events kept (oldest evicted first); `null` = server default.
    retention_max_events: Option<i64>,
    /// Oldest event kept, in days; `null` = server default.
    retention_days: Option<i64>,
}

/// `PUT /api/0/projects/{org}/{project}/`: retention settings.
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    Json(body): Json<ProjectUpdate>,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    state
        .store
        .set_retention(project.id, body.retention_max_events, body.retention_days)
        .await?;
    let project = state.store.project(project.id).await?;
    Ok(Json(project_json(&project)))
}

/// `GET /api/0/projects/{org}/{project}/keys/`
pub async fn keys(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let keys = state.store.keys(project.id).await?;
    Ok(Json(json!(
        keys.iter()
            .map(|k| key_json(&state.public_url, k))
            .collect::<Vec<_>>()
    )))
}

#[derive(Deserialize)]
pub struct NewKey {
    name: Option<String>,
}

/// `POST /api/0/projects/{org}/{project}/keys/`
pub async fn create_key(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    body: Option<Json<NewKey>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let label = body
        .and_then(|b| b.0.name)
        .unwrap_or_else(|| "Default".into());
    let key = state
        .store
        .create_key(project.id, &crate::cli::random_hex(16), &label)
        .await?;
    Ok((StatusCode::CREATED, Json(key_json(&state.public_url, &key))))
}

async fn find_key(
    state: &AppState,
    user: &crate::store::User,
    org: &str,
    slug: &str,
    key_id: &str,
) -> Result<ProjectKey, ApiError> {
    let project = visible_project(state, user, org, slug).await?;
    state
        .store
        .keys(project.id)
        .await?
        .into_iter()
        .find(|k| k.public_key == key_id)
        .ok_or_else(ApiError::not_found)
}

/// `GET /api/0/projects/{org}/{project}/keys/{key_id}/`
pub async fn get_key(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, key_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = find_key(&state, &user, &org, &slug, &key_id).await?;
    Ok(Json(key_json(&state.public_url, &key)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUpdate {
    name: Option<String>,
    is_active: Option<bool>,
    /// `{"count": N, "window": SECONDS}`, or `null` to remove the limit.
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimit>>,
}

#[derive(Deserialize)]
pub struct RateLimit {
    count: i64,
    window: i64,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<RateLimit>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PUT /api/0/projects/{org}/{project}/keys/{key_id}/`: name, `isActive`, `rateLimit`.
pub async fn update_key(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, key_id)): Path<(String, String, String)>,
    Json(body): Json<KeyUpdate>,
) -> Result<Json<Value>, ApiError> {
    let key = find_key(&state, &user, &org, &slug, &key_id).await?;
    let rate_limit = match body.rate_limit {
        None => key.rate_limit_count.zip(key.rate_limit_window),
        Some(None) => None,
        Some(Some(r)) if r.count >= 0 && r.window > 0 => Some((r.count, r.window)),
        Some(Some(_)) => {
            return Err(ApiError::bad_request(
                "rateLimit needs count >= 0 and window > 0",
            ));
        }
    };
    let key = state
        .store
        .update_key(
            key.id,
            body.name.as_deref().unwrap_or(&key.label),
            body.is_active.unwrap_or(key.is_active),
            rate_limit,
        )
        .await?;
    state.keys.forget(&key.public_key);
    Ok(Json(key_json(&state.public_url, &key)))
}
