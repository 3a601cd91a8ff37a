//! The order page: the orders in flight in this service, stuck ones first, for a person
//! (`GET /debug/orders`, HTML without JavaScript) and for a script (`GET /debug/orders.json`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{Uri, header};
use axum::response::IntoResponse;
use orderscope_context::keys;
use orderscope_logs::{StageCount, TrackedOrder, Tracker};

use crate::Telemetry;

/// The most orders a page lists unless [`OrderPage::with_limit`] says otherwise.
pub const DEFAULT_ORDER_PAGE_LIMIT: usize = 200;

/// The order page, read from the installed in-flight tracker
/// ([`TelemetryBuilder::with_order_tracker`](crate::TelemetryBuilder::with_order_tracker)).
///
/// - `GET /debug/orders`: an HTML page readable without JavaScript: the counts per stage, a
///   search form, and the orders in flight, overdue or stalled first (longest in their stage
///   first), with stage, time in stage, deadline, channel, priority and trace id, the trace id
///   linked through the trace URL template when one is set.
/// - `GET /debug/orders.json`: the same as JSON.
///
/// Both take `?q=` (orders whose id contains it) and `?limit=` (at most
/// [`with_limit`](Self::with_limit)). The page is read-only, lists at most the limit, and escapes
/// every order field (an order id is user input). Without an installed tracker both say so.
///
/// The page shows order ids: serve it where only operators reach it, as `/metrics`.
///
/// # Example
///
/// ```
/// let page = orderscope::OrderPage::new()
///     .with_trace_url("http://localhost:16686/trace/{trace_id}")
///     .with_limit(100);
/// let app: axum::Router = axum::Router::new().merge(page.router());
/// ```
#[derive(Debug, Clone)]
pub struct OrderPage {
    trace_url: Option<Arc<str>>,
    limit: usize,
}

impl Default for OrderPage {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderPage {
    /// A page with no trace links, listing at most 200 orders.
    pub fn new() -> Self {
        OrderPage {
            trace_url: None,
            limit: DEFAULT_ORDER_PAGE_LIMIT,
        }
    }

    /// Links each trace id through `template`, where `{trace_id}` stands for the 32 hex digits:
    /// `http://localhost:16686/trace/{trace_id}` (Jaeger), or a Grafana Explore URL. Defaults to
    /// no link.
    pub fn with_trace_url(mut self, template: impl Into<String>) -> Self {
        self.trace_url = Some(Arc::from(template.into()));
        self
    }

    /// The most orders one page lists. Defaults to 200; at least 1.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// The router serving `GET /debug/orders` and `GET /debug/orders.json`.
    pub fn router<S>(self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let html = self.clone();
        let json = self;
        axum::Router::new()
            .route(
                "/debug/orders",
                axum::routing::get(move |uri: Uri| {
                    let body = html.html(&Query::parse(&uri));
                    async move {
                        (
                            [
                                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                                (header::CACHE_CONTROL, "no-store"),
                            ],
                            body,
                        )
                            .into_response()
                    }
                }),
            )
            .route(
                "/debug/orders.json",
                axum::routing::get(move |uri: Uri| {
                    let body = json.json(&Query::parse(&uri));
                    async move {
                        (
                            [
                                (header::CONTENT_TYPE, "application/json"),
                                (header::CACHE_CONTROL, "no-store"),
                            ],
                            body,
                        )
                            .into_response()
                    }
                }),
            )
    }

    fn listing(&self, query: &Query) -> Option<Listing> {
        let tracker = orderscope_logs::tracker()?;
        let now = SystemTime::now();
        let limit = query.limit.unwrap_or(self.limit).clamp(1, self.limit);
        Some(Listing {
            now,
            tracked: tracker.len(),
            counts: tracker.counts(now),
            orders: tracker.orders(query.q.as_deref(), limit, now),
            tracker,
        })
    }

    fn trace_url(&self, trace_id: &str) -> Option<String> {
        self.trace_url
            .as_ref()
            .map(|t| t.replace("{trace_id}", trace_id))
    }

    /// The JSON document.
    fn json(&self, query: &Query) -> String {
        let Some(listing) = self.listing(query) else {
            return serde_json::json!({ "enabled": false, "orders": [] }).to_string();
        };
        let now = listing.now;
        let orders: Vec<serde_json::Value> = listing
            .orders
            .iter()
            .map(|o| {
                let trace_id = o.trace_id.map(|t| t.to_string());
                let mut fields = serde_json::Map::new();
                o.order.for_each_field(|key, value| {
                    fields.insert(key.to_owned(), value.into());
                });
                serde_json::json!({
                    "id": o.order.id(),
                    "stage": o.stage,
                    "entered_at": rfc3339(o.entered_at),
                    "stage_age_seconds": o.stage_age(now).as_secs_f64(),
                    "deadline": fields.get(keys::ORDER_DEADLINE),
                    "overdue": o.overdue(now),
                    "stalled": o.stalled,
                    "channel": fields.get(keys::ORDER_CHANNEL),
                    "priority": fields.get(keys::ORDER_PRIORITY),
                    "created_at": fields.get(keys::ORDER_CREATED_AT),
                    "trace_id": trace_id,
                    "trace_url": trace_id.as_deref().and_then(|t| self.trace_url(t)),
                })
            })
            .collect();
        let stages: Vec<serde_json::Value> = listing
            .counts
            .iter()
            .map(|c| {
                serde_json::json!({
                    "stage": c.stage,
                    "in_flight": c.in_flight,
                    "overdue": c.overdue,
                    "oldest_seconds": c.oldest.as_secs_f64(),
                })
            })
            .collect();
        serde_json::json!({
            "enabled": true,
            "generated_at": rfc3339(now),
            "tracked": listing.tracked,
            "capacity": listing.tracker.capacity(),
            "search": query.q,
            "stages": stages,
            "orders": orders,
        })
        .to_string()
    }

