//! `POST /api/0/issues/{id}/reprocess/`: an issue's events digested again (see
//! [`crate::symbolicate::reprocess`]), e.g. once their source maps were uploaded.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::issues::visible_issue;
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::symbolicate::reprocess::reprocess_issue;

/// `POST /api/0/issues/{id}/reprocess/` → 202 `{"reprocessing": n}`.
pub async fn issue(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (issue, project) = visible_issue(&state, &user, &id).await?;
    state.symbolicator.forget_lookups();
    let n = reprocess_issue(state.store.as_ref(), &state.spool, project.id, issue.id)
        .await
        .map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"reprocessing": n}))))
}
