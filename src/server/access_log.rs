//! One log line per request (client address, installer, method, path, status,
//! bytes, time, hit/miss), written when the response body ends, so the byte count is
//! what the client got. Request lines go to stdout (the target [`ACCESS`]), so
//! `devcache logs | grep miss` finds them; health checks (`/+status`) are at debug.

/// The tracing target of request lines, which `serve` writes to stdout.
pub const ACCESS: &str = "access";

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::clients::installer;
use super::{AppState, Outcome, State};
use crate::api::{FILES_PATH, INDEX_PATH, METRICS_PATH, OUTCOME_HEADER, SIMPLE_PATH, STATUS_PATH};
use crate::metrics::{Route, metrics};

pub async fn log(state: State, request: Request, next: Next) -> Response {
    logged(state, request, next, false).await
}

/// The same for locked installs' file hosts, whose every request is for a file.
pub async fn log_file_host(state: State, request: Request, next: Next) -> Response {
    logged(state, request, next, true).await
}

async fn logged(state: State, request: Request, next: Next, file_host: bool) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = next.run(request).await;
    let outcome = response.extensions().get::<Outcome>().copied();
    if let Some(outcome) = outcome {
        let counter = match outcome {
            Outcome::Hit | Outcome::Revalidated => &state.counters.hits,
            Outcome::Miss => &state.counters.misses,
            Outcome::Stale => &state.counters.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        response.headers_mut().insert(
            OUTCOME_HEADER,
            axum::http::HeaderValue::from_static(outcome.as_str()),
        );
    }
    let status = response.status().as_u16();
    let (parts, inner) = response.into_parts();
    let length = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = LoggedBody {
        length,
        // HEAD and empty answers are never polled to their end.
        finished: method == Method::HEAD || inner.is_end_stream(),
        inner,
        method,
        path,
        status,
        outcome,
        started,
        bytes: 0,
        client,
        user_agent,
        file_host,
        state: state.0.clone(),
    };
    Response::from_parts(parts, Body::new(body))
}

struct LoggedBody {
    inner: Body,
    /// The Content-Length, after which hyper stops polling the body.
    length: Option<u64>,
    method: Method,
    path: String,
    status: u16,
    outcome: Option<Outcome>,
    started: Instant,
    bytes: u64,
    finished: bool,
    client: Option<IpAddr>,
    user_agent: Option<String>,
    /// Asked of a locked install's file host: a file, whatever its path.
    file_host: bool,
    state: Arc<AppState>,
}

/// The route a path asks for, as `/metrics` counts requests.
fn route_of(path: &str) -> Route {
    if let Some(rest) = path.strip_prefix(FILES_PATH) {
        return if rest.ends_with(".metadata") {
            Route::Metadata
        } else {
            Route::File
        };
    }
    match path
        .strip_prefix(INDEX_PATH)
        .or_else(|| path.strip_prefix(SIMPLE_PATH))
    {
        Some("") => Route::Index,
        Some(_) => Route::Page,
        None if path == STATUS_PATH || path == "/" => Route::Status,
        None if path == METRICS_PATH => Route::Metrics,
        None => Route::Other,
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        metrics().request(
            if self.file_host {
                Route::File
            } else {
                route_of(&self.path)
            },
            self.outcome.map(Outcome::as_str),
            self.bytes,
        );
        let installer = installer(self.user_agent.as_deref());
        if let (Some(client), Some(outcome)) = (self.client, self.outcome) {
            self.state
                .clients
                .record(client, installer, outcome, self.bytes);
        }
        let client = self.client.map_or("-".to_string(), |c| c.to_string());
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (method, path, status, bytes, outcome) = (
            &self.method,
            &self.path,
            self.status,
            self.bytes,
            self.outcome.map_or("-", Outcome::as_str),
        );
        let line =
            format!("{client} {installer} {method} {path} {status} {bytes}B {ms:.1}ms {outcome}");
        if !self.finished {
            tracing::warn!(target: ACCESS, "{line} (connection closed before the end)");
        } else if path == STATUS_PATH {
            tracing::debug!(target: ACCESS, "{line}");
        } else {
            tracing::info!(target: ACCESS, "{line}");
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                // A body of known length is not polled again after its last frame.
                this.finished |= this.inner.is_end_stream() || Some(this.bytes) == this.length;
            }
            Poll::Ready(None) => this.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route() {
        for (path, route) in [
            ("/root/pypi/+simple/", "Index"),
            ("/simple/django/", "Page"),
            (
                "/root/pypi/+f/django/ab/django-5.0-py3-none-any.whl",
                "File",
            ),
            (
                "/root/pypi/+f/django/ab/django-5.0-py3-none-any.whl.metadata",
                "Metadata",
            ),
            ("/+status", "Status"),
            ("/metrics", "Metrics"),
            ("/favicon.ico", "Other"),
        ] {
            assert_eq!(format!("{:?}", route_of(path)), route, "{path}");
        }
    }
}
