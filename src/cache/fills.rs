//! Filling the cache: one upstream download per file, however many clients ask,
//! streamed to all of them while it is written.
//!
//! A fill writes to a temp file and hashes as it goes. Readers follow its progress
//! through a watch channel and map the bytes already on disk, so the first byte
//! reaches clients as soon as it arrives. The last chunk is held back until the
//! whole file matches the upstream's sha256 (and length): a client never receives a
//! complete, wrong file, and on failure its connection breaks instead.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::metrics;
use crate::store::{BlobKey, Store, mapped};
use crate::upstream::{Upstream, UpstreamError};

/// What a fill has done so far, as readers see it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The upstream answered; `length` is its Content-Length, if it gave one.
    pub started: bool,
    pub length: Option<u64>,
    /// Bytes readers may send now.
    pub available: u64,
    /// Every byte is written and matches the upstream's sha256 and length; readers may
    /// finish before the file is synced and published.
    pub verified: bool,
    /// Set once: the file is published, or why it never will be.
    pub outcome: Option<Result<(), FillError>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FillError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the upstream's bytes do not match its sha256 (expected {expected}, got {actual})")]
    HashMismatch { expected: String, actual: String },
    #[error("the upstream sent {actual} bytes where its page said {expected}")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error(
        "the upstream sent more than the {expected} bytes it announced; the download was stopped there"
    )]
    TooLong { expected: u64 },
    #[error("cannot write the cache: {0}")]
    Disk(String),
}

/// A batch being hashed and written; it gives back the hasher and the bytes written so far.
type BatchWrite = JoinHandle<std::io::Result<(Sha256, u64)>>;

/// At most this many chunks of the upstream's body are written in one batch.
const BATCH_CHUNKS: usize = 64;

/// One file being downloaded.
pub struct Fill {
    file: Arc<std::fs::File>,
    progress: watch::Receiver<Progress>,
}

/// What to fetch and what it must turn out to be.
pub struct FillRequest {
    pub key: BlobKey,
    pub url: String,
    pub expected_size: Option<u64>,
}

/// The fills under way, by key.
#[derive(Clone, Default)]
pub struct Fills {
    running: Arc<Mutex<HashMap<BlobKey, Arc<Fill>>>>,
}

/// How `start_or_join` answered.
pub enum Joined {
    /// The file was published meanwhile: serve it from the store.
    Cached,
    /// Follow this fill (started now or by an earlier request).
    Fill(Arc<Fill>),
}

impl Fills {
    /// How many fills are running.
    pub fn running(&self) -> usize {
        self.running.lock().expect("fills lock").len()
    }

    /// Waits until no fill is running. A client may have had every byte of a file before
    /// its fill synced and published it, so a process that is about to exit waits here
    /// for the cache to hold what its clients were given.
    pub async fn settled(&self) {
        loop {
            let next = self
                .running
                .lock()
                .expect("fills lock")
                .values()
                .next()
                .cloned();
            let Some(fill) = next else { return };
            // A fill leaves the map before it ends (see `FillTask::leave`), so this
            // never waits on the same one twice.
            let _ = fill.finished().await;
        }
    }

    /// The fill of `key`, if one is running.
    pub fn running_fill(&self, key: &BlobKey) -> Option<Arc<Fill>> {
        self.running.lock().expect("fills lock").get(key).cloned()
    }

    /// Joins the running fill for `request.key`, or starts one.
    pub fn start_or_join(
        &self,
        store: &Store,
        upstream: &Upstream,
        request: FillRequest,
    ) -> std::io::Result<Joined> {
        let mut running = self.running.lock().expect("fills lock");
        if let Some(fill) = running.get(&request.key) {
            return Ok(Joined::Fill(fill.clone()));
        }
        // Checked under the lock: a fill that just finished has already published.
        if store.has_blob(&request.key) {
            return Ok(Joined::Cached);
        }
        let (temp, file) = store.create_temp()?;
        let file = Arc::new(file);
        let (sender, progress) = watch::channel(Progress::default());
        let fill = Arc::new(Fill {
            file: file.clone(),
            progress,
        });
        running.insert(request.key.clone(), fill.clone());
        let task = FillTask {
            store: store.clone(),
            upstream: upstream.clone(),
            fills: self.clone(),
            request,
            temp,
            file,
            sender,
        };
        tokio::spawn(task.run());
        Ok(Joined::Fill(fill))
    }
}

