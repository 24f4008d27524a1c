//! Deciding and building the answer to a resolved request: preconditions (412/304, in RFC
//! 9110 §13.2.2's order), ranges (206, multipart 206, 416), content negotiation between a file
//! and its precompressed siblings, directory redirects (301), which directories are listed
//! (`--autoindex`) and error pages. The head goes into the send buffer with a small body; a
//! large body is left to `send` (sendfile or splices). This module must never promise a
//! Content-Length that the body it hands on does not have.

use std::rc::Rc;

use super::lookup::Purpose;
use super::send::{Body, BodyFile, CachedBody};
use super::{Conn, Exchange, may_keep_alive};
use crate::files::cache::{Entry, FileInfo};
use crate::http::date::parse_http_date as http_date;
use crate::http::encoding::{self, Coding};
use crate::http::range::{self, Selection};
use crate::http::request::{Field, Method, Request};
use crate::http::target;
use crate::http::{Status, response};
use crate::server::context::Ctx;

/// Cached bodies up to this size are copied into the head's buffer and sent with one `send`.
const COPY_BODY_BELOW: usize = 2048;
/// Cached bodies from this size on go out with `sendfile` from the file where the connection
/// allows it (plain or kernel TLS); smaller ones go from the cache with their head in one send.
/// The copy into the socket grows with the size, sendfile's extra calls (the head's send, the
/// page-cache check) do not: at 8 KiB the copy still costs less (wrk -c100, 5 interleaved
/// rounds: 8.26 µs of CPU per request against 8.80), at 16 KiB sendfile does (10.28 against
/// 10.70, with 10% more requests per second). Cached bytes stay for the bodies TLS seals.
const SENDFILE_FROM: usize = 16 * 1024;

/// Headers that describe the chosen representation.
struct Representation<'a> {
    info: &'a Rc<FileInfo>,
    /// The original's Content-Type (a sibling `.gz` is still `text/css`, say).
    content_type: &'static str,
    coding: Option<Coding>,
    /// The file has precompressed siblings, so the answer depends on Accept-Encoding.
    varies: bool,
}

impl Conn {
    /// Answers a request from what `path` (the path beneath the root it was resolved to once,
    /// and looked up) turned out to be.
    pub(super) fn respond_entry(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        path: &[u8],
        is_index: bool,
        entry: Entry,
        purpose: Purpose,
    ) {
        match purpose {
            Purpose::ErrorPage { status, keep_alive } => {
                return self.respond_error_page(ctx, req, status, keep_alive, entry);
            }
            Purpose::ListedDirectory => return self.respond_listed_directory(ctx, req, path, entry),
            Purpose::Request | Purpose::Fallback => {}
        }
        let may_list = is_index && purpose == Purpose::Request && ctx.cfg.autoindex;
        match entry {
            Entry::File(info) => self.respond_file(ctx, req, info),
            Entry::Directory if !is_index && purpose == Purpose::Request => self.redirect_to_dir(ctx, req),
            // `index.html` is itself a directory, so the one it lies in exists.
            Entry::Directory if may_list => self.start_listing(ctx, req, index_directory(path)),
            // No `index.html`: first make sure the directory exists, so that a path that names
            // nothing (a 404, a `--fallback` route) never waits for the listing threads.
            Entry::Absent(Status::NotFound) if may_list => {
                self.check_listed_directory(ctx, req, index_directory(path))
            }
            Entry::Directory | Entry::Absent(Status::NotFound) => self.not_found(ctx, req, purpose),
            Entry::Absent(status) => self.respond_error(ctx, Some(req), status, true),
        }
    }

    /// The path names nothing: the fallback if there is one (and this is not it), else 404.
    pub(super) fn not_found(&mut self, ctx: &mut Ctx, req: Box<Request>, purpose: Purpose) {
        match &ctx.cfg.fallback {
            Some(fallback) if purpose == Purpose::Request => {
                let (file, is_index) = (fallback.file.clone(), fallback.is_index);
                self.look_up(ctx, req, file, is_index, Purpose::Fallback)
            }
            _ => self.respond_error(ctx, Some(req), Status::NotFound, true),
        }
    }

