//! Extension points: attributes the service adds to the server span.

use opentelemetry::KeyValue;

/// Most attributes one hook call may add; further ones are ignored.
pub const MAX_HOOK_ATTRIBUTES: usize = 16;

/// Attributes a hook adds to the server span, at most [`MAX_HOOK_ATTRIBUTES`] per call.
#[derive(Debug)]
pub struct SpanAttributes<'a> {
    attributes: &'a mut Vec<KeyValue>,
    remaining: usize,
}

impl<'a> SpanAttributes<'a> {
    pub(crate) fn new(attributes: &'a mut Vec<KeyValue>) -> Self {
        Self {
            attributes,
            remaining: MAX_HOOK_ATTRIBUTES,
        }
    }

    /// Adds an attribute. Ignored once [`MAX_HOOK_ATTRIBUTES`] were added by this call.
    ///
    /// Use keys and values from bounded sets where you can: a span attribute is not a metric label,
    /// but it is indexed and stored with every span.
    pub fn insert(&mut self, attribute: KeyValue) {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.attributes.push(attribute);
        }
    }

    /// How many more attributes this call may add.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

/// Adds attributes to the server span from the request head, before the span starts (so samplers
/// see them).
///
/// Implemented for closures `Fn(&http::request::Parts, &mut SpanAttributes<'_>)`.
///
/// # Example
///
/// ```
/// use opentelemetry::KeyValue;
/// use orderscope_tower::server::{ServerLayer, SpanAttributes};
///
/// let layer = ServerLayer::new().on_request(
///     |request: &http::request::Parts, attributes: &mut SpanAttributes<'_>| {
///         if let Some(tenant) = request.headers.get("x-tenant").and_then(|v| v.to_str().ok()) {
///             attributes.insert(KeyValue::new("tenant", tenant.to_owned()));
///         }
///     },
/// );
/// # let _ = layer;
/// ```
pub trait OnRequest: Clone + Send + Sync + 'static {
    /// Adds attributes from `request`.
    fn on_request(&self, request: &http::request::Parts, attributes: &mut SpanAttributes<'_>);

    /// `false` when the hook never adds anything, which lets the layer skip calling it.
    #[doc(hidden)]
    fn is_active(&self) -> bool {
        true
    }
}

impl<F> OnRequest for F
where
    F: Fn(&http::request::Parts, &mut SpanAttributes<'_>) + Clone + Send + Sync + 'static,
{
    fn on_request(&self, request: &http::request::Parts, attributes: &mut SpanAttributes<'_>) {
        self(request, attributes);
    }
}

/// The default [`OnRequest`]: adds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultOnRequest;

impl OnRequest for DefaultOnRequest {
    #[inline]
    fn on_request(&self, _: &http::request::Parts, _: &mut SpanAttributes<'_>) {}

    #[inline]
    fn is_active(&self) -> bool {
        false
    }
}

/// Adds attributes to the server span from the response head.
///
/// Implemented for closures `Fn(&http::response::Parts, &mut SpanAttributes<'_>)`.
///
/// # Example
///
/// ```
/// use opentelemetry::KeyValue;
/// use orderscope_tower::server::{ServerLayer, SpanAttributes};
///
/// let layer = ServerLayer::new().on_response(
///     |response: &http::response::Parts, attributes: &mut SpanAttributes<'_>| {
///         if response.headers.contains_key("x-cache-hit") {
///             attributes.insert(KeyValue::new("cache.hit", true));
///         }
///     },
/// );
/// # let _ = layer;
/// ```
pub trait OnResponse: Clone + Send + Sync + 'static {
    /// Adds attributes from `response`.
    fn on_response(&self, response: &http::response::Parts, attributes: &mut SpanAttributes<'_>);

    /// `false` when the hook never adds anything, which lets the layer skip calling it.
    #[doc(hidden)]
    fn is_active(&self) -> bool {
        true
    }
}

impl<F> OnResponse for F
where
    F: Fn(&http::response::Parts, &mut SpanAttributes<'_>) + Clone + Send + Sync + 'static,
{
    fn on_response(&self, response: &http::response::Parts, attributes: &mut SpanAttributes<'_>) {
        self(response, attributes);
    }
}

/// The default [`OnResponse`]: adds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultOnResponse;

impl OnResponse for DefaultOnResponse {
    #[inline]
    fn on_response(&self, _: &http::response::Parts, _: &mut SpanAttributes<'_>) {}

    #[inline]
    fn is_active(&self) -> bool {
        false
    }
}
