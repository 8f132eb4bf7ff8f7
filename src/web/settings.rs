//! Settings pages: the user's account and a project's settings.
//!
//! - `GET /settings/`: the organizations and projects the user can see, their API tokens
//!   (create one, shown once; revoke), a password change form, and for superusers a form to
//!   create a project and the list of every user.
//! - `GET /organizations/{org}/projects/{project}/settings/`: the project's DSN keys (create,
//!   revoke, enable/disable, rate limit), SDK setup snippets with its first active DSN, retention
//!   and who can see the project.
//!
//! Members and invitations live in [`super::members`]. Anyone who can see a project may read its
//! settings page (they need the DSN); only superusers and the organization's owners and admins
//! see the forms, and the others get 403 on every change. Every form posts the session's CSRF
//! token and every change answers with a 303 back to its page.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;

use crate::api::projects::dsn;
use crate::cli::{hash_password, new_token, random_hex};
use crate::http::extract::token_hash;
use crate::server::AppState;
use crate::store::{Project, ProjectKey, StoreError};

use super::page::{Layout, WebError, WebResult, render};
use super::session::{self, Viewer, now};
use super::view::{ago, iso};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/settings",
            get(|| async { Redirect::permanent("/settings/") }),
        )
        .route("/settings/", get(account))
        .route("/settings/tokens", post(create_token))
        .route("/settings/tokens/{id}/delete", post(delete_token))
        .route("/settings/password", post(change_password))
        .route("/settings/projects", post(create_project))
        .route(
            "/organizations/{org}/projects/{project}/settings/",
            get(project_settings),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings/keys",
            post(create_key),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings/keys/{id}",
            post(update_key),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings/keys/{id}/delete",
            post(delete_key),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings/retention",
            post(set_retention),
        )
        .route(
            "/organizations/{org}/projects/{project}/settings/members",
            post(project_member),
        )
        .merge(super::members::routes())
}

// --- shared by the settings pages ---

/// A posted `application/x-www-form-urlencoded` form, every field kept (repeated ones too).
///
/// Missing fields read as empty, so a form without its `csrf` field is refused by the CSRF
/// check (403) rather than by deserialization.
pub struct Fields(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, WebError> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| WebError::BadRequest(e.body_text()))?;
        Ok(Fields::parse(&body))
    }
}

impl Fields {
    pub fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of a field, `None` when absent.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a field, empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.opt(name).unwrap_or("")
    }

    /// Every value of a repeated field (checkboxes).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Refuses the form unless it carries the session's CSRF token.
    pub fn check_csrf(&self, viewer: &Viewer) -> WebResult<()> {
        viewer.check_csrf(self.get("csrf"))
    }
}

/// A number from a form field: `None` when empty, 400 when not a number at least `min`.
pub fn optional_number(
    fields: &Fields,
    name: &str,
    what: &str,
    min: i64,
) -> WebResult<Option<i64>> {
    let v = fields.get(name).trim();
    if v.is_empty() {
        return Ok(None);
    }
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(WebError::BadRequest(format!(
            "{what} must be a whole number of at least {min}, or empty."
        ))),
    }
}

/// An id from a URL path; "not found" when it is not a number.
pub fn path_id(s: &str) -> WebResult<i64> {
    s.parse().map_err(|_| WebError::NotFound)
}

/// A 303 back to a page.
pub fn back(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// What the pages say after a change they redirected from (`?notice=CODE`). Only known codes
/// are shown: nothing from the URL reaches the page.
pub fn notice(query: Option<&str>) -> Option<&'static str> {
    let code = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "notice")
        .map(|(_, v)| v.into_owned())?;
    Some(match code.as_str() {
        "password" => "Your password was changed.",
        "token-revoked" => "The token was revoked.",
        "key-created" => "A new key was created.",
        "key-updated" => "The key was saved.",
        "key-revoked" => "The key was revoked; its DSN is refused from now on.",
        "retention" => "Retention settings saved.",
        "member-added" => "The member was added to the project.",
        "member-removed" => "The member was removed from the project.",
        "role" => "The role was changed.",
        "removed" => "The member was removed from the organization.",
        "invite-revoked" => "The invitation was revoked.",
        "project-created" => "The project was created with a first DSN key.",
        _ => return None,
    })
}

