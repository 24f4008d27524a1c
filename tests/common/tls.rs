//! The HTTPS side of the harness: certificates generated with the `openssl` command, written into
//! a fixture for the server, and the TLS clients the tests drive: `curl`, `openssl s_client` and
//! a small Python `ssl` client that keeps one connection open for as long as a test needs it.
//!
//! The certificates form a real chain: a root CA (the only thing the clients trust), an
//! intermediate CA, and leaves that the intermediate signed. The server is given each leaf
//! followed by the intermediate, so a handshake verifies only if the server sends the whole
//! chain. They are generated once per test binary and kept in memory; each test writes the ones
//! it needs into its own fixture, so that nothing outlives the test.
//!
//! Every external program runs with a bound on its run time, and a missing program fails the
//! test with a message naming it: nothing is skipped because a tool is absent.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::fixture::Fixture;
use super::http::{IO_TIMEOUT, Parsed, Response, parse_response, parse_responses};

/// Bound on one run of a client program (curl, openssl, python3).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The subject CN and SAN of each leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// ECDSA P-256, CN `localhost`, SAN `DNS:localhost, IP:127.0.0.1`, key in PKCS#8.
    Localhost,
    /// ECDSA P-256, CN `other.test`, SAN `DNS:other.test`, key in SEC1 (`EC PRIVATE KEY`).
    Other,
    /// RSA 2048, CN `rsa.localhost`, SAN `DNS:localhost, IP:127.0.0.1`, key in PKCS#1.
    Rsa,
    /// ECDSA P-256, CN `reloaded.localhost`, SAN `DNS:localhost, IP:127.0.0.1`: the same names
    /// as [`Leaf::Localhost`] under another subject and key, to tell a reload happened.
    Reloaded,
}

impl Leaf {
    pub const ALL: [Leaf; 4] = [Leaf::Localhost, Leaf::Other, Leaf::Rsa, Leaf::Reloaded];

    /// The certificate's subject common name.
    pub fn cn(self) -> &'static str {
        match self {
            Leaf::Localhost => "localhost",
            Leaf::Other => "other.test",
            Leaf::Rsa => "rsa.localhost",
            Leaf::Reloaded => "reloaded.localhost",
        }
    }

    /// The base name of its files.
    pub fn name(self) -> &'static str {
        match self {
            Leaf::Localhost => "localhost",
            Leaf::Other => "other",
            Leaf::Rsa => "rsa",
            Leaf::Reloaded => "reloaded",
        }
    }

    fn san(self) -> &'static str {
        match self {
            Leaf::Other => "DNS:other.test",
            _ => "DNS:localhost,IP:127.0.0.1",
        }
    }
}

/// One leaf: its chain (leaf, then intermediate) and its private key, both PEM.
pub struct Pair {
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
}

/// Everything generated once per test binary.
pub struct Certs {
    /// The root CA certificate the clients trust.
    pub root: Vec<u8>,
    pairs: Vec<(Leaf, Pair)>,
}

impl Certs {
    pub fn pair(&self, leaf: Leaf) -> &Pair {
        &self.pairs.iter().find(|(l, _)| *l == leaf).expect("every leaf is generated").1
    }
}

/// The generated certificates (on first use: about a second, mostly the RSA key).
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(generate)
}

