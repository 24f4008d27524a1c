//! Fuzzes the request-target resolver, `ringhttpd::http::target::resolve`, and the dotfile test,
//! `ringhttpd::http::target::is_hidden`.
//!
//! Input: a request target (bytes that are not UTF-8 are replaced, as only a `&str` can reach
//! `resolve`). Checked on every input:
//! - it never panics and gives the same answer twice;
//! - a resolved `file` is not empty, never starts with `/`, never contains NUL, and has no empty,
//!   `.` or `..` segment; `is_index` files end in `index.html`; `raw_path` starts with `/`, lies
//!   in the target and holds no `?` or `#`; the query holds no `#`;
//! - the whole result (or the error) equals that of a straightforward reference: strip the
//!   absolute form, cut the fragment and query, decode `%XX` once, walk the segments from the
//!   root refusing to climb above it;
//! - resolving is idempotent: `/` + `file` (when it has no `%`, `?` or `#` to re-interpret)
//!   resolves to the same `file`; a target without `%` resolves the same way twice;
//! - `is_hidden` is true exactly when a segment starts with `.`, the root's `.well-known` aside,
//!   both on the raw input bytes and on every resolved `file`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringhttpd::http::target::{PathError, Target, is_hidden, resolve};

fuzz_target!(|data: &[u8]| {
    assert_eq!(is_hidden(data), reference_hidden(data), "is_hidden({:?})", String::from_utf8_lossy(data));

    let target = String::from_utf8_lossy(data);
    let result = resolve(&target);
    assert_eq!(resolve(&target), result, "resolve is not deterministic");
    let expected = reference(&target);
    match (&result, &expected) {
        (Ok(t), Ok((file, is_index))) => {
            assert_eq!(
                (&t.file[..], t.is_index),
                (&file[..], *is_index),
                "resolve({target:?}) differs from the reference"
            );
        }
        (Err(e), Err(r)) => assert_eq!(e, r, "resolve({target:?}) fails differently from the reference"),
        _ => panic!("resolve({target:?}) = {result:?}, the reference says {expected:?}"),
    }
    let Ok(t) = result else { return };
    check_target(&target, &t);

    // Idempotence: the resolved file, as a target, names itself.
    if let Ok(name) = std::str::from_utf8(&t.file)
        && !name.contains(['%', '?', '#'])
    {
        let again = format!("/{name}");
        let r = resolve(&again).unwrap_or_else(|e| panic!("{again:?} (from {target:?}) gave {e:?}"));
        assert_eq!(r.file, t.file, "{again:?} (from {target:?}) is not a fixed point");
    }
});

fn check_target(target: &str, t: &Target) {
    let file: &[u8] = &t.file;
    let shown = String::from_utf8_lossy(file);
    assert!(!file.is_empty(), "empty file for {target:?}");
    assert!(!file.starts_with(b"/"), "absolute file {shown:?} for {target:?}");
    assert!(!file.contains(&0), "NUL in {shown:?} for {target:?}");
    for seg in file.split(|&b| b == b'/') {
        assert!(!matches!(seg, b"" | b"." | b".."), "segment {seg:?} in {shown:?} for {target:?}");
    }
    assert!(
        !t.is_index || file == b"index.html".as_slice() || file.ends_with(b"/index.html"),
        "index {shown:?}"
    );
    assert!(t.raw_path.starts_with('/'), "raw path {:?}", t.raw_path);
    assert!(target.contains(t.raw_path), "raw path {:?} not in {target:?}", t.raw_path);
    assert!(!t.raw_path.contains(['?', '#']), "raw path {:?}", t.raw_path);
    if let Some(q) = t.query {
        assert!(!q.contains('#'), "fragment in the query {q:?}");
    }
    assert_eq!(is_hidden(file), reference_hidden(file), "is_hidden({shown:?})");
}

/// A segment starts with `.`, except a first segment that is exactly `.well-known`.
fn reference_hidden(file: &[u8]) -> bool {
    file.split(|&b| b == b'/')
        .enumerate()
        .any(|(i, seg)| seg.first() == Some(&b'.') && !(i == 0 && seg == b".well-known"))
}

/// `(file, is_index)` by the documented rules, written independently of the resolver.
fn reference(target: &str) -> Result<(Vec<u8>, bool), PathError> {
    let bytes = target.as_bytes();
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| bytes.len() >= s.len() && bytes[..s.len()].eq_ignore_ascii_case(s.as_bytes()))
        .map(|s| s.len());
    let origin: &[u8] = match scheme_len {
        None => bytes,
        Some(n) => {
            let rest = &bytes[n..];
            match rest.iter().position(|&b| b == b'/' || b == b'?') {
                Some(i) if rest[i] == b'/' => &rest[i..],
                _ => b"/",
            }
        }
    };
    if origin.first() != Some(&b'/') {
        return Err(PathError::BadTarget);
    }
    let end = origin.iter().position(|&b| b == b'#' || b == b'?').unwrap_or(origin.len());
    let path = &origin[..end];

    let mut decoded = Vec::new();
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let digit = |j: usize| path.get(j).and_then(|&h| (h as char).to_digit(16));
            let (Some(hi), Some(lo)) = (digit(i + 1), digit(i + 2)) else {
                return Err(PathError::BadEscape);
            };
            let v = (hi * 16 + lo) as u8;
            if v == 0 {
                return Err(PathError::Nul);
            }
            decoded.push(v);
            i += 3;
        } else if b == 0 {
            return Err(PathError::Nul);
        } else {
            decoded.push(b);
            i += 1;
        }
    }

    let mut stack: Vec<&[u8]> = Vec::new();
    let mut last: &[u8] = b"";
    for seg in decoded.split(|&b| b == b'/') {
        last = seg;
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop().ok_or(PathError::Escapes)?;
            }
            name => stack.push(name),
        }
    }
    let is_index = matches!(last, b"" | b"." | b"..");
    let mut file = stack.join(&b'/');
    if is_index {
        if !file.is_empty() {
            file.push(b'/');
        }
        file.extend_from_slice(b"index.html");
    }
    Ok((file, is_index))
}
