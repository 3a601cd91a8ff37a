//! The response future of [`Client`](super::Client).

use quanta::Instant;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};
use pin_project::pin_project;

use super::layer::{ClientError, ClientShared, HostEntry};
use crate::common::MethodKind;

/// One outgoing request in flight; records exactly once, as cancelled when dropped unfinished.
#[derive(Debug)]
pub(crate) struct ClientRecorder {
    shared: Arc<ClientShared>,
    host: Arc<HostEntry>,
    method: MethodKind,
    start: Instant,
    cx: Option<opentelemetry::Context>,
    done: bool,
}

impl ClientRecorder {
    pub(crate) fn new(
        shared: Arc<ClientShared>,
        host: Arc<HostEntry>,
        method: MethodKind,
        start: Instant,
        cx: Option<opentelemetry::Context>,
    ) -> Self {
        Self {
            shared,
            host,
            method,
            start,
            cx,
            done: false,
        }
    }

    /// The client span's context, when the span is recorded.
    #[cfg(feature = "reqwest")]
    pub(crate) fn context(&self) -> Option<&opentelemetry::Context> {
        self.cx.as_ref()
    }

    /// Records the outcome: a response `status` (0 when none arrived) and its error class.
    #[cfg(feature = "reqwest")]
    pub(crate) fn finish(mut self, status: u16, error: ClientError) {
        self.record(status, error);
    }

    fn record(&mut self, status: u16, error: ClientError) {
        if self.done {
            return;
        }
        self.done = true;
        let seconds = self.start.elapsed().as_secs_f64();
        self.shared
            .record(&self.host, self.method, status, error, seconds);
        if let Some(cx) = self.cx.take() {
            let span = cx.span();
            if status != 0 {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            match error {
                ClientError::None => {}
                ClientError::Status => {
                    span.set_attribute(KeyValue::new("error.type", status.to_string()));
                    span.set_status(Status::error(""));
                }
                other => {
                    let kind = other.static_str().unwrap_or("_OTHER");
                    span.set_attribute(KeyValue::new("error.type", kind));
                    span.set_status(Status::error(kind));
                }
            }
            span.end();
        }
    }
}

impl Drop for ClientRecorder {
    fn drop(&mut self) {
        self.record(0, ClientError::Cancelled);
    }
}

/// Response future of [`Client`](super::Client): attaches the client span's context around each poll
/// of the inner future and records the request when the response head arrives.
#[pin_project]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    recorder: Option<ClientRecorder>,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, recorder: ClientRecorder) -> Self {
        Self {
            inner,
            recorder: Some(recorder),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.recorder.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let guard = this
            .recorder
            .as_ref()
            .and_then(|recorder| recorder.cx.clone())
            .map(opentelemetry::Context::attach);
        let result = ready!(this.inner.poll(cx));
        drop(guard);
        if let Some(mut recorder) = this.recorder.take() {
            match &result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let error = if status >= 400 {
                        ClientError::Status
                    } else {
                        ClientError::None
                    };
                    recorder.record(status, error);
                }
                Err(_) => recorder.record(0, ClientError::Service),
            }
        }
        Poll::Ready(result)
    }
}
