//! What the server knows of the files beneath the document root beyond one request: the
//! per-worker cache of opened files and small bodies, and directory listings (`--autoindex`).

pub mod cache;
pub mod listing;
