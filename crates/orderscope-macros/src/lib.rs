//! Attribute macros for RED metrics and order handlers.
//!
//! # Overview
//!
//! - [`#[red]`](macro@red) records rate, errors and duration of any function with the
//!   autometrics-compatible metrics of the orderscope conventions:
//!
//!   | Prometheus metric | type | labels |
//!   | --- | --- | --- |
//!   | `function_calls_total` | counter | `function`, `module`, `result` (`ok`/`error`), `error_type` (on errors only) |
//!   | `function_calls_duration_seconds` | histogram | `function`, `module` |
//!   | `function_calls_concurrent` | gauge (with `track_concurrency`) | `function`, `module` |
//!
//! - [`#[order_handler(order = …)]`](macro@order_handler) does the same, and runs the body inside
//!   an INFO span named after the function, carrying the order fields, with the order in scope, so
//!   that child spans, log lines and `stage!` see it.
//! - [`#[derive(ErrorType)]`](derive@ErrorType) classifies an error enum for the `error_type` label:
//!   the variant's name in snake case.
//!
//! Use them through the `orderscope` crate (`orderscope::red`, `orderscope::order_handler`,
//! `orderscope::ErrorType`): the expansions call `::orderscope::__private`, which is not a
//! stable API.
//!
//! Costs: each function gets a `static` `orderscope_metrics::red::FunctionMetrics`, whose
//! metric handles are resolved once against the global recorder, so a call costs two clock
//! reads and a few atomic operations, less than a hand-written `counter!` + `histogram!`
//! with the same labels. Under a thread-local recorder (`metrics::with_local_recorder`, as in
//! tests) the handles are resolved on every call, so each recorder sees exactly its own calls.
//!
//! # Example
//!
//! ```
//! use orderscope::{ErrorType, order_handler, red};
//!
//! #[derive(Debug, ErrorType)]
//! enum StockError {
//!     OutOfStock,        // error_type="out_of_stock"
//!     Warehouse(String), // error_type="warehouse"
//! }
//!
//! #[red]
//! fn reserve_stock(item: &str) -> Result<u32, StockError> {
//!     if item.is_empty() { Err(StockError::OutOfStock) } else { Ok(1) }
//! }
//!
//! struct ScheduleCmd {
//!     order_id: String,
//! }
//!
//! #[order_handler(order = cmd.order_id, track_concurrency)]
//! async fn schedule(cmd: ScheduleCmd) -> Result<(), StockError> {
//!     // The order is in scope here: spans and log lines carry `order.id`.
//!     assert_eq!(orderscope::OrderContext::current().unwrap().id(), cmd.order_id);
//!     reserve_stock("bolt").map(drop)
//! }
//! # let _ = StockError::Warehouse(String::new());
//! # let _ = schedule(ScheduleCmd { order_id: "ORD-1".into() });
//! ```
//!
//! # Options
//!
//! Both attributes accept:
//!
//! - `name = "…"`: the `function` label (and, for `#[order_handler]`, the span name). Defaults
//!   to the function's name.
//! - `track_concurrency` (or `track_concurrency = true|false`): record
//!   `function_calls_concurrent`. Defaults to off.
//! - `result = true|false`: whether the return value is a `Result` to classify. Defaults to
//!   `true` exactly when the return type is a path whose last segment ends in `Result`
//!   (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, `MyResult<T>`); use `result = true`
//!   for an alias with another name, `result = false` for a non-`Result` type named `…Result`.
//! - `crate = "…"`: the path of the `orderscope` crate, when it is renamed in `Cargo.toml` or
//!   re-exported. Defaults to `::orderscope`.
//!
//! `#[order_handler]` also requires the order: `order = <expression>` or, for callers that may
//! not send it as baggage, `fallback_order = <expression>` — the order already in scope (read from
//! the request's or message's baggage) when there is one, else the expression's (evaluated only
//! then). The expression is evaluated at the start of the body
//! (arguments in scope, borrowed): an order id (`&str`, `String`, …), an `OrderContext`, or an
//! `Option`/`Result` of one. When there is no valid order the body runs all the same, without an
//! order; an invalid id is counted in
//! `orderscope_propagation_dropped_total{reason="order_field_invalid"}`.
//!
//! # What is recorded
//!
//! - A call that returns `Ok` or a non-`Result` value: `result="ok"`.
//! - A call that returns `Err(e)`: `result="error"`, `error_type` from `e`'s
//!   [`ErrorType`](derive@ErrorType) implementation when its type has one, else `"error"`. The
//!   error's `Display` text is never used.
//! - A call that panics: `result="error", error_type="panic"`; an async call whose future is
//!   dropped before completing: `result="error", error_type="cancelled"`. The duration is
//!   recorded and the concurrency gauge decremented in every case.
//! - Async functions are measured from their first poll to their completion.
//!
//! # Feature flags
//!
//! This crate has none; `orderscope`'s `macros` feature (on by default) re-exports it.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.88 (edition 2024), as for the whole workspace.
//! It is raised only in a minor release.
#![deny(missing_docs)]

use proc_macro::TokenStream;

mod attr;
mod expand;

/// Records RED metrics (`function_calls_total`, `function_calls_duration_seconds` and,
/// optionally, `function_calls_concurrent`) for every call of a function or method.
///
/// Works on sync and `async` functions, inherent and trait-impl methods, and generic functions.
/// See the [crate documentation](crate) for the options and what is recorded.
///
/// # Example
///
/// ```
/// #[orderscope::red(name = "reserve", track_concurrency)]
/// async fn reserve_stock(item: &str) -> std::io::Result<()> {
///     Ok(())
/// }
/// # let _ = reserve_stock("bolt");
/// ```
#[proc_macro_attribute]
pub fn red(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(attr::Kind::Red, args.into(), item.into()).into()
}

/// `#[red]` plus an INFO span named after the function, carrying the order fields, with the
/// order in scope for the body.
///
/// `order = <expression>` is required; see the [crate documentation](crate).
///
/// # Example
///
/// ```
/// struct Cmd {
///     order_id: String,
/// }
///
/// #[orderscope::order_handler(order = cmd.order_id)]
/// fn schedule(cmd: Cmd) -> Option<String> {
///     orderscope::OrderContext::current().map(|order| order.id().to_owned())
/// }
///
/// assert_eq!(schedule(Cmd { order_id: "ORD-1".into() }).as_deref(), Some("ORD-1"));
/// ```
#[proc_macro_attribute]
pub fn order_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::attribute(attr::Kind::OrderHandler, args.into(), item.into()).into()
}

/// Implements `orderscope::ErrorType`: an enum's variant name in snake case
/// (`OutOfStock` → `"out_of_stock"`), a struct's name in snake case.
///
/// Attributes: `#[error_type(name = "…")]` on a variant (or a struct) sets the value;
/// `#[error_type(transparent)]` on a one-field variant delegates to that field's `ErrorType`;
/// `#[error_type(crate = "…")]` on the type sets the path of the `orderscope` crate.
///
/// # Example
///
/// ```
/// use orderscope::ErrorType;
///
/// #[derive(ErrorType)]
/// enum MesError {
///     NoCapacity,
///     #[error_type(name = "plc")]
///     PlcTimeout { line: u8 },
/// }
///
/// assert_eq!(MesError::NoCapacity.error_type(), "no_capacity");
/// assert_eq!(MesError::PlcTimeout { line: 2 }.error_type(), "plc");
/// ```
#[proc_macro_derive(ErrorType, attributes(error_type))]
pub fn derive_error_type(input: TokenStream) -> TokenStream {
    expand::derive_error_type(input.into()).into()
}
