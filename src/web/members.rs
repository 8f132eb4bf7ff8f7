//! An organization's members and invitations, and the public page that accepts an invitation.
//!
//! - `GET /organizations/{org}/members/` (superusers and the organization's owners and admins;
//!   404 for everyone else): members with their roles and projects, role changes, removal,
//!   pending invitations and the "invite a member" form.
//! - `POST /organizations/{org}/invites`: creates an invitation and shows its link once:
//!   `{public_url}/invite/{token}`, a random 32-byte token of which only the SHA-256 is stored,
//!   valid for 7 days and once. No e-mail is sent; the inviter passes the link on.
//! - `GET|POST /invite/{token}`: public. Logged in, the user joins with one button; logged out,
//!   they create an account (the form carries a double-submit CSRF cookie scoped to the
//!   invitation's path, as the login form does) and are logged in.
//!
//! Only owners (and superusers) may make someone an owner or change or remove an owner, and
//! nobody may remove or demote the last owner.

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use crate::cli::random_hex;
use crate::http::extract::token_hash;
use crate::server::AppState;
use crate::store::{Invite, Member, NewInvite, Organization, StoreError};

use super::page::{Layout, WebError, WebResult, render};
use super::session::{self, Viewer, now};
use super::settings::{
    Fields, back, check_new_password, email_of, hash_in_background, notice, path_id,
};
use super::view::{ago, iso};

/// How long an invitation link works.
const INVITE_SECONDS: f64 = 7.0 * 86400.0;
/// The double-submit CSRF cookie of the logged-out invitation form.
const INVITE_CSRF_COOKIE: &str = "faultline_invite";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{org}/members/", get(members))
        .route(
            "/organizations/{org}/members/{user_id}/delete",
            post(remove_member),
        )
        .route(
            "/organizations/{org}/members/{user_id}/role",
            post(set_role),
        )
        .route("/organizations/{org}/invites", post(create_invite))
        .route(
            "/organizations/{org}/invites/{id}/delete",
            post(delete_invite),
        )
        .route("/invite/{token}", get(invite_page).post(accept))
}

/// The organization, when this user administers it; 404 otherwise (not told apart from a
/// missing organization).
async fn admin_org(state: &AppState, viewer: &Viewer, slug: &str) -> WebResult<Organization> {
    let org = state.store.organization(slug).await?;
    if viewer.is_org_admin(state, org.id).await? {
        Ok(org)
    } else {
        Err(WebError::NotFound)
    }
}

/// Whether this user may grant, change or remove the `owner` role in the organization.
fn is_owner(viewer: &Viewer, members: &[Member]) -> bool {
    viewer.user.is_superuser
        || members
            .iter()
            .any(|m| m.user.id == viewer.user.id && m.role == "owner")
}

fn members_url(org: &str) -> String {
    format!("/organizations/{org}/members/")
}

struct ProjectChoice {
    id: i64,
    name: String,
}

struct MemberRow {
    id: i64,
    email: String,
    role: String,
    /// "all projects" for owners and admins, else the names of their projects.
    projects: String,
    is_self: bool,
    /// Whether this user may change this member's role or remove them.
    can_change: bool,
}

struct InviteRow {
    id: i64,
    email: String,
    role: String,
    projects: String,
    created: String,
    expires: String,
    expired: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    layout: Layout,
    notice: Option<&'static str>,
    org: String,
    members: Vec<MemberRow>,
    invites: Vec<InviteRow>,
    projects: Vec<ProjectChoice>,
    /// Roles this user may give: owners can make owners.
    roles: Vec<&'static str>,
}

