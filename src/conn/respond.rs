//! Deciding and building the answer to a resolved request: conditionals (304), ranges
//! (206/416), content negotiation between a file and its precompressed siblings, directory
//! redirects (301) and error pages. The head goes into the send buffer with a small body; a
//! large body is left for the splice path. This module must never promise a Content-Length
//! that the body it hands on does not have.

use std::rc::Rc;

use super::{Body, BodyFile, CachedBody, Conn, Exchange};
use crate::cache::{Entry, FileInfo};
use crate::http::encoding::{self, Coding};
use crate::http::range::{self, Selection};
use crate::http::request::{Method, Request};
use crate::http::{Status, response};
use crate::path;
use crate::worker::Ctx;

/// Cached bodies up to this size are copied into the head's buffer and sent with one `send`.
const COPY_BODY_BELOW: usize = 2048;

/// Headers that describe the chosen representation.
struct Representation<'a> {
    info: &'a FileInfo,
    /// The original's Content-Type (a sibling `.gz` is still `text/css`, say).
    content_type: &'static str,
    coding: Option<Coding>,
    /// The file has precompressed siblings, so the answer depends on Accept-Encoding.
    varies: bool,
}

impl Conn {
    /// Answers a request from what its path resolved to.
    pub(super) fn respond_entry(&mut self, ctx: &mut Ctx, req: Box<Request>, is_index: bool, entry: Entry) {
        match entry {
            Entry::File(info) => self.respond_file(ctx, req, info),
            Entry::Directory if !is_index => self.redirect_to_dir(ctx, req),
            Entry::Directory => self.respond_error(ctx, Some(req), Status::NotFound, true),
            Entry::Absent(status) => self.respond_error(ctx, Some(req), status, true),
        }
    }

    fn respond_file(&mut self, ctx: &mut Ctx, req: Box<Request>, main: Rc<FileInfo>) {
        let available = |c: Coding| main.variants[c as usize].is_some();
        let coding = encoding::preferred(req.accept_encoding.as_deref(), available);
        let chosen = match coding {
            Some(c) => main.variants[c as usize].clone().unwrap_or_else(|| main.clone()),
            None => main.clone(),
        };
        let varies = main.variants.iter().any(Option::is_some);
        let rep = Representation { info: &chosen, content_type: main.content_type, coding, varies };
        let keep_alive = req.keep_alive && !req.has_body && !ctx.stopping;
        let head_only = req.method() == Method::Head;
        let size = chosen.id.size;
        let mut buf = ctx.head_buffer();
        if not_modified(&req, &chosen) {
            representation_head(&mut buf, ctx, Status::NotModified, &rep, size);
            response::finish(&mut buf, keep_alive);
            let ex = Exchange { req: Some(req), status: Status::NotModified, keep_alive, body_bytes: 0 };
            return self.send(ctx, buf, Body::None, ex);
        }
        let selection = match &req.range {
            Some(r) if req.method() == Method::Get && if_range_allows(&req, &chosen) => {
                range::select(r, size)
            }
            _ => Selection::Whole,
        };
        let (status, start, len) = match selection {
            Selection::Whole => (Status::Ok, 0, size),
            Selection::Partial { start, end } => (Status::PartialContent, start, end - start + 1),
            Selection::Unsatisfiable => return self.respond_unsatisfiable(ctx, req, size, keep_alive),
        };
        representation_head(&mut buf, ctx, status, &rep, len);
        if status == Status::PartialContent {
            response::content_range(&mut buf, start, start + len - 1, size);
        }
        response::finish(&mut buf, keep_alive);
        let body_bytes = if head_only { 0 } else { len };
        let ex = Exchange { req: Some(req), status, keep_alive, body_bytes };
        if head_only || len == 0 {
            return self.send(ctx, buf, Body::None, ex);
        }
        let (start, len) = (start as usize, len as usize);
        match &chosen.body {
            // Tiny bodies are cheaper copied behind the head than described by an iovec.
            Some(data) if len <= COPY_BODY_BELOW => {
                buf.extend_from_slice(&data[start..start + len]);
                self.send(ctx, buf, Body::None, ex);
            }
            Some(data) => {
                self.send(ctx, buf, Body::Cached(CachedBody { data: data.clone(), start, len }), ex)
            }
            None => {
                let body = BodyFile { info: chosen.clone(), offset: start as u64, remaining: len as u64 };
                self.send(ctx, buf, Body::File(body), ex)
            }
        }
    }

