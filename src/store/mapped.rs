//! Bytes of cache files, handed to responses as memory maps of the page cache.
//!
//! The store never changes a byte it has written: a blob is written once under tmp/,
//! verified, renamed into place and never truncated or rewritten (a replacement is
//! another rename), and a fill's temp file only grows, each offset written once. That
//! is what makes mapping them sound, and it spares a copy into user space per request.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

/// Responses map at most this much of a file at a time: a typical wheel in one trip to
/// the blocking pool, while many clients of a large file keep only a few MB mapped each.
pub const WINDOW: u64 = 4 * 1024 * 1024;

/// `len` bytes of `file` from `offset`, which must already be written. Runs on the
/// blocking pool: populating the map reads the pages there rather than in the socket
/// writes of an async worker.
pub async fn bytes_at(file: Arc<File>, offset: u64, len: u64) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let map = tokio::task::spawn_blocking(move || {
        // SAFETY: see the module's comment; the range was written before this call
        // and is never modified or truncated while the map lives.
        unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len as usize)
                .populate()
                .map(&*file)
        }
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(Bytes::from_owner(map))
}

/// Whole cached files, mapped once and shared by every answer that reads them at the
/// same time: sixty-four clients of one file hold one mapping, not sixty-four. A
/// mapping lives as long as some answer holds it; the registry keeps only weak
/// references, so it holds no memory of its own.
#[derive(Clone, Default)]
pub struct SharedMaps {
    maps: Arc<Mutex<HashMap<PathBuf, Weak<memmap2::Mmap>>>>,
}

/// Owner of a shared mapping, so that `Bytes` can borrow from it.
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Dead entries are swept once the registry holds this many.
const SWEEP_AT: usize = 1024;

impl SharedMaps {
    /// The bytes of the cached file at `path` (opened as `file`), mapped, or the mapping
    /// another answer already holds. The kernel is asked to read ahead, so first touches
    /// of a file not in the page cache seldom wait for the disk.
    pub fn bytes(&self, path: &Path, file: &File) -> std::io::Result<Bytes> {
        if file.metadata()?.len() == 0 {
            return Ok(Bytes::new());
        }
        let mut maps = self.maps.lock().expect("maps lock");
        if let Some(map) = maps.get(path).and_then(Weak::upgrade) {
            return Ok(Bytes::from_owner(SharedMap(map)));
        }
        // SAFETY: see the module's comment: a published file is never modified or
        // truncated; a replacement is another rename.
        let map = Arc::new(unsafe { memmap2::Mmap::map(file)? });
        let _ = map.advise(memmap2::Advice::WillNeed);
        if maps.len() >= SWEEP_AT {
            maps.retain(|_, weak| weak.strong_count() > 0);
        }
        maps.insert(path.to_path_buf(), Arc::downgrade(&map));
        Ok(Bytes::from_owner(SharedMap(map)))
    }
}
