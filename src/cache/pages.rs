//! Index pages as the server serves them: from memory or disk while fresh,
//! revalidated with the upstream when stale, and served stale when the upstream
//! cannot answer. Concurrent requests for one stale page share one upstream fetch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::Outcome;
use super::metadata::Unreadable;
use super::saves::Saves;
use crate::api::FILES_PATH;
use crate::index::wheel;
use crate::index::{DistFile, ProjectName, ProjectPage, html, json};
use crate::store::pages::{StoredPage, now};
use crate::store::{BlobKey, Store};
use crate::upstream::{PageAnswer, RETRY_AFTER, Upstream, UpstreamError, Validators};

/// A page ready to serve, rendered once in each format: JSON at once, HTML on its first
/// demand (pip since 22.2 and uv ask for JSON, so most pages are never shown as HTML).
pub struct ReadyPage {
    pub stored: StoredPage,
    html: OnceLock<Rendered>,
    json: Rendered,
    /// A digest of the rendered content, from which each representation's strong
    /// validator is made.
    pub digest: String,
    /// The positions of `stored.page.files`, sorted by file name: a file request finds
    /// its file by binary search, however many links the page has, and the index costs
    /// four bytes a file rather than a copy of every name.
    by_filename: Vec<u32>,
    /// This page trimmed to the files the cache holds, how many files the cache held
    /// when it was trimmed (a new file makes it out of date) and when.
    trimmed: Mutex<Option<(u64, Instant, Arc<ReadyPage>)>>,
    /// The wheels whose metadata is not offered, for the HTML form made on demand.
    unreadable: Unreadable,
}

/// The two forms of a page (PEP 691's JSON, PEP 503's HTML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Json,
    Html,
}

/// One form of a page: its bytes, and the same gzipped, compressed once on first
/// demand rather than per request.
struct Rendered {
    body: Bytes,
    gzipped: OnceLock<Bytes>,
}

impl Rendered {
    fn new(body: Vec<u8>) -> Self {
        Self {
            body: Bytes::from(body),
            gzipped: OnceLock::new(),
        }
    }

    fn gzipped(&self) -> &Bytes {
        self.gzipped.get_or_init(|| gzip(&self.body))
    }
}

thread_local! {
    /// Each thread's deflate state, reset between pages: a new one zeroes and faults in
    /// a few hundred KiB, which cost more than compressing a page of a few links. The
    /// fastest level: a page is mostly hex digests, which no level shrinks, and level 6
    /// made pages 5% smaller for 2.5% more of a cold resolution's CPU.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
}

/// `body` as a gzip member (RFC 1952): a fixed header, the raw deflate stream, then the
/// CRC-32 and length of the body.
fn gzip(body: &[u8]) -> Bytes {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut out = Vec::with_capacity(HEADER.len() + 4096.max(body.len() / 4));
    out.extend_from_slice(&HEADER);
    DEFLATE.with_borrow_mut(|deflate| {
        deflate.reset();
        let mut input = body;
        loop {
            let before = deflate.total_in();
            let status = deflate
                .compress_vec(input, &mut out, flate2::FlushCompress::Finish)
                .expect("deflating into memory cannot fail");
            input = &input[(deflate.total_in() - before) as usize..];
            if status == flate2::Status::StreamEnd {
                break;
            }
            // The output is full: room for as much again.
            out.reserve(4096.max(out.len()));
        }
    });
    let mut crc = flate2::Crc::new();
    crc.update(body);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    // Kept as long as the page: without the spare room the buffer grew by.
    out.shrink_to_fit();
    Bytes::from(out)
}

/// Why there is no page to serve.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PageError {
    #[error("no such project on the upstream index")]
    NotFound,
    #[error("devcache is offline and has no cached page for this project")]
    OfflineMiss,
    #[error("the upstream index cannot be reached and no page is cached: {0}")]
    Unavailable(UpstreamError),
}

