//! Per-key rate limits, in fixed windows, held across a cluster.
//!
//! While less than half of a window's allowance is used, each node decides on its own, from
//! memory, so the ingest path does not wait for the database: every second, [`RateLimiter::sync`]
//! adds this node's new counts to the shared row of the window and reads back the cluster's
//! total. Past half the allowance, every admission is an atomic conditional increment of the
//! shared row ([`Decision::Exact`]), so the limit itself is never exceeded by the later half;
//! once the cluster's count reaches the limit, nodes refuse from memory again. The tolerance: a
//! burst spread over N nodes within one sync interval, while under half the allowance, can
//! admit up to N halves before the nodes learn of each other.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{Store, StoreResult};

/// What to do with events of a rate-limited key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admit; counted in memory and synced later.
    Admit,
    /// Refuse; retry after this many seconds.
    Refuse(i64),
    /// Past half the allowance: add `flush` (admitted here, not yet synced) to the shared count,
    /// then admit only if the conditional increment of the shared count succeeds.
    Exact { start: i64, flush: i64, retry: i64 },
}

/// One key's current window as this node sees it.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    /// The cluster's count at the last sync (this node's synced counts included).
    synced: i64,
    /// Admitted here since the last sync.
    pending: i64,
}

/// Counts events per key in fixed windows.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<i64, Window>>,
}

impl RateLimiter {
    /// Decides on `n` events for `key_id` at `now` (Unix seconds) against `limit` per `window`
    /// seconds: admitted from memory, refused, or to be decided by the shared count.
    pub fn decide(&self, key_id: i64, limit: i64, window: i64, n: i64, now: i64) -> Decision {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let retry = (start + window - now).max(1);
        let Ok(mut windows) = self.windows.lock() else {
            return Decision::Admit;
        };
        let w = current(&mut windows, key_id, start);
        if w.synced + w.pending + n > limit {
            return Decision::Refuse(retry);
        }
        if 2 * (w.synced + w.pending + n) <= limit {
            w.pending += n;
            return Decision::Admit;
        }
        let flush = std::mem::take(&mut w.pending);
        w.synced += flush;
        Decision::Exact {
            start,
            flush,
            retry,
        }
    }

    /// The start of `key_id`'s current window when this node has not seen it yet.
    pub fn unknown_window(&self, key_id: i64, window: i64, now: i64) -> Option<i64> {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let windows = self.windows.lock().ok()?;
        match windows.get(&key_id) {
            Some(w) if w.start == start => None,
            _ => Some(start),
        }
    }

    /// Records the cluster's count of a window (first seen here, or after an exact decision).
    pub fn seed(&self, key_id: i64, start: i64, total: i64) {
        if let Ok(mut windows) = self.windows.lock() {
            let w = current(&mut windows, key_id, start);
            w.synced = w.synced.max(total);
        }
    }

    /// Adds this node's pending counts to the shared counts and learns the cluster's totals.
    pub async fn sync(&self, store: &dyn Store) -> StoreResult<()> {
        let todo: Vec<(i64, Window)> = match self.windows.lock() {
            Ok(mut windows) => windows
                .iter_mut()
                .map(|(k, w)| {
                    let snapshot = *w;
                    w.pending = 0;
                    w.synced += snapshot.pending;
                    (*k, snapshot)
                })
                .collect(),
            Err(_) => return Ok(()),
        };
        for (key, w) in todo {
            let total = store.add_rate_count(key, w.start, w.pending).await?;
            if let Ok(mut windows) = self.windows.lock()
                && let Some(cur) = windows.get_mut(&key)
                && cur.start == w.start
            {
                cur.synced = cur.synced.max(total);
            }
        }
        Ok(())
    }

    /// Forgets windows that started before `before` (Unix seconds).
    pub fn prune(&self, before: i64) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.retain(|_, w| w.start >= before);
        }
    }
}

/// The key's window starting at `start`, fresh when the one held is older.
fn current(windows: &mut HashMap<i64, Window>, key_id: i64, start: i64) -> &mut Window {
    let fresh = Window {
        start,
        synced: 0,
        pending: 0,
    };
    let w = windows.entry(key_id).or_insert(fresh);
    if w.start != start {
        *w = fresh;
    }
    w
}

/// Syncs the limiter with the cluster every second until aborted.
pub async fn sync_loop(limiter: std::sync::Arc<RateLimiter>, store: std::sync::Arc<dyn Store>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = limiter.sync(store.as_ref()).await {
            tracing::warn!(error = %e, "cannot sync rate limits with the cluster");
        }
        n += 1;
        if n.is_multiple_of(300) {
            // Windows are at most a month long.
            let before = chrono::Utc::now().timestamp() - 31 * 86400;
            limiter.prune(before);
            if let Err(e) = store.prune_rate_counts(before).await {
                tracing::warn!(error = %e, "cannot prune old rate limit windows");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_below_half_shared_count_above_and_refusal_past_the_limit() {
        let rl = RateLimiter::default();
        assert_eq!(rl.decide(1, 10, 60, 2, 130), Decision::Admit);
        assert_eq!(rl.decide(1, 10, 60, 3, 131), Decision::Admit);
        assert_eq!(
            rl.decide(1, 10, 60, 1, 132),
            Decision::Exact {
                start: 120,
                flush: 5,
                retry: 48
            }
        );
        rl.seed(1, 120, 10);
        assert_eq!(rl.decide(1, 10, 60, 1, 150), Decision::Refuse(30));
        assert_eq!(rl.decide(2, 10, 60, 1, 150), Decision::Admit);
        assert_eq!(rl.decide(1, 10, 60, 1, 180), Decision::Admit);
    }

    #[test]
    fn a_seeded_window_counts_what_other_nodes_admitted() {
        let rl = RateLimiter::default();
        assert_eq!(rl.unknown_window(1, 60, 130), Some(120));
        rl.seed(1, 120, 9);
        assert_eq!(rl.unknown_window(1, 60, 130), None);
        assert!(matches!(
            rl.decide(1, 10, 60, 1, 130),
            Decision::Exact { flush: 0, .. }
        ));
        rl.seed(1, 120, 10);
        assert!(matches!(rl.decide(1, 10, 60, 1, 131), Decision::Refuse(_)));
    }
}
