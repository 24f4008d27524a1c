//! Command-line flags (clap) and their validation into a `Config` the workers share.
//!
//! Everything a user can get wrong on the command line is caught here or in `server::run`,
//! before any worker starts, and reported as one line.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::ops::log::Level;
use crate::server::placement::Placement;
use crate::tls::certs::PairPaths;

#[derive(Parser, Debug)]
#[command(
    name = "ringhttpd",
    version,
    about = "A static-file HTTP/1.1 server for Linux, driven by io_uring."
)]
pub struct Args {
    /// Address to listen on (IPv4 or IPv6).
    #[arg(short = 'a', long, default_value = "0.0.0.0", value_parser = parse_ip)]
    pub address: IpAddr,

    /// TCP port to listen on; 0 picks a free one (printed at start-up).
    #[arg(short = 'p', long, default_value_t = 8080)]
    pub port: u16,

    /// Directory whose files are served.
    #[arg(short = 'r', long = "document-root", alias = "document_root", default_value = ".")]
    pub document_root: PathBuf,

    /// Worker threads, each with its own ring and listening socket [default: online CPUs].
    #[arg(short = 'w', long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Seconds a client may take to send a complete request head.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_timeout: u64,

    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, default_value_t = 75, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub keepalive_timeout: u64,

    /// Seconds a client may go without accepting any response bytes.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub send_timeout: u64,

    /// Largest request head accepted, in bytes (414/431 beyond).
    #[arg(long, default_value_t = 8192, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub max_header_size: u64,

    /// Bytes of a file body a worker sends to one connection before it serves its others
    /// (as nginx's `sendfile_max_chunk`). Smaller turns cost less CPU per byte where the
    /// workers have cores of their own; larger ones where they share cores with other work
    /// (README, architecture).
    #[arg(long, default_value_t = 2 * 1024 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(65_536..=1_073_741_824))]
    pub sendfile_max_chunk: u64,

    /// Open connections per worker; beyond it the worker stops accepting until one closes.
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// Seconds a graceful stop waits for in-flight responses before closing them.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub shutdown_timeout: u64,

    /// Access log in Combined Log Format ("-" for stdout); reopened on SIGHUP/SIGUSR1.
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<PathBuf>,

    /// Error log verbosity on stderr.
    #[arg(long, default_value = "info", value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: Level,

    /// Value of a Cache-Control header added to 200, 206 and 304 responses.
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// URL path served (status 200) for GET and HEAD requests whose path names no file and no
    /// directory with an index, as nginx's `try_files $uri $uri/ PATH` (single-page apps).
    #[arg(long, value_name = "PATH", value_parser = parse_url_path)]
    pub fallback: Option<UrlPath>,

    /// Body of the error response with status CODE (4xx or 5xx) taken from the file at URL path
    /// PATH, as nginx's `error_page CODE PATH`; repeatable.
    #[arg(long = "error-page", value_name = "CODE=PATH", value_parser = parse_error_page)]
    pub error_pages: Vec<(u16, UrlPath)>,

    /// Whether paths with a segment starting with "." are served ("allow") or answered 404
    /// ("deny"); /.well-known/ is always served.
    #[arg(long, value_enum, default_value_t = Dotfiles::Deny)]
    pub dotfiles: Dotfiles,

    /// Answer a directory without index.html with a generated listing of its entries.
    #[arg(long)]
    pub autoindex: bool,

    /// Serve Prometheus metrics on GET /metrics at this ADDR:PORT (a listener of its own, never
    /// the public port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Check the configuration (flags, document root, access log, error pages, fallback,
    /// io_uring, addresses) without serving; print each problem or "configuration ok".
    #[arg(short = 't', long)]
    pub check: bool,

    /// Pin worker i to allowed CPU i mod n, even when the workers cover every CPU [default:
    /// pin only when there are fewer workers than CPUs the process may use].
    #[arg(long, conflicts_with = "no_pin")]
    pub pin: bool,

    /// Never pin workers; let the scheduler place them (better when the same cores also run
    /// other busy processes, such as a load generator).
    #[arg(long)]
    pub no_pin: bool,

    /// PEM certificate chain for HTTPS; repeatable, each with its --tls-key (the first pair is
    /// the default, the others are chosen by SNI against their subjectAltName names).
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Vec<PathBuf>,

    /// PEM private key (ECDSA, RSA or Ed25519) of the --tls-cert given in the same position.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Vec<PathBuf>,

    /// TCP port of the HTTPS listener (on --address); 0 picks a free one.
    #[arg(long, value_name = "PORT")]
    pub tls_port: Option<u16>,

    /// Serve HTTPS only: no plain HTTP listener (-p is not used).
    #[arg(long)]
    pub https_only: bool,

    /// Answer GET and HEAD on the plain listener with a 308 to the same URL over HTTPS
    /// (except /.well-known/acme-challenge/, still served).
    #[arg(long)]
    pub redirect_https: bool,

    /// Add `Strict-Transport-Security: max-age=SECS` to HTTPS responses.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
    pub hsts: Option<u64>,

    /// Kernel TLS: `auto` hands each connection's records to the kernel after the handshake
    /// where the kernel can take them (else rustls seals them); `off` always uses rustls.
    #[arg(long, value_enum, default_value_t = Ktls::Auto)]
    pub ktls: Ktls,
}

/// What `--ktls` allows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ktls {
    Auto,
    Off,
}

/// HTTPS settings, present when certificates were given.
#[derive(Debug, Clone)]
pub struct Https {
    pub pairs: Vec<PairPaths>,
    /// Where the HTTPS listener binds.
    pub addr: SocketAddr,
    /// No plain listener: the public listener is the HTTPS one.
    pub only: bool,
    pub redirect: bool,
    pub hsts: Option<u64>,
    pub ktls: bool,
}

