//! A per-node cache of DSN keys, so ingestion does not ask the database on every request.
//!
//! Entries live a few seconds: a key revoked through any node stops working everywhere within
//! that time. Unknown keys are cached too, so a flood of bad keys cannot hammer the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::{ProjectKey, Store, StoreError, StoreResult};

const TTL: Duration = Duration::from_secs(10);
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<String, (Instant, Option<ProjectKey>)>>,
}

impl KeyCache {
    /// Drops a cached key (after it changed through this node).
    pub fn forget(&self, public_key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(public_key);
        }
    }

    /// The key with this public part, or `None` when there is no such key.
    pub async fn get(
        &self,
        store: &dyn Store,
        public_key: &str,
    ) -> StoreResult<Option<ProjectKey>> {
        if let Ok(entries) = self.entries.lock()
            && let Some((at, key)) = entries.get(public_key)
            && at.elapsed() < TTL
        {
            return Ok(key.clone());
        }
        let key = match store.key_by_public(public_key).await {
            Ok(k) => Some(k),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(public_key.to_string(), (Instant::now(), key.clone()));
        }
        Ok(key)
    }
}
