//! `/metrics`: the process's counters and the store's state, in Prometheus text
//! (the OpenMetrics form, which Prometheus scrapes and prefers).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::State;
use crate::metrics::metrics;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics_text(state: State) -> Response {
    let store = state.cache.store().clone();
    let (pinned_files, pinned_bytes) = tokio::task::spawn_blocking(move || store.pinned_totals())
        .await
        .unwrap_or_default();
    let store = state.cache.store();
    let (files, bytes) = store.file_totals();
    let (evictions, evicted_bytes) = store.evictions();
    let gauge = |value: u64| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    let mut now = Registry::with_prefix("devcache");
    now.register("disk_files", "Files in the cache", gauge(files));
    now.register(
        "disk_bytes",
        "Bytes of the files in the cache",
        gauge(bytes),
    );
    now.register(
        "max_size_bytes",
        "The disk budget (--max-size); 0: none",
        gauge(store.max_size().unwrap_or(0)),
    );
    now.register(
        "pinned_files",
        "Cached files that eviction never removes (warmed or imported)",
        gauge(pinned_files),
    );
    now.register(
        "pinned_bytes",
        "Bytes of the pinned files",
        gauge(pinned_bytes),
    );
    now.register(
        "evictions",
        "Files evicted to keep within the budget",
        ConstCounter::new(evictions),
    );
    now.register(
        "evicted_bytes",
        "Bytes of the files evicted",
        ConstCounter::new(evicted_bytes),
    );
    now.register(
        "fills_in_flight",
        "Downloads from the upstream under way",
        gauge(state.cache.downloads_running() as u64),
    );
    let mut text = String::new();
    let encoded = encode_registry(&mut text, metrics().registry())
        .and_then(|()| encode_registry(&mut text, &now))
        .and_then(|()| encode_eof(&mut text));
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot write the metrics\n",
        )
            .into_response(),
    }
}
