//! Fuzzes the Range header interpretation, `ringhttpd::http::range::select`.
//!
//! Input: `SIZE\nHEADER` (the representation's size in decimal, a newline, the header value);
//! without a newline, or when the first line is not a number, the whole input is the header and
//! the size is 100. Checked on every input:
//! - it never panics and gives the same answer twice;
//! - `Partial { start, end }`: `start <= end < size`;
//! - `Multi(ranges)`: 2 to `MAX_RANGES` ranges, each `start <= end < size`, ascending, disjoint
//!   and not adjacent (touching ranges would have been coalesced);
//! - an independent reading of the header (RFC 9110 §14.1.1 syntax, bad syntax ignored):
//!   `Partial`/`Multi`/`Unsatisfiable` only for valid syntax with at most `MAX_RANGES` ranges;
//!   `Unsatisfiable` only if no range is satisfiable; `Partial`/`Multi` cover exactly the bytes
//!   the satisfiable ranges cover; ranges already ascending and disjoint never get `Whole`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhttpd::http::range::{MAX_RANGES, Selection, select};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (size, header) = match text.split_once('\n') {
        Some((n, h)) => match n.parse::<u64>() {
            Ok(size) => (size, h),
            Err(_) => (100, &*text),
        },
        None => (100, &*text),
    };
    let selection = select(header, size);
    assert_eq!(select(header, size), selection, "select is not deterministic");
    let ctx = || format!("select({header:?}, {size}) = {selection:?}");

    let selected: Vec<(u64, u64)> = match &selection {
        Selection::Whole | Selection::Unsatisfiable => Vec::new(),
        Selection::Partial { start, end } => vec![(*start, *end)],
        Selection::Multi(ranges) => {
            assert!((2..=MAX_RANGES).contains(&ranges.len()), "{}", ctx());
            ranges.clone()
        }
    };
    for &(start, end) in &selected {
        assert!(start <= end && end < size, "{}", ctx());
    }
    for w in selected.windows(2) {
        assert!(w[0].1.checked_add(1).is_some_and(|next| next < w[1].0), "{}", ctx());
    }

    let Some(specs) = reference_specs(header) else {
        assert_eq!(selection, Selection::Whole, "invalid syntax must be ignored: {}", ctx());
        return;
    };
    if specs.len() > MAX_RANGES {
        assert_eq!(selection, Selection::Whole, "too many ranges: {}", ctx());
        return;
    }
    let satisfiable: Vec<(u64, u64)> = specs.iter().filter_map(|s| s.clip(size)).collect();
    match &selection {
        Selection::Unsatisfiable => assert!(satisfiable.is_empty(), "{}", ctx()),
        Selection::Partial { .. } | Selection::Multi(_) => {
            assert_eq!(selected, union(satisfiable.clone()), "{}", ctx());
        }
        Selection::Whole => {
            assert!(!satisfiable.is_empty(), "nothing satisfiable, yet Whole: {}", ctx());
            let in_order = satisfiable.windows(2).all(|w| w[0].1 < w[1].0);
            assert!(!in_order, "ascending disjoint ranges refused: {}", ctx());
        }
    }
});

#[derive(Debug)]
enum Spec {
    /// `first-[last]`
    From(u64, Option<u64>),
    /// `-suffix`
    Suffix(u64),
}

impl Spec {
    /// The inclusive range this spec selects in `size` bytes, or `None` if no byte of it exists.
    fn clip(&self, size: u64) -> Option<(u64, u64)> {
        match *self {
            Spec::From(first, last) => {
                (first < size).then(|| (first, last.map_or(size - 1, |l| l.min(size - 1))))
            }
            Spec::Suffix(n) => (n > 0 && size > 0).then(|| (size - n.min(size), size - 1)),
        }
    }
}

/// `bytes=` followed by comma-separated specs (empty list elements allowed, at least one spec);
/// `None` for anything else. Numbers too large for `u64` saturate.
fn reference_specs(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(s.bytes().fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
    };
    let mut specs = Vec::new();
    for item in set.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (first, last) = item.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        specs.push(match (first.is_empty(), last.is_empty()) {
            (true, _) => Spec::Suffix(number(last)?),
            (false, true) => Spec::From(number(first)?, None),
            (false, false) => {
                let (f, l) = (number(first)?, number(last)?);
                if l < f {
                    return None;
                }
                Spec::From(f, Some(l))
            }
        });
    }
    (!specs.is_empty()).then_some(specs)
}

/// Sorted, with overlapping or touching ranges merged.
fn union(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}