/// Generates the CA chain and the leaves in a scratch directory, reads them, removes it.
fn generate() -> Certs {
    let dir = std::env::temp_dir().join(format!("ringhttpd-tls-gen-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut script = String::from(GENERATE_CA);
    for (serial, leaf) in Leaf::ALL.iter().enumerate() {
        let key = match leaf {
            Leaf::Other => "openssl ecparam -name prime256v1 -genkey -noout -out \"$1.key\"",
            Leaf::Rsa => "openssl genrsa -traditional -out \"$1.key\" 2048",
            _ => "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1.key\"",
        };
        let usage = if *leaf == Leaf::Rsa { "digitalSignature,keyEncipherment" } else { "digitalSignature" };
        script.push_str(&format!(
            "set -- {name}\n{key}\nleaf {name} '{cn}' '{san}' {usage} {serial}\n",
            name = leaf.name(),
            cn = leaf.cn(),
            san = leaf.san(),
            serial = 100 + serial
        ));
    }
    let mut command = Command::new("sh");
    command.arg("-c").arg(&script).current_dir(&dir);
    let output = run_program(&mut command, b"", CLIENT_TIMEOUT, "openssl (through sh)");
    let read = |name: &str| fs::read(dir.join(name)).unwrap_or_else(|e| panic!("generated {name}: {e}"));
    assert!(
        output.status.success(),
        "generating the test certificates failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let certs = Certs {
        root: read("root.pem"),
        pairs: Leaf::ALL
            .iter()
            .map(|&leaf| {
                let pair = Pair {
                    chain: read(&format!("{}.chain.pem", leaf.name())),
                    key: read(&format!("{}.key", leaf.name())),
                };
                (leaf, pair)
            })
            .collect(),
    };
    let _ = fs::remove_dir_all(&dir);
    certs
}

/// The root and intermediate CAs, and `leaf NAME CN SAN KEYUSAGE SERIAL`, which signs
/// `NAME.key` into `NAME.crt` and writes `NAME.chain.pem` (leaf, then intermediate).
const GENERATE_CA: &str = r#"set -eu
command -v openssl >/dev/null || { echo "openssl: command not found" >&2; exit 127; }
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out root.key
openssl req -x509 -new -key root.key -sha256 -days 3 -subj "/CN=ringhttpd test root CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out root.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out inter.key
openssl req -new -key inter.key -subj "/CN=ringhttpd test intermediate CA" -out inter.csr
printf '%s\n' basicConstraints=critical,CA:TRUE,pathlen:0 keyUsage=critical,keyCertSign,cRLSign \
    subjectKeyIdentifier=hash authorityKeyIdentifier=keyid >inter.ext
openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -set_serial 2 -days 3 -sha256 \
    -extfile inter.ext -out inter.pem
leaf() {
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' basicConstraints=critical,CA:FALSE "keyUsage=critical,$4" \
        extendedKeyUsage=serverAuth "subjectAltName=$3" subjectKeyIdentifier=hash \
        authorityKeyIdentifier=keyid >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA inter.pem -CAkey inter.key -set_serial "$5" -days 3 \
        -sha256 -extfile "$1.ext" -out "$1.crt"
    cat "$1.crt" inter.pem >"$1.chain.pem"
}
"#;

/// The certificate files of one server, under `<fixture base>/tls/`.
pub struct TlsFiles {
    /// The root CA the clients trust.
    pub ca: PathBuf,
    /// (chain, key) paths, in the order given to the server (the first is the default).
    pub pairs: Vec<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Writes the root CA and the files of `leaves` into `fixture`.
    pub fn install(fixture: &Fixture, leaves: &[Leaf]) -> TlsFiles {
        let dir = fixture.base().join("tls");
        fs::create_dir_all(&dir).expect("creating the tls directory");
        let ca = dir.join("ca.pem");
        fs::write(&ca, &certs().root).expect("writing ca.pem");
        let pairs = leaves
            .iter()
            .map(|&leaf| {
                let (chain, key) =
                    (dir.join(format!("{}.crt", leaf.name())), dir.join(format!("{}.key", leaf.name())));
                write_pair(&chain, &key, leaf, leaf);
                (chain, key)
            })
            .collect();
        TlsFiles { ca, pairs }
    }

    /// `--tls-cert CHAIN --tls-key KEY` for each pair, in order.
    pub fn args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for (chain, key) in &self.pairs {
            args.extend(["--tls-cert".into(), chain.clone().into_os_string()]);
            args.extend(["--tls-key".into(), key.clone().into_os_string()]);
        }
        args
    }

    /// The default pair's (chain, key) paths.
    pub fn default_pair(&self) -> (&Path, &Path) {
        let (chain, key) = &self.pairs[0];
        (chain, key)
    }
}

/// Replaces the files at `chain` and `key` with the chain of `chain_of` and the key of `key_of`
/// (different leaves make a mismatched pair). Each file is renamed into place whole.
pub fn write_pair(chain: &Path, key: &Path, chain_of: Leaf, key_of: Leaf) {
    replace_file(chain, &certs().pair(chain_of).chain);
    replace_file(key, &certs().pair(key_of).key);
}

/// Writes `content` beside `path` and renames it over `path`.
pub fn replace_file(path: &Path, content: &[u8]) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    fs::write(&tmp, content).unwrap_or_else(|e| panic!("writing {tmp:?}: {e}"));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming onto {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// Running client programs
// ---------------------------------------------------------------------------------------------

/// Runs `command` with `input` on its stdin and its output captured; kills it and panics if it
/// is still running after `limit`, and panics with a clear message if the program is missing.
pub fn run_program(command: &mut Command, input: &[u8], limit: Duration, what: &str) -> Output {
    let child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = child.unwrap_or_else(|e| missing(what, &e));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // The program may exit without reading all of it (a failed handshake): the error is moot.
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("waiting for the client program"),
        Err(_) => {
            kill(pid);
            let output = rx.recv_timeout(Duration::from_secs(5)).ok().and_then(Result::ok);
            let shown = |bytes: &[u8]| String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
            panic!(
                "{what} still running after {limit:?} ({:?}); stdout: {:?}; stderr: {:?}",
                // Scripts (arguments of several lines) left out.
                command
                    .get_args()
                    .map(|a| a.to_string_lossy())
                    .map(|a| if a.contains('\n') { "<script>".into() } else { a })
                    .collect::<Vec<_>>(),
                output.as_ref().map(|o| shown(&o.stdout)),
                output.as_ref().map(|o| shown(&o.stderr))
            );
        }
    }
}

fn missing(what: &str, e: &std::io::Error) -> ! {
    panic!(
        "cannot run {what} ({e}): the HTTPS tests need curl, openssl and python3 on PATH \
         (scripts/run_tests.sh installs them)"
    )
}

fn kill(pid: u32) {
    // SAFETY: a plain syscall with no memory arguments. The pid is a child of this process that
    // the waiting thread has not reaped yet, so it names no unrelated process.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

/// What one curl run returned: the raw responses (`-i`: heads as received, then bodies) and,
/// per transfer, the `-w` report.
#[derive(Debug)]
pub struct CurlRun {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Per transfer: the connections curl opened for it (0: it reused one) and the number of
    /// certificates the server sent.
    pub transfers: Vec<Transfer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub http_code: u16,
    pub num_connects: u32,
    pub num_certs: u32,
}

impl CurlRun {
    /// Parses stdout as back-to-back responses; `heads[i]` says transfer `i` was a HEAD.
    pub fn responses(&self, heads: &[bool]) -> Vec<Response> {
        assert_eq!(self.code, Some(0), "curl failed: {self:#?}");
        parse_responses(&self.stdout, heads)
    }
}

/// Runs curl over HTTPS against `https`, verifying the server with `ca` under the name
/// `localhost` (resolved to the server's address), for each of `paths` in turn on as few
/// connections as curl manages. `extra` goes before the URLs (headers, `-I`, `--tlsv1.3`).
pub fn curl(https: SocketAddr, ca: &Path, extra: &[&str], paths: &[&str]) -> CurlRun {
    curl_as(https, ca, "localhost", extra, paths)
}

/// [`curl`] under the host name `host`.
pub fn curl_as(https: SocketAddr, ca: &Path, host: &str, extra: &[&str], paths: &[&str]) -> CurlRun {
    let port = https.port();
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--http1.1", "--max-time", "20", "-i", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:{}", https.ip()))
        .args(["-w", "%{stderr}transfer %{http_code} %{num_connects} %{num_certs}\\n"])
        .args(extra)
        .args(paths.iter().map(|p| format!("https://{host}:{port}{p}")));
    let output = run_program(&mut command, b"", CLIENT_TIMEOUT, "curl");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let transfers = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("transfer "))
        .map(|l| {
            let n: Vec<u32> =
                l.split(' ').map(|w| w.parse().expect("a number in curl's -w report")).collect();
            Transfer { http_code: n[0] as u16, num_connects: n[1], num_certs: n[2] }
        })
        .collect();
    CurlRun { code: output.status.code(), stdout: output.stdout, stderr, transfers }
}