impl Https {
    fn from_args(args: &Args) -> Result<Option<Https>, String> {
        let tls_flag_without_certs = if args.tls_port.is_some() {
            Some("--tls-port")
        } else if args.https_only {
            Some("--https-only")
        } else if args.redirect_https {
            Some("--redirect-https")
        } else if args.hsts.is_some() {
            Some("--hsts")
        } else {
            None
        };
        if args.tls_cert.is_empty() && args.tls_key.is_empty() {
            return match tls_flag_without_certs {
                Some(flag) => Err(format!("{flag} needs --tls-cert and --tls-key")),
                None => Ok(None),
            };
        }
        if args.tls_cert.len() != args.tls_key.len() {
            return Err(format!(
                "--tls-cert and --tls-key come in pairs ({} certificates, {} keys given)",
                args.tls_cert.len(),
                args.tls_key.len()
            ));
        }
        let Some(port) = args.tls_port else {
            return Err("--tls-cert needs --tls-port (the HTTPS listener's port)".into());
        };
        if args.https_only && args.redirect_https {
            return Err("--redirect-https needs the plain listener that --https-only removes".into());
        }
        let pairs = args
            .tls_cert
            .iter()
            .zip(&args.tls_key)
            .map(|(cert, key)| PairPaths { cert: cert.clone(), key: key.clone() })
            .collect();
        Ok(Some(Https {
            pairs,
            addr: SocketAddr::new(args.address, port),
            only: args.https_only,
            redirect: args.redirect_https,
            hsts: args.hsts,
            ktls: args.ktls == Ktls::Auto,
        }))
    }
}

/// What `--dotfiles` does with paths that have a segment starting with ".".
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dotfiles {
    Allow,
    Deny,
}

/// A URL path given on the command line, resolved to the file beneath the root it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPath {
    /// As given, for messages.
    pub text: String,
    /// The relative path opened beneath the root.
    pub file: Vec<u8>,
    /// It ends in `/`, so `file` is that directory's index.
    pub is_index: bool,
}

fn parse_url_path(s: &str) -> Result<UrlPath, String> {
    if !s.starts_with('/') || s.contains(['?', '#']) {
        return Err(format!("'{s}' is not a URL path (it must start with / and have no query)"));
    }
    let target =
        crate::http::target::resolve(s).map_err(|_| format!("'{s}' is not a valid path beneath the root"))?;
    Ok(UrlPath { text: s.to_owned(), file: target.file.into_owned(), is_index: target.is_index })
}

fn parse_error_page(s: &str) -> Result<(u16, UrlPath), String> {
    let (code, path) = s.split_once('=').ok_or_else(|| format!("'{s}' is not CODE=PATH"))?;
    let code: u16 = code.trim().parse().map_err(|_| format!("'{code}' is not a status code"))?;
    if !(400..=599).contains(&code) {
        return Err(format!("{code} is not an error status (only 4xx and 5xx have error pages)"));
    }
    Ok((code, parse_url_path(path.trim())?))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("'{s}' is not one of error, warn, info, debug"))
}

/// Validated settings shared (read-only) by every worker.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub document_root: PathBuf,
    pub workers: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
    pub max_header_size: usize,
    /// Bytes of a file body sent to one connection in one turn (`--sendfile-max-chunk`).
    pub sendfile_max_chunk: u64,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    pub access_log: Option<PathBuf>,
    pub log_level: Level,
    pub cache_control: Option<String>,
    pub placement: Placement,
    pub fallback: Option<UrlPath>,
    pub error_pages: Vec<(u16, UrlPath)>,
    pub hide_dotfiles: bool,
    pub autoindex: bool,
    pub metrics: Option<SocketAddr>,
    /// `--check`: validate everything, serve nothing.
    pub check: bool,
    pub https: Option<Https>,
}

impl Config {
    /// Where the public listener binds: the HTTPS address with `--https-only`.
    pub fn public_addr(&self) -> SocketAddr {
        match &self.https {
            Some(https) if https.only => https.addr,
            _ => self.addr,
        }
    }

    /// The error page configured for `code`, if any (the last one given wins).
    pub fn error_page(&self, code: u16) -> Option<&UrlPath> {
        self.error_pages.iter().rev().find(|(c, _)| *c == code).map(|(_, page)| page)
    }

    pub fn from_args(args: Args) -> Result<Config, String> {
        if let Some(cc) = &args.cache_control {
            if cc.bytes().any(|b| b.is_ascii_control()) {
                return Err("--cache-control must not contain control characters".into());
            }
        }
        let https = Https::from_args(&args)?;
        Ok(Config {
            https,
            addr: SocketAddr::new(args.address, args.port),
            document_root: args.document_root,
            workers: args.workers.map(usize::from).unwrap_or_else(crate::kernel::sys::online_cpus),
            header_timeout: Duration::from_secs(args.header_timeout),
            keepalive_timeout: Duration::from_secs(args.keepalive_timeout),
            send_timeout: Duration::from_secs(args.send_timeout),
            max_header_size: args.max_header_size as usize,
            sendfile_max_chunk: args.sendfile_max_chunk,
            max_connections: args.max_connections as usize,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            access_log: args.access_log,
            log_level: args.log_level,
            cache_control: args.cache_control,
            placement: match (args.pin, args.no_pin) {
                (true, _) => Placement::Pin,
                (_, true) => Placement::Unpinned,
                _ => Placement::Auto,
            },
            fallback: args.fallback,
            error_pages: args.error_pages,
            hide_dotfiles: args.dotfiles == Dotfiles::Deny,
            autoindex: args.autoindex,
            metrics: args.metrics,
            check: args.check,
        })
    }
}
