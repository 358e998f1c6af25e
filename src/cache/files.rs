//! The decision for a file request: the cached file, a download to follow, or why
//! there is neither.
//!
//! A distribution is named by its own sha256 in the URL, so a cached one is answered
//! without reading its project's page. Anything else needs the page: the URL that is
//! downloaded always comes from the upstream's page, never from the request.

use std::sync::Arc;

use super::fills::{FillRequest, Joined};
use super::{Cache, Fill, FillError, Outcome, PageError};
use crate::index::ProjectName;
use crate::store::BlobKey;

/// The suffix of a distribution's core metadata file (PEP 658).
const METADATA_SUFFIX: &str = ".metadata";

/// A file a client asked for, as its URL names it.
pub struct FileRequest<'a> {
    pub project: &'a ProjectName,
    pub key: &'a BlobKey,
    /// The distribution's file name, without `.metadata`.
    pub dist_filename: &'a str,
    /// The distribution's core metadata rather than the distribution itself.
    pub metadata: bool,
}

/// How much of a download the client can use as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// From the first byte, as it arrives.
    Stream,
    /// Only once the whole file is cached (a byte range may not have arrived yet).
    Whole,
}

/// What to send.
pub enum FileAnswer {
    /// The whole file, from the cache.
    Cached(CachedFile),
    /// A download under way: its bytes as they arrive, `length` when it is known.
    Filling {
        fill: Arc<Fill>,
        length: Option<u64>,
    },
}

/// A cached file, open for reading; its bytes never change.
pub struct CachedFile {
    pub file: std::fs::File,
    pub key: BlobKey,
}

/// Why a file cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    NotListed(String),
    #[error(transparent)]
    Page(PageError),
    #[error("{0} is not cached and devcache is offline")]
    OfflineMiss(String),
    #[error("devcache cannot write its cache: {0}")]
    Disk(std::io::Error),
    #[error(transparent)]
    Download(FillError),
}

impl Cache {
    /// Answers a file request: from the cache, by joining a download under way, or
    /// by starting one.
    pub async fn file(
        &self,
        request: FileRequest<'_>,
        delivery: Delivery,
    ) -> Result<(FileAnswer, Outcome), FileError> {
        let FileRequest {
            project,
            key,
            dist_filename,
            metadata,
        } = request;
        if !metadata && let Some(answer) = self.cached(key) {
            return Ok((answer, Outcome::Hit));
        }
        // The whole page: a file the cache lacks is named as such, not as unknown.
        let (page, _) = self.pages.get(project).await.map_err(FileError::Page)?;
        let Some(dist) = page.stored.page.file(dist_filename) else {
            return Err(FileError::NotListed(format!(
                "{project} has no file {dist_filename}"
            )));
        };
        if BlobKey::for_file(dist, false) != *key || (metadata && dist.core_metadata.is_none()) {
            let filename = shown_filename(dist_filename, metadata);
            return Err(FileError::NotListed(format!(
                "{project} has no file {filename} with that hash"
            )));
        }
        let key = BlobKey::for_file(dist, metadata);
        if metadata && let Some(answer) = self.cached(&key) {
            return Ok((answer, Outcome::Hit));
        }
        let Some(upstream) = &self.upstream else {
            return Err(FileError::OfflineMiss(shown_filename(
                dist_filename,
                metadata,
            )));
        };
        let fill_request = FillRequest {
            key: key.clone(),
            url: if metadata {
                format!("{}{METADATA_SUFFIX}", dist.url)
            } else {
                dist.url.clone()
            },
            expected_size: if metadata { None } else { dist.size },
        };
        let fill = match self
            .fills
            .start_or_join(&self.store, upstream, fill_request)
            .map_err(FileError::Disk)?
        {
            Joined::Fill(fill) => fill,
            Joined::Cached => {
                let answer = self.cached(&key).ok_or_else(|| gone(&key))?;
                return Ok((answer, Outcome::Hit));
            }
        };
        match delivery {
            Delivery::Whole => {
                fill.finished().await.map_err(FileError::Download)?;
                let answer = self.cached(&key).ok_or_else(|| gone(&key))?;
                Ok((answer, Outcome::Miss))
            }
            Delivery::Stream => {
                let progress = fill.started().await.map_err(FileError::Download)?;
                let answer = FileAnswer::Filling {
                    fill,
                    length: progress.length,
                };
                Ok((answer, Outcome::Miss))
            }
        }
    }

    fn cached(&self, key: &BlobKey) -> Option<FileAnswer> {
        // Opened on the async worker: an open in the local data directory takes
        // microseconds, less than a trip to the blocking pool, which every cold request
        // would pay too (it starts by looking here).
        let file = self.store.open_blob(key)?;
        Some(FileAnswer::Cached(CachedFile {
            file,
            key: key.clone(),
        }))
    }
}

/// A file that was published and is gone again (removed by hand meanwhile).
fn gone(key: &BlobKey) -> FileError {
    FileError::NotListed(format!("no such file {}", key.as_str()))
}

fn shown_filename(dist_filename: &str, metadata: bool) -> String {
    if metadata {
        format!("{dist_filename}{METADATA_SUFFIX}")
    } else {
        dist_filename.to_string()
    }
}
