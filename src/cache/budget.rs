//! The disk budget, kept in the background: whenever a new file takes the cache over
//! `--max-size`, an eviction pass runs on the blocking pool. Requests never wait for
//! it; the pins warm and import recorded are never evicted.

use super::Cache;
use crate::api::human_bytes;

impl Cache {
    /// Keeps the files within the store's budget for as long as the process runs.
    pub fn keep_within_budget(&self) {
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                store.over_budget().await;
                let Some(max_size) = store.max_size() else {
                    continue;
                };
                let pass = store.clone();
                let Ok(report) =
                    tokio::task::spawn_blocking(move || pass.evict(max_size, false)).await
                else {
                    continue;
                };
                if !report.removed.is_empty() {
                    tracing::info!(
                        "evicted {} least recently used file(s) ({}) to keep within {}",
                        report.removed.len(),
                        human_bytes(report.removed_bytes),
                        human_bytes(max_size)
                    );
                }
                if report.bytes_after > max_size {
                    tracing::warn!(
                        "the cache holds {}, over its budget of {}: {} of it is pinned; \
                         `devcache pins` lists the pin sets, `devcache unpin SET` drops one",
                        human_bytes(report.bytes_after),
                        human_bytes(max_size),
                        human_bytes(report.pinned_bytes)
                    );
                }
            }
        });
    }
}
