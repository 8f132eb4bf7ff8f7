//! Per-key rate limits: fixed windows counted in memory on each node.

use std::collections::HashMap;
use std::sync::Mutex;

/// Counts events per key in fixed windows.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<i64, (i64, i64)>>,
}

impl RateLimiter {
    /// Counts `n` events for `key_id` at time `now` (Unix seconds) against `limit` per `window`
    /// seconds. Returns `Err(retry_after_seconds)` when over the limit (nothing is counted then).
    pub fn check(&self, key_id: i64, limit: i64, window: i64, n: i64, now: i64) -> Result<(), i64> {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let entry = windows.entry(key_id).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        if entry.1 + n > limit {
            return Err((start + window - now).max(1));
        }
        entry.1 += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_a_window_and_resets_after() {
        let rl = RateLimiter::default();
        assert!(rl.check(1, 2, 60, 1, 120).is_ok());
        assert!(rl.check(1, 2, 60, 1, 130).is_ok());
        assert_eq!(rl.check(1, 2, 60, 1, 150), Err(30));
        assert!(rl.check(2, 2, 60, 1, 150).is_ok());
        assert!(rl.check(1, 2, 60, 1, 180).is_ok());
    }
}