/// One request over HTTPS with curl: `GET` (or `HEAD` with `head`) of `path` with `headers`.
pub fn curl_one(https: SocketAddr, ca: &Path, path: &str, head: bool, headers: &[(&str, &str)]) -> Response {
    curl_request(https, ca, &[], path, head, headers)
}

/// [`curl_one`] with more curl flags (`--tls-max 1.2`).
pub fn curl_request(
    https: SocketAddr,
    ca: &Path,
    flags: &[&str],
    path: &str,
    head: bool,
    headers: &[(&str, &str)],
) -> Response {
    let mut extra: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    extra.extend(headers.iter().map(|(n, v)| format!("-H{n}: {v}")));
    if head {
        extra.push("-I".into());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let run = curl(https, ca, &extra, &[path]);
    let mut responses = run.responses(&[head]);
    assert_eq!(responses.len(), 1, "one response to {path}: {run:#?}");
    responses.remove(0)
}

/// `GET path` over HTTPS with curl.
pub fn curl_get(https: SocketAddr, ca: &Path, path: &str) -> Response {
    curl_one(https, ca, path, false, &[])
}

// ---------------------------------------------------------------------------------------------
// openssl s_client
// ---------------------------------------------------------------------------------------------

/// How an `openssl s_client` run ended, stdout and stderr together (the handshake report, the
/// verification result and the server's answer are spread over both).
#[derive(Debug)]
pub struct SClient {
    pub code: Option<i32>,
    pub output: String,
}

impl SClient {
    /// The subject line of the server's certificate, as `subject=CN=localhost` (OpenSSL 3.0
    /// prints `CN = localhost`, 3.5 `CN=localhost`).
    pub fn subject(&self) -> String {
        let line = self
            .output
            .lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_else(|| panic!("no subject line in the s_client output:\n{}", self.output));
        compact_subject(line)
    }

    /// Whether a handshake completed (a cipher was agreed) with the chain verified against the
    /// test CA. (s_client reports `Verify return code: 0 (ok)` even when the server refused the
    /// handshake before sending any certificate.)
    pub fn verified(&self) -> bool {
        self.output.contains("Verify return code: 0 (ok)")
            && !self.output.contains("Cipher is (NONE)")
            && self.output.lines().any(|l| l.starts_with("subject="))
    }

    /// Asserts a completed, verified handshake and a `200` answer to the request it sent.
    pub fn assert_served(&self, why: &str) {
        assert!(self.verified(), "{why}: no verified handshake:\n{}", self.output);
        assert!(self.output.contains("HTTP/1.1 200 OK\r\n"), "{why}: no 200 answer:\n{}", self.output);
    }
}

/// Runs `openssl s_client` against `addr` trusting `ca`, with `extra` flags (`-tls1_3`,
/// `-servername`, `-sess_out`...). It sends a `GET /index.html` that closes the connection and
/// waits for the close, so TLS 1.3 session tickets sent after the handshake are received.
pub fn s_client(addr: SocketAddr, ca: &Path, extra: &[&str]) -> SClient {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(["-verify_return_error", "-ign_eof", "-nocommands"])
        .args(extra);
    let request = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let output = run_program(&mut command, request, CLIENT_TIMEOUT, "openssl s_client");
    SClient {
        code: output.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Python ssl: one connection held open, or the bytes of a ClientHello
// ---------------------------------------------------------------------------------------------

/// The client: `MODE PORT SERVERNAME CAFILE VERSION ALPN` (CAFILE `-`: the system's) where MODE
/// is `relay` (handshake, report it on stderr, then copy stdin to the connection and the
/// connection to stdout until the server closes), `hello` (write the bytes of a ClientHello to
/// stdout and exit), `dribble` (read all of stdin, then handshake and send it as one TLS
/// record per byte, every byte of ciphertext in a TCP segment of its own, and copy what
/// arrives to stdout until the server closes), `slow` (like `dribble`, but sending whole and
/// receiving through a 16 KiB receive buffer, 8 KiB at a time with a pause before each read)
/// or `burst=NxR` (N connections at once, each sending stdin, a keep-alive request, R times and
/// reading its 200; prints `ok COUNT` and up to five `error WHY` lines), VERSION is `any`,
/// `1.2` or `1.3`, and ALPN a comma-separated list or `-`.
const PY_CLIENT: &str = r#"
import os, selectors, socket, ssl, sys, time
mode, port, servername, cafile, version, alpn = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=None if cafile == "-" else cafile)
if version != "any":
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx.minimum_version = ctx.maximum_version = v
if alpn != "-":
    ctx.set_alpn_protocols(alpn.split(","))
if mode == "hello":
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=servername)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    sys.stdout.buffer.write(outgoing.read())
    sys.exit(0)
if mode.startswith("burst="):
    import threading
    request = sys.stdin.buffer.read()
    n, rounds = map(int, mode[6:].split("x"))
    ok, errors = [], []
    def one():
        try:
            raw = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
            tls = ctx.wrap_socket(raw, server_hostname=servername)
            for _ in range(rounds):
                tls.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + int(
                        data.split(b"Content-Length: ")[1].split(b"\r\n")[0]):
                    chunk = tls.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed mid-response after %r" % data[:200])
                    data += chunk
                if not data.startswith(b"HTTP/1.1 200 OK\r\n"):
                    raise ValueError("answer %r" % data[:200])
            ok.append(1)
        except Exception as e:
            errors.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("ok", len(ok))
    for e in errors[:5]:
        print("error", e)
    sys.exit(0)
if mode in ("dribble", "slow"):
    dribble = mode == "dribble"
    request = sys.stdin.buffer.read()
    sock = socket.socket()
    sock.settimeout(10)
    if not dribble:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=servername)
    def flush():
        data = outgoing.read()
        if not dribble:
            sock.sendall(data)
            return
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(0.0002)
    def receive():
        if dribble:
            data = sock.recv(65536)
        else:
            time.sleep(0.0005)
            data = sock.recv(8192)
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
        return bool(data)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            if not receive():
                sys.exit("closed during the handshake")
    flush()
    pieces = [request[i:i + 1] for i in range(len(request))] if dribble else [request]
    for piece in pieces:
        tls.write(piece)
        flush()
    out = sys.stdout.buffer
    while True:
        try:
            data = tls.read(65536)
            if not data:
                break
            out.write(data)
        except ssl.SSLWantReadError:
            if not receive():
                break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    out.flush()
    sys.exit(0)
tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=10),
                      server_hostname=servername)
subject = dict(rdn[0] for rdn in tls.getpeercert()["subject"]).get("commonName", "-")
report = {"version": tls.version(), "alpn": tls.selected_alpn_protocol() or "-",
          "cipher": tls.cipher()[0], "subject": subject}
sys.stderr.write("handshake " + " ".join(k + "=" + v for k, v in report.items()) + "\n")
sys.stderr.flush()
out = sys.stdout.buffer
def closed(why):
    out.flush()
    sys.stderr.write("closed " + why + "\n")
    sys.stderr.flush()
    os._exit(0)
tls.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(tls, selectors.EVENT_READ)
sel.register(0, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fd == 0:
            data = os.read(0, 65536)
            if not data:
                sel.unregister(0)
                continue
            tls.setblocking(True)
            tls.sendall(data)
            tls.setblocking(False)
            continue
        while True:
            try:
                data = tls.recv(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLEOFError, ConnectionResetError) as e:
                closed(type(e).__name__)
            if not data:
                closed("eof")
            out.write(data)
        out.flush()
"#;

/// What the Python client reported about its handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The negotiated ALPN protocol, `-` for none.
    pub alpn: String,
    pub cipher: String,
    /// The CN of the server certificate's subject.
    pub subject: String,
}