/// Whether a slug is 1-50 characters of `a-z`, `0-9`, `-` and `_` (as `faultline project
/// create` requires).
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 50
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub fn project_settings_url(org: &str, slug: &str) -> String {
    format!("/organizations/{org}/projects/{slug}/settings/")
}

const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// Checks a new password and its confirmation; the message says what is wrong.
pub fn check_new_password(password: &str, confirm: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        Err("The password must have at least 8 characters.")
    } else if n > MAX_PASSWORD {
        Err("The password is too long (at most 1024 characters).")
    } else if password != confirm {
        Err("The two passwords differ.")
    } else {
        Ok(())
    }
}

/// Argon2id hash of a new password, off the async threads (hashing takes tens of ms).
pub async fn hash_in_background(password: String) -> WebResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string()))
}

// --- the account page ---

struct ProjectLink {
    name: String,
    settings_url: String,
}

struct OrgView {
    slug: String,
    role: Option<String>,
    admin: bool,
    members_url: String,
    projects: Vec<ProjectLink>,
}

struct TokenRow {
    id: i64,
    name: String,
    created: String,
    created_iso: String,
}

struct UserRow {
    id: i64,
    email: String,
    is_superuser: bool,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct AccountPage {
    layout: Layout,
    notice: Option<&'static str>,
    orgs: Vec<OrgView>,
    tokens: Vec<TokenRow>,
    /// Every user, for superusers only.
    users: Option<Vec<UserRow>>,
}

/// `GET /settings/`
async fn account(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> WebResult {
    let now = now();
    let projects = viewer.projects(&state).await?;
    let mut orgs = Vec::new();
    for org in state.store.organizations_for(&viewer.user).await? {
        let members = state.store.org_members(org.id).await?;
        let role = members
            .iter()
            .find(|m| m.user.id == viewer.user.id)
            .map(|m| m.role.clone());
        let admin = viewer.user.is_superuser || matches!(role.as_deref(), Some("owner" | "admin"));
        orgs.push(OrgView {
            members_url: format!("/organizations/{}/members/", org.slug),
            projects: projects
                .iter()
                .filter(|p| p.org_id == org.id)
                .map(|p| ProjectLink {
                    name: p.name.clone(),
                    settings_url: project_settings_url(&p.org_slug, &p.slug),
                })
                .collect(),
            slug: org.slug,
            role,
            admin,
        });
    }
    let tokens = state
        .store
        .tokens(viewer.user.id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            created: ago(t.date_created, now),
            created_iso: iso(t.date_created),
        })
        .collect();
    let users = if viewer.user.is_superuser {
        Some(
            state
                .store
                .users()
                .await?
                .into_iter()
                .map(|u| UserRow {
                    id: u.id,
                    email: u.email,
                    is_superuser: u.is_superuser,
                })
                .collect(),
        )
    } else {
        None
    };
    render(&AccountPage {
        layout: Layout::new(&viewer, "Settings", "settings"),
        notice: notice(query.as_deref()),
        orgs,
        tokens,
        users,
    })
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct NewTokenPage {
    layout: Layout,
    name: String,
    token: String,
}

/// `POST /settings/tokens`: creates an API token and shows it, once.
async fn create_token(State(state): State<AppState>, viewer: Viewer, form: Fields) -> WebResult {
    form.check_csrf(&viewer)?;
    let name = form.get("name").trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(WebError::BadRequest(
            "A token needs a name of 1 to 100 characters.".into(),
        ));
    }
    let token = new_token();
    state
        .store
        .create_token(viewer.user.id, &token_hash(&token), name)
        .await?;
    render(&NewTokenPage {
        layout: Layout::new(&viewer, "New API token", "settings"),
        name: name.to_string(),
        token,
    })
}

/// `POST /settings/tokens/{id}/delete`: revokes one of the user's tokens.
async fn delete_token(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> WebResult {
    form.check_csrf(&viewer)?;
    state
        .store
        .delete_token(viewer.user.id, path_id(&id)?)
        .await?;
    Ok(back("/settings/?notice=token-revoked#tokens"))
}

/// `POST /settings/password`: `current`, `new`, `confirm`. Wrong current passwords count as
/// failed logins; a changed password ends every other session of the user.
async fn change_password(
    State(state): State<AppState>,
    viewer: Viewer,
    jar: CookieJar,
    form: Fields,
) -> WebResult {
    form.check_csrf(&viewer)?;
    let throttle = [format!("email:{}", viewer.user.email)];
    session::check_throttle(&state, &throttle).await?;
    let new = form.get("new").to_string();
    check_new_password(&new, form.get("confirm")).map_err(|m| WebError::BadRequest(m.into()))?;
    let current = form.get("current").to_string();
    let stored = Some(viewer.user.password_hash.clone());
    if !session::verify_in_background(stored, current).await? {
        state
            .store
            .record_login_failure(&throttle[0], now())
            .await?;
        return Err(WebError::BadRequest(
            "The current password is wrong; the password was not changed.".into(),
        ));
    }
    let hash = hash_in_background(new).await?;
    state.store.set_password(viewer.user.id, &hash).await?;
    let keep = session::session_token(&jar)
        .map(|t| token_hash(&t))
        .unwrap_or_default();
    state
        .store
        .delete_user_sessions(viewer.user.id, &keep)
        .await?;
    Ok(back("/settings/?notice=password"))
}

/// `POST /settings/projects` (superusers): `org`, `project`. Creates the organization when
/// missing (with the superuser as its owner), the project and its first DSN key, like
/// `faultline project create`.
async fn create_project(State(state): State<AppState>, viewer: Viewer, form: Fields) -> WebResult {
    form.check_csrf(&viewer)?;
    if !viewer.user.is_superuser {
        return Err(WebError::Forbidden(
            "Only superusers can create projects.".into(),
        ));
    }
    let org_slug = form.get("org").trim();
    let slug = form.get("project").trim();
    for s in [org_slug, slug] {
        if !valid_slug(s) {
            return Err(WebError::BadRequest(format!(
                "Organization and project names are 1-50 characters of a-z, 0-9, '-' and '_': {s:?} is not."
            )));
        }
    }
    let is_new = match state.store.organization(org_slug).await {
        Ok(_) => false,
        Err(StoreError::NotFound) => true,
        Err(e) => return Err(e.into()),
    };
    let org = state.store.ensure_organization(org_slug).await?;
    if is_new {
        state
            .store
            .add_member(org.id, viewer.user.id, "owner")
            .await?;
    }
    let project = match state.store.create_project(org.id, slug, slug).await {
        Ok(p) => p,
        Err(StoreError::Conflict(_)) => {
            return Err(WebError::BadRequest(format!(
                "The project {org_slug}/{slug} already exists."
            )));
        }
        Err(e) => return Err(e.into()),
    };
    state
        .store
        .create_key(project.id, &random_hex(16), "Default")
        .await?;
    Ok(back(&format!(
        "{}?notice=project-created",
        project_settings_url(&project.org_slug, &project.slug)
    )))
}

// --- a project's settings ---

struct KeyRow {
    id: i64,
    label: String,
    dsn: String,
    active: bool,
    /// "unlimited" or "100 events per 60 s".
    rate_limit: String,
    rate_count: String,
    rate_window: String,
    created: String,
}

struct MemberRow {
    id: i64,
    email: String,
    /// How they can see the project: "owner", "admin", "member", "superuser".
    access: String,
    /// Added to this project explicitly (and so removable from it).
    removable: bool,
}

#[derive(Template)]
#[template(path = "project_settings.html")]
struct ProjectSettingsPage {
    layout: Layout,
    notice: Option<&'static str>,
    org: String,
    name: String,
    /// `/organizations/{org}/projects/{project}/settings/`
    base: String,
    issues_url: String,
    members_url: String,
    can_edit: bool,
    keys: Vec<KeyRow>,
    /// The first active DSN, for the snippets.
    dsn: Option<String>,
    retention_days: String,
    retention_max_events: String,
    members: Vec<MemberRow>,
    /// Members of the organization with the `member` role not yet added to the project.
    addable: Vec<MemberRow>,
}

/// `GET /organizations/{org}/projects/{project}/settings/`
async fn project_settings(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> WebResult {
    let project = viewer.project(&state, &org, &slug).await?;
    let can_edit = viewer.is_org_admin(&state, project.org_id).await?;
    let now = now();
    let keys: Vec<KeyRow> = state
        .store
        .keys(project.id)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            dsn: dsn(&state.public_url, &k.public_key, k.project_id),
            active: k.is_active,
            rate_limit: match (k.rate_limit_count, k.rate_limit_window) {
                (Some(c), Some(w)) => format!("{c} events per {w} s"),
                (Some(c), None) => format!("{c} events"),
                _ => "unlimited".into(),
            },
            rate_count: k
                .rate_limit_count
                .map(|c| c.to_string())
                .unwrap_or_default(),
            rate_window: k
                .rate_limit_window
                .map(|w| w.to_string())
                .unwrap_or_default(),
            created: ago(k.date_created, now),
            label: k.label,
        })
        .collect();
    let first_dsn = keys.iter().find(|k| k.active).map(|k| k.dsn.clone());

    let org_members = state.store.org_members(project.org_id).await?;
    let members = state
        .store
        .project_members(project.id)
        .await?
        .into_iter()
        .map(|u| {
            let m = org_members.iter().find(|m| m.user.id == u.id);
            let access = match m {
                Some(m) => m.role.clone(),
                None if u.is_superuser => "superuser".into(),
                None => "member".into(),
            };
            let removable =
                m.is_some_and(|m| m.role == "member" && m.project_ids.contains(&project.id));
            MemberRow {
                id: u.id,
                email: u.email,
                access,
                removable,
            }
        })
        .collect();
    let addable = org_members
        .iter()
        .filter(|m| m.role == "member" && !m.project_ids.contains(&project.id))
        .map(|m| MemberRow {
            id: m.user.id,
            email: m.user.email.clone(),
            access: m.role.clone(),
            removable: false,
        })
        .collect();
    render(&ProjectSettingsPage {
        layout: Layout::new(&viewer, format!("{} settings", project.name), "settings"),
        notice: notice(query.as_deref()),
        base: project_settings_url(&project.org_slug, &project.slug),
        issues_url: format!("/issues/?project={}", project.id),
        members_url: format!("/organizations/{}/members/", project.org_slug),
        org: project.org_slug,
        name: project.name,
        can_edit,
        keys,
        dsn: first_dsn,
        retention_days: project
            .retention_days
            .map(|d| d.to_string())
            .unwrap_or_default(),
        retention_max_events: project
            .retention_max_events
            .map(|d| d.to_string())
            .unwrap_or_default(),
        members,
        addable,
    })
}

/// The project of a settings or alerts form, after the CSRF check; 404 when not visible, 403
/// unless the user administers its organization.
pub async fn project_to_change(
    state: &AppState,
    viewer: &Viewer,
    form: &Fields,
    org: &str,
    slug: &str,
) -> WebResult<Project> {
    form.check_csrf(viewer)?;
    let project = viewer.project(state, org, slug).await?;
    if !viewer.is_org_admin(state, project.org_id).await? {
        return Err(WebError::Forbidden(
            "Only the organization's owners and admins can change its projects' settings.".into(),
        ));
    }
    Ok(project)
}

fn settings_back(project: &Project, notice: &str, anchor: &str) -> Response {
    back(&format!(
        "{}?notice={notice}#{anchor}",
        project_settings_url(&project.org_slug, &project.slug)
    ))
}

/// A DSN key of the project; "not found" for another project's key.
async fn project_key(state: &AppState, project: &Project, id: i64) -> WebResult<ProjectKey> {
    state
        .store
        .keys(project.id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or(WebError::NotFound)
}

fn check_key_label(label: &str) -> WebResult<()> {
    if label.chars().count() > 64 {
        return Err(WebError::BadRequest(
            "A key's label has at most 64 characters.".into(),
        ));
    }
    Ok(())
}

/// `POST …/settings/keys`: a new DSN key with a `label`.
async fn create_key(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let label = match form.get("label").trim() {
        "" => "Default",
        l => l,
    };
    check_key_label(label)?;
    state
        .store
        .create_key(project.id, &random_hex(16), label)
        .await?;
    Ok(settings_back(&project, "key-created", "keys"))
}

/// `POST …/settings/keys/{id}`: `label` (optional), `active` (a checkbox: absent = disabled),
/// `rate_limit_count` and `rate_limit_window` in seconds (empty count = unlimited, empty window
/// = 60 s).
async fn update_key(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug, id)): Path<(String, String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let id = path_id(&id)?;
    let key = project_key(&state, &project, id).await?;
    let active = matches!(form.get("active"), "on" | "1" | "true" | "yes");
    let count = optional_number(&form, "rate_limit_count", "The rate limit", 0)?;
    let window = optional_number(&form, "rate_limit_window", "The rate limit window", 1)?;
    let rate_limit = count.map(|c| (c, window.unwrap_or(60)));
    let label = match form.opt("label").map(str::trim) {
        Some(l) if !l.is_empty() => l.to_string(),
        _ => key.label.clone(),
    };
    check_key_label(&label)?;
    state
        .store
        .update_key(key.id, &label, active, rate_limit)
        .await?;
    state.keys.forget(&key.public_key);
    Ok(settings_back(&project, "key-updated", "keys"))
}

/// `POST …/settings/keys/{id}/delete`: revokes a key; its DSN is refused from then on.
async fn delete_key(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug, id)): Path<(String, String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let id = path_id(&id)?;
    let key = project_key(&state, &project, id).await?;
    state.store.delete_key(project.id, key.id).await?;
    state.keys.forget(&key.public_key);
    Ok(settings_back(&project, "key-revoked", "keys"))
}

