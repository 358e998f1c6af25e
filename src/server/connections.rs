//! Accepting connections and ending them: the part of serving that a hostile or
//! stalled client could otherwise hold hostage.
//!
//! A client gets `client_timeout` to send a request's headers, and an idle
//! keep-alive connection is closed after as long, so half-sent requests cannot pile
//! up. On stop, no new connection is accepted; connections with no answer under way
//! (idle, or a request half sent) carry no work and are closed at once, and those
//! sending an answer get a bounded time to finish: whatever the connections do, the
//! process ends within the stop grace period.
//! The same loop serves TLS (locked installs' file hosts): the handshake, too, must
//! finish within `client_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` completes,
/// then closes the connections with no answer under way and gives the others up to
/// `grace` to finish, and returns. Answers that outlast it are cut.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    client_timeout: Duration,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout);
    // Every connection's task holds a receiver: the sender sees them all gone when
    // the last connection has ended.
    let (stopping, watched) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Answers go out as soon as they are written: with Nagle's algorithm a
        // response written as headers then body waits for the client's delayed ACK
        // (40 ms on Linux) on every keep-alive request.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let answering = Arc::new(AtomicUsize::new(0));
        let service = {
            let (app, answering) = (app.clone(), answering.clone());
            tower::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
                let answer = Answer::start(&answering);
                let app = app.clone();
                async move {
                    let mut request = request.map(Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let response = app.oneshot(request).await?;
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(Answering {
                            body,
                            _answer: answer,
                        })
                    }))
                }
            })
        };
        let service = TowerToHyperService::new(service);
        let (builder, watched, tls) = (builder.clone(), watched.clone(), tls.clone());
        tokio::spawn(async move {
            let ended = match tls {
                None => answer_until_stopped(&builder, stream, service, watched, &answering).await,
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(client_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    answer_until_stopped(&builder, stream, service, watched, &answering).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
        });
    }
    drop((listener, watched));
    let _ = stopping.send(true);
    if tokio::time::timeout(grace, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!("closing the connections still open after {grace:?}");
    }
}

/// Serves one connection until it ends, or until the stop: then a connection with no
/// answer under way (idle, or a request not yet whole) is closed at once, and one
/// sending an answer is let finish it.
async fn answer_until_stopped<I, S>(
    builder: &Builder<TokioExecutor>,
    io: I,
    service: S,
    mut watched: watch::Receiver<bool>,
    answering: &AtomicUsize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::http::Response<Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        _ = watched.changed() => None,
    };
    match ended {
        Some(ended) => ended,
        None if answering.load(Ordering::SeqCst) == 0 => Ok(()),
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// One answer of a connection under way, from its request to the last byte of its
/// body; counted so that a stop knows which connections carry work.
struct Answer(Arc<AtomicUsize>);

impl Answer {
    fn start(answering: &Arc<AtomicUsize>) -> Self {
        answering.fetch_add(1, Ordering::SeqCst);
        Self(answering.clone())
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that counts as an answer under way until it is sent (or dropped).
struct Answering {
    body: Body,
    _answer: Answer,
}

impl HttpBody for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