/// Options of a Python client connection.
#[derive(Debug, Clone, Copy)]
pub struct PyOptions<'a> {
    pub servername: &'a str,
    /// `any`, `1.2` or `1.3`.
    pub version: &'a str,
    /// Comma-separated ALPN protocols, `-` for none.
    pub alpn: &'a str,
}

impl Default for PyOptions<'_> {
    fn default() -> Self {
        PyOptions { servername: "localhost", version: "any", alpn: "http/1.1" }
    }
}

/// One TLS connection, made by a Python `ssl` client that relays between its pipes and the
/// connection. Sends and reads like [`super::http::Client`]; every read is bounded by
/// [`IO_TIMEOUT`]. The client process is killed on Drop.
pub struct TlsConn {
    child: Child,
    stdin: Option<ChildStdin>,
    received: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    stderr: Arc<Mutex<String>>,
    pub handshake: Handshake,
}

impl TlsConn {
    /// Connects to `addr` with the default options and completes the handshake; panics if it
    /// fails.
    pub fn open(addr: SocketAddr, ca: &Path) -> TlsConn {
        TlsConn::open_with(addr, ca, PyOptions::default())
    }

    pub fn open_with(addr: SocketAddr, ca: &Path, options: PyOptions) -> TlsConn {
        let mut child = python(&["relay", &addr.port().to_string(), options.servername])
            .arg(ca)
            .args([options.version, options.alpn])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| missing("python3", &e));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (line_tx, lines) = mpsc::channel();
        let mut pipe = BufReader::new(child.stderr.take().expect("piped stderr"));
        let log = stderr.clone();
        thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                log.lock().unwrap_or_else(PoisonError::into_inner).push_str(&line);
                let _ = line_tx.send(std::mem::take(&mut line));
            }
        });
        let (tx, received) = mpsc::channel();
        let mut out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = out.read(&mut chunk) {
                if tx.send(chunk[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut conn =
            TlsConn { child, stdin, received, pending: Vec::new(), stderr, handshake: Handshake::default() };
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(report) = line.strip_prefix("handshake ") {
                        conn.handshake = parse_handshake(report);
                        return conn;
                    }
                }
                Err(_) => panic!("no TLS handshake with {addr} within {IO_TIMEOUT:?}:\n{}", conn.stderr()),
            }
        }
    }

    /// What the client wrote on stderr so far (the handshake report, errors, how it closed).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn send(&mut self, raw: &[u8]) {
        let stdin = self.stdin.as_mut().expect("sending after finish_sending");
        stdin.write_all(raw).and_then(|()| stdin.flush()).expect("writing to the TLS client");
    }

    /// Sends `raw` and reads its response.
    pub fn roundtrip(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read_response(super::http::is_head(raw))
    }

    /// Reads exactly one response; panics on timeout, early close or malformed bytes.
    pub fn read_response(&mut self, head: bool) -> Response {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match parse_response(&self.pending, head) {
                Ok(Parsed::Complete(response, used)) => {
                    self.pending.drain(..used);
                    return response;
                }
                Ok(Parsed::Partial) => {}
                Err(e) => panic!("bad response ({e}): {:?}", self.pending_text()),
            }
            match self.received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(bytes) => self.pending.extend_from_slice(&bytes),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no whole response within {IO_TIMEOUT:?}; have {:?}", self.pending_text())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "connection closed mid-response: {:?}; client: {}",
                        self.pending_text(),
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Stops sending (the connection stays open) and returns everything the server sends until
    /// it closes the connection; panics if it does not close within [`IO_TIMEOUT`].
    pub fn read_to_close(&mut self) -> Vec<u8> {
        self.stdin = None;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut out = std::mem::take(&mut self.pending);
        loop {
            match self.received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(RecvTimeoutError::Disconnected) => return out,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "server did not close within {IO_TIMEOUT:?}; received {:?}",
                    String::from_utf8_lossy(&out[..out.len().min(600)])
                ),
            }
        }
    }

    fn pending_text(&self) -> String {
        String::from_utf8_lossy(&self.pending[..self.pending.len().min(600)]).into_owned()
    }
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_handshake(report: &str) -> Handshake {
    let mut h = Handshake::default();
    for field in report.split_whitespace() {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        let slot = match key {
            "version" => &mut h.version,
            "alpn" => &mut h.alpn,
            "cipher" => &mut h.cipher,
            "subject" => &mut h.subject,
            _ => continue,
        };
        *slot = value.to_owned();
    }
    h
}

