//! The stylesheet and script of the UI, compiled into the binary (no build step to run it).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::AppState;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");
const ICON: &str = include_str!("../../assets/favicon.svg");

/// Appended to asset URLs so that a new binary is never served an old cached file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/favicon.svg", get(icon))
        .route("/favicon.ico", get(icon))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

async fn icon() -> impl IntoResponse {
    asset("image/svg+xml", ICON)
}
