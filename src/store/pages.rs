//! Cached index pages: the parsed page, when it was fetched, and the validators
//! (ETag, Last-Modified) that let a stale page be revalidated cheaply.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Durability, Store};
use crate::index::{ProjectName, ProjectPage};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPage {
    pub page: ProjectPage,
    /// Seconds since the epoch when the upstream last confirmed this page.
    pub fetched_at: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl StoredPage {
    pub fn age(&self) -> Duration {
        Duration::from_secs(now().saturating_sub(self.fetched_at))
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    /// The cached page of a project. A page that cannot be read is treated as absent
    /// (and logged), so one bad file never takes the server down.
    pub fn load_page(&self, name: &ProjectName) -> Option<StoredPage> {
        let path = self.page_path(name);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read cached page");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(page) => Some(page),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cached page");
                None
            }
        }
    }

    /// Saves a page without an `fsync`: pages are fetched again when stale anyway, and
    /// a page that a crash left empty or torn is not valid JSON, so [`Store::load_page`]
    /// reads it as absent (and the next request fetches it) rather than serving it.
    pub fn save_page(&self, stored: &StoredPage) -> std::io::Result<()> {
        let path = self.page_path(&stored.page.name);
        self.write_atomically_with(&path, Durability::Unsynced, |out| {
            serde_json::to_writer(out, stored).map_err(std::io::Error::other)
        })
    }

    /// The length of the cached page of a project, in bytes, or `None` when there is
    /// none (or it cannot be read, which is logged): what it costs to load, known
    /// before loading it.
    pub fn page_len(&self, name: &ProjectName) -> Option<u64> {
        let path = self.page_path(name);
        match std::fs::metadata(&path) {
            Ok(metadata) => Some(metadata.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read cached page");
                None
            }
        }
    }

    fn page_path(&self, name: &ProjectName) -> std::path::PathBuf {
        self.root().join("pages").join(format!("{name}.json"))
    }

    /// Every project with a cached page, sorted.
    pub fn page_names(&self) -> Vec<ProjectName> {
        let mut names: Vec<ProjectName> = std::fs::read_dir(self.root().join("pages"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let file_name = entry.file_name();
                let stem = file_name.to_str()?.strip_suffix(".json")?;
                ProjectName::parse(stem).ok()
            })
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_survive_a_reopen_and_garbage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = ProjectName::parse("demo").unwrap();
        let stored = StoredPage {
            page: ProjectPage::new(name.clone(), Vec::new(), Vec::new()),
            fetched_at: now(),
            etag: Some("\"v1\"".into()),
            last_modified: None,
        };
        store.save_page(&stored).unwrap();
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(
            reopened.load_page(&name).unwrap().etag.as_deref(),
            Some("\"v1\"")
        );
        assert_eq!(reopened.page_names(), vec![name.clone()]);

        std::fs::write(dir.path().join("pages/demo.json"), b"{not json").unwrap();
        assert!(reopened.load_page(&name).is_none());
    }

    #[test]
    fn a_page_cut_short_or_zeroed_by_a_crash_reads_as_absent() {
        // Pages are saved without an fsync: what a crash can leave of one must never be
        // served as a page.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = ProjectName::parse("demo").unwrap();
        let file = crate::index::DistFile {
            filename: "demo-1.0-py3-none-any.whl".into(),
            url: "http://127.0.0.1:9/files/demo-1.0-py3-none-any.whl".into(),
            hashes: Default::default(),
            requires_python: None,
            yanked: None,
            core_metadata: None,
            size: Some(1),
            upload_time: None,
            gpg_sig: None,
        };
        let stored = StoredPage {
            page: ProjectPage::new(name.clone(), vec![file], Vec::new()),
            fetched_at: now(),
            etag: None,
            last_modified: None,
        };
        store.save_page(&stored).unwrap();
        let path = dir.path().join("pages/demo.json");
        let whole = std::fs::read(&path).unwrap();
        for len in [0, 1, whole.len() / 2, whole.len() - 1] {
            std::fs::write(&path, &whole[..len]).unwrap();
            assert!(store.load_page(&name).is_none(), "cut to {len} bytes");
        }
        std::fs::write(&path, vec![0u8; whole.len()]).unwrap();
        assert!(store.load_page(&name).is_none(), "zeroed");
        store.save_page(&stored).unwrap();
        assert_eq!(store.load_page(&name).unwrap().page, stored.page);
    }

    #[test]
    fn leftover_temp_files_are_removed_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let count = || std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        Store::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("tmp/123-0.part"), b"half a wheel").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(count(), 1, "opening alone removes nothing");
        store.remove_leftovers().unwrap();
        assert_eq!(count(), 0);
    }
}