    /// The HTML page.
    fn html(&self, query: &Query) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str(concat!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<title>Orders in flight</title><style>",
            "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:1em 0}",
            "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;white-space:nowrap}",
            "td.id{white-space:normal;word-break:break-all;max-width:24em}",
            "tr.late td{background:#fde2e2}code{font-size:.9em}",
            "</style></head><body>\n<h1>Orders in flight</h1>\n"
        ));
        let Some(listing) = self.listing(query) else {
            out.push_str(
                "<p id=\"disabled\">The in-flight order tracker is not enabled in this service \
                 (<code>with_order_tracker</code>).</p></body></html>\n",
            );
            return out;
        };
        let now = listing.now;
        let _ = writeln!(
            out,
            "<p id=\"summary\">{} orders tracked (capacity {}), as of {}.</p>",
            listing.tracked,
            listing.tracker.capacity(),
            rfc3339(now)
        );
        out.push_str(
            "<table id=\"stages\"><tr><th>stage</th><th>in flight</th><th>overdue</th>\
             <th>oldest in stage</th></tr>\n",
        );
        for c in &listing.counts {
            stage_row(&mut out, c);
        }
        out.push_str("</table>\n<form method=\"get\" action=\"/debug/orders\">");
        out.push_str("<label>Order id <input name=\"q\" value=\"");
        escape(&mut out, query.q.as_deref().unwrap_or(""));
        out.push_str("\"></label> <button type=\"submit\">Search</button></form>\n");
        let _ = writeln!(
            out,
            "<p id=\"shown\">{} orders shown, overdue or stalled first.</p>",
            listing.orders.len()
        );
        out.push_str(
            "<table id=\"orders\"><tr><th>order</th><th>stage</th><th>in stage for</th>\
             <th>deadline</th><th>late</th><th>channel</th><th>priority</th><th>trace</th></tr>\n",
        );
        for order in &listing.orders {
            self.order_row(&mut out, order, now);
        }
        out.push_str("</table>\n</body></html>\n");
        out
    }

    fn order_row(&self, out: &mut String, o: &TrackedOrder, now: SystemTime) {
        let overdue = o.overdue(now);
        let late = match (overdue, o.stalled) {
            (true, _) => "overdue",
            (false, true) => "stalled",
            (false, false) => "",
        };
        let mut deadline = String::new();
        let mut channel = String::new();
        let mut priority = String::new();
        o.order.for_each_field(|key, value| match key {
            keys::ORDER_DEADLINE => deadline = value.to_owned(),
            keys::ORDER_CHANNEL => channel = value.to_owned(),
            keys::ORDER_PRIORITY => priority = value.to_owned(),
            _ => {}
        });
        out.push_str(if late.is_empty() {
            "<tr class=\"order\">"
        } else {
            "<tr class=\"order late\">"
        });
        out.push_str("<td class=\"id\">");
        escape(out, o.order.id());
        out.push_str("</td><td class=\"stage\">");
        escape(out, o.stage);
        out.push_str("</td><td>");
        escape(out, &human(o.stage_age(now)));
        out.push_str("</td><td>");
        escape(out, &deadline);
        out.push_str("</td><td class=\"status\">");
        out.push_str(late);
        out.push_str("</td><td>");
        escape(out, &channel);
        out.push_str("</td><td>");
        escape(out, &priority);
        out.push_str("</td><td class=\"trace\">");
        if let Some(trace_id) = o.trace_id {
            let trace_id = trace_id.to_string();
            match self.trace_url(&trace_id) {
                Some(url) => {
                    out.push_str("<a href=\"");
                    escape(out, &url);
                    out.push_str("\"><code>");
                    out.push_str(&trace_id);
                    out.push_str("</code></a>");
                }
                None => {
                    out.push_str("<code>");
                    out.push_str(&trace_id);
                    out.push_str("</code>");
                }
            }
        }
        out.push_str("</td></tr>\n");
    }
}

impl Telemetry {
    /// The [`OrderPage`] router with its defaults (no trace links, at most 200 orders): merge
    /// it like [`metrics_router`](Self::metrics_router).
    pub fn order_page_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        OrderPage::new().router()
    }
}

struct Listing {
    now: SystemTime,
    tracked: usize,
    counts: Vec<StageCount>,
    orders: Vec<TrackedOrder>,
    tracker: &'static Tracker,
}

/// `?q=…&limit=…`, percent-decoded; anything else ignored.
#[derive(Debug, Default)]
struct Query {
    q: Option<String>,
    limit: Option<usize>,
}

impl Query {
    fn parse(uri: &Uri) -> Self {
        let mut query = Query::default();
        for pair in uri.query().unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.replace('+', " ");
            let value = percent_encoding::percent_decode_str(&value).decode_utf8_lossy();
            match key {
                "q" if !value.trim().is_empty() => {
                    // An order id has at most 128 characters: a longer search matches nothing.
                    query.q = Some(value.trim().chars().take(129).collect());
                }
                "limit" => query.limit = value.parse().ok(),
                _ => {}
            }
        }
        query
    }
}

fn stage_row(out: &mut String, c: &StageCount) {
    out.push_str("<tr><td>");
    escape(out, c.stage);
    let _ = writeln!(
        out,
        "</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        c.in_flight,
        c.overdue,
        human(c.oldest)
    );
}

/// HTML-escapes `text` into `out` (element content and double-quoted attributes).
fn escape(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `1h 02m`, `3m 07s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}
