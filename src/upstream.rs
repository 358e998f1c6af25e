//! The HTTP client to the upstream index: page fetches with revalidation and a
//! timeout, and streaming file downloads.
//!
//! It keeps what the rest of the cache asks of the upstream's health: whether its last
//! answer failed, and whether that was so recent that a stale page should be served
//! without asking again. A user and password in the upstream's URL are sent, as pip
//! sends them, with every request to the upstream's host (its files too, which a
//! private index guards as it guards its pages), and never shown: see [`shown`].
//!
//! reqwest honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, and with rustls and the
//! native roots it trusts the OS store and `SSL_CERT_FILE`/`SSL_CERT_DIR`, which is
//! what a user behind a corporate proxy with its own CA needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, RANGE,
};
use url::Url;

use crate::index::{ProjectName, ProjectPage, html, json};
use crate::metrics::{UpstreamRequest, metrics};

/// Why the upstream gave no usable answer. Callers branch on `NotFound`; the others
/// all mean "serve a stale copy if there is one".
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream has no such project or file")]
    NotFound,
    #[error("the upstream answered {0}")]
    Status(StatusCode),
    #[error("cannot reach the upstream: {0}")]
    Transport(Arc<reqwest::Error>),
    #[error("the upstream did not answer within {}s (--upstream-timeout)", .0.as_secs())]
    Timeout(Duration),
    #[error("the upstream sent a page devcache cannot read: {0}")]
    BadPage(String),
    #[error(
        "the upstream sent more than {what} allows ({limit} bytes); raise it if the upstream is right"
    )]
    TooLarge { what: &'static str, limit: u64 },
}

impl UpstreamError {
    /// Whether the upstream ran out of time (to connect, to answer, or mid-body).
    fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Transport(e) => e.is_timeout(),
            _ => false,
        }
    }
}

impl From<reqwest::Error> for UpstreamError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(Arc::new(e))
    }
}

/// A page as the upstream sent it, parsed.
pub struct FetchedPage {
    pub page: ProjectPage,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

pub enum PageAnswer {
    Changed(FetchedPage),
    NotModified,
}

/// The cached page's validators, sent so the upstream can answer 304.
pub struct Validators<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// The most devcache reads of what the upstream sends, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// A page body.
    pub page: u64,
    /// A file whose size neither its page nor the upstream gives.
    pub file: u64,
}

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// The index's URL, without the credentials it was given with.
    base: Url,
    credentials: Option<Arc<Credentials>>,
    /// How long the upstream has to answer: a page in full, a file with its headers.
    page_timeout: Duration,
    caps: Caps,
    reachable: Arc<AtomicBool>,
    /// When a request to the upstream last ran out of time.
    timed_out_at: Arc<Mutex<Option<Instant>>>,
}

/// The user and password of the upstream's URL, for requests to its host.
struct Credentials {
    host: String,
    port: Option<u16>,
    user: String,
    password: Option<String>,
}

