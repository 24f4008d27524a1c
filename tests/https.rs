//! HTTPS: the TLS listener (`--tls-cert`/`--tls-key`, `--tls-port`), what it serves (every
//! kind of body, byte-exact, through curl and a pipelining Python `ssl` client), the handshake
//! as `openssl s_client` sees it (TLS 1.2 and 1.3 only, ALPN, SNI, resumption), hostile and
//! broken clients on the TLS port, the redirect from plain HTTP and HSTS, `--https-only`,
//! certificate reloads on SIGHUP, refusals of bad certificate flags, and kernel TLS.
//!
//! Certificates are generated at run time (see `common::tls`). The clients verify the server
//! against the test root CA, so every handshake here also checks that the server sends its
//! whole chain. Nothing sleeps to wait for the server: waits are read timeouts or bounded
//! polling loops.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::check::{assert_common_headers, assert_file_headers, assert_multipart, assert_serves};
use common::fixture::{Fixture, pseudo_random};
use common::http::{Response, connect, get_keepalive, get_request, parse_responses, request, send_lenient};
use common::metrics::{metrics_addr, sample, wait_for_samples};
use common::server::{Exit, Server, assert_no_panic, assert_refused, run_to_exit};
use common::tls::{
    Leaf, PyOptions, TlsConn, TlsFiles, burst, client_hello, curl, curl_as, curl_get, curl_one, curl_request,
    dribble_exchange, is_tls_records, read_until_closed, replace_file, s_client, slow_exchange, write_pair,
};

/// Bound on anything the server should do at once (close a connection that is not TLS).
const PROMPTLY: Duration = Duration::from_secs(5);
/// Timers run on a one-second tick: a connection is closed between its deadline and about two
/// seconds later, plus slack for a loaded machine (as in tests/limits.rs).
const REAP_SLACK: Duration = Duration::from_secs(4);
/// Allowance for the test's clock starting a little after the server's.
const CLOCK_EPSILON: Duration = Duration::from_millis(200);
/// How long a reload may take to reach new handshakes after SIGHUP.
const RELOAD_WITHIN: Duration = Duration::from_secs(5);
/// Several MiB, so that the body is streamed from the file rather than sent from memory.
const LARGE_SIZE: usize = 5 * 1024 * 1024 + 3;

const HANDSHAKES: &str = "ringhttpd_tls_handshakes_total";

fn failures(reason: &str) -> String {
    format!("ringhttpd_tls_handshake_failures_total{{reason=\"{reason}\"}}")
}

fn tls_connections(mode: &str) -> String {
    format!("ringhttpd_tls_connections_total{{mode=\"{mode}\"}}")
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A server with two workers, a TLS listener on a free port with the certificates of `leaves`
/// (the first is the default), and `extra` flags.
fn launch(leaves: &[Leaf], extra: &[&str]) -> (Server, TlsFiles) {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, leaves);
    let server =
        Server::launch(2).fixture(fixture).args(tls.args()).args(["--tls-port", "0"]).args(extra).start();
    (server, tls)
}

/// [`launch`] with the `localhost` certificate only.
fn start(extra: &[&str]) -> (Server, TlsFiles) {
    launch(&[Leaf::Localhost], extra)
}

/// The distinct local addresses of the TCP sockets that process `pid` has listening, from
/// `/proc` (its descriptors, matched by inode against the namespace's socket table).
fn listening_addrs(pid: u32) -> BTreeSet<SocketAddr> {
    let mut inodes = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("reading the server's descriptors") {
        let Ok(target) = fs::read_link(entry.expect("a descriptor entry").path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.insert(inode.to_owned());
        }
    }
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("reading the socket table");
    let mut out = BTreeSet::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        if fields.len() < 10 || fields[3] != "0A" || !inodes.contains(fields[9]) {
            continue;
        }
        let (ip, port) = fields[1].split_once(':').expect("ADDR:PORT");
        // The address is the in-memory (network order) word printed as a native integer.
        let ip = u32::from_str_radix(ip, 16).expect("hex address").to_ne_bytes();
        let port = u16::from_str_radix(port, 16).expect("hex port");
        out.insert(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)));
    }
    out
}

/// Whether this kernel offers the `tls` upper-layer protocol (kernel TLS).
fn kernel_has_tls_ulp() -> bool {
    fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|ulps| ulps.split_whitespace().any(|ulp| ulp == "tls"))
}

// ---------------------------------------------------------------------------------------------
// The body cases: every kind of body the plain tests cover, over HTTPS with curl
// ---------------------------------------------------------------------------------------------

/// The files the body cases serve beyond the shared fixture.
struct BodyFiles {
    /// `large.bin`, in the page cache.
    large: Vec<u8>,
    /// `evicted.bin`, dropped from the page cache (where the filesystem can), so that it is
    /// read from the disk while it is sent.
    evicted: Vec<u8>,
    /// `pre/app.js` and its precompressed sibling `pre/app.js.gz` (distinct bytes).
    js: Vec<u8>,
    js_gz: Vec<u8>,
}

fn write_body_files(fixture: &Fixture) -> BodyFiles {
    let files = BodyFiles {
        large: pseudo_random(0x7151, LARGE_SIZE),
        evicted: pseudo_random(0x7152, LARGE_SIZE),
        js: pseudo_random(0x7153, 40_000),
        js_gz: pseudo_random(0x7154, 9_000),
    };
    fs::create_dir_all(fixture.path("pre")).expect("creating pre/");
    for (rel, content) in [
        ("large.bin", &files.large),
        ("evicted.bin", &files.evicted),
        ("pre/app.js", &files.js),
        ("pre/app.js.gz", &files.js_gz),
    ] {
        fs::write(fixture.path(rel), content).unwrap_or_else(|e| panic!("writing {rel}: {e}"));
    }
    let file = fs::File::open(fixture.path("evicted.bin")).expect("opening evicted.bin");
    file.sync_all().expect("fsync");
    // SAFETY: a plain syscall on a descriptor the File keeps open.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
    files
}

/// A 206 for bytes `start..=end` of `content`.
fn assert_partial(r: &Response, content: &[u8], start: usize, end: usize) {
    let what = format!("range {start}-{end} of {} bytes", content.len());
    assert_eq!((r.status, r.reason.as_str()), (206, "Partial Content"), "{what}: {r:#?}");
    assert_common_headers(r);
    assert_eq!(r.all("content-range"), [format!("bytes {start}-{end}/{}", content.len())], "{what}");
    assert_eq!(r.content_length(), end - start + 1, "Content-Length of {what}");
    assert!(r.body == content[start..=end], "body of {what} differs");
}

/// A 304 standing for `of`: its validators and no body.
fn assert_not_modified(r: &Response, of: &Response) {
    assert_eq!((r.status, r.reason.as_str()), (304, "Not Modified"), "{r:#?}");
    assert_eq!(r.all("etag"), [of.expect_header("etag")], "ETag of the 304: {r:#?}");
    assert!(r.body.is_empty());
    assert!(r.header("content-length").is_none() && r.header("content-type").is_none(), "{r:#?}");
}