/// How long a trimmed page is served before it is trimmed again. The server counts the
/// files it stores itself; this bounds how long one that `devcache import` or `warm
/// --data-dir` wrote beside it (another process) stays off the page.
const TRIMMED_KEPT: Duration = Duration::from_secs(5);

/// Pages of at most this many files are rendered, gzipped or trimmed on the server's
/// thread (a millisecond or less); longer ones on the blocking pool, so that a page of
/// 100,000 links (most of a second) holds up no other request.
const RENDERED_IN_PLACE: usize = 500;

/// Pages saved in at most this many bytes (about 500 files) are read back from disk
/// and made ready on the server's thread; longer ones on the blocking pool.
const READ_IN_PLACE: u64 = 256 * 1024;

/// Runs `work` on the server's thread when it is short (less than the trip to the
/// blocking pool), else on the blocking pool, so that it holds up no other request. An
/// `Err` is the pool's task failing.
async fn in_place_unless_long<T: Send + 'static>(
    long: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if long {
        tokio::task::spawn_blocking(work).await
    } else {
        Ok(work())
    }
}

type SharedFetch = Shared<BoxFuture<'static, Result<(Arc<ReadyPage>, Outcome), PageError>>>;

#[derive(Clone)]
pub struct Pages {
    store: Store,
    upstream: Option<Upstream>,
    ttl: Duration,
    saves: Saves,
    unreadable: Unreadable,
    memo: Arc<Mutex<Memo>>,
    fetching: Arc<Mutex<HashMap<ProjectName, SharedFetch>>>,
}

impl Pages {
    pub(super) fn new(
        store: Store,
        upstream: Option<Upstream>,
        ttl: Duration,
        saves: Saves,
        unreadable: Unreadable,
    ) -> Self {
        Self {
            store,
            upstream,
            ttl,
            saves,
            unreadable,
            memo: Arc::new(Mutex::new(Memo::default())),
            fetching: Arc::default(),
        }
    }

