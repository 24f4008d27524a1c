//! Range requests (RFC 9110 §14): the byte ranges a `Range` header selects.
//!
//! A header that is not valid `bytes=` syntax is ignored, as the RFC requires. Ranges that
//! overlap or touch are coalesced; what remains as several ranges is a multipart answer. Like
//! nginx's `max_ranges` and Apache's `MaxRanges`, a request that could amplify the response
//! (more than `MAX_RANGES` ranges, or more than `MAX_DISORDER` that overlap or go backwards)
//! gets the whole representation instead (§14.2 allows ignoring Range).

/// Most ranges one request may ask for before it gets the whole representation.
pub const MAX_RANGES: usize = 16;
/// Most neighbouring ranges that may overlap or go backwards.
pub const MAX_DISORDER: usize = 2;

/// What a Range header asks of a representation of `size` bytes.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Selection {
    /// Send everything (no header, a malformed or an amplifying one).
    Whole,
    /// Send bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Send these `(start, end)` inclusive ranges, ascending and disjoint, as multipart parts.
    Multi(Vec<(u64, u64)>),
    /// Syntactically valid, but no byte of it exists: 416.
    Unsatisfiable,
}

/// Interprets a Range header value against a file of `size` bytes.
pub fn select(header: &str, size: u64) -> Selection {
    let Some(spec) = strip_unit(header.trim()) else {
        return Selection::Whole;
    };
    let specs: Option<Vec<Spec>> =
        spec.split(',').map(str::trim).filter(|r| !r.is_empty()).map(parse_one).collect();
    let specs = match specs {
        Some(specs) if !specs.is_empty() => specs,
        // Bad syntax anywhere: the header is ignored.
        _ => return Selection::Whole,
    };
    if specs.len() > MAX_RANGES {
        return Selection::Whole;
    }
    let mut ranges: Vec<(u64, u64)> = specs.into_iter().filter_map(|s| resolve(s, size)).collect();
    if ranges.is_empty() {
        return Selection::Unsatisfiable;
    }
    let disorder = ranges.windows(2).filter(|w| w[1].0 <= w[0].1).count();
    if disorder > MAX_DISORDER {
        return Selection::Whole;
    }
    ranges.sort_unstable();
    let merged = coalesce(ranges);
    match merged.as_slice() {
        [(start, end)] => Selection::Partial { start: *start, end: *end },
        _ => Selection::Multi(merged),
    }
}

/// Merges sorted ranges that overlap or touch.
fn coalesce(sorted: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (start, end) in sorted {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

fn strip_unit(v: &str) -> Option<&str> {
    let (unit, rest) = v.split_once('=')?;
    unit.trim().eq_ignore_ascii_case("bytes").then_some(rest)
}

enum Spec {
    From(u64, Option<u64>),
    Suffix(u64),
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Absurdly long numbers saturate: they still mean "past the end".
    Some(s.parse().unwrap_or(u64::MAX))
}

fn parse_one(r: &str) -> Option<Spec> {
    let (first, last) = r.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return digits(last).map(Spec::Suffix);
    }
    let start = digits(first)?;
    if last.is_empty() {
        return Some(Spec::From(start, None));
    }
    let end = digits(last)?;
    (end >= start).then_some(Spec::From(start, Some(end)))
}

/// The inclusive byte range a spec selects, or `None` if no byte of it exists.
fn resolve(spec: Spec, size: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::From(start, _) if start >= size => None,
        Spec::From(start, end) => Some((start, end.unwrap_or(u64::MAX).min(size - 1))),
        Spec::Suffix(0) => None,
        Spec::Suffix(_) if size == 0 => None,
        Spec::Suffix(n) => Some((size.saturating_sub(n), size - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::Selection::*;
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(select("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(select("bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(select("bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(select("bytes=-1000", 100), Partial { start: 0, end: 99 });
        assert_eq!(select("bytes=99-99", 100), Partial { start: 99, end: 99 });
        assert_eq!(select("bytes=50-1000", 100), Partial { start: 50, end: 99 });
        assert_eq!(select("Bytes = 1-2", 100), Partial { start: 1, end: 2 });
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(select("bytes=100-", 100), Unsatisfiable);
        assert_eq!(select("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(select("bytes=-0", 100), Unsatisfiable);
        assert_eq!(select("bytes=0-", 0), Unsatisfiable);
        assert_eq!(select("bytes=99999999999999999999999-", 10), Unsatisfiable);
    }

    #[test]
    fn ignored_ranges() {
        for h in
            ["", "bytes=", "bytes=a-b", "bytes=5-1", "items=0-1", "bytes=0-1,x", "bytes 0-1", "bytes=--1"]
        {
            assert_eq!(select(h, 100), Whole, "{h}");
        }
    }

    #[test]
    fn several_ranges() {
        assert_eq!(select("bytes=0-9,20-29", 100), Multi(vec![(0, 9), (20, 29)]));
        assert_eq!(select("bytes=0-9, -10", 100), Multi(vec![(0, 9), (90, 99)]));
        // Unsatisfiable members are dropped; if none is left, 416.
        assert_eq!(select("bytes=0-9,200-300", 100), Partial { start: 0, end: 9 });
        assert_eq!(select("bytes=200-300,400-", 100), Unsatisfiable);
        // Overlapping or touching ranges coalesce.
        assert_eq!(select("bytes=0-9,5-19", 100), Partial { start: 0, end: 19 });
        assert_eq!(select("bytes=0-9,10-19", 100), Partial { start: 0, end: 19 });
        assert_eq!(select("bytes=50-59,0-9", 100), Multi(vec![(0, 9), (50, 59)]));
    }

    #[test]
    fn amplifying_ranges_get_the_whole_file() {
        let many: Vec<String> = (0..=MAX_RANGES as u64).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(select(&format!("bytes={}", many.join(",")), 1000), Whole);
        let sixteen: Vec<String> = (0..MAX_RANGES as u64).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert!(
            matches!(select(&format!("bytes={}", sixteen.join(",")), 1000), Multi(r) if r.len() == MAX_RANGES)
        );
        assert_eq!(select("bytes=0-99,0-99,0-99,0-99", 100), Whole);
        assert_eq!(select("bytes=40-49,30-39,20-29,10-19", 100), Whole);
    }
}
