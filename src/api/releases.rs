//! Releases, their commits and deploys, and release health: what `sentry-cli releases …`
//! and `sentry-cli deploys …` call.
//!
//! A release belongs to an organization and is linked to projects; a user sees a release when
//! they see one of its projects, and sees only those of its projects. Version names arrive
//! percent-decoded from the path (`my-app@1.2.0+build.7`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Page, QueryList, base_url, param, serialize::iso, visible_project};
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::store::{
    Commit, Deploy, NewRelease, Project, Release, ReleaseChange, ReleaseHealth, User,
};

/// Longest version Sentry accepts.
const MAX_VERSION: usize = 200;
/// Most commits stored for one release.
const MAX_COMMITS: usize = 10_000;

fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// The projects of `org` the user may see; 404 when there are none (an organization the user
/// is no member of looks like one that does not exist).
async fn org_projects(state: &AppState, user: &User, org: &str) -> Result<Vec<Project>, ApiError> {
    let projects: Vec<Project> = state
        .store
        .projects_for(user)
        .await?
        .into_iter()
        .filter(|p| p.org_slug == org)
        .collect();
    if projects.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(projects)
}

/// The release `version` of `org` with only the projects the user sees; 404 when it has none.
async fn visible_release(
    state: &AppState,
    projects: &[Project],
    version: &str,
) -> Result<Release, ApiError> {
    let org_id = projects
        .first()
        .map(|p| p.org_id)
        .ok_or_else(ApiError::not_found)?;
    let mut release = state.store.release(org_id, version).await?;
    release
        .projects
        .retain(|rp| projects.iter().any(|p| p.id == rp.project_id));
    if release.projects.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(release)
}

/// Sentry's rules for a version name: not empty, at most 200 characters, no slash, no
/// newline or tab, not `.`, `..`, `latest` or only spaces.
fn check_version(version: &str) -> Result<(), ApiError> {
    let bad = version.trim().is_empty()
        || version.chars().count() > MAX_VERSION
        || version.contains(['/', '\n', '\r', '\t'])
        || matches!(version, "." | ".." | "latest");
    if bad {
        return Err(ApiError::bad_request(format!(
            "Invalid version name: {version:?} (at most {MAX_VERSION} characters, no slash, \
             newline or tab, not \".\", \"..\" or \"latest\")"
        )));
    }
    Ok(())
}

/// A timestamp as sentry-cli and scripts send it (RFC 3339), as seconds.
fn parse_time(field: &str, v: &Option<String>) -> Result<Option<f64>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_micros() as f64 / 1e6))
            .map_err(|_| ApiError::bad_request(format!("{field}: not an ISO 8601 date: {s:?}"))),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

fn health_json(h: Option<&ReleaseHealth>) -> Value {
    let Some(h) = h else {
        return json!({
            "hasHealthData": false,
            "totalSessions": 0, "totalUsers": 0, "sessionsCrashed": 0, "sessionsErrored": 0,
            "crashFreeSessions": null, "crashFreeUsers": null, "adoption": null,
            "sessionsAdoption": null, "totalSessions24h": 0, "totalProjectSessions24h": 0,
            "durationP50": null, "durationP90": null, "stats": {},
        });
    };
    json!({
        "hasHealthData": true,
        "totalSessions": h.sessions,
        "totalUsers": h.users,
        "sessionsCrashed": h.crashed,
        "sessionsErrored": h.errored,
        "sessionsAbnormal": h.abnormal,
        "sessionsUnhandled": h.unhandled,
        "crashFreeSessions": h.crash_free_sessions(),
        "crashFreeUsers": h.crash_free_users(),
        "adoption": h.adoption(),
        "sessionsAdoption": h.adoption(),
        "totalSessions24h": h.sessions_24h,
        "totalProjectSessions24h": h.project_sessions_24h,
        "durationP50": null,
        "durationP90": null,
        "stats": {},
    })
}

fn commit_json(c: &Commit) -> Value {
    json!({
        "id": c.id,
        "message": c.message,
        "dateCreated": c.timestamp.map(iso),
        "author": {"name": c.author_name, "email": c.author_email},
        "repository": c.repository.as_ref().map(|r| json!({"name": r})),
    })
}