    /// The page to serve for `name`, and how it was obtained.
    pub async fn get(&self, name: &ProjectName) -> Result<(Arc<ReadyPage>, Outcome), PageError> {
        let cached = self.cached(name).await;
        let Some(upstream) = &self.upstream else {
            return cached
                .map(|page| (page, Outcome::Hit))
                .ok_or(PageError::OfflineMiss);
        };
        if let Some(page) = &cached
            && page.stored.age() < self.ttl
        {
            return Ok((page.clone(), Outcome::Hit));
        }
        if let Some(page) = &cached
            && upstream.is_resting()
        {
            tracing::warn!(project = %name, age_secs = page.stored.age().as_secs(), "serving a stale page: the upstream ran out of time less than {}s ago", RETRY_AFTER.as_secs());
            return Ok((page.clone(), Outcome::Stale));
        }
        let fetch = {
            let mut fetching = self.fetching.lock().expect("fetching lock");
            fetching
                .entry(name.clone())
                .or_insert_with(|| {
                    let this = self.clone();
                    let (name, upstream) = (name.clone(), upstream.clone());
                    // Spawned, so a client that hangs up does not cancel the others' fetch.
                    let task = tokio::spawn(async move {
                        let result = this.refresh(&name, &upstream, cached).await;
                        this.fetching.lock().expect("fetching lock").remove(&name);
                        result
                    });
                    async move {
                        task.await.unwrap_or_else(|e| {
                            Err(PageError::Unavailable(UpstreamError::BadPage(
                                e.to_string(),
                            )))
                        })
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        fetch.await
    }

    async fn refresh(
        &self,
        name: &ProjectName,
        upstream: &Upstream,
        cached: Option<Arc<ReadyPage>>,
    ) -> Result<(Arc<ReadyPage>, Outcome), PageError> {
        let validators = cached.as_ref().map(|page| Validators {
            etag: page.stored.etag.as_deref(),
            last_modified: page.stored.last_modified.as_deref(),
        });
        let (stored, outcome) = match (upstream.fetch_page(name, validators).await, cached) {
            (Ok(PageAnswer::Changed(fetched)), _) => {
                let stored = StoredPage {
                    page: fetched.page,
                    fetched_at: now(),
                    etag: fetched.etag,
                    last_modified: fetched.last_modified,
                };
                (stored, Outcome::Miss)
            }
            (Ok(PageAnswer::NotModified), Some(page)) => {
                let mut stored = page.stored.clone();
                stored.fetched_at = now();
                (stored, Outcome::Revalidated)
            }
            (Ok(PageAnswer::NotModified), None) => {
                return Err(PageError::Unavailable(UpstreamError::BadPage(
                    "304 Not Modified to an unconditional request".into(),
                )));
            }
            (Err(UpstreamError::NotFound), _) => {
                self.memo.lock().expect("memo lock").remove(name);
                return Err(PageError::NotFound);
            }
            (Err(e), Some(page)) => {
                tracing::warn!(project = %name, error = %e, age_secs = page.stored.age().as_secs(), "serving a stale page");
                return Ok((page, Outcome::Stale));
            }
            (Err(e), None) => return Err(PageError::Unavailable(e)),
        };
        // Made ready without a copy: a page of many thousands of links takes a while
        // (on the blocking pool), and its copies are what memory peaks on; a short one
        // takes less than the trip there. It is saved after it is answered (see `saves`).
        let long = stored.page.files.len() > RENDERED_IN_PLACE;
        let unreadable = self.unreadable.clone();
        let ready = in_place_unless_long(long, move || ready_page(stored, unreadable))
            .await
            .map_err(|e| PageError::Unavailable(UpstreamError::BadPage(e.to_string())))?;
        let ready = Arc::new(ready);
        let (store, saved) = (self.store.clone(), ready.clone());
        let weight = ready.json.body.len();
        self.saves
            .spawn(format!("the page of {name}"), weight, move || {
                store.save_page(&saved.stored)
            });
        self.memo
            .lock()
            .expect("memo lock")
            .insert(name.clone(), ready.clone());
        Ok((ready, outcome))
    }

    /// The page as clients should see it after `outcome`: whole while the upstream
    /// can be asked for what the cache lacks, else only the files the cache holds, so
    /// that a resolver picks a version it can install.
    pub async fn servable(&self, page: Arc<ReadyPage>, outcome: Outcome) -> Arc<ReadyPage> {
        let reason = match (&self.upstream, outcome) {
            (None, _) => "devcache is offline",
            (Some(_), Outcome::Stale) => "the upstream cannot be reached",
            (Some(upstream), _) if !upstream.is_reachable() => "the upstream cannot be reached",
            (Some(_), _) => return page,
        };
        let (files_cached, _) = self.store.file_totals();
        if let Some((counted, at, ready)) = &*page.trimmed.lock().expect("trimmed lock")
            && *counted == files_cached
            && at.elapsed() < TRIMMED_KEPT
        {
            return ready.clone();
        }
        let long = page.stored.page.files.len() > RENDERED_IN_PLACE;
        let (store, whole) = (self.store.clone(), page.clone());
        let ready = match in_place_unless_long(long, move || trimmed(&store, &whole, reason)).await
        {
            Ok(ready) => ready,
            Err(e) => {
                tracing::warn!(project = %page.stored.page.name, error = %e, "cannot trim the page; serving it whole");
                return page;
            }
        };
        *page.trimmed.lock().expect("trimmed lock") =
            Some((files_cached, Instant::now(), ready.clone()));
        ready
    }

    /// Makes `name`'s page in memory again, for a change in what it offers (a wheel
    /// whose metadata cannot be read); one on disk only is made when it is read.
    pub(super) fn remake(&self, name: &ProjectName) {
        let Some(page) = self.memo.lock().expect("memo lock").get(name) else {
            return;
        };
        let (this, name) = (self.clone(), name.clone());
        tokio::spawn(async move {
            let long = page.stored.page.files.len() > RENDERED_IN_PLACE;
            let (stored, unreadable) = (page.stored.clone(), this.unreadable.clone());
            let Ok(remade) =
                in_place_unless_long(long, move || ready_page(stored, unreadable)).await
            else {
                return;
            };
            let mut memo = this.memo.lock().expect("memo lock");
            // A page fetched meanwhile is newer, and made with what is known now.
            if memo
                .get(&name)
                .is_some_and(|current| Arc::ptr_eq(&current, &page))
            {
                memo.insert(name, Arc::new(remade));
            }
        });
    }

    /// The page in memory, else on disk (then kept in memory).
    async fn cached(&self, name: &ProjectName) -> Option<Arc<ReadyPage>> {
        if let Some(page) = self.memo.lock().expect("memo lock").get(name) {
            return Some(page);
        }
        let long = self.store.page_len(name)? > READ_IN_PLACE;
        let (store, owned, unreadable) =
            (self.store.clone(), name.clone(), self.unreadable.clone());
        let ready = match in_place_unless_long(long, move || {
            store
                .load_page(&owned)
                .map(|stored| ready_page(stored, unreadable))
        })
        .await
        {
            Ok(ready) => ready?,
            Err(e) => {
                tracing::warn!(project = %name, error = %e, "cannot read the cached page");
                return None;
            }
        };
        // A page fetched while this one was read from disk is the newer: it stays.
        let mut memo = self.memo.lock().expect("memo lock");
        if let Some(newer) = memo.get(name) {
            return Some(newer);
        }
        let ready = Arc::new(ready);
        memo.insert(name.clone(), ready.clone());
        Some(ready)
    }
}

/// `page` listing only the files the cache holds, for a client that cannot be sent to
/// the upstream for the others (`reason` says why, in the log).
fn trimmed(store: &Store, page: &ReadyPage, reason: &str) -> Arc<ReadyPage> {
    let listed = &page.stored.page;
    let files: Vec<DistFile> = listed
        .files
        .iter()
        .filter(|file| store.has_blob(&BlobKey::for_file(file, false)))
        .map(|file| {
            let mut file = file.clone();
            // Without its metadata cached, offering it would send clients to a 404;
            // a cached wheel's is read from the wheel.
            if file.core_metadata.is_some()
                && !wheel::is_wheel(&file.filename)
                && !store.has_blob(&BlobKey::for_file(&file, true))
            {
                file.core_metadata = None;
            }
            file
        })
        .collect();
    if files.len() < listed.files.len() {
        tracing::info!(
            project = %listed.name,
            listed = listed.files.len(),
            cached = files.len(),
            "{reason}: the page lists only the files the cache holds"
        );
    }
    let stored = StoredPage {
        page: ProjectPage::new(listed.name.clone(), files, Vec::new()),
        ..page.stored.clone()
    };
    Arc::new(ready_page(stored, page.unreadable.clone()))
}

/// Where a client fetches a file from devcache: an absolute path, so the link works
/// under `/root/pypi/+simple/` and `/simple/` alike, and behind any host name.
pub fn file_link(name: &ProjectName, file: &DistFile) -> String {
    let filename = percent_encoding::utf8_percent_encode(&file.filename, SEGMENT);
    format!(
        "{FILES_PATH}{name}/{}/{filename}",
        BlobKey::for_file(file, false).as_str()
    )
}

/// Characters escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'+')
    .remove(b'!');

fn ready_page(stored: StoredPage, unreadable: Unreadable) -> ReadyPage {
    let name = &stored.page.name;
    let json = json::render(
        &stored.page,
        |f| file_link(name, f),
        |f| unreadable.offered_for(f),
    );
    // The JSON form carries every attribute the HTML form does, so its digest covers both.
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&json))[..32].to_string()
    };
    // A stable sort: of a name listed twice, the first comes first, as clients read the
    // page. (Pages are capped far below 2^32 links.)
    let files = &stored.page.files;
    let mut by_filename: Vec<u32> = (0..files.len() as u32).collect();
    by_filename.sort_by(|&a, &b| files[a as usize].filename.cmp(&files[b as usize].filename));
    ReadyPage {
        stored,
        by_filename,
        html: OnceLock::new(),
        json: Rendered::new(json),
        digest,
        trimmed: Mutex::new(None),
        unreadable,
    }
}

impl ReadyPage {
    /// The bytes of one form, gzipped when asked. Each is made on its first demand and
    /// kept; a long page's on the blocking pool.
    pub async fn body(self: &Arc<Self>, form: Form, gzip: bool) -> Bytes {
        let made = match form {
            Form::Json => !gzip || self.json.gzipped.get().is_some(),
            Form::Html => self
                .html
                .get()
                .is_some_and(|html| !gzip || html.gzipped.get().is_some()),
        };
        let long = !made && self.stored.page.files.len() > RENDERED_IN_PLACE;
        let page = self.clone();
        match in_place_unless_long(long, move || page.body_now(form, gzip)).await {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(
                    project = %self.stored.page.name,
                    error = %e,
                    "cannot render the page on the blocking pool; rendering it here"
                );
                self.body_now(form, gzip)
            }
        }
    }