/// `POST …/settings/retention`: `retention_days`, `retention_max_events` (empty = the
/// server's default, 0 = no limit).
async fn set_retention(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let days = optional_number(&form, "retention_days", "Days kept", 0)?;
    let max_events = optional_number(&form, "retention_max_events", "Events kept", 0)?;
    state
        .store
        .set_retention(project.id, max_events, days)
        .await?;
    Ok(settings_back(&project, "retention", "retention"))
}

/// `POST …/settings/members`: `user_id`, `action` = `add` | `remove`. Only members of the
/// project's organization can be added.
async fn project_member(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, slug)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    let project = project_to_change(&state, &viewer, &form, &org, &slug).await?;
    let add = match form.get("action") {
        "add" => true,
        "remove" => false,
        _ => return Err(WebError::BadRequest("action must be add or remove.".into())),
    };
    let user_id: i64 = form
        .get("user_id")
        .trim()
        .parse()
        .map_err(|_| WebError::BadRequest("Choose a member.".into()))?;
    let members = state.store.org_members(project.org_id).await?;
    if !members.iter().any(|m| m.user.id == user_id) {
        return Err(WebError::BadRequest(format!(
            "That user is not a member of {}; invite them first.",
            project.org_slug
        )));
    }
    state
        .store
        .set_project_member(project.id, user_id, add)
        .await?;
    let notice = if add {
        "member-added"
    } else {
        "member-removed"
    };
    Ok(settings_back(&project, notice, "members"))
}