impl Credentials {
    /// Those of `url`, which loses them.
    fn taken_from(url: &mut Url) -> Option<Self> {
        if url.username().is_empty() && url.password().is_none() {
            return None;
        }
        let decoded = |raw: &str| {
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = Self {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
            user: decoded(url.username()),
            password: url.password().map(decoded),
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some(credentials)
    }

    /// Whether a request to `url` goes to the upstream's host, with no user of its own.
    fn apply_to(&self, url: &Url) -> bool {
        url.username().is_empty()
            && url
                .host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && url.port_or_known_default() == self.port
    }
}

/// An index URL as devcache shows it (`devcache config`, the log, `/+status`, errors):
/// with the password its user part may carry written as `****`. Text that is not a
/// valid URL is shown the same way, since an error names what was given.
pub fn shown(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://").map(|at| at + 3) else {
        return raw.to_string();
    };
    let authority_len = raw[scheme_end..]
        .find(['/', '?', '#'])
        .unwrap_or(raw.len() - scheme_end);
    let authority = &raw[scheme_end..scheme_end + authority_len];
    let Some(user_part) = authority.rfind('@').map(|at| &authority[..at]) else {
        return raw.to_string();
    };
    let Some(colon) = user_part.find(':') else {
        return raw.to_string();
    };
    let password_start = scheme_end + colon + 1;
    let password_end = scheme_end + user_part.len();
    format!("{}****{}", &raw[..password_start], &raw[password_end..])
}

/// After a request to the upstream runs out of time, a stale page is served at once,
/// without asking the upstream again, for this long: an upstream that takes connections
/// and never answers would otherwise cost every request `--upstream-timeout`. A quick
/// failure (a refused connection, a 5xx) costs nothing to try again, and is.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Pages of at most this many bytes (about 500 files) are parsed where they arrive, on
/// the server's thread; longer ones on the blocking pool, so that a page of 100,000
/// links (nearly half a second) holds up no other request.
const PARSED_IN_PLACE: usize = 256 * 1024;

/// What devcache asks for: JSON first (it carries sizes), HTML as the fallback.
const PAGE_ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1";

impl Upstream {
    pub fn new(mut base: Url, page_timeout: Duration, caps: Caps) -> anyhow::Result<Self> {
        let credentials = Credentials::taken_from(&mut base).map(Arc::new);
        let client = reqwest::Client::builder()
            .user_agent(concat!("devcache/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(90))
            // uv keeps up to 64 requests in flight and two services may resolve at
            // once: with 32 idle connections kept, a cold `uv pip compile` 5 ms from the
            // upstream opened 84-103 connections for its 600 requests (each a round trip,
            // a TLS handshake too on a real index), with 128 kept, 50-62.
            .pool_max_idle_per_host(128)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            base,
            credentials,
            page_timeout,
            caps,
            reachable: Arc::new(AtomicBool::new(true)),
            timed_out_at: Arc::default(),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Whether the last contact with the upstream got an answer that was not a 5xx.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Whether a request to the upstream ran out of time less than [`RETRY_AFTER`] ago
    /// and none has been answered since: a stale page is then served without asking.
    pub fn is_resting(&self) -> bool {
        !self.is_reachable()
            && self
                .timed_out_at
                .lock()
                .expect("timed_out_at lock")
                .is_some_and(|at| at.elapsed() < RETRY_AFTER)
    }

    /// Notes whether a request was answered (a 5xx is no answer) or ran out of time.
    fn note(&self, answered: bool, timed_out: bool) {
        self.reachable.store(answered, Ordering::Relaxed);
        if timed_out {
            *self.timed_out_at.lock().expect("timed_out_at lock") = Some(Instant::now());
        }
    }

    /// A request to `url`, with the upstream's credentials when it goes to its host.
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url);
        match &self.credentials {
            Some(credentials) if Url::parse(url).is_ok_and(|url| credentials.apply_to(&url)) => {
                request.basic_auth(&credentials.user, credentials.password.as_ref())
            }
            _ => request,
        }
    }

    /// Sends a request, timing it for `/metrics` and noting whether the upstream
    /// answered. Its headers must come within the timeout; the body may take longer.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        kind: UpstreamRequest,
    ) -> Result<reqwest::Response, UpstreamError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.page_timeout, request.send()).await {
            Ok(result) => result.map_err(UpstreamError::from),
            Err(_) => Err(UpstreamError::Timeout(self.page_timeout)),
        };
        let (error, timed_out) = match &result {
            Err(e) => (Some(false), e.is_timeout()),
            Ok(response) => (response.status().is_server_error().then_some(true), false),
        };
        metrics().upstream_request(kind, started.elapsed(), error);
        self.note(error.is_none(), timed_out);
        result
    }

    /// Fetches a project's page, conditionally when validators are given.
    pub async fn fetch_page(
        &self,
        name: &ProjectName,
        validators: Option<Validators<'_>>,
    ) -> Result<PageAnswer, UpstreamError> {
        let url = self
            .base
            .join(&format!("{name}/"))
            .map_err(|e| UpstreamError::BadPage(e.to_string()))?;
        let mut request = self
            .request(reqwest::Method::GET, url.as_str())
            .header(ACCEPT, PAGE_ACCEPT)
            .timeout(self.page_timeout);
        if let Some(v) = validators {
            if let Some(etag) = v.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(date) = v.last_modified {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
        }
        let response = self.send(request, UpstreamRequest::Page).await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => return Ok(PageAnswer::NotModified),
            StatusCode::NOT_FOUND | StatusCode::GONE => return Err(UpstreamError::NotFound),
            status if !status.is_success() => return Err(UpstreamError::Status(status)),
            _ => {}
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        // Relative links resolve against where the page really was, after redirects.
        let page_url = response.url().clone();
        let body = self.capped_body(response).await?;
        metrics().upstream_bytes(body.len() as u64);
        let name = name.clone();
        let page = if body.len() <= PARSED_IN_PLACE {
            parse_page(name, &content_type, &body, &page_url)?
        } else {
            tokio::task::spawn_blocking(move || parse_page(name, &content_type, &body, &page_url))
                .await
                .map_err(|e| UpstreamError::BadPage(e.to_string()))??
        };
        Ok(PageAnswer::Changed(FetchedPage {
            page,
            etag,
            last_modified,
        }))
    }

    /// A page's body, read as it arrives and refused once it passes the page cap: an
    /// endless or huge answer costs at most the cap in memory.
    async fn capped_body(&self, response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let body = read_capped(response, self.caps.page, "the page cap (--max-page-mib)").await;
        if let Err(e @ UpstreamError::Transport(_)) = &body {
            self.note(false, e.is_timeout());
        }
        body
    }

    /// The length of a file, as the upstream's answer to `HEAD` gives it.
    pub async fn file_length(&self, url: &str) -> Result<Option<u64>, UpstreamError> {
        let response = self
            .send(
                self.request(reqwest::Method::HEAD, url),
                UpstreamRequest::Head,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            status if !status.is_success() => Err(UpstreamError::Status(status)),
            _ => Ok(response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
        }
    }

    /// Asks for a byte range of a file. The answer may be the range (206), the whole
    /// file (200: the upstream ignores ranges) or 416; the caller reads the body.
    pub async fn fetch_range(
        &self,
        url: &str,
        range: &str,
    ) -> Result<reqwest::Response, UpstreamError> {
        let request = self.request(reqwest::Method::GET, url).header(RANGE, range);
        self.send_range(request).await
    }

    async fn send_range(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        let response = self.send(request, UpstreamRequest::Range).await?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            StatusCode::RANGE_NOT_SATISFIABLE => Ok(response),
            status if !status.is_success() => Err(UpstreamError::Status(status)),
            _ => Ok(response),
        }
    }

    /// Exactly `len` bytes of a file from `offset`, by a range request. An upstream
    /// that answers with anything but that range, or stalls, is an error.
    pub async fn read_range(&self, url: &str, offset: u64, len: u64) -> std::io::Result<Bytes> {
        let last = offset
            .checked_add(len)
            .and_then(|end| end.checked_sub(1))
            .ok_or_else(|| std::io::Error::other("an empty or impossible range"))?;
        // Read whole into memory, for a client waiting on it: the upstream has the
        // timeout to send it, and a second more for each MiB.
        let within = self.page_timeout + Duration::from_secs(len >> 20);
        let request = self
            .request(reqwest::Method::GET, url)
            .header(RANGE, format!("bytes={offset}-{last}"))
            .timeout(within);
        let response = self
            .send_range(request)
            .await
            .map_err(std::io::Error::other)?;
        let starts_at_offset = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(&format!("bytes {offset}-{last}/")));
        if response.status() != StatusCode::PARTIAL_CONTENT || !starts_at_offset {
            return Err(std::io::Error::other(format!(
                "the upstream answered a range request with {}",
                response.status()
            )));
        }
        read_exactly(response, len, "the range").await
    }

    /// A whole file of `size` bytes (a small one: it is held in memory), read by one
    /// `GET`. An upstream that sends more or less than `size` is an error.
    pub async fn read_small_file(&self, url: &str, size: u64) -> std::io::Result<Bytes> {
        let response = self.fetch_file(url).await.map_err(std::io::Error::other)?;
        read_exactly(response, size, "the file's size").await
    }

    /// Starts downloading a file; the caller reads the body as it arrives.
    pub async fn fetch_file(&self, url: &str) -> Result<reqwest::Response, UpstreamError> {
        let response = self
            .send(
                self.request(reqwest::Method::GET, url),
                UpstreamRequest::File,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(UpstreamError::NotFound),
            status if !status.is_success() => Err(UpstreamError::Status(status)),
            _ => Ok(response),
        }
    }
}

