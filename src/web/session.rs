//! Browser sessions: the login form, the session cookie, CSRF tokens and login throttling.
//!
//! A session is a random token in an HttpOnly, SameSite=Lax cookie (Secure when the public URL
//! is https); the database keeps only its SHA-256, with the user and the session's CSRF token,
//! so any node of a cluster serves any request. Every state-changing form carries the CSRF
//! token; the login form, before any session exists, uses a double-submit cookie instead.

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::http::extract::token_hash;
use crate::server::AppState;
use crate::store::{Issue, Project, StoreError, User};

use super::page::{WebError, WebResult, render};

pub const SESSION_COOKIE: &str = "faultline_session";
const LOGIN_CSRF_COOKIE: &str = "faultline_login";
const SESSION_SECONDS: f64 = 14.0 * 86400.0;
/// Failed logins allowed per account and per address within [`FAILURE_WINDOW`].
const MAX_FAILURES: i64 = 10;
const FAILURE_WINDOW: f64 = 15.0 * 60.0;

/// The logged-in user behind a page request.
pub struct Viewer {
    pub user: User,
    /// The session's CSRF token, which every form posts back.
    pub csrf: String,
}

pub fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

fn random_token() -> String {
    crate::cli::random_hex(32)
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let next = if parts.method == Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        } else {
            "/".to_string()
        };
        let jar = CookieJar::from_headers(&parts.headers);
        let token = jar
            .get(SESSION_COOKIE)
            .map(|c| c.value().to_string())
            .ok_or(WebError::LoginRequired { next: next.clone() })?;
        match state.store.session(&token_hash(&token), now()).await {
            Ok(s) => Ok(Viewer {
                user: s.user,
                csrf: s.csrf,
            }),
            Err(StoreError::NotFound) => Err(WebError::LoginRequired { next }),
            Err(e) => Err(e.into()),
        }
    }
}

impl Viewer {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, token: &str) -> WebResult<()> {
        if same_secret(token, &self.csrf) {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "This form has expired or did not come from Faultline. Go back, reload the page and try again.".into(),
            ))
        }
    }

    /// The projects this user may see, ordered by organization and slug.
    pub async fn projects(&self, state: &AppState) -> WebResult<Vec<Project>> {
        Ok(state.store.projects_for(&self.user).await?)
    }

    /// One project by organization and slug; "not found" when it is not visible.
    pub async fn project(&self, state: &AppState, org: &str, slug: &str) -> WebResult<Project> {
        let p = state.store.project_by_slug(org, slug).await?;
        self.project_by_id(state, p.id).await
    }

    /// One project by id; "not found" when it is not visible.
    pub async fn project_by_id(&self, state: &AppState, id: i64) -> WebResult<Project> {
        self.projects(state)
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .ok_or(WebError::NotFound)
    }

    /// An issue of the organization `org`, with its project; "not found" when not visible.
    pub async fn issue(&self, state: &AppState, org: &str, id: i64) -> WebResult<(Issue, Project)> {
        let issue = state.store.issue(id).await?;
        let project = self.project_by_id(state, issue.project_id).await?;
        if project.org_slug != org {
            return Err(WebError::NotFound);
        }
        Ok((issue, project))
    }

    /// Whether this user administers the organization (superuser, or its owner/admin).
    pub async fn is_org_admin(&self, state: &AppState, org_id: i64) -> WebResult<bool> {
        if self.user.is_superuser {
            return Ok(true);
        }
        let members = state.store.org_members(org_id).await?;
        Ok(members
            .iter()
            .any(|m| m.user.id == self.user.id && matches!(m.role.as_str(), "owner" | "admin")))
    }
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .secure(state.public_url.starts_with("https://"))
        .same_site(SameSite::Lax)
        .build()
}

/// A safe place to go after logging in: a path on this site, never another site.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    version: &'static str,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(
    jar: CookieJar,
    state: &AppState,
    next: &str,
    email: &str,
    error: Option<&str>,
    status: axum::http::StatusCode,
) -> WebResult {
    let csrf = random_token();
    let cookie = Cookie::build((LOGIN_CSRF_COOKIE, csrf.clone()))
        .path("/login")
        .http_only(true)
        .secure(state.public_url.starts_with("https://"))
        .same_site(SameSite::Strict)
        .build();
    let page = render(&LoginPage {
        csrf: &csrf,
        next,
        email,
        error,
        version: super::assets::VERSION,
    })?;
    Ok((status, jar.add(cookie), page).into_response())
}

