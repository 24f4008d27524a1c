//! Serving files: statuses, headers and byte-exact bodies for GET and HEAD.

mod common;

use common::check::{assert_error, assert_file_headers, assert_serves};
use common::fixture::{BIG_SIZE, TYPED_FILES, WIKI_SIZE};
use common::http::{Client, exchange, get, get_keepalive, head, parse_responses, request};
use common::server::Server;

#[test]
fn root_serves_index_html() {
    let server = Server::start();
    let r = get(server.addr, "/");
    assert_serves(&r, server.fixture(), "index.html");
    assert_eq!(r.expect_header("content-type"), "text/html");
    assert_eq!(r.expect_header("connection"), "close");
}

#[test]
fn explicit_index_html() {
    let server = Server::start();
    assert_serves(&get(server.addr, "/index.html"), server.fixture(), "index.html");
}

#[test]
fn deep_file() {
    let server = Server::start();
    let rel = "httptest/dir1/dir12/dir123/deep.txt";
    let r = get(server.addr, &format!("/{rel}"));
    assert_serves(&r, server.fixture(), rel);
    assert!(r.expect_header("content-type").starts_with("text/plain"));
}

#[test]
fn large_html_file_is_byte_exact() {
    let server = Server::start();
    let rel = "httptest/wikipedia_russia.html";
    let r = get(server.addr, &format!("/{rel}"));
    assert_eq!(r.body.len(), WIKI_SIZE);
    assert_serves(&r, server.fixture(), rel);
    assert_eq!(r.expect_header("content-type"), "text/html");
}

#[test]
fn one_mebibyte_plus_one_is_byte_exact() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/big.bin");
    assert_eq!(r.content_length(), BIG_SIZE);
    assert_serves(&r, server.fixture(), "httptest/big.bin");
    assert_eq!(r.expect_header("content-type"), "application/octet-stream");
}

#[test]
fn empty_file() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/empty.txt");
    assert_serves(&r, server.fixture(), "httptest/empty.txt");
    assert_eq!(r.expect_header("content-length"), "0");
    assert!(r.body.is_empty());
}

#[test]
fn content_types_by_extension() {
    let server = Server::start();
    for (name, expected, exact) in TYPED_FILES {
        let rel = format!("httptest/types/{name}");
        let r = get(server.addr, &format!("/{rel}"));
        assert_serves(&r, server.fixture(), &rel);
        let got = r.expect_header("content-type");
        if *exact {
            assert_eq!(got, *expected, "Content-Type of {name}");
        } else {
            assert!(got.starts_with(expected), "Content-Type of {name}: {got:?}");
        }
    }
}

#[test]
fn percent_encoded_name() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/dir2/%70%61%67%65%2e%68%74%6d%6c");
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
    let upper = get(server.addr, "/httptest/dir2/%70%61%67%65%2E%68%74%6D%6C");
    assert_serves(&upper, server.fixture(), "httptest/dir2/page.html");
}

#[test]
fn encoded_spaces_in_name() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/space%20in%20name.txt");
    assert_serves(&r, server.fixture(), "httptest/space in name.txt");
}

#[test]
fn two_dots_inside_a_name_are_not_a_parent_reference() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/text..txt");
    assert_serves(&r, server.fixture(), "httptest/text..txt");
}

#[test]
fn query_string_is_ignored() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/dir2/page.html?arg1=value&arg2=%2e%2e/x");
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
    let bare = get(server.addr, "/httptest/dir2/page.html?");
    assert_serves(&bare, server.fixture(), "httptest/dir2/page.html");
}

#[test]
fn directory_with_slash_serves_its_index() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/dir2/");
    assert_serves(&r, server.fixture(), "httptest/dir2/index.html");
    assert_eq!(r.expect_header("content-type"), "text/html");
}

#[test]
fn directory_without_slash_redirects() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/dir2");
    assert_eq!((r.status, r.reason.as_str()), (301, "Moved Permanently"));
    assert_eq!(r.all("location"), ["/httptest/dir2/"]);
    assert_eq!(r.content_length(), r.body.len());
    common::check::assert_common_headers(&r);
}

#[test]
fn directory_redirect_keeps_query_string() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/dir2?a=1&b=2");
    assert_eq!(r.status, 301, "{r:#?}");
    assert_eq!(r.all("location"), ["/httptest/dir2/?a=1&b=2"]);
}

#[test]
fn file_with_trailing_slash_is_not_found() {
    let server = Server::start();
    assert_error(&get(server.addr, "/httptest/dir2/page.html/"), 404);
}

#[test]
fn missing_file_is_not_found() {
    let server = Server::start();
    assert_error(&get(server.addr, "/no/such/file.html"), 404);
    assert_error(&get(server.addr, "/httptest/missing.txt"), 404);
}

#[test]
fn directory_without_index_is_not_found() {
    let server = Server::start();
    assert_error(&get(server.addr, "/httptest/noindex/"), 404);
}

#[test]
fn unreadable_file_is_forbidden() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/unreadable.txt");
    assert_error(&r, 403);
    assert!(!r.body_text().contains("no read permission on this file"));
}

#[test]
fn symlink_inside_root_is_served() {
    let server = Server::start();
    let r = get(server.addr, "/httptest/link_inside.html");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.body, server.fixture().read("httptest/dir2/page.html"));
    let through_dir = get(server.addr, "/httptest/link_dir2/page.html");
    assert_eq!(through_dir.status, 200, "{through_dir:#?}");
    assert_eq!(through_dir.body, server.fixture().read("httptest/dir2/page.html"));
}