fn project_names(ids: &[i64], projects: &[ProjectChoice]) -> String {
    let names: Vec<&str> = projects
        .iter()
        .filter(|p| ids.contains(&p.id))
        .map(|p| p.name.as_str())
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The organization's projects, by name.
async fn org_projects(state: &AppState, org_id: i64) -> WebResult<Vec<ProjectChoice>> {
    let mut projects: Vec<ProjectChoice> = state
        .store
        .all_projects()
        .await?
        .into_iter()
        .filter(|p| p.org_id == org_id)
        .map(|p| ProjectChoice {
            id: p.id,
            name: p.name,
        })
        .collect();
    projects.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(projects)
}

/// `GET /organizations/{org}/members/`
async fn members(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(org): Path<String>,
    RawQuery(query): RawQuery,
) -> WebResult {
    let org = admin_org(&state, &viewer, &org).await?;
    let now = now();
    let projects = org_projects(&state, org.id).await?;
    let all = state.store.org_members(org.id).await?;
    let owner = is_owner(&viewer, &all);
    let members = all
        .iter()
        .map(|m| MemberRow {
            id: m.user.id,
            email: m.user.email.clone(),
            role: m.role.clone(),
            projects: if m.role == "member" {
                project_names(&m.project_ids, &projects)
            } else {
                "all projects".into()
            },
            is_self: m.user.id == viewer.user.id,
            can_change: owner || m.role != "owner",
        })
        .collect();
    let invites = state
        .store
        .invites(org.id)
        .await?
        .into_iter()
        .filter(|i| i.accepted_by.is_none())
        .map(|i| InviteRow {
            id: i.id,
            email: i.email.unwrap_or_default(),
            projects: if i.role == "member" {
                project_names(&i.project_ids, &projects)
            } else {
                "all projects".into()
            },
            role: i.role,
            created: ago(i.date_created, now),
            expires: iso(i.expires)
                .chars()
                .take(16)
                .collect::<String>()
                .replace('T', " "),
            expired: i.expires <= now,
        })
        .collect();
    render(&MembersPage {
        layout: Layout::new(&viewer, format!("{} members", org.slug), "settings"),
        notice: notice(query.as_deref()),
        org: org.slug,
        members,
        invites,
        projects,
        roles: if owner {
            vec!["member", "admin", "owner"]
        } else {
            vec!["member", "admin"]
        },
    })
}

/// The member a form is about, with every member of the organization.
async fn target_member(
    state: &AppState,
    org: &Organization,
    user_id: &str,
) -> WebResult<(Member, Vec<Member>)> {
    let user_id = path_id(user_id)?;
    let all = state.store.org_members(org.id).await?;
    let target = all
        .iter()
        .find(|m| m.user.id == user_id)
        .cloned()
        .ok_or(WebError::NotFound)?;
    Ok((target, all))
}

fn owners(members: &[Member]) -> usize {
    members.iter().filter(|m| m.role == "owner").count()
}

/// `POST /organizations/{org}/members/{user_id}/delete`
async fn remove_member(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, user_id)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    form.check_csrf(&viewer)?;
    let org = admin_org(&state, &viewer, &org).await?;
    let (target, all) = target_member(&state, &org, &user_id).await?;
    if target.role == "owner" {
        if !is_owner(&viewer, &all) {
            return Err(WebError::Forbidden(
                "Only an owner can remove an owner.".into(),
            ));
        }
        if owners(&all) <= 1 {
            return Err(WebError::BadRequest(
                "This is the organization's last owner: make someone else owner first.".into(),
            ));
        }
    }
    state.store.remove_member(org.id, target.user.id).await?;
    Ok(back(&format!("{}?notice=removed", members_url(&org.slug))))
}

/// `POST /organizations/{org}/members/{user_id}/role`: `role` = member | admin | owner.
async fn set_role(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, user_id)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    form.check_csrf(&viewer)?;
    let org = admin_org(&state, &viewer, &org).await?;
    let role = form.get("role");
    if !matches!(role, "member" | "admin" | "owner") {
        return Err(WebError::BadRequest(
            "The role must be member, admin or owner.".into(),
        ));
    }
    let (target, all) = target_member(&state, &org, &user_id).await?;
    if (role == "owner" || target.role == "owner") && !is_owner(&viewer, &all) {
        return Err(WebError::Forbidden(
            "Only an owner can make someone an owner or change an owner's role.".into(),
        ));
    }
    if target.role == "owner" && role != "owner" && owners(&all) <= 1 {
        return Err(WebError::BadRequest(
            "This is the organization's last owner: make someone else owner first.".into(),
        ));
    }
    state.store.add_member(org.id, target.user.id, role).await?;
    Ok(back(&format!("{}?notice=role", members_url(&org.slug))))
}

#[derive(Template)]
#[template(path = "settings_invite.html")]
struct InviteCreatedPage {
    layout: Layout,
    org: String,
    link: String,
    email: String,
    role: String,
    projects: String,
}