    fn respond_unsatisfiable(&mut self, ctx: &mut Ctx, req: Box<Request>, size: u64, keep_alive: bool) {
        let range = format!("bytes */{size}");
        let status = Status::RangeNotSatisfiable;
        let extra: [(&str, &[u8]); 1] = [("Content-Range", range.as_bytes())];
        self.respond_page(ctx, req, status, keep_alive, &extra);
    }

    /// `GET /dir` → 301 to `/dir/`, keeping the query string.
    fn redirect_to_dir(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        let location = match path::resolve(&req.target) {
            Ok(path::Target { raw_path, query: Some(q), .. }) => format!("{raw_path}/?{q}"),
            Ok(path::Target { raw_path, .. }) => format!("{raw_path}/"),
            Err(_) => return self.respond_error(ctx, Some(req), Status::BadRequest, false),
        };
        let keep_alive = req.keep_alive && !req.has_body && !ctx.stopping;
        let extra: [(&str, &[u8]); 1] = [("Location", location.as_bytes())];
        self.respond_page(ctx, req, Status::MovedPermanently, keep_alive, &extra);
    }

    fn respond_page(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        status: Status,
        keep_alive: bool,
        extra: &[(&str, &[u8])],
    ) {
        let head_only = req.method() == Method::Head;
        let mut buf = ctx.head_buffer();
        let body_bytes = response::page(&mut buf, status, &ctx.date_line, keep_alive, head_only, extra);
        self.send(ctx, buf, Body::None, Exchange { req: Some(req), status, keep_alive, body_bytes });
    }

    /// An error page. `may_keep_alive` is false when the request itself broke the framing.
    pub(super) fn respond_error(
        &mut self,
        ctx: &mut Ctx,
        req: Option<Box<Request>>,
        status: Status,
        may_keep_alive: bool,
    ) {
        let head_only = req.as_ref().is_some_and(|r| r.method() == Method::Head);
        let keep_alive = may_keep_alive
            && !status.closes_connection()
            && !ctx.stopping
            && req.as_ref().is_some_and(|r| r.keep_alive && !r.has_body);
        let mut buf = ctx.head_buffer();
        let body_bytes = response::page(&mut buf, status, &ctx.date_line, keep_alive, head_only, &[]);
        self.send(ctx, buf, Body::None, Exchange { req, status, keep_alive, body_bytes });
    }
}

/// Headers every 200/206/304 for a file carries.
fn representation_head(buf: &mut Vec<u8>, ctx: &Ctx, status: Status, rep: &Representation, len: u64) {
    response::start(buf, status, &ctx.date_line);
    response::header(buf, "Content-Type", rep.content_type.as_bytes());
    response::content_length(buf, len);
    response::header(buf, "Last-Modified", rep.info.last_modified.as_bytes());
    response::header(buf, "ETag", rep.info.etag.as_bytes());
    response::header(buf, "Accept-Ranges", b"bytes");
    if let Some(coding) = rep.coding {
        response::header(buf, "Content-Encoding", coding.token().as_bytes());
    }
    if rep.varies {
        response::header(buf, "Vary", b"Accept-Encoding");
    }
    if let Some(cc) = &ctx.cfg.cache_control {
        response::header(buf, "Cache-Control", cc.as_bytes());
    }
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// RFC 9110 §13.1.1–13.1.3: If-None-Match (weak comparison) wins over If-Modified-Since.
fn not_modified(req: &Request, info: &FileInfo) -> bool {
    if let Some(inm) = &req.if_none_match {
        return inm.split(',').map(str::trim).any(|t| t == "*" || opaque(t) == opaque(&info.etag));
    }
    req.if_modified_since.is_some_and(|since| info.id.mtime <= since)
}

/// RFC 9110 §13.1.5: a Range applies only if If-Range (strong ETag or exact date) still holds.
fn if_range_allows(req: &Request, info: &FileInfo) -> bool {
    match &req.if_range {
        None => true,
        Some(v) if v.starts_with('"') => *v == info.etag,
        Some(v) if v.starts_with("W/") => false,
        Some(v) => crate::http::date::parse_imf_fixdate(v) == Some(info.id.mtime),
    }
}
