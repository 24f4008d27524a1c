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
use super::{Conn, Phase, Recv};
use crate::files::cache::Entry;
use crate::files::listing::{Listing, Refused, Ticket};
use crate::http::Status;
use crate::http::request::Request;
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
    /// Looks up `dir` (`""` for the root, else ending in `/`), the directory a request ending
    /// in `/` names, before anything is queued.
    pub(super) fn check_listed_directory(&mut self, ctx: &mut Ctx, req: Box<Request>, dir: Vec<u8>) {
        let path = match dir.strip_suffix(b"/") {
            Some(path) => path.to_vec(),
            None => b".".to_vec(),
        };
        self.look_up(ctx, req, path, false, Purpose::ListedDirectory);
    }

    /// What the directory to list (looked up as `path`) turned out to be: only a directory is
    /// listed.
    pub(super) fn respond_listed_directory(
        &mut self,
        ctx: &mut Ctx,
        req: Box<Request>,
        path: &[u8],
        entry: Entry,
    ) {
        match entry {
            Entry::Directory => {
                let dir = if path == b"." { Vec::new() } else { [path, b"/"].concat() };
                self.start_listing(ctx, req, dir)
            }
            Entry::File(_) | Entry::Absent(Status::NotFound) => self.not_found(ctx, req, Purpose::Request),
            Entry::Absent(status) => self.respond_error(ctx, Some(req), status, true),
        }
    }

    /// Answers with the page of `dir` (`""` for the root, else ending in `/`) if one is fresh,
    /// or queues its listing and waits for it, watching for the client's close meanwhile.
    pub(super) fn start_listing(&mut self, ctx: &mut Ctx, req: Box<Request>, dir: Vec<u8>) {
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
        self.respond_in_memory(ctx, req, b"text/html; charset=utf-8", &[], page);
    }
}
