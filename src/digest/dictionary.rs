//! Per-project zstd dictionaries on the digest side: which dictionary each project's new events
//! are compressed with, and the training of new ones from a project's stored events.
//!
//! One node of a cluster trains (it holds the `payload-dicts` lease); every node reads which
//! dictionary is current every few seconds, so a new one is in use everywhere soon after.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::worker::holds_lease;
use crate::store::payload::{self, EncoderDict, Prepared};
use crate::store::{Store, StoreResult};

/// Stored events a project needs before it gets a dictionary, and how many of its newest
/// events one is trained on: none larger than `SAMPLE_MAX_EVENT` (a few huge events would
/// crowd out the typical ones) and at most `SAMPLE_MAX_BYTES` of JSON in memory together.
const MIN_EVENTS: i64 = 200;
const SAMPLES: i64 = 300;
const SAMPLE_MAX_EVENT: i64 = 256 * 1024;
const SAMPLE_MAX_BYTES: usize = 8 << 20;
/// A project's dictionary is trained again from newer events after this long, so that it
/// follows the application's changes. Older dictionaries stay for the events that use them.
const RETRAIN_AFTER: f64 = 7.0 * 86400.0;
/// How long a project whose events made no dictionary waits before the next attempt.
const RETRY_AFTER: f64 = 3600.0;

/// The dictionaries digestion compresses with.
#[derive(Default)]
pub struct Dictionaries {
    /// Project → the ID of its newest dictionary.
    current: RwLock<HashMap<i64, u32>>,
    /// Dictionaries prepared for compressing, by ID.
    prepared: Prepared<EncoderDict>,
}

impl Dictionaries {
    /// The dictionaries to compress `projects`' events with, preparing those not yet prepared.
    /// A dictionary that cannot be loaded is left out: those events are stored without one.
    pub async fn for_projects(
        &self,
        store: &dyn Store,
        projects: impl IntoIterator<Item = i64>,
    ) -> HashMap<i64, Arc<EncoderDict>> {
        let wanted: Vec<(i64, u32)> = {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            projects
                .into_iter()
                .filter_map(|p| current.get(&p).map(|&id| (p, id)))
                .collect()
        };
        let mut out = HashMap::new();
        for (project, id) in wanted {
            let dict = match self.prepared.get(id) {
                Some(d) => Some(d),
                None => match store.payload_dict(id).await {
                    Ok(data) => data
                        .and_then(|d| EncoderDict::new(&d))
                        .map(|d| self.prepared.insert(id, d)),
                    Err(e) => {
                        tracing::warn!(error = %e, dict = id, "cannot load a payload dictionary");
                        None
                    }
                },
            };
            out.extend(dict.map(|d| (project, d)));
        }
        out
    }

    /// Reads which dictionary is current for each project.
    pub async fn refresh(&self, store: &dyn Store) -> StoreResult<()> {
        let current = store.current_payload_dicts().await?.into_iter().collect();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = current;
        Ok(())
    }
}

/// Every `every`: reads the current dictionaries and, on the node holding the lease, trains one
/// for the first project that is due (one per round, so training never takes a core for long).
pub async fn maintain(
    store: Arc<dyn Store>,
    node_id: String,
    dicts: Arc<Dictionaries>,
    every: Duration,
) {
    // Projects whose events made no dictionary, and when: they wait before the next attempt.
    let mut failed: HashMap<i64, f64> = HashMap::new();
    loop {
        if let Err(e) = dicts.refresh(store.as_ref()).await {
            tracing::warn!(error = %e, "cannot read the payload dictionaries");
        }
        tokio::time::sleep(every).await;
        if !holds_lease(store.as_ref(), "payload-dicts", &node_id, every).await {
            continue;
        }
        if let Err(e) = train_one(store.as_ref(), &mut failed).await {
            tracing::warn!(error = %e, "cannot train a payload dictionary");
        }
    }
}

/// Trains and keeps a dictionary for the first project due one.
async fn train_one(store: &dyn Store, failed: &mut HashMap<i64, f64>) -> StoreResult<()> {
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    failed.retain(|_, at| *at > now - RETRY_AFTER);
    let due = store
        .payload_dict_due(now - RETRAIN_AFTER, MIN_EVENTS)
        .await?;
    let Some(project) = due.into_iter().find(|p| !failed.contains_key(p)) else {
        return Ok(());
    };
    let samples = store
        .sample_payloads(project, SAMPLES, SAMPLE_MAX_EVENT, SAMPLE_MAX_BYTES)
        .await?;
    let trained = tokio::task::spawn_blocking(move || payload::train(&samples))
        .await
        .ok()
        .flatten();
    let kept = match trained {
        Some((id, data)) => {
            let size = data.len();
            let kept = store.add_payload_dict(project, id, data).await?;
            if kept {
                tracing::info!(project, dict = id, size, "trained a payload dictionary");
            }
            kept
        }
        None => false,
    };
    if !kept {
        tracing::info!(
            project,
            "its events made no new payload dictionary; trying later"
        );
        failed.insert(project, now);
    }
    Ok(())
}
