//! Turns a request target into the relative path to open beneath the document root.
//!
//! Decodes `%XX` exactly once, rejects NUL and malformed escapes, and normalises `.`/`..` and
//! repeated slashes lexically, refusing any `..` that would climb above the root. The result is
//! only ever opened with `RESOLVE_BENEATH`, so the kernel enforces the same rule again for
//! symlinks. This module must never touch the filesystem or concatenate with the root's path.

use std::borrow::Cow;

/// Why a target cannot name a file; all of these are answered with 400.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PathError {
    /// Not origin-form (`/...`) or absolute-form (`http://host/...`).
    BadTarget,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%00`: a NUL can never be part of a file name.
    Nul,
    /// `..` would leave the document root.
    Escapes,
}

/// A request target split into the parts the server uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The path as sent (still percent-encoded), for redirects.
    pub raw_path: &'a str,
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Relative path to open beneath the root; `index.html` is appended for directory paths.
    /// Borrowed from the target when it needed no decoding (the usual case).
    pub file: Cow<'a, [u8]>,
    /// The path named a directory (ended in `/`), so `file` is its index.
    pub is_index: bool,
}

/// Splits a request target into its path as sent (still percent-encoded) and its query,
/// without decoding anything: what a redirect needs to rebuild the target.
pub fn split(target: &str) -> Result<(&str, Option<&str>), PathError> {
    let origin = strip_absolute_form(target).ok_or(PathError::BadTarget)?;
    if !origin.starts_with('/') {
        return Err(PathError::BadTarget);
    }
    let origin = origin.split('#').next().unwrap_or(origin);
    Ok(match origin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin, None),
    })
}

/// Splits and resolves a request target.
pub fn resolve(target: &str) -> Result<Target<'_>, PathError> {
    let (raw_path, query) = split(target)?;
    let (mut file, is_index) = match plain(raw_path.as_bytes()) {
        // Nothing to decode or normalise (the usual case): the path is the file name.
        Some(is_index) => (Cow::Borrowed(&raw_path.as_bytes()[1..]), is_index),
        None => {
            let decoded = percent_decode(raw_path.as_bytes())?;
            let (segments, is_index) = normalise(&decoded)?;
            let mut file = segments.join(&b'/');
            if is_index && !file.is_empty() {
                file.push(b'/');
            }
            (Cow::Owned(file), is_index)
        }
    };
    if is_index {
        file.to_mut().extend_from_slice(b"index.html");
    }
    Ok(Target { raw_path, query, file, is_index })
}

/// Whether a resolved path has a segment that starts with `.` (a dotfile or dot-directory,
/// where `.git/` and `.env` leak secrets), except the root's `.well-known` (RFC 8615).
pub fn is_hidden(file: &[u8]) -> bool {
    let rest = match file.strip_prefix(b".well-known") {
        Some(tail) if tail.is_empty() || tail[0] == b'/' => tail,
        _ => file,
    };
    rest.first() == Some(&b'.') || rest.windows(2).any(|w| w == b"/.")
}

/// `Some(is_index)` when `path` (which starts with `/`) needs neither decoding nor
/// normalisation: no `%`, no NUL, no empty, `.` or `..` segment except a final empty one.
fn plain(path: &[u8]) -> Option<bool> {
    if path.iter().any(|&b| b == b'%' || b == 0) {
        return None;
    }
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            b"." | b".." => return None,
            b"" if !last => return None,
            b"" => return Some(true),
            _ => {}
        }
    }
    Some(path.len() == 1)
}

/// `http://host:port/path` → `/path`; origin-form targets pass through unchanged.
fn strip_absolute_form(target: &str) -> Option<&str> {
    // Compared as bytes: the target may hold multi-byte characters anywhere.
    let lower_starts =
        |p: &str| target.as_bytes().get(..p.len()).is_some_and(|b| b.eq_ignore_ascii_case(p.as_bytes()));
    let rest = if lower_starts("http://") {
        &target[7..]
    } else if lower_starts("https://") {
        &target[8..]
    } else {
        return Some(target);
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Some(&rest[i..]),
        Some(_) | None => Some("/"),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` once. `%25` yields a literal `%` that is never decoded again.
pub fn percent_decode(input: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            let hi = input.get(i + 1).copied().and_then(hex).ok_or(PathError::BadEscape)?;
            let lo = input.get(i + 2).copied().and_then(hex).ok_or(PathError::BadEscape)?;
            let v = hi << 4 | lo;
            if v == 0 {
                return Err(PathError::Nul);
            }
            out.push(v);
            i += 3;
        } else {
            if b == 0 {
                return Err(PathError::Nul);
            }
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Splits a decoded absolute path into segments, resolving `.` and `..`; also reports whether
/// the path names a directory (trailing `/`, or ending in `.`/`..`).
fn normalise(path: &[u8]) -> Result<(Vec<&[u8]>, bool), PathError> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut is_dir = true;
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => is_dir = true,
            b".." => {
                segments.pop().ok_or(PathError::Escapes)?;
                is_dir = true;
            }
            name => {
                segments.push(name);
                is_dir = false;
            }
        }
    }
    Ok((segments, is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_paths() {
        for hidden in [".env", ".git/config", "a/.htpasswd", "a/.b/c", ".well-known/.x", ".well-knownx/a"] {
            assert!(is_hidden(hidden.as_bytes()), "{hidden}");
        }
        for shown in ["index.html", "a/b.c", "a..b", ".well-known", ".well-known/acme/tok", "a/b./c"] {
            assert!(!is_hidden(shown.as_bytes()), "{shown}");
        }
        let decoded = resolve("/%2egit/config").unwrap().file;
        assert!(is_hidden(&decoded));
        assert!(is_hidden(&resolve("/a/../.env").unwrap().file));
    }

    fn file(t: &str) -> Result<String, PathError> {
        resolve(t).map(|t| String::from_utf8(t.file.into_owned()).unwrap())
    }

    #[test]
    fn plain_and_index_paths() {
        assert_eq!(file("/"), Ok("index.html".into()));
        assert_eq!(file("/a/b/"), Ok("a/b/index.html".into()));
        assert_eq!(file("/a/b"), Ok("a/b".into()));
        assert_eq!(file("//a///b"), Ok("a/b".into()));
        assert_eq!(file("/page.html/"), Ok("page.html/index.html".into()));
        assert!(resolve("/a/").unwrap().is_index);
        assert!(!resolve("/a").unwrap().is_index);
    }

    #[test]
    fn decodes_once() {
        assert_eq!(file("/dir2/%70%61%67%65%2e%68%74%6d%6c"), Ok("dir2/page.html".into()));
        assert_eq!(file("/space%20in%20name.txt"), Ok("space in name.txt".into()));
        assert_eq!(file("/%252e%252e/x"), Ok("%2e%2e/x".into()));
        assert_eq!(file("/text..txt"), Ok("text..txt".into()));
    }

    #[test]
    fn strips_query_and_fragment() {
        let t = resolve("/a.txt?x=1&y=/../../#frag").unwrap();
        assert_eq!(&*t.file, b"a.txt");
        assert_eq!(t.query, Some("x=1&y=/../../"));
        assert_eq!(t.raw_path, "/a.txt");
        assert_eq!(file("/a.txt#x"), Ok("a.txt".into()));
    }

    #[test]
    fn rejects_bad_escapes_and_nul() {
        assert_eq!(file("/a%00b"), Err(PathError::Nul));
        assert_eq!(file("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(file("/a%4"), Err(PathError::BadEscape));
        assert_eq!(file("/a%"), Err(PathError::BadEscape));
    }

    #[test]
    fn dot_segments_never_climb_above_root() {
        assert_eq!(file("/a/../b"), Ok("b".into()));
        assert_eq!(file("/a/./b/."), Ok("a/b/index.html".into()));
        assert_eq!(file("/.."), Err(PathError::Escapes));
        assert_eq!(file("/a/../../etc/passwd"), Err(PathError::Escapes));
        assert_eq!(file("/%2e%2e/etc/passwd"), Err(PathError::Escapes));
        assert_eq!(file("/a/%2e%2e%2f%2e%2e%2fetc"), Err(PathError::Escapes));
        assert_eq!(file("/..\\..\\etc"), Ok("..\\..\\etc".into()));
    }

    #[test]
    fn target_forms() {
        assert_eq!(file("http://example.com/a/b"), Ok("a/b".into()));
        assert_eq!(file("HTTP://example.com"), Ok("index.html".into()));
        assert_eq!(file("http://x/../../etc/passwd"), Err(PathError::Escapes));
        assert_eq!(file("*"), Err(PathError::BadTarget));
        assert_eq!(file("a/b"), Err(PathError::BadTarget));
        assert_eq!(file("ü/x"), Err(PathError::BadTarget));
        assert_eq!(file("httpü//x"), Err(PathError::BadTarget));
    }
}

/// The host of a Host header value, without its port (`[::1]:8080` → `[::1]`).
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split_once(':').map_or(host, |(name, _)| name)
}

/// The authority of an absolute-form target (`http://h:80/p` → `h:80`); `None` otherwise.
pub fn authority(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return None;
    }
    let (_, rest) = target.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // Userinfo is not part of the host.
    Some(rest[..end].rsplit('@').next().unwrap_or(""))
}

/// The path and query of a request target: itself in origin form, what follows the
/// authority in absolute form (`http://h/p?q` → `/p?q`, `http://h?q` → `?q`, where the path is
/// empty and stands for `/`).
pub fn origin_form(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    let after_scheme = target.split_once("://").map_or(target, |(_, rest)| rest);
    after_scheme.find(['/', '?', '#']).map_or("", |at| &after_scheme[at..])
}

#[cfg(test)]
mod redirect_tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_targets_their_authority() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(origin_form("/a/b?x=1"), "/a/b?x=1");
        assert_eq!(origin_form("http://h:80/a?q"), "/a?q");
        assert_eq!(origin_form("http://h"), "");
        assert_eq!(origin_form("http://h?q=1"), "?q=1");
        assert_eq!(origin_form("http://h?x=/y"), "?x=/y");
        assert_eq!(authority("http://example.net:81/x?y"), Some("example.net:81"));
        assert_eq!(authority("http://u@example.net"), Some("example.net"));
        assert_eq!(authority("/x"), None);
    }
}
