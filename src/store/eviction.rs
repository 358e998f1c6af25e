//! Keeping the cached files within a disk budget: the least recently used files that
//! no pin set holds are removed until the rest fit.
//!
//! Removing a file is safe while a client reads it: readers hold it open (and map it),
//! and the bytes stay until they close it. A file used again between the scan and its
//! removal is kept. Files being downloaded are under `tmp/` and never considered.
//! After a pass the store's counters are set from its scan.
//! Pages stay: they are small, and a page whose files are gone lists them again as
//! fetchable from the upstream.

use std::time::SystemTime;

use super::Store;
use super::access::Blob;

/// What a pass removed (or, for a dry run, would remove) and what it kept.
#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<Blob>,
    pub removed_bytes: u64,
    pub pinned_files: u64,
    pub pinned_bytes: u64,
    /// The files' total before and after the pass.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Store {
    /// Removes the least recently used unpinned files until the files fit in
    /// `max_size` bytes; with `dry_run`, only says which it would remove.
    pub fn evict(&self, max_size: u64, dry_run: bool) -> Report {
        let pinned = self.pinned();
        let mut report = Report::default();
        let mut candidates = Vec::new();
        let blobs = self.blobs();
        let files_before = blobs.len() as u64;
        for blob in blobs {
            report.bytes_before += blob.size;
            if pinned.contains(&blob.key) {
                report.pinned_files += 1;
                report.pinned_bytes += blob.size;
            } else {
                candidates.push(blob);
            }
        }
        report.bytes_after = report.bytes_before;
        candidates
            .sort_by(|a, b| (a.last_used, a.key.as_str()).cmp(&(b.last_used, b.key.as_str())));
        for blob in candidates {
            if report.bytes_after <= max_size {
                break;
            }
            if !dry_run {
                if used_since(&blob) || std::fs::remove_file(&blob.path).is_err() {
                    continue;
                }
                self.record_eviction(blob.size);
            }
            report.bytes_after -= blob.size;
            report.removed_bytes += blob.size;
            report.removed.push(blob);
        }
        if !dry_run {
            // The scan is the truth: it also counts what other processes (an import)
            // added or removed behind this one's counters.
            self.set_file_totals(
                files_before - report.removed.len() as u64,
                report.bytes_after,
            );
        }
        report
    }
}

/// Whether the file was used after it was scanned.
fn used_since(blob: &Blob) -> bool {
    std::fs::metadata(&blob.path)
        .and_then(|m| m.accessed())
        .is_ok_and(|t: SystemTime| t > blob.last_used)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::BlobKey;

    fn cached(store: &Store, byte: char, age_secs: u64) -> BlobKey {
        let key = BlobKey::parse(&byte.to_string().repeat(64)).unwrap();
        store.save_blob(&key, &[0u8; 100]).unwrap();
        let file = store.open_blob(&key).unwrap();
        let used = SystemTime::now() - Duration::from_secs(age_secs);
        file.set_times(std::fs::FileTimes::new().set_accessed(used))
            .unwrap();
        key
    }

    #[test]
    fn the_least_recently_used_unpinned_files_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let oldest = cached(&store, 'a', 400);
        let pinned = cached(&store, 'b', 300);
        let old = cached(&store, 'c', 200);
        let recent = cached(&store, 'd', 100);
        store.pin("warm-x", [&pinned]).unwrap();

        let dry = store.evict(250, true);
        assert_eq!(dry.removed.len(), 2);
        assert!(store.has_blob(&oldest));

        let report = store.evict(250, false);
        let removed: Vec<_> = report.removed.iter().map(|b| b.key.clone()).collect();
        assert_eq!(removed, [oldest.clone(), old.clone()]);
        assert_eq!((report.bytes_before, report.bytes_after), (400, 200));
        assert_eq!((report.pinned_files, report.pinned_bytes), (1, 100));
        assert!(store.has_blob(&pinned) && store.has_blob(&recent));
        assert_eq!(store.file_totals(), (2, 200));

        // Pinned files stay even when they alone exceed the budget.
        let report = store.evict(0, false);
        assert_eq!(report.removed.len(), 1);
        assert!(store.has_blob(&pinned));
        assert_eq!(report.bytes_after, 100);
    }
}
