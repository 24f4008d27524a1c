//! Fuzzes Accept-Encoding negotiation, `ringhttpd::http::encoding::preferred`.
//!
//! Input: one byte whose low two bits say which precompressed files exist (bit 0 `.br`, bit 1
//! `.gz`), then the header value. Checked on every input:
//! - it never panics and gives the same answer twice; no header means no coding;
//! - the answer only ever names an available coding, and one the header mentions (by its name,
//!   `x-gzip` for gzip, or `*`);
//! - it is the best of the available codings: when the coding preferred with everything
//!   available is available here, it is the answer; an answer here implies one with everything;
//! - codings and q are case-insensitive: the upper- and lower-cased header give the same answer;
//! - list members naming other codings (`identity`, unknown ones) change nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhttpd::http::encoding::{Coding, preferred};

fuzz_target!(|data: &[u8]| {
    let Some((&mask, rest)) = data.split_first() else { return };
    let available = |c: Coding| match c {
        Coding::Br => mask & 1 != 0,
        Coding::Gzip => mask & 2 != 0,
    };
    let header = String::from_utf8_lossy(rest);

    assert_eq!(preferred(None, available), None, "no Accept-Encoding, yet a coding");
    let chosen = preferred(Some(&header), available);
    assert_eq!(preferred(Some(&header), available), chosen, "preferred is not deterministic");
    let ctx = || format!("preferred({header:?}, mask {}) = {chosen:?}", mask & 3);

    if let Some(c) = chosen {
        assert!(available(c), "{} is not available", ctx());
        let lower = header.to_ascii_lowercase();
        let named = match c {
            Coding::Br => lower.contains("br"),
            Coding::Gzip => lower.contains("gzip"),
        };
        assert!(named || header.contains('*'), "{} names neither it nor *", ctx());
    }

    let best = preferred(Some(&header), |_| true);
    if let Some(b) = best
        && available(b)
    {
        assert_eq!(chosen, Some(b), "{} though {b:?} is preferred and available", ctx());
    }
    if chosen.is_some() {
        assert!(best.is_some(), "{}, but nothing with every coding available", ctx());
    }

    assert_eq!(preferred(Some(&header.to_ascii_uppercase()), available), chosen, "upper-cased: {}", ctx());
    assert_eq!(preferred(Some(&header.to_ascii_lowercase()), available), chosen, "lower-cased: {}", ctx());
    for extra in ["identity", "deflate;q=0.5", "zstd"] {
        let longer = format!("{header}, {extra}");
        assert_eq!(preferred(Some(&longer), available), chosen, "{longer:?} vs {}", ctx());
        let longer = format!("{extra},{header}");
        assert_eq!(preferred(Some(&longer), available), chosen, "{longer:?} vs {}", ctx());
    }
});
