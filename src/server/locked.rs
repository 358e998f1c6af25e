//! Locked installs: the file hosts of a lock, answered over TLS (see tls.rs).
//!
//! A locked installer (`uv sync --frozen`) asks for the URL its lock wrote, such as
//! `https://<file host>/packages/ab/cd/.../demo-1.0-py3-none-any.whl`. Only the last
//! segment counts: the file name gives the project, the project's page (from the
//! upstream, as for any other request) gives the file and its sha256, and the file is
//! answered exactly as `/root/pypi/+f/` answers it: cached, joined to a download under
//! way, or fetched from the upstream's own URL and verified. The URL the client chose is
//! never fetched; a name no page lists is a 404.

use axum::extract::OriginalUri;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::State;
use super::files;
use crate::index::page::projects_in_filename;
use crate::store::BlobKey;

/// Any path on a file host: the file its last segment names.
pub async fn file(
    state: State,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return super::simple::read_only().await;
    }
    let last = uri.path().rsplit('/').next().unwrap_or_default();
    let filename = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    for project in projects_in_filename(&filename) {
        let Ok((page, _)) = state.cache.page(&project).await else {
            continue;
        };
        if let Some(dist) = page.file(&filename) {
            let key = BlobKey::for_file(dist, false);
            return files::answer(&state, &method, &project, key, &filename, &headers).await;
        }
    }
    (
        StatusCode::NOT_FOUND,
        format!("devcache: no project page it can read lists {filename:?}\n"),
    )
        .into_response()
}
