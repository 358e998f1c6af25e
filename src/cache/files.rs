//! The decision for a file request: the cached file, a download to follow, or why
//! there is neither.
//!
//! A distribution is named by its own sha256 in the URL, so a cached one is answered
//! without reading its project's page. Anything else needs the page: the URL that is
//! downloaded always comes from the upstream's page, never from the request.
//!
//! Only a full `GET` starts a download into the cache. Installers that only consider
//! a wheel (uv, reading its metadata from the zip's tail) send `HEAD` and `Range`
//! requests: a `HEAD` is answered from the page's size (or the upstream's `HEAD`), and
//! a range of a file not being downloaded is passed through from the upstream.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::CONTENT_RANGE;

use super::fills::{FillRequest, Joined};
use super::{Cache, Fill, FillError, Outcome, PageError};
use crate::index::ProjectName;
use crate::metrics::metrics;
use crate::store::BlobKey;
use crate::store::mapped::FileBytes;
use crate::upstream::{Upstream, UpstreamError};

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
    /// The pin set to record the file in (`warm` asks for it), so eviction keeps it.
    pub pin: Option<&'a str>,
    /// The client downloads the wheels whose metadata it reads, as pip does unless it
    /// backtracks past one or only resolves (`--dry-run`, `--report`, pip-tools).
    pub downloads_after_metadata: bool,
}

/// What the client asked of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want<'a> {
    /// All of it (`GET`).
    Body,
    /// Only what is known of it (`HEAD`).
    Head,
    /// A byte range, the `Range` header's value.
    Range(&'a str),
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
    /// A file not cached, described without its bytes.
    Described { length: Option<u64> },
    /// A byte range of a file not cached, from the upstream.
    Partial(PartialBody),
    /// The upstream says the range is not in the file.
    Unsatisfiable { content_range: Option<String> },
}

