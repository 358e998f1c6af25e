//! A real HTTP index on 127.0.0.1 for the tests: pages in HTML and/or JSON, files,
//! request counters, and fault modes (status codes, truncated or wrong bytes, slow
//! answers, down).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::dists::Dist;

/// Which page formats the upstream speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PageFormat {
    Html,
    Json,
    /// Chosen by Accept, as PyPI does.
    Both,
}

/// How file links are written in pages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Links {
    Absolute,
    Relative,
}

/// A misbehaviour for a file or for every page.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    /// Announce the full length, send half, close.
    Truncate,
    /// The right length, one byte flipped.
    WrongBytes,
    /// Wait before answering at all.
    SlowStart(Duration),
    /// Send the body in chunks of this size, pausing between them.
    SlowBody(usize, Duration),
    /// No Content-Length: the real bytes, then filler until this many bytes in all.
    Endless(u64),
}

/// A body of `total` bytes that starts with `head` and goes on with filler, sent
/// without a Content-Length.
fn endless(head: Bytes, total: u64) -> Body {
    const CHUNK: u64 = 64 * 1024;
    let filler = Bytes::from(vec![b'x'; CHUNK as usize]);
    let stream = futures::stream::unfold(0u64, move |at| {
        let (head, filler) = (head.clone(), filler.clone());
        async move {
            if at >= total {
                return None;
            }
            let chunk = if at == 0 && !head.is_empty() {
                head
            } else {
                filler.slice(..(total - at).min(CHUNK) as usize)
            };
            let next = at + chunk.len() as u64;
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    Body::from_stream(stream)
}

#[derive(Default)]
pub struct Shared {
    projects: HashMap<String, Vec<Dist>>,
    file_faults: HashMap<String, Fault>,
    page_fault: Option<Fault>,
    requests: HashMap<String, usize>,
    /// Of `requests`: those with a `Range` header, and `HEAD`s.
    ranged: HashMap<String, usize>,
    heads: HashMap<String, usize>,
    /// File bytes sent in bodies, ranges included.
    bytes_sent: u64,
    not_modified: usize,
    /// Answer every file request in whole, as an upstream without range support does.
    no_ranges: bool,
    /// Pages offer no core metadata and `.metadata` files are 404, as older mirrors do.
    no_metadata: bool,
    /// Files whose ranges are cut from other bytes than the whole file's, as an
    /// upstream (or a proxy in front of it) that lies in its ranges.
    range_bytes: HashMap<String, Vec<u8>>,
    /// The `Authorization` header every page and file request must carry, as a private
    /// index asks; without it the answer is 401.
    authorization: Option<String>,
}

impl Shared {
    /// Whether a request with `headers` may be answered.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        self.authorization.as_deref().is_none_or(|wanted| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                == Some(wanted)
        })
    }
}

pub struct TestUpstream {
    pub addr: SocketAddr,
    format: PageFormat,
    links: Links,
    shared: Arc<Mutex<Shared>>,
    stop: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl TestUpstream {
    pub async fn start(format: PageFormat, links: Links) -> Self {
        Self::start_with(format, links, None).await
    }

    async fn start_with(
        format: PageFormat,
        links: Links,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let mut upstream = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            format,
            links,
            shared: Arc::default(),
            stop: None,
            tls,
        };
        upstream.listen().await;
        upstream
    }

    /// An upstream on https://localhost with a certificate from a private CA, as behind
    /// a corporate proxy. The CA's certificate is written to `ca_file` (PEM).
    pub async fn start_tls(format: PageFormat, links: Links, ca_file: &std::path::Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "devcache test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(ca_file, ca_cert.pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params
            .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_with(format, links, Some(acceptor)).await
    }