/// `GET /login`: the login form (or straight on, when already logged in).
pub async fn login_form(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> WebResult {
    let next = local_path(q.next.as_deref());
    if let Some(c) = jar.get(SESSION_COOKIE)
        && state
            .store
            .session(&token_hash(c.value()), now())
            .await
            .is_ok()
    {
        return Ok(Redirect::to(&next).into_response());
    }
    login_page(jar, &state, &next, "", None, axum::http::StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`: checks the password (Argon2id), throttles guessing, starts a session.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> WebResult {
    let next = local_path(form.next.as_deref());
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_string());
    if !expected.is_some_and(|e| same_secret(&e, &form.csrf)) {
        return login_page(
            jar,
            &state,
            &next,
            &form.email,
            Some("The form expired; please log in again."),
            axum::http::StatusCode::FORBIDDEN,
        );
    }
    let email = form.email.trim().to_lowercase();
    let ip = crate::ingest::endpoints::client_ip(&state, &headers, peer)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let keys = [format!("email:{email}"), format!("ip:{ip}")];
    check_throttle(&state, &keys).await?;
    let user = match state.store.user_by_email(&email).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let password = form.password;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = verify_in_background(hash, password).await?;
    let Some(user) = user.filter(|_| ok) else {
        for key in &keys {
            state.store.record_login_failure(key, now()).await?;
        }
        return login_page(
            jar,
            &state,
            &next,
            &form.email,
            Some("Wrong email or password."),
            axum::http::StatusCode::UNAUTHORIZED,
        );
    };
    state.store.clear_login_failures(&keys[0]).await?;
    let token = start_session(&state, user.id).await?;
    let jar = jar
        .remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/login"))
        .add(session_cookie(&state, token));
    Ok((jar, Redirect::to(&next)).into_response())
}

/// Refuses with 429 while any of `keys` (`email:…`, `ip:…`) has too many recent failures.
pub async fn check_throttle(state: &AppState, keys: &[String]) -> WebResult<()> {
    let since = now() - FAILURE_WINDOW;
    for key in keys {
        if state.store.login_failures_since(key, since).await? >= MAX_FAILURES {
            return Err(WebError::TooManyRequests(
                "Too many wrong passwords. Wait a quarter of an hour and try again.".into(),
            ));
        }
    }
    Ok(())
}

/// Checks a password off the async threads (Argon2 takes tens of milliseconds).
pub async fn verify_in_background(hash: Option<String>, password: String) -> WebResult<bool> {
    tokio::task::spawn_blocking(move || verify_password(hash.as_deref(), &password))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))
}

/// The session token of a request, if it has one.
pub fn session_token(jar: &CookieJar) -> Option<String> {
    jar.get(SESSION_COOKIE).map(|c| c.value().to_string())
}

/// Creates a session for a user; returns the cookie value.
pub async fn start_session(state: &AppState, user_id: i64) -> WebResult<String> {
    let token = random_token();
    let t = now();
    state
        .store
        .create_session(
            &token_hash(&token),
            user_id,
            &random_token(),
            t,
            t + SESSION_SECONDS,
        )
        .await?;
    Ok(token)
}

/// Sets the session cookie on a response (after an invitation created an account).
pub fn with_session(state: &AppState, jar: CookieJar, token: String) -> CookieJar {
    jar.add(session_cookie(state, token))
}

/// Checks a password against a stored Argon2 hash. Without a user, a dummy hash is checked so
/// that the answer takes as long as for a real account.
fn verify_password(hash: Option<&str>, password: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::cli::hash_password("no such user").unwrap_or_default());
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(DUMMY.as_str())) else {
        return false;
    };
    let matches = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && hash.is_some()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session everywhere (it is deleted from the database).
pub async fn logout(
    State(state): State<AppState>,
    viewer: Viewer,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> WebResult<Response> {
    viewer.check_csrf(&form.csrf)?;
    if let Some(c) = jar.get(SESSION_COOKIE) {
        state.store.delete_session(&token_hash(c.value())).await?;
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((jar, Redirect::to("/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/issues/?query=x")), "/issues/?query=x");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn passwords_verify_against_argon2id_hashes() {
        let hash = crate::cli::hash_password("correct horse").unwrap();
        assert!(verify_password(Some(&hash), "correct horse"));
        assert!(!verify_password(Some(&hash), "wrong horse"));
        assert!(!verify_password(None, "correct horse"));
    }
}