fn python(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command.arg("-c").arg(PY_CLIENT).args(args);
    command
}

/// Sends `raw` to `addr` with the Python client's `dribble` mode (one TLS record per byte of
/// `raw`, one TCP segment per byte of ciphertext, the handshake included) and returns what the
/// server sent until it closed the connection.
pub fn dribble_exchange(addr: SocketAddr, ca: &Path, version: &str, raw: &[u8]) -> Vec<u8> {
    python_exchange("dribble", addr, ca, version, raw)
}

/// Sends `raw` to `addr` with the Python client's `slow` mode (a small receive buffer read
/// slowly) and returns what the server sent until it closed the connection.
pub fn slow_exchange(addr: SocketAddr, ca: &Path, version: &str, raw: &[u8]) -> Vec<u8> {
    python_exchange("slow", addr, ca, version, raw)
}

fn python_exchange(mode: &str, addr: SocketAddr, ca: &Path, version: &str, raw: &[u8]) -> Vec<u8> {
    let mut command = python(&[mode, &addr.port().to_string(), "localhost"]);
    command.arg(ca).args([version, "http/1.1"]);
    let output = run_program(&mut command, raw, CLIENT_TIMEOUT, "python3");
    assert!(
        output.status.success(),
        "the {mode} client failed: {}; received {:?}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout[..output.stdout.len().min(600)])
    );
    output.stdout
}