fn deploy_json(d: &Deploy) -> Value {
    json!({
        "id": d.id.to_string(),
        "environment": d.environment,
        "name": d.name,
        "url": d.url,
        "dateStarted": d.date_started.map(iso),
        "dateFinished": iso(d.date_finished),
    })
}

/// A release in Sentry's shape, with the health of each of its projects.
fn release_json(r: &Release, health: &[ReleaseHealth]) -> Value {
    let first_event = r
        .projects
        .iter()
        .filter_map(|p| p.first_event)
        .reduce(f64::min);
    let last_event = r
        .projects
        .iter()
        .filter_map(|p| p.last_event)
        .reduce(f64::max);
    let projects: Vec<Value> = r
        .projects
        .iter()
        .map(|p| {
            let h = health.iter().find(|h| h.project_id == p.project_id);
            json!({
                "id": p.project_id,
                "slug": p.slug,
                "name": p.name,
                "platform": p.platform,
                "platforms": p.platform.iter().collect::<Vec<_>>(),
                "newGroups": p.new_groups,
                "eventCount": p.event_count,
                "firstEvent": p.first_event.map(iso),
                "lastEvent": p.last_event.map(iso),
                "hasHealthData": h.is_some(),
                "healthData": health_json(h),
            })
        })
        .collect();
    json!({
        "id": r.id,
        "version": r.version,
        "shortVersion": r.version,
        "status": r.status,
        "ref": r.git_ref,
        "url": r.url,
        "dateCreated": iso(r.date_created),
        "dateStarted": r.date_started.map(iso),
        "dateReleased": r.date_released.map(iso),
        "firstEvent": first_event.map(iso),
        "lastEvent": last_event.map(iso),
        "newGroups": r.projects.iter().map(|p| p.new_groups).sum::<i64>(),
        "eventCount": r.projects.iter().map(|p| p.event_count).sum::<i64>(),
        "commitCount": r.commit_count,
        "lastCommit": r.last_commit.as_ref().map(commit_json),
        "deployCount": r.deploy_count,
        "lastDeploy": r.last_deploy.as_ref().map(deploy_json),
        "authors": r.authors.iter().map(|(name, email)| json!({"name": name, "email": email}))
            .collect::<Vec<_>>(),
        "projects": projects,
        "owner": null,
        "data": {},
        "userAgent": null,
        "versionInfo": null,
        "currentProjectMeta": {},
    })
}

async fn release_response(
    state: &AppState,
    release: &Release,
    environment: Option<&str>,
) -> Result<Value, ApiError> {
    let ids: Vec<i64> = release.projects.iter().map(|p| p.project_id).collect();
    let health = state
        .store
        .release_health(&ids, &release.version, environment, now())
        .await?;
    Ok(release_json(release, &health))
}

/// The project ids a list asks for (`project=1&project=2`; none or `-1` = all visible).
fn wanted_projects(q: &[(String, String)], visible: &[Project]) -> Vec<i64> {
    let wanted: Vec<i64> = q
        .iter()
        .filter(|(k, _)| k == "project")
        .filter_map(|(_, v)| v.parse().ok())
        .filter(|id| *id != -1)
        .collect();
    visible
        .iter()
        .filter(|p| wanted.is_empty() || wanted.contains(&p.id))
        .map(|p| p.id)
        .collect()
}

async fn list(
    state: &AppState,
    visible: &[Project],
    ids: Vec<i64>,
    path: &str,
    q: &[(String, String)],
) -> Result<Response, ApiError> {
    let org_id = visible
        .first()
        .map(|p| p.org_id)
        .ok_or_else(ApiError::not_found)?;
    let page = Page::from_query(q);
    let query = param(q, "query").filter(|s| !s.is_empty());
    let environment = param(q, "environment").filter(|s| !s.is_empty());
    // As Sentry: open releases unless `status=archived` (or `status=` for every release).
    let status = match param(q, "status") {
        None => Some("open"),
        Some("") => None,
        Some(s) => Some(s),
    };
    let mut rows = state
        .store
        .releases(org_id, &ids, query, status, page.offset, page.limit + 1)
        .await?;
    let has_next = rows.len() as i64 > page.limit;
    rows.truncate(page.limit as usize);
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        r.projects.retain(|rp| ids.contains(&rp.project_id));
        out.push(release_response(state, &r, environment).await?);
    }
    let headers = page.link_header(&base_url(state, path, q), has_next);
    Ok((headers, Json(Value::Array(out))).into_response())
}

