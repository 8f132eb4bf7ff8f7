//! Authentication extractors for the web API.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::server::AppState;
use crate::store::{StoreError, User};

use super::ApiError;

/// The user behind `Authorization: Bearer <token>`. Rejects with 401 otherwise.
pub struct AuthUser(pub User);

/// The SHA-256 of an API token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized("Authentication credentials were not provided.")
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Invalid token header."))?;
        match state.store.user_by_token(&token_hash(token)).await {
            Ok(user) => Ok(AuthUser(user)),
            Err(StoreError::NotFound) => Err(ApiError::unauthorized("Invalid token")),
            Err(e) => Err(e.into()),
        }
    }
}