    /// The index URL to give devcache.
    pub fn index_url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}/simple/", self.addr.port()),
            None => format!("http://{}/simple/", self.addr),
        }
    }

    pub fn add(&self, project: &str, dist: Dist) {
        let mut shared = self.shared.lock().unwrap();
        shared
            .projects
            .entry(project.to_string())
            .or_default()
            .push(dist);
    }

    pub fn fault_file(&self, filename: &str, fault: Option<Fault>) {
        let mut shared = self.shared.lock().unwrap();
        match fault {
            Some(fault) => shared.file_faults.insert(filename.to_string(), fault),
            None => shared.file_faults.remove(filename),
        };
    }

    /// Whole files only: `Range` headers are ignored.
    pub fn refuse_ranges(&self) {
        self.shared.lock().unwrap().no_ranges = true;
    }

    /// Pages and files only for requests with this user and password (basic auth).
    pub fn require_basic_auth(&self, user: &str, password: &str) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.shared.lock().unwrap().authorization = Some(format!("Basic {token}"));
    }

    /// Ranges of `filename` are cut from `bytes`; a whole `GET` still sends the file.
    pub fn lie_in_ranges(&self, filename: &str, bytes: Vec<u8>) {
        let mut shared = self.shared.lock().unwrap();
        shared.range_bytes.insert(filename.to_string(), bytes);
    }

    /// No core metadata on pages and no `.metadata` files.
    pub fn without_metadata(&self) {
        self.shared.lock().unwrap().no_metadata = true;
    }

    /// Requests for `path` that carried a `Range` header.
    pub fn range_requests(&self, path: &str) -> usize {
        let shared = self.shared.lock().unwrap();
        shared.ranged.get(path).copied().unwrap_or(0)
    }

    /// `GET`s of `path` for the whole file.
    pub fn downloads(&self, path: &str) -> usize {
        let shared = self.shared.lock().unwrap();
        let count = |map: &HashMap<String, usize>| map.get(path).copied().unwrap_or(0);
        count(&shared.requests) - count(&shared.ranged) - count(&shared.heads)
    }

    /// File bytes sent so far, in whole files and ranges.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.lock().unwrap().bytes_sent
    }

    pub fn fault_pages(&self, fault: Option<Fault>) {
        self.shared.lock().unwrap().page_fault = fault;
    }

    /// How many requests reached `path` (e.g. `/files/x.whl` or `/simple/demo/`).
    pub fn requests(&self, path: &str) -> usize {
        self.shared
            .lock()
            .unwrap()
            .requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_requests(&self) -> usize {
        self.shared.lock().unwrap().requests.values().sum()
    }

    pub fn not_modified_answers(&self) -> usize {
        self.shared.lock().unwrap().not_modified
    }

    /// Stops answering: new connections are refused, idle ones closed.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.stop.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Listens again on the same port.
    pub async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/simple/{project}/", get(page))
            // devcache's own layout, so it can stand in for a cache (`warm --url`).
            .route("/root/pypi/+simple/{project}/", get(page))
            .route("/files/{filename}", get(file))
            .with_state((self.shared.clone(), self.format, self.links));
        let (tx, rx) = oneshot::channel::<()>();
        if let Some(acceptor) = self.tls.clone() {
            let task = tokio::spawn(serve_tls(listener, acceptor, app, rx));
            self.stop = Some((tx, task));
            return;
        }
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.stop = Some((tx, task));
    }
}

/// Serves `app` over TLS until `stop` fires.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted.unwrap(),
            _ = &mut stop => return,
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

type AppState = State<(Arc<Mutex<Shared>>, PageFormat, Links)>;