/// `POST /organizations/{org}/invites`: `email` (optional), `role` = member | admin,
/// `project_ids` (repeated). Shows the link once.
async fn create_invite(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(org): Path<String>,
    form: Fields,
) -> WebResult {
    form.check_csrf(&viewer)?;
    let org = admin_org(&state, &viewer, &org).await?;
    let email = form.get("email").trim().to_lowercase();
    if !email.is_empty() && !plausible_email(&email) {
        return Err(WebError::BadRequest(format!(
            "{email:?} does not look like an e-mail address."
        )));
    }
    let role = form.get("role");
    if !matches!(role, "member" | "admin") {
        return Err(WebError::BadRequest(
            "The role must be member or admin.".into(),
        ));
    }
    let projects = org_projects(&state, org.id).await?;
    let mut project_ids = Vec::new();
    for id in form.all("project_ids") {
        let id: i64 = id
            .parse()
            .ok()
            .filter(|id| projects.iter().any(|p| p.id == *id))
            .ok_or_else(|| WebError::BadRequest(format!("No such project in {}.", org.slug)))?;
        if !project_ids.contains(&id) {
            project_ids.push(id);
        }
    }
    let token = random_hex(32);
    let t = now();
    state
        .store
        .create_invite(NewInvite {
            token_hash: &token_hash(&token),
            org_id: org.id,
            role,
            project_ids: &project_ids,
            email: (!email.is_empty()).then_some(email.as_str()),
            created_by: viewer.user.id,
            now: t,
            expires: t + INVITE_SECONDS,
        })
        .await?;
    render(&InviteCreatedPage {
        layout: Layout::new(&viewer, "Invitation", "settings"),
        link: format!("{}/invite/{token}", state.public_url),
        email,
        role: role.to_string(),
        projects: if role == "member" {
            project_names(&project_ids, &projects)
        } else {
            "all projects".into()
        },
        org: org.slug,
    })
}

/// `POST /organizations/{org}/invites/{id}/delete`
async fn delete_invite(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((org, id)): Path<(String, String)>,
    form: Fields,
) -> WebResult {
    form.check_csrf(&viewer)?;
    let org = admin_org(&state, &viewer, &org).await?;
    state.store.delete_invite(org.id, path_id(&id)?).await?;
    Ok(back(&format!(
        "{}?notice=invite-revoked#invites",
        members_url(&org.slug)
    )))
}

fn plausible_email(email: &str) -> bool {
    email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

// --- accepting an invitation ---

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage<'a> {
    org: &'a str,
    role: &'a str,
    inviter: Option<String>,
    /// Who is logged in (then the page has a "Join" button).
    logged_in: Option<&'a str>,
    csrf: &'a str,
    action: String,
    login_url: String,
    email: &'a str,
    error: Option<&'a str>,
    version: &'static str,
}

/// The invitation of a link, when it can still be used: 404 for an unknown token, 400 for a
/// used or expired one.
async fn usable_invite(state: &AppState, token: &str) -> WebResult<Invite> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WebError::NotFound);
    }
    let invite = state.store.invite(&token_hash(token)).await?;
    if invite.accepted_by.is_some() {
        return Err(WebError::BadRequest(
            "This invitation has already been used. Ask the organization's admins for a new link, or log in if it was you.".into(),
        ));
    }
    if invite.expires <= now() {
        return Err(WebError::BadRequest(
            "This invitation has expired. Ask the organization's admins for a new link.".into(),
        ));
    }
    Ok(invite)
}

