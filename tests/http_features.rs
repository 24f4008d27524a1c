//! The HTTP features around serving a file: validators and conditional requests (RFC 9110 §13),
//! byte ranges (§14), the directory redirect, the configurable Cache-Control header, and
//! precompressed variants chosen by Accept-Encoding (§12.5.3).
//!
//! Small files are answered from memory and large ones spliced from the file, so range and
//! variant checks run against both sizes. Files these tests need beyond the shared fixture are
//! written into the document root at run time.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::check::{assert_common_headers, assert_file_headers, assert_serves, parse_http_date};
use common::fixture::{BIG_SIZE, pseudo_random};
use common::http::{Response, send_with};
use common::server::Server;

/// Above the size up to which the server keeps files in memory (32 KiB).
const LARGE: usize = 200 * 1024;
/// A past mtime (2020-09-13), so that dates after it are not in the future.
const PAST_MTIME: u64 = 1_600_000_000;
/// How long a changed file may still be answered from the server's cache.
const CHANGE_VISIBLE_WITHIN: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    send_with(addr, "GET", path, headers)
}

/// Writes `content` to `rel` below the document root, creating directories.
fn put(server: &Server, rel: &str, content: &[u8]) {
    let path = server.fixture().path(rel);
    fs::create_dir_all(path.parent().expect("a parent")).expect("creating directories");
    fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Sets the mtime of `path` to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().write(true).open(path).expect("opening for set_modified");
    file.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).expect("set_modified");
}