/// curl's flags for each TLS version, and the versions' names.
const TLS_VERSIONS: [(&[&str], &str); 2] =
    [(&["--tlsv1.3"], "TLS 1.3"), (&["--tlsv1.2", "--tls-max", "1.2"], "TLS 1.2")];

/// Writes the body files, then runs [`check_body_cases`] over each TLS version. Returns the
/// number of TLS connections made.
fn check_body_cases_over_both_versions(server: &Server, ca: &Path) -> usize {
    let files = write_body_files(server.fixture());
    TLS_VERSIONS.iter().map(|(flags, _)| check_body_cases(server, ca, &files, flags)).sum()
}

/// Requests every kind of body over HTTPS, one curl run (one connection) each with `flags`,
/// and checks each byte-exact. Returns the number of TLS connections made.
fn check_body_cases(server: &Server, ca: &Path, files: &BodyFiles, flags: &[&str]) -> usize {
    let fixture = server.fixture();
    let https = server.https();
    let mut connections = 0;
    let mut ask = |path: &str, head: bool, headers: &[(&str, &str)]| {
        connections += 1;
        curl_request(https, ca, flags, path, head, headers)
    };

    // Small files, answered from memory.
    let index = ask("/", false, &[]);
    assert_serves(&index, fixture, "index.html");
    assert_eq!(index.expect_header("content-type"), "text/html");
    assert!(index.header("strict-transport-security").is_none(), "no HSTS without --hsts: {index:#?}");
    let deep = "httptest/dir1/dir12/dir123/deep.txt";
    assert_serves(&ask(&format!("/{deep}"), false, &[]), fixture, deep);

    // Large files, streamed: in the page cache, out of it, and the fixture's own.
    for rel in ["large.bin", "evicted.bin", "httptest/big.bin", "httptest/wikipedia_russia.html"] {
        let r = ask(&format!("/{rel}"), false, &[]);
        assert_serves(&r, fixture, rel);
    }
    assert_eq!(fixture.read("large.bin"), files.large);
    assert_eq!(fixture.read("evicted.bin"), files.evicted);

    // A single range of a large and of a small file.
    let r = ask("/large.bin", false, &[("Range", "bytes=1000000-1999999")]);
    assert_partial(&r, &files.large, 1_000_000, 1_999_999);
    let index_bytes = fixture.read("index.html");
    let r = ask("/index.html", false, &[("Range", "bytes=-10")]);
    assert_partial(&r, &index_bytes, index_bytes.len() - 10, index_bytes.len() - 1);

    // Several ranges: multipart/byteranges.
    let r = ask("/large.bin", false, &[("Range", "bytes=0-9,4000000-4099999")]);
    assert_multipart(
        &r,
        &files.large,
        &[(0, 9), (4_000_000, 4_099_999)],
        "application/octet-stream",
        "large",
    );
    let r = ask("/index.html", false, &[("Range", "bytes=0-4,10-14")]);
    assert_multipart(&r, &index_bytes, &[(0, 4), (10, 14)], "text/html", "index.html");

    // The precompressed sibling for a client that accepts gzip, the original otherwise.
    let r = ask("/pre/app.js", false, &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_common_headers(&r);
    assert_eq!(r.all("content-encoding"), ["gzip"], "{r:#?}");
    assert_eq!(r.all("content-type"), ["application/javascript"], "{r:#?}");
    assert!(r.header("vary").is_some_and(|v| v.eq_ignore_ascii_case("accept-encoding")), "{r:#?}");
    assert!(r.body == files.js_gz, "the gzip variant's bytes differ ({} bytes)", r.body.len());
    let r = ask("/pre/app.js", false, &[]);
    assert_serves(&r, fixture, "pre/app.js");
    assert!(r.header("content-encoding").is_none(), "{r:#?}");
    assert!(r.body == files.js);

    // Conditional requests answered 304, for a small and a large file.
    for rel in ["index.html", "large.bin"] {
        let ok = ask(&format!("/{rel}"), false, &[]);
        assert_serves(&ok, fixture, rel);
        let r = ask(&format!("/{rel}"), false, &[("If-None-Match", ok.expect_header("etag"))]);
        assert_not_modified(&r, &ok);
    }

    // HEAD: the headers of the GET, no body.
    for rel in ["index.html", "large.bin"] {
        let r = ask(&format!("/{rel}"), true, &[]);
        assert_file_headers(&r, fixture, rel);
        assert!(r.body.is_empty());
    }
    connections
}

/// The harness's premise: each chain file verifies against the root with its own
/// intermediate, has the expected subject, and holds the public half of its key; the pair the
/// mismatch tests use does not match; the RSA key is 2048 bits in PKCS#1 form.
#[test]
fn generated_certificates_form_chains_to_the_root() {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, &Leaf::ALL);
    let path = |p: &Path| p.to_str().expect("UTF-8 temporary paths").to_owned();
    let ca = path(&tls.ca);
    let mut leaf_keys = Vec::new();
    for (leaf, (chain, key)) in Leaf::ALL.iter().zip(&tls.pairs) {
        // The leaf alone, verified with the rest of the chain file as untrusted help, as a
        // client does with what the server sends.
        let text = fs::read_to_string(chain).expect("reading the chain");
        let end = text.find("-----END CERTIFICATE-----").expect("a certificate") + 25;
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{leaf:?}: leaf and intermediate");
        let leaf_only = path(&fixture.base().join(format!("{}.leaf.pem", leaf.name())));
        fs::write(&leaf_only, &text[..end]).expect("writing the leaf");
        let verify = openssl(&["verify", "-CAfile", &ca, "-untrusted", &path(chain), &leaf_only]);
        assert!(verify.contains(": OK"), "{leaf:?}: {verify}");
        let subject = openssl(&["x509", "-noout", "-subject", "-in", &leaf_only]);
        assert_eq!(common::tls::compact_subject(&subject), format!("subject=CN={}", leaf.cn()));
        let cert_key = openssl(&["x509", "-noout", "-pubkey", "-in", &leaf_only]);
        assert_eq!(cert_key, openssl(&["pkey", "-pubout", "-in", &path(key)]), "{leaf:?}: its own key");
        leaf_keys.push(cert_key);
    }
    assert_ne!(leaf_keys[0], leaf_keys[1], "other.test and localhost have distinct keys");
    let rsa_key = path(&tls.pairs[2].1);
    assert!(fs::read_to_string(&rsa_key).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(openssl(&["pkey", "-noout", "-text", "-in", &rsa_key]).contains("Private-Key: (2048 bit"));
    let other_key = fs::read_to_string(&tls.pairs[1].1).unwrap();
    assert!(other_key.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{other_key}");
}

/// Runs `openssl ARGS` (bounded) and returns stdout and stderr together; panics if it fails.
fn openssl(args: &[&str]) -> String {
    let mut command = std::process::Command::new("openssl");
    command.args(args);
    let output = common::tls::run_program(&mut command, b"", common::tls::CLIENT_TIMEOUT, "openssl");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openssl {args:?}: {text}");
    text
}

// ---------------------------------------------------------------------------------------------
// Start-up line and listeners
// ---------------------------------------------------------------------------------------------

#[test]
fn listening_line_names_the_plain_and_the_https_address() {
    let (server, _tls) = start(&[]);
    let https = server.https();
    assert_ne!(server.addr.port(), https.port(), "two listeners, two ports");
    assert_eq!(https.ip(), server.addr.ip());
    let log = server.log();
    let prefix = format!("ringhttpd: info: listening on {} and https://{https} (workers: 2, ", server.addr);
    assert!(log.lines().any(|l| l.starts_with(&prefix)), "no line starting {prefix:?}:\n{log}");
    assert_eq!(listening_addrs(server.pid()), BTreeSet::from([server.addr, https]), "{log}");
    // The plain listener still speaks plain HTTP.
    assert_serves(&common::http::get(server.addr, "/index.html"), server.fixture(), "index.html");
}

#[test]
fn https_only_has_no_plain_listener() {
    let (server, tls) = start(&["--https-only"]);
    let https = server.https();
    let log = server.log();
    let prefix = format!("ringhttpd: info: listening on https://{https} (workers: 2, ");
    assert!(log.lines().any(|l| l.starts_with(&prefix)), "no line starting {prefix:?}:\n{log}");
    assert_eq!(listening_addrs(server.pid()), BTreeSet::from([https]), "only the TLS port listens:\n{log}");
    assert_serves(&curl_get(https, &tls.ca, "/index.html"), server.fixture(), "index.html");
}

// ---------------------------------------------------------------------------------------------
// Bodies over HTTPS
// ---------------------------------------------------------------------------------------------

#[test]
fn every_kind_of_body_over_tls13_and_tls12() {
    let (server, tls) = start(&[]);
    check_body_cases_over_both_versions(&server, &tls.ca);
}

#[test]
fn curl_keeps_one_connection_for_several_requests() {
    let (server, tls) = start(&[]);
    let files = write_body_files(server.fixture());
    let paths = ["/index.html", "/large.bin", "/httptest/dir2/page.html", "/index.html"];
    let run = curl(server.https(), &tls.ca, &[], &paths);
    let responses = run.responses(&[false; 4]);
    assert_eq!(responses.len(), 4, "{run:#?}");
    for (r, rel) in responses.iter().zip(["index.html", "large.bin", "httptest/dir2/page.html", "index.html"])
    {
        assert_serves(r, server.fixture(), rel);
        assert_eq!(r.expect_header("connection"), "keep-alive", "{rel}: {r:#?}");
    }
    assert!(responses[1].body == files.large);
    let connects: Vec<u32> = run.transfers.iter().map(|t| t.num_connects).collect();
    assert_eq!(connects, [1, 0, 0, 0], "one connection for all four transfers: {run:#?}");
    assert_eq!(run.transfers[0].num_certs, 2, "the server sends the leaf and the intermediate: {run:#?}");
}

/// Six requests in one write on one connection, over TLS 1.2 and over TLS 1.3: the answers come
/// in order and byte-exact, and the last (`Connection: close`) ends the connection.
#[test]
fn pipelined_requests_over_one_tls_connection() {
    let (server, tls) = start(&[]);
    let files = write_body_files(server.fixture());
    let raw = format!(
        "{}HEAD /large.bin HTTP/1.1\r\nHost: localhost\r\n\r\n\
         GET /large.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=5-14\r\n\r\n\
         {}{}{}",
        get_keepalive("/index.html"),
        get_keepalive("/no-such-file"),
        get_keepalive("/large.bin"),
        get_request("/httptest/dir2/page.html"),
    );
    for (version, name) in [("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")] {
        let options = PyOptions { version, ..PyOptions::default() };
        let mut conn = TlsConn::open_with(server.https(), &tls.ca, options);
        assert_eq!(conn.handshake.version, name, "{:?}", conn.handshake);
        assert_eq!(conn.handshake.alpn, "http/1.1", "{:?}", conn.handshake);
        assert_eq!(conn.handshake.subject, "localhost", "{:?}", conn.handshake);
        conn.send(raw.as_bytes());
        let bytes = conn.read_to_close();
        let r = parse_responses(&bytes, &[false, true, false, false, false, false]);
        assert_eq!(r.len(), 6, "{name}: {r:#?}");
        assert_serves(&r[0], server.fixture(), "index.html");
        assert_file_headers(&r[1], server.fixture(), "large.bin");
        assert_partial(&r[2], &files.large, 5, 14);
        assert_eq!(r[3].status, 404, "{name}: {:#?}", r[3]);
        assert_serves(&r[4], server.fixture(), "large.bin");
        assert_serves(&r[5], server.fixture(), "httptest/dir2/page.html");
        assert_eq!(r[5].expect_header("connection"), "close");
    }
}

/// A handshake and requests whose every TLS record arrives in pieces (one TCP segment per byte
/// of ciphertext), and whose requests come one byte per record: the server reassembles records
/// and requests across any boundaries.
#[test]
fn records_in_pieces_and_requests_in_one_byte_records() {
    let (server, tls) = start(&[]);
    let raw = format!("{}{}", get_keepalive("/httptest/dir2/page.html"), get_request("/httptest/big.bin"));
    for version in ["1.3", "1.2"] {
        let bytes = dribble_exchange(server.https(), &tls.ca, version, raw.as_bytes());
        let r = parse_responses(&bytes, &[false, false]);
        assert_eq!(r.len(), 2, "TLS {version}: {r:#?}");
        assert_serves(&r[0], server.fixture(), "httptest/dir2/page.html");
        assert_serves(&r[1], server.fixture(), "httptest/big.bin");
    }
}

/// A 405 for a POST whose body looks like a request, over TLS: the body is skipped (or the
/// connection closed), never answered as a request, as over plain HTTP (tests/errors.rs).
#[test]
fn a_rejected_body_over_tls_is_not_a_request() {
    let (server, tls) = start(&[]);
    let body = "GET /httptest/text..txt HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let raw = format!(
        "POST /index.html HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}{}",
        body.len(),
        get_request("/httptest/dir2/page.html")
    );
    let mut conn = TlsConn::open(server.https(), &tls.ca);
    conn.send(raw.as_bytes());
    let responses = parse_responses(&conn.read_to_close(), &[]);
    assert_eq!(responses[0].status, 405, "{responses:#?}");
    if responses[0].says_close() {
        assert_eq!(responses.len(), 1, "nothing after a closing 405: {responses:#?}");
    } else {
        assert_eq!(responses.len(), 2, "the POST body is not a request: {responses:#?}");
        assert_serves(&responses[1], server.fixture(), "httptest/dir2/page.html");
    }
}

/// A client that reads slowly through a small receive buffer: the server's sealed records go
/// out in many partial sends, and the body still arrives byte-exact.
#[test]
fn a_slow_reader_gets_large_bodies_byte_exact() {
    let (server, tls) = start(&[]);
    let files = write_body_files(server.fixture());
    let raw = format!("{}{}", get_keepalive("/large.bin"), get_request("/evicted.bin"));
    for version in ["1.3", "1.2"] {
        let bytes = slow_exchange(server.https(), &tls.ca, version, raw.as_bytes());
        let r = parse_responses(&bytes, &[false, false]);
        assert_eq!(r.len(), 2, "TLS {version}: {r:#?}");
        assert!(r[0].body == files.large, "TLS {version}: large.bin differs ({} bytes)", r[0].body.len());
        assert!(r[1].body == files.evicted, "TLS {version}: evicted.bin differs ({} bytes)", r[1].body.len());
    }
}

// ---------------------------------------------------------------------------------------------
// The handshake, as openssl s_client sees it
// ---------------------------------------------------------------------------------------------

#[test]
fn tls12_and_tls13_are_served() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(server.https(), &tls.ca, &[flag, "-servername", "localhost"]);
        assert_eq!(out.code, Some(0), "{flag}: {out:#?}");
        assert!(out.output.contains(&format!("New, {name}, Cipher is ")), "{flag}: {}", out.output);
        out.assert_served(flag);
    }
    wait_for_samples(metrics_addr(&server), &[(HANDSHAKES, 2.0)], PROMPTLY);
}