    /// An error answered with a configured page's body (if `entry` is a file) and the original
    /// status; conditionals and Range do not apply to it. Anything else gets the built-in page.
    fn respond_error_page(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        status: Status,
        keep_alive: bool,
        entry: Entry,
    ) {
        let Entry::File(page) = entry else {
            return self.builtin_error(ctx, Some(req), status, keep_alive);
        };
        let size = page.id.size;
        let mut buf = ctx.head_buffer();
        response::start(&mut buf, status, &ctx.date_line);
        response::header(&mut buf, "Content-Type", page.content_type.as_bytes());
        response::content_length(&mut buf, size);
        if status == Status::MethodNotAllowed {
            response::header(&mut buf, "Allow", b"GET, HEAD");
        }
        response::finish(&mut buf, keep_alive);
        let head_only = req.head_only();
        let body =
            if head_only { Body::None } else { attach_body(&mut buf, &page, 0, size, self.can_sendfile()) };
        let ex = Exchange::new(Some(req), status, keep_alive, if head_only { 0 } else { size });
        self.send(ctx, buf, body, ex);
    }

    fn respond_file(&mut self, ctx: &mut Ctx, req: Box<Request>, main: Rc<FileInfo>) {
        let available = |c: Coding| main.variants[c as usize].is_some();
        let coding = encoding::preferred(req.field(Field::AcceptEncoding), available);
        let chosen = match coding {
            Some(c) => main.variants[c as usize].clone().unwrap_or_else(|| main.clone()),
            None => main.clone(),
        };
        let varies = main.variants.iter().any(Option::is_some);
        let rep = Representation { info: &chosen, content_type: main.content_type, coding, varies };
        let keep_alive = may_keep_alive(&req, ctx);
        let head_only = req.head_only();
        let size = chosen.id.size;
        match preconditions(&req, &chosen, ctx.unix_now) {
            Verdict::Proceed => {}
            Verdict::Failed => return self.respond_precondition_failed(ctx, req, keep_alive),
            Verdict::NotModified => return self.respond_not_modified(ctx, req, &rep, keep_alive),
        }
        let selection = match req.field(Field::Range) {
            Some(r) if req.method() == Method::Get && if_range_allows(&req, &chosen, ctx.unix_now) => {
                range::select(r, size)
            }
            _ => Selection::Whole,
        };
        let (status, start, len) = match selection {
            Selection::Whole => (Status::Ok, 0, size),
            Selection::Partial { start, end } => (Status::PartialContent, start, end - start + 1),
            Selection::Multi(ranges) => return self.respond_multipart(ctx, req, &rep, &ranges, keep_alive),
            Selection::Unsatisfiable => return self.respond_unsatisfiable(ctx, req, size, keep_alive),
        };
        let mut buf = ctx.head_buffer();
        representation_head(&mut buf, ctx, status, &rep, len);
        if status == Status::PartialContent {
            response::content_range(&mut buf, start, start + len - 1, size);
        }
        response::finish(&mut buf, keep_alive);
        let body_bytes = if head_only { 0 } else { len };
        let ex = Exchange::new(Some(req), status, keep_alive, body_bytes);
        let body = if head_only {
            Body::None
        } else {
            attach_body(&mut buf, &chosen, start, len, self.can_sendfile())
        };
        self.send(ctx, buf, body, ex)
    }

    /// A request on the `--metrics` listener: `GET /metrics` is the Prometheus text exposition,
    /// anything else 404 (or 405 for other methods).
    pub(super) fn respond_metrics(&mut self, ctx: &mut Ctx, req: Box<Request>, keep_alive: bool) {
        if req.method() == Method::Other {
            return self.builtin_error(ctx, Some(req), Status::MethodNotAllowed, keep_alive);
        }
        // Origin or absolute form (`GET http://host/metrics`), as on the public port.
        if target::split(req.target()).map(|(path, _)| path) != Ok("/metrics") {
            return self.builtin_error(ctx, Some(req), Status::NotFound, keep_alive);
        }
        let page: Rc<[u8]> = ctx.registry.render().into_bytes().into();
        let content_type = b"text/plain; version=0.0.4; charset=utf-8";
        self.respond_in_memory(ctx, req, content_type, &[("Cache-Control", b"no-store")], page);
    }

    /// 200 with a body built in memory (a listing, the metrics): the one builder for them.
    pub(super) fn respond_in_memory(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        content_type: &[u8],
        extra: &[(&str, &[u8])],
        page: Rc<[u8]>,
    ) {
        let keep_alive = may_keep_alive(&req, ctx);
        let mut buf = ctx.head_buffer();
        response::start(&mut buf, Status::Ok, &ctx.date_line);
        response::header(&mut buf, "Content-Type", content_type);
        response::content_length(&mut buf, page.len() as u64);
        for (name, value) in extra {
            response::header(&mut buf, name, value);
        }
        response::finish(&mut buf, keep_alive);
        let len = if req.head_only() { 0 } else { page.len() };
        let body = if len == 0 { Body::None } else { Body::Cached(CachedBody { data: page, start: 0, len }) };
        let ex = Exchange::new(Some(req), Status::Ok, keep_alive, len as u64);
        self.send(ctx, buf, body, ex);
    }

