//! When each cached file was last used, for evicting the least recently used first.
//!
//! The record is the file's own modification time, which devcache sets each time it
//! opens a file to answer a request: files never change after they are published, so
//! the time says nothing else, and it costs one syscall on a file already open, no
//! index to keep and nothing to rebuild after a restart or a crash. Access times
//! (atime) are not used: they are often off (`noatime`) or coarse (`relatime`).

use std::fs::File;
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
        if let Err(e) = file.set_modified(SystemTime::now()) {
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
                        last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
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