    fn body_now(&self, form: Form, gzip: bool) -> Bytes {
        let rendered = match form {
            Form::Json => &self.json,
            Form::Html => self.rendered_html(),
        };
        if gzip {
            rendered.gzipped().clone()
        } else {
            rendered.body.clone()
        }
    }

    fn rendered_html(&self) -> &Rendered {
        self.html.get_or_init(|| {
            let page = &self.stored.page;
            let html = html::render(
                page,
                |f| file_link(&page.name, f),
                |f| self.unreadable.offered_for(f),
            );
            Rendered::new(html.into_bytes())
        })
    }

    /// The file of this name, if the page lists it.
    pub fn file(&self, filename: &str) -> Option<&DistFile> {
        let files = &self.stored.page.files;
        let at = self
            .by_filename
            .partition_point(|&i| files[i as usize].filename.as_str() < filename);
        let file = &files[*self.by_filename.get(at)? as usize];
        (file.filename == filename).then_some(file)
    }

    /// Bytes the page may hold in memory: the JSON form, and room for the forms made on
    /// demand, whether or not they are made yet (HTML is about 1.2 times the JSON form,
    /// each gzipped form about a fifth of what it compresses). It never changes, so
    /// the memo counts a page in and out alike.
    fn size(&self) -> usize {
        self.json.body.len() * 5 / 2
    }
}