/// Opens `connections` TLS connections to `addr` at once, each sending `raw` (a keep-alive GET)
/// `rounds` times and reading a 200 each time; returns how many connections got all their
/// answers and the errors of the others (up to five).
pub fn burst(
    addr: SocketAddr,
    ca: &Path,
    connections: usize,
    rounds: usize,
    raw: &[u8],
) -> (usize, Vec<String>) {
    let mode = format!("burst={connections}x{rounds}");
    let mut command = python(&[&mode, &addr.port().to_string(), "localhost"]);
    command.arg(ca).args(["any", "http/1.1"]);
    let output = run_program(&mut command, raw, CLIENT_TIMEOUT, "python3");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "the burst client failed: {}", String::from_utf8_lossy(&output.stderr));
    let ok =
        stdout.lines().find_map(|l| l.strip_prefix("ok ")).expect("an ok line").parse().expect("a count");
    let errors = stdout.lines().filter_map(|l| l.strip_prefix("error ")).map(str::to_owned).collect();
    (ok, errors)
}

/// The bytes of the ClientHello a Python `ssl` client sends for `servername` (TLS 1.2 and 1.3
/// offered, ALPN `http/1.1`): a well-formed start of a handshake.
pub fn client_hello(servername: &str) -> Vec<u8> {
    let mut command = python(&["hello", "0", servername, "-", "any", "http/1.1"]);
    let output = run_program(&mut command, b"", CLIENT_TIMEOUT, "python3");
    assert!(output.status.success(), "building a ClientHello: {}", String::from_utf8_lossy(&output.stderr));
    let hello = output.stdout;
    assert!(hello.len() > 100 && hello[0] == 0x16, "not a TLS handshake record: {hello:02x?}");
    hello
}

// ---------------------------------------------------------------------------------------------
// Raw sockets on the TLS port
// ---------------------------------------------------------------------------------------------

/// Reads until the peer closes (EOF or reset) and returns what arrived and how long after
/// `since` the close was seen. Panics if the connection is still open after `limit` from now.
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration, since: Instant) -> (Vec<u8>, Duration) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {limit:?}; received {:?}",
            String::from_utf8_lossy(&out[..out.len().min(600)])
        );
        stream.set_read_timeout(Some(left)).expect("set_read_timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return (out, since.elapsed()),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                return (out, since.elapsed());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// Whether `bytes` are TLS records only (content types 20 to 24, version 3.x, whole lengths):
/// what a server may send to refuse a handshake (an alert).
pub fn is_tls_records(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 5 || !(20..=24).contains(&rest[0]) || rest[1] != 3 {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if rest.len() < 5 + len {
            return false;
        }
        rest = &rest[5 + len..];
    }
    true
}

/// An OpenSSL subject line without the spaces some versions put around `=`.
pub fn compact_subject(line: &str) -> String {
    line.trim().replace(" = ", "=")
}