/// A user's e-mail address, if the user still exists.
pub async fn email_of(state: &AppState, id: i64) -> Option<String> {
    state.store.user(id).await.ok().map(|u| u.email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_repeated_fields_and_read_missing_ones_as_empty() {
        let f = Fields::parse(b"csrf=abc&project_ids=1&project_ids=2&email=a%40b.c&x=a+b");
        assert_eq!(f.get("csrf"), "abc");
        assert_eq!(f.all("project_ids").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(f.get("email"), "a@b.c");
        assert_eq!(f.get("x"), "a b");
        assert_eq!(f.get("missing"), "");
        assert_eq!(f.opt("missing"), None);
    }

    #[test]
    fn numbers_are_optional_but_checked() {
        let f = Fields::parse(b"a=&b=12&c=-1&d=x");
        assert_eq!(optional_number(&f, "a", "A", 0).ok(), Some(None));
        assert_eq!(optional_number(&f, "b", "B", 0).ok(), Some(Some(12)));
        assert!(optional_number(&f, "c", "C", 0).is_err());
        assert!(optional_number(&f, "d", "D", 0).is_err());
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert_eq!(
            notice(Some("notice=password")),
            Some("Your password was changed.")
        );
        assert_eq!(notice(Some("notice=%3Cscript%3E")), None);
        assert_eq!(notice(None), None);
    }

    #[test]
    fn slugs_and_passwords_are_checked() {
        assert!(valid_slug("acme-1_x"));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug(""));
        assert!(!valid_slug("a/b"));
        assert!(check_new_password("12345678", "12345678").is_ok());
        assert!(check_new_password("1234567", "1234567").is_err());
        assert!(check_new_password("12345678", "12345679").is_err());
    }
}
