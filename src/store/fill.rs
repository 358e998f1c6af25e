//! Filling the cache: one upstream download per file, however many clients ask,
//! streamed to all of them while it is written.
//!
//! A fill writes to a temp file and hashes as it goes. Readers follow its progress
//! through a watch channel and read the bytes already on disk, so the first byte
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

use super::{BlobKey, Store};
use crate::upstream::{Upstream, UpstreamError};

/// What a fill has done so far, as readers see it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The upstream answered; `length` is its Content-Length, if it gave one.
    pub started: bool,
    pub length: Option<u64>,
    /// Bytes readers may send now.
    pub available: u64,
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
    #[error("cannot write the cache: {0}")]
    Disk(String),
}

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
        if store.blob_path(&request.key).exists() {
            return Ok(Joined::Cached);
        }
        let temp = store.temp_path();
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&temp)?,
        );
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
        self.fills
            .running
            .lock()
            .expect("fills lock")
            .remove(&self.request.key);
        self.sender.send_modify(|p| {
            if outcome.is_ok() {
                p.available = p.length.unwrap_or(p.available);
            }
            p.outcome = Some(outcome);
        });
    }

    async fn download(&self) -> Result<(), FillError> {
        let response = self.upstream.fetch_file(&self.request.url).await?;
        let length = response.content_length().or(self.request.expected_size);
        if let (Some(expected), Some(actual)) =
            (self.request.expected_size, response.content_length())
            && expected != actual
        {
            return Err(FillError::LengthMismatch { expected, actual });
        }
        self.sender.send_modify(|p| {
            p.started = true;
            p.length = length;
        });
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(UpstreamError::from)?;
            hasher.update(&chunk);
            write_at(&self.file, chunk.clone(), written).await?;
            // Readers may have everything before this chunk; this one waits for the check.
            let before = written;
            self.sender.send_modify(|p| p.available = before);
            written += chunk.len() as u64;
        }
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
        self.sender.send_modify(|p| p.length = Some(written));
        Ok(())
    }
}

async fn write_at(file: &Arc<std::fs::File>, chunk: Bytes, offset: u64) -> Result<(), FillError> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || file.write_all_at(&chunk, offset))
        .await
        .map_err(|e| FillError::Disk(e.to_string()))?
        .map_err(|e| FillError::Disk(e.to_string()))
}

impl Fill {
    /// Waits until the upstream has answered (or failed), and says what it said.
    pub async fn started(&self) -> Result<Progress, FillError> {
        let mut progress = self.progress.clone();
        let seen = progress
            .wait_for(|p| p.started || p.outcome.is_some())
            .await
            .map_err(|_| FillError::Disk("fill task ended".into()))?
            .clone();
        match &seen.outcome {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(seen),
        }
    }

    /// Waits until the file is published.
    pub async fn finished(&self) -> Result<(), FillError> {
        let mut progress = self.progress.clone();
        let seen = progress
            .wait_for(|p| p.outcome.is_some())
            .await
            .map_err(|_| FillError::Disk("fill task ended".into()))?
            .clone();
        seen.outcome.expect("waited for an outcome")
    }

    /// The file's bytes from the start, as they become available. Ends with an error
    /// (so the client's connection breaks) if the fill fails.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        const READ_SIZE: u64 = 256 * 1024;
        futures::stream::unfold((self, 0u64, false), |(fill, sent, done)| async move {
            if done {
                return None;
            }
            let mut progress = fill.progress.clone();
            let state = match progress
                .wait_for(|p| p.available > sent || p.outcome.is_some())
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
                let len = (state.available - sent).min(READ_SIZE) as usize;
                let file = fill.file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0; len];
                    file.read_exact_at(&mut buf, sent)
                        .map(|()| Bytes::from(buf))
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                return Some(match read {
                    Ok(bytes) => (Ok(bytes), (fill, sent + len as u64, false)),
                    Err(e) => (Err(e), (fill, sent, true)),
                });
            }
            match state.outcome {
                Some(Ok(())) => None,
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (fill, sent, true))),
                None => unreachable!("waited for bytes or an outcome"),
            }
        })
    }
}
