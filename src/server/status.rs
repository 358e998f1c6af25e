//! `/+status` (JSON for scripts and health checks) and `/` (a page for people).

use std::sync::atomic::Ordering;

use super::State;
use crate::api::{INDEX_PATH, STATUS_PATH, Status, human_bytes};
use crate::index::html::escape;
use axum::Json;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};

async fn collect(state: &State) -> Status {
    let store = state.cache.store().clone();
    let (projects, (pinned_files, pinned_bytes)) = tokio::task::spawn_blocking(move || {
        (store.page_names().len() as u64, store.pinned_totals())
    })
    .await
    .unwrap_or_default();
    let (files, bytes) = state.cache.store().file_totals();
    let (evictions, evicted_bytes) = state.cache.store().evictions();
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        upstream: state.cache.upstream().map(|u| u.base().to_string()),
        upstream_reachable: state.cache.upstream().map(|u| u.is_reachable()),
        offline: state.cache.upstream().is_none(),
        projects,
        files,
        bytes,
        hits: state.counters.hits.load(Ordering::Relaxed),
        misses: state.counters.misses.load(Ordering::Relaxed),
        stale: state.counters.stale.load(Ordering::Relaxed),
        uptime_seconds: state.started.elapsed().as_secs(),
        max_size: state.cache.store().max_size(),
        pinned_files,
        pinned_bytes,
        evictions,
        evicted_bytes,
        index_path: INDEX_PATH.to_string(),
        clients: state.clients.snapshot(),
    }
}

pub async fn json(state: State) -> Json<Status> {
    Json(collect(&state).await)
}

pub async fn home(state: State, headers: HeaderMap) -> Response {
    let status = collect(&state).await;
    let store = state.cache.store().clone();
    let names = tokio::task::spawn_blocking(move || store.page_names())
        .await
        .unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost:3141");
    let index_url = format!("http://{}{INDEX_PATH}", escape(host));
    let hit_rate = status
        .hit_rate()
        .map_or("none served yet".to_string(), |rate| format!("{rate:.1}%"));
    let upstream = match (&status.upstream, status.upstream_reachable) {
        (None, _) => "none (offline: serving only what is cached)".to_string(),
        (Some(url), Some(false)) => format!("{} (unreachable: serving cached pages)", escape(url)),
        (Some(url), _) => escape(url),
    };
    let mut clients = String::new();
    for client in &status.clients {
        clients.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{} hits, {} stale, {} misses</td><td>{} from the cache, {} fetched</td></tr>\n",
            escape(&client.address),
            escape(&client.user_agent),
            client.hits,
            client.stale,
            client.misses,
            human_bytes(client.bytes_from_cache),
            human_bytes(client.bytes_fetched),
        ));
    }
    if clients.is_empty() {
        clients.push_str("<tr><td>no installer has asked yet</td></tr>\n");
    }
    let mut projects = String::new();
    for name in &names {
        projects.push_str(&format!(
            "<li><a href=\"{INDEX_PATH}{name}/\">{name}</a></li>\n"
        ));
    }
    if names.is_empty() {
        projects.push_str("<li>nothing cached yet</li>\n");
    }
    let page = format!(
        r#"<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>devcache</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}td{{padding:0 1em 0 0}}pre{{background:#eee;padding:.5em}}</style>
</head>
<body>
<h1>devcache {version}</h1>
<p>A PyPI cache. Point pip at it:</p>
<pre>[global]
index-url = {index_url}
trusted-host = {host}</pre>
<table>
<tr><td>upstream</td><td>{upstream}</td></tr>
<tr><td>projects cached</td><td>{projects_count}</td></tr>
<tr><td>files cached</td><td>{files} ({size})</td></tr>
<tr><td>disk budget</td><td>{budget}</td></tr>
<tr><td>hit rate</td><td>{hit_rate} ({hits} hits, {misses} misses, {stale} served stale)</td></tr>
<tr><td>up for</td><td>{uptime}s</td></tr>
</table>
<h2>Clients</h2>
<table>
{clients}</table>
<h2>Projects</h2>
<ul>
{projects}</ul>
<p><a href="{INDEX_PATH}">simple index</a> · <a href="{STATUS_PATH}">status as JSON</a></p>
</body>
</html>
"#,
        version = status.version,
        host = escape(host.split(':').next().unwrap_or(host)),
        projects_count = names.len(),
        files = status.files,
        size = human_bytes(status.bytes),
        budget = status.disk_budget(),
        hits = status.hits,
        misses = status.misses,
        stale = status.stale,
        uptime = status.uptime_seconds,
    );
    Html(page).into_response()
}
