//! Range requests (RFC 9110 §14): the single byte range a `Range` header selects.
//!
//! Several ranges are answered with the whole representation (200), which RFC 9110 §14.2 allows;
//! a header that is not valid `bytes=` syntax is ignored, as the RFC requires.

/// What a Range header asks of a representation of `size` bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Selection {
    /// Send everything (no header, a malformed one, or several ranges).
    Whole,
    /// Send bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// Syntactically valid, but no byte of it exists: 416.
    Unsatisfiable,
}

/// Interprets a Range header value against a file of `size` bytes.
pub fn select(header: &str, size: u64) -> Selection {
    let Some(spec) = strip_unit(header.trim()) else {
        return Selection::Whole;
    };
    let ranges: Vec<&str> = spec.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
    if ranges.len() != 1 {
        // Several ranges: the whole file is a valid answer (unless the syntax is bad, when it is
        // ignored anyway, which is also the whole file).
        return Selection::Whole;
    }
    match parse_one(ranges[0]) {
        None => Selection::Whole,
        Some(r) => resolve(r, size),
    }
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

fn resolve(spec: Spec, size: u64) -> Selection {
    match spec {
        Spec::From(start, _) if start >= size => Selection::Unsatisfiable,
        Spec::From(start, end) => Selection::Partial { start, end: end.unwrap_or(u64::MAX).min(size - 1) },
        Spec::Suffix(0) => Selection::Unsatisfiable,
        Spec::Suffix(_) if size == 0 => Selection::Unsatisfiable,
        Spec::Suffix(n) => Selection::Partial { start: size.saturating_sub(n), end: size - 1 },
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
            ["", "bytes=", "bytes=a-b", "bytes=5-1", "items=0-1", "bytes=0-1,3-4", "bytes 0-1", "bytes=--1"]
        {
            assert_eq!(select(h, 100), Whole, "{h}");
        }
    }
}
