//! Bytes of cache files, handed to responses as memory maps of the page cache.
//!
//! The store never changes a byte it has written: a blob is written once under tmp/,
//! verified, renamed into place and never truncated or rewritten (a replacement is
//! another rename), and a fill's temp file only grows, each offset written once. That
//! is what makes mapping them sound, and it spares a copy into user space per request.
//!
//! Mapped pages that a response has touched count in the process's resident memory
//! until the map is dropped. So a file up to [`SHARED_UP_TO`] is mapped whole, once, for
//! every answer reading it; a larger one, and a file being filled, are sent a
//! [`WINDOW`] at a time, each window mapped only while it is sent. A file up to
//! [`READ_UP_TO`] is read instead, which costs less than mapping it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

/// Responses that read a file in windows map at most this much of it at a time: a
/// typical wheel in one trip to the blocking pool, while each client of a large file
/// keeps one or two MiB mapped.
pub const WINDOW: u64 = 1024 * 1024;

/// Cached files up to this size are mapped whole and shared by the answers that read
/// them at the same time; larger ones are read in windows.
pub const SHARED_UP_TO: u64 = 8 * 1024 * 1024;

/// Cached files up to this size (a page or a `.metadata`, most small wheels) are read
/// into memory instead: one `read` copies them for less than a map costs, since the
/// `munmap` after the answer interrupts every core the process runs on.
pub const READ_UP_TO: u64 = 64 * 1024;

/// A cached file's bytes to send.
#[derive(Clone)]
pub enum FileBytes {
    /// All of them, in memory or in one shared map.
    Whole(Bytes),
    /// A file larger than [`SHARED_UP_TO`], to be read in windows.
    Windows { file: Arc<File>, len: u64 },
}

impl FileBytes {
    pub fn len(&self) -> u64 {
        match self {
            FileBytes::Whole(bytes) => bytes.len() as u64,
            FileBytes::Windows { len, .. } => *len,
        }
    }
}

/// The bytes of `file` from `start` to `end` (exclusive), a [`WINDOW`] at a time.
pub fn windows(
    file: Arc<File>,
    start: u64,
    end: u64,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::unfold((file, start), move |(file, at)| async move {
        if at >= end {
            return None;
        }
        let len = (end - at).min(WINDOW);
        let window = bytes_at(file.clone(), at, len).await;
        Some((window, (file, at + len)))
    })
    .boxed()
}

/// `len` bytes of `file` from `offset`, which must already be written. Runs on the
/// blocking pool: populating the map reads the pages there rather than in the socket
/// writes of the server's thread.
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
    /// The bytes of the cached file at `path` (opened as `file`, `len` bytes long):
    /// mapped, or the mapping another answer already holds, or to be read in windows
    /// when the file is larger than [`SHARED_UP_TO`]. The kernel is asked to read ahead,
    /// so first touches of a file not in the page cache seldom wait for the disk.
    pub fn bytes(&self, path: &Path, file: File, len: u64) -> std::io::Result<FileBytes> {
        if len == 0 {
            return Ok(FileBytes::Whole(Bytes::new()));
        }
        if len > SHARED_UP_TO {
            return Ok(FileBytes::Windows {
                file: Arc::new(file),
                len,
            });
        }
        if len <= READ_UP_TO {
            let mut bytes = vec![0; len as usize];
            std::io::Read::read_exact(&mut &file, &mut bytes)?;
            return Ok(FileBytes::Whole(Bytes::from(bytes)));
        }
        let mut maps = self.maps.lock().expect("maps lock");
        if let Some(map) = maps.get(path).and_then(Weak::upgrade) {
            return Ok(FileBytes::Whole(Bytes::from_owner(SharedMap(map))));
        }
        // SAFETY: see the module's comment: a published file is never modified or
        // truncated; a replacement is another rename.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file)? });
        let _ = map.advise(memmap2::Advice::WillNeed);
        if maps.len() >= SWEEP_AT {
            maps.retain(|_, weak| weak.strong_count() > 0);
        }
        maps.insert(path.to_path_buf(), Arc::downgrade(&map));
        Ok(FileBytes::Whole(Bytes::from_owner(SharedMap(map))))
    }
}