    /// 412: a precondition of the request does not hold; no body.
    fn respond_precondition_failed(&mut self, ctx: &mut Ctx, req: Box<Request>, keep_alive: bool) {
        let mut buf = ctx.head_buffer();
        response::start(&mut buf, Status::PreconditionFailed, &ctx.date_line);
        response::content_length(&mut buf, 0);
        self.send_bodiless(ctx, req, Status::PreconditionFailed, keep_alive, buf);
    }

    /// Finishes the head in `buf` and sends it alone: a response that has no body.
    fn send_bodiless(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        status: Status,
        keep_alive: bool,
        mut buf: Vec<u8>,
    ) {
        response::finish(&mut buf, keep_alive);
        self.send(ctx, buf, Body::None, Exchange::new(Some(req), status, keep_alive, 0));
    }

    /// 304 with exactly the fields RFC 9110 §15.4.5 lists that apply here (validators, caching
    /// directives, Vary), and no representation metadata.
    fn respond_not_modified(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        rep: &Representation,
        keep_alive: bool,
    ) {
        let mut buf = ctx.head_buffer();
        response::start(&mut buf, Status::NotModified, &ctx.date_line);
        response::header(&mut buf, "ETag", rep.info.etag.as_bytes());
        response::header(&mut buf, "Last-Modified", rep.info.last_modified.as_bytes());
        caching_headers(&mut buf, ctx, rep);
        self.send_bodiless(ctx, req, Status::NotModified, keep_alive, buf);
    }

