//! Route resolution and the per-route cache of metric handles and span names.
//!
//! Everything a request needs that depends only on `(route, method)` is resolved once and kept here:
//! the span name, the `http.route` attribute value, the active-requests gauge and the duration
//! histograms per `(status, error, extra labels)`. The request path then costs a compare of the
//! route string against the instance's last route, an index by method and a scan of a few
//! pre-filled slots.
//!
//! The handles are orderscope-metrics' [`HandleCell`]s, bound to the recorder current when they
//! record (a layer built before `orderscope::init` records into the recorder installed later); the
//! series limit and the overflow series are the shared [`SeriesBudget`] and [`Overflow`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use metrics::{Gauge, Histogram, Key, Label, SharedString};
use orderscope_metrics::{Bound, KeyedHandle, Overflow, SeriesBudget, SeriesLimit};

use crate::common::{METHOD_KINDS, MethodKind, intern_span_name};
use crate::names::{
    ACTIVE_REQUESTS, ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE,
    REQUEST_DURATION, UNMATCHED_ROUTE as UNMATCHED,
};

/// Labels of the active-requests overflow series.
const ACTIVE_LABELS: &[&str] = &[HTTP_REQUEST_METHOD, HTTP_ROUTE];

/// Extra label value for a value outside the declared set.
pub(crate) const OTHER_VALUE: &str = "_other";

/// How a request ended, as far as `error.type` is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ErrorKind {
    /// Not an error.
    None,
    /// A 5xx response: `error.type` is the status code.
    Status,
    /// The handler panicked.
    Panic,
    /// The request was dropped before the response was complete (the client went away).
    Cancelled,
    /// The inner service returned an error.
    Service,
    /// The response body failed while streaming.
    Body,
}

impl ErrorKind {
    /// The `error_type` label value, `None` when the label is absent.
    pub(crate) fn label(self, status: u16) -> Option<SharedString> {
        Some(match self {
            Self::None => return None,
            Self::Status => SharedString::from_owned(status.to_string()),
            Self::Panic => SharedString::const_str("panic"),
            Self::Cancelled => SharedString::const_str("cancelled"),
            Self::Service => SharedString::const_str("_OTHER"),
            Self::Body => SharedString::const_str("body_error"),
        })
    }

    /// The `error.type` span attribute value, `None` for [`ErrorKind::Status`] and [`ErrorKind::None`].
    pub(crate) const fn static_str(self) -> Option<&'static str> {
        match self {
            Self::None | Self::Status => None,
            Self::Panic => Some("panic"),
            Self::Cancelled => Some("cancelled"),
            Self::Service => Some("_OTHER"),
            Self::Body => Some("body_error"),
        }
    }
}

/// An extra metric label whose values come from a fixed set.
#[derive(Clone)]
pub(crate) struct LabelDef {
    pub(crate) name: &'static str,
    pub(crate) values: &'static [&'static str],
    #[allow(clippy::type_complexity)]
    pub(crate) classify:
        Arc<dyn Fn(&http::request::Parts) -> Option<&'static str> + Send + Sync + 'static>,
}

impl std::fmt::Debug for LabelDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelDef")
            .field("name", &self.name)
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl LabelDef {
    fn radix(&self) -> u64 {
        self.values.len() as u64 + 1
    }

    fn index(&self, parts: &http::request::Parts) -> u64 {
        match (self.classify)(parts) {
            Some(value) => self
                .values
                .iter()
                .position(|known| *known == value)
                .unwrap_or(self.values.len()) as u64,
            None => self.values.len() as u64,
        }
    }

    fn value(&self, index: u64) -> &'static str {
        self.values
            .get(index as usize)
            .copied()
            .unwrap_or(OTHER_VALUE)
    }
}

/// The metric side of a layer, shared by every route entry.
#[derive(Debug)]
pub(crate) struct MetricsShared {
    durations: SeriesBudget,
    active: SeriesBudget,
    labels: Vec<LabelDef>,
    /// Only touched when a budget is spent: boxed, so the struct the requests read stays small.
    overflow: Box<OverflowSeries>,
}

