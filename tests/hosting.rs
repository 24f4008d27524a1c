//! What hosting a site needs: a fallback route for single-page apps (`--fallback`), the site's
//! own error pages (`--error-page`), dotfiles hidden by default (`--dotfiles`), and generated
//! directory listings (`--autoindex`).

mod common;

use std::fs;
use std::net::SocketAddr;

use common::check::assert_error;
use common::http::{Response, send_with};
use common::server::{Server, run_to_exit};

fn get(addr: SocketAddr, path: &str) -> Response {
    send_with(addr, "GET", path, &[])
}

fn put(server: &Server, rel: &str, content: &str) {
    let path = server.fixture().path(rel);
    fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
    fs::write(&path, content).expect("writing a fixture file");
}

// ---- fallback ----

#[test]
fn fallback_answers_paths_that_name_nothing() {
    let server = Server::start_with(2, &["--fallback", "/index.html"]);
    let index = server.fixture().read("index.html");
    let direct = get(server.addr, "/index.html");
    for path in
        ["/app/route", "/app/route/", "/no-such-file.js", "/httptest/noindex/", "/httptest/dir2/missing"]
    {
        let r = get(server.addr, path);
        assert_eq!(r.status, 200, "{path}: {r:#?}");
        assert_eq!(r.body, index, "{path}");
        assert_eq!(r.header("etag"), direct.header("etag"), "{path}: the fallback's own validators");
        assert_eq!(r.header("content-type"), Some("text/html"), "{path}");
    }
    // Existing files and directories with an index are served as themselves.
    let page = get(server.addr, "/httptest/dir2/");
    assert_eq!(page.body, server.fixture().read("httptest/dir2/index.html"));
}

#[test]
fn fallback_supports_head_ranges_and_conditionals() {
    let server = Server::start_with(2, &["--fallback", "/index.html"]);
    let index = server.fixture().read("index.html");
    let head = send_with(server.addr, "HEAD", "/spa/page", &[]);
    assert_eq!((head.status, head.content_length()), (200, index.len()), "{head:#?}");
    assert!(head.body.is_empty());
    let range = send_with(server.addr, "GET", "/spa/page", &[("Range", "bytes=0-9")]);
    assert_eq!(range.status, 206, "{range:#?}");
    assert_eq!(range.body, index[..10]);
    let etag = head.expect_header("etag");
    let cond = send_with(server.addr, "GET", "/spa/page", &[("If-None-Match", etag)]);
    assert_eq!(cond.status, 304, "{cond:#?}");
}

#[test]
fn fallback_never_applies_to_refused_paths() {
    let server = Server::start_with(2, &["--fallback", "/index.html"]);
    for (path, status) in [
        ("/httptest/unreadable.txt", 403),
        ("/httptest/link_outside.txt", 403),
        ("/../secret.txt", 400),
        ("/%00", 400),
        ("/.env", 404),
        ("/.git/config", 404),
    ] {
        let r = get(server.addr, path);
        assert_eq!(r.status, status, "{path}: {r:#?}");
        assert_ne!(r.body, server.fixture().read("index.html"), "{path}");
    }
    let post = send_with(server.addr, "POST", "/app/route", &[]);
    assert_eq!(post.status, 405, "{post:#?}");
}

#[test]
fn missing_fallback_file_leaves_the_404() {
    let server = Server::start_with(2, &["--fallback", "/no-such-app.html"]);
    assert_error(&get(server.addr, "/app/route"), 404);
}

// ---- error pages ----

