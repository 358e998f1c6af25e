//! The HTTP server: devpi's URL layout over the store, the page cache and fills.
//!
//! ```text
//! /root/pypi/+simple/[<project>/]   simple API, HTML or JSON by Accept (simple.rs)
//! /simple/[<project>/]              the same pages
//! /root/pypi/+f/<project>/<key>/<filename>[.metadata]   files (files.rs)
//! /+status  /                      counters as JSON, and a page for people (status.rs)
//! /metrics                          Prometheus text (metrics.rs)
//! https://<file host>/.../<filename>  with --tls-port: locked installs (locked.rs)
//! ```

mod access_log;
mod clients;
mod connections;
mod files;
mod locked;
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
use crate::upstream::Upstream;
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

/// The routes of a server: the index, and locked installs' file hosts.
struct Apps {
    index: Router,
    file_hosts: Router,
    cache: Cache,
}

/// Builds the application for a configuration: the store opened and the upstream
/// client made (none when offline). The server that owns the data directory removes
/// what a previous run left in `tmp/`.
fn app(config: &ServeConfig, owns_data_dir: bool) -> Result<Apps> {
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
            config.caps(),
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
    let file_hosts = Router::new()
        .fallback(locked::file)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access_log::log_file_host,
        ))
        .with_state(state.clone());
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
    Ok(Apps {
        index: Router::new().fallback_service(normalised),
        file_hosts,
        cache,
    })
}

/// Runs `devcache serve` until Ctrl-C or SIGTERM, then lets answers and downloads under
/// way finish, within `--stop-grace` (docker stop allows 10 s before it kills).
pub async fn run(config: ServeConfig) -> Result<()> {
    return_large_buffers();
    let Apps {
        index,
        file_hosts,
        cache,
    } = app(&config, true)?;
    let listener = bind(&config.host.value, config.port.value).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let client_timeout = Duration::from_secs(config.client_timeout.value);
    let grace = Duration::from_secs(config.stop_grace.value);
    let tls = match config.tls_port.value {
        Some(port) => {
            let tls_listener = bind(&config.host.value, port).await?;
            let tls_addr = tls_listener.local_addr()?;
            let presenter = Arc::new(crate::tls::Presenter::new(&config.data_dir.value));
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(presenter.server_config()));
            let serving = tokio::spawn(connections::serve(
                tls_listener,
                file_hosts,
                Some(acceptor),
                client_timeout,
                stopped(stop_rx.clone()),
                grace,
            ));
            Some((serving, tls_addr))
        }
        None => None,
    };
    announce(&config, addr, tls.as_ref().map(|(_, addr)| *addr));
    let stopping = std::sync::OnceLock::new();
    let stop = async {
        shutdown_signal().await;
        let _ = stopping.set(Instant::now());
        let _ = stop_tx.send(true);
    };
    connections::serve(listener, index, None, client_timeout, stop, grace).await;
    if let Some((serving, _)) = tls {
        let _ = serving.await;
    }
    let left = grace.saturating_sub(stopping.get().map_or(Duration::ZERO, Instant::elapsed));
    let running = cache.writes_running();
    if running > 0 {
        tracing::info!("waiting for {running} download(s) and save(s) under way to finish");
        if tokio::time::timeout(left, cache.settled()).await.is_err() {
            tracing::warn!("stopping with downloads unfinished; the next start discards them");
        }
    }
    Ok(())
}

/// Has the allocator give buffers of 1 MiB and more back to the system when they are
/// freed. glibc otherwise raises that threshold to the largest buffer freed so far (up
/// to 32 MiB), so that the transient buffers of a page of many links (its upstream body,
/// lists while they grow) end up in the heap, where the process keeps their memory:
/// about 25 MiB of a page of 100,000 links.
fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator, before any large
    // allocation of the server.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
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
    return_large_buffers();
    // Another devcache may be serving this directory: its downloads in tmp/ stay.
    let Apps { index, cache, .. } = app(config, false)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let client_timeout = Duration::from_secs(config.client_timeout.value);
    tokio::spawn(connections::serve(
        listener,
        index,
        None,
        client_timeout,
        std::future::pending(),
        Duration::from_secs(config.stop_grace.value),
    ));
    Ok(LocalServer { addr, cache })
}

/// Prints where the server listens and the index URL to give pip.
fn announce(config: &ServeConfig, addr: SocketAddr, tls: Option<SocketAddr>) {
    let shown = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let upstream = match (&config.upstream.value, config.offline.value) {
        (_, true) => "offline: serving only what is cached".to_string(),
        (Some(url), false) => format!("caching {}", crate::upstream::shown(url.as_str())),
        (None, false) => unreachable!("an online server always has an upstream"),
    };
    // One write, errors ignored: a closed stdout must not take the server down.
    let text = format!(
        "devcache {} listening on http://{addr}/ ({upstream})\npip index-url: http://{shown}{INDEX_PATH}\ndata: {}\n",
        env!("CARGO_PKG_VERSION"),
        config.data_dir.value.display()
    );
    let tls = tls.map_or(String::new(), |tls| {
        format!("locked installs: TLS on {tls} for the file hosts `devcache tls issue` names\n")
    });
    let text = format!("{text}{tls}");
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
