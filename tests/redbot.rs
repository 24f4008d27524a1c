//! A REDbot audit (https://redbot.org) of the live server: `scripts/redbot_audit.py` runs REDbot's
//! Python API against a page, a big file, a file with a `.gz` sibling, a 304 revalidation, a
//! single and a multi-range request, a 404 and a directory redirect, on a server started with
//! `--cache-control max-age=60`, and fails on any WARN or BAD note outside the script's
//! allow-list. That list (`ALLOWED` in the script) holds only notes REDbot also gives nginx for
//! the same request, each with the reason.
//!
//! Skipped, with one line saying so, when `python3` or the `redbot` package is not installed
//! (`pip install redbot`; `scripts/run_tests.sh` tries to install it).

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fixture::pseudo_random;
use common::server::{Server, output_within};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redbot_audit.py");
/// What the script prints, first thing, when `import redbot` fails.
const SKIPPED: &str = "redbot audit: skipped:";
/// Bound on the whole audit; the script gives up by itself after 90 s.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The requests audited: a path and its request headers (`{etag}` is replaced by the script with
/// the ETag of a plain GET of the same path).
const CHECKS: &[(&str, &[&str])] = &[
    ("/audit/page.html", &[]),
    ("/audit/big.bin", &[]),
    ("/audit/style.css", &[]),
    ("/audit/page.html", &["If-None-Match: {etag}"]),
    ("/audit/big.bin", &["Range: bytes=0-9"]),
    ("/audit/big.bin", &["Range: bytes=0-9,20-29"]),
    ("/no-such-file", &[]),
    ("/audit", &[]),
];

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// An HTML page of a few KiB, larger than REDbot's 97-byte range probe.
fn page() -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>audit page</title>\
         </head><body>\n",
    );
    for i in 0..40 {
        html.push_str(&format!("<p>Paragraph {i} of the page audited by REDbot.</p>\n"));
    }
    html.push_str("</body></html>\n");
    html
}

/// A stylesheet of about 15 KiB that compresses well.
fn stylesheet() -> String {
    (0..400).map(|i| format!(".c{i} {{ color: #{i:06x}; margin: {}px; }}\n", i % 7)).collect()
}

/// `python3` with `args`, killed if it runs past `limit`; `None` if there is no `python3`.
fn python(args: &[&str], limit: Duration) -> Option<Output> {
    match output_within(Command::new("python3").args(args), limit) {
        Ok(output) => Some(output),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("spawn python3: {e}"),
    }
}

#[test]
fn redbot_finds_nothing_nginx_does_not_get() {
    let server = Server::start_with(2, &["--cache-control", "max-age=60"]);
    let root = server.fixture().root();
    write(root, "audit/index.html", b"<!DOCTYPE html>\n<html><body><p>audit index</p></body></html>\n");
    write(root, "audit/page.html", page().as_bytes());
    write(root, "audit/big.bin", &pseudo_random(0xbed, 200_000));
    write(root, "audit/style.css", stylesheet().as_bytes());

    // A real gzip sibling: REDbot decodes it and compares it with the original.
    let css = root.join("audit/style.css");
    let css = css.to_str().expect("UTF-8 fixture path");
    let gzip = "import gzip, sys; data = open(sys.argv[1], 'rb').read(); \
                open(sys.argv[1] + '.gz', 'wb').write(gzip.compress(data, 9, mtime=0))";
    let Some(made) = python(&["-c", gzip, css], Duration::from_secs(30)) else {
        eprintln!("redbot audit: skipped: python3 is not installed");
        return;
    };
    assert!(made.status.success(), "gzip of style.css: {}", String::from_utf8_lossy(&made.stderr));

    let base = format!("http://{}", server.addr);
    let mut args = vec![SCRIPT, base.as_str()];
    for (path, headers) in CHECKS {
        args.extend(["--check", path]);
        for header in headers.iter() {
            args.extend(["-H", header]);
        }
    }
    let started = Instant::now();
    let out = python(&args, AUDIT_TIMEOUT).expect("python3 was there a moment ago");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stdout.lines().find(|l| l.starts_with(SKIPPED)) {
        eprintln!("{line}");
        return;
    }
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "REDbot audit failed ({}) after {:?}; the NOT ALLOWED / FETCH ERROR lines above say why",
        out.status,
        started.elapsed()
    );
    assert!(stdout.contains("redbot audit: ok"), "no verdict from the audit:\n{stdout}");
}
