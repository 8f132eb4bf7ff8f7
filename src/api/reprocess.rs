//! Reprocessing: an issue's events digested again, e.g. once the source maps they needed were
//! uploaded.
//!
//! `POST /api/0/issues/{id}/reprocess/` takes the issue's latest events (at most
//! [`MAX_EVENTS`]), puts their frames back as the SDK sent them, removes them and appends them
//! to this node's spool, whose digest worker symbolicates and groups them again (they may then
//! land in another issue; the old issue keeps its counts). The request is served by one node,
//! so each event is reprocessed once per cluster. An event is removed before it is spooled again
//! (digestion skips ids it already stored): a crash between the two loses that one event.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::issues::visible_issue;
use crate::http::{ApiError, AuthUser};
use crate::server::AppState;
use crate::spool::{Record, RecordKind, RecordMeta};

/// Most events reprocessed per request (the latest).
pub const MAX_EVENTS: i64 = 1000;

/// `POST /api/0/issues/{id}/reprocess/` → 202 `{"reprocessing": n}`.
pub async fn issue(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (issue, project) = visible_issue(&state, &user, &id).await?;
    let events = state.store.issue_events(issue.id, MAX_EVENTS, 0).await?;
    let mut spooled = 0;
    for event in events {
        let mut payload = event.payload;
        crate::symbolicate::restore(&mut payload);
        let body = serde_json::to_vec(&payload).map_err(ApiError::internal)?;
        state
            .store
            .delete_events(project.id, std::slice::from_ref(&event.event_id))
            .await?;
        state
            .spool
            .append(Record {
                meta: RecordMeta {
                    project_id: project.id,
                    kind: RecordKind::Store,
                    encoding: None,
                    received: event.received,
                    client_ip: None,
                    user_agent: None,
                    event_id: Some(event.event_id.clone()),
                    params: None,
                },
                body,
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, event_id = %event.event_id, "reprocessing: the spool refused an event");
                ApiError::internal(e)
            })?;
        spooled += 1;
    }
    tracing::info!(issue = issue.id, events = spooled, "reprocessing an issue");
    Ok((StatusCode::ACCEPTED, Json(json!({"reprocessing": spooled}))))
}
