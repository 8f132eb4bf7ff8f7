//! The digest worker: reads the spool in batches, processes them, stores each batch together
//! with the spool position it reached, then lets the spool drop what is done.
//!
//! Also the retention sweep, which evicts events past a project's cap or age.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Limits;
use crate::spool::{Position, Record, Spool};
use crate::store::{DigestBatch, Store};

use super::process;

/// Records per batch: large enough to share a transaction's cost, small enough to keep the
/// latency from acknowledgement to visibility low.
const BATCH_RECORDS: usize = 1000;
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Below this many records a batch is processed on one thread.
const PARALLEL_FROM: usize = 64;

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub spool: Spool,
    pub node_id: String,
    pub limits: Arc<Limits>,
}

/// Runs until the task is aborted. Resumes from the position saved in the database.
pub async fn run(w: Worker) {
    let start = loop {
        match w.store.spool_position(&w.node_id).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool position; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut reader = Some(w.spool.reader(start));
    let mut durable = w.spool.durable();
    loop {
        let end = *durable.borrow_and_update();
        let Some(mut r) = reader.take() else {
            return;
        };
        let limits = w.limits.clone();
        let node_id = w.node_id.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let records = r.read(end, BATCH_RECORDS, BATCH_BYTES);
            let batch = records.map(|records| {
                let mut batch = process_parallel(&records, &limits);
                batch.node_id = node_id;
                batch.position = r.position();
                (records.len(), Arc::new(batch))
            });
            let consumed = r.take_consumed();
            (r, batch, consumed)
        })
        .await;
        let (r, batch, consumed) = match joined {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "digest task failed");
                return;
            }
        };
        reader = Some(r);
        let (n, batch) = match batch {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if n == 0 {
            if durable.changed().await.is_err() {
                return;
            }
            continue;
        }
        let position = batch.position;
        loop {
            match w.store.save_batch(batch.clone()).await {
                Ok(result) => {
                    tracing::debug!(
                        records = n,
                        stored = result.stored,
                        duplicates = result.duplicates,
                        new_issues = result.new_issues.len(),
                        "digested batch"
                    );
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store a digest batch; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        w.spool.mark_digested(consumed);
        w.spool.remove_before(position);
    }
}

/// Processes records on every core: parsing, normalizing and compressing events is the costly
/// part of digestion, and records are independent. The result keeps the records' order.
fn process_parallel(records: &[(Record, Position)], limits: &Limits) -> DigestBatch {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || records.len() < PARALLEL_FROM {
        let mut batch = DigestBatch::default();
        for (record, _) in records {
            process::record(record, limits, &mut batch);
        }
        return batch;
    }
    let chunk = records.len().div_ceil(threads);
    let parts: Vec<DigestBatch> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut batch = DigestBatch::default();
                    for (record, _) in part {
                        process::record(record, limits, &mut batch);
                    }
                    batch
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut batch = DigestBatch::default();
    for part in parts {
        batch.events.extend(part.events);
        batch.attachments.extend(part.attachments);
        batch.user_reports.extend(part.user_reports);
        batch.sessions.extend(part.sessions);
        batch.session_users.extend(part.session_users);
        batch.outcomes.extend(part.outcomes);
    }
    batch
}

/// Evicts old events every `every`, per project settings or the server defaults
/// (`0` = no limit), on the one node that holds the `retention` lease.
pub async fn retention_loop(
    store: Arc<dyn Store>,
    node_id: String,
    default_days: i64,
    default_max_events: i64,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        // One node of a cluster sweeps; the lease outlives a sweep interval, so the same node
        // keeps it while it lives and another takes over when it stops.
        let ttl = every.as_secs_f64() * 3.0 + 10.0;
        match store.try_lease("retention", &node_id, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot take the lease");
                continue;
            }
        }
        let projects = match store.all_projects().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot list projects");
                continue;
            }
        };
        let now = chrono::Utc::now().timestamp() as f64;
        for p in projects {
            let days = p.retention_days.unwrap_or(default_days);
            let max = p.retention_max_events.unwrap_or(default_max_events);
            let min_ts = (days > 0).then_some(now - days as f64 * 86400.0);
            let max = (max > 0).then_some(max);
            match store.enforce_retention(p.id, max, min_ts).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(project = p.id, removed = n, "retention evicted events"),
                Err(e) => tracing::warn!(error = %e, project = p.id, "retention failed"),
            }
        }
    }
}