/// The logged-in user, if any (an invitation page works both ways).
fn logged_in(viewer: Result<Viewer, WebError>) -> WebResult<Option<Viewer>> {
    match viewer {
        Ok(v) => Ok(Some(v)),
        Err(WebError::LoginRequired { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What an invitation page is rendered from.
struct InviteCtx<'a> {
    state: &'a AppState,
    token: &'a str,
    invite: &'a Invite,
    viewer: Option<&'a Viewer>,
}

impl InviteCtx<'_> {
    /// Renders the invitation page; logged out, with a fresh double-submit CSRF cookie.
    async fn page(
        &self,
        jar: CookieJar,
        email: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> WebResult {
        let action = format!("/invite/{}", self.token);
        let inviter = email_of(self.state, self.invite.created_by).await;
        let (csrf, jar) = match self.viewer {
            Some(v) => (v.csrf.clone(), jar),
            None => {
                let csrf = random_hex(32);
                let cookie = Cookie::build((INVITE_CSRF_COOKIE, csrf.clone()))
                    .path(action.clone())
                    .http_only(true)
                    .secure(self.state.public_url.starts_with("https://"))
                    .same_site(SameSite::Strict)
                    .build();
                (csrf, jar.add(cookie))
            }
        };
        let page = render(&InvitePage {
            org: &self.invite.org_slug,
            role: &self.invite.role,
            inviter,
            logged_in: self.viewer.map(|v| v.user.email.as_str()),
            csrf: &csrf,
            login_url: format!("/login?next={action}"),
            action,
            email,
            error,
            version: super::assets::VERSION,
        })?;
        Ok((status, jar, page).into_response())
    }
}

/// `GET /invite/{token}`: who invites you where; "Join", or a form to create an account.
async fn invite_page(
    State(state): State<AppState>,
    viewer: Result<Viewer, WebError>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> WebResult {
    let viewer = logged_in(viewer)?;
    let invite = usable_invite(&state, &token).await?;
    let ctx = InviteCtx {
        state: &state,
        token: &token,
        invite: &invite,
        viewer: viewer.as_ref(),
    };
    ctx.page(
        jar,
        invite.email.as_deref().unwrap_or(""),
        None,
        StatusCode::OK,
    )
    .await
}

/// `POST /invite/{token}`: with `password`, creates an account (`email`, `password`,
/// `confirm`) and logs it in; without, the logged-in user joins. Either way, then to `/`.
async fn accept(
    State(state): State<AppState>,
    viewer: Result<Viewer, WebError>,
    jar: CookieJar,
    Path(token): Path<String>,
    form: Fields,
) -> WebResult<Response> {
    let viewer = logged_in(viewer)?;
    if form.opt("password").is_some() {
        return sign_up(&state, viewer.as_ref(), jar, &token, &form).await;
    }
    let Some(viewer) = viewer else {
        return Ok(Redirect::to(&format!("/login?next=/invite/{token}")).into_response());
    };
    form.check_csrf(&viewer)?;
    usable_invite(&state, &token).await?;
    match state
        .store
        .accept_invite(&token_hash(&token), viewer.user.id, now())
        .await
    {
        Ok(_) => Ok(Redirect::to("/").into_response()),
        Err(StoreError::Conflict(_)) => Err(WebError::BadRequest(
            "This invitation has already been used or has expired.".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Creates an account through an invitation, accepts it and starts a session.
async fn sign_up(
    state: &AppState,
    viewer: Option<&Viewer>,
    jar: CookieJar,
    token: &str,
    form: &Fields,
) -> WebResult<Response> {
    let invite = usable_invite(state, token).await?;
    let ctx = InviteCtx {
        state,
        token,
        invite: &invite,
        viewer,
    };
    let email = form.get("email").trim().to_lowercase();
    let expected = jar.get(INVITE_CSRF_COOKIE).map(|c| c.value().to_string());
    if !expected.is_some_and(|e| session::same_secret(&e, form.get("csrf"))) {
        let error = "The form expired; please fill it in again.";
        return ctx
            .page(jar, &email, Some(error), StatusCode::FORBIDDEN)
            .await;
    }
    if !plausible_email(&email) {
        let error = "Enter your e-mail address.";
        return ctx
            .page(jar, &email, Some(error), StatusCode::BAD_REQUEST)
            .await;
    }
    if let Err(error) = check_new_password(form.get("password"), form.get("confirm")) {
        return ctx
            .page(jar, &email, Some(error), StatusCode::BAD_REQUEST)
            .await;
    }
    const EXISTS: &str = "An account with this e-mail address already exists: log in with it, then open this link again.";
    match state.store.user_by_email(&email).await {
        Ok(_) => {
            return ctx
                .page(jar, &email, Some(EXISTS), StatusCode::BAD_REQUEST)
                .await;
        }
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let hash = hash_in_background(form.get("password").to_string()).await?;
    let user = match state.store.create_user(&email, &hash, false).await {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => {
            return ctx
                .page(jar, &email, Some(EXISTS), StatusCode::BAD_REQUEST)
                .await;
        }
        Err(e) => return Err(e.into()),
    };
    match state
        .store
        .accept_invite(&token_hash(token), user.id, now())
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(WebError::BadRequest(
                "This invitation was used or expired meanwhile. Your account was created: ask the organization's admins for a new link.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let session = session::start_session(state, user.id).await?;
    let jar = jar.remove(Cookie::build(INVITE_CSRF_COOKIE).path(format!("/invite/{token}")));
    let jar = session::with_session(state, jar, session);
    Ok((jar, Redirect::to("/")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_loosely() {
        assert!(plausible_email("a@example.com"));
        assert!(!plausible_email("a example@com"));
        assert!(!plausible_email("@example.com"));
        assert!(!plausible_email("nobody"));
    }
}