#[test]
fn head_has_get_headers_and_no_body() {
    let server = Server::start();
    let rel = "httptest/wikipedia_russia.html";
    let raw = format!("HEAD /{rel} HTTP/1.0\r\n\r\n");
    let bytes = exchange(server.addr, raw.as_bytes());
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
    assert_eq!(end, bytes.len(), "bytes after the HEAD response headers");
    let h = parse_responses(&bytes, &[true]).remove(0);
    assert_file_headers(&h, server.fixture(), rel);
    let g = get(server.addr, &format!("/{rel}"));
    for name in ["content-type", "content-length", "etag", "last-modified"] {
        assert_eq!(h.all(name), g.all(name), "{name} of HEAD vs GET");
    }
}

#[test]
fn head_over_http11() {
    let server = Server::start();
    let h = head(server.addr, "/httptest/big.bin");
    assert_file_headers(&h, server.fixture(), "httptest/big.bin");
    assert!(h.body.is_empty());
}

#[test]
fn head_of_missing_file_has_no_body() {
    let server = Server::start();
    let bytes = exchange(server.addr, b"HEAD /missing.html HTTP/1.0\r\n\r\n");
    let r = parse_responses(&bytes, &[true]).remove(0);
    assert_eq!(r.status, 404, "{r:#?}");
    assert!(r.body.is_empty());
    assert!(r.content_length() > 0, "Content-Length is the GET body length");
}

#[test]
fn http10_without_host_is_served() {
    let server = Server::start();
    let r = request(server.addr, b"GET /httptest/dir2/page.html HTTP/1.0\r\n\r\n");
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
    assert_eq!(r.expect_header("connection"), "close");
}

#[test]
fn absolute_form_target_is_served() {
    let server = Server::start();
    let raw = b"GET http://localhost/httptest/dir2/page.html HTTP/1.1\r\nHost: localhost\r\n\
                Connection: close\r\n\r\n";
    assert_serves(&request(server.addr, raw), server.fixture(), "httptest/dir2/page.html");
}

#[test]
fn header_names_are_case_insensitive() {
    let server = Server::start();
    let raw = b"GET /index.html HTTP/1.1\r\nhOsT: localhost\r\nCONNECTION: close\r\n\r\n";
    assert_serves(&request(server.addr, raw), server.fixture(), "index.html");
}

#[test]
fn leading_empty_line_is_ignored() {
    let server = Server::start();
    let raw = b"\r\nGET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_serves(&request(server.addr, raw), server.fixture(), "index.html");
}

#[test]
fn etag_is_stable_and_differs_between_files() {
    let server = Server::start();
    let mut client = Client::connect(server.addr);
    let a1 = client.roundtrip(get_keepalive("/index.html").as_bytes());
    let a2 = client.roundtrip(get_keepalive("/index.html").as_bytes());
    let b = client.roundtrip(get_keepalive("/httptest/dir2/page.html").as_bytes());
    assert_eq!(a1.expect_header("etag"), a2.expect_header("etag"));
    assert_ne!(a1.expect_header("etag"), b.expect_header("etag"));
}

#[test]
fn single_worker_serves() {
    let server = Server::start_with(1, &[]);
    assert_serves(&get(server.addr, "/"), server.fixture(), "index.html");
    assert_serves(
        &get(server.addr, "/httptest/wikipedia_russia.html"),
        server.fixture(),
        "httptest/wikipedia_russia.html",
    );
}

/// Bodies whose pages are in the page cache go out with `sendfile` from the worker, the others
/// through the ring's splices: both arrive byte-exact. `POSIX_FADV_DONTNEED` after `fsync`
/// drops the second file's clean pages from the cache, so it takes the splice path.
#[test]
fn file_bodies_in_and_out_of_the_page_cache_are_byte_exact() {
    use std::os::fd::AsRawFd;
    let server = Server::start();
    for (name, evict) in [("cached.bin", false), ("evicted.bin", true)] {
        let body = common::fixture::pseudo_random(if evict { 3 } else { 5 }, 3 * 1024 * 1024 + 17);
        let path = server.fixture().path(name);
        std::fs::write(&path, &body).expect("writing the file");
        if evict {
            let file = std::fs::File::open(&path).expect("opening the file");
            file.sync_all().expect("fsync");
            // SAFETY: a plain syscall on a descriptor the File keeps open.
            let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0, "posix_fadvise");
        }
        let r = get(server.addr, &format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body.len(), body.len(), "{name}");
        assert!(r.body == body, "{name}: the body differs");
    }
}

/// The smallest turn `--sendfile-max-chunk` allows cuts a body of 3 MiB and 17 bytes into 49
/// turns, each but the last ending in a wait for room; two such bodies in a row on one connection arrive byte-exact.
#[test]
fn bodies_sent_in_the_smallest_turns_are_byte_exact() {
    let server = Server::start_with(1, &["--sendfile-max-chunk", "65536"]);
    let body = common::fixture::pseudo_random(7, 3 * 1024 * 1024 + 17);
    std::fs::write(server.fixture().path("turns.bin"), &body).expect("writing the file");
    let mut client = Client::connect(server.addr);
    for round in 0..2 {
        let r = client.roundtrip(get_keepalive("/turns.bin").as_bytes());
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(r.body.len(), body.len(), "round {round}");
        assert!(r.body == body, "round {round}: the body differs");
    }
}
