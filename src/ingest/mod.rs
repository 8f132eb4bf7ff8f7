//! Ingestion: the endpoints SDKs post to. Cheap checks, spool, answer — nothing more.
//!
//! - [`auth`]: the DSN key of a request (`X-Sentry-Auth`, `sentry_key`, envelope `dsn`).
//! - [`decode`]: `Content-Encoding` bodies, decompressed within limits.
//! - [`validate`]: size, item-count and JSON checks of an envelope's items.
//! - [`keys`]: a short-lived per-node cache of DSN keys.
//! - [`ratelimit`]: per-key rate limits.
//! - [`endpoints`]: `/api/{project}/envelope/`, `/store/` and `/security/`.

pub mod auth;
pub mod decode;
pub mod endpoints;
pub mod keys;
pub mod ratelimit;
pub mod validate;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method};
use axum::routing::post;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::server::AppState;

/// The ingest routes, with CORS for browser SDKs and the request body limit.
pub fn routes(state: &AppState) -> Router<AppState> {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers(
            [
                "x-sentry-auth",
                "x-requested-with",
                "x-forwarded-for",
                "origin",
                "referer",
                "accept",
                "content-type",
                "authentication",
                "authorization",
                "content-encoding",
                "transfer-encoding",
                "sentry-trace",
                "baggage",
            ]
            .map(HeaderName::from_static),
        )
        .expose_headers(
            ["x-sentry-error", "x-sentry-rate-limits", "retry-after"].map(HeaderName::from_static),
        )
        .max_age(std::time::Duration::from_secs(3600));
    let mut router = Router::new();
    for (path, handler) in [
        ("envelope", post(endpoints::envelope)),
        ("store", post(endpoints::store)),
        ("security", post(endpoints::security)),
        ("csp-report", post(endpoints::security)),
    ] {
        router = router
            .route(&format!("/api/{{project_id}}/{path}/"), handler.clone())
            .route(&format!("/api/{{project_id}}/{path}"), handler);
    }
    router
        .layer(DefaultBodyLimit::max(state.limits.max_request_size))
        .layer(cors)
}
