//! The ingest endpoints: authenticate, decode, check, spool, answer.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::auth::{self, Credentials};
use super::ratelimit::Decision;
use super::validate;
use crate::envelope;
use crate::envelope::decode::{self, DecodeError};
use crate::http::ApiError;
use crate::server::AppState;
use crate::spool::{Record, RecordKind, RecordMeta};
use crate::store::ProjectKey;

/// `POST /api/{project_id}/envelope/`
pub async fn envelope(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    RawQuery(query): RawQuery,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let project_id = parse_project_id(&project_id)?;
    let creds = auth::from_request(&headers, query.as_deref())?;
    let body = read_body(body)?;
    let encoding = header_str(&headers, header::CONTENT_ENCODING);
    let decoded = decode::decode(encoding, &body, &state.limits).map_err(decode_error)?;
    let env = envelope::parse(&decoded, state.limits.max_envelope_items)
        .map_err(|e| ApiError::bad_request("invalid event envelope").with_cause(e.to_string()))?;
    let creds = match (creds, env.header_str("dsn").and_then(auth::parse_dsn)) {
        (Some(c), Some((key, pid))) if key != c.public_key || pid != project_id => {
            return Err(ApiError::bad_request(
                "envelope dsn does not match the request's authentication",
            ));
        }
        (Some(c), _) => c,
        (None, Some((key, pid))) if pid == project_id => Credentials {
            public_key: key,
            client: None,
        },
        (None, Some(_)) => {
            return Err(ApiError::bad_request("envelope dsn is for another project"));
        }
        (None, None) => return Err(ApiError::unauthorized("missing authorization information")),
    };
    let key = authorize(&state, &creds, project_id).await?;
    let event_id = validate::check_envelope(&env, &state.limits)?;
    let events = env
        .items
        .iter()
        .filter(|i| matches!(i.ty(), "event" | "transaction" | "feedback"))
        .count() as i64;
    check_capacity(&state, &key, events).await?;
    drop(env);
    drop(decoded);
    // The spool keeps the body as it came (compressed bodies stay compressed: fewer bytes to
    // sync); digestion decodes it again.
    let stored_body = Vec::from(body);
    let meta = RecordMeta {
        project_id,
        kind: RecordKind::Envelope,
        encoding: encoding.map(str::to_string),
        received: now(),
        client_ip: client_ip(&state, &headers, peer).map(|ip| ip.to_string()),
        user_agent: user_agent(&headers),
        event_id: event_id.clone(),
        params: None,
        replaces: false,
    };
    spool(
        &state,
        Record {
            meta,
            body: stored_body,
        },
    )
    .await?;
    Ok(answer(event_id))
}

/// `POST /api/{project_id}/store/`: one event as JSON (optionally base64 + zlib), or an envelope.
pub async fn store(
    State(state): State<AppState>,
    path: Path<String>,
    query: RawQuery,
    connect: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if header_str(&headers, header::CONTENT_TYPE)
        .is_some_and(|ct| ct.starts_with("application/x-sentry-envelope"))
    {
        return envelope(State(state), path, query, connect, headers, body).await;
    }
    let project_id = parse_project_id(&path.0)?;
    let creds = auth::from_request(&headers, query.0.as_deref())?
        .ok_or_else(|| ApiError::unauthorized("missing authorization information"))?;
    let key = authorize(&state, &creds, project_id).await?;
    let body = read_body(body)?;
    let encoding = header_str(&headers, header::CONTENT_ENCODING);
    let decoded = decode::decode(encoding, &body, &state.limits).map_err(decode_error)?;
    let json = legacy_payload(&decoded, &state)?;
    if json.len() > state.limits.max_event_size {
        return Err(ApiError::too_large(
            "envelope exceeded size limits for type 'event'",
        ));
    }
    let event_id = validate::check_json_event(&json, &state.limits)?
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    check_capacity(&state, &key, 1).await?;
    let meta = RecordMeta {
        project_id,
        kind: RecordKind::Store,
        encoding: None,
        received: now(),
        client_ip: client_ip(&state, &headers, connect.0).map(|ip| ip.to_string()),
        user_agent: user_agent(&headers),
        event_id: Some(event_id.clone()),
        params: None,
        replaces: false,
    };
    spool(&state, Record { meta, body: json }).await?;
    Ok(answer(Some(event_id)))
}

/// `POST /api/{project_id}/security/`: browser CSP, Expect-CT and HPKP reports.
pub async fn security(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    RawQuery(query): RawQuery,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let project_id = parse_project_id(&project_id)?;
    let creds = auth::from_request(&headers, query.as_deref())?
        .ok_or_else(|| ApiError::unauthorized("missing authorization information"))?;
    let key = authorize(&state, &creds, project_id).await?;
    let content_type = header_str(&headers, header::CONTENT_TYPE).unwrap_or("application/json");
    let base = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(
        base,
        "application/csp-report"
            | "application/json"
            | "application/expect-ct-report"
            | "application/expect-ct-report+json"
            | "application/expect-staple-report"
            | "application/reports+json"
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {base:?} for a security report"),
        ));
    }
    let body = read_body(body)?;
    let encoding = header_str(&headers, header::CONTENT_ENCODING);
    let decoded = decode::decode(encoding, &body, &state.limits).map_err(decode_error)?;
    if decoded.len() > state.limits.max_event_size {
        return Err(ApiError::too_large("security report too large"));
    }
    validate::check_json_event(&decoded, &state.limits).or_else(|e| {
        // Reporting-API bodies are JSON lists: valid, but not objects.
        serde_json::from_slice::<serde::de::IgnoredAny>(&decoded)
            .map(|_| None)
            .map_err(|_| e)
    })?;
    check_capacity(&state, &key, 1).await?;
    let mut params = serde_json::Map::new();
    for (k, v) in auth::form_urlencoded(query.as_deref().unwrap_or("")) {
        if let Some(name) = k.strip_prefix("sentry_")
            && matches!(name, "release" | "environment")
        {
            params.insert(name.to_string(), json!(v));
        }
    }
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let meta = RecordMeta {
        project_id,
        kind: RecordKind::Security,
        encoding: None,
        received: now(),
        client_ip: client_ip(&state, &headers, peer).map(|ip| ip.to_string()),
        user_agent: user_agent(&headers),
        event_id: Some(event_id.clone()),
        params: Some(params.into()),
        replaces: false,
    };
    spool(
        &state,
        Record {
            meta,
            body: decoded.into_owned(),
        },
    )
    .await?;
    Ok(answer(Some(event_id)))
}

