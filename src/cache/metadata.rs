//! Core metadata (PEP 658) for every wheel, whether or not the upstream serves it.
//!
//! Resolvers need only a wheel's `METADATA`, and without `<file>.metadata` pip downloads
//! every candidate wheel whole. So pages offer metadata for every wheel, and it is
//! answered, in this order, from:
//! 1. the cached `.metadata` file;
//! 2. the cached (verified) wheel, when the upstream gave no metadata or gave a hash
//!    the wheel's `METADATA` matches (so a cached wheel is enough offline);
//! 3. the upstream's own `.metadata`, when its page offers one;
//! 4. ranged reads of the upstream's wheel (its zip directory, then the one member);
//! 5. the whole wheel, downloaded into the cache, when the upstream refuses ranges,
//!    when the wheel is no longer than the first ranged read would be (so the bytes
//!    fetched are the same; such a wheel is read into memory first, below), or when
//!    the client downloads the wheels whose metadata it reads (pip) and the wheel is
//!    at most [`WHOLE_FOR_DOWNLOADERS`]: the client's download that follows then comes
//!    from the cache, and the upstream is asked once, where ranges and then the
//!    download would cost two or three round trips in a row. When pip does not
//!    download it after all (a candidate it backtracks past, `--dry-run`, `--report`,
//!    pip-tools), the wheel was downloaded for nothing: what pip itself does for every
//!    candidate going direct to an upstream without metadata.
//!
//! A wheel no longer than the first ranged read is read whole into memory by one `GET`
//! rather than downloaded to disk: checked against its sha256 and size, its metadata
//! answered, and the wheel saved with the metadata once the burst of requests is over
//! (see `saves`), served from memory until then. A resolution's small wheels then cost
//! no file and no `fsync` while it runs. Should that read or its check fail, the wheel
//! is downloaded as in 5, which says why to the client and the log.
//!
//! What 2, 4 and 5 derive is cached under a key of its own, answered from memory while
//! it is saved (see `saves`). Metadata read through ranges cannot be checked against
//! the wheel's sha256 (only the whole file can); it is what the upstream's file holds,
//! checked by the zip's own CRC-32. So metadata read from a verified wheel has a key of
//! its own, and once the wheel is cached it is what is answered: an upstream that sent
//! other bytes in its ranges than in the whole file cannot make its ranges' metadata
//! outlive the wheel's check.
//!
//! A wheel whose `METADATA` cannot be read (none at the top level, several, over the
//! cap, compressed in a way devcache does not read, a broken zip) is [`Unreadable`]:
//! its pages stop offering the metadata, so a client downloads the wheel whole, as it
//! would from an upstream without metadata, instead of failing on a `.metadata` the
//! page offered. The verdict of ranged reads stands without downloading the wheel
//! (the central directory said it); should the ranges have lied, the page offers no
//! metadata for a wheel that has some, which costs a download, never an install.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::files::{FileAnswer, FileError, gone, in_memory};
use super::fills::{FillError, FillRequest, Joined};
use super::{Cache, Outcome};
use crate::index::wheel::{self, WheelError};
use crate::index::{DistFile, ProjectName};
use crate::store::BlobKey;
use crate::upstream::Upstream;

/// The largest wheel downloaded whole to answer its `.metadata` for a client that
/// downloads the wheel next. Larger ones are read by ranges, so that a candidate pip
/// backtracks past, or a resolution alone, costs at most this much of a download (and
/// the answer waits for at most this much).
const WHOLE_FOR_DOWNLOADERS: u64 = 4 << 20;

/// The wheels (by key) whose `METADATA` devcache found it cannot read, in memory: a
/// restart tries each once more. Cheap to clone.
#[derive(Clone, Default)]
pub(super) struct Unreadable {
    wheels: Arc<Mutex<HashSet<BlobKey>>>,
    /// Whether `wheels` has any, so that rendering a page costs nothing more until then.
    any: Arc<AtomicBool>,
}

impl Unreadable {
    /// Whether a file the upstream gives no core metadata for offers it all the same,
    /// as clients see the page: every wheel does, but one whose metadata cannot be read.
    pub(super) fn offered_for(&self, file: &DistFile) -> bool {
        wheel::is_wheel(&file.filename)
            && !(self.any.load(Ordering::Relaxed) && self.contains(&BlobKey::for_file(file, false)))
    }

    fn contains(&self, wheel_key: &BlobKey) -> bool {
        self.wheels
            .lock()
            .expect("unreadable lock")
            .contains(wheel_key)
    }

    /// Records a wheel; true when it was not recorded yet.
    fn insert(&self, wheel_key: BlobKey) -> bool {
        self.any.store(true, Ordering::Relaxed);
        self.wheels
            .lock()
            .expect("unreadable lock")
            .insert(wheel_key)
    }
}

