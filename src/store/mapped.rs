//! Bytes of cache files, handed to responses as memory maps of the page cache.
//!
//! The store never changes a byte it has written: a blob is written once under tmp/,
//! verified, renamed into place and never truncated or rewritten (a replacement is
//! another rename), and a fill's temp file only grows, each offset written once. That
//! is what makes mapping them sound, and it spares a copy into user space per request.

use std::fs::File;
use std::sync::Arc;

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
