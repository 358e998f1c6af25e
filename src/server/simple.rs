//! The simple-API routes: the project list and each project's page.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::negotiate::{self, Format};
use super::{Outcome, State};
use crate::api::{INDEX_PATH, SIMPLE_PATH};
use crate::cache::{Form, PageError};
use crate::index::{ProjectName, html, json};

/// The prefix a request came in under, so redirects keep it.
fn prefix_of(uri: &Uri) -> &'static str {
    if uri.path().starts_with(SIMPLE_PATH) {
        SIMPLE_PATH
    } else {
        INDEX_PATH
    }
}

fn format_of(headers: &HeaderMap, query: &HashMap<String, String>) -> Format {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    negotiate::choose(accept, query.get("format").map(String::as_str))
}

/// The root index: the projects devcache has pages for. (The upstream's full list is
/// tens of megabytes that no installer reads, so it is not proxied.)
pub async fn index(
    state: State,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let store = state.cache.store().clone();
    let names = tokio::task::spawn_blocking(move || store.page_names())
        .await
        .unwrap_or_default();
    let format = format_of(&headers, &query);
    let body = match format {
        Format::Json => json::render_index(names.iter()),
        Format::Html | Format::LegacyHtml => html::render_index(names.iter()).into_bytes(),
    };
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

/// `/simple/Foo` → `/simple/foo/`.
pub async fn add_slash(Path(project): Path<String>, uri: Uri) -> Response {
    match ProjectName::parse(&project) {
        Ok(name) => moved(format!("{}{name}/", prefix_of(&uri))),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}

pub async fn project(
    state: State,
    Path(project): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let name = match ProjectName::parse(&project) {
        Ok(name) => name,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    };
    if !name.is_spelled(&project) {
        let mut target = format!("{}{name}/", prefix_of(&uri));
        if let Some(q) = uri.query() {
            target.push('?');
            target.push_str(q);
        }
        return moved(target);
    }
    let (page, outcome) = match state.cache.page(&name).await {
        Ok(found) => found,
        Err(e) => return page_error(&name, e),
    };
    let format = format_of(&headers, &query);
    let gzip = negotiate::accepts_gzip(headers.get(header::ACCEPT_ENCODING));
    let form = match format {
        Format::Json => Form::Json,
        Format::Html | Format::LegacyHtml => Form::Html,
    };
    // Each representation has its own strong validator (RFC 9110 8.8.3).
    let etag = format!(
        "\"{}-{}{}\"",
        page.digest,
        format.tag(),
        if gzip { "-gzip" } else { "" }
    );
    let mut response = if negotiate::none_match(headers.get(header::IF_NONE_MATCH), &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = page.body(form, gzip).await;
        let mut response = if gzip {
            ([(header::CONTENT_ENCODING, "gzip")], body).into_response()
        } else {
            body.into_response()
        };
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    // Clients revalidate every time: a 304 from devcache costs nothing, and a page
    // never looks older to them than it is here.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, must-revalidate"),
    );
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    response.extensions_mut().insert(outcome);
    response
}

/// A 301 (as devpi and PyPI answer), not axum's 308.
fn moved(location: String) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location)],
    )
        .into_response()
}

pub fn page_error(name: &ProjectName, error: PageError) -> Response {
    let status = match error {
        PageError::NotFound | PageError::OfflineMiss => StatusCode::NOT_FOUND,
        PageError::Unavailable(_) => StatusCode::BAD_GATEWAY,
    };
    let mut response = (status, format!("{name}: {error}\n")).into_response();
    if !matches!(error, PageError::NotFound) {
        response.extensions_mut().insert(Outcome::Miss);
    }
    response
}

pub async fn not_found(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return read_only().await;
    }
    (
        StatusCode::NOT_FOUND,
        format!(
            "{} is not a devcache route; the index is at {INDEX_PATH}\n",
            uri.path()
        ),
    )
        .into_response()
}

/// Any write (an upload, devpi's `:action=file_upload` among them): devcache only
/// mirrors its upstream.
pub async fn read_only() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, "GET, HEAD")],
        "devcache is a read-only cache of its upstream index; upload packages to the upstream \
         itself (or to a devpi index of your own), and devcache serves them from there\n",
    )
        .into_response()
}