fn parse_project_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid project id in path"))
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("request body exceeds the size limit")
        } else {
            ApiError::bad_request("invalid request body").with_cause(e.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::bad_request("empty request body"));
    }
    Ok(body)
}

fn decode_error(e: DecodeError) -> ApiError {
    match e {
        DecodeError::TooLarge(_) => ApiError::too_large(e.to_string()),
        DecodeError::Unsupported(_) => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
        }
        DecodeError::Corrupt(_) => {
            ApiError::bad_request("invalid request body").with_cause(e.to_string())
        }
    }
}

/// Legacy store bodies: JSON, or base64 of zlib-compressed JSON.
fn legacy_payload(decoded: &[u8], state: &AppState) -> Result<Vec<u8>, ApiError> {
    let trimmed = decoded.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        return Ok(decoded.to_vec());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(trimmed.trim_ascii_end())
        .map_err(|_| ApiError::bad_request("invalid JSON data"))?;
    decode::decode(Some("deflate"), &raw, &state.limits)
        .map(|c| c.into_owned())
        .map_err(decode_error)
}

/// Looks the key up and checks it belongs to the project and is active.
async fn authorize(
    state: &AppState,
    creds: &Credentials,
    project_id: i64,
) -> Result<ProjectKey, ApiError> {
    let key = state
        .keys
        .get(state.store.as_ref(), &creds.public_key)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown public key"))?;
    if key.project_id != project_id {
        return Err(ApiError::unauthorized(
            "public key is not valid for this project",
        ));
    }
    if !key.is_active {
        return Err(ApiError::forbidden(
            "event submission rejected with_reason: ProjectKeyDisabled",
        ));
    }
    Ok(key)
}

fn rate_limited(retry: i64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
        .with_header(header::RETRY_AFTER, retry.to_string())
        .with_header(
            HeaderName::from_static("x-sentry-rate-limits"),
            format!("{retry}::key:key_quota"),
        )
}

/// Rate limits and spool backpressure.
async fn check_capacity(state: &AppState, key: &ProjectKey, events: i64) -> Result<(), ApiError> {
    let now = now() as i64;
    if let Some(window) = key
        .rate_limit_window
        .filter(|_| key.rate_limit_count.is_some())
        && events > 0
    {
        // The first request of a window on this node learns the cluster's count so far.
        if let Some(start) = state.rate_limiter.unknown_window(key.id, window, now) {
            let total = state.store.add_rate_count(key.id, start, 0).await?;
            state.rate_limiter.seed(key.id, start, total);
        }
    }
    if let (Some(limit), Some(window)) = (key.rate_limit_count, key.rate_limit_window)
        && events > 0
    {
        let limiter = &state.rate_limiter;
        let retry = match limiter.decide(key.id, limit, window, events, now) {
            Decision::Admit => None,
            Decision::Refuse(retry) => Some(retry),
            Decision::Exact {
                start,
                flush,
                retry,
            } => {
                if flush > 0 {
                    state.store.add_rate_count(key.id, start, flush).await?;
                }
                match state
                    .store
                    .try_add_rate_count(key.id, start, events, limit)
                    .await?
                {
                    Some(total) => {
                        limiter.seed(key.id, start, total);
                        None
                    }
                    None => {
                        limiter.seed(key.id, start, limit);
                        Some(retry)
                    }
                }
            }
        };
        if let Some(retry) = retry {
            return Err(rate_limited(retry));
        }
    }
    if state.spool.backlog() > state.limits.max_spool_backlog {
        return Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is overloaded")
                .with_header(header::RETRY_AFTER, "10"),
        );
    }
    Ok(())
}

async fn spool(state: &AppState, record: Record) -> Result<(), ApiError> {
    state.spool.append(record).await.map_err(|e| {
        tracing::error!(error = %e, "spool append failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "failed to queue envelope")
            .with_header(header::RETRY_AFTER, "10")
    })
}

fn answer(event_id: Option<String>) -> Response {
    match event_id {
        Some(id) => axum::Json(json!({ "id": id })).into_response(),
        None => axum::Json(json!({})).into_response(),
    }
}

/// The request's `User-Agent`, cut to a length any real one fits in.
fn user_agent(headers: &HeaderMap) -> Option<String> {
    header_str(headers, header::USER_AGENT).map(|ua| ua.chars().take(1024).collect())
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client address: the peer, or with a trusted proxy in front, the first forwarded hop.
pub(crate) fn client_ip(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Option<IpAddr> {
    let peer = peer.ip();
    if state.trusted_proxies.contains(&peer) {
        let forwarded = header_str(headers, HeaderName::from_static("x-forwarded-for"))
            .and_then(|v| v.split(',').next())
            .or_else(|| header_str(headers, HeaderName::from_static("x-real-ip")))
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    Some(peer)
}

pub(crate) fn now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}