    /// 206 `multipart/byteranges`: one part per range, each with its own Content-Type and
    /// Content-Range, bodies taken from the cache or spliced from the file part by part. The
    /// Content-Length is computed from the part heads before anything is sent.
    fn respond_multipart(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        rep: &Representation,
        ranges: &[(u64, u64)],
        keep_alive: bool,
    ) {
        let boundary =
            format!("{:016x}{:016x}", crate::kernel::sys::random_u64(), crate::kernel::sys::random_u64());
        let size = rep.info.id.size;
        let part_heads: Vec<Vec<u8>> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| {
                let lead = if i == 0 { "" } else { "\r\n" };
                let ct = rep.content_type;
                format!("{lead}--{boundary}\r\nContent-Type: {ct}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\r\n")
                    .into_bytes()
            })
            .collect();
        let closing = format!("\r\n--{boundary}--\r\n").into_bytes();
        let len = part_heads.iter().map(|h| h.len() as u64).sum::<u64>()
            + ranges.iter().map(|(start, end)| end - start + 1).sum::<u64>()
            + closing.len() as u64;
        let mut buf = ctx.head_buffer();
        let multipart = Representation { content_type: "", ..*rep };
        representation_head(&mut buf, ctx, Status::PartialContent, &multipart, len);
        let content_type = format!("multipart/byteranges; boundary={boundary}");
        response::header(&mut buf, "Content-Type", content_type.as_bytes());
        response::finish(&mut buf, keep_alive);
        let head_only = req.head_only();
        let mut ex =
            Exchange::new(Some(req), Status::PartialContent, keep_alive, if head_only { 0 } else { len });
        if head_only {
            return self.send(ctx, buf, Body::None, ex);
        }
        let sendfile = self.can_sendfile();
        let mut pieces = part_heads.into_iter().zip(ranges).map(|(mut head, &(start, end))| {
            let body = attach_body(&mut head, rep.info, start, end - start + 1, sendfile);
            (head, body)
        });
        let (first_head, first_body) = pieces.next().expect("a multipart answer has parts");
        buf.extend_from_slice(&first_head);
        ex.rest = pieces.collect();
        ex.rest.push_back((closing, Body::None));
        self.send(ctx, buf, first_body, ex)
    }

    fn respond_unsatisfiable(&mut self, ctx: &mut Ctx, req: Box<Request>, size: u64, keep_alive: bool) {
        let range = format!("bytes */{size}");
        let status = Status::RangeNotSatisfiable;
        let extra: [(&str, &[u8]); 1] = [("Content-Range", range.as_bytes())];
        self.respond_page(ctx, req, status, keep_alive, &extra);
    }

    /// `--redirect-https` applies: a plain connection's GET or HEAD, except for ACME HTTP-01
    /// challenges, which must stay reachable over plain HTTP.
    pub(super) fn redirects_to_https(&self, ctx: &Ctx, req: &Request) -> bool {
        self.tls.is_none()
            && ctx.cfg.https.as_ref().is_some_and(|h| h.redirect)
            && !req.target().starts_with("/.well-known/acme-challenge/")
    }

    /// 308 to the same URL over HTTPS: the host the client asked for, the HTTPS port.
    pub(super) fn redirect_to_https(&mut self, ctx: &mut Ctx, req: Box<Request>, keep_alive: bool) {
        let port = ctx.tls.as_ref().map_or(443, |t| t.port);
        // An absolute-form target's authority overrides Host (RFC 9112 §3.2.2); an empty or
        // missing one gives the address the client reached.
        let named = target::authority(req.target()).or(req.host()).map(target::host_without_port);
        let host = match named {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => self.local_host(),
        };
        let authority = if port == 443 { host } else { format!("{host}:{port}") };
        let path = target::origin_form(req.target());
        let slash = if path.starts_with('/') { "" } else { "/" };
        let location = format!("https://{authority}{slash}{path}");
        let extra: [(&str, &[u8]); 1] = [("Location", location.as_bytes())];
        self.respond_page(ctx, req, Status::PermanentRedirect, keep_alive, &extra);
    }

    /// The address the client connected to, as a URL host (for a request without Host).
    fn local_host(&self) -> String {
        match crate::kernel::sys::local_addr(self.fd()).map(|a| a.ip()) {
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            Ok(ip) => ip.to_string(),
            Err(_) => "localhost".to_owned(),
        }
    }

    /// `GET /dir` → 301 to `/dir/`, keeping the query string.
    fn redirect_to_dir(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        let location = match target::split(req.target()) {
            Ok((raw_path, Some(q))) => format!("{raw_path}/?{q}"),
            Ok((raw_path, None)) => format!("{raw_path}/"),
            Err(_) => return self.respond_error(ctx, Some(req), Status::BadRequest, false),
        };
        let keep_alive = may_keep_alive(&req, ctx);
        let cache_control = ctx.cfg.cache_control.clone();
        let mut extra: Vec<(&str, &[u8])> = vec![("Location", location.as_bytes())];
        if let Some(cc) = &cache_control {
            extra.push(("Cache-Control", cc.as_bytes()));
        }
        self.respond_page(ctx, req, Status::MovedPermanently, keep_alive, &extra);
    }

    pub(super) fn respond_page(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        status: Status,
        keep_alive: bool,
        extra: &[(&str, &[u8])],
    ) {
        let head_only = req.head_only();
        let mut buf = ctx.head_buffer();
        let body_bytes = response::page(&mut buf, status, &ctx.date_line, keep_alive, head_only, extra);
        self.send(ctx, buf, Body::None, Exchange::new(Some(req), status, keep_alive, body_bytes));
    }

    /// An error response: the configured `--error-page` for `status` if there is one (and a
    /// request to answer), else the built-in page. `framing_ok` is false when the request
    /// itself broke the framing.
    pub(super) fn respond_error(
        &mut self,
        ctx: &mut Ctx,
        req: Option<Box<Request>>,
        status: Status,
        framing_ok: bool,
    ) {
        let keep_alive =
            framing_ok && !status.closes_connection() && req.as_ref().is_some_and(|r| may_keep_alive(r, ctx));
        match (req, ctx.cfg.error_page(status.code())) {
            (Some(req), Some(page)) => {
                let (file, is_index) = (page.file.clone(), page.is_index);
                self.look_up(ctx, req, file, is_index, Purpose::ErrorPage { status, keep_alive })
            }
            (req, _) => self.builtin_error(ctx, req, status, keep_alive),
        }
    }

    /// The built-in HTML page for `status`.
    pub(super) fn builtin_error(
        &mut self,
        ctx: &mut Ctx,
        req: Option<Box<Request>>,
        status: Status,
        keep_alive: bool,
    ) {
        let head_only = req.as_ref().is_some_and(|r| r.head_only());
        self.builtin_page(ctx, req, status, keep_alive, head_only);
    }

    /// The answer to bytes that are no valid request: the built-in page, without its body
    /// when the request line asked for HEAD (RFC 9112 §6.3), and the connection closes.
    pub(super) fn respond_unparsable(&mut self, ctx: &mut Ctx, status: Status, head_only: bool) {
        self.builtin_page(ctx, None, status, false, head_only);
    }

    fn builtin_page(
        &mut self,
        ctx: &mut Ctx,
        req: Option<Box<Request>>,
        status: Status,
        keep_alive: bool,
        head_only: bool,
    ) {
        let mut buf = ctx.head_buffer();
        let body_bytes = response::page(&mut buf, status, &ctx.date_line, keep_alive, head_only, &[]);
        self.send(ctx, buf, Body::None, Exchange::new(req, status, keep_alive, body_bytes));
    }
}

