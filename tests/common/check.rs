//! Assertions shared by the test files: the headers every response carries, the shape of error
//! responses and of served files, and a strict IMF-fixdate parser (RFC 9110 section 5.6.7).

use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::fixture::Fixture;
use super::http::Response;

/// How far `Date` may be from the test's clock.
const CLOCK_SLACK_SECS: i64 = 300;

/// The standard reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Headers every response carries: Server, a current Date, one Content-Type, one numeric
/// Content-Length and a Connection of `keep-alive` or `close`.
pub fn assert_common_headers(r: &Response) {
    assert_eq!(r.all("server"), ["ringhttpd"], "Server header in {r:#?}");
    let dates = r.all("date");
    assert_eq!(dates.len(), 1, "one Date header in {r:#?}");
    assert_date_is_now(dates[0]);
    assert_eq!(r.all("content-type").len(), 1, "one Content-Type in {r:#?}");
    r.content_length();
    let connection = r.all("connection");
    assert!(
        matches!(connection.as_slice(), ["keep-alive"] | ["close"]),
        "Connection must be keep-alive or close: {r:#?}"
    );
}

/// An error response: the status and its reason, the common headers, and a non-empty
/// `text/html` body whose length is the Content-Length.
pub fn assert_error(r: &Response, status: u16) {
    assert_eq!(r.status, status, "status of {r:#?}");
    assert_error_shape(r);
}

/// [`assert_error`] without a fixed status, for cases where several statuses are correct.
pub fn assert_error_shape(r: &Response) {
    if !reason(r.status).is_empty() {
        assert_eq!(r.reason, reason(r.status), "reason phrase of {r:#?}");
    }
    assert_common_headers(r);
    assert_eq!(r.content_length(), r.body.len(), "Content-Length of {r:#?}");
    assert!(!r.body.is_empty(), "error responses have a body: {r:#?}");
    let content_type = r.expect_header("content-type");
    assert!(content_type.starts_with("text/html"), "error body Content-Type {content_type:?}");
}

/// A 200 carrying exactly the bytes of `rel`, with the headers of a served file.
pub fn assert_serves(r: &Response, fixture: &Fixture, rel: &str) {
    assert_file_headers(r, fixture, rel);
    assert_eq!(r.content_length(), r.body.len(), "Content-Length of {rel}");
    assert!(
        r.body == fixture.read(rel),
        "body of {rel} differs from the file ({} bytes received, {} expected)",
        r.body.len(),
        fixture.read(rel).len()
    );
}

/// The headers of a 200 for `rel` (also for HEAD): status, common headers, Content-Length equal
/// to the file size, Last-Modified equal to its mtime, a quoted ETag and `Accept-Ranges: bytes`.
pub fn assert_file_headers(r: &Response, fixture: &Fixture, rel: &str) {
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"), "{rel}: {r:#?}");
    assert_common_headers(r);
    let meta = std::fs::metadata(fixture.path(rel)).expect("fixture metadata");
    assert_eq!(r.content_length() as u64, meta.len(), "Content-Length of {rel}");
    let modified = r.expect_header("last-modified");
    assert_eq!(
        parse_http_date(modified),
        Some(meta.mtime()),
        "Last-Modified {modified:?} of {rel} is not its mtime"
    );
    let etag = r.expect_header("etag");
    let opaque = etag.strip_prefix("W/").unwrap_or(etag);
    assert!(
        opaque.len() >= 3 && opaque.starts_with('"') && opaque.ends_with('"'),
        "ETag {etag:?} is not a quoted entity-tag"
    );
    assert_eq!(r.all("accept-ranges"), ["bytes"], "Accept-Ranges of {rel}");
}

/// Asserts that `value` is an IMF-fixdate within a few minutes of now.
pub fn assert_date_is_now(value: &str) {
    let secs = parse_http_date(value).unwrap_or_else(|| panic!("Date {value:?} is not an IMF-fixdate"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64;
    assert!((secs - now).abs() <= CLOCK_SLACK_SECS, "Date {value:?} is {} s away from now", secs - now);
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT` strictly (fixed widths, matching weekday) into
/// seconds since the Unix epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || &s[25..] != " GMT" {
        return None;
    }
    let fixed = [(7, b' '), (11, b' '), (16, b' '), (19, b':'), (22, b':')];
    if fixed.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (day, year) = (num(5, 7)?, num(12, 16)?);
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as i64 + 1;
    let (hour, min, sec) = (num(17, 19)?, num(20, 22)?, num(23, 25)?);
    if !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if DAYS[days.rem_euclid(7) as usize] != &s[..3] {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One part of a multipart/byteranges body.
#[derive(Debug)]
pub struct Part {
    pub content_type: String,
    pub content_range: String,
    pub body: Vec<u8>,
}

/// Splits a multipart/byteranges body at `boundary` (RFC 2046 §5.1.1 delimiters).
pub fn parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}");
    let mut rest = body.strip_prefix(b"\r\n".as_slice()).unwrap_or(body);
    rest = rest.strip_prefix(delimiter.as_bytes()).expect("body starts with the first delimiter");
    let mut out = Vec::new();
    loop {
        if rest == b"--\r\n" {
            return out;
        }
        rest = rest.strip_prefix(b"\r\n".as_slice()).expect("CRLF after a delimiter");
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("part head") + 4;
        let head = String::from_utf8(rest[..head_end].to_vec()).expect("UTF-8 part head");
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_else(|| panic!("{name} missing in part head {head:?}"))
        };
        let next = format!("\r\n{delimiter}");
        let body_len = rest[head_end..]
            .windows(next.len())
            .position(|w| w == next.as_bytes())
            .expect("a delimiter after the part");
        out.push(Part {
            content_type: field("content-type"),
            content_range: field("content-range"),
            body: rest[head_end..head_end + body_len].to_vec(),
        });
        rest = &rest[head_end + body_len + next.len()..];
    }
}

/// A 206 whose multipart/byteranges body holds exactly `ranges` of `content`, in order, each
/// part of type `part_type`.
pub fn assert_multipart(r: &Response, content: &[u8], ranges: &[(usize, usize)], part_type: &str, why: &str) {
    assert_eq!(r.status, 206, "{why}: {r:#?}");
    assert_common_headers(r);
    assert!(r.header("content-range").is_none(), "{why}: no Content-Range on the whole");
    let content_type = r.expect_header("content-type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{why}: Content-Type {content_type}"));
    assert!(boundary.len() >= 16, "{why}: boundary {boundary:?} too short to be unguessable");
    let got = parts(&r.body, boundary);
    assert_eq!(got.len(), ranges.len(), "{why}: {got:#?}");
    for (part, &(start, end)) in got.iter().zip(ranges) {
        assert_eq!(part.content_type, part_type, "{why}");
        assert_eq!(part.content_range, format!("bytes {start}-{end}/{}", content.len()), "{why}");
        assert!(part.body == content[start..=end], "{why}: bytes {start}-{end} differ");
    }
}