/// A client that offers at most TLS 1.1 (or 1.0) is refused with a fatal alert. The client is
/// allowed the old protocols (security level 0), so the refusal is the server's. (The alert is
/// `handshake_failure` rather than `protocol_version`: rustls rejects a ClientHello without the
/// signature_algorithms extension, which no TLS 1.1 client sends, before it looks at the
/// version.)
#[test]
fn tls11_and_older_are_refused() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    for flag in ["-tls1_1", "-tls1"] {
        let out = s_client(server.https(), &tls.ca, &[flag, "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert_ne!(out.code, Some(0), "{flag}: {out:#?}");
        assert!(!out.output.contains("no protocols available"), "{flag}: the client refused: {}", out.output);
        assert!(
            ["alert protocol version", "alert handshake failure"].iter().any(|a| out.output.contains(a)),
            "{flag}: no fatal alert from the server: {}",
            out.output
        );
        assert!(!out.verified() && !out.output.contains("HTTP/1.1"), "{flag}: {}", out.output);
    }
    let metrics = metrics_addr(&server);
    wait_for_samples(metrics, &[(&failures("protocol"), 2.0), (HANDSHAKES, 0.0)], PROMPTLY);
    // The server goes on serving.
    s_client(server.https(), &tls.ca, &[]).assert_served("after the refusals");
}

#[test]
fn alpn_selects_http11() {
    let (server, tls) = start(&[]);
    for offer in ["http/1.1", "h2,http/1.1", "http/1.0,http/1.1"] {
        let out = s_client(server.https(), &tls.ca, &["-alpn", offer]);
        assert!(out.output.contains("ALPN protocol: http/1.1"), "offered {offer}: {}", out.output);
        out.assert_served(offer);
    }
    let out = s_client(server.https(), &tls.ca, &[]);
    assert!(out.output.contains("No ALPN negotiated"), "{}", out.output);
    out.assert_served("without ALPN");
}

#[test]
fn sni_chooses_the_certificate_by_name() {
    let (server, tls) = launch(&[Leaf::Localhost, Leaf::Other], &[]);
    let https = server.https();
    let cases: [(&[&str], &str); 4] = [
        (&["-servername", "other.test"], "other.test"),
        (&["-servername", "localhost"], "localhost"),
        (&["-servername", "unknown.test"], "localhost"),
        (&["-noservername"], "localhost"),
    ];
    for (flags, cn) in cases {
        let out = s_client(https, &tls.ca, flags);
        assert_eq!(out.subject(), format!("subject=CN={cn}"), "{flags:?}: {}", out.output);
        out.assert_served(&format!("{flags:?}"));
    }
    // curl checks the name against the certificate it gets.
    let r = curl_as(https, &tls.ca, "other.test", &[], &["/index.html"]).responses(&[false]).remove(0);
    assert_serves(&r, server.fixture(), "index.html");
}

#[test]
fn an_rsa_certificate_is_served_over_tls12_and_tls13() {
    let (server, tls) = launch(&[Leaf::Rsa], &[]);
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = s_client(server.https(), &tls.ca, &[flag]);
        assert!(out.output.contains(&format!("New, {name}, Cipher is ")), "{flag}: {}", out.output);
        assert!(out.output.contains("Server public key is 2048 bit"), "{flag}: {}", out.output);
        assert_eq!(out.subject(), "subject=CN=rsa.localhost", "{flag}");
        out.assert_served(flag);
    }
    assert_serves(&curl_get(server.https(), &tls.ca, "/index.html"), server.fixture(), "index.html");
}

/// A session saved from one connection resumes on the next, several times in a row: with two
/// workers, the connections land on either, so the resumption state must be shared.
#[test]
fn sessions_resume_over_tls13_and_tls12() {
    let (server, tls) = start(&[]);
    for (flag, name) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let sessions = server.fixture().base().join(format!("session{flag}"));
        let saved = |i: usize| sessions.with_extension(i.to_string()).to_string_lossy().into_owned();
        let first = s_client(server.https(), &tls.ca, &[flag, "-sess_out", &saved(0)]);
        assert!(first.output.contains(&format!("New, {name}, ")), "{flag}: {}", first.output);
        first.assert_served(flag);
        for i in 1..=4 {
            // The newest session saved: a resumed TLS 1.2 session brings no new one.
            let latest = (0..i).rev().map(saved).find(|p| Path::new(p).exists()).expect("a saved session");
            let out = s_client(server.https(), &tls.ca, &[flag, "-sess_in", &latest, "-sess_out", &saved(i)]);
            assert!(
                out.output.contains(&format!("Reused, {name}, ")),
                "{flag}: connection {i} did not resume: {}",
                out.output
            );
            assert!(out.output.contains("HTTP/1.1 200 OK\r\n"), "{flag}, resumed: {}", out.output);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken clients on the TLS port
// ---------------------------------------------------------------------------------------------

/// Asserts that what a non-TLS client got back before the close is nothing, TLS alert records,
/// or one HTTP 400.
fn assert_refusal_bytes(reply: &[u8], what: &str) {
    if reply.starts_with(b"HTTP/") {
        let r = parse_responses(reply, &[false]);
        assert_eq!(r.len(), 1, "{what}: {r:#?}");
        assert_eq!(r[0].status, 400, "{what}: {:#?}", r[0]);
    } else {
        assert!(is_tls_records(reply), "{what}: neither TLS records nor HTTP: {reply:02x?}");
    }
}

/// Sends `bytes` on a new connection to the TLS port and asserts the server closes it at once.
fn sent_and_closed(https: SocketAddr, bytes: &[u8], what: &str) {
    let started = Instant::now();
    let mut stream = connect(https);
    send_lenient(&mut stream, bytes);
    let (reply, elapsed) = read_until_closed(&mut stream, PROMPTLY, started);
    assert!(elapsed < PROMPTLY, "{what}: closed only after {elapsed:?}");
    assert_refusal_bytes(&reply, what);
}

/// Random bytes that do not start like a TLS record.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = pseudo_random(seed, len);
    bytes[0] = 0xa5;
    bytes
}

#[test]
fn garbage_and_plain_http_on_the_tls_port_are_closed_at_once() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    let https = server.https();
    let cases: [(&str, Vec<u8>); 4] = [
        ("binary garbage", garbage(1, 700)),
        ("plain HTTP", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("plain HTTP/1.0 to close", b"GET /index.html HTTP/1.0\r\n\r\n".to_vec()),
        ("an SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
    ];
    for (what, bytes) in &cases {
        sent_and_closed(https, bytes, what);
    }
    let metrics = metrics_addr(&server);
    wait_for_samples(metrics, &[(&failures("not_tls"), 4.0), (HANDSHAKES, 0.0)], PROMPTLY);
    assert_serves(&curl_get(https, &tls.ca, "/index.html"), server.fixture(), "index.html");
}

/// A handshake record that is not a well-formed ClientHello is refused at once as a protocol
/// failure.
#[test]
fn malformed_client_hello_is_a_protocol_failure() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    // A handshake record holding a ClientHello with a four-byte body: too short for anything.
    let malformed = [0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00];
    sent_and_closed(server.https(), &malformed, "malformed ClientHello");
    wait_for_samples(metrics_addr(&server), &[(&failures("protocol"), 1.0)], PROMPTLY);
    assert_serves(&curl_get(server.https(), &tls.ca, "/index.html"), server.fixture(), "index.html");
}

/// Half a ClientHello then silence, and no bytes at all, are both closed at the header timeout,
/// not before; a completed handshake followed by half a request head gets the 408 of plain
/// HTTP, encrypted, at the same timeout.
#[test]
fn stalled_handshakes_are_closed_at_the_header_timeout() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0", "--header-timeout", "1"]);
    let https = server.https();
    let timeout = Duration::from_secs(1);
    let hello = client_hello("localhost");
    for (what, sent) in [("half a ClientHello", &hello[..hello.len() / 2]), ("a silent client", &[][..])] {
        let started = Instant::now();
        let mut stream = connect(https);
        stream.write_all(sent).expect("sending");
        let (reply, elapsed) = read_until_closed(&mut stream, timeout + REAP_SLACK + timeout, started);
        assert!(elapsed + CLOCK_EPSILON >= timeout, "{what}: closed after {elapsed:?}, before the timeout");
        assert!(elapsed <= timeout + REAP_SLACK, "{what}: closed only after {elapsed:?}");
        assert!(is_tls_records(&reply), "{what}: {reply:02x?}");
        if sent.is_empty() {
            continue;
        }
        wait_for_samples(metrics_addr(&server), &[(&failures("timeout"), 1.0)], PROMPTLY);
    }

    // The 408 itself says the header timeout fired; the connection was opened a moment before
    // `started`, so only the upper bound is measured.
    let mut conn = TlsConn::open(https, &tls.ca);
    let started = Instant::now();
    conn.send(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n");
    let bytes = conn.read_to_close();
    let elapsed = started.elapsed();
    assert!(elapsed <= timeout + REAP_SLACK, "partial head over TLS: closed only after {elapsed:?}");
    let r = parse_responses(&bytes, &[false]);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!((r[0].status, r[0].reason.as_str()), (408, "Request Timeout"), "{:#?}", r[0]);
    assert!(r[0].says_close(), "{:#?}", r[0]);
}

/// 150 clients handshaking at once, each then asking three times on its connection, are all
/// served, and every handshake is counted.
#[test]
fn many_handshakes_at_once() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    let (ok, errors) = burst(server.https(), &tls.ca, 150, 3, get_keepalive("/index.html").as_bytes());
    assert_eq!((ok, errors.as_slice()), (150, &[][..]), "clients served, and the errors of the others");
    wait_for_samples(metrics_addr(&server), &[(HANDSHAKES, 150.0)], PROMPTLY);
}

/// 200 connections sending garbage at once do not keep a real client from being served, and
/// each of them is closed and counted.
#[test]
fn two_hundred_garbage_connections_then_a_real_request() {
    let (mut server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    let https = server.https();
    let started = Instant::now();
    let mut streams: Vec<_> = (0..200)
        .map(|i| {
            let mut stream = connect(https);
            send_lenient(&mut stream, &garbage(i, 64 + i as usize * 7));
            stream
        })
        .collect();
    assert_serves(&curl_get(https, &tls.ca, "/index.html"), server.fixture(), "index.html");
    for (i, stream) in streams.iter_mut().enumerate() {
        let (reply, elapsed) = read_until_closed(stream, PROMPTLY, started);
        assert!(elapsed < PROMPTLY + PROMPTLY, "garbage connection {i} closed only after {elapsed:?}");
        assert_refusal_bytes(&reply, &format!("garbage connection {i}"));
    }
    let metrics = metrics_addr(&server);
    wait_for_samples(metrics, &[(&failures("not_tls"), 200.0), (HANDSHAKES, 1.0)], PROMPTLY);
    server.assert_alive();
    assert_serves(&curl_get(https, &tls.ca, "/"), server.fixture(), "index.html");
}

/// A client that sends its ClientHello, takes the server's first flight and closes its side,
/// and one that closes its side halfway through its ClientHello, are both closed at once and
/// counted as closed by the peer.
#[test]
fn clients_closing_mid_handshake_are_counted() {
    let (server, tls) = start(&["--metrics", "127.0.0.1:0"]);
    let https = server.https();
    let hello = client_hello("localhost");

    let started = Instant::now();
    let mut stream = connect(https);
    stream.write_all(&hello).expect("sending the ClientHello");
    let mut first = [0u8; 5];
    std::io::Read::read_exact(&mut stream, &mut first).expect("the server's first flight");
    assert_eq!(&first[..3], [0x16, 0x03, 0x03], "a ServerHello record: {first:02x?}");
    stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    let (_, elapsed) = read_until_closed(&mut stream, PROMPTLY, started);
    assert!(elapsed < PROMPTLY, "closed only after {elapsed:?}");

    let started = Instant::now();
    let mut stream = connect(https);
    stream.write_all(&hello[..hello.len() / 2]).expect("sending half a ClientHello");
    stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
    let (reply, elapsed) = read_until_closed(&mut stream, PROMPTLY, started);
    assert!(elapsed < PROMPTLY, "closed only after {elapsed:?}");
    assert!(is_tls_records(&reply), "{reply:02x?}");

    let metrics = metrics_addr(&server);
    wait_for_samples(metrics, &[(&failures("peer_closed"), 2.0), (HANDSHAKES, 0.0)], PROMPTLY);
    assert_serves(&curl_get(https, &tls.ca, "/index.html"), server.fixture(), "index.html");
}

// ---------------------------------------------------------------------------------------------
// Redirect to HTTPS, HSTS
// ---------------------------------------------------------------------------------------------

/// A plain request with its own Host header.
fn plain(server: &Server, method: &str, target: &str, host: &str) -> Response {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    request(server.addr, raw.as_bytes())
}

#[test]
fn redirect_https_sends_plain_requests_to_the_tls_port() {
    let (server, tls) = start(&["--redirect-https"]);
    let tls_port = server.https().port();
    let plain_port = server.addr.port();
    let cases = [
        ("/httptest/dir2/page.html?a=1&b=%2F", format!("localhost:{plain_port}"), "localhost"),
        ("/", "example.org".to_owned(), "example.org"),
        ("/httptest/space%20in%20name.txt?q=a%20b", "www.example.org:80".to_owned(), "www.example.org"),
        ("/no/such/file", format!("127.0.0.1:{plain_port}"), "127.0.0.1"),
        ("/httptest/dir2", "[::1]:8080".to_owned(), "[::1]"),
        ("/.well-known/other", "localhost".to_owned(), "localhost"),
    ];
    for (target, host, expected_host) in &cases {
        let location = format!("https://{expected_host}:{tls_port}{target}");
        for method in ["GET", "HEAD"] {
            let r = plain(&server, method, target, host);
            assert_eq!(
                (r.status, r.reason.as_str()),
                (308, "Permanent Redirect"),
                "{method} {target} (Host: {host}): {r:#?}"
            );
            assert_eq!(r.all("location"), [location.as_str()], "{method} {target} (Host: {host})");
            assert_eq!(r.all("server"), ["ringhttpd"]);
            if method == "GET" {
                assert_eq!(r.content_length(), r.body.len(), "{r:#?}");
            }
        }
    }
    // Following the first one leads to the page.
    let r = curl_get(server.https(), &tls.ca, "/httptest/dir2/page.html?a=1&b=%2F");
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
}

/// Without a Host header (HTTP/1.0) the redirect names the address the client reached; an
/// empty Host gets that too, or a 400, but never a Location without a host.
#[test]
fn redirect_https_without_a_host_names_the_reached_address() {
    let (server, _tls) = start(&["--redirect-https"]);
    let local = format!("https://{}:{}/httptest/dir2/page.html?x", server.addr.ip(), server.https().port());
    let r = request(server.addr, b"GET /httptest/dir2/page.html?x HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.all("location")), (308, vec![local.as_str()]), "HTTP/1.0 without Host: {r:#?}");
    let r = plain(&server, "GET", "/httptest/dir2/page.html?x", "");
    assert!(
        r.status == 400 || (r.status == 308 && r.all("location") == [local.as_str()]),
        "an empty Host: a 400 or the reached address expected, not a Location without a host: {r:#?}"
    );
}

/// With an absolute-form target the host is the target's authority, not the Host header
/// (RFC 9112 §3.2.2: the server MUST ignore Host then).
#[test]
fn redirect_https_takes_the_host_of_an_absolute_form_target() {
    let (server, _tls) = start(&["--redirect-https"]);
    let r = plain(&server, "GET", "http://example.net/httptest/dir2/page.html?x", "localhost");
    let location = format!("https://example.net:{}/httptest/dir2/page.html?x", server.https().port());
    assert_eq!((r.status, r.all("location")), (308, vec![location.as_str()]), "absolute-form target: {r:#?}");
    let r = plain(&server, "GET", "http://example.net:8080/index.html", "localhost:9999");
    let location = format!("https://example.net:{}/index.html", server.https().port());
    assert_eq!((r.status, r.all("location")), (308, vec![location.as_str()]), "absolute-form target: {r:#?}");
}

#[test]
fn redirect_https_still_serves_acme_challenges_and_refuses_other_methods() {
    let (server, tls) = start(&["--redirect-https"]);
    let token = "/.well-known/acme-challenge/Yb3xk-9Q_token";
    let dir = server.fixture().path(".well-known/acme-challenge");
    fs::create_dir_all(&dir).expect("creating the challenge directory");
    fs::write(dir.join("Yb3xk-9Q_token"), "Yb3xk-9Q_token.thumbprint\n").expect("writing the token");
    let r = plain(&server, "GET", token, "localhost");
    assert_eq!((r.status, r.body_text().as_str()), (200, "Yb3xk-9Q_token.thumbprint\n"), "{r:#?}");
    assert!(r.header("location").is_none(), "{r:#?}");
    let missing = plain(&server, "GET", "/.well-known/acme-challenge/unknown", "localhost");
    assert_eq!(missing.status, 404, "an unknown token is looked up, not redirected: {missing:#?}");
    for method in ["POST", "PUT", "DELETE"] {
        let r = plain(&server, method, "/index.html", "localhost");
        assert_eq!(r.status, 405, "{method} on the plain listener: {r:#?}");
        assert!(r.header("location").is_none(), "{method}: {r:#?}");
    }
    // Over HTTPS, the same files are simply served.
    assert_serves(&curl_get(server.https(), &tls.ca, "/index.html"), server.fixture(), "index.html");
}

#[test]
fn hsts_is_sent_on_https_responses_only() {
    let (server, tls) = start(&["--redirect-https", "--hsts", "31536000"]);
    let https = server.https();
    let expected = ["max-age=31536000"];
    let ok = curl_get(https, &tls.ca, "/index.html");
    assert_eq!(ok.all("strict-transport-security"), expected, "200 over HTTPS: {ok:#?}");
    let etag = ok.expect_header("etag").to_owned();
    let https_cases = [
        ("404", curl_get(https, &tls.ca, "/no-such-file")),
        ("304", curl_one(https, &tls.ca, "/index.html", false, &[("If-None-Match", &etag)])),
        ("HEAD", curl_one(https, &tls.ca, "/index.html", true, &[])),
        ("206", curl_one(https, &tls.ca, "/index.html", false, &[("Range", "bytes=0-3")])),
    ];
    for (what, r) in &https_cases {
        assert_eq!(r.all("strict-transport-security"), expected, "{what} over HTTPS: {r:#?}");
    }
    let dir = server.fixture().path(".well-known/acme-challenge");
    fs::create_dir_all(&dir).expect("creating the challenge directory");
    fs::write(dir.join("t"), "t\n").expect("writing the token");
    let plain_cases = [
        ("308", plain(&server, "GET", "/index.html", "localhost")),
        ("acme 200", plain(&server, "GET", "/.well-known/acme-challenge/t", "localhost")),
        ("405", plain(&server, "POST", "/index.html", "localhost")),
    ];
    for (what, r) in &plain_cases {
        assert!(r.header("strict-transport-security").is_none(), "{what} over plain HTTP: {r:#?}");
    }
    assert_eq!(plain_cases[1].1.status, 200, "{:#?}", plain_cases[1].1);

    // Without the redirect the plain listener serves files, still without HSTS.
    let (server, _tls) = start(&["--hsts", "600"]);
    let r = common::http::get(server.addr, "/index.html");
    assert_serves(&r, server.fixture(), "index.html");
    assert!(r.header("strict-transport-security").is_none(), "{r:#?}");
}

// ---------------------------------------------------------------------------------------------
// Reloading the certificate on SIGHUP
// ---------------------------------------------------------------------------------------------

/// Opens new connections until one gets a certificate with subject `cn`; panics after `within`.
fn wait_for_subject(addr: SocketAddr, ca: &Path, cn: &str, within: Duration) -> TlsConn {
    let deadline = Instant::now() + within;
    loop {
        let conn = TlsConn::open(addr, ca);
        if conn.handshake.subject == cn {
            return conn;
        }
        assert!(
            Instant::now() < deadline,
            "new handshakes still get {:?}, not {cn:?}, {within:?} after SIGHUP",
            conn.handshake.subject
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn error_lines(server: &Server) -> usize {
    server.log().lines().filter(|l| l.contains("error")).count()
}

#[test]
fn sighup_reloads_the_certificate_for_new_handshakes_only() {
    let (mut server, tls) = start(&[]);
    let https = server.https();
    let (chain, key) = tls.default_pair();
    let mut before = TlsConn::open(https, &tls.ca);
    assert_eq!(before.handshake.subject, "localhost");
    let r = before.roundtrip(get_keepalive("/index.html").as_bytes());
    assert_serves(&r, server.fixture(), "index.html");

    write_pair(chain, key, Leaf::Reloaded, Leaf::Reloaded);
    server.signal(libc::SIGHUP);
    let mut after = wait_for_subject(https, &tls.ca, "reloaded.localhost", RELOAD_WITHIN);
    let r = after.roundtrip(get_keepalive("/httptest/dir2/page.html").as_bytes());
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
    let out = s_client(https, &tls.ca, &["-tls1_2"]);
    assert_eq!(out.subject(), "subject=CN=reloaded.localhost", "TLS 1.2 too: {}", out.output);
    out.assert_served("TLS 1.2 after the reload");

    // The connection from before the reload goes on, on its old keys.
    let r = before.roundtrip(get_keepalive("/httptest/dir2/page.html").as_bytes());
    assert_serves(&r, server.fixture(), "httptest/dir2/page.html");
    let r = before.roundtrip(get_request("/index.html").as_bytes());
    assert_serves(&r, server.fixture(), "index.html");
    assert_eq!(error_lines(&server), 0, "{}", server.log());
    server.assert_running();
}

#[test]
fn a_broken_pair_on_sighup_keeps_the_loaded_certificate() {
    let (mut server, tls) = start(&[]);
    let https = server.https();
    let (chain, key) = tls.default_pair();
    assert_eq!(TlsConn::open(https, &tls.ca).handshake.subject, "localhost");
    let broken: [(&str, &dyn Fn()); 3] = [
        ("a key that does not match", &|| write_pair(chain, key, Leaf::Other, Leaf::Localhost)),
        ("a certificate file that is not PEM", &|| {
            write_pair(chain, key, Leaf::Localhost, Leaf::Localhost);
            replace_file(chain, b"this is not a certificate\n");
        }),
        ("a missing key file", &|| {
            write_pair(chain, key, Leaf::Localhost, Leaf::Localhost);
            fs::remove_file(key).expect("removing the key");
        }),
    ];
    for (what, breakage) in broken {
        let errors = error_lines(&server);
        breakage();
        server.signal(libc::SIGHUP);
        let deadline = Instant::now() + RELOAD_WITHIN;
        while error_lines(&server) == errors {
            assert!(Instant::now() < deadline, "{what}: no error logged after SIGHUP:\n{}", server.log());
            thread::sleep(Duration::from_millis(20));
        }
        let mut conn = TlsConn::open(https, &tls.ca);
        assert_eq!(conn.handshake.subject, "localhost", "{what}: the old certificate stays");
        let r = conn.roundtrip(get_request("/index.html").as_bytes());
        assert_serves(&r, server.fixture(), "index.html");
        assert_eq!(error_lines(&server), errors + 1, "{what}: one error line:\n{}", server.log());
        server.assert_running();
    }
    // A good pair after the broken ones is taken.
    write_pair(chain, key, Leaf::Reloaded, Leaf::Reloaded);
    server.signal(libc::SIGHUP);
    wait_for_subject(https, &tls.ca, "reloaded.localhost", RELOAD_WITHIN);
}

// ---------------------------------------------------------------------------------------------
// Refusals of bad certificate flags
// ---------------------------------------------------------------------------------------------

/// Runs the server (or, with `check`, `-t`) with the TLS listener and `tls` flags.
fn run_with_tls(fixture: &Fixture, tls: &[&std::ffi::OsStr], check: bool) -> Exit {
    let mut args: Vec<std::ffi::OsString> =
        ["-a", "127.0.0.1", "-p", "0", "--tls-port", "0", "-r"].map(Into::into).to_vec();
    args.push(fixture.root().into());
    args.extend(tls.iter().map(|a| a.to_os_string()));
    if check {
        args.push("-t".into());
    }
    run_to_exit(&args)
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The HTTPS port may be neither the plain port nor the metrics port; `-t` says so as the start
/// does (as for the metrics on the public port, tests/operator.rs).
#[test]
fn a_tls_port_shared_with_another_listener_is_refused_at_start_and_by_check() {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, &[Leaf::Localhost]);
    let port = free_port().to_string();
    let same_as_plain = ["-a", "127.0.0.1", "-p", &port, "--tls-port", &port];
    let metrics = format!("127.0.0.1:{port}");
    let same_as_metrics = ["-a", "127.0.0.1", "-p", "0", "--tls-port", &port, "--metrics", &metrics];
    let wildcard_and_metrics = ["-a", "0.0.0.0", "-p", "0", "--tls-port", &port, "--metrics", &metrics];
    let cases: [(&[&str], &[&str]); 3] = [
        (&same_as_plain, &["--tls-port", &metrics]),
        (&same_as_metrics, &["--metrics", &metrics]),
        (&wildcard_and_metrics, &["--metrics", &metrics]),
    ];
    for (flags, mentions) in cases {
        for check in [false, true] {
            let mut args: Vec<std::ffi::OsString> = flags.iter().map(Into::into).collect();
            args.extend(tls.args());
            args.extend(["-r".into(), fixture.root().into()]);
            if check {
                args.push("-t".into());
            }
            let exit = run_to_exit(&args);
            assert!(!exit.stdout.contains("configuration ok"), "{flags:?} (check: {check}): {exit:#?}");
            assert_refused(&exit, mentions);
        }
    }
}

#[test]
fn a_good_pair_passes_the_configuration_check() {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, &[Leaf::Localhost, Leaf::Rsa]);
    let args = tls.args();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let exit = run_with_tls(&fixture, &args, true);
    assert_eq!(exit.code(), Some(0), "{exit:#?}");
    assert_eq!(exit.stdout.trim(), "configuration ok", "{exit:#?}");
}

#[test]
fn bad_certificate_files_are_refused_by_name() {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, &[Leaf::Localhost, Leaf::Other]);
    let (chain, key) = tls.default_pair();
    let (other_chain, _) = (&tls.pairs[1].0, &tls.pairs[1].1);
    let dir = fixture.base().join("tls");
    let missing = dir.join("no-such.key");
    let not_pem = dir.join("not-pem.crt");
    fs::write(&not_pem, "not a certificate\n").expect("writing not-pem.crt");
    let empty_key = dir.join("empty.key");
    fs::write(&empty_key, "").expect("writing empty.key");
    let cert_flag = "--tls-cert".as_ref();
    let key_flag = "--tls-key".as_ref();
    let cases: [(&str, Vec<&std::ffi::OsStr>, &Path); 5] = [
        ("missing key file", vec![cert_flag, chain.as_os_str(), key_flag, missing.as_os_str()], &missing),
        (
            "missing certificate file",
            vec![cert_flag, missing.as_os_str(), key_flag, key.as_os_str()],
            &missing,
        ),
        ("certificate not PEM", vec![cert_flag, not_pem.as_os_str(), key_flag, key.as_os_str()], &not_pem),
        ("empty key file", vec![cert_flag, chain.as_os_str(), key_flag, empty_key.as_os_str()], &empty_key),
        (
            "second pair's key missing",
            {
                let mut v = vec![cert_flag, chain.as_os_str(), key_flag, key.as_os_str()];
                v.extend([cert_flag, other_chain.as_os_str(), key_flag, missing.as_os_str()]);
                v
            },
            &missing,
        ),
    ];
    for (what, flags, named) in &cases {
        for check in [false, true] {
            let exit = run_with_tls(&fixture, flags, check);
            let named = named.display().to_string();
            assert_refused(&exit, &[&named]);
            assert!(exit.stdout.is_empty(), "{what} (check: {check}): {exit:#?}");
        }
    }
}

#[test]
fn a_mismatched_certificate_and_key_are_refused() {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, &[Leaf::Localhost, Leaf::Other]);
    let (chain, _) = tls.default_pair();
    let other_key = &tls.pairs[1].1;
    for check in [false, true] {
        let flags = ["--tls-cert".as_ref(), chain.as_os_str(), "--tls-key".as_ref(), other_key.as_os_str()];
        let exit = run_with_tls(&fixture, &flags, check);
        assert_eq!(exit.code(), Some(1), "check: {check}: {exit:#?}");
        assert_no_panic(&exit);
        let lines = exit.stderr_lines();
        assert_eq!(lines.len(), 1, "one stderr line expected: {exit:#?}");
        assert!(lines[0].starts_with("ringhttpd: error: "), "{exit:#?}");
        let (chain, key) = (chain.display().to_string(), other_key.display().to_string());
        assert!(lines[0].contains(&chain) || lines[0].contains(&key), "names neither file: {exit:#?}");
    }
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let fixture = Fixture::create();
    let tls = TlsFiles::install(&fixture, &[Leaf::Localhost, Leaf::Other]);
    let (chain, key) = tls.default_pair();
    let cases: [(Vec<&std::ffi::OsStr>, &str); 3] = [
        (vec!["--tls-cert".as_ref(), chain.as_os_str()], "--tls-key"),
        (vec!["--tls-key".as_ref(), key.as_os_str()], "--tls-cert"),
        (
            vec![
                "--tls-cert".as_ref(),
                chain.as_os_str(),
                "--tls-key".as_ref(),
                key.as_os_str(),
                "--tls-cert".as_ref(),
                tls.pairs[1].0.as_os_str(),
            ],
            "--tls-key",
        ),
    ];
    for (flags, wanted) in &cases {
        for check in [false, true] {
            let exit = run_with_tls(&fixture, flags, check);
            assert_refused(&exit, &[wanted]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn ktls_off_encrypts_every_connection_in_userspace() {
    let (server, tls) = start(&["--ktls", "off", "--metrics", "127.0.0.1:0"]);
    let n = check_body_cases_over_both_versions(&server, &tls.ca) as f64;
    let expected = [(HANDSHAKES, n), (&tls_connections("user"), n), (&tls_connections("kernel"), 0.0)];
    wait_for_samples(metrics_addr(&server), &expected, PROMPTLY);
}

/// The smallest turn `--sendfile-max-chunk` allows, 64 KiB of body: one sealed chunk per
/// turn (`--ktls off`), or one `sendfile` piece through kernel TLS where the kernel has it;
/// every body still arrives byte-exact over both TLS versions.
#[test]
fn bodies_in_the_smallest_turns_are_byte_exact_over_tls() {
    for ktls in ["off", "auto"] {
        let (server, tls) = start(&["--ktls", ktls, "--sendfile-max-chunk", "65536"]);
        check_body_cases_over_both_versions(&server, &tls.ca);
    }
}

/// With `--ktls auto`, a kernel with the `tls` ULP takes over the record layer of every
/// connection, and every body still arrives byte-exact over both TLS versions; a kernel
/// without it leaves all of them in userspace.
#[test]
fn ktls_auto_uses_the_kernel_where_it_can() {
    // Read first: the server's own attempts may load the tls module on the way.
    let had_ulp = kernel_has_tls_ulp();
    let (server, tls) = start(&["--ktls", "auto", "--metrics", "127.0.0.1:0"]);
    let files = write_body_files(server.fixture());
    let mut connections = 0;
    for (flags, _) in TLS_VERSIONS {
        connections += check_body_cases(&server, &tls.ca, &files, flags);
    }
    // Pipelined requests on one connection, in the same mode, over both versions.
    for version in ["1.2", "1.3"] {
        let options = PyOptions { version, ..PyOptions::default() };
        let mut conn = TlsConn::open_with(server.https(), &tls.ca, options);
        connections += 1;
        let raw =
            format!("{}{}{}", get_keepalive("/large.bin"), get_keepalive("/evicted.bin"), get_request("/"));
        conn.send(raw.as_bytes());
        let r = parse_responses(&conn.read_to_close(), &[false, false, false]);
        assert_eq!(r.len(), 3, "TLS {version}: {r:#?}");
        assert!(r[0].body == files.large && r[1].body == files.evicted, "TLS {version}: bodies differ");
        assert_serves(&r[2], server.fixture(), "index.html");
    }
    let n = connections as f64;
    let metrics = metrics_addr(&server);
    let text = wait_for_samples(metrics, &[(HANDSHAKES, n)], PROMPTLY);
    let (kernel, user) = (sample(&text, &tls_connections("kernel")), sample(&text, &tls_connections("user")));
    assert_eq!(kernel + user, n, "every connection in one mode or the other:\n{text}");
    if had_ulp {
        assert_eq!((kernel, user), (n, 0.0), "the kernel has the tls ULP:\n{text}");
    } else if kernel_has_tls_ulp() {
        // The server's first attempt loaded the module: the connections before it, if any, are
        // in userspace, the others in the kernel.
        assert!(kernel > 0.0, "the tls ULP appeared, yet no connection used it:\n{text}");
        eprintln!("kTLS: the tls ULP was loaded during the test; {kernel} of {n} connections in the kernel");
    } else {
        eprintln!("kTLS tests skipped: this kernel has no tls ULP");
        assert_eq!((kernel, user), (0.0, n), "no tls ULP, so no kernel TLS:\n{text}");
    }
}