/// One derivation of a wheel's metadata at a time: a request that finds one under way
/// waits for it and then finds its result cached (or the wheel unreadable), so that
/// many clients asking at once for a wheel with a huge zip directory cost one read of
/// it, not one each. Cheap to clone.
#[derive(Clone, Default)]
pub(super) struct Derivations {
    running: Arc<Mutex<HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A request's turn to derive the metadata of `key`; the next waiting one goes when it
/// is dropped.
struct Turn {
    derivations: Derivations,
    key: BlobKey,
    guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Derivations {
    async fn turn(&self, key: &BlobKey) -> Turn {
        let lock = {
            let mut running = self.running.lock().expect("derivations lock");
            running.entry(key.clone()).or_default().clone()
        };
        Turn {
            derivations: self.clone(),
            key: key.clone(),
            guard: lock.lock_owned().await,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut running = self.derivations.running.lock().expect("derivations lock");
        // Held by the map and this turn only: nobody waits, and a new request would
        // take it from the map, which is locked.
        if running.get(&self.key).is_some_and(|lock| {
            Arc::ptr_eq(lock, tokio::sync::OwnedMutexGuard::mutex(&self.guard))
                && Arc::strong_count(lock) == 2
        }) {
            running.remove(&self.key);
        }
    }
}

/// Whether a failed read of a wheel's `METADATA` through ranges is the wheel's own (its
/// central directory says so), rather than the ranges' (a failed or refused read).
fn is_the_wheels_own(error: &WheelError) -> bool {
    matches!(
        error,
        WheelError::NoMetadata
            | WheelError::Ambiguous(_)
            | WheelError::TooLarge { .. }
            | WheelError::Unsupported(_)
    )
}

impl Cache {
    /// Answers `<dist>.metadata`; `key` is where it is (or will be) cached, and
    /// `downloads_after_metadata` says the client downloads the wheel next.
    pub(super) async fn core_metadata(
        &self,
        project: &ProjectName,
        dist: &DistFile,
        key: &BlobKey,
        downloads_after_metadata: bool,
    ) -> Result<Option<(FileAnswer, Outcome)>, FileError> {
        // Derived metadata: what the verified wheel gave, else (below) what ranges gave.
        let verified_key = BlobKey::for_verified_metadata(dist);
        let verified = verified_key.as_ref().unwrap_or(key);
        if let Some(answer) = self.cached(verified) {
            return Ok(Some((answer, Outcome::Hit)));
        }
        if !self.unreadable.offered_for(dist) {
            return Ok(None);
        }
        let _turn = self.derivations.turn(verified).await;
        // Derived, or found unreadable, while this request waited its turn.
        if let Some(answer) = self.cached(verified) {
            return Ok(Some((answer, Outcome::Hit)));
        }
        if !self.unreadable.offered_for(dist) {
            return Ok(None);
        }
        let wheel_key = BlobKey::for_file(dist, false);
        if let Some(fill) = self.fills.running_fill(&wheel_key) {
            let _ = fill.finished().await;
        }
        let expected = dist.core_metadata.as_ref().and_then(|m| m.sha256());
        if let Some(bytes) = self
            .metadata_of_cached_wheel(project, dist, &wheel_key)
            .await?
        {
            if expected.is_none_or(|digest| digest == hex::encode(Sha256::digest(&bytes))) {
                return Ok(Some(self.keep(verified, bytes, Outcome::Hit)));
            }
            tracing::warn!(
                file = %dist.filename,
                "the wheel's METADATA is not what the upstream's page says; asking the upstream"
            );
        }
        if dist.core_metadata.is_some() {
            // The upstream serves it: fetched like any file.
            return Ok(None);
        }
        if verified_key.is_some()
            && let Some(answer) = self.cached(key)
        {
            return Ok(Some((answer, Outcome::Hit)));
        }
        let Some(upstream) = &self.upstream else {
            return Err(FileError::OfflineMiss(format!(
                "{}.metadata",
                dist.filename
            )));
        };
        // A wheel no longer than the first ranged read is read whole either way: into
        // memory, and saved after the burst. A client that downloads the wheel next
        // would read it whole anyway: it is downloaded into the cache instead, once and
        // verified, and the client's download of it is a hit.
        let whole_for_client =
            downloads_after_metadata && dist.size.is_some_and(|size| size <= WHOLE_FOR_DOWNLOADERS);
        if let Some(size) = dist.size.filter(|&size| size <= wheel::FIRST_TAIL_READ) {
            match self.small_wheel(upstream, dist, &wheel_key, size).await {
                Ok(bytes) => return Ok(Some(self.keep(verified, bytes, Outcome::Miss))),
                Err(e) => tracing::info!(
                    file = %dist.filename,
                    reason = %e,
                    "cannot read the small wheel whole into memory; downloading it"
                ),
            }
        } else if !whole_for_client {
            match by_ranges(upstream, dist).await {
                Ok(bytes) => return Ok(Some(self.keep(key, bytes, Outcome::Miss))),
                Err(e) if is_the_wheels_own(&e) => return Err(self.cannot_read(project, dist, e)),
                Err(e) => tracing::info!(
                    file = %dist.filename,
                    reason = %e,
                    "cannot read the wheel's metadata by ranges; downloading the wheel"
                ),
            }
        }
        let request = FillRequest {
            key: wheel_key.clone(),
            url: dist.url.clone(),
            expected_size: dist.size,
        };
        let joined = self
            .fills
            .start_or_join(&self.store, upstream, request)
            .map_err(FileError::Disk)?;
        let bytes = match joined {
            // Read once verified, without waiting for the file's sync and publication.
            Joined::Fill(fill) => {
                let file = fill.verified_file().await.map_err(FileError::Download)?;
                Some(self.metadata_of_file(project, dist, file).await?)
            }
            Joined::Cached => {
                self.metadata_of_cached_wheel(project, dist, &wheel_key)
                    .await?
            }
        };
        match bytes {
            Some(bytes) => Ok(Some(self.keep(verified, bytes, Outcome::Miss))),
            None => Err(gone(&wheel_key)),
        }
    }

    /// The `METADATA` of a wheel of `size` bytes, at most the first ranged read, read
    /// whole into memory and verified; the wheel is saved with the other saves.
    async fn small_wheel(
        &self,
        upstream: &Upstream,
        dist: &DistFile,
        wheel_key: &BlobKey,
        size: u64,
    ) -> Result<Bytes, String> {
        let bytes = upstream
            .read_small_file(&dist.url, size)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(expected) = wheel_key.expected_sha256() {
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != expected {
                let expected = expected.to_string();
                return Err(FillError::HashMismatch { expected, actual }.to_string());
            }
        }
        let metadata =
            wheel::core_metadata_of_bytes(&dist.filename, &bytes).map_err(|e| e.to_string())?;
        self.saves.save_blob(&self.store, wheel_key, &bytes);
        Ok(metadata)
    }

    /// The `METADATA` of the cached wheel, or `None` when the wheel is not cached.
    async fn metadata_of_cached_wheel(
        &self,
        project: &ProjectName,
        dist: &DistFile,
        wheel_key: &BlobKey,
    ) -> Result<Option<Bytes>, FileError> {
        match self.store.open_blob(wheel_key) {
            Some(file) => self
                .metadata_of_file(project, dist, Arc::new(file))
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// The `METADATA` of a whole, verified wheel, read on the blocking pool.
    async fn metadata_of_file(
        &self,
        project: &ProjectName,
        dist: &DistFile,
        file: Arc<std::fs::File>,
    ) -> Result<Bytes, FileError> {
        let filename = dist.filename.clone();
        let read =
            tokio::task::spawn_blocking(move || wheel::core_metadata_of_file(&filename, &file))
                .await
                .map_err(|e| FileError::Disk(std::io::Error::other(e)))?;
        read.map_err(|e| match e {
            WheelError::Io(_) => unreadable(dist, e),
            // A verified wheel: whatever is wrong is the wheel's own.
            e => self.cannot_read(project, dist, e),
        })
    }

    /// Records that `dist`'s `METADATA` cannot be read, so its project's page (made
    /// again) no longer offers it; the error for the client that asked.
    fn cannot_read(&self, project: &ProjectName, dist: &DistFile, error: WheelError) -> FileError {
        if self.unreadable.insert(BlobKey::for_file(dist, false)) {
            tracing::warn!(
                file = %dist.filename,
                reason = %error,
                "the wheel's METADATA cannot be read: its page no longer offers it, so clients download the wheel"
            );
            self.pages.remake(project);
        }
        unreadable(dist, error)
    }

    /// Caches derived metadata and answers with it, without waiting for the write.
    fn keep(&self, key: &BlobKey, bytes: Bytes, outcome: Outcome) -> (FileAnswer, Outcome) {
        self.saves.save_blob(&self.store, key, &bytes);
        (in_memory(key, bytes), outcome)
    }
}

/// The wheel's `METADATA`, read through ranges of the upstream's file.
async fn by_ranges(upstream: &Upstream, dist: &DistFile) -> Result<Bytes, WheelError> {
    let length = match dist.size {
        Some(size) => size,
        None => upstream
            .file_length(&dist.url)
            .await
            .map_err(std::io::Error::other)?
            .ok_or_else(|| std::io::Error::other("the upstream gives no length"))?,
    };
    let read_at = |offset: u64, len: u64| upstream.read_range(&dist.url, offset, len);
    wheel::core_metadata(&dist.filename, length, read_at).await
}

fn unreadable(dist: &DistFile, error: WheelError) -> FileError {
    FileError::NoMetadata(format!(
        "cannot read the core metadata of {}: {error}",
        dist.filename
    ))
}