/// The overflow series of a layer's two server metrics.
#[derive(Debug)]
struct OverflowSeries {
    /// Labels of the duration overflow series: method, route, status and the extra labels.
    duration_labels: Vec<&'static str>,
    duration: Overflow<Histogram>,
    active: Overflow<Gauge>,
}

impl MetricsShared {
    pub(crate) fn new(series_limit: usize, labels: Vec<LabelDef>) -> Self {
        let limit = SeriesLimit::new(series_limit);
        let duration_labels = [HTTP_REQUEST_METHOD, HTTP_ROUTE, HTTP_RESPONSE_STATUS_CODE]
            .into_iter()
            .chain(labels.iter().map(|def| def.name))
            .collect();
        Self {
            durations: SeriesBudget::new(limit),
            active: SeriesBudget::new(limit),
            labels,
            overflow: Box::new(OverflowSeries {
                duration_labels,
                duration: Overflow::new(),
                active: Overflow::new(),
            }),
        }
    }

    /// Whether extra labels are declared.
    #[inline]
    pub(crate) fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// The combined index of the extra label values of a request.
    pub(crate) fn label_index(&self, parts: &http::request::Parts) -> u64 {
        let mut index = 0;
        let mut scale = 1;
        for def in &self.labels {
            index += def.index(parts) * scale;
            scale *= def.radix();
        }
        index
    }

    fn push_labels(&self, mut index: u64, labels: &mut Vec<Label>) {
        for def in &self.labels {
            let radix = def.radix();
            labels.push(Label::from_static_parts(def.name, def.value(index % radix)));
            index /= radix;
        }
    }

    #[cold]
    fn overflow_duration(&self, seconds: f64) {
        self.overflow
            .duration
            .record(REQUEST_DURATION, &self.overflow.duration_labels, |h| {
                h.record(seconds)
            });
    }

    #[cold]
    fn overflow_active(&self, delta: f64) {
        self.overflow
            .active
            .record(ACTIVE_REQUESTS, ACTIVE_LABELS, |g| g.increment(delta));
    }
}

/// The key of one duration series within a `(route, method)`.
#[inline]
pub(crate) fn duration_key(status: u16, error: ErrorKind, extra: u64) -> u64 {
    u64::from(status) | (u64::from(error as u8) << 16) | (extra << 24)
}

const SLOTS: usize = 8;

/// One series of a metric; `None` when the label set went to the overflow series.
type Series<H> = Option<KeyedHandle<H>>;

/// One duration series of a `(route, method)`.
#[derive(Debug)]
struct DurationSlot {
    key: u64,
    series: Series<Histogram>,
}

/// Everything cached for one `(route, method)`.
#[derive(Debug)]
pub(crate) struct MethodEntry {
    pub(crate) span_name: &'static str,
    active: Series<Gauge>,
    slots: [OnceLock<DurationSlot>; SLOTS],
    more: Mutex<Vec<Arc<DurationSlot>>>,
}

/// Where a request's increment of the active gauge went, so the decrement goes to the same place.
#[derive(Debug)]
pub(crate) enum Raised {
    /// The handle kept for the global recorder.
    Global,
    /// A handle registered with a local (or the no-op) recorder.
    Local(Gauge),
    /// The overflow series.
    Overflow,
}

/// Everything cached for one route (or for all unmatched requests).
#[derive(Debug)]
pub(crate) struct RouteEntry {
    /// The matched route; `None` for unmatched requests.
    key: Option<Box<str>>,
    /// `http_route` label value.
    label: SharedString,
    /// `http.route` span attribute value; `None` for unmatched requests.
    pub(crate) attribute: Option<opentelemetry::StringValue>,
    /// The route is in the skip list.
    pub(crate) skip: bool,
    methods: [OnceLock<MethodEntry>; METHOD_KINDS],
    metrics: Arc<MetricsShared>,
}

impl RouteEntry {
    fn new(key: Option<&str>, skip: bool, metrics: Arc<MetricsShared>) -> Self {
        let (label, attribute) = match key {
            Some(route) => {
                let shared: Arc<str> = Arc::from(route);
                let attribute = match orderscope_context::intern(route) {
                    Some(interned) => opentelemetry::StringValue::from(interned),
                    None => opentelemetry::StringValue::from(shared.clone()),
                };
                (SharedString::from_shared(shared), Some(attribute))
            }
            None => (SharedString::const_str(UNMATCHED), None),
        };
        Self {
            key: key.map(Box::from),
            label,
            attribute,
            skip,
            methods: Default::default(),
            metrics,
        }
    }

