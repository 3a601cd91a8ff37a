//! The response future of [`Server`](super::Server).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project::pin_project;

use super::body::ResponseBody;
use super::hook::{OnResponse, SpanAttributes};
use super::record::Recorder;
use super::route::ErrorKind;

/// Response future of [`Server`](super::Server).
///
/// Attaches the request's OpenTelemetry context (server span and order) around every poll of the
/// inner future, and hands the request's record to the [`ResponseBody`] when the response head is
/// ready. Dropped before that, the request is recorded as cancelled.
#[pin_project]
pub struct ResponseFuture<F, R> {
    // Declared before `inner`, so it is dropped first: a cancelled request is recorded before the
    // handler's future (and whatever it holds) goes away.
    recorder: Option<Recorder>,
    #[pin]
    inner: Option<F>,
    panic: Option<Box<dyn Any + Send + 'static>>,
    catch_panic: bool,
    head_only: bool,
    on_response: R,
}

impl<F, R> ResponseFuture<F, R> {
    #[inline]
    pub(crate) fn new(
        inner: Result<F, Box<dyn Any + Send + 'static>>,
        recorder: Option<Recorder>,
        catch_panic: bool,
        head_only: bool,
        on_response: R,
    ) -> Self {
        let (inner, panic) = match inner {
            Ok(inner) => (Some(inner), None),
            Err(panic) => (None, Some(panic)),
        };
        Self {
            inner,
            recorder,
            panic,
            catch_panic,
            head_only,
            on_response,
        }
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("recording", &self.recorder.is_some())
            .field("catch_panic", &self.catch_panic)
            .finish_non_exhaustive()
    }
}

/// The response to a caught panic: `500 Internal Server Error` with an empty body.
fn panic_response<B>(
    recorder: Option<Recorder>,
    payload: Option<Box<dyn Any + Send + 'static>>,
) -> Response<ResponseBody<B>> {
    if let Some(recorder) = recorder {
        let message = payload.as_deref().and_then(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
        });
        recorder.finish_panic(message);
    }
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

impl<F, B, E, R> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    R: OnResponse,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // `call` itself panicked, or a panic was already answered.
            let payload = this.panic.take();
            return Poll::Ready(Ok(panic_response(this.recorder.take(), payload)));
        };

        let guard = this
            .recorder
            .as_ref()
            .and_then(Recorder::context)
            .map(|otel| otel.clone().attach());
        let polled = if *this.catch_panic {
            match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(polled) => polled,
                Err(payload) => {
                    drop(guard);
                    this.inner.set(None);
                    return Poll::Ready(Ok(panic_response(this.recorder.take(), Some(payload))));
                }
            }
        } else {
            inner.poll(cx)
        };
        drop(guard);

        match ready!(polled) {
            Ok(response) => {
                let Some(mut recorder) = this.recorder.take() else {
                    return Poll::Ready(Ok(response.map(|body| ResponseBody::new(body, None))));
                };
                let (parts, body) = response.into_parts();
                let mut attributes = Vec::new();
                if recorder.context().is_some() && this.on_response.is_active() {
                    this.on_response
                        .on_response(&parts, &mut SpanAttributes::new(&mut attributes));
                }
                recorder.response(parts.status, attributes);
                let recorder = if *this.head_only || body.is_end_stream() {
                    // No body will follow (HEAD, or empty): the request is complete.
                    recorder.finish(ErrorKind::None);
                    None
                } else {
                    Some(recorder)
                };
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    ResponseBody::new(body, recorder),
                )))
            }
            Err(error) => {
                if let Some(recorder) = this.recorder.take() {
                    recorder.finish(ErrorKind::Service);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}
