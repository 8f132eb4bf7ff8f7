//! Ingestion: the endpoints SDKs post to. Cheap checks, spool, answer — nothing more.
//!
//! - [`auth`]: the DSN key of a request (`X-Sentry-Auth`, `sentry_key`, envelope `dsn`).
//! - [`validate`]: size, item-count and JSON checks of an envelope's items.
//! - [`keys`]: a short-lived per-node cache of DSN keys.
//! - [`ratelimit`]: per-key rate limits.
//! - [`endpoints`]: `/api/{project}/envelope/`, `/store/` and `/security/`.

pub mod auth;
pub mod endpoints;
pub mod keys;
pub mod ratelimit;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::http::ApiError;
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
    let in_flight = Arc::new(Semaphore::new(state.limits.max_concurrent_requests.max(1)));
    router
        .layer(DefaultBodyLimit::max(state.limits.max_request_size))
        .layer(middleware::from_fn_with_state(
            state.limits.max_request_size,
            refuse_declared_oversize,
        ))
        .layer(middleware::from_fn_with_state(in_flight, shed_load))
        .layer(cors)
}

/// Answers 413 from the `Content-Length` alone, before the client spends time sending a body
/// that would be refused anyway (bodies without a length are cut off while being read).
async fn refuse_declared_oversize(State(max): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max as u64 => ApiError::too_large(format!(
            "request body of {len} bytes exceeds the limit of {max} bytes"
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Bounds the requests being read and checked at once, so memory stays bounded however many
/// clients connect: past the limit, SDKs are told to come back later (503 + `Retry-After`).
async fn shed_load(State(in_flight): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match in_flight.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is overloaded")
            .with_header(header::RETRY_AFTER, "5")
            .into_response(),
    }
}