    #[inline]
    fn matches(&self, route: Option<&str>) -> bool {
        self.key.as_deref() == route
    }

    /// The entry of a method, created on first use.
    #[inline]
    pub(crate) fn method(&self, method: MethodKind) -> &MethodEntry {
        self.methods[method as usize].get_or_init(|| self.new_method(method))
    }

    #[cold]
    fn new_method(&self, method: MethodKind) -> MethodEntry {
        let span_name = match &self.key {
            Some(route) => intern_span_name(method, route),
            None => method.span_prefix(),
        };
        let active = self.metrics.active.try_acquire().then(|| {
            KeyedHandle::new(Key::from_parts(
                ACTIVE_REQUESTS,
                vec![
                    Label::from_static_parts(HTTP_REQUEST_METHOD, method.as_str()),
                    Label::new(HTTP_ROUTE, self.label.clone()),
                ],
            ))
        });
        MethodEntry {
            span_name,
            active,
            slots: Default::default(),
            more: Mutex::new(Vec::new()),
        }
    }

    /// Raises the active-requests gauge of `method`.
    #[inline]
    pub(crate) fn raise(&self, method: MethodKind) -> Raised {
        let Some(active) = &self.method(method).active else {
            self.metrics.overflow_active(1.0);
            return Raised::Overflow;
        };
        let gauge = active.get();
        gauge.increment(1.0);
        match gauge {
            Bound::Global(_) => Raised::Global,
            Bound::Local(gauge) => Raised::Local(gauge),
        }
    }

    /// Lowers the active-requests gauge raised by [`raise`](Self::raise).
    #[inline]
    pub(crate) fn lower(&self, method: MethodKind, raised: Raised) {
        match raised {
            Raised::Global => {
                if let Some(gauge) = self
                    .method(method)
                    .active
                    .as_ref()
                    .and_then(KeyedHandle::global)
                {
                    gauge.decrement(1.0);
                }
            }
            Raised::Local(gauge) => gauge.decrement(1.0),
            Raised::Overflow => self.metrics.overflow_active(-1.0),
        }
    }

    /// Records one duration in the histogram of `(method, status, error, extra labels)`.
    #[inline]
    pub(crate) fn record_duration(
        &self,
        method: MethodKind,
        status: u16,
        error: ErrorKind,
        extra: u64,
        seconds: f64,
    ) {
        let entry = self.method(method);
        let key = duration_key(status, error, extra);
        for slot in &entry.slots {
            let slot = slot.get_or_init(|| DurationSlot {
                key,
                series: self.new_duration(method, status, error, extra),
            });
            if slot.key == key {
                return self.record(&slot.series, seconds);
            }
        }
        let slot = self.duration_slow(entry, method, status, error, extra, key);
        self.record(&slot.series, seconds);
    }

    #[inline]
    fn record(&self, series: &Series<Histogram>, seconds: f64) {
        match series {
            Some(series) => series.with(|h| h.record(seconds)),
            None => self.metrics.overflow_duration(seconds),
        }
    }

    #[cold]
    fn duration_slow(
        &self,
        entry: &MethodEntry,
        method: MethodKind,
        status: u16,
        error: ErrorKind,
        extra: u64,
        key: u64,
    ) -> Arc<DurationSlot> {
        let mut more = entry.more.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = more.iter().find(|slot| slot.key == key) {
            return slot.clone();
        }
        let slot = Arc::new(DurationSlot {
            key,
            series: self.new_duration(method, status, error, extra),
        });
        more.push(slot.clone());
        slot
    }

