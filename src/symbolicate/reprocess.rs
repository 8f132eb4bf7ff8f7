//! Reprocessing: an issue's events digested again, e.g. once the source maps they needed were
//! uploaded.
//!
//! The issue's latest events (at most [`MAX_EVENTS`]) get their frames back as the SDK sent
//! them ([`super::restore`]) and are appended to this node's spool, marked as replacing the
//! stored event with their id; the digest worker symbolicates and groups them again and
//! replaces each stored event in the same transaction (they may then land in another issue; the
//! old issue keeps its counts). The request that asks for it is served by one node, so each
//! event is reprocessed once per cluster. The stored event stays until its replacement is
//! stored, so a crash at any point loses nothing.

use crate::spool::{Record, RecordKind, RecordMeta, Spool, SpoolError};
use crate::store::{Store, StoreError};

/// Most events reprocessed per request (the latest).
pub const MAX_EVENTS: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the spool refused an event: {0}")]
    Spool(#[from] SpoolError),
    #[error("cannot encode an event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Sends the latest events of an issue of `project_id` through digestion again; returns how
/// many.
pub async fn reprocess_issue(
    store: &dyn Store,
    spool: &Spool,
    project_id: i64,
    issue_id: i64,
) -> Result<usize, ReprocessError> {
    let events = store.issue_events(issue_id, MAX_EVENTS, 0).await?;
    let mut spooled = 0;
    for event in events {
        let mut payload = event.payload;
        super::restore(&mut payload);
        let body = serde_json::to_vec(&payload)?;
        spool
            .append(Record {
                meta: RecordMeta {
                    project_id,
                    kind: RecordKind::Store,
                    encoding: None,
                    received: event.received,
                    client_ip: None,
                    user_agent: None,
                    event_id: Some(event.event_id),
                    params: None,
                    replaces: true,
                },
                body,
            })
            .await?;
        spooled += 1;
    }
    tracing::info!(issue = issue_id, events = spooled, "reprocessing an issue");
    Ok(spooled)
}