struct FillTask {
    store: Store,
    upstream: Upstream,
    fills: Fills,
    request: FillRequest,
    temp: PathBuf,
    file: Arc<std::fs::File>,
    sender: watch::Sender<Progress>,
}

impl FillTask {
    async fn run(self) {
        let outcome = self.download().await;
        match &outcome {
            Ok(()) => tracing::debug!(key = self.request.key.as_str(), "fill published"),
            Err(e) => {
                tracing::warn!(url = %self.request.url, error = %e, "download failed; nothing was cached");
                let _ = std::fs::remove_file(&self.temp);
            }
        }
        // Leave the running map before telling readers, so a retry starts afresh.
        self.leave();
        self.sender.send_modify(|p| {
            if outcome.is_ok() {
                p.available = p.length.unwrap_or(p.available);
            }
            p.outcome = Some(outcome);
        });
    }

    /// Takes this fill out of the running map, unless a newer fill of the key took its place.
    fn leave(&self) {
        // Also called while unwinding from a panic: a poisoned lock is left alone then.
        let Ok(mut running) = self.fills.running.lock() else {
            return;
        };
        if running
            .get(&self.request.key)
            .is_some_and(|fill| Arc::ptr_eq(&fill.file, &self.file))
        {
            running.remove(&self.request.key);
        }
    }

