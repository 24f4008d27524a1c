//! `--autoindex`: answering a request for a directory without `index.html` with a listing of
//! it, built by the listing threads (`crate::listing`), or reused from the worker's pages
//! while fresh.
//!
//! The directory is looked up on the ring first (through the file cache, like any path), so a
//! path that names nothing never waits for the listing threads. While its listing is built the
//! connection is in `Phase::Listing`, holding a ticket for the job, and it stops waiting, which
//! drops the ticket (and cancels the job once no other connection waits for it), when the
//! client closes its side (a client that
//! left cannot be told from one that only half-closed), when the send timeout passes (503),
//! or when the server stops (503). A full queue is answered 503 at once. This module never
//! waits for a listing thread.

use std::rc::Rc;

use super::lookup::Purpose;
use super::send::{Body, CachedBody};
use super::{Conn, Exchange, Phase, Recv, may_keep_alive};
use crate::files::cache::Entry;
use crate::files::listing::{Listing, Refused, Ticket};
use crate::http::request::{Method, Request};
use crate::http::target;
use crate::http::{Status, response};
use crate::ops::metrics::CloseReason;
use crate::server::context::Ctx;

/// Seconds a client refused a listing (a full queue, a deadline, a stop) is asked to wait.
const RETRY_AFTER: &[u8] = b"1";

/// A connection waiting for its listing.
pub(super) struct Waiting {
    req: Box<Request>,
    /// Dropped (cancelling the job, unless others wait for it) whenever the connection stops
    /// waiting.
    ticket: Ticket,
}

impl Conn {
    /// Looks up the directory a request ending in `/` names, before anything is queued.
    pub(super) fn check_listed_directory(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        let Some(dir) = listed_directory(&req) else {
            return self.respond_error(ctx, Some(req), Status::BadRequest, false);
        };
        let path = match dir.strip_suffix(b"/") {
            Some(path) => path.to_vec(),
            None => b".".to_vec(),
        };
        self.look_up(ctx, req, path, false, Purpose::ListedDirectory);
    }

    /// What the directory to list turned out to be: only a directory is listed.
    pub(super) fn respond_listed_directory(&mut self, ctx: &mut Ctx, req: Box<Request>, entry: Entry) {
        match entry {
            Entry::Directory => self.start_listing(ctx, req),
            Entry::File(_) | Entry::Absent(Status::NotFound) => self.not_found(ctx, req, Purpose::Request),
            Entry::Absent(status) => self.respond_error(ctx, Some(req), status, true),
        }
    }

    /// Answers with the page of the directory the request names if one is fresh, or queues
    /// its listing and waits for it, watching for the client's close meanwhile.
    pub(super) fn start_listing(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        let Some(dir) = listed_directory(&req) else {
            return self.respond_error(ctx, Some(req), Status::BadRequest, false);
        };
        if let Some(page) = ctx.lister.as_ref().and_then(|l| l.cached(&dir, ctx.now)) {
            return self.respond_listing(ctx, req, page);
        }
        if self.recv == Recv::Ended {
            // The client closed its side already: nobody may be left to read the listing.
            return self.abort_for(CloseReason::Client, ctx);
        }
        if ctx.stopping {
            return self.refuse_listing(ctx, req);
        }
        let hide_dotfiles = ctx.cfg.hide_dotfiles;
        let asked = match &mut ctx.lister {
            Some(lister) => lister.request((self.key, self.generation), dir, hide_dotfiles, ctx.now),
            None => Err(Refused::Gone),
        };
        match asked {
            Ok(ticket) => {
                self.phase = Phase::Listing(Box::new(Waiting { req, ticket }));
                self.deadline = ctx.now + ctx.cfg.send_timeout;
                self.arm_recv(ctx);
            }
            Err(Refused::Busy) => self.refuse_listing(ctx, req),
            Err(Refused::Gone) => self.respond_error(ctx, Some(req), Status::InternalServerError, false),
        }
    }

    /// Stops waiting for the listing (cancelling it) and answers 503 with `Retry-After`: the
    /// send timeout passed, or the server is stopping.
    pub(super) fn give_up_listing(&mut self, ctx: &mut Ctx) {
        let Phase::Listing(waiting) = self.take_phase() else {
            unreachable!("giving up a listing outside the listing phase");
        };
        let Waiting { req, ticket } = *waiting;
        drop(ticket);
        self.refuse_listing(ctx, req);
    }

    fn refuse_listing(&mut self, ctx: &mut Ctx, req: Box<Request>) {
        let extra: [(&str, &[u8]); 1] = [("Retry-After", RETRY_AFTER)];
        self.respond_page(ctx, req, Status::ServiceUnavailable, false, &extra);
    }

    /// A listing came back: answered with it if this connection still waits for it (it may
    /// have been answered otherwise meanwhile, and be waiting for another request by now).
    pub fn on_listing(&mut self, listing: &Listing, ctx: &mut Ctx) {
        match &self.phase {
            Phase::Listing(waiting) if waiting.ticket.claims(listing) => {}
            _ => return,
        }
        let Phase::Listing(waiting) = self.take_phase() else { unreachable!() };
        let req = waiting.req;
        match &listing.result {
            Ok(page) => self.respond_listing(ctx, req, page.clone()),
            // The directory went away since it was looked up.
            Err(Status::NotFound) => self.not_found(ctx, req, Purpose::Request),
            Err(status) => self.respond_error(ctx, Some(req), *status, true),
        }
    }

    fn respond_listing(&mut self, ctx: &mut Ctx, req: Box<Request>, page: Rc<[u8]>) {
        let keep_alive = may_keep_alive(&req, ctx);
        let head_only = req.method() == Method::Head;
        let mut buf = ctx.head_buffer();
        response::start(&mut buf, Status::Ok, &ctx.date_line);
        response::header(&mut buf, "Content-Type", b"text/html; charset=utf-8");
        response::content_length(&mut buf, page.len() as u64);
        response::finish(&mut buf, keep_alive);
        let len = page.len();
        let body = if head_only || len == 0 {
            Body::None
        } else {
            Body::Cached(CachedBody { data: page, start: 0, len })
        };
        let ex = Exchange::new(Some(req), Status::Ok, keep_alive, if head_only { 0 } else { len as u64 });
        self.send(ctx, buf, body, ex);
    }
}

/// The directory a request ending in `/` names, beneath the root: its path without the
/// `index.html` the resolver appended (`""` for the root, else ending in `/`).
fn listed_directory(req: &Request) -> Option<Vec<u8>> {
    let target = target::resolve(&req.target).ok()?;
    target.file.strip_suffix(b"index.html").map(<[u8]>::to_vec)
}