async fn page(
    State((shared, format, links)): AppState,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (dists, fault) = {
        let mut shared = shared.lock().unwrap();
        *shared
            .requests
            .entry(format!("/simple/{project}/"))
            .or_default() += 1;
        if !shared.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let no_metadata = shared.no_metadata;
        let dists = shared.projects.get(&project).cloned().map(|mut dists| {
            if no_metadata {
                dists.iter_mut().for_each(|d| d.metadata = None);
            }
            dists
        });
        (dists, shared.page_fault.clone())
    };
    match fault {
        Some(Fault::Status(code)) => return StatusCode::from_u16(code).unwrap().into_response(),
        Some(Fault::SlowStart(delay)) => tokio::time::sleep(delay).await,
        _ => {}
    }
    let Some(dists) = dists else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(Fault::Endless(total)) = fault {
        let head = Bytes::from_static(b"<!DOCTYPE html><html><body>\n");
        return ([(header::CONTENT_TYPE, "text/html")], endless(head, total)).into_response();
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json = match format {
        PageFormat::Html => false,
        PageFormat::Json => true,
        PageFormat::Both => accept.contains("application/vnd.pypi.simple.v1+json"),
    };
    let link = |d: &Dist| match links {
        Links::Absolute => format!("http://HOST/files/{}", d.filename),
        Links::Relative => format!("../../files/{}", d.filename),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (body, content_type) = if json {
        let files: Vec<serde_json::Value> = dists
            .iter()
            .map(|d| {
                let mut file = serde_json::json!({
                    "filename": d.filename,
                    "url": link(d).replace("HOST", &host),
                    "hashes": {"sha256": d.sha256()},
                    "size": d.bytes.len(),
                    "upload-time": "2024-05-01T12:00:00.000000Z",
                });
                if let Some(rp) = &d.requires_python {
                    file["requires-python"] = rp.clone().into();
                }
                if let Some(reason) = &d.yanked {
                    file["yanked"] = if reason.is_empty() {
                        true.into()
                    } else {
                        reason.clone().into()
                    };
                }
                if let Some(metadata) = &d.metadata {
                    file["core-metadata"] =
                        serde_json::json!({"sha256": hex::encode(sha2::Sha256::digest(metadata))});
                }
                file
            })
            .collect();
        let page = serde_json::json!({"meta": {"api-version": "1.1"}, "name": project, "files": files, "versions": []});
        (page.to_string(), "application/vnd.pypi.simple.v1+json")
    } else {
        let mut html = String::from("<!DOCTYPE html><html><body>\n");
        for d in &dists {
            let mut attrs = String::new();
            if let Some(rp) = &d.requires_python {
                attrs.push_str(&format!(
                    " data-requires-python=\"{}\"",
                    rp.replace('>', "&gt;").replace('<', "&lt;")
                ));
            }
            if let Some(reason) = &d.yanked {
                attrs.push_str(&format!(" data-yanked=\"{reason}\""));
            }
            if let Some(metadata) = &d.metadata {
                attrs.push_str(&format!(
                    " data-dist-info-metadata=\"sha256={}\"",
                    hex::encode(sha2::Sha256::digest(metadata))
                ));
            }
            html.push_str(&format!(
                "<a href=\"{}#sha256={}\"{attrs}>{}</a><br/>\n",
                link(d).replace("HOST", &host),
                d.sha256(),
                d.filename
            ));
        }
        html.push_str("</body></html>\n");
        (html, "text/html")
    };
    let etag = format!(
        "\"{}\"",
        &hex::encode(sha2::Sha256::digest(body.as_bytes()))[..16]
    );
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        shared.lock().unwrap().not_modified += 1;
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

use sha2::Digest;

async fn file(
    State((shared, _, _)): AppState,
    method: axum::http::Method,
    Path(filename): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/files/{filename}");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (found, fault, ranges) = {
        let mut shared = shared.lock().unwrap();
        *shared.requests.entry(path.clone()).or_default() += 1;
        if method == axum::http::Method::HEAD {
            *shared.heads.entry(path.clone()).or_default() += 1;
        } else if range.is_some() {
            *shared.ranged.entry(path.clone()).or_default() += 1;
        }
        if !shared.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let base = filename.strip_suffix(".metadata");
        let no_metadata = shared.no_metadata;
        let found = shared.projects.values().flatten().find_map(|d| {
            if d.filename == filename {
                Some(d.bytes.clone())
            } else if base == Some(d.filename.as_str()) && !no_metadata {
                d.metadata.clone()
            } else {
                None
            }
        });
        (
            found.map(|whole| (shared.range_bytes.get(&filename).cloned(), whole)),
            shared.file_faults.get(&filename).cloned(),
            !shared.no_ranges,
        )
    };
    let Some((range_bytes, bytes)) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = bytes.len();
    if method != axum::http::Method::HEAD {
        shared.lock().unwrap().bytes_sent += len as u64;
    }
    if let Some(range) = range.filter(|_| ranges && fault.is_none()) {
        return ranged(&shared, range_bytes.unwrap_or(bytes), &range);
    }
    let body = match fault {
        None => Body::from(bytes),
        Some(Fault::Endless(total)) => return endless(Bytes::from(bytes), total).into_response(),
        Some(Fault::Status(code)) => return StatusCode::from_u16(code).unwrap().into_response(),
        Some(Fault::SlowStart(delay)) => {
            tokio::time::sleep(delay).await;
            Body::from(bytes)
        }
        Some(Fault::WrongBytes) => {
            let mut bytes = bytes;
            bytes[len / 2] ^= 0xff;
            Body::from(bytes)
        }
        Some(Fault::Truncate) => {
            let half = Bytes::from(bytes).slice(..len / 2);
            let stream = futures::stream::iter(vec![
                Ok(half),
                Err(std::io::Error::other("truncated on purpose")),
            ]);
            Body::from_stream(stream)
        }
        Some(Fault::SlowBody(chunk, delay)) => {
            let bytes = Bytes::from(bytes);
            let stream = futures::stream::unfold(0usize, move |at| {
                let bytes = bytes.clone();
                async move {
                    if at >= bytes.len() {
                        return None;
                    }
                    if at > 0 {
                        tokio::time::sleep(delay).await;
                    }
                    let end = (at + chunk).min(bytes.len());
                    Some((Ok::<_, std::io::Error>(bytes.slice(at..end)), end))
                }
            });
            Body::from_stream(stream)
        }
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if ranges {
        response
            .headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    response
}

/// A single-range answer (`a-b`, `a-` or `-n`), as a static file server gives it.
/// The whole file was counted as sent; the count is corrected to the range's bytes.
fn ranged(shared: &Mutex<Shared>, bytes: Vec<u8>, range: &str) -> Response {
    let len = bytes.len() as u64;
    let spec = range.trim().strip_prefix("bytes=").unwrap_or("");
    let (first, last) = spec.split_once('-').unwrap_or(("", ""));
    let (start, end) = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) => (start, end.min(len.saturating_sub(1))),
        (Ok(start), Err(_)) => (start, len.saturating_sub(1)),
        (Err(_), Ok(suffix)) => (len.saturating_sub(suffix), len.saturating_sub(1)),
        _ => (len, 0),
    };
    shared.lock().unwrap().bytes_sent -= len;
    if start >= len || start > end {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response();
    }
    let part = bytes[start as usize..=end as usize].to_vec();
    shared.lock().unwrap().bytes_sent += part.len() as u64;
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        part,
    )
        .into_response()
}
