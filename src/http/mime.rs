//! Content-Type by file extension: a fixed table for the types clients depend on exactly, then
//! mime_guess, then `application/octet-stream`.

/// The Content-Type for a file name (the last path segment or the whole path).
pub fn content_type(path: &[u8]) -> &'static str {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return "application/octet-stream";
    };
    let Ok(ext) = std::str::from_utf8(&name[dot + 1..]) else {
        return "application/octet-stream";
    };
    let ext = ext.to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "application/javascript",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "swf" => "application/x-shockwave-flash",
        "txt" => "text/plain",
        "" => "application/octet-stream",
        other => mime_guess::from_ext(other).first_raw().unwrap_or("application/octet-stream"),
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn fixed_table_then_guess_then_default() {
        for (name, ct) in [
            ("a.html", "text/html"),
            ("a.HTM", "text/html"),
            ("d/x.css", "text/css"),
            ("x.js", "application/javascript"),
            ("x.jpg", "image/jpeg"),
            ("x.jpeg", "image/jpeg"),
            ("x.png", "image/png"),
            ("x.gif", "image/gif"),
            ("x.swf", "application/x-shockwave-flash"),
            ("x.svg", "image/svg+xml"),
            ("x.zzqx", "application/octet-stream"),
            ("noext", "application/octet-stream"),
            ("dir.d/noext", "application/octet-stream"),
            ("trailing.", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name.as_bytes()), ct, "{name}");
        }
    }
}
