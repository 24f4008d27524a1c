//! HTTP dates: IMF-fixdate formatting and parsing (RFC 9110 §5.6.7), and the Common Log Format
//! timestamp. Pure arithmetic on Unix seconds; never reads the clock itself.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Broken-down UTC time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    weekday: usize,
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil(unix: i64) -> Civil {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        min: secs / 60 % 60,
        sec: secs % 60,
        weekday: days.rem_euclid(7) as usize,
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub fn imf_fixdate(unix: i64) -> String {
    let c = civil(unix);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday],
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.min,
        c.sec
    )
}

/// `24/Nov/2026:10:00:00 +0000`, the Common Log Format timestamp.
pub fn clf_date(unix: i64) -> String {
    let c = civil(unix);
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day,
        MONTHS[c.month as usize - 1],
        c.year,
        c.hour,
        c.min,
        c.sec
    )
}

fn num(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// Parses an HTTP-date in any of the three formats a recipient must accept (RFC 9110 §5.6.7):
/// IMF-fixdate, the obsolete RFC 850 form, and asctime. `now` (Unix seconds) resolves RFC 850's
/// two-digit years. Anything else is `None`, which callers treat as if the field were absent.
pub fn parse_http_date(s: &str, now: i64) -> Option<i64> {
    let s = s.trim();
    parse_imf_fixdate(s).or_else(|| parse_rfc850(s, now)).or_else(|| parse_asctime(s))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let (weekday, rest) = s.trim().split_once(", ")?;
    DAYS.iter().position(|d| *d == weekday)?;
    let mut parts = rest.split(' ');
    let day = num(parts.next()?, 2)?;
    let month = month(parts.next()?)?;
    let year = num(parts.next()?, 4)?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    unix_time(i64::from(year), month, day, time)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`: a two-digit year that would lie more than 50 years after
/// `now` means the most recent past year with those digits (§5.6.7).
fn parse_rfc850(s: &str, now: i64) -> Option<i64> {
    const LONG_DAYS: [&str; 7] =
        ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let (weekday, rest) = s.split_once(", ")?;
    LONG_DAYS.iter().position(|d| *d == weekday)?;
    let mut parts = rest.split(' ');
    let mut date = parts.next()?.split('-');
    let (day, month, yy) = (num(date.next()?, 2)?, month(date.next()?)?, num(date.next()?, 2)?);
    let time = parts.next()?;
    if date.next().is_some() || parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    // The one year with those two digits in (now - 50, now + 50].
    let this_year = civil(now).year;
    let mut year = this_year - this_year.rem_euclid(100) + i64::from(yy);
    if year > this_year + 50 {
        year -= 100;
    } else if year + 100 <= this_year + 50 {
        year += 100;
    }
    unix_time(year, month, day, time)
}

/// `Sun Nov  6 08:49:37 1994` (the day is two digits, or a space and one digit).
fn parse_asctime(s: &str) -> Option<i64> {
    let weekday = s.get(..4)?.strip_suffix(' ')?;
    DAYS.iter().position(|d| *d == weekday)?;
    let month = month(s.get(4..7)?)?;
    let rest = s.get(7..)?.strip_prefix(' ')?;
    let (day, rest) = match rest.strip_prefix(' ') {
        Some(one) => (num(one.get(..1)?, 1)?, one.get(1..)?),
        None => (num(rest.get(..2)?, 2)?, rest.get(2..)?),
    };
    let mut parts = rest.strip_prefix(' ')?.split(' ');
    let time = parts.next()?;
    let year = num(parts.next()?, 4)?;
    if parts.next().is_some() {
        return None;
    }
    unix_time(i64::from(year), month, day, time)
}

fn month(name: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

/// Unix seconds of a calendar day and an `HH:MM:SS` time of day, if both are valid.
fn unix_time(year: i64, month: u32, day: u32, time: &str) -> Option<i64> {
    let mut hms = time.split(':');
    let (h, m, sec) = (num(hms.next()?, 2)?, num(hms.next()?, 2)?, num(hms.next()?, 2)?);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(imf_fixdate(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(clf_date(1_795_514_400), "24/Nov/2026:10:00:00 +0000");
    }

    #[test]
    fn parses_what_it_formats() {
        for t in [0, 784_111_777, 951_782_400, 1_795_514_400, 4_102_444_799] {
            assert_eq!(parse_imf_fixdate(&imf_fixdate(t)), Some(t));
        }
    }

    /// The three forms of RFC 9110 §5.6.7's own example all mean the same instant.
    #[test]
    fn accepts_all_three_formats() {
        let now = 1_795_514_400; // 2026
        for s in
            ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
        {
            assert_eq!(parse_http_date(s, now), Some(784_111_777), "{s}");
        }
        assert_eq!(
            parse_http_date("Thu Jan 10 00:00:00 2030", now),
            parse_imf_fixdate("Thu, 10 Jan 2030 00:00:00 GMT")
        );
    }

    /// Two-digit years: more than 50 years ahead of now means the previous century.
    #[test]
    fn rfc850_two_digit_years() {
        let now = 1_795_514_400; // 2026
        let year_of = |s: &str| parse_http_date(s, now).map(|t| civil(t).year);
        assert_eq!(year_of("Monday, 01-Jan-76 00:00:00 GMT"), Some(2076));
        assert_eq!(year_of("Saturday, 01-Jan-77 00:00:00 GMT"), Some(1977));
        assert_eq!(year_of("Tuesday, 01-Jan-26 00:00:00 GMT"), Some(2026));
        // Late in a century, an early two-digit year is the coming century's, not 80 years ago.
        let in_2080 = 3_471_292_800; // 2080-01-01
        let year_then = |s: &str| parse_http_date(s, in_2080).map(|t| civil(t).year);
        assert_eq!(year_then("Saturday, 01-Jan-00 00:00:00 GMT"), Some(2100));
        assert_eq!(year_then("Saturday, 01-Jan-50 00:00:00 GMT"), Some(2050));
    }

    #[test]
    fn rejects_malformed_dates() {
        for s in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun Nov  6 08:49:37 1994 x",
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse_http_date(s, 1_795_514_400), None, "{s}");
        }
    }
}