/// A body read as it arrives and refused once it passes `limit` bytes (`what` names
/// the setting that raises it): an endless or huge answer costs at most the limit in
/// memory. For every body devcache holds whole from a server it does not control: the
/// upstream's pages, and a cache's pages read by `warm --url` or `status`.
pub async fn read_capped(
    response: reqwest::Response,
    limit: u64,
    what: &'static str,
) -> Result<Bytes, UpstreamError> {
    let too_large = UpstreamError::TooLarge { what, limit };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large);
    }
    // Sized once when the length is given: a growing buffer can take twice the page.
    let announced = response.content_length().unwrap_or(0).min(limit);
    let body = read_limited(response, limit, announced, |_| {})
        .await
        .map_err(|e| match e {
            LimitedReadError::Transport(e) => UpstreamError::from(e),
            LimitedReadError::OverLimit => too_large,
        })?;
    Ok(Bytes::from(body))
}

/// A body of exactly `len` bytes, counted as bytes from the upstream; more than `len`
/// (`what` names it in the error) or fewer is an error.
async fn read_exactly(response: reqwest::Response, len: u64, what: &str) -> std::io::Result<Bytes> {
    let body = read_limited(response, len, len.min(1 << 20), |chunk| {
        metrics().upstream_bytes(chunk.len() as u64);
    })
    .await
    .map_err(|e| match e {
        LimitedReadError::Transport(e) => std::io::Error::other(e),
        LimitedReadError::OverLimit => {
            std::io::Error::other(format!("the upstream sent more than {what}"))
        }
    })?;
    if body.len() as u64 != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    }
    Ok(Bytes::from(body))
}