    #[cold]
    fn new_duration(
        &self,
        method: MethodKind,
        status: u16,
        error: ErrorKind,
        extra: u64,
    ) -> Series<Histogram> {
        if !self.metrics.durations.try_acquire() {
            return None;
        }
        let mut labels = Vec::with_capacity(4 + self.metrics.labels.len());
        labels.push(Label::from_static_parts(
            HTTP_REQUEST_METHOD,
            method.as_str(),
        ));
        labels.push(Label::new(HTTP_ROUTE, self.label.clone()));
        if status != 0 {
            labels.push(Label::new(HTTP_RESPONSE_STATUS_CODE, status.to_string()));
        }
        if let Some(error) = error.label(status) {
            labels.push(Label::new(ERROR_TYPE, error));
        }
        self.metrics.push_labels(extra, &mut labels);
        Some(KeyedHandle::new(Key::from_parts(REQUEST_DURATION, labels)))
    }
}

/// The routes one layer has seen.
#[derive(Debug)]
pub(crate) struct RouteTable {
    metrics: Arc<MetricsShared>,
    skip: Vec<std::borrow::Cow<'static, str>>,
    routes: RwLock<HashMap<Box<str>, Arc<RouteEntry>>>,
    unmatched: OnceLock<Arc<RouteEntry>>,
    skipped_unmatched: OnceLock<Arc<RouteEntry>>,
    max_routes: usize,
}

impl RouteTable {
    pub(crate) fn new(
        metrics: Arc<MetricsShared>,
        skip: Vec<std::borrow::Cow<'static, str>>,
        max_routes: usize,
    ) -> Self {
        Self {
            metrics,
            skip,
            routes: RwLock::new(HashMap::new()),
            unmatched: OnceLock::new(),
            skipped_unmatched: OnceLock::new(),
            max_routes,
        }
    }

    pub(crate) fn metrics(&self) -> &Arc<MetricsShared> {
        &self.metrics
    }

    fn is_skipped(&self, path: &str) -> bool {
        self.skip.iter().any(|skip| skip == path)
    }

    /// The entry for a request that matched no route; `path` is checked against the skip list.
    #[inline]
    pub(crate) fn unmatched(&self, path: &str) -> &Arc<RouteEntry> {
        if !self.skip.is_empty() && self.is_skipped(path) {
            self.skipped_unmatched
                .get_or_init(|| Arc::new(RouteEntry::new(None, true, self.metrics.clone())))
        } else {
            self.unmatched
                .get_or_init(|| Arc::new(RouteEntry::new(None, false, self.metrics.clone())))
        }
    }

    /// The entry for a matched route.
    pub(crate) fn matched(&self, route: &str) -> Arc<RouteEntry> {
        if let Some(entry) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return entry.clone();
        }
        self.insert(route)
    }

    #[cold]
    fn insert(&self, route: &str) -> Arc<RouteEntry> {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = routes.get(route) {
            return entry.clone();
        }
        if routes.len() >= self.max_routes {
            // Routes come from the router's code, so this is a router built from data: keep memory
            // bounded and fold the rest into `unmatched`.
            return self
                .unmatched
                .get_or_init(|| Arc::new(RouteEntry::new(None, false, self.metrics.clone())))
                .clone();
        }
        let entry = Arc::new(RouteEntry::new(
            Some(route),
            self.is_skipped(route),
            self.metrics.clone(),
        ));
        routes.insert(Box::from(route), entry.clone());
        entry
    }
}

/// The route cache of one service instance: `Router::layer` gives every route its own instance, so the
/// last route seen is almost always the route of the next request.
#[derive(Debug, Default)]
pub(crate) struct LastRoute(OnceLock<Arc<RouteEntry>>);

impl LastRoute {
    #[inline]
    pub(crate) fn resolve(
        &self,
        table: &RouteTable,
        route: Option<&str>,
        path: &str,
    ) -> Arc<RouteEntry> {
        let Some(route) = route else {
            return table.unmatched(path).clone();
        };
        if let Some(entry) = self.0.get()
            && entry.matches(Some(route))
        {
            return entry.clone();
        }
        let entry = table.matched(route);
        let _ = self.0.set(entry.clone());
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_keys_are_distinct() {
        assert_ne!(
            duration_key(500, ErrorKind::Status, 0),
            duration_key(500, ErrorKind::Panic, 0)
        );
        assert_ne!(
            duration_key(200, ErrorKind::None, 1),
            duration_key(200, ErrorKind::None, 0)
        );
    }
}
