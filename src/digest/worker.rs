//! The digest worker: reads the spool in batches, processes them, stores each batch together
//! with the spool position it reached, then lets the spool drop what is done.
//!
//! Also the retention sweep, which evicts events past a project's cap or age.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Limits;
use crate::spool::{Position, Record, Spool};
use crate::store::{DigestBatch, Store};
use crate::symbolicate::Symbolicator;

use super::dictionary::Dictionaries;
use super::process::{self, Dicts};

/// Records per batch: large enough to share a transaction's cost, small enough to keep the
/// latency from acknowledgement to visibility low.
const BATCH_RECORDS: usize = 500;
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// How long digestion waits after it has caught up before it reads the next batch. At 2,000
/// events/s, batches grew from ~20 to ~190 records and the server's CPU fell by 10-15 %; an
/// event becomes visible at most this much later.
const LINGER: Duration = Duration::from_millis(25);
/// Below this many records a batch is processed on one thread.
const PARALLEL_FROM: usize = 64;

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub spool: Spool,
    pub node_id: String,
    pub limits: Arc<Limits>,
    /// Alert rules are evaluated on every stored batch.
    pub alerts: Arc<crate::alerts::evaluate::Evaluator>,
    /// Resolves JavaScript frames with uploaded source maps.
    pub symbolicator: Option<Arc<Symbolicator>>,
    /// The projects' dictionaries for stored events.
    pub dictionaries: Arc<Dictionaries>,
}

/// A processed batch on its way from the processing stage to the storing stage.
struct Processed {
    batch: Arc<DigestBatch>,
    records: usize,
    consumed: u64,
}

/// Runs until the task is aborted. Resumes from the position saved in the database.
///
/// Two stages run side by side: one reads and processes the next batch while the other stores
/// the previous one, so parsing (spread over every core) and the database's single writer
/// overlap. At most one processed batch waits between them.
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
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::join!(process_stage(&w, start, tx), store_stage(&w, start, rx));
}