/// Why [`read_limited`] stopped before the end of the body.
enum LimitedReadError {
    Transport(reqwest::Error),
    /// The body went past the limit.
    OverLimit,
}

/// A response's body read as it arrives into a buffer of `capacity` bytes to start,
/// refused once it passes `limit` bytes. `on_chunk` sees each piece as it comes, the
/// one that passes the limit included.
async fn read_limited(
    response: reqwest::Response,
    limit: u64,
    capacity: u64,
    mut on_chunk: impl FnMut(&Bytes),
) -> Result<Vec<u8>, LimitedReadError> {
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut stream = response.bytes_stream();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(LimitedReadError::Transport)?;
        on_chunk(&chunk);
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(LimitedReadError::OverLimit);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_page(
    name: ProjectName,
    content_type: &str,
    body: &Bytes,
    page_url: &Url,
) -> Result<ProjectPage, UpstreamError> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media_type.ends_with("+json") || media_type == "application/json" {
        json::parse(name, body, page_url).map_err(|e| UpstreamError::BadPage(e.to_string()))
    } else {
        let text = String::from_utf8_lossy(body);
        Ok(html::parse(name, &text, page_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(
            shown("https://alice:s3cret@index.test/simple/"),
            "https://alice:****@index.test/simple/"
        );
        assert_eq!(shown("http://a:b:c@x.test"), "http://a:****@x.test");
        assert_eq!(
            shown("http://p%40ss:w@rd@x.test/s?q=@"),
            "http://p%40ss:****@x.test/s?q=@"
        );
        assert_eq!(shown("not a url:pw@x"), "not a url:pw@x");
        assert_eq!(shown("ftp//a:b@c"), "ftp//a:b@c");
        for plain in [
            "https://index.test/simple/",
            "https://token@index.test/",
            "http://x.test/a:b@c",
        ] {
            assert_eq!(shown(plain), plain);
        }
    }

    #[test]
    fn credentials_go_to_the_upstreams_host_only() {
        let mut base = Url::parse("https://alice:s%40cret@Index.test/simple/").unwrap();
        let credentials = Credentials::taken_from(&mut base).unwrap();
        assert_eq!(base.as_str(), "https://index.test/simple/");
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_deref()),
            ("alice", Some("s@cret"))
        );
        let applies = |url: &str| credentials.apply_to(&Url::parse(url).unwrap());
        assert!(applies("https://index.test/packages/a.whl"));
        assert!(applies("https://INDEX.test:443/packages/a.whl"));
        assert!(!applies("https://files.test/packages/a.whl"));
        assert!(!applies("https://index.test:8443/packages/a.whl"));
        assert!(!applies("http://index.test/packages/a.whl"));
        assert!(!applies("https://bob@index.test/packages/a.whl"));
    }
}
