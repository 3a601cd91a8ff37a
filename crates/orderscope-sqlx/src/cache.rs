//! Each distinct SQL text analysed once: an append-only table read without locks.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock, PoisonError};

use orderscope_metrics::FxHasher;

use crate::analysis::analyze;

/// Texts kept in the cache; further texts are analysed on every call.
const CAPACITY: usize = 1024;
/// Texts longer than this are analysed on every call rather than kept.
const MAX_CACHED_TEXT: usize = 4096;
/// Distinct summaries used as metric labels; further ones are labelled [`OTHER`].
const MAX_SUMMARIES: usize = 200;

/// The summary label past [`MAX_SUMMARIES`] distinct summaries.
pub(crate) const OTHER: &str = "_OTHER";

/// What a call needs from the analysis of its text.
#[derive(Debug)]
pub(crate) struct Entry {
    /// `db.query.summary`, if the text has one.
    pub(crate) summary: Option<String>,
    /// The sanitised text (`db.query.text`).
    pub(crate) text: String,
    /// The metric label and N+1 key: the summary while fewer than [`MAX_SUMMARIES`] distinct
    /// ones have been seen, else [`OTHER`]; empty without a summary. Interned: one pointer per
    /// distinct summary.
    pub(crate) label: &'static str,
}

/// An analysed text: kept for good in the cache, or analysed for this call only.
#[derive(Debug)]
pub(crate) enum Analyzed {
    Cached(&'static Entry),
    Fresh(Box<Entry>),
}

impl std::ops::Deref for Analyzed {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        match self {
            Analyzed::Cached(entry) => entry,
            Analyzed::Fresh(entry) => entry,
        }
    }
}

#[derive(Default)]
struct FxBuild;

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher::default()
    }
}

/// A kept text and its analysis.
type Slot = OnceLock<(Box<str>, &'static Entry)>;

struct Table {
    slots: Box<[Slot]>,
    mask: usize,
    inserts: Mutex<Inserts>,
}

#[derive(Default)]
struct Inserts {
    len: usize,
    summaries: HashMap<String, &'static str>,
}

static TABLE: OnceLock<Table> = OnceLock::new();

fn table() -> &'static Table {
    TABLE.get_or_init(|| {
        let size = (CAPACITY * 2).next_power_of_two();
        Table {
            slots: (0..size).map(|_| OnceLock::new()).collect(),
            mask: size - 1,
            inserts: Mutex::new(Inserts::default()),
        }
    })
}

/// The analysis of `sql`, from the cache when it was seen before.
///
/// A seen text costs one hash of the text, one or two atomic loads and a comparison: no lock,
/// no allocation.
pub(crate) fn lookup(sql: &str) -> Analyzed {
    let table = table();
    if sql.len() > MAX_CACHED_TEXT {
        return fresh(table, sql);
    }
    let mut index = FxBuild.hash_one(sql) as usize & table.mask;
    for _ in 0..table.slots.len() {
        match table.slots[index].get() {
            Some((text, entry)) if **text == *sql => return Analyzed::Cached(entry),
            Some(_) => index = (index + 1) & table.mask,
            None => return insert(table, index, sql),
        }
    }
    fresh(table, sql)
}

fn entry(inserts: &mut Inserts, sql: &str) -> Entry {
    let analysis = analyze(sql);
    let label = match analysis.summary() {
        None => "",
        Some(summary) => match inserts.summaries.get(summary) {
            Some(label) => label,
            None if inserts.summaries.len() < MAX_SUMMARIES => {
                let label: &'static str = Box::leak(summary.to_owned().into_boxed_str());
                inserts.summaries.insert(summary.to_owned(), label);
                label
            }
            None => OTHER,
        },
    };
    Entry {
        summary: analysis.summary().map(str::to_owned),
        text: analysis.sanitized().to_owned(),
        label,
    }
}

#[cold]
fn fresh(table: &Table, sql: &str) -> Analyzed {
    let mut inserts = table.inserts.lock().unwrap_or_else(PoisonError::into_inner);
    Analyzed::Fresh(Box::new(entry(&mut inserts, sql)))
}

#[cold]
fn insert(table: &Table, mut index: usize, sql: &str) -> Analyzed {
    let mut inserts = table.inserts.lock().unwrap_or_else(PoisonError::into_inner);
    if inserts.len >= CAPACITY {
        return Analyzed::Fresh(Box::new(entry(&mut inserts, sql)));
    }
    for _ in 0..table.slots.len() {
        let slot = &table.slots[index];
        match slot.get() {
            Some((text, entry)) if **text == *sql => return Analyzed::Cached(entry),
            Some(_) => index = (index + 1) & table.mask,
            None => {
                // Kept for the life of the process, like the table: at most CAPACITY entries.
                let entry: &'static Entry = Box::leak(Box::new(entry(&mut inserts, sql)));
                let (_, entry) = slot.get_or_init(|| (sql.into(), entry));
                inserts.len += 1;
                return Analyzed::Cached(entry);
            }
        }
    }
    Analyzed::Fresh(Box::new(entry(&mut inserts, sql)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seen_text_is_the_same_entry() {
        let a = lookup("SELECT id FROM cache_test WHERE id = $1");
        let b = lookup("SELECT id FROM cache_test WHERE id = $1");
        match (a, b) {
            (Analyzed::Cached(a), Analyzed::Cached(b)) => assert!(std::ptr::eq(a, b)),
            other => panic!("not cached: {other:?}"),
        }
    }

    #[test]
    fn one_label_per_summary() {
        let a = lookup("SELECT a FROM label_test");
        let b = lookup("SELECT b FROM label_test WHERE b = 1");
        assert_eq!(a.label, "SELECT label_test");
        assert!(std::ptr::eq(a.label, b.label));
    }
}
