//! Strings kept for the life of the process, so that span names and attributes built from them
//! are `&'static str`: no allocation per request or message, and no reference count the request
//! thread raises and the exporter's thread lowers.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Most distinct strings [`intern`] keeps, across every crate that calls it.
pub const MAX_INTERNED: usize = 4096;

/// `value` kept for the life of the process and returned as a `&'static str`; the same string
/// is kept once however often it is interned. `None` once [`MAX_INTERNED`] strings are kept:
/// callers fall back to a coarser name or an owned copy.
///
/// For names built once per route, exchange or queue (when a layer or consumer first sees them),
/// not for values that change per request: each distinct value is leaked.
///
/// # Example
///
/// ```
/// let name = orderscope_context::intern(format!("GET {}", "/orders/{id}"));
/// assert_eq!(name, Some("GET /orders/{id}"));
/// ```
pub fn intern(value: impl AsRef<str> + Into<String>) -> Option<&'static str> {
    static KEPT: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut kept = KEPT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(interned) = kept.get(value.as_ref()) {
        return Some(interned);
    }
    if kept.len() >= MAX_INTERNED {
        return None;
    }
    let leaked: &'static str = Box::leak(value.into().into_boxed_str());
    kept.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_kept_once() {
        let a = intern(String::from("process orders.intern-test")).unwrap();
        let b = intern("process orders.intern-test").unwrap();
        assert!(std::ptr::eq(a, b));
    }
}
