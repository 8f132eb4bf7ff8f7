//! The home page: for each project, what is new, what came back and what is rising.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;

use crate::server::AppState;
use crate::store::{IssueFilter, IssueSort, Project};

use super::issues::{Row, rows};
use super::page::{Layout, WebResult, render};
use super::session::{Viewer, now};

/// Issues shown per section.
const PER_SECTION: usize = 5;

pub struct ProjectSummary {
    pub name: String,
    pub issues_url: String,
    pub settings_url: String,
    pub releases_url: String,
    pub new_issues: Vec<Row>,
    pub regressions: Vec<Row>,
    /// Rising issues with "12 in the last 3 h (usually 2)".
    pub rising: Vec<(Row, String)>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    projects: Vec<ProjectSummary>,
    many_projects: bool,
}

/// `GET /`: new issues and regressions of the last 24 h and the fastest-rising issues.
pub async fn home(State(state): State<AppState>, viewer: Viewer) -> WebResult {
    let t = now();
    let visible = viewer.projects(&state).await?;
    let mut projects = Vec::new();
    for p in &visible {
        projects.push(summary(&state, p, t).await?);
    }
    render(&HomePage {
        layout: Layout::new(&viewer, "Home", "home"),
        many_projects: false,
        projects,
    })
}

async fn summary(state: &AppState, p: &Project, t: f64) -> WebResult<ProjectSummary> {
    let by_id: HashMap<i64, &Project> = HashMap::from([(p.id, p)]);
    let new = state
        .store
        .list_issues(&IssueFilter {
            project_ids: vec![p.id],
            statuses: vec!["unresolved".into()],
            first_seen_after: Some(t - 86400.0),
            sort: IssueSort::FirstSeen,
            limit: PER_SECTION as i64,
            ..Default::default()
        })
        .await?;
    // Regressions are few: look through the unresolved issues seen in the last 24 h.
    let mut regressed = state
        .store
        .list_issues(&IssueFilter {
            project_ids: vec![p.id],
            statuses: vec!["unresolved".into()],
            last_seen_after: Some(t - 86400.0),
            sort: IssueSort::LastSeen,
            limit: 200,
            ..Default::default()
        })
        .await?;
    regressed.retain(|i| i.is_regression);
    regressed.truncate(PER_SECTION);
    let rising = state
        .store
        .rising_issues(&[p.id], t, PER_SECTION as i64)
        .await?;
    let notes = rising
        .iter()
        .map(|r| format!("{} in the last 3 h (usually {:.0})", r.recent, r.baseline));
    let rising_issues: Vec<_> = rising.iter().map(|r| r.issue.clone()).collect();
    let rising_rows = rows(state, &rising_issues, &by_id, "24h").await?;
    Ok(ProjectSummary {
        name: format!("{}/{}", p.org_slug, p.slug),
        issues_url: format!("/issues/?project={}", p.id),
        settings_url: format!(
            "/organizations/{}/projects/{}/settings/",
            p.org_slug, p.slug
        ),
        releases_url: super::releases::releases_url(&p.org_slug, &p.slug),
        new_issues: rows(state, &new, &by_id, "24h").await?,
        regressions: rows(state, &regressed, &by_id, "24h").await?,
        rising: rising_rows.into_iter().zip(notes).collect(),
    })
}
