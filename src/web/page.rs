//! What every page shares: the layout, errors shown as pages, and the security headers.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::store::StoreError;

use super::session::Viewer;

/// The strictest policy the pages work with: no inline script or style, nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What the layout shows around every page.
pub struct Layout {
    pub title: String,
    pub email: String,
    pub is_superuser: bool,
    pub csrf: String,
    /// Which top-level section is active: `home`, `issues`, `settings`.
    pub section: &'static str,
    pub version: &'static str,
}

impl Layout {
    pub fn new(viewer: &Viewer, title: impl Into<String>, section: &'static str) -> Layout {
        Layout {
            title: title.into(),
            email: viewer.user.email.clone(),
            is_superuser: viewer.user.is_superuser,
            csrf: viewer.csrf.clone(),
            section,
            version: super::assets::VERSION,
        }
    }
}

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Not logged in: go to the login page, then come back to `next`.
    #[error("login required")]
    LoginRequired { next: String },
    /// Missing, or not visible to this user (the two are not told apart).
    #[error("page not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound,
            StoreError::Conflict(m) => WebError::BadRequest(m),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

pub type WebResult<T = Response> = Result<T, WebError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
    version: &'static str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            WebError::LoginRequired { next } => {
                let to = format!(
                    "/login?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                return Redirect::to(&to).into_response();
            }
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "This page does not exist, or you cannot see it.".to_string(),
            ),
            WebError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            WebError::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, m.clone()),
            WebError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.clone()),
            WebError::Internal(m) => {
                tracing::error!(error = %m, "page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on the server; it has been logged.".to_string(),
                )
            }
        };
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or(""),
            message: &message,
            version: super::assets::VERSION,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

/// Renders a template into a 200 page.
pub fn render(t: &impl Template) -> WebResult {
    Ok(Html(t.render()?).into_response())
}

/// Reads a form's body before the page runs ([`crate::http::body`]), or shows a 413 page.
pub async fn read_body_first(req: Request, next: Next) -> Response {
    match crate::http::body::read_first(req).await {
        Ok(req) => next.run(req).await,
        Err(_) => WebError::TooLarge(format!(
            "The form is larger than {} MiB, or it was not sent whole.",
            crate::http::body::MAX_BODY / (1024 * 1024)
        ))
        .into_response(),
    }
}

/// Adds the headers every page carries: the CSP, no sniffing or framing, no caching of private
/// pages, no referrer leaving the site, and `Server-Timing` (how long the page took to make).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={took:.2}")) {
        h.insert("server-timing", v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}