/// Reads the spool from `start` and sends each processed batch on.
async fn process_stage(w: &Worker, start: Position, tx: tokio::sync::mpsc::Sender<Processed>) {
    let mut reader = Some(w.spool.reader(start));
    let mut durable = w.spool.durable();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut written = w.spool.written();
    loop {
        let end = *durable.borrow_and_update();
        let Some(mut r) = reader.take() else {
            return;
        };
        let limits = w.limits.clone();
        let node_id = w.node_id.clone();
        let symbolicator = w.symbolicator.clone();
        let (store, dictionaries) = (w.store.clone(), w.dictionaries.clone());
        let runtime = tokio::runtime::Handle::current();
        // While requests keep arriving, acknowledging them comes first: digestion then takes
        // one core and catches up on all of them once the burst is over.
        let now_written = w.spool.written();
        let threads = if now_written > written { 1 } else { cores };
        written = now_written;
        let joined = tokio::task::spawn_blocking(move || {
            let records = r.read(end, BATCH_RECORDS, BATCH_BYTES);
            let batch = records.map(|records| {
                let projects: HashSet<i64> =
                    records.iter().map(|(r, _)| r.meta.project_id).collect();
                let dicts = runtime.block_on(dictionaries.for_projects(store.as_ref(), projects));
                let mut batch =
                    process_parallel(&records, &limits, symbolicator.as_deref(), &dicts, threads);
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
        let (records, batch) = match batch {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if records == 0 {
            if durable.changed().await.is_err() {
                return;
            }
            continue;
        }
        let processed = Processed {
            batch,
            records,
            consumed,
        };
        if tx.send(processed).await.is_err() {
            return;
        }
        if records < BATCH_RECORDS {
            // Caught up: let the next batch gather for a moment rather than take each few
            // records as they come (every batch has a fixed cost in the database).
            tokio::time::sleep(LINGER).await;
        }
    }
}

/// Attempts at storing a batch before it is taken apart to find what the database refuses.
const WHOLE_BATCH_ATTEMPTS: u32 = 3;

/// Stores each processed batch, then lets the spool drop what is done.
///
/// A batch the database keeps refusing is stored piece by piece: pieces that fail are logged and
/// dropped, so one poisonous event cannot stop digestion. Until the last piece, the saved spool
/// position stays where the previous batch left it, so a crash in between digests the batch
/// again (events already stored are recognized by their id).
async fn store_stage(w: &Worker, start: Position, mut rx: tokio::sync::mpsc::Receiver<Processed>) {
    let mut saved = start;
    while let Some(p) = rx.recv().await {
        let mut attempts = 0;
        loop {
            match w.store.save_batch(p.batch.clone()).await {
                Ok(result) => {
                    tracing::debug!(
                        records = p.records,
                        stored = result.stored,
                        duplicates = result.duplicates,
                        new_issues = result.new_issues.len(),
                        "digested batch"
                    );
                    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
                    if let Err(e) = w
                        .alerts
                        .after_batch(w.store.as_ref(), &p.batch, &result, now)
                        .await
                    {
                        tracing::error!(error = %e, "cannot evaluate alert rules for a batch");
                    }
                    break;
                }
                Err(e) if attempts + 1 < WHOLE_BATCH_ATTEMPTS => {
                    attempts += 1;
                    tracing::error!(error = %e, "cannot store a digest batch; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "storing the batch piece by piece");
                    store_piecewise(w, &p.batch, saved).await;
                    break;
                }
            }
        }
        saved = p.batch.position;
        w.spool.mark_digested(p.consumed);
        w.spool.remove_before(saved);
    }
}

/// Stores every item of a batch on its own, then the batch's spool position.
async fn store_piecewise(w: &Worker, batch: &DigestBatch, before: Position) {
    let piece = |f: &dyn Fn(&mut DigestBatch)| {
        let mut b = DigestBatch {
            node_id: batch.node_id.clone(),
            position: before,
            ..Default::default()
        };
        f(&mut b);
        Arc::new(b)
    };
    let mut pieces = Vec::new();
    pieces.extend(
        batch
            .events
            .iter()
            .map(|e| piece(&|b| b.events.push(e.clone()))),
    );
    pieces.extend(
        batch
            .attachments
            .iter()
            .map(|a| piece(&|b| b.attachments.push(a.clone()))),
    );
    pieces.extend(
        batch
            .user_reports
            .iter()
            .map(|r| piece(&|b| b.user_reports.push(r.clone()))),
    );
    pieces.extend(
        batch
            .sessions
            .iter()
            .map(|s| piece(&|b| b.sessions.push(s.clone()))),
    );
    pieces.extend(
        batch
            .session_users
            .iter()
            .map(|u| piece(&|b| b.session_users.push(u.clone()))),
    );
    pieces.extend(
        batch
            .outcomes
            .iter()
            .map(|o| piece(&|b| b.outcomes.push(o.clone()))),
    );
    for p in pieces {
        if let Err(e) = w.store.save_batch(p.clone()).await {
            let event_id = p.events.first().map_or("-", |e| e.event_id.as_str());
            tracing::error!(error = %e, event_id, "the database refuses this item; it is dropped");
        }
    }
    let done = Arc::new(DigestBatch {
        node_id: batch.node_id.clone(),
        position: batch.position,
        ..Default::default()
    });
    loop {
        match w.store.save_batch(done.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot save the spool position; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Processes records on `threads` cores: parsing, normalizing and compressing events is the
/// costly part of digestion, and records are independent. The result keeps the records' order.
fn process_parallel(
    records: &[(Record, Position)],
    limits: &Limits,
    sym: Option<&Symbolicator>,
    dicts: &Dicts,
    threads: usize,
) -> DigestBatch {
    if threads < 2 || records.len() < PARALLEL_FROM {
        let mut batch = DigestBatch::default();
        for (record, _) in records {
            record_guarded(record, limits, sym, dicts, &mut batch);
        }
        return batch;
    }
    // rayon's threads live as long as the process: no thread (and allocator heap) is created
    // per batch. Chunks keep the records' order when collected.
    use rayon::prelude::*;
    let chunk = records.len().div_ceil(threads);
    let parts: Vec<DigestBatch> = records
        .par_chunks(chunk)
        .map(|part| {
            let mut batch = DigestBatch::default();
            for (record, _) in part {
                record_guarded(record, limits, sym, dicts, &mut batch);
            }
            batch
        })
        .collect();
    let mut batch = DigestBatch::default();
    for part in parts {
        batch.append(part);
    }
    batch
}

/// Processes one record; a bug that panics on some input costs that record, not digestion as a
/// whole (it is logged and counted as an outcome, and the rest of the spool goes on).
fn record_guarded(
    record: &Record,
    limits: &Limits,
    sym: Option<&Symbolicator>,
    dicts: &Dicts,
    batch: &mut DigestBatch,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut part = DigestBatch::default();
        process::record(record, limits, sym, dicts, &mut part);
        part
    }));
    match outcome {
        Ok(part) => batch.append(part),
        Err(_) => {
            tracing::error!(
                project = record.meta.project_id,
                event_id = record.meta.event_id.as_deref().unwrap_or("-"),
                "digesting a record panicked; it is dropped"
            );
            batch.outcomes.push(crate::store::Outcome {
                project_id: record.meta.project_id,
                hour: (record.meta.received as i64).div_euclid(3600) * 3600,
                source: "server",
                category: "envelope".into(),
                reason: "internal_error".into(),
                quantity: 1,
            });
        }
    }
}

/// Whether this node holds (takes or renews) the lease `name` of background work done every
/// `every` by one node of a cluster. The lease outlives three rounds, so the same node keeps it
/// while it lives and another takes over when it stops.
pub async fn holds_lease(store: &dyn Store, name: &str, node_id: &str, every: Duration) -> bool {
    let ttl = every.as_secs_f64() * 3.0 + 10.0;
    match store.try_lease(name, node_id, ttl).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, lease = name, "cannot take the lease");
            false
        }
    }
}

/// Evicts old events every `every`, per project settings or the server defaults
/// (`0` = no limit), on the one node that holds the `retention` lease; also refreshes the
/// planner statistics of a PostgreSQL database whose autovacuum is off.
pub async fn retention_loop(
    store: Arc<dyn Store>,
    node_id: String,
    default_days: i64,
    default_max_events: i64,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        if !holds_lease(store.as_ref(), "retention", &node_id, every).await {
            continue;
        }
        let projects = match store.all_projects().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot list projects");
                continue;
            }
        };
        match store.refresh_statistics().await {
            Ok(true) => tracing::debug!("refreshed the database's planner statistics"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot refresh the planner statistics"),
        }
        let now = chrono::Utc::now().timestamp() as f64;
        // Expired web sessions, and failed logins older than any throttling window.
        if let Err(e) = store.prune_web(now, now - 86400.0).await {
            tracing::warn!(error = %e, "retention: cannot prune sessions");
        }
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
