//! Reading a request's whole body before its route runs.
//!
//! A route that refuses a request early (no session, a bad token, no such issue) answers before
//! its extractor reads the body. hyper then closes the connection, and a client that already
//! sent its next request on that connection sees it drop. Reading the body first keeps the
//! connection usable. Only for routes whose bodies are small forms or JSON: uploads stream.

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Largest body read this way: axum's own default for `Form`, `Json` and `Bytes`.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// `req` with its body read into memory; `Err` when it is larger than [`MAX_BODY`] or was not
/// sent whole. Requests that carry no body (`GET`, `HEAD`) pass as they are.
pub async fn read_first(req: Request) -> Result<Request, axum::Error> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Middleware for JSON routes: [`read_first`], or a 413 with a JSON `detail`.
pub async fn read_first_json(req: Request, next: Next) -> Response {
    match read_first(req).await {
        Ok(req) => next.run(req).await,
        Err(_) => ApiError::too_large(format!(
            "request body larger than {} MiB, or not sent whole",
            MAX_BODY / (1024 * 1024)
        ))
        .into_response(),
    }
}