    async fn download(&self) -> Result<(), FillError> {
        let response = self.upstream.fetch_file(&self.request.url).await?;
        let announced = response.content_length();
        let expected_size = self.request.expected_size;
        if let (Some(expected), Some(actual)) = (expected_size, announced)
            && expected != actual
        {
            return Err(FillError::LengthMismatch { expected, actual });
        }
        // The page's size is what the file must be; without one, the upstream's length
        // within the cap; without either, the cap. Nothing past it is read or written.
        let cap = self.upstream.caps().file;
        let file_too_large = || {
            FillError::Upstream(UpstreamError::TooLarge {
                what: "the file cap (--max-file-mib)",
                limit: cap,
            })
        };
        let length = expected_size.or(announced);
        if expected_size.is_none() && announced.is_some_and(|len| len > cap) {
            return Err(file_too_large());
        }
        let limit = length.unwrap_or(cap);
        self.sender.send_modify(|p| {
            p.started = true;
            p.length = length;
        });
        // What has arrived is hashed and written in one trip to the blocking pool: big
        // batches when the upstream is fast, single chunks when it is slow. One batch
        // is written while the next one is received.
        let mut batches = response.bytes_stream().ready_chunks(BATCH_CHUNKS);
        let mut hashed = (Sha256::new(), 0u64);
        let mut received = 0u64;
        let mut in_flight: Option<(BatchWrite, u64)> = None;
        loop {
            let batch = batches.next().await;
            if let Some((job, held_back)) = in_flight.take() {
                hashed = job
                    .await
                    .map_err(|e| FillError::Disk(e.to_string()))?
                    .map_err(|e| FillError::Disk(e.to_string()))?;
                // Readers may have everything before the newest chunk, and never the
                // last byte of a file of known length: it waits for the check.
                let mut available = hashed.1 - held_back;
                if let Some(length) = length {
                    available = available.min(length.saturating_sub(1));
                }
                self.sender.send_modify(|p| p.available = available);
            }
            let Some(batch) = batch else { break };
            let chunks = batch
                .into_iter()
                .collect::<Result<Vec<Bytes>, _>>()
                .map_err(UpstreamError::from)?;
            let batch_len = chunks.iter().map(|c| c.len() as u64).sum();
            metrics().upstream_bytes(batch_len);
            received += batch_len;
            if received > limit {
                return Err(match length {
                    Some(expected) => FillError::TooLong { expected },
                    None => file_too_large(),
                });
            }
            let held_back = chunks.last().map_or(0, |c| c.len() as u64);
            let file = self.file.clone();
            let (mut hasher, mut offset) = std::mem::take(&mut hashed);
            let job = tokio::task::spawn_blocking(move || {
                for chunk in &chunks {
                    hasher.update(chunk);
                    file.write_all_at(chunk, offset)?;
                    offset += chunk.len() as u64;
                }
                Ok((hasher, offset))
            });
            in_flight = Some((job, held_back));
        }
        let (hasher, written) = hashed;
        if let Some(expected) = length
            && expected != written
        {
            return Err(FillError::LengthMismatch {
                expected,
                actual: written,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = self.request.key.expected_sha256()
            && expected != actual
        {
            return Err(FillError::HashMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        // The bytes are right: readers may finish while the file is synced and published.
        self.sender.send_modify(|p| {
            p.available = written;
            p.length = Some(written);
            p.verified = true;
        });
        let file = self.file.clone();
        let (store, temp, key) = (
            self.store.clone(),
            self.temp.clone(),
            self.request.key.clone(),
        );
        tokio::task::spawn_blocking(move || {
            file.sync_all()?;
            store.publish_blob(&temp, &key, written)
        })
        .await
        .map_err(|e| FillError::Disk(e.to_string()))?
        .map_err(|e| FillError::Disk(e.to_string()))?;
        Ok(())
    }
}

/// However the task ends, a panic included, its fill leaves the running map (before the
/// sender is dropped and readers see it end): no request joins, and no stopping process
/// waits on, a fill that nothing drives.
impl Drop for FillTask {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Fill {
    /// Waits until the upstream has answered (or failed), and says what it said.
    pub async fn started(&self) -> Result<Progress, FillError> {
        let seen = self.wait_for(|p| p.started).await?;
        match &seen.outcome {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(seen),
        }
    }

    /// Waits until the file is published.
    pub async fn finished(&self) -> Result<(), FillError> {
        let seen = self.wait_for(|_| false).await?;
        seen.outcome.expect("waited for an outcome")
    }

    /// Waits until every byte is written and matches the upstream's sha256, and gives
    /// the file, which may not be synced and published yet.
    pub async fn verified_file(&self) -> Result<Arc<std::fs::File>, FillError> {
        match self.wait_for(|p| p.verified).await?.outcome {
            Some(Err(e)) => Err(e),
            _ => Ok(self.file.clone()),
        }
    }

    /// The progress once `reached` holds or the fill has an outcome.
    async fn wait_for(&self, reached: impl Fn(&Progress) -> bool) -> Result<Progress, FillError> {
        let mut progress = self.progress.clone();
        let seen = progress
            .wait_for(|p| reached(p) || p.outcome.is_some())
            .await
            .map_err(|_| FillError::Disk("fill task ended".into()))?;
        Ok(seen.clone())
    }

    /// The file's bytes from the start, as they become available. Ends with an error
    /// (so the client's connection breaks) if the fill fails.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold((self, 0u64, false), |(fill, sent, done)| async move {
            if done {
                return None;
            }
            let mut progress = fill.progress.clone();
            let state = match progress
                .wait_for(|p| p.available > sent || p.verified || p.outcome.is_some())
                .await
            {
                Ok(state) => state.clone(),
                Err(_) => {
                    return Some((
                        Err(std::io::Error::other("fill task ended")),
                        (fill, sent, true),
                    ));
                }
            };
            if state.available > sent {
                let len = (state.available - sent).min(mapped::WINDOW);
                return Some(match mapped::bytes_at(fill.file.clone(), sent, len).await {
                    Ok(bytes) => (Ok(bytes), (fill, sent + len, false)),
                    Err(e) => (Err(e), (fill, sent, true)),
                });
            }
            if state.verified {
                return None;
            }
            match state.outcome {
                Some(Ok(())) => None,
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (fill, sent, true))),
                None => unreachable!("waited for bytes, verification or an outcome"),
            }
        })
    }
}
