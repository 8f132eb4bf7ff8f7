//! A project's releases page: `GET /organizations/{org}/projects/{project}/releases/` lists
//! the project's newest releases (version, when created and finalized, last event, new
//! issues, events, crash-free sessions and users, adoption, deploys). Anyone who can see the
//! project reads it.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;

use crate::server::AppState;
use crate::store::Release;

use super::alerts::alerts_url;
use super::page::{Layout, WebResult, render};
use super::session::{Viewer, now};
use super::settings::project_settings_url;
use super::view::{Chart, Mark, ago, buckets, count, iso};

/// How many releases the page lists (newest first).
const RELEASES_SHOWN: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/organizations/{org}/projects/{project}/releases/",
        get(releases_page),
    )
}

pub fn releases_url(org: &str, slug: &str) -> String {
    format!("/organizations/{org}/projects/{slug}/releases/")
}

struct ReleaseRow {
    version: String,
    created: String,
    created_iso: String,
    /// `None` while not finalized.
    released: Option<String>,
    last_event: Option<String>,
    last_event_iso: Option<String>,
    new_issues: String,
    events: String,
    /// "99.5 %"; `None` without sessions.
    crash_free_sessions: Option<String>,
    crash_free_users: Option<String>,
    adoption: Option<String>,
    sessions: String,
    deploys: i64,
    /// "production, 2 h ago".
    last_deploy: Option<String>,
    status: String,
}

#[derive(Template)]
#[template(path = "project_releases.html")]
struct ReleasesPage {
    layout: Layout,
    org: String,
    name: String,
    issues_url: String,
    settings_url: String,
    alerts_url: String,
    /// Events per day over 30 days, with releases (created) and deploys marked.
    chart: Chart,
    releases: Vec<ReleaseRow>,
}

/// "99.5 %", with as many decimals as make a difference near 100.
fn pct(p: Option<f64>) -> Option<String> {
    p.map(|p| {
        if (99.0..100.0).contains(&p) {
            format!("{p:.2} %")
        } else {
            format!("{p:.1} %")
        }
    })
}

async fn row(state: &AppState, project_id: i64, r: &Release, t: f64) -> WebResult<ReleaseRow> {
    let rp = r.projects.iter().find(|p| p.project_id == project_id);
    let health = state
        .store
        .release_health(&[project_id], &r.version, None, t)
        .await?;
    let h = health.first();
    Ok(ReleaseRow {
        version: r.version.clone(),
        created: ago(r.date_created, t),
        created_iso: iso(r.date_created),
        released: r.date_released.map(|d| ago(d, t)),
        last_event: rp.and_then(|p| p.last_event).map(|e| ago(e, t)),
        last_event_iso: rp.and_then(|p| p.last_event).map(iso),
        new_issues: count(rp.map_or(0, |p| p.new_groups)),
        events: count(rp.map_or(0, |p| p.event_count)),
        crash_free_sessions: pct(h.and_then(|h| h.crash_free_sessions())),
        crash_free_users: pct(h.and_then(|h| h.crash_free_users())),
        adoption: pct(h.and_then(|h| h.adoption())),
        sessions: count(h.map_or(0, |h| h.sessions)),
        deploys: r.deploy_count,
        last_deploy: r
            .last_deploy
            .as_ref()
            .map(|d| format!("{}, {}", d.environment, ago(d.date_finished, t))),
        status: r.status.clone(),
    })
}

async fn releases_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
) -> WebResult {
    let project = viewer.project(&state, &org, &slug).await?;
    let t = now();
    let list = state
        .store
        .releases(project.org_id, &[project.id], None, None, 0, RELEASES_SHOWN)
        .await?;
    let mut releases = Vec::with_capacity(list.len());
    for r in &list {
        releases.push(row(&state, project.id, r, t).await?);
    }
    let since = t as i64 - 30 * 86400;
    let hourly = state.store.project_hourly(project.id, since).await?;
    let mut marks: Vec<Mark> = list
        .iter()
        .filter(|r| r.date_created >= since as f64)
        .map(|r| (r.date_created, format!("release {}", r.version), "release"))
        .collect();
    marks.extend(
        state
            .store
            .project_deploys(project.id, since as f64)
            .await?
            .iter()
            .map(|d| {
                (
                    d.date_finished,
                    format!("{} deployed to {}", d.version, d.environment),
                    "deploy",
                )
            }),
    );
    let month = buckets(&hourly, t as i64, 86400, 30);
    let chart = Chart::new("chart", &month, 86400, 480.0, 90.0, &marks, true);
    render(&ReleasesPage {
        layout: Layout::new(&viewer, format!("{} releases", project.name), "issues"),
        issues_url: format!("/issues/?project={}", project.id),
        settings_url: project_settings_url(&project.org_slug, &project.slug),
        alerts_url: alerts_url(&project.org_slug, &project.slug),
        chart,
        org: project.org_slug,
        name: project.name,
        releases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_keep_the_decimals_that_matter() {
        assert_eq!(pct(Some(99.456)).as_deref(), Some("99.46 %"));
        assert_eq!(pct(Some(100.0)).as_deref(), Some("100.0 %"));
        assert_eq!(pct(Some(75.0)).as_deref(), Some("75.0 %"));
        assert_eq!(pct(None), None);
    }
}
