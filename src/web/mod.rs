//! The web UI: server-rendered pages behind a login, for people rather than SDKs.
//!
//! - [`session`]: login, logout, the session cookie, CSRF tokens and the [`session::Viewer`]
//!   extractor every page starts from.
//! - [`page`]: the layout every page shares, errors as pages, security headers.
//! - [`assets`]: the stylesheet and script, embedded in the binary.
//! - [`home`], [`issues`], [`issue`], [`settings`], [`alerts`], [`releases`]: one file per group
//!   of pages.
//! - [`view`]: formatting shared by the pages (times, counts, sparklines).
//!
//! Everything an event holds is attacker-controlled: templates escape every value (askama's
//! HTML escaping is on for every `.html` template), no page has inline script or style, and the
//! Content-Security-Policy forbids both.

pub mod alerts;
pub mod assets;
pub mod event_view;
pub mod home;
pub mod issue;
pub mod issues;
pub mod members;
pub mod page;
pub mod releases;
pub mod session;
pub mod settings;
pub mod view;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/issues/", get(issues::list))
        .route("/issues/bulk", post(issues::bulk))
        .merge(issue::routes())
        .merge(settings::routes())
        .merge(alerts::routes())
        .merge(releases::routes())
        .layer(middleware::from_fn(page::read_body_first))
        .layer(middleware::from_fn(page::security_headers))
        .merge(assets::routes())
}
