//! The per-request record: started in `call`, finished exactly once by the future, the body, or its own
//! drop guard.

use quanta::Instant;
use std::sync::Arc;

use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use super::route::{ErrorKind, Raised, RouteEntry};
use crate::common::MethodKind;

/// One request in flight: the active gauge is incremented while it lives, and the duration histogram,
/// the gauge decrement and the end of the span happen exactly once, when it is finished or dropped.
///
/// Dropped without being finished, it records `error_type="cancelled"` (or `"panic"` when dropped
/// while the thread unwinds): the gauge never leaks.
#[derive(Debug)]
pub(crate) struct Recorder {
    route: Arc<RouteEntry>,
    method: MethodKind,
    status: u16,
    /// Where the active gauge was raised; taken when it is lowered.
    raised: Option<Raised>,
    extra: u64,
    start: Instant,
    cx: Option<Context>,
}

impl Recorder {
    #[inline]
    pub(crate) fn start(
        route: Arc<RouteEntry>,
        method: MethodKind,
        extra: u64,
        start: Instant,
        cx: Option<Context>,
    ) -> Self {
        let raised = Some(route.raise(method));
        Self {
            route,
            method,
            status: 0,
            raised,
            extra,
            start,
            cx,
        }
    }

    /// The context to attach while polling: the parent context with the server span and the order.
    #[inline]
    pub(crate) fn context(&self) -> Option<&Context> {
        self.cx.as_ref()
    }

    /// Notes the response status and puts it on the span, with attributes from the response hook.
    #[inline]
    pub(crate) fn response(&mut self, status: http::StatusCode, attributes: Vec<KeyValue>) {
        self.status = status.as_u16();
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(self.status),
            ));
            if !attributes.is_empty() {
                span.set_attributes(attributes);
            }
        }
    }

    /// Finishes the record. `error` is [`ErrorKind::None`] for a complete response; a 5xx status then
    /// still counts as an error.
    #[inline]
    pub(crate) fn finish(mut self, error: ErrorKind) {
        self.record(error, None);
    }

    /// Finishes the record of a panic caught by the layer.
    pub(crate) fn finish_panic(mut self, message: Option<String>) {
        self.response(http::StatusCode::INTERNAL_SERVER_ERROR, Vec::new());
        self.record(ErrorKind::Panic, message);
    }

    fn record(&mut self, mut error: ErrorKind, message: Option<String>) {
        let Some(raised) = self.raised.take() else {
            return;
        };
        if error == ErrorKind::None && self.status >= 500 {
            error = ErrorKind::Status;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        self.route
            .record_duration(self.method, self.status, error, self.extra, seconds);
        self.route.lower(self.method, raised);
        if let Some(cx) = self.cx.take() {
            let span = cx.span();
            match error {
                ErrorKind::None => {}
                ErrorKind::Status => {
                    span.set_attribute(KeyValue::new("error.type", self.status.to_string()));
                    span.set_status(Status::error(""));
                }
                other => {
                    let kind = other.static_str().unwrap_or("_OTHER");
                    span.set_attribute(KeyValue::new("error.type", kind));
                    if let Some(message) = message {
                        span.add_event(
                            "exception",
                            vec![
                                KeyValue::new("exception.type", "panic"),
                                KeyValue::new("exception.message", message),
                            ],
                        );
                    }
                    span.set_status(Status::error(kind));
                }
            }
            span.end();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.raised.is_some() {
            let error = if std::thread::panicking() {
                ErrorKind::Panic
            } else {
                ErrorKind::Cancelled
            };
            self.record(error, None);
        }
    }
}