#[test]
fn error_pages_carry_the_sites_body_and_the_original_status() {
    let server = Server::start_with(
        2,
        &[
            "--error-page",
            "404=/errors/404.html",
            "--error-page",
            "403=/errors/403.txt",
            "--error-page",
            "405=/errors/404.html",
        ],
    );
    put(&server, "errors/404.html", "<h1>our own not found page</h1>\n");
    put(&server, "errors/403.txt", "forbidden, says the site\n");
    let page_404 = server.fixture().read("errors/404.html");
    for path in ["/missing", "/httptest/noindex/", "/.env"] {
        let r = get(server.addr, path);
        assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"), "{path}: {r:#?}");
        assert_eq!(r.body, page_404, "{path}");
        assert_eq!(r.header("content-type"), Some("text/html"));
        assert!(r.header("etag").is_none() && r.header("content-range").is_none(), "{r:#?}");
    }
    let forbidden = get(server.addr, "/httptest/unreadable.txt");
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.body, server.fixture().read("errors/403.txt"));
    assert!(forbidden.expect_header("content-type").starts_with("text/plain"));
    let head = send_with(server.addr, "HEAD", "/missing", &[]);
    assert_eq!((head.status, head.content_length()), (404, page_404.len()), "{head:#?}");
    assert!(head.body.is_empty());
    // Conditionals and Range do not apply to an error page.
    for (name, value) in [("Range", "bytes=0-3"), ("If-None-Match", "*"), ("If-Match", "\"x\"")] {
        let r = send_with(server.addr, "GET", "/missing", &[(name, value)]);
        assert_eq!((r.status, r.body.as_slice()), (404, page_404.as_slice()), "{name}: {r:#?}");
    }
    let post = send_with(server.addr, "POST", "/index.html", &[]);
    assert_eq!(post.status, 405, "{post:#?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(post.body, page_404);
}

#[test]
fn a_missing_error_page_falls_back_to_the_built_in_one() {
    let server =
        Server::start_with(2, &["--error-page", "404=/errors/none.html", "--error-page", "403=/httptest"]);
    assert_error(&get(server.addr, "/missing"), 404);
    assert_error(&get(server.addr, "/httptest/unreadable.txt"), 403);
}

#[test]
fn error_page_flags_are_validated() {
    for bad in ["302=/x.html", "200=/x.html", "abc", "404=x.html", "404=/x?y", "600=/x"] {
        let exit = run_to_exit(&["-p", "0", "-r", ".", "--error-page", bad]);
        assert_eq!(exit.code(), Some(2), "--error-page {bad}: {exit:#?}");
        assert!(exit.stderr.contains("--error-page"), "{exit:#?}");
        assert_eq!(exit.stderr.lines().next().map(|l| l.starts_with("error: ")), Some(true), "{exit:#?}");
    }
}

// ---- dotfiles ----

fn put_dotfiles(server: &Server) {
    put(server, ".env", "SECRET=1\n");
    put(server, ".git/config", "[core]\n");
    put(server, "sub/.htpasswd", "user:hash\n");
    put(server, ".well-known/acme-challenge/token", "challenge-response\n");
}

#[test]
fn dotfiles_are_hidden_by_default() {
    let server = Server::start();
    put_dotfiles(&server);
    for path in [
        "/.env",
        "/.git/config",
        "/%2egit/config",
        "/%2Eenv",
        "/sub/.htpasswd",
        "/sub/../.env",
        "/.git/",
        "/.git",
    ] {
        assert_error(&get(server.addr, path), 404);
    }
    let acme = get(server.addr, "/.well-known/acme-challenge/token");
    assert_eq!((acme.status, acme.body_text().as_str()), (200, "challenge-response\n"), "{acme:#?}");
}

#[test]
fn dotfiles_allow_serves_them() {
    let server = Server::start_with(2, &["--dotfiles", "allow"]);
    put_dotfiles(&server);
    for (path, body) in
        [("/.env", "SECRET=1\n"), ("/%2egit/config", "[core]\n"), ("/sub/.htpasswd", "user:hash\n")]
    {
        let r = get(server.addr, path);
        assert_eq!((r.status, r.body_text().as_str()), (200, body), "{path}: {r:#?}");
    }
}

// ---- autoindex ----

/// The listing page at `path`, which must be served (200).
fn listing(server: &Server, path: &str) -> String {
    let r = get(server.addr, path);
    assert_eq!(r.status, 200, "{path}: {r:#?}");
    r.body_text()
}

/// The targets of a listing's links, in order.
fn hrefs(page: &str) -> Vec<String> {
    links(page).into_iter().map(|(href, _)| href).collect()
}

/// The `href` targets and the link texts of a listing, in page order.
fn links(page: &str) -> Vec<(String, String)> {
    page.split("<a href=\"")
        .skip(1)
        .map(|rest| {
            let (href, rest) = rest.split_once("\">").expect("href closes");
            let (text, _) = rest.split_once("</a>").expect("link closes");
            (href.to_owned(), text.to_owned())
        })
        .collect()
}

#[test]
fn autoindex_lists_directories_without_an_index() {
    let server = Server::start_with(2, &["--autoindex"]);
    put(&server, "listing/zeta.txt", "z");
    put(&server, "listing/alpha.txt", "a");
    put(&server, "listing/<script>.html", "x");
    put(&server, "listing/a b&c#d?.txt", "odd name");
    put(&server, "listing/.hidden", "h");
    put(&server, "listing/beta/inner.txt", "i");
    put(&server, "listing/Alpha-dir/inner.txt", "i");
    let r = get(server.addr, "/listing/");
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.body_text();
    assert!(!page.contains("<script>"), "a name must never become markup: {page}");
    assert!(!page.contains(".hidden"), "dotfiles are not listed while denied: {page}");
    let got = links(&page);
    let expected = [
        ("../", "../"),
        ("Alpha-dir/", "Alpha-dir/"),
        ("beta/", "beta/"),
        ("%3Cscript%3E.html", "&lt;script&gt;.html"),
        ("a%20b%26c%23d%3F.txt", "a b&amp;c#d?.txt"),
        ("alpha.txt", "alpha.txt"),
        ("zeta.txt", "zeta.txt"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(h, t)| (h.to_string(), t.to_string())).collect();
    assert_eq!(got, expected, "{page}");
    // Every link leads to what it names.
    for (href, _) in &got[1..] {
        let target = format!("/listing/{href}");
        let r = get(server.addr, &target);
        assert!(r.status == 200, "{target}: {r:#?}");
    }
    let odd = get(server.addr, "/listing/a%20b%26c%23d%3F.txt");
    assert_eq!(odd.body_text(), "odd name");
    // Sizes are shown for files.
    assert!(page.contains("a b&amp;c#d?.txt</a> ") && page.contains(" 8\n"), "{page}");
}

#[test]
fn autoindex_details() {
    let server = Server::start_with(2, &["--autoindex", "--dotfiles", "allow"]);
    put(&server, "shown/.hidden", "h");
    let root = get(server.addr, "/");
    assert_eq!(root.body, server.fixture().read("index.html"), "an index.html still wins");
    let listing = get(server.addr, "/httptest/noindex/");
    assert_eq!(listing.status, 200);
    assert!(listing.body_text().contains("other.txt"));
    let with_dots = get(server.addr, "/shown/").body_text();
    assert!(with_dots.contains(">.hidden</a>"), "{with_dots}");
    let head = send_with(server.addr, "HEAD", "/httptest/noindex/", &[]);
    assert_eq!((head.status, head.content_length()), (200, listing.body.len()));
    assert!(head.body.is_empty());
    assert_error(&get(server.addr, "/no-such-dir/"), 404);
    assert_error(&get(server.addr, "/httptest/link_outdir/"), 403);
}

#[test]
fn without_autoindex_a_directory_without_index_stays_404() {
    let server = Server::start();
    assert_error(&get(server.addr, "/httptest/noindex/"), 404);
}

/// Names `prefix00000`, `prefix00001`, ... created empty in `dir` (beneath the root).
fn put_many(server: &Server, dir: &str, prefix: &str, count: usize) {
    let dir = server.fixture().path(dir);
    fs::create_dir_all(&dir).expect("directories");
    for i in 0..count {
        fs::write(dir.join(format!("{prefix}{i:05}")), b"").expect("writing a fixture file");
    }
}

#[test]
fn autoindex_over_the_limit_shows_the_first_entries_in_order() {
    let server = Server::start_with(2, &["--autoindex"]);
    put_many(&server, "many", "f", 10_050);
    put(&server, "many/sub/inner.txt", "i");
    put(&server, "many/zdir/inner.txt", "i");
    let page = listing(&server, "/many/");
    let got = hrefs(&page);
    let mut expected = vec!["../".to_owned(), "sub/".to_owned(), "zdir/".to_owned()];
    expected.extend((0..9_998).map(|i| format!("f{i:05}")));
    assert!(got == expected, "first links {:?}, last links {:?}", &got[..5], &got[got.len() - 3..]);
    assert!(page.contains("(52 more entries not listed)"), "{}", &page[page.len() - 200..]);
}

#[test]
fn autoindex_root_lists_well_known_while_dotfiles_are_denied() {
    let server = Server::start_with(2, &["--autoindex"]);
    fs::remove_file(server.fixture().path("index.html")).expect("removing the root's index.html");
    put(&server, ".well-known/security.txt", "Contact: mailto:a@example.org\n");
    put(&server, ".secret/key", "k");
    put(&server, ".env", "SECRET=1\n");
    let page = listing(&server, "/");
    let hrefs = hrefs(&page);
    assert!(hrefs.contains(&".well-known/".to_owned()), "{page}");
    assert!(!page.contains(".secret") && !page.contains(".env"), "{page}");
    // The link leads to what is always served.
    let inner = get(server.addr, "/.well-known/");
    assert_eq!(inner.status, 200, "{inner:#?}");
    assert!(inner.body_text().contains("security.txt"), "{}", inner.body_text());
}

#[test]
fn autoindex_shows_control_characters_visibly_and_links_them_exactly() {
    let server = Server::start_with(2, &["--autoindex"]);
    put(&server, "ctl/bell\x07\x1b[31mred\nline.txt", "control");
    let page = listing(&server, "/ctl/");
    assert!(!page.bytes().any(|b| b < 0x20 && b != b'\n'), "a raw control byte in {page:?}");
    let got = links(&page);
    let expected = ("bell%07%1B%5B31mred%0Aline.txt", "bell\u{2407}\u{241B}[31mred\u{240A}line.txt");
    assert_eq!(got.get(1).map(|(h, t)| (h.as_str(), t.as_str())), Some(expected), "{page:?}");
    let file = get(server.addr, &format!("/ctl/{}", expected.0));
    assert_eq!((file.status, file.body_text().as_str()), (200, "control"), "{file:#?}");
}
