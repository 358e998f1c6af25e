//! The process's counters for `/metrics`: requests by route and outcome, bytes served
//! and fetched, and the upstream's latency and errors. They live for the process, in
//! one registry, and are bumped from the layers that see each event (the server for
//! requests, the cache for upstream bytes, upstream.rs for latency); what the store
//! holds (bytes on disk, pins, evictions) is read when `/metrics` is asked.
//!
//! The counters a request bumps are plain atomics, each looked up by its labels once
//! (the first time that route and outcome happen) rather than on every request, so
//! the warm path takes no lock.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What a request asked for, as the `route` label says it.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Index,
    Page,
    File,
    Metadata,
    Status,
    Metrics,
    Other,
}

const ROUTES: [&str; 7] = [
    "index", "page", "file", "metadata", "status", "metrics", "other",
];

/// The `outcome` label: how the cache answered, `none` for answers that are not a
/// page or a file (errors, the status page).
const OUTCOMES: [&str; 5] = ["hit", "miss", "revalidated", "stale", "none"];

/// An upstream request, as the `request` label says it.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamRequest {
    Page,
    File,
    Range,
    Head,
}

const UPSTREAM_REQUESTS: [&str; 4] = ["page", "file", "range", "head"];

/// Why the upstream gave no answer: no connection, or an error status.
const UPSTREAM_ERRORS: [&str; 2] = ["transport", "status"];

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    /// By route, then outcome: each made in `requests` when first needed, so that only
    /// what happens is listed.
    request_counters: Vec<OnceLock<Counter>>,
    /// By outcome.
    served_bytes: Vec<Counter>,
    upstream_bytes: Counter,
    upstream_seconds: Vec<Histogram>,
    upstream_errors: Vec<Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's counters.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let requests = Family::<Labels, Counter>::default();
        let served = Family::<Labels, Counter>::default();
        let upstream_bytes = Counter::default();
        let upstream_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 1 ms to about 33 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let upstream_errors = Family::<Labels, Counter>::default();
        let mut registry = Registry::with_prefix("devcache");
        registry.register(
            "requests",
            "Requests answered, by route and by how the cache answered",
            requests.clone(),
        );
        registry.register(
            "served_bytes",
            "Bytes sent to clients, by how the cache answered (hit, revalidated and stale: from the cache)",
            served.clone(),
        );
        registry.register(
            "upstream_bytes",
            "Bytes received from the upstream index (pages, files, ranges)",
            upstream_bytes.clone(),
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Time until the upstream's answer began, by kind of request",
            upstream_seconds.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream requests that got no answer (transport) or an error status (status, 5xx)",
            upstream_errors.clone(),
        );
        Self {
            registry,
            request_counters: (0..ROUTES.len() * OUTCOMES.len())
                .map(|_| OnceLock::new())
                .collect(),
            requests,
            served_bytes: OUTCOMES
                .iter()
                .map(|outcome| served.get_or_create_owned(&vec![("outcome", *outcome)]))
                .collect(),
            upstream_bytes,
            upstream_seconds: UPSTREAM_REQUESTS
                .iter()
                .map(|request| upstream_seconds.get_or_create_owned(&vec![("request", *request)]))
                .collect(),
            upstream_errors: UPSTREAM_ERRORS
                .iter()
                .map(|kind| upstream_errors.get_or_create_owned(&vec![("error", *kind)]))
                .collect(),
        }
    }

    /// A request answered: its route, its outcome (`hit`, `miss`, ... or `None`) and
    /// the bytes sent.
    pub fn request(&self, route: Route, outcome: Option<&str>, bytes: u64) {
        let outcome = outcome
            .and_then(|o| OUTCOMES.iter().position(|known| *known == o))
            .unwrap_or(OUTCOMES.len() - 1);
        self.request_counters[route as usize * OUTCOMES.len() + outcome]
            .get_or_init(|| {
                self.requests.get_or_create_owned(&vec![
                    ("route", ROUTES[route as usize]),
                    ("outcome", OUTCOMES[outcome]),
                ])
            })
            .inc();
        self.served_bytes[outcome].inc_by(bytes);
    }

    /// Bytes that came from the upstream.
    pub fn upstream_bytes(&self, bytes: u64) {
        self.upstream_bytes.inc_by(bytes);
    }

    /// An upstream request: how long its answer took to begin, and whether it failed
    /// to connect (`Some(false)`), answered an error status (`Some(true)`) or not.
    pub fn upstream_request(&self, request: UpstreamRequest, took: Duration, error: Option<bool>) {
        self.upstream_seconds[request as usize].observe(took.as_secs_f64());
        if let Some(status) = error {
            self.upstream_errors[usize::from(status)].inc();
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_match_their_enums() {
        assert_eq!(ROUTES.len(), Route::Other as usize + 1);
        assert_eq!(UPSTREAM_REQUESTS.len(), UpstreamRequest::Head as usize + 1);
    }
}
