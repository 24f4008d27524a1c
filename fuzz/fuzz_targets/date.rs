//! Fuzzes the HTTP-date parser, `ringhttpd::http::date::parse_http_date`, and its formatter,
//! `imf_fixdate`.
//!
//! Input: `NOW\nDATE` (the current Unix time in decimal, a newline, the field value); without a
//! newline, or when the first line is not a number, the whole input is the date and now is
//! 2026-11-24 (now is clamped to years 0 to 9999). Checked on every input:
//! - nothing panics (parsing, or formatting what was parsed, `clf_date` included), and parsing
//!   gives the same answer twice;
//! - round trip: for any parsed instant whose year has four digits, `imf_fixdate` of it parses
//!   back (with `parse_imf_fixdate` and `parse_http_date`) to the same instant; and the same for
//!   an instant taken from the input bytes;
//! - whether a value is a date does not depend on `now`, and neither does its time of day (only
//!   RFC 850's two-digit year is resolved against `now`);
//! - an RFC 850 date lands within 50 years of now (the year window of RFC 9110 §5.6.7; one more
//!   year for a leap second on 31 December).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhttpd::http::date::{clf_date, imf_fixdate, parse_http_date, parse_imf_fixdate};

/// 2026-11-24T10:00:00Z, the unit tests' now.
const DEFAULT_NOW: i64 = 1_795_514_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the instants IMF-fixdate's four-digit year
/// can express.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;
/// The seven long day names of RFC 850.
const LONG_DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (now, s) = match text.split_once('\n') {
        Some((n, d)) => match n.parse::<i64>() {
            // The server's clock is never outside years 0 to 9999; far outside, RFC 850's year
            // arithmetic could leave `i64`.
            Ok(now) => (now.clamp(FIRST, LAST), d),
            Err(_) => (DEFAULT_NOW, &*text),
        },
        None => (DEFAULT_NOW, &*text),
    };

    // An instant from the input bytes, formatted and parsed back.
    if data.len() >= 8 {
        let raw = i64::from_le_bytes(data[..8].try_into().unwrap());
        let t = FIRST + raw.rem_euclid(LAST - FIRST + 1);
        round_trip(t, now);
        let _ = (imf_fixdate(raw), clf_date(raw));
    }

    let parsed = parse_http_date(s, now);
    assert_eq!(parse_http_date(s, now), parsed, "parse_http_date is not deterministic");
    if let Some(t0) = parse_imf_fixdate(s.trim()) {
        assert_eq!(parsed, Some(t0), "{s:?} is an IMF-fixdate of {t0}, yet parse_http_date says {parsed:?}");
    }
    for other_now in [0, DEFAULT_NOW, LAST, now.wrapping_add(100 * 366 * 86_400)] {
        let other = parse_http_date(s, other_now);
        assert_eq!(
            other.map(|t| t.rem_euclid(86_400)),
            parsed.map(|t| t.rem_euclid(86_400)),
            "{s:?} at now={now} gave {parsed:?}, at now={other_now} {other:?}"
        );
    }
    let Some(t) = parsed else { return };
    let _ = (imf_fixdate(t), clf_date(t));
    if (FIRST..=LAST).contains(&t) {
        round_trip(t, now);
    }

    let trimmed = s.trim();
    if LONG_DAYS.iter().any(|d| trimmed.strip_prefix(d).is_some_and(|r| r.starts_with(", "))) {
        // Only the RFC 850 form starts with a long day name.
        let (year, this_year) = (year_of(t), year_of(now));
        // RFC 9110 §5.6.7: the one year with those two digits within 50 years of now.
        assert!(
            (this_year - 49..=this_year + 51).contains(&year),
            "{s:?} at now={now} (year {this_year}) is in year {year}"
        );
    }
});

fn round_trip(t: i64, now: i64) {
    let formatted = imf_fixdate(t);
    assert_eq!(
        parse_imf_fixdate(&formatted),
        Some(t),
        "imf_fixdate({t}) = {formatted:?} does not parse back"
    );
    assert_eq!(parse_http_date(&formatted, now), Some(t), "{formatted:?} at now={now}");
}

/// The year `imf_fixdate` gives an instant.
fn year_of(t: i64) -> i64 {
    let formatted = imf_fixdate(t);
    let year = formatted.split(' ').nth(3).unwrap_or_else(|| panic!("imf_fixdate({t}) = {formatted:?}"));
    year.parse().unwrap_or_else(|_| panic!("year {year:?} in imf_fixdate({t}) = {formatted:?}"))
}
