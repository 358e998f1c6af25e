//! The HTTP server: devpi's URL layout over the store, the page cache and fills.
//!
//! ```text
//! /root/pypi/+simple/[<project>/]   simple API, HTML or JSON by Accept (simple.rs)
//! /simple/[<project>/]              the same pages
//! /root/pypi/+f/<project>/<key>/<filename>[.metadata]   files (files.rs)
//! /+status  /                      counters as JSON, and a page for people (status.rs)
//! /metrics                          Prometheus text (metrics.rs)
//! ```

mod access_log;
mod clients;
mod connections;
mod files;
mod metrics;
mod negotiate;
mod simple;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use tower::Layer;

use crate::api::{FILES_PATH, INDEX_PATH, METRICS_PATH, SIMPLE_PATH, STATUS_PATH};
use crate::cache::Cache;
pub use crate::cache::Outcome;
use crate::config::ServeConfig;
use crate::store::Store;
use crate::upstream::{Caps, Upstream};
pub use access_log::ACCESS as ACCESS_TARGET;

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

struct AppState {
    cache: Cache,
    counters: Counters,
    clients: clients::Clients,
    started: Instant,
}

type State = axum::extract::State<Arc<AppState>>;

/// Builds the application for a configuration: the store opened and the upstream
/// client made (none when offline). The server that owns the data directory removes
/// what a previous run left in `tmp/`.
fn app(config: &ServeConfig, owns_data_dir: bool) -> Result<(Router, Cache)> {
    let store = Store::open(&config.data_dir.value)?;
    store.check_writable()?;
    if owns_data_dir {
        store.remove_leftovers()?;
    }
    store.set_max_size(config.max_size.value);
    store.count_existing_files();
    let upstream = match (&config.upstream.value, config.offline.value) {
        (Some(url), false) => Some(Upstream::new(
            url.clone(),
            Duration::from_secs(config.upstream_timeout.value),
            Caps {
                page: config.max_page_mib.value.saturating_mul(MIB),
                file: config.max_file_mib.value.saturating_mul(MIB),
            },
        )?),
        _ => None,
    };
    let index_ttl = Duration::from_secs(config.index_ttl.value);
    let cache = Cache::new(store, upstream, index_ttl);
    cache.keep_within_budget();
    let state = Arc::new(AppState {
        cache: cache.clone(),
        counters: Counters::default(),
        clients: clients::Clients::default(),
        started: Instant::now(),
    });
    let routes = Router::new()
        .route("/", get(status::home))
        .route(STATUS_PATH, get(status::json))
        .route(METRICS_PATH, get(metrics::metrics_text))
        .route(INDEX_PATH, get(simple::index))
        .route(SIMPLE_PATH, get(simple::index))
        .route(&format!("{INDEX_PATH}{{project}}"), get(simple::add_slash))
        .route(&format!("{SIMPLE_PATH}{{project}}"), get(simple::add_slash))
        .route(&format!("{INDEX_PATH}{{project}}/"), get(simple::project))
        .route(&format!("{SIMPLE_PATH}{{project}}/"), get(simple::project))
        .route(
            &format!("{FILES_PATH}{{project}}/{{key}}/{{filename}}"),
            get(files::file),
        )
        .fallback(simple::not_found)
        .method_not_allowed_fallback(simple::read_only)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log::log,
        ))
        .with_state(state);
    // The path is normalised before routing, so that step wraps the routes rather than
    // being a layer of them.
    let normalised = axum::middleware::map_request(decode_plus).layer(routes);
    Ok((Router::new().fallback_service(normalised), cache))
}

/// The caps are set in MiB.
const MIB: u64 = 1 << 20;

/// How long a stopping server takes at most, for its connections to finish and its
/// downloads under way to be saved; docker stop allows 10 s before it kills.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// Runs `devcache serve` until Ctrl-C or SIGTERM, then lets answers and downloads under
/// way finish, within [`STOP_GRACE`].
pub async fn run(config: ServeConfig) -> Result<()> {
    let (app, cache) = app(&config, true)?;
    let listener = bind(&config.host.value, config.port.value).await?;
    let addr = listener.local_addr()?;
    announce(&config, addr);
    let stopping = std::sync::OnceLock::new();
    let stop = async {
        shutdown_signal().await;
        let _ = stopping.set(Instant::now());
    };
    let client_timeout = Duration::from_secs(config.client_timeout.value);
    connections::serve(listener, app, client_timeout, stop, STOP_GRACE).await;
    let left = STOP_GRACE.saturating_sub(stopping.get().map_or(Duration::ZERO, Instant::elapsed));
    let running = cache.writes_running();
    if running > 0 {
        tracing::info!("waiting for {running} download(s) and save(s) under way to finish");
        if tokio::time::timeout(left, cache.settled()).await.is_err() {
            tracing::warn!("stopping with downloads unfinished; the next start discards them");
        }
    }
    Ok(())
}

/// Listens on `host:port`, saying plainly which of the two is wrong when it cannot.
async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener> {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(_) => Vec::new(),
    };
    if addrs.is_empty() {
        anyhow::bail!(
            "--host {host:?} is not a valid address; give an IP address or host name of this machine, like 127.0.0.1 or 0.0.0.0"
        );
    }
    tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "cannot listen on {host}:{port}; is another cache (devcache, devpi) running there? stop it or pick another --port"
            ),
            _ => anyhow::anyhow!(
                "cannot listen on {host}:{port} ({e}); pick an address of this machine with --host"
            ),
        })
}

/// pip writes the `+` of `/root/pypi/+f/` as `%2B`; routes are matched on the raw path,
/// so it is decoded first.
async fn decode_plus(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.contains("%2B") || path.contains("%2b") {
        let decoded = path.replace("%2B", "+").replace("%2b", "+");
        let rewritten = match request.uri().query() {
            Some(query) => format!("{decoded}?{query}"),
            None => decoded,
        };
        if let Ok(uri) = rewritten.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// A data directory served on 127.0.0.1 for the rest of this process.
pub struct LocalServer {
    pub addr: SocketAddr,
    cache: Cache,
}

impl LocalServer {
    /// Waits until every file a client was given is saved in the data directory.
    pub async fn settled(&self) {
        self.cache.settled().await;
    }
}

/// Serves a data directory on a free port of 127.0.0.1 for the rest of this process,
/// for commands that fill a cache through its HTTP API (`warm --data-dir`).
pub async fn spawn_local(config: &ServeConfig) -> Result<LocalServer> {
    // Another devcache may be serving this directory: its downloads in tmp/ stay.
    let (app, cache) = app(config, false)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let client_timeout = Duration::from_secs(config.client_timeout.value);
    tokio::spawn(connections::serve(
        listener,
        app,
        client_timeout,
        std::future::pending(),
        STOP_GRACE,
    ));
    Ok(LocalServer { addr, cache })
}

/// Prints where the server listens and the index URL to give pip.
fn announce(config: &ServeConfig, addr: SocketAddr) {
    let shown = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let upstream = match (&config.upstream.value, config.offline.value) {
        (_, true) => "offline: serving only what is cached".to_string(),
        (Some(url), false) => format!("caching {url}"),
        (None, false) => unreachable!("an online server always has an upstream"),
    };
    // One write, errors ignored: a closed stdout must not take the server down.
    let text = format!(
        "devcache {} listening on http://{addr}/ ({upstream})\npip index-url: http://{shown}{INDEX_PATH}\ndata: {}\n",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.value.display()
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