/// `GET /api/0/organizations/{org}/releases/`
pub async fn list_org(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let ids = wanted_projects(&q, &visible);
    list(&state, &visible, ids, uri.path(), &q).await
}

/// `GET /api/0/projects/{org}/{project}/releases/`
pub async fn list_project(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): QueryList,
) -> Result<Response, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let id = project.id;
    list(&state, &[project], vec![id], uri.path(), &q).await
}

/// What `POST …/releases/` accepts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    version: Option<String>,
    #[serde(default)]
    projects: Vec<Value>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    url: Option<String>,
    date_started: Option<String>,
    date_released: Option<String>,
    commits: Option<Vec<CommitBody>>,
    /// `open` or `archived`: `releases archive`/`restore` post the version with no projects.
    status: Option<String>,
}

fn check_status(status: &Option<String>) -> Result<(), ApiError> {
    match status.as_deref() {
        None | Some("open" | "archived") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "status: {other:?} is not one of open, archived"
        ))),
    }
}

/// A project named by slug or by id (as a string or a number).
fn project_named<'a>(visible: &'a [Project], v: &Value) -> Option<&'a Project> {
    match v {
        Value::String(s) => visible
            .iter()
            .find(|p| p.slug == *s || p.id.to_string() == *s),
        Value::Number(n) => visible.iter().find(|p| Some(p.id) == n.as_i64()),
        _ => None,
    }
}

async fn create(
    state: &AppState,
    visible: &[Project],
    body: CreateBody,
    fixed_project: Option<i64>,
) -> Result<Response, ApiError> {
    let version = body
        .version
        .ok_or_else(|| ApiError::bad_request("version: this field is required"))?;
    check_version(&version)?;
    let mut project_ids = Vec::new();
    let mut unknown = Vec::new();
    for v in &body.projects {
        match project_named(visible, v) {
            Some(p) => project_ids.push(p.id),
            None => unknown.push(v.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Invalid project ids or slugs: {}",
            unknown.join(", ")
        )));
    }
    check_status(&body.status)?;
    project_ids.extend(fixed_project);
    project_ids.sort_unstable();
    project_ids.dedup();
    let org_id = visible
        .first()
        .map(|p| p.org_id)
        .ok_or_else(ApiError::not_found)?;
    if project_ids.is_empty() {
        // sentry-cli archives and restores an existing release this way.
        let existing = match visible_release(state, visible, &version).await {
            Err(_) => return Err(ApiError::bad_request("projects: this field is required")),
            Ok(r) => r,
        };
        let change = ReleaseChange {
            status: body.status,
            ..ReleaseChange::default()
        };
        state
            .store
            .update_release(org_id, &version, &change)
            .await?;
        if let Some(commits) = body.commits {
            state
                .store
                .set_release_commits(existing.id, &to_commits(commits)?)
                .await?;
        }
        let release = visible_release(state, visible, &version).await?;
        let json = release_response(state, &release, None).await?;
        return Ok((StatusCode::ALREADY_REPORTED, Json(json)).into_response());
    }
    let new = NewRelease {
        version: version.clone(),
        project_ids,
        git_ref: body.git_ref,
        url: body.url,
        date_started: parse_time("dateStarted", &body.date_started)?,
        date_released: parse_time("dateReleased", &body.date_released)?,
    };
    let (release, created) = state.store.create_release(org_id, &new, now()).await?;
    if body.status.is_some() {
        let change = ReleaseChange {
            status: body.status,
            ..ReleaseChange::default()
        };
        state
            .store
            .update_release(org_id, &version, &change)
            .await?;
    }
    if let Some(commits) = body.commits {
        state
            .store
            .set_release_commits(release.id, &to_commits(commits)?)
            .await?;
    }
    let release = visible_release(state, visible, &version).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::ALREADY_REPORTED
    };
    Ok((status, Json(release_response(state, &release, None).await?)).into_response())
}

