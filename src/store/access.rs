//! When each cached file was last used, for evicting the least recently used first.
//!
//! The record is the file's access time, which devcache sets itself each time it opens
//! a file to answer a request: one call on a file already open, no index to keep and
//! nothing to rebuild after a restart or a crash. It does not rely on the kernel's own
//! updates, which are often off (`noatime`) or coarse (`relatime`); the modification
//! time stays when the file was cached (it is the answer's Last-Modified). Under
//! `relatime` a read by another program (an `export`) of a file unused for a day
//! counts as a use too.

use std::fs::{File, FileTimes};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{BlobKey, Store};

/// A cached file as eviction sees it.
#[derive(Debug, Clone)]
pub struct Blob {
    pub key: BlobKey,
    pub path: PathBuf,
    pub size: u64,
    pub last_used: SystemTime,
}

impl Store {
    /// Records that `file`, a cached file just opened, is being used now.
    pub fn touch(&self, file: &File) {
        if let Err(e) = file.set_times(FileTimes::new().set_accessed(SystemTime::now())) {
            tracing::debug!(error = %e, "cannot record a file's use");
        }
    }

    /// Every cached file with its size and last use.
    pub fn blobs(&self) -> Vec<Blob> {
        let mut blobs = Vec::new();
        for shard in read_dir(&self.root().join("files")) {
            for path in read_dir(&shard) {
                let Some(key) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(BlobKey::parse)
                else {
                    continue;
                };
                if let Ok(meta) = path.metadata()
                    && meta.is_file()
                {
                    blobs.push(Blob {
                        key,
                        size: meta.len(),
                        last_used: meta.accessed().unwrap_or(SystemTime::UNIX_EPOCH),
                        path,
                    });
                }
            }
        }
        blobs
    }
}

fn read_dir(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
}