/// A byte range passed through from the upstream, as it arrives. The body stops at
/// `length` bytes whatever the upstream sends; a short one breaks the connection.
pub struct PartialBody {
    pub content_range: String,
    pub length: u64,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// A cached file's bytes (they never change) and when it was cached.
pub struct CachedFile {
    pub bytes: FileBytes,
    pub modified: Option<std::time::SystemTime>,
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
    #[error("{0}")]
    NoMetadata(String),
}

impl Cache {
    /// Answers a file request: from the cache, by joining a download under way, or
    /// by starting one.
    pub async fn file(
        &self,
        request: FileRequest<'_>,
        want: Want<'_>,
    ) -> Result<(FileAnswer, Outcome), FileError> {
        let FileRequest {
            project,
            key,
            dist_filename,
            metadata,
            pin,
            downloads_after_metadata,
        } = request;
        if !metadata {
            self.pin(pin, key);
        }
        if !metadata && let Some(answer) = self.cached(key) {
            return Ok((answer, Outcome::Hit));
        }
        // The whole page: a file the cache lacks is named as such, not as unknown.
        let (page, _) = self.pages.get(project).await.map_err(FileError::Page)?;
        let Some(dist) = page.file(dist_filename) else {
            return Err(FileError::NotListed(format!(
                "{project} has no file {dist_filename}"
            )));
        };
        if BlobKey::for_file(dist, false) != *key {
            let filename = shown_filename(dist_filename, metadata);
            return Err(FileError::NotListed(format!(
                "{project} has no file {filename} with that hash"
            )));
        }
        let key = BlobKey::for_file(dist, metadata);
        if metadata {
            self.pin(pin, &key);
            if let Some(answer) = self
                .core_metadata(project, dist, &key, downloads_after_metadata)
                .await?
            {
                return Ok(answer);
            }
            if dist.core_metadata.is_none() {
                return Err(FileError::NotListed(format!(
                    "{project} has no metadata for {dist_filename}"
                )));
            }
        }
        let Some(upstream) = &self.upstream else {
            return Err(FileError::OfflineMiss(shown_filename(
                dist_filename,
                metadata,
            )));
        };
        let url = if metadata {
            format!("{}{METADATA_SUFFIX}", dist.url)
        } else {
            dist.url.clone()
        };
        let expected_size = if metadata { None } else { dist.size };
        let running = self.fills.running_fill(&key);
        match (want, running) {
            (Want::Head, Some(fill)) => {
                let progress = fill.started().await.map_err(FileError::Download)?;
                let answer = FileAnswer::Described {
                    length: progress.length,
                };
                return Ok((answer, Outcome::Miss));
            }
            (Want::Head, None) => {
                let length = match expected_size {
                    Some(size) => Some(size),
                    None => match upstream.file_length(&url).await {
                        Ok(length) => length,
                        Err(UpstreamError::NotFound) => {
                            return Err(upstream_error(UpstreamError::NotFound));
                        }
                        // An upstream that does not answer HEAD: described without a
                        // length, the client reads the file whole.
                        Err(e) => {
                            tracing::debug!(url, error = %e, "the upstream's HEAD failed");
                            None
                        }
                    },
                };
                return Ok((FileAnswer::Described { length }, Outcome::Miss));
            }
            (Want::Range(range), None) if !range.contains(',') => {
                if let Some(answer) = passed_through(upstream, &url, range, expected_size).await? {
                    return Ok((answer, Outcome::Miss));
                }
                // The upstream sends whole files only: download it, answer from the cache.
            }
            _ => {}
        }
        let fill_request = FillRequest {
            key: key.clone(),
            url,
            expected_size,
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
        match want {
            // A range may ask for bytes that have not arrived yet.
            Want::Range(_) | Want::Head => {
                fill.finished().await.map_err(FileError::Download)?;
                let answer = self.cached(&key).ok_or_else(|| gone(&key))?;
                Ok((answer, Outcome::Miss))
            }
            Want::Body => {
                let progress = fill.started().await.map_err(FileError::Download)?;
                let answer = FileAnswer::Filling {
                    fill,
                    length: progress.length,
                };
                Ok((answer, Outcome::Miss))
            }
        }
    }

    pub(super) fn cached(&self, key: &BlobKey) -> Option<FileAnswer> {
        // Opened and mapped on the server's thread: both take microseconds in the local
        // data directory, less than a trip to the blocking pool, which every cold request
        // would pay too (it starts by looking here).
        let Some((bytes, modified)) = self.store.blob_bytes(key) else {
            // Answered from memory while it is saved.
            return self.saves.blob(key).map(|bytes| in_memory(key, bytes));
        };
        Some(FileAnswer::Cached(CachedFile {
            bytes,
            modified,
            key: key.clone(),
        }))
    }
}

impl Cache {
    /// Records `key` in the pin set `set`, if one is asked for. A pin that cannot be
    /// written leaves the file evictable, which is logged, not a failed request.
    fn pin(&self, set: Option<&str>, key: &BlobKey) {
        if let Some(set) = set
            && let Err(e) = self.store.pin(set, [key])
        {
            tracing::warn!("{e:#}");
        }
    }
}

/// A byte range of `url` from the upstream, or `None` when it answers with the whole
/// file instead.
async fn passed_through(
    upstream: &Upstream,
    url: &str,
    range: &str,
    size: Option<u64>,
) -> Result<Option<FileAnswer>, FileError> {
    let response = upstream
        .fetch_range(url, range)
        .await
        .map_err(upstream_error)?;
    let content_range = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match response.status() {
        StatusCode::PARTIAL_CONTENT => {}
        StatusCode::RANGE_NOT_SATISFIABLE => {
            return Ok(Some(FileAnswer::Unsatisfiable { content_range }));
        }
        _ => return Ok(None),
    }
    let Some((content_range, span)) = content_range
        .as_deref()
        .and_then(|value| Some((value.to_string(), Span::of(value)?)))
    else {
        return Err(bad_range(url, "a 206 without a valid Content-Range"));
    };
    if !span.answers(range, size) {
        return Err(bad_range(
            url,
            &format!("{content_range}, which is not the range asked ({range}) of the file's size"),
        ));
    }
    let length = span.len();
    if response.content_length().is_some_and(|n| n != length) {
        return Err(bad_range(
            url,
            "a Content-Length that is not its Content-Range's",
        ));
    }
    let body = response
        .bytes_stream()
        .map_err(std::io::Error::other)
        .scan(length, |left, chunk| {
            let chunk = match chunk {
                Ok(_) if *left == 0 => return futures::future::ready(None),
                Ok(mut chunk) => {
                    metrics().upstream_bytes(chunk.len() as u64);
                    chunk.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= chunk.len() as u64;
                    Ok(chunk)
                }
                Err(e) => Err(e),
            };
            futures::future::ready(Some(chunk))
        })
        .boxed();
    Ok(Some(FileAnswer::Partial(PartialBody {
        content_range,
        length,
        body,
    })))
}

/// What a `Content-Range: bytes FIRST-LAST/TOTAL` names.
#[derive(Debug, PartialEq, Eq)]
struct Span {
    first: u64,
    last: u64,
    /// `None` for `*`, a length the upstream does not say.
    total: Option<u64>,
}

impl Span {
    fn of(content_range: &str) -> Option<Self> {
        let (span, total) = content_range
            .trim()
            .strip_prefix("bytes ")?
            .split_once('/')?;
        let (first, last) = span.split_once('-')?;
        let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
        let total = match total.trim() {
            "*" => None,
            total => Some(total.parse::<u64>().ok()?),
        };
        (first <= last && total.is_none_or(|total| last < total)).then_some(Self {
            first,
            last,
            total,
        })
    }

    fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Whether this is an answer to `asked` (one `bytes=` range) of a file of `size`
    /// bytes, when known: it starts where asked and ends no later (a server may send
    /// less than asked, never other bytes), and its total is the file's size.
    fn answers(&self, asked: &str, size: Option<u64>) -> bool {
        let total = self.total.or(size);
        if size.is_some() && self.total.is_some() && self.total != size {
            return false;
        }
        let Some((first, last)) = asked
            .trim()
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
        else {
            return false;
        };
        let (first, last) = (first.trim(), last.trim());
        match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(first), Ok(last)) => self.first == first && self.last <= last,
            (Ok(first), Err(_)) if last.is_empty() => self.first == first,
            // The last `n` bytes: they end the file.
            (Err(_), Ok(n)) if first.is_empty() => {
                self.len() <= n && total.is_none_or(|total| self.last + 1 == total)
            }
            _ => false,
        }
    }
}

fn bad_range(url: &str, what: &str) -> FileError {
    FileError::Download(FillError::Upstream(UpstreamError::BadPage(format!(
        "{url}: the upstream answered a range request with {what}"
    ))))
}

pub(super) fn upstream_error(error: UpstreamError) -> FileError {
    FileError::Download(FillError::Upstream(error))
}

/// A file that was published and is gone again (removed by hand meanwhile).
pub(super) fn gone(key: &BlobKey) -> FileError {
    FileError::NotListed(format!("no such file {}", key.as_str()))
}

fn shown_filename(dist_filename: &str, metadata: bool) -> String {
    if metadata {
        format!("{dist_filename}{METADATA_SUFFIX}")
    } else {
        dist_filename.to_string()
    }
}

/// A file or derived metadata answered from memory while it is saved, as it will be
/// cached.
pub(super) fn in_memory(key: &BlobKey, bytes: Bytes) -> FileAnswer {
    FileAnswer::Cached(CachedFile {
        bytes: FileBytes::Whole(bytes),
        modified: Some(std::time::SystemTime::now()),
        key: key.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::Span;

    #[test]
    fn content_ranges_name_their_span() {
        let span = |first, last, total| Some(Span { first, last, total });
        assert_eq!(Span::of("bytes 0-9/100"), span(0, 9, Some(100)));
        assert_eq!(Span::of("bytes 90-99/100").map(|s| s.len()), Some(10));
        assert_eq!(Span::of("bytes 5-5/*"), span(5, 5, None));
        for bad in [
            "bytes 90-100/100",
            "bytes 9-3/100",
            "bytes */100",
            "items 0-9/100",
            "bytes 0-9/ten",
        ] {
            assert_eq!(Span::of(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_upstreams_range_must_be_the_one_asked() {
        let answers = |content_range: &str, asked: &str, size: Option<u64>| {
            Span::of(content_range).unwrap().answers(asked, size)
        };
        assert!(answers(
            "bytes 1000-1999/5000",
            "bytes=1000-1999",
            Some(5000)
        ));
        assert!(answers(
            "bytes 1000-1499/5000",
            "bytes=1000-1999",
            Some(5000)
        ));
        assert!(answers("bytes 1000-4999/5000", "bytes=1000-", Some(5000)));
        assert!(answers("bytes 4500-4999/5000", "bytes=-500", Some(5000)));
        assert!(answers("bytes 4500-4999/5000", "bytes=-500", None));
        assert!(answers("bytes 1000-1999/*", "bytes=1000-1999", Some(5000)));
        // Shifted, longer, of another size, or not the end of the file.
        assert!(!answers(
            "bytes 900-1899/5000",
            "bytes=1000-1999",
            Some(5000)
        ));
        assert!(!answers(
            "bytes 1000-2999/5000",
            "bytes=1000-1999",
            Some(5000)
        ));
        assert!(!answers(
            "bytes 1000-1999/5002",
            "bytes=1000-1999",
            Some(5000)
        ));
        assert!(!answers("bytes 4000-4499/5000", "bytes=-500", Some(5000)));
        assert!(!answers("bytes 0-9/5000", "bytes=-500", Some(5000)));
        assert!(!answers("bytes 0-9/5000", "items=0-9", Some(5000)));
    }
}