/// Rendered pages kept in memory, bounded by their total size; the oldest go first.
#[derive(Default)]
struct Memo {
    pages: HashMap<ProjectName, Arc<ReadyPage>>,
    order: VecDeque<ProjectName>,
    bytes: usize,
}

const MEMO_BYTES: usize = 16 * 1024 * 1024;

impl Memo {
    fn get(&self, name: &ProjectName) -> Option<Arc<ReadyPage>> {
        self.pages.get(name).cloned()
    }

    fn insert(&mut self, name: ProjectName, page: Arc<ReadyPage>) {
        self.remove(&name);
        self.bytes += page.size();
        self.pages.insert(name.clone(), page);
        self.order.push_back(name);
        while self.bytes > MEMO_BYTES && self.order.len() > 1 {
            if let Some(oldest) = self.order.pop_front()
                && let Some(page) = self.pages.remove(&oldest)
            {
                self.bytes -= page.size();
            }
        }
    }

    fn remove(&mut self, name: &ProjectName) {
        if let Some(page) = self.pages.remove(name) {
            self.bytes -= page.size();
            self.order.retain(|n| n != name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gzip;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn gzip_round_trips_bodies_of_every_size_on_one_reused_state() {
        // Bytes that barely compress, so the output outgrows any first guess.
        let mut state = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let page = "<a href=\"/+f/x/y.whl\">y.whl</a><br/>\n".repeat(2_000);
        for body in [&b""[..], b"x", page.as_bytes(), &noise, page.as_bytes()] {
            assert_eq!(gunzip(&gzip(body)), body);
        }
    }
}
