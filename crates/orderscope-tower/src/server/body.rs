//! The response body wrapper: the request is recorded when its body ends, so streaming responses are
//! measured whole.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::record::Recorder;
use super::route::ErrorKind;

/// Response body of [`Server`](super::Server): the inner body, unchanged, with the request's record.
///
/// The duration histogram, the active gauge and the server span are finished when the body reaches
/// its end or fails. A body dropped before its end is a response the client abandoned: it is recorded
/// with `error_type="cancelled"`. (Bodies that are empty from the start are recorded when the response
/// head is ready.)
#[pin_project]
pub struct ResponseBody<B> {
    #[pin]
    inner: Option<B>,
    recorder: Option<Recorder>,
}

impl<B> ResponseBody<B> {
    #[inline]
    pub(crate) fn new(inner: B, recorder: Option<Recorder>) -> Self {
        Self {
            inner: Some(inner),
            recorder,
        }
    }

    /// An empty body (the response to a caught panic).
    pub(crate) fn empty() -> Self {
        Self {
            inner: None,
            recorder: None,
        }
    }

    /// The inner body, `None` for the empty body of a caught panic.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("recording", &self.recorder.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(mut inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let poll = match this.recorder.as_ref().and_then(Recorder::context) {
            // A streaming body (its length not known up front) may log while it produces
            // frames: it gets the request's trace and order. A body of known length (a buffer,
            // the common case) runs no request code here and is polled as it is.
            Some(otel) if inner.size_hint().exact().is_none() => {
                let _guard = otel.clone().attach();
                inner.as_mut().poll_frame(cx)
            }
            _ => inner.as_mut().poll_frame(cx),
        };
        match &poll {
            Poll::Ready(None) => {
                if let Some(recorder) = this.recorder.take() {
                    recorder.finish(ErrorKind::None);
                }
            }
            Poll::Ready(Some(Ok(_))) => {
                if this.recorder.is_some()
                    && inner.is_end_stream()
                    && let Some(recorder) = this.recorder.take()
                {
                    recorder.finish(ErrorKind::None);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(recorder) = this.recorder.take() {
                    recorder.finish(ErrorKind::Body);
                }
            }
            Poll::Pending => {}
        }
        poll
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}