/// `POST /api/0/organizations/{org}/releases/` (`sentry-cli releases new`): 201 with the new
/// release; 208 with it when the version exists (then linked to the given projects too).
pub async fn create_org(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    create(&state, &visible, parse_json(&body)?, None).await
}

/// `POST /api/0/projects/{org}/{project}/releases/`
pub async fn create_project(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let id = project.id;
    create(&state, &[project], parse_json(&body)?, Some(id)).await
}

/// `GET /api/0/organizations/{org}/releases/{version}/` (`?environment=` narrows the health).
pub async fn get(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
    Query(q): QueryList,
) -> Result<Json<Value>, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    let environment = param(&q, "environment").filter(|s| !s.is_empty());
    Ok(Json(release_response(&state, &release, environment).await?))
}

/// `GET /api/0/projects/{org}/{project}/releases/{version}/`: the release in one project.
pub async fn get_in_project(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, slug, version)): Path<(String, String, String)>,
    Query(q): QueryList,
) -> Result<Json<Value>, ApiError> {
    let project = visible_project(&state, &user, &org, &slug).await?;
    let release = visible_release(&state, &[project], &version).await?;
    let environment = param(&q, "environment").filter(|s| !s.is_empty());
    Ok(Json(release_response(&state, &release, environment).await?))
}

/// One commit as `sentry-cli releases set-commits --local` sends it.
#[derive(Debug, Deserialize)]
struct CommitBody {
    id: String,
    repository: Option<String>,
    author_name: Option<String>,
    author_email: Option<String>,
    timestamp: Option<String>,
    message: Option<String>,
}

fn to_commits(commits: Vec<CommitBody>) -> Result<Vec<Commit>, ApiError> {
    if commits.len() > MAX_COMMITS {
        return Err(ApiError::bad_request(format!(
            "commits: at most {MAX_COMMITS} per release"
        )));
    }
    commits
        .into_iter()
        .map(|c| {
            if c.id.is_empty() || c.id.len() > 64 {
                return Err(ApiError::bad_request(format!(
                    "commits: invalid commit id {:?}",
                    c.id
                )));
            }
            Ok(Commit {
                timestamp: parse_time("commits.timestamp", &c.timestamp)?,
                id: c.id,
                repository: c.repository,
                author_name: c.author_name,
                author_email: c.author_email,
                message: c.message,
            })
        })
        .collect()
}

/// What `PUT …/releases/{version}/` accepts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    url: Option<String>,
    date_started: Option<String>,
    date_released: Option<String>,
    status: Option<String>,
    commits: Option<Vec<CommitBody>>,
    refs: Option<Vec<Value>>,
}

