//! Sentry's web API (`/api/0/…`) over stored issues and events, for `sentry-cli` and scripts.
//!
//! - [`search`]: the issue search language (`is:unresolved browser:Chrome free text`).
//! - [`serialize`]: issues and events in Sentry's JSON shapes.
//! - [`artifacts`]: source map uploads (chunk upload, artifact bundles, release files).
//! - [`reprocess`]: an issue's events digested again (after their maps were uploaded).
//! - [`issues`], [`events`], [`projects`], [`alerts`], [`releases`]: one file per resource.
//!
//! Every route needs `Authorization: Bearer <token>` and checks that the user may see the
//! project involved (superusers see everything, members see their organizations' projects).

pub mod alerts;
pub mod artifacts;
pub mod events;
pub mod issues;
pub mod projects;
pub mod releases;
pub mod reprocess;
pub mod search;
pub mod serialize;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::routing::get;

use crate::http::ApiError;
use crate::server::AppState;
use crate::store::{Project, User};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/0/", get(projects::index))
        .route("/api/0/organizations/", get(projects::organizations))
        .route("/api/0/projects/", get(projects::all))
        .route(
            "/api/0/organizations/{org}/projects/",
            get(projects::org_projects),
        )
        .route("/api/0/organizations/{org}/issues/", get(issues::list_org))
        .route(
            "/api/0/organizations/{org}/issues/{id}/",
            get(issues::get_in_org).put(issues::update_in_org),
        )
        .route(
            "/api/0/projects/{org}/{project}/",
            get(projects::get).put(projects::update),
        )
        .route(
            "/api/0/projects/{org}/{project}/issues/",
            get(issues::list_project),
        )
        .route(
            "/api/0/projects/{org}/{project}/keys/",
            get(projects::keys).post(projects::create_key),
        )
        .route(
            "/api/0/projects/{org}/{project}/keys/{key_id}/",
            get(projects::get_key).put(projects::update_key),
        )
        .route(
            "/api/0/projects/{org}/{project}/alert-rules/",
            get(alerts::list).post(alerts::create),
        )
        .route(
            "/api/0/projects/{org}/{project}/alert-rules/{id}/",
            get(alerts::get).put(alerts::update).delete(alerts::delete),
        )
        .route(
            "/api/0/projects/{org}/{project}/events/",
            get(events::list_project),
        )
        .route(
            "/api/0/projects/{org}/{project}/events/{event_id}/",
            get(events::get_project_event),
        )
        .route(
            "/api/0/projects/{org}/{project}/events/{event_id}/json/",
            get(events::get_project_event_json),
        )
        .route(
            "/api/0/projects/{org}/{project}/events/{event_id}/attachments/",
            get(events::attachments),
        )
        .route(
            "/api/0/projects/{org}/{project}/events/{event_id}/attachments/{attachment_id}/",
            get(events::attachment),
        )
        .route(
            "/api/0/organizations/{org}/releases/",
            get(releases::list_org).post(releases::create_org),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/",
            get(releases::get)
                .put(releases::update)
                .delete(releases::delete),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/commits/",
            get(releases::commits),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/previous-with-commits/",
            get(releases::previous_with_commits),
        )
        .route(
            "/api/0/organizations/{org}/releases/{version}/deploys/",
            get(releases::deploys).post(releases::create_deploy),
        )
        .route("/api/0/organizations/{org}/repos/", get(releases::repos))
        .route(
            "/api/0/projects/{org}/{project}/releases/",
            get(releases::list_project).post(releases::create_project),
        )
        .route(
            "/api/0/projects/{org}/{project}/releases/{version}/",
            get(releases::get_in_project),
        )
        .route("/api/0/issues/{id}/", get(issues::get).put(issues::update))
        .route("/api/0/issues/{id}/events/", get(events::list_issue))
        .route(
            "/api/0/issues/{id}/events/{which}/",
            get(events::get_issue_event),
        )
        .route("/api/0/issues/{id}/tags/", get(issues::tags))
        .route(
            "/api/0/issues/{id}/user-reports/",
            get(issues::user_reports),
        )
        .route("/api/0/issues/{id}/tags/{key}/", get(issues::tag))
        .route(
            "/api/0/issues/{id}/tags/{key}/values/",
            get(issues::tag_values),
        )
        // JSON bodies are read before a route can refuse the request (uploads stream: below).
        .layer(axum::middleware::from_fn(
            crate::http::body::read_first_json,
        ))
        .merge(artifacts::routes())
}

/// Query parameters as a list, so repeated keys (`project=1&project=2`) survive.
pub type QueryList = axum::extract::Query<Vec<(String, String)>>;

/// The first value of a query parameter.
pub fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The project `org/slug` if the user may see it; 404 otherwise (never reveal existence).
pub async fn visible_project(
    state: &AppState,
    user: &User,
    org: &str,
    slug: &str,
) -> Result<Project, ApiError> {
    let project = state.store.project_by_slug(org, slug).await?;
    check_access(state, user, &project).await?;
    Ok(project)
}

/// 404 unless the user may see the project.
pub async fn check_access(
    state: &AppState,
    user: &User,
    project: &Project,
) -> Result<(), ApiError> {
    if user.is_superuser {
        return Ok(());
    }
    let visible = state.store.projects_for(user).await?;
    if visible.iter().any(|p| p.id == project.id) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// Offset pagination with Sentry's cursor format (`value:offset:is_prev`).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

impl Page {
    /// The page asked for by `cursor` and `limit` (at most 100).
    pub fn from_query(q: &[(String, String)]) -> Page {
        let limit: Option<i64> = param(q, "limit").and_then(|l| l.parse().ok());
        let offset = param(q, "cursor")
            .and_then(|c| c.split(':').nth(1))
            .and_then(|o| o.parse().ok())
            .unwrap_or(0i64)
            .max(0);
        Page {
            offset,
            limit: limit.unwrap_or(100).clamp(1, 100),
        }
    }

    /// The `Link` header for a page that returned `got` rows (one extra row was asked for to
    /// learn whether a next page exists).
    pub fn link_header(&self, base_url: &str, has_next: bool) -> HeaderMap {
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let prev = (self.offset - self.limit).max(0);
        let link = format!(
            "<{base_url}{sep}cursor=0:{prev}:1>; rel=\"previous\"; results=\"{}\"; cursor=\"0:{prev}:1\", \
             <{base_url}{sep}cursor=0:{next}:0>; rel=\"next\"; results=\"{has_next}\"; cursor=\"0:{next}:0\"",
            self.offset > 0,
            next = self.offset + self.limit,
        );
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, v);
        }
        headers
    }
}

/// The request URL without `cursor`, for building `Link` headers.
pub fn base_url(state: &AppState, path: &str, query: &[(String, String)]) -> String {
    let rest: Vec<String> = query
        .iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect();
    if rest.is_empty() {
        format!("{}{path}", state.public_url)
    } else {
        format!("{}{path}?{}", state.public_url, rest.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