/// The IMF-fixdate of `secs` after the epoch.
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A 304 carrying the validators of the 200 it stands for, and no body (`request` already fails
/// on bytes after the head, since a 304 has none).
fn assert_not_modified(r: &Response, of: &Response) {
    assert_eq!((r.status, r.reason.as_str()), (304, "Not Modified"), "{r:#?}");
    assert_eq!(r.all("server"), ["ringhttpd"], "{r:#?}");
    assert_eq!(r.all("date").len(), 1, "{r:#?}");
    assert_eq!(r.all("etag"), [of.expect_header("etag")], "ETag of the 304: {r:#?}");
    assert_eq!(
        r.all("last-modified"),
        [of.expect_header("last-modified")],
        "Last-Modified of the 304: {r:#?}"
    );
    assert!(r.body.is_empty());
    // RFC 9110 §15.4.5: no representation metadata beyond the listed fields.
    for name in ["content-type", "content-length", "accept-ranges", "content-encoding", "content-range"] {
        assert!(r.header(name).is_none(), "{name} in a 304: {r:#?}");
    }
}

/// A 206 for bytes `start..=end` of `content`.
fn assert_partial(r: &Response, content: &[u8], start: usize, end: usize) {
    let what = format!("range {start}-{end} of {} bytes", content.len());
    assert_eq!((r.status, r.reason.as_str()), (206, "Partial Content"), "{what}: {r:#?}");
    assert_common_headers(r);
    assert_eq!(
        r.all("content-range"),
        [format!("bytes {start}-{end}/{}", content.len())],
        "Content-Range of {what}"
    );
    assert_eq!(r.content_length(), end - start + 1, "Content-Length of {what}");
    assert!(r.body == content[start..=end], "body of {what} differs");
}

/// A 200 with the whole of `content` and no Content-Range.
fn assert_whole(r: &Response, content: &[u8], why: &str) {
    assert_eq!(r.status, 200, "{why}: {r:#?}");
    assert_common_headers(r);
    assert!(r.header("content-range").is_none(), "{why}: {r:#?}");
    assert!(r.body == content, "{why}: body differs ({} bytes, {} expected)", r.body.len(), content.len());
}

// ---------------------------------------------------------------------------------------------
// Validators and conditional requests
// ---------------------------------------------------------------------------------------------

#[test]
fn files_carry_strong_validators_and_accept_ranges() {
    let server = Server::start();
    for rel in ["index.html", "httptest/big.bin", "httptest/wikipedia_russia.html"] {
        let r = get_with(server.addr, &format!("/{rel}"), &[]);
        assert_serves(&r, server.fixture(), rel);
        let etag = r.expect_header("etag");
        assert!(!etag.starts_with("W/"), "the ETag of {rel} should be strong: {etag:?}");
    }
}

#[test]
fn if_none_match_with_the_etag_is_not_modified() {
    let server = Server::start();
    let ok = get_with(server.addr, "/index.html", &[]);
    let etag = ok.expect_header("etag").to_owned();
    let cases = [
        etag.clone(),
        format!("\"other\", {etag}"),
        format!("{etag},\"other\""),
        "*".to_owned(),
        format!("W/{etag}"),
        format!("\"x\", W/{etag}"),
    ];
    for value in &cases {
        for method in ["GET", "HEAD"] {
            let r = send_with(server.addr, method, "/index.html", &[("If-None-Match", value)]);
            assert_not_modified(&r, &ok);
        }
    }
    let other = get_with(server.addr, "/index.html", &[("If-None-Match", "\"other\", W/\"x\"")]);
    assert_serves(&other, server.fixture(), "index.html");
}

#[test]
fn if_none_match_on_a_large_file() {
    let server = Server::start();
    let ok = get_with(server.addr, "/httptest/big.bin", &[]);
    let etag = ok.expect_header("etag");
    let r = get_with(server.addr, "/httptest/big.bin", &[("If-None-Match", etag)]);
    assert_not_modified(&r, &ok);
}

#[test]
fn if_modified_since() {
    let server = Server::start();
    let content = pseudo_random(0xda7e, 777);
    put(&server, "cond/dated.bin", &content);
    set_mtime(&server.fixture().path("cond/dated.bin"), PAST_MTIME);
    let ok = get_with(server.addr, "/cond/dated.bin", &[]);
    assert_serves(&ok, server.fixture(), "cond/dated.bin");
    assert_eq!(ok.expect_header("last-modified"), http_date(PAST_MTIME));

    for (secs, why) in [(PAST_MTIME, "equal"), (PAST_MTIME + 86_400, "a day later")] {
        for method in ["GET", "HEAD"] {
            let r =
                send_with(server.addr, method, "/cond/dated.bin", &[("If-Modified-Since", &http_date(secs))]);
            assert_eq!(r.status, 304, "{method} with If-Modified-Since {why}: {r:#?}");
            assert_not_modified(&r, &ok);
        }
    }
    let earlier =
        get_with(server.addr, "/cond/dated.bin", &[("If-Modified-Since", &http_date(PAST_MTIME - 1))]);
    assert_whole(&earlier, &content, "If-Modified-Since one second earlier");

    let etag = ok.expect_header("etag");
    let date = http_date(PAST_MTIME);
    let mismatch = get_with(
        server.addr,
        "/cond/dated.bin",
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", &date)],
    );
    assert_whole(&mismatch, &content, "If-Modified-Since is ignored when If-None-Match does not match");
    let old_date = http_date(PAST_MTIME - 86_400);
    let matched = get_with(
        server.addr,
        "/cond/dated.bin",
        &[("If-None-Match", etag), ("If-Modified-Since", &old_date)],
    );
    assert_not_modified(&matched, &ok);
}

/// Rewrites `rel` with same-sized new content and a new mtime; the old ETag must stop matching
/// within [`CHANGE_VISIBLE_WITHIN`], and the file is then served with its new validators.
fn change_is_noticed(server: &Server, rel: &str, size: usize) {
    let path = server.fixture().path(rel);
    put(server, rel, &pseudo_random(1, size));
    set_mtime(&path, PAST_MTIME);
    let url = format!("/{rel}");
    let before = get_with(server.addr, &url, &[]);
    assert_serves(&before, server.fixture(), rel);
    let old_etag = before.expect_header("etag").to_owned();

    put(server, rel, &pseudo_random(2, size));
    set_mtime(&path, PAST_MTIME + 3600);
    let changed_at = Instant::now();
    let after = loop {
        let r = get_with(server.addr, &url, &[("If-None-Match", &old_etag)]);
        if r.status != 304 {
            break r;
        }
        assert!(
            changed_at.elapsed() < CHANGE_VISIBLE_WITHIN,
            "{rel}: the old ETag still matches after the change"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_serves(&after, server.fixture(), rel);
    assert_ne!(after.expect_header("etag"), old_etag, "{rel}: a changed file needs a new ETag");
}

#[test]
fn a_changed_small_file_gets_a_new_etag() {
    let server = Server::start();
    change_is_noticed(&server, "change/small.bin", 1000);
}

#[test]
fn a_changed_large_file_gets_a_new_etag() {
    let server = Server::start();
    change_is_noticed(&server, "change/large.bin", LARGE);
}

// ---------------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------------

/// Every kind of single range, against a file of `content` served at `url`.
fn check_single_ranges(addr: SocketAddr, url: &str, content: &[u8]) {
    let n = content.len();
    let cases = [
        ("bytes=0-9".to_owned(), 0, 9),
        ("bytes=10-".to_owned(), 10, n - 1),
        ("bytes=-10".to_owned(), n - 10, n - 1),
        (format!("bytes={}-{}", n - 1, n - 1), n - 1, n - 1),
        (format!("bytes={}-{}", n - 5, n + 1000), n - 5, n - 1),
        (format!("bytes=-{}", n + 10), 0, n - 1),
        ("bytes=0-0".to_owned(), 0, 0),
        (format!("bytes={}-{}", n / 3, n / 2), n / 3, n / 2),
    ];
    for (range, start, end) in cases {
        let r = get_with(addr, url, &[("Range", &range)]);
        assert_partial(&r, content, start, end);
    }
}

#[test]
fn single_ranges_of_a_small_file() {
    let server = Server::start();
    let content = pseudo_random(0x5a11, 5000);
    put(&server, "ranges/small.bin", &content);
    check_single_ranges(server.addr, "/ranges/small.bin", &content);
}

#[test]
fn single_ranges_of_a_large_file() {
    let server = Server::start();
    let content = server.fixture().read("httptest/big.bin");
    assert_eq!(content.len(), BIG_SIZE);
    check_single_ranges(server.addr, "/httptest/big.bin", &content);
    let r = get_with(server.addr, "/httptest/big.bin", &[("Range", "bytes=65530-200000")]);
    assert_partial(&r, &content, 65530, 200_000);
}

#[test]
fn range_past_the_end_is_not_satisfiable() {
    let server = Server::start();
    for rel in ["index.html", "httptest/big.bin"] {
        let size = server.fixture().read(rel).len();
        for range in [format!("bytes={size}-"), format!("bytes={}-{}", size + 10, size + 20)] {
            let r = get_with(server.addr, &format!("/{rel}"), &[("Range", &range)]);
            assert_eq!(r.status, 416, "{rel} with {range}: {r:#?}");
            assert_common_headers(&r);
            assert_eq!(r.all("content-range"), [format!("bytes */{size}")], "{rel} with {range}");
        }
    }
}

#[test]
fn malformed_ranges_get_the_whole_file() {
    let server = Server::start();
    for rel in ["index.html", "httptest/big.bin"] {
        let content = server.fixture().read(rel);
        for range in ["bytes=0-1,x", "bytes=abc", "items=0-1", "bytes=5-1", "bytes=", "bytes=1-2-3"] {
            let r = get_with(server.addr, &format!("/{rel}"), &[("Range", range)]);
            assert_whole(&r, &content, &format!("{rel} with Range: {range}"));
        }
    }
}

#[test]
fn if_range_applies_the_range_only_while_the_file_is_unchanged() {
    let server = Server::start();
    for rel in ["index.html", "httptest/big.bin"] {
        let url = format!("/{rel}");
        let content = server.fixture().read(rel);
        let ok = get_with(server.addr, &url, &[]);
        let etag = ok.expect_header("etag");
        let modified = ok.expect_header("last-modified");
        let earlier = http_date(parse_http_date(modified).expect("Last-Modified") as u64 - 60);
        for if_range in [etag, modified] {
            let r = get_with(server.addr, &url, &[("Range", "bytes=2-7"), ("If-Range", if_range)]);
            assert_partial(&r, &content, 2, 7);
        }
        for if_range in ["\"other\"".to_owned(), format!("W/{etag}"), earlier] {
            let r = get_with(server.addr, &url, &[("Range", "bytes=2-7"), ("If-Range", &if_range)]);
            assert_whole(&r, &content, &format!("{rel} with If-Range: {if_range}"));
        }
    }
}

#[test]
fn head_ignores_range() {
    let server = Server::start();
    for rel in ["index.html", "httptest/big.bin"] {
        let r = send_with(server.addr, "HEAD", &format!("/{rel}"), &[("Range", "bytes=0-9")]);
        assert_file_headers(&r, server.fixture(), rel);
        assert!(r.header("content-range").is_none(), "HEAD {rel} with Range: {r:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Directory redirect
// ---------------------------------------------------------------------------------------------

#[test]
fn directory_without_slash_redirects_keeping_the_query() {
    let server = Server::start();
    for (target, location) in [
        ("/httptest/dir2", "/httptest/dir2/"),
        ("/httptest/dir2?x=1", "/httptest/dir2/?x=1"),
        ("/httptest/noindex", "/httptest/noindex/"),
    ] {
        for method in ["GET", "HEAD"] {
            let r = send_with(server.addr, method, target, &[]);
            assert_eq!(
                (r.status, r.reason.as_str()),
                (301, "Moved Permanently"),
                "{method} {target}: {r:#?}"
            );
            assert_common_headers(&r);
            assert_eq!(r.all("location"), [location], "{method} {target}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cache-Control
// ---------------------------------------------------------------------------------------------

/// The Cache-Control values of a 200, a 206, a 304, a HEAD 200, a 301 and a 404.
fn cache_control_by_status(server: &Server) -> Vec<(u16, Vec<String>)> {
    let ok = get_with(server.addr, "/index.html", &[]);
    let etag = ok.expect_header("etag").to_owned();
    let responses = [
        ok,
        get_with(server.addr, "/index.html", &[("Range", "bytes=0-3")]),
        get_with(server.addr, "/httptest/big.bin", &[("Range", "bytes=0-3")]),
        get_with(server.addr, "/index.html", &[("If-None-Match", &etag)]),
        send_with(server.addr, "HEAD", "/index.html", &[]),
        get_with(server.addr, "/httptest/dir2", &[]),
        get_with(server.addr, "/no-such-file", &[]),
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206, 206, 304, 200, 301, 404]);
    responses
        .iter()
        .map(|r| (r.status, r.all("cache-control").iter().map(|v| v.to_string()).collect()))
        .collect()
}

#[test]
fn cache_control_is_added_to_successful_responses_only() {
    let server = Server::start_with(2, &["--cache-control", "public, max-age=60"]);
    for (status, values) in cache_control_by_status(&server) {
        let expected: &[&str] = if status == 404 { &[] } else { &["public, max-age=60"] };
        assert_eq!(values, expected, "Cache-Control of a {status}");
    }
}

#[test]
fn no_cache_control_without_the_flag() {
    let server = Server::start();
    for (status, values) in cache_control_by_status(&server) {
        assert!(values.is_empty(), "Cache-Control of a {status} without --cache-control: {values:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Precompressed variants
// ---------------------------------------------------------------------------------------------

/// The files of one precompressed set: the original and its `.gz` and `.br` variants (`None`
/// where absent), all distinct bytes.
struct Variants {
    url: String,
    identity: Vec<u8>,
    gzip: Option<Vec<u8>>,
    br: Option<Vec<u8>>,
    content_type: &'static str,
}

impl Variants {
    /// Writes `rel` of `sizes.0` bytes, and `.gz`/`.br` beside it of the other sizes if given.
    fn write(
        server: &Server,
        rel: &str,
        content_type: &'static str,
        sizes: (usize, Option<usize>, Option<usize>),
    ) -> Variants {
        let make = |seed: u64, size: Option<usize>| size.map(|n| pseudo_random(seed, n));
        let v = Variants {
            url: format!("/{rel}"),
            identity: pseudo_random(0xc0de, sizes.0),
            gzip: make(0xc0de + 1, sizes.1),
            br: make(0xc0de + 2, sizes.2),
            content_type,
        };
        put(server, rel, &v.identity);
        if let Some(gz) = &v.gzip {
            put(server, &format!("{rel}.gz"), gz);
        }
        if let Some(br) = &v.br {
            put(server, &format!("{rel}.br"), br);
        }
        v
    }

    fn get(&self, server: &Server, accept: Option<&str>, extra: &[(&str, &str)]) -> Response {
        let mut headers: Vec<(&str, &str)> = accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
        headers.extend_from_slice(extra);
        get_with(server.addr, &self.url, &headers)
    }
}

/// A 200 with `body`, the original's Content-Type, `Content-Encoding: coding` (none for
/// `None`) and `Vary: Accept-Encoding`.
fn assert_variant(r: &Response, v: &Variants, coding: Option<&str>, body: &[u8], why: &str) {
    assert_eq!(r.status, 200, "{why}: {r:#?}");
    assert_common_headers(r);
    assert_eq!(r.all("content-type"), [v.content_type], "Content-Type, {why}");
    let expected_coding: Vec<&str> = coding.into_iter().collect();
    assert_eq!(r.all("content-encoding"), expected_coding, "Content-Encoding, {why}");
    assert_vary(r, why);
    assert_eq!(r.content_length(), body.len(), "Content-Length, {why}");
    assert!(r.body == body, "{why}: body is not the expected variant ({} bytes)", r.body.len());
}

fn assert_vary(r: &Response, why: &str) {
    let vary = r.all("vary");
    assert!(
        vary.len() == 1 && vary[0].eq_ignore_ascii_case("accept-encoding"),
        "{why}: one Vary: Accept-Encoding expected: {r:#?}"
    );
}

/// Negotiation for a file with both variants.
fn check_negotiation(server: &Server, v: &Variants) {
    let (gz, br) = (v.gzip.as_deref().expect("gzip"), v.br.as_deref().expect("br"));
    let cases: [(Option<&str>, Option<&str>, &[u8]); 10] = [
        (Some("gzip"), Some("gzip"), gz),
        (Some("br, gzip"), Some("br"), br),
        (Some("gzip, deflate, br"), Some("br"), br),
        (Some("br;q=0.5, gzip;q=1"), Some("gzip"), gz),
        (Some("gzip;q=0.8, br;q=0.8"), Some("br"), br),
        (Some("gzip;q=0"), None, &v.identity),
        (Some("br;q=0, gzip;q=0"), None, &v.identity),
        (Some("identity"), None, &v.identity),
        (Some("deflate"), None, &v.identity),
        (None, None, &v.identity),
    ];
    for (accept, coding, body) in cases {
        let r = v.get(server, accept, &[]);
        assert_variant(&r, v, coding, body, &format!("{} with Accept-Encoding {accept:?}", v.url));
    }
}

#[test]
fn precompressed_variants_are_negotiated() {
    let server = Server::start();
    let small = Variants::write(&server, "pre/style.css", "text/css", (3000, Some(1200), Some(1000)));
    check_negotiation(&server, &small);
    let large =
        Variants::write(&server, "pre/app.js", "application/javascript", (LARGE, Some(90_000), Some(70_000)));
    check_negotiation(&server, &large);
}

#[test]
fn only_available_variants_are_chosen() {
    let server = Server::start();
    let v = Variants::write(&server, "pre/gz-only.css", "text/css", (2000, Some(900), None));
    let gz = v.gzip.as_deref().expect("gzip");
    let r = v.get(&server, Some("br"), &[]);
    assert_variant(&r, &v, None, &v.identity, "only .gz present, client accepts br");
    let r = v.get(&server, Some("br, gzip;q=0.1"), &[]);
    assert_variant(&r, &v, Some("gzip"), gz, "only .gz present, client accepts br and gzip");
}

#[test]
fn variants_have_their_own_etags_and_validate() {
    let server = Server::start();
    let v = Variants::write(&server, "pre/tagged.css", "text/css", (3000, Some(1200), Some(1000)));
    let plain = v.get(&server, None, &[]);
    let gz = v.get(&server, Some("gzip"), &[]);
    let br = v.get(&server, Some("br"), &[]);
    let tags = [plain.expect_header("etag"), gz.expect_header("etag"), br.expect_header("etag")];
    assert!(
        tags[0] != tags[1] && tags[0] != tags[2] && tags[1] != tags[2],
        "each representation needs its own strong ETag (RFC 9110 §8.8.3): {tags:?}"
    );
    let r = v.get(&server, Some("gzip"), &[("If-None-Match", tags[1])]);
    assert_not_modified(&r, &gz);
    assert_vary(&r, "a 304 for a negotiated response carries Vary (RFC 9110 §15.4.5)");
}

#[test]
fn ranges_apply_to_the_compressed_bytes() {
    let server = Server::start();
    let small = Variants::write(&server, "pre/range.css", "text/css", (3000, Some(1200), Some(1000)));
    let large =
        Variants::write(&server, "pre/range.js", "application/javascript", (LARGE, Some(90_000), None));
    for v in [&small, &large] {
        let gz = v.gzip.as_deref().expect("gzip");
        for (range, start, end) in [("bytes=0-9", 0, 9), ("bytes=-100", gz.len() - 100, gz.len() - 1)] {
            let r = v.get(&server, Some("gzip"), &[("Range", range)]);
            assert_partial(&r, gz, start, end);
            assert_eq!(r.all("content-encoding"), ["gzip"], "{} {range}", v.url);
            assert_vary(&r, &format!("{} {range}", v.url));
        }
        let past = format!("bytes={}-", gz.len());
        let r = v.get(&server, Some("gzip"), &[("Range", &past)]);
        assert_eq!(r.status, 416, "{} {past}: {r:#?}", v.url);
        assert_eq!(r.all("content-range"), [format!("bytes */{}", gz.len())]);
    }
}

#[test]
fn head_of_a_variant_has_its_headers() {
    let server = Server::start();
    let v = Variants::write(&server, "pre/head.css", "text/css", (3000, Some(1200), Some(1000)));
    let r = send_with(server.addr, "HEAD", &v.url, &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.all("content-encoding"), ["gzip"]);
    assert_eq!(r.all("content-type"), ["text/css"]);
    assert_eq!(r.content_length(), 1200);
    assert_vary(&r, "HEAD with Accept-Encoding: gzip");
}

#[test]
fn http_date_helper_round_trips() {
    assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(PAST_MTIME), "Sun, 13 Sep 2020 12:26:40 GMT");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    assert_eq!(parse_http_date(&http_date(now)), Some(now as i64));
}