/// `PUT /api/0/organizations/{org}/releases/{version}/`: `releases finalize` (`dateReleased`),
/// `releases archive`/`restore` (`status`), `set-commits --local` (`commits`). `refs` (commits
/// resolved through repository integrations, `set-commits --auto`) need repositories, which
/// Faultline does not have: 400 naming them, as Sentry answers for unknown repositories.
pub async fn update(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    let body: UpdateBody = parse_json(&body)?;
    if let Some(refs) = body.refs.filter(|r| !r.is_empty()) {
        let names: Vec<String> = refs
            .iter()
            .filter_map(|r| r.get("repository").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        return Err(ApiError::bad_request(format!(
            "Invalid repository names: {}",
            names.join(", ")
        )));
    }
    check_status(&body.status)?;
    let change = ReleaseChange {
        git_ref: body.git_ref,
        url: body.url,
        date_started: parse_time("dateStarted", &body.date_started)?,
        date_released: parse_time("dateReleased", &body.date_released)?,
        status: body.status,
    };
    let org_id = release.org_id;
    state
        .store
        .update_release(org_id, &version, &change)
        .await?;
    if let Some(commits) = body.commits {
        state
            .store
            .set_release_commits(release.id, &to_commits(commits)?)
            .await?;
    }
    let release = visible_release(&state, &visible, &version).await?;
    Ok(Json(release_response(&state, &release, None).await?))
}

/// `DELETE /api/0/organizations/{org}/releases/{version}/` → 204. Events keep their release
/// name; a later event of the version creates the release again.
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    state
        .store
        .delete_release(release.org_id, &release.version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/0/organizations/{org}/releases/{version}/commits/`
pub async fn commits(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    let commits = state.store.release_commits(release.id).await?;
    Ok(Json(json!(
        commits.iter().map(commit_json).collect::<Vec<_>>()
    )))
}

/// `GET /api/0/organizations/{org}/releases/{version}/previous-with-commits/`: the newest
/// earlier release of the same projects that has commits (`set-commits --local` lists only
/// the commits after its last one); `{}` when there is none, as Sentry answers.
pub async fn previous_with_commits(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    let ids: Vec<i64> = release.projects.iter().map(|p| p.project_id).collect();
    let mut offset = 0;
    loop {
        let page = state
            .store
            .releases(release.org_id, &ids, None, None, offset, 100)
            .await?;
        if page.is_empty() {
            return Ok(Json(json!({})));
        }
        for r in &page {
            let earlier = (r.date_created, r.id) < (release.date_created, release.id);
            if earlier && r.commit_count > 0 {
                return Ok(Json(release_response(&state, r, None).await?));
            }
        }
        offset += 100;
    }
}

/// `GET /api/0/organizations/{org}/repos/`: the repositories connected to the organization.
/// Faultline connects none (commits come from `set-commits --local`), so the list is empty and
/// `set-commits --auto` tells the user that no repository is configured.
pub async fn repos(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(org): Path<String>,
) -> Result<Json<Value>, ApiError> {
    org_projects(&state, &user, &org).await?;
    Ok(Json(json!([])))
}

/// What `POST …/deploys/` accepts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeployBody {
    environment: Option<String>,
    name: Option<String>,
    url: Option<String>,
    date_started: Option<String>,
    date_finished: Option<String>,
}

/// `GET /api/0/organizations/{org}/releases/{version}/deploys/`, newest first.
pub async fn deploys(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    let deploys = state.store.deploys(release.id).await?;
    Ok(Json(json!(
        deploys.iter().map(deploy_json).collect::<Vec<_>>()
    )))
}

/// `POST /api/0/organizations/{org}/releases/{version}/deploys/` (`sentry-cli deploys new`)
/// → 201 with the deploy. `dateFinished` defaults to now.
pub async fn create_deploy(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path((org, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let visible = org_projects(&state, &user, &org).await?;
    let release = visible_release(&state, &visible, &version).await?;
    let body: DeployBody = parse_json(&body)?;
    let environment = body
        .environment
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("environment: this field is required"))?;
    if environment.chars().count() > 64 || environment.contains(['/', '\n', '\r', '\t']) {
        return Err(ApiError::bad_request(format!(
            "environment: invalid name {environment:?}"
        )));
    }
    let deploy = Deploy {
        environment,
        name: body.name,
        url: body.url,
        date_started: parse_time("dateStarted", &body.date_started)?,
        date_finished: parse_time("dateFinished", &body.date_finished)?.unwrap_or_else(now),
        ..Deploy::default()
    };
    let deploy = state.store.create_deploy(release.id, &deploy).await?;
    Ok((StatusCode::CREATED, Json(deploy_json(&deploy))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_follow_sentry() {
        for ok in ["1.0", "my-app@1.2.0+build.7", "a b", "abc123def"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            ".",
            "..",
            "latest",
            "a/b",
            "a\nb",
            &"x".repeat(201),
        ] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_parse_as_rfc3339() {
        assert_eq!(
            parse_time("t", &Some("2026-11-25T12:00:00.5Z".into())).unwrap(),
            Some(1_795_608_000.5)
        );
        assert_eq!(parse_time("t", &None).unwrap(), None);
        assert!(parse_time("t", &Some("yesterday".into())).is_err());
    }
}