/// The body of `len` bytes at `start` of a file: tiny cached bodies are copied behind the head
/// in `buf` (cheaper than an iovec), larger cached ones are sent from the cache up to
/// `SENDFILE_FROM` (or whatever their size when `sendfile` cannot be used), and the rest is
/// sent from the file.
fn attach_body(buf: &mut Vec<u8>, info: &Rc<FileInfo>, start: u64, len: u64, sendfile: bool) -> Body {
    if len == 0 {
        return Body::None;
    }
    let (start_at, len_of) = (start as usize, len as usize);
    match &info.body {
        Some(data) if len_of <= COPY_BODY_BELOW => {
            buf.extend_from_slice(&data[start_at..start_at + len_of]);
            Body::None
        }
        Some(data) if len_of < SENDFILE_FROM || !sendfile => {
            Body::Cached(CachedBody { data: data.clone(), start: start_at, len: len_of })
        }
        _ => Body::File(BodyFile { info: info.clone(), offset: start, remaining: len }),
    }
}

/// Headers every 200/206 for a file carries (a multipart 206 adds its own Content-Type).
fn representation_head(buf: &mut Vec<u8>, ctx: &Ctx, status: Status, rep: &Representation, len: u64) {
    response::start(buf, status, &ctx.date_line);
    if !rep.content_type.is_empty() {
        response::header(buf, "Content-Type", rep.content_type.as_bytes());
    }
    response::content_length(buf, len);
    response::header(buf, "Last-Modified", rep.info.last_modified.as_bytes());
    response::header(buf, "ETag", rep.info.etag.as_bytes());
    response::header(buf, "Accept-Ranges", b"bytes");
    if let Some(coding) = rep.coding {
        response::header(buf, "Content-Encoding", coding.token().as_bytes());
    }
    caching_headers(buf, ctx, rep);
}

/// Vary and Cache-Control: sent on 200, 206 and 304 alike.
fn caching_headers(buf: &mut Vec<u8>, ctx: &Ctx, rep: &Representation) {
    if rep.varies {
        response::header(buf, "Vary", b"Accept-Encoding");
    }
    if let Some(cc) = &ctx.cfg.cache_control {
        response::header(buf, "Cache-Control", cc.as_bytes());
    }
}

/// The outcome of a request's preconditions.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Proceed,
    NotModified,
    Failed,
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether any entity tag of a comma-separated list (or `*`) passes `matches`.
fn any_tag(list: &str, matches: impl Fn(&str) -> bool) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || matches(t))
}

/// RFC 9110 §13.2.2, for GET and HEAD: If-Match (strong comparison), else If-Unmodified-Since;
/// then If-None-Match (weak comparison), else If-Modified-Since. Invalid dates are ignored.
fn preconditions(req: &Request, info: &FileInfo, now: i64) -> Verdict {
    let date = |v: Option<&str>| v.and_then(|d| http_date(d, now));
    if let Some(list) = req.field(Field::IfMatch) {
        // A weak tag never matches strongly; this server's tags are all strong.
        if !any_tag(list, |t| !t.starts_with("W/") && t == info.etag) {
            return Verdict::Failed;
        }
    } else if date(req.field(Field::IfUnmodifiedSince)).is_some_and(|since| info.id.mtime > since) {
        return Verdict::Failed;
    }
    if let Some(list) = req.field(Field::IfNoneMatch) {
        if any_tag(list, |t| opaque(t) == opaque(&info.etag)) {
            return Verdict::NotModified;
        }
    } else if date(req.field(Field::IfModifiedSince)).is_some_and(|since| info.id.mtime <= since) {
        return Verdict::NotModified;
    }
    Verdict::Proceed
}

/// RFC 9110 §13.1.5: a Range applies only if If-Range (strong ETag or exact date) still holds.
fn if_range_allows(req: &Request, info: &FileInfo, now: i64) -> bool {
    match req.field(Field::IfRange) {
        None => true,
        Some(v) if v.starts_with('"') => v == info.etag,
        Some(v) if v.starts_with("W/") => false,
        Some(v) => http_date(v, now) == Some(info.id.mtime),
    }
}

/// The directory whose `index.html` `path` names (`""` for the root, else ending in `/`).
fn index_directory(path: &[u8]) -> Vec<u8> {
    path.strip_suffix(b"index.html").unwrap_or(path).to_vec()
}
