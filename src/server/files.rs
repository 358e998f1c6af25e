//! The file route: cached files from disk (with Range, HEAD and validators), cold
//! ones streamed from their fill.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::State;
use super::clients::installer;
use super::simple::page_error;
use crate::api::PIN_HEADER;
use crate::cache::{CachedFile, FileAnswer, FileError, FileRequest, FillError, Outcome, Want};
use crate::index::ProjectName;
use crate::store::BlobKey;
use crate::store::mapped::{self, FileBytes};
use crate::upstream::UpstreamError;

const METADATA_SUFFIX: &str = ".metadata";

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

pub async fn file(
    state: State,
    method: Method,
    UrlPath((project, key, filename)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (Ok(name), Some(key)) = (ProjectName::parse(&project), BlobKey::parse(&key)) else {
        return not_found("no such file");
    };
    answer(&state, &method, &name, key, &filename, &headers).await
}

/// Answers a request for the file `filename` (or its `.metadata`) of project `name`,
/// stored as `key`: the one answer of the file routes, whichever URL named the file.
pub async fn answer(
    state: &State,
    method: &Method,
    name: &ProjectName,
    key: BlobKey,
    filename: &str,
    headers: &HeaderMap,
) -> Response {
    let (dist_filename, metadata) = match filename.strip_suffix(METADATA_SUFFIX) {
        Some(dist) if !dist.is_empty() => (dist, true),
        _ => (filename, false),
    };
    let request = FileRequest {
        project: name,
        key: &key,
        dist_filename,
        metadata,
        pin: headers.get(PIN_HEADER).and_then(|v| v.to_str().ok()),
        // pip reads a wheel's metadata, then (mostly) downloads it; uv, resolving, does not.
        downloads_after_metadata: installer(header_str(headers, header::USER_AGENT))
            .starts_with("pip/"),
    };
    let etag = format!("\"{}\"", key.as_str());
    let want = if method == Method::HEAD {
        Want::Head
    } else {
        match header_str(headers, header::RANGE) {
            // If-Range with another validator means the client's copy differs: send it all.
            Some(range) if header_str(headers, header::IF_RANGE).is_none_or(|v| v == etag) => {
                Want::Range(range)
            }
            _ => Want::Body,
        }
    };
    let (answer, outcome) = match state.cache.file(request, want).await {
        Ok(found) => found,
        Err(e) => return file_error(name, e),
    };
    let response = match answer {
        FileAnswer::Cached(cached) => serve_cached(&cached, filename, headers),
        FileAnswer::Filling { fill, length } => {
            let mut response = Response::new(Body::from_stream(fill.stream()));
            let response_headers = response.headers_mut();
            insert_file_headers(response_headers, &key, filename);
            if let Some(length) = length {
                response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            response
        }
        FileAnswer::Described { length } => {
            // An empty body would tell hyper the length is 0; a stream of nothing
            // leaves it unsaid when the length is unknown.
            let body = match length {
                Some(_) => Body::empty(),
                None => Body::from_stream(futures::stream::empty::<Result<Bytes, Infallible>>()),
            };
            let mut response = Response::new(body);
            let response_headers = response.headers_mut();
            insert_file_headers(response_headers, &key, filename);
            if let Some(length) = length {
                response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            response
        }
        FileAnswer::Partial(part) => {
            let mut response = Response::new(Body::from_stream(part.body));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let response_headers = response.headers_mut();
            insert_file_headers(response_headers, &key, filename);
            response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.length));
            if let Ok(value) = HeaderValue::from_str(&part.content_range) {
                response_headers.insert(header::CONTENT_RANGE, value);
            }
            response
        }
        FileAnswer::Unsatisfiable { content_range } => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Some(value) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    };
    with_outcome(response, outcome)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn with_outcome(mut response: Response, outcome: Outcome) -> Response {
    response.extensions_mut().insert(outcome);
    response
}

fn file_error(name: &ProjectName, error: FileError) -> Response {
    match error {
        FileError::Page(e) => page_error(name, e),
        FileError::NotListed(_) | FileError::OfflineMiss(_) | FileError::NoMetadata(_) => {
            not_found(&error.to_string())
        }
        FileError::Disk(e) => {
            tracing::error!(error = %e, "cannot create a temp file in the data directory");
            (
                StatusCode::INSUFFICIENT_STORAGE,
                format!("devcache cannot write its cache: {e}\n"),
            )
                .into_response()
        }
        FileError::Download(e) => {
            let status = match e {
                FillError::Upstream(UpstreamError::NotFound) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_GATEWAY,
            };
            with_outcome((status, format!("{e}\n")).into_response(), Outcome::Miss)
        }
    }
}

fn insert_file_headers(headers: &mut HeaderMap, key: &BlobKey, filename: &str) {
    let content_type = if filename.ends_with(METADATA_SUFFIX) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", key.as_str())) {
        headers.insert(header::ETAG, etag);
    }
}

/// Serves a cached file: whole, a range of it, or 304 for the client's own copy.
fn serve_cached(cached: &CachedFile, filename: &str, request: &HeaderMap) -> Response {
    let len = cached.bytes.len();
    let etag = format!("\"{}\"", cached.key.as_str());
    let mut headers = HeaderMap::new();
    insert_file_headers(&mut headers, &cached.key, filename);
    if let Some(modified) = cached.modified
        && let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        headers.insert(header::LAST_MODIFIED, value);
    }
    if header_str(request, header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    // If-Range with another validator means the client's copy differs: send it all.
    let range_applies = header_str(request, header::IF_RANGE).is_none_or(|v| v == etag);
    let range = match header_str(request, header::RANGE) {
        Some(spec) if range_applies => parse_range(spec, len),
        _ => RangeAnswer::Full,
    };
    let (status, start, end) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            let value = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                .expect("digits and punctuation");
            headers.insert(header::CONTENT_RANGE, value);
            (StatusCode::PARTIAL_CONTENT, start, end + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let value =
                HeaderValue::from_str(&format!("bytes */{len}")).expect("digits and punctuation");
            headers.insert(header::CONTENT_RANGE, value);
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    // Slices of mappings: nothing is copied in user space.
    let body = match &cached.bytes {
        FileBytes::Whole(bytes) => Body::from(bytes.slice(start as usize..end as usize)),
        FileBytes::Windows { file, .. } => {
            Body::from_stream(mapped::windows(file.clone(), start, end))
        }
    };
    (status, headers, body).into_response()
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    Full,
    /// Inclusive byte positions.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Reads a single-range `Range` header. Several ranges, or a header that does not
/// parse, get the whole file, which RFC 9110 allows.
fn parse_range(spec: &str, len: u64) -> RangeAnswer {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if ranges.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = ranges.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = if first.is_empty() {
        // A suffix: the last N bytes.
        match last.parse::<u64>() {
            Ok(0) => return RangeAnswer::Unsatisfiable,
            Ok(n) => Some((len.saturating_sub(n), len.saturating_sub(1))),
            Err(_) => None,
        }
    } else {
        match (first.parse::<u64>(), last) {
            (Ok(start), "") => Some((start, len.saturating_sub(1))),
            // A last position before the first makes the range invalid, and an invalid
            // range is ignored (RFC 9110, 14.1.1): the whole file.
            (Ok(start), last) => last
                .parse::<u64>()
                .ok()
                .filter(|&end| end >= start)
                .map(|end| (start, end.min(len.saturating_sub(1)))),
            _ => None,
        }
    };
    match parsed {
        None => RangeAnswer::Full,
        Some((start, end)) if start >= len || start > end => RangeAnswer::Unsatisfiable,
        Some((start, end)) => RangeAnswer::Partial { start, end },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Partial { start: 50, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=9-3", 100), Full);
        assert_eq!(parse_range("bytes=200-300", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=x-y", 100), Full);
    }
}
