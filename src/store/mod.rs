//! The on-disk cache under the data directory:
//!
//! ```text
//! pages/<project>.json   index pages with their fetch time and validators (pages.rs)
//! files/<ab>/<key>       distribution and metadata files, by sha256 (blobs.rs); each
//!                        file's access time is its last use (access.rs)
//! pins/<set>             keys eviction never removes (pins.rs, eviction.rs)
//! tmp/                   files being written; emptied at start, so a crash leaves nothing half-done
//! quarantine/            files `devcache verify` found damaged, moved aside (verify.rs)
//! ```
//!
//! Every write goes to `tmp/` first and is renamed into place, so a reader (or the
//! next start after a kill -9) sees either the old file or the whole new one. After a
//! power loss too, except for pages, which are not synced (`pages.rs` says why that
//! is safe).

pub mod access;
pub mod blobs;
pub mod bundle;
pub mod eviction;
pub mod mapped;
pub mod pages;
pub mod pins;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

pub use blobs::BlobKey;

/// Handle on a data directory. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    maps: mapped::SharedMaps,
    files: AtomicU64,
    bytes: AtomicU64,
    evictions: AtomicU64,
    evicted_bytes: AtomicU64,
    /// The disk budget in bytes; 0: none.
    max_size: AtomicU64,
    /// Woken when a new file takes the files over the budget.
    over_budget: tokio::sync::Notify,
}

impl Store {
    /// Opens (creating if needed) a data directory. Other processes may be using it
    /// too (a server while `warm` or `import` runs): nothing is removed.
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["pages", "files", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).with_context(|| {
                format!(
                    "cannot create {}; pick a writable --data-dir",
                    path.display()
                )
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                maps: mapped::SharedMaps::default(),
                files: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                evicted_bytes: AtomicU64::new(0),
                max_size: AtomicU64::new(0),
                over_budget: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Fails with one line when the directory cannot be written, so that a read-only
    /// cache is found at start rather than by every request that needs to write.
    pub fn check_writable(&self) -> Result<()> {
        let dir = self.inner.root.join("tmp");
        let probe = self.temp_path();
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .with_context(|| {
                format!(
                    "cannot write in {}; devcache needs a writable --data-dir",
                    dir.display()
                )
            })
    }

    /// Removes the temp files a previous run left behind (a crash mid-download). Only
    /// the server that owns the directory calls this, when it starts.
    pub fn remove_leftovers(&self) -> Result<()> {
        let tmp = self.inner.root.join("tmp");
        for entry in
            std::fs::read_dir(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?
        {
            let path = entry?.path();
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove leftover temp file {}", path.display()))?;
        }
        Ok(())
    }

    /// Counts the files already cached, in the background so that start-up stays fast
    /// however big the cache is.
    pub fn count_existing_files(&self) {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let blobs = store.blobs();
            let bytes = blobs.iter().map(|b| b.size).sum();
            store
                .inner
                .files
                .fetch_add(blobs.len() as u64, Ordering::Relaxed);
            store.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
            store.check_budget();
        });
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Files cached and their total size.
    pub fn file_totals(&self) -> (u64, u64) {
        (
            self.inner.files.load(Ordering::Relaxed),
            self.inner.bytes.load(Ordering::Relaxed),
        )
    }

    fn record_new_file(&self, size: u64) {
        self.inner.files.fetch_add(1, Ordering::Relaxed);
        self.inner.bytes.fetch_add(size, Ordering::Relaxed);
        self.check_budget();
    }

    fn record_eviction(&self, size: u64) {
        self.inner.evictions.fetch_add(1, Ordering::Relaxed);
        self.inner.evicted_bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Sets the files' count and bytes to what a scan of `files/` found.
    fn set_file_totals(&self, files: u64, bytes: u64) {
        self.inner.files.store(files, Ordering::Relaxed);
        self.inner.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Files evicted, and their bytes, since this process opened the store.
    pub fn evictions(&self) -> (u64, u64) {
        (
            self.inner.evictions.load(Ordering::Relaxed),
            self.inner.evicted_bytes.load(Ordering::Relaxed),
        )
    }

    /// Sets the disk budget that [`Store::over_budget`] watches.
    pub fn set_max_size(&self, max_size: Option<u64>) {
        self.inner
            .max_size
            .store(max_size.unwrap_or(0), Ordering::Relaxed);
        self.check_budget();
    }

    /// The disk budget, if there is one.
    pub fn max_size(&self) -> Option<u64> {
        Some(self.inner.max_size.load(Ordering::Relaxed)).filter(|&max| max > 0)
    }

    /// Waits until the files exceed the budget (at once if they already did since the
    /// last wait).
    pub async fn over_budget(&self) {
        self.inner.over_budget.notified().await;
    }

    fn check_budget(&self) {
        if self
            .max_size()
            .is_some_and(|max| self.inner.bytes.load(Ordering::Relaxed) > max)
        {
            self.inner.over_budget.notify_one();
        }
    }

    /// A new, empty file under `tmp/`, open for reading and writing, for a file about
    /// to be written and later published with `publish_blob`.
    pub fn create_temp(&self) -> std::io::Result<(PathBuf, std::fs::File)> {
        let path = self.temp_path();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// A fresh path under `tmp/` for a file about to be written.
    fn temp_path(&self) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.inner
            .root
            .join("tmp")
            .join(format!("{}-{n}.part", std::process::id()))
    }

    /// Writes `bytes` to `dest` through a temp file, an `fsync` and a rename.
    fn write_atomically(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.write_atomically_with(dest, Durability::Synced, |out| {
            std::io::Write::write_all(out, bytes)
        })
    }

    /// Like `write_atomically`, with the contents written by `write` as they are made
    /// (a page of many links is not held in memory as text besides), and synced before
    /// the rename only when `sync` says so.
    fn write_atomically_with(
        &self,
        dest: &Path,
        sync: Durability,
        write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        use std::io::Write;
        let temp = self.temp_path();
        let result = (|| {
            let file = std::fs::File::create(&temp)?;
            let mut out = std::io::BufWriter::new(&file);
            write(&mut out)?;
            out.flush()?;
            drop(out);
            if sync == Durability::Synced {
                file.sync_all()?;
            }
            std::fs::rename(&temp, dest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Whether a file is synced to disk before it is renamed into place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// A crash cannot leave it torn: for what is served as it is read.
    Synced,
    /// A crash may leave it empty or torn, which its reader must detect: for what
    /// can be fetched again and is refused when it does not parse (pages).
    Unsynced,
}
