#!/usr/bin/env python3
"""Live-socket fuzzer for ringhttpd (issue 15, item 2).

Starts the release binary on 127.0.0.1 (port 0, 2 workers) over a generated document root, then
for --seconds opens connections that send mutated, spliced and pipelined requests (split at
random byte boundaries with small pauses, half-closed, reset mid-response, ...) and checks every
response the server sends:

  * the server process never dies (and logs no `fatal`/`panic` line);
  * every response is HTTP/1.1: a status line, well-formed header lines, a blank line;
  * Content-Length is present (except 304) and the body that follows has exactly that length
    before the server closes (HEAD: no body; a response cut by our own reset is exempt);
  * no more responses than requests sent on the connection (no response without a request),
    nothing after a `Connection: close` response, no keep-alive after a request with a body;
  * no byte of a canary file from outside the root (the root's parent, a sibling directory,
    /etc/passwd, all reachable only through symlinks and `..` in the root) in any response, and
    no byte of the root's hidden files (a dotfile, a file nobody may read);
  * requests with a known answer embedded among the junk (GET, HEAD, one range, several ranges
    as multipart/byteranges, a precompressed variant of a generated file) get exactly the right
    status and body; now and then a flood of thousands of them is pipelined (past the server's
    64 KiB read-ahead) and every one is checked;
  * a connection whose requests are all sent and complete is answered or closed (no hang), a
    half-closed one is answered and then closed, a stalled head gets its 408;
  * after the run the server's descriptor count and RSS have not grown beyond the values after
    a warm-up (+16 fds, +20% RSS), it still serves a plain GET, and SIGTERM stops it with 0.

With --tls the server listens for HTTPS only (--https-only, a certificate generated for the run
with openssl) and every connection above runs inside TLS (Python's `ssl`, TLS 1.2 or 1.3, the
record layer over the same non-blocking socket and split points), with the same checks; a
share of the connections instead sends hostile handshake bytes (garbage, plain HTTP, a
ClientHello cut short, corrupted, or followed by silence), which the server must close, within
the header timeout for silence, without dying. A TLS alert or undecryptable record from the
server on a connection we did not tamper with is a finding.

In both modes, once the run is over, the server's metrics must show no connection left open
(`ringhttpd_connections_open`, the scrape's own aside).

Everything a connection sends (bytes, split points, pauses, ending) is generated from
--seed and the connection's iteration number alone, so any finding is replayed with
`fuzz_live.py --seed S --iteration I` (one connection, verbose).

Exit status: 0 no finding, 1 at least one finding, 2 usage or start-up error.
Standard library only.
"""

import argparse
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pylib import httpio, procstat  # noqa: E402
from pylib.metrics import parse as parse_metrics  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(REPO, "target", "release", "ringhttpd")

FD_TOLERANCE = 16
RSS_TOLERANCE = 0.20
QUIET_S = 0.03          # after every request is answered, how long to wait for stray bytes
HANG_S = 5.0            # silence that counts as a hang while answers are still owed
CONN_DEADLINE_S = 20.0  # hard limit on one connection
TRUNC = 300             # bytes of a request/response shown in a finding

TCHAR = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Statuses a request that could not be parsed gets (then there is no method, so even a HEAD
# gets the page's body).
PARSE_ERROR_STATUSES = {400, 408, 414, 431, 501, 505}


# ---------------------------------------------------------------------------------------------
# The document root and its surroundings
# ---------------------------------------------------------------------------------------------

class Env:
    """The generated tree: what is served, and what must never be."""

    def __init__(self, seed: int, plant_inside: bool):
        rng = random.Random(f"env-{seed}")
        self.tmp = tempfile.mkdtemp(prefix="ringhttpd-fuzz-")
        self.root = os.path.join(self.tmp, "www")
        sibling = os.path.join(self.tmp, "www-secret")
        os.makedirs(self.root)
        os.makedirs(sibling)
        # Random tokens (os.urandom: fresh each run, the generated traffic never contains them).
        tok = lambda kind: f"{kind}-{os.urandom(16).hex()}".encode()
        self.canaries: List[Tuple[bytes, str]] = []   # (token, where it lives)
        parent_canary, sibling_canary = tok("CANARY"), tok("CANARY")
        self._canary_file(os.path.join(self.tmp, "canary-parent.txt"), parent_canary, "root's parent")
        self._canary_file(os.path.join(sibling, "canary.txt"), sibling_canary, "sibling directory")
        self._canary_file(os.path.join(self.tmp, "www.txt"), tok("CANARY"), "root's parent (prefix name)")
        # Inside the root but never to be served: a dotfile (--dotfiles deny) and a file nobody
        # may read (403 even when the server runs as root).
        hidden = tok("HIDDEN")
        self._canary_file(os.path.join(self.root, ".env"), hidden, "dotfile inside the root")
        os.makedirs(os.path.join(self.root, ".git"))
        self._canary_file(os.path.join(self.root, ".git", "config"), hidden, "dot-directory inside the root")
        noperm = tok("NOPERM")
        self._canary_file(os.path.join(self.root, "noperm.txt"), noperm, "mode-000 file inside the root")
        os.chmod(os.path.join(self.root, "noperm.txt"), 0)
        try:
            with open("/etc/passwd", "rb") as f:
                first = f.readline().strip()
            if len(first) >= 12:
                self.canaries.append((first, "/etc/passwd"))
        except OSError:
            pass
        self.planted = None
        if plant_inside:
            planted = tok("CANARY")
            # Debug fault: a canary file the server legitimately serves, so the check must fire.
            self._canary_file(os.path.join(self.root, "planted.txt"), planted, "PLANTED inside the root")
            self.planted = "/planted.txt"

        # Served files; contents drawn from an alphabet without capitals, so no canary marker
        # can occur in them by chance.
        alpha = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"
        def content(n: int) -> bytes:
            return bytes(rng.choice(alpha) for _ in range(n)) if n < 50000 else \
                (bytes(rng.choice(alpha) for _ in range(4096)) * (n // 4096 + 1))[:n]
        files = {
            "index.html": b"<html><body>fuzz index " + content(40) + b"</body></html>\n",
            "k1.txt": content(rng.randrange(1, 200)),
            "empty.txt": b"",
            "mid.txt": content(3000),          # cached, sent with sendmsg
            "data.bin": content(40000),        # above the cache's small-file size: spliced
            "big.bin": content(1 << 20),       # spliced, several pipe loads
            "sub/index.html": b"<p>sub " + content(30) + b"</p>\n",
            "sub/k2.txt": content(500),
            "style.css": b"body{color:red}" + content(100),
            "style.css.gz": b"gz:" + content(60),
            "style.css.br": b"br:" + content(50),
            "a b&c.txt": content(20),
            "\u00e9.txt": content(33),
            ".well-known/ok.txt": content(10),
            "dir-no-index/x.txt": content(10),
        }
        for name, data in files.items():
            p = os.path.join(self.root, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        # Symlinks: inward ones are fine to serve; outward ones must be refused.
        links = {
            "leak-parent": "../canary-parent.txt",
            "leak-abs": os.path.join(self.tmp, "canary-parent.txt"),
            "leak-sibling": "../www-secret/canary.txt",
            "sibdir": "../www-secret",
            "sibdir-abs": sibling,
            "sub/leak-up": "../../canary-parent.txt",
            "sub/leak-up-dir": "../..",
            "leak-passwd": "/etc/passwd",
            "leak-root": "/",
            "loop": "loop",
            "alias.txt": "k1.txt",
            "sub/alias-up": "../k1.txt",
        }
        for name, dest in links.items():
            os.symlink(dest, os.path.join(self.root, name))
        try:
            os.mkfifo(os.path.join(self.root, "pipe.fifo"))
        except OSError:
            pass

        # URL path -> body, for requests with a known answer.
        self.known: Dict[str, bytes] = {
            "/": files["index.html"],
            "/index.html": files["index.html"],
            "/k1.txt": files["k1.txt"],
            "/empty.txt": b"",
            "/mid.txt": files["mid.txt"],
            "/data.bin": files["data.bin"],
            "/big.bin": files["big.bin"],
            "/sub/": files["sub/index.html"],
            "/sub/k2.txt": files["sub/k2.txt"],
            "/style.css": files["style.css"],
            "/a%20b%26c.txt": files["a b&c.txt"],
            "/%C3%A9.txt": files["\u00e9.txt"],
            "/.well-known/ok.txt": files[".well-known/ok.txt"],
        }
        self.encoded = {"gzip": files["style.css.gz"], "br": files["style.css.br"]}
        self.plain_paths = list(self.known) + [
            "/sub", "/dir-no-index/", "/dir-no-index", "/missing", "/alias.txt", "/sub/alias-up",
            "/pipe.fifo", "/noperm.txt", "/.env", "/.git/config", "/loop", "/style.css.gz",
            "/%2eenv", "/%2Egit/config", "/sub/../.env", "/.well-known/../.env", "/leak-root/etc/passwd",
        ]
        if self.planted:
            self.plain_paths += [self.planted] * 3
        # Relative paths that lead outside the root (before any encoding).
        self.escapes = [
            "../canary-parent.txt", "../www-secret/canary.txt", "../www.txt", "leak-parent",
            "leak-abs", "leak-sibling", "sibdir/canary.txt", "sibdir-abs/canary.txt",
            "sub/leak-up", "sub/leak-up-dir/canary-parent.txt", "leak-passwd",
            "sub/../../canary-parent.txt", "sub/../../www-secret/canary.txt",
            "../../../../../../etc/passwd", "./../canary-parent.txt", "sub/./../../www.txt",
            "../www/../canary-parent.txt", "..", "../", "sub/../..", ".env", ".git/config",
            "noperm.txt",
        ]

    def make_cert(self) -> Tuple[str, str]:
        """A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, for --tls."""
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cert, key

    def _canary_file(self, path: str, token: bytes, where: str) -> None:
        with open(path, "wb") as f:
            f.write((token + b"\n") * 64)
        self.canaries.append((token, where))

    def cleanup(self) -> None:
        try:
            os.chmod(os.path.join(self.root, "noperm.txt"), 0o600)
        except OSError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Generating requests
# ---------------------------------------------------------------------------------------------

class Unit:
    """One request as sent: its bytes and what we know about how it must be answered."""

    def __init__(self, data: bytes, expect=None, declares_body: bool = False):
        self.data = data
        # (status, body) for GET, (status, None, content_length) for HEAD; None: anything.
        self.expect = expect
        # A clean, unmutated request that announces a body: the server must close after it.
        self.declares_body = declares_body
        stripped = data.lstrip(b"\r\n")
        self.head_like = stripped.startswith(b"HEAD") and (len(stripped) == 4 or stripped[4] not in TCHAR)


class Plan:
    def __init__(self, iteration: int):
        self.iteration = iteration
        self.units: List[Unit] = []
        self.tail = b""               # bytes after the last request (a body or junk)
        self.chunks: List[Tuple[bytes, float]] = []
        self.ending = "keep"
        self.flood = False            # hundreds of pipelined requests
        self.reset_after = 0          # reset_mid: response bytes to read before the reset
        self.stream = b""
        self.hostile = None           # --tls: a hostile handshake instead of requests
        self.tls_version = None       # --tls: the highest version the client offers

    def describe(self) -> str:
        if self.hostile:
            return f"hostile handshake: {self.hostile[0]}"
        return f"ending={self.ending}{' flood' if self.flood else ''} units={len(self.units)} tail={len(self.tail)}B chunks={len(self.chunks)}"


METHODS_ODD = [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"PATCH", b"PRI",
               b"get", b"head", b"GeT", b"G", b"HEADX", b"GET\x00", b"G=T", b"GET/", b"\xc3\xa9",
               b"!#$%&'*+-.^_`|~", b"", b"GET GET", b"HEAD\t", b"M-SEARCH", b"GET\x7f", b"BREW"]
VERSIONS_ODD = [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/1.9", b"HTTP/2.0", b"HTTP/2", b"HTTP/0.9",
                b"HTTP/3", b"http/1.1", b"HTTP/1.01", b"HTTP/11", b"HTTP/1.1 ", b"HTTP/1",
                b"HTTP/", b"HTTP/1.1\x00", b"HTTPS/1.1", b"HTTP/1.a", b"", b"HTTP/01.1",
                b"HTTP/1.1\t", b" HTTP/1.1", b"HTTP/9.9", b"HTTP/1.-1"]
DATES = [b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT",
         b"Sun Nov  6 08:49:37 1994", b"Thu, 01 Jan 2099 00:00:00 GMT", b"Fri, 31 Dec 9999 23:59:59 GMT",
         b"Mon, 32 Foo 0000 99:99:99 GMT", b"", b"0", b"-1", b"Thu, 01 Jan 1970 00:00:00 GMT",
         b"Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", b"Tue, 99-Nov-99 08:49:37 GMT",
         b"\xff\xfe", b"Wed, 09 Jun 2021 10:18:14 GMT\x00"]
ETAGS = [b"*", b'"x"', b'W/"x"', b"junk", b"", b'"a", "b"', b'"', b'W/', b'"' + b"e" * 3000 + b'"',
         b'*, "x"', b'"\x01"']
RANGES = [b"bytes=0-0", b"bytes=-5", b"bytes=5-", b"bytes=0-1,3-4", b"bytes=-0", b"bytes=", b"bytes=1-0",
          b"items=0-1", b"bytes=99999999999999999999-", b"bytes=0-18446744073709551615",
          b"bytes=18446744073709551615-18446744073709551615", b"bytes= 0-1", b"bytes=0-1,0-1,0-1",
          b"bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,26-26,28-28,30-30,32-32",
          b"bytes=0-1, 5-9, 100-200", b"bytes=-1,-1", b"bytes=0--1", b"bytes=1-2-3", b"BYTES=0-1",
          b"bytes=0-999999", b"bytes=1048575-", b"bytes=1048576-", b"bytes=-1048577", b"bytes=,,,",
          b"bytes=0-0," * 40, b"bytes=\x000-1", b"bytes=3-3,2-2,1-1,0-0"]
CONTENT_LENGTHS = [b"0", b"5", b"-1", b"+5", b" 5", b"05", b"99999999999999999999999",
                   b"18446744073709551615", b"18446744073709551616", b"abc", b"0x10", b"1e3", b"5, 5",
                   b"", b"\xd9\xa5", b"5\x00", b"1 2"]
TRANSFER_ENCODINGS = [b"chunked", b"Chunked", b"chunked, chunked", b"gzip", b"gzip, chunked",
                      b"chunked, gzip", b"identity", b" chunked", b"chunked\t", b"xchunked", b"", b",",
                      b"chunked;q=1", b"gzip,chunked", b"\x0bchunked"]
CONTROL = [b"\x00", b"\x01", b"\x07", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x7f", b"\x80", b"\xff",
           b"\r", b"\n", b"\t", b" ", b":", b"%", b"/", b"\\", b"\xc0\xae", b"\r\n ", b"\r\n\t"]


def encode_path(rng: random.Random, path: str) -> bytes:
    """`path` (beginning with `/`) with dots, slashes and other bytes in random encodings."""
    out = bytearray()
    for i, ch in enumerate(path.encode("utf-8")):
        c = bytes([ch])
        r = rng.random()
        if c == b"." and r < 0.5:
            out += rng.choice([b"%2e", b"%2E", b"%252e", b"%c0%ae", b"%e0%80%ae", b"%u002e", b"%%32%65",
                               b"\xc0\xae", b"%2e%00"])
        elif c == b"/" and i > 0 and r < 0.35:
            out += rng.choice([b"%2f", b"%2F", b"%5c", b"\\", b"%c0%af", b"//", b"/./", b"%252f", b";/"])
        elif c not in b"./" and r < 0.08:
            out += b"%%%02X" % ch if rng.random() < 0.5 else b"%%%02x" % ch
        else:
            out += c
    return bytes(out)


def gen_target(rng: random.Random, env: Env) -> bytes:
    r = rng.random()
    if r < 0.35:
        t = rng.choice(env.plain_paths).encode()
        if rng.random() < 0.3:
            t = encode_path(rng, t.decode("utf-8", "replace")) if b"%" not in t else t
    elif r < 0.70:
        t = encode_path(rng, "/" + rng.choice(env.escapes))
    else:
        t = rng.choice([
            b"*", b"", b"/", b"//", b"///k1.txt", b"http://fuzz/k1.txt", b"HTTP://fuzz:80/../canary-parent.txt",
            b"https://a@b/sub/../../www.txt", b"http://x?/../canary-parent.txt", b"http:///../",
            b"http://fuzz", b"http:/k1.txt", b"fuzz:80", b"//fuzz/../k1.txt", b"/%", b"/%zz", b"/%2",
            b"/%00", b"/k1.txt%00.html", b"/a%00", b"/\x00", b"/\xc3\xa9.txt", b"/\xff", b"/a b",
            b"/#frag", b"/?q=1", b"/.;/k1.txt", b"/..;/canary-parent.txt", b"/sub/..", b"/sub/../..",
            b"/./././k1.txt", b"/sub//k2.txt", b"/%2e%2e/", b"/%252e%252e/", b"/%c0%ae%c0%ae/",
            b"/..\\..\\canary-parent.txt", b"/%25", b"/%2525", b"/~", b"/k1.txt?" + b"a" * 5000,
            b"/" + b"a" * rng.randrange(100, 9000), b"/" + b"../" * rng.randrange(1, 300),
            b"/" + b"%2e%2e%2f" * rng.randrange(1, 50) + b"canary-parent.txt", b"/k1.txt/", b"/index.html/.",
            b"/sub/k2.txt%2f", b"/sub%2fk2.txt", b"/.well-known", b"/.well-known/../../canary-parent.txt",
            b"/leak-root", b"/sibdir", b"/sibdir/", b"/loop/", b"/pipe.fifo/", b"/%2F", b"/\t",
        ])
    if rng.random() < 0.1:
        t += rng.choice([b"?x=1", b"?", b"#", b"?../../canary-parent.txt", b"?%00", b"#../..", b";x"])
    return t


def header(rng: random.Random, name: bytes, value: bytes) -> bytes:
    sep = rng.choices([b": ", b":", b":\t", b":  ", b" : ", b" :"], [80, 8, 4, 4, 2, 2])[0]
    return name + sep + value


def gen_headers(rng: random.Random, env: Env) -> List[bytes]:
    hs: List[bytes] = []
    r = rng.random()
    host = b"Host"
    if r < 0.85:
        hs.append(header(rng, rng.choice([b"Host"] * 6 + [b"host", b"HOST", b"hOsT"]), b"fuzz"))
    elif r < 0.9:
        pass  # no Host
    elif r < 0.95:
        hs += [header(rng, host, b"fuzz"), header(rng, host, rng.choice([b"fuzz", b"other", b""]))]
    else:
        hs.append(header(rng, host, rng.choice([b"", b"a b", b"x\x01", b"[::1]:80", b"h:99999", b"@",
                                                 b"a/b", b"x" * 3000, b"fuzz\x00", b"\xff", b"fuzz:"])))
    menu = [
        (b"Connection", [b"close", b"keep-alive", b"close, keep-alive", b"Keep-Alive", b"upgrade",
                         b"\x00", b"", b"close,close", b"TE, close"]),
        (b"Content-Length", CONTENT_LENGTHS),
        (b"Transfer-Encoding", TRANSFER_ENCODINGS),
        (b"Range", RANGES),
        (b"If-None-Match", ETAGS),
        (b"If-Match", ETAGS),
        (b"If-Modified-Since", DATES),
        (b"If-Unmodified-Since", DATES),
        (b"If-Range", DATES + ETAGS),
        (b"Accept-Encoding", [b"gzip", b"br", b"br;q=0, gzip", b"*", b"*;q=0", b"identity;q=0",
                              b"gzip;q=abc", b"", b"x" * 5000, b"gzip;q=1.0001", b"br;q=0.5,gzip;q=0.5"]),
        (b"Expect", [b"100-continue", b"junk"]),
        (b"Upgrade", [b"h2c", b"websocket"]),
        (b"User-Agent", [b"fuzz", b"\xff\xfe", b"x" * 2000]),
        (b"Referer", [b"http://x/", b"\x01"]),
    ]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4, 6])):
        name, values = rng.choice(menu)
        if rng.random() < 0.15:
            name = name.lower() if rng.random() < 0.5 else name.upper()
        hs.append(header(rng, name, rng.choice(values)))
        if rng.random() < 0.1:  # duplicate, same or different value
            hs.append(header(rng, name, rng.choice(values)))
    r = rng.random()
    if r < 0.06:  # junk names and values with control bytes
        name = rng.choice([b"X" + rng.choice(CONTROL) + b"Y", b"Bad Name", b"", b"X-\xff", b"x" * 3000,
                           b"(comma)", b"X-A"])
        hs.append(header(rng, name, b"v" + rng.choice(CONTROL) + b"w"))
    elif r < 0.10:  # obs-fold
        hs.append(b"X-Fold: a" + rng.choice([b"\r\n ", b"\r\n\t", b"\n "]) + b"b")
    elif r < 0.12:
        hs.append(b"NoColonHeader")
    elif r < 0.14:
        hs.append(b"X-Huge: " + b"h" * rng.randrange(4000, 12000))
    elif r < 0.16:
        hs += [b"X-Many-%d: %d" % (i, i) for i in range(rng.randrange(90, 130))]
    elif r < 0.18:
        hs.append(b" Leading: space")
    if rng.random() < 0.1:
        rng.shuffle(hs)
    return hs


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few byte-level edits: insert, delete, flip, duplicate, line-ending changes."""
    b = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        if not b:
            break
        op = rng.randrange(7)
        i = rng.randrange(len(b))
        if op == 0:
            b[i:i] = rng.choice(CONTROL)
        elif op == 1:
            del b[i:i + rng.randrange(1, 4)]
        elif op == 2:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 3:
            j = min(len(b), i + rng.randrange(1, 40))
            b[j:j] = b[i:j]
        elif op == 4:
            b = bytearray(bytes(b).replace(b"\r\n", b"\n", rng.randrange(1, 3)))
        elif op == 5:
            b[i:i] = b"\r"
        else:
            b[i:i] = bytes([rng.randrange(256)])
    return bytes(b)


def finish_unit(rng: random.Random, interior: bytes) -> bytes:
    """Closes a head so that it is exactly one request to the server: no blank line inside."""
    while True:
        fixed = re.sub(rb"\n\r?\n", b"\n", interior)
        if fixed == interior:
            break
        interior = fixed
    interior = interior.rstrip(b"\r\n")
    if not interior.strip(b"\r\n \t"):
        interior = b"GET / HTTP/1.1"
    lead = rng.choices([b"", b"\r\n", b"\n", b"\r\n\r\n"], [90, 5, 3, 2])[0]
    term = rng.choices([b"\r\n\r\n", b"\n\n", b"\r\n\n"], [92, 5, 3])[0]
    return lead + interior + term


def known_unit(rng: random.Random, env: Env) -> Unit:
    """A well-formed request whose answer is known exactly."""
    path = rng.choices(list(env.known), [1 if p == "/big.bin" else 8 for p in env.known])[0]
    body = env.known[path]
    target = path.encode()
    if rng.random() < 0.1:
        target += b"?q=" + str(rng.randrange(1000)).encode()
    if rng.random() < 0.05:
        target = b"http://fuzz" + target
    headers = [b"Host: fuzz"]
    r = rng.random()
    if r < 0.45:
        method, expect = b"GET", (200, body)
    elif r < 0.6:
        method, expect = b"HEAD", (200, None, len(body))
    elif r < 0.75 and len(body) >= 300:
        # Several ranges, ascending with gaps (never coalesced): a multipart/byteranges 206.
        points = sorted(rng.sample(range(min(len(body), 200000)), 2 * rng.randrange(2, 6)))
        ranges = [(points[k], points[k + 1]) for k in range(0, len(points), 2)]
        ranges = [rg for k, rg in enumerate(ranges) if k == 0 or rg[0] >= ranges[k - 1][1] + 2]
        if len(ranges) < 2:
            ranges = [(0, 0), (2, 2)]
        method, expect = b"GET", (206, ("multipart", ranges, body))
        headers.append(b"Range: bytes=" + b",".join(b"%d-%d" % rg for rg in ranges))
    elif r < 0.9 and len(body) > 1:
        a = rng.randrange(len(body))
        b = rng.randrange(a, min(len(body), a + 70000))
        method, expect = b"GET", (206, body[a:b + 1])
        headers.append(b"Range: bytes=%d-%d" % (a, b))
    elif path == "/style.css":
        coding = rng.choice(["gzip", "br"])
        method, expect = b"GET", (200, env.encoded[coding])
        headers.append(b"Accept-Encoding: " + coding.encode())
    else:
        method, expect = b"GET", (200, body)
    if rng.random() < 0.2:
        headers.append(b"Connection: keep-alive")
    if rng.random() < 0.2:
        headers.append(b"User-Agent: fuzz-known")
    rng.shuffle(headers)
    data = method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    return Unit(data, expect=expect)


def fuzz_unit(rng: random.Random, env: Env) -> Unit:
    r = rng.random()
    method = b"GET" if r < 0.45 else b"HEAD" if r < 0.65 else rng.choice(METHODS_ODD)
    if rng.random() < 0.02:
        method = rng.choice([b"A", b"GET", b"x"]) * rng.randrange(100, 10000)
    target = gen_target(rng, env)
    r = rng.random()
    version = b"HTTP/1.1" if r < 0.72 else b"HTTP/1.0" if r < 0.80 else rng.choice(VERSIONS_ODD)
    sp1 = rng.choices([b" ", b"  ", b"\t", b""], [94, 2, 2, 2])[0]
    sp2 = rng.choices([b" ", b"  ", b"\t", b""], [94, 2, 2, 2])[0]
    line = method + sp1 + target + (sp2 + version if version else b"")
    headers = gen_headers(rng, env)
    eol = rng.choices([b"\r\n", b"\n"], [95, 5])[0]
    interior = line + b"".join(eol + h for h in headers)
    mutated = rng.random() < 0.3
    if mutated:
        interior = mutate(rng, interior)
    data = finish_unit(rng, interior)
    # A clean 1.1 request announcing a body: the server must answer it and close (a body is
    # never read, so keeping the connection would let the body smuggle a request).
    declares = (not mutated and version == b"HTTP/1.1" and method in (b"GET", b"HEAD")
                and (re.search(rb"\r\nContent-Length: [1-9][0-9]{0,8}\r\n", data) is not None
                     or re.search(rb"\r\nTransfer-Encoding: chunked\r\n", data) is not None))
    return Unit(data, declares_body=declares)


ENDINGS = [("keep", 34), ("half_close", 30), ("reset_mid", 16), ("reset_now", 6), ("close_now", 6),
           ("stall", 2)]


HOSTILE = [("garbage", 3), ("plain_http", 2), ("hello_cut", 3), ("hello_corrupt", 3),
           ("hello_silence", 1), ("hello_then_garbage", 2)]


def gen_plan(seed: int, iteration: int, env: Env, tls: bool = False) -> Plan:
    rng = random.Random(f"{seed}:{iteration}")
    plan = Plan(iteration)
    if tls:
        trng = random.Random(f"tls-{seed}:{iteration}")
        plan.tls_version = trng.choice(["1.3", "1.3", "1.2"])
        if trng.random() < 0.12:
            kind = trng.choices([k for k, _ in HOSTILE], [w for _, w in HOSTILE])[0]
            plan.hostile = (kind, trng.random(), trng.randrange(1 << 30))
            plan.ending = f"hostile {kind}"
            return plan
    plan.ending = rng.choices([e for e, _ in ENDINGS], [w for _, w in ENDINGS])[0]
    if rng.random() < 0.02 and plan.ending in ("keep", "half_close"):
        # A flood: hundreds of pipelined requests (well past the server's 64 KiB read-ahead,
        # so its receive pauses and resumes), a few junk ones among them near the end.
        plan.flood = True
        for _ in range(rng.randrange(800, 4000)):
            u = known_unit(rng, env)
            if u.expect[0] == 200 and len(u.expect[1] or b"") > 4000 or b"big.bin" in u.data:
                u = Unit(b"GET /k1.txt HTTP/1.1\r\nHost: fuzz\r\n\r\n", expect=(200, env.known["/k1.txt"]))
            plan.units.append(u)
        plan.units.append(fuzz_unit(rng, env))
    else:
        n = rng.choices([1, 2, 3, 4, 5, 6, 8, 12], [30, 20, 15, 10, 8, 7, 6, 4])[0]
        for _ in range(n):
            plan.units.append(known_unit(rng, env) if rng.random() < 0.3 else fuzz_unit(rng, env))
    if plan.ending == "reset_mid" and rng.random() < 0.6:
        plan.units.insert(rng.randrange(len(plan.units) + 1),
                          Unit(b"GET /big.bin HTTP/1.1\r\nHost: fuzz\r\n\r\n", expect=(200, env.known["/big.bin"])))
    if rng.random() < 0.15:
        plan.tail = rng.choice([
            bytes(rng.choice(b"abcdefghij") for _ in range(rng.randrange(1, 100))),
            b"GET /k1.txt HTTP/1.1\r\nHost: fuzz\r\n\r\n",          # a smuggled request
            b"5\r\nhello\r\n0\r\n\r\n",                             # a chunked body
            b"GET /k1.txt HTTP/1.1\r\nHost: fu",                    # a partial head
        ])
    stream = b"".join(u.data for u in plan.units) + plan.tail
    plan.stream = stream
    if plan.ending == "stall":
        # Hold back the end of the last head: the server must answer 408 and close.
        last = plan.units[-1].data
        stream = stream[:len(stream) - len(plan.tail) - rng.randrange(1, min(len(last), 20) + 1)]
        plan.tail = b""
        plan.units[-1].expect = None
        plan.units[-1].declares_body = False
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 7)))) if len(stream) > 1 else []
    pieces, prev = [], 0
    for c in cuts + [len(stream)]:
        pieces.append(stream[prev:c])
        prev = c
    pauses = [0.0, 0.0, 0.0, 0.0005, 0.002, 0.005, 0.015]
    plan.chunks = [(p, rng.choice(pauses)) for p in pieces if p]
    if plan.ending == "reset_mid":
        plan.reset_after = rng.choice([0, 1, 50, rng.randrange(1, 400), rng.randrange(1, 300000)])
    return plan


# ---------------------------------------------------------------------------------------------
# Parsing responses
# ---------------------------------------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, start, body_start, body_len, complete):
        self.status = status
        self.headers = headers
        self.start = start
        self.body_start = body_start
        self.body_len = body_len
        self.complete = complete

    @property
    def close(self) -> bool:
        return any(v.lower() == b"close" for v in self.headers.get(b"connection", []))


def parse_responses(data: bytes, units: List[Unit]):
    """Splits the received bytes into responses. Returns (responses, problem, incomplete):
    problem is a message for bytes that are no valid response; incomplete is set when the data
    ends inside a response (head or body)."""
    out: List[Resp] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            rest = data[pos:pos + 9]
            if not b"HTTP/1.1 ".startswith(rest):
                return out, f"bytes that do not start a response at offset {pos}: {data[pos:pos + 60]!r}", None
            return out, None, "head"
        try:
            head = httpio.parse_head(data[pos:end])
        except httpio.MalformedResponse as e:
            n = len(out) + 1
            if e.what == "status line":
                return out, f"bad status line (response {n}): {e.bad[:100]!r}", None
            if e.what == "header line":
                return out, f"bad header line in a {e.status} (response {n}): {e.bad[:100]!r}", None
            return out, f"bad Content-Length {e.bad!r} in a {e.status}", None
        status, headers, cl = head.status, head.fields, head.content_length
        unit = units[len(out)] if len(out) < len(units) else None
        body_start = end + 4
        avail = len(data) - body_start
        if httpio.has_body(status) and cl is None:
            return out, f"no Content-Length in a {status} (response {len(out) + 1})", None
        # A parsed HEAD gets no body; one the server could not parse (no method known) gets
        # the error page's body.
        head_request = unit is not None and unit.head_like and not (
            status in PARSE_ERROR_STATUSES and head.close and cl > 0 and avail > 0)
        blen = httpio.body_length(head, head_request)
        if avail < blen:
            out.append(Resp(status, headers, pos, body_start, avail, False))
            return out, None, "body"
        out.append(Resp(status, headers, pos, body_start, blen, True))
        pos = body_start + blen
    return out, None, None


# ---------------------------------------------------------------------------------------------
# Running one connection
# ---------------------------------------------------------------------------------------------

class Result:
    def __init__(self):
        self.data = bytearray()
        self.sent = 0
        self.eof = False
        self.peer_reset = False
        self.we_cut = False        # we reset/closed before the server was done
        self.timed_out = False     # gave up waiting (HANG_S of silence or the hard deadline)
        self.send_error = None
        self.connect_error = None
        self.tls_error = None      # the server's records could not be read (or it sent an alert)


class TlsSock:
    """The client side of TLS over a non-blocking socket, through memory BIOs, so the rest of
    the fuzzer keeps its socket calls: send() takes plaintext (raising BlockingIOError while
    earlier ciphertext is still unsent), recv() returns plaintext (b"" on close_notify or EOF,
    BlockingIOError when nothing can be decrypted yet). Closing and resets act on the socket."""

    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext):
        self.raw = raw
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.unsent = b""

    def fileno(self) -> int:
        return self.raw.fileno()

    def flush(self) -> None:
        self.unsent += self.out.read()
        while self.unsent:
            n = self.raw.send(self.unsent)
            self.unsent = self.unsent[n:]

    def handshake(self, deadline: float) -> None:
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                pass
            self.flush()
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("TLS handshake")
            select.select([self.raw], [], [], left)
            try:
                data = self.raw.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionResetError("closed during the TLS handshake")
            self.inc.write(data)

    def send(self, data: bytes) -> int:
        if self.unsent:
            self.flush()   # BlockingIOError while the socket is still full
        self.obj.write(data)
        try:
            self.flush()
        except BlockingIOError:
            pass
        return len(data)

    def recv(self, n: int) -> bytes:
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
            data = self.raw.recv(max(n, 16384))   # BlockingIOError, resets: as a plain socket
            if not data:
                return b""
            self.inc.write(data)

    def shutdown(self, how: int) -> None:
        try:
            self.flush()
        except BlockingIOError:
            pass
        self.raw.shutdown(how)

    def setsockopt(self, *a) -> None:
        self.raw.setsockopt(*a)

    def close(self) -> None:
        self.raw.close()


def client_context(version: Optional[str], cafile: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _client_hello(cafile: str) -> bytes:
    """The ClientHello a real client sends first (Python's ssl), as raw bytes."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(None, cafile).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def run_hostile(plan: Plan, port: int, header_timeout: float, cafile: str) -> Result:
    """Sends hostile handshake bytes; the server must close the connection (within the header
    timeout, plus slack, for a ClientHello followed by silence)."""
    res = Result()
    kind, r, n = plan.hostile
    rng = random.Random(n)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        res.connect_error = e
        return res
    hello = _client_hello(cafile)
    if kind == "garbage":
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    elif kind == "plain_http":
        data = b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    elif kind == "hello_cut":
        data = hello[:max(1, int(len(hello) * r))]
    elif kind == "hello_corrupt":
        b = bytearray(hello)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        data = bytes(b)
    elif kind == "hello_silence":
        data = hello
    else:  # hello_then_garbage
        data = hello + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
    plan.stream = data
    try:
        s.sendall(data)
        res.sent = len(data)
    except OSError as e:
        res.send_error = e
    # Unfinished handshakes are closed at the header timeout at the latest.
    deadline = time.monotonic() + header_timeout + 3.0
    s.settimeout(0.25)
    while time.monotonic() < deadline:
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            res.peer_reset = res.eof = True
            break
        if not b:
            res.eof = True
            break
        res.data += b
    else:
        res.timed_out = True
    s.close()
    return res


def linger_reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def run_connection(plan: Plan, port: int, header_timeout: float, cafile: Optional[str] = None) -> Result:
    if plan.hostile:
        return run_hostile(plan, port, header_timeout, cafile)
    res = Result()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        res.connect_error = e
        return res
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    if cafile is not None:
        s = TlsSock(s, client_context(plan.tls_version, cafile))
        try:
            s.handshake(time.monotonic() + 5)
        except (OSError, ssl.SSLError) as e:
            res.connect_error = e
            s.close()
            return res
    poller = select.poll()
    poller.register(s, select.POLLIN)
    start = time.monotonic()
    hard = start + CONN_DEADLINE_S

    def drain() -> bool:
        """Reads what is there; False once the peer closed."""
        while True:
            try:
                b = s.recv(262144)
            except BlockingIOError:
                return True
            except (ConnectionResetError, BrokenPipeError):
                res.peer_reset = True
                res.eof = True
                return False
            except ssl.SSLError as e:
                res.tls_error = e
                res.eof = True
                return False
            if not b:
                res.eof = True
                return False
            res.data += b

    def cut_now() -> bool:
        return plan.ending == "reset_mid" and len(res.data) >= plan.reset_after and plan.reset_after > 0

    # Sending, reading as we go (so a large response never blocks our sends).
    next_at = start
    for chunk, pause in plan.chunks:
        off = 0
        while off < len(chunk):
            now = time.monotonic()
            if now >= hard:
                res.timed_out = True
                break
            if now < next_at:
                if res.eof:
                    time.sleep(next_at - now)
                elif poller.poll((next_at - now) * 1000):
                    drain()
                if cut_now():
                    res.we_cut = True
                    linger_reset(s)
                    return res
                continue
            try:
                n = s.send(chunk[off:])
                off += n
                res.sent += n
            except BlockingIOError:
                poller.modify(s, select.POLLOUT if res.eof else select.POLLIN | select.POLLOUT)
                poller.poll(100)
                poller.modify(s, select.POLLIN)
                if not res.eof:
                    drain()
                if cut_now():
                    res.we_cut = True
                    linger_reset(s)
                    return res
            except OSError as e:
                res.send_error = e
                break
        if res.send_error or res.timed_out:
            break
        next_at = time.monotonic() + pause
        if not res.eof:
            drain()
        if cut_now():
            res.we_cut = True
            linger_reset(s)
            return res

    ending = plan.ending
    if ending == "close_now":
        res.we_cut = True
        s.close()
        return res
    if ending == "reset_now" or (ending == "reset_mid" and plan.reset_after == 0):
        res.we_cut = True
        linger_reset(s)
        return res
    if ending == "half_close":
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    complete_sent = units_complete(plan, res.sent)
    idle_limit = header_timeout + 4.0 if ending == "stall" else HANG_S
    last_data = time.monotonic()
    quiet_since = None
    while not res.eof:
        now = time.monotonic()
        if now >= hard or now - last_data >= idle_limit:
            res.timed_out = True
            break
        if cut_now():
            res.we_cut = True
            linger_reset(s)
            return res
        if ending == "keep" and not res.send_error:
            resps, problem, incomplete = parse_responses(bytes(res.data), plan.units)
            if problem is None and incomplete is None and len(resps) >= complete_sent \
                    and not (resps and resps[-1].close):
                if quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= QUIET_S:
                    break
            else:
                quiet_since = None
        wait = QUIET_S if quiet_since is not None else 0.25
        if isinstance(s, TlsSock) and s.unsent:
            try:
                s.flush()
            except BlockingIOError:
                wait = min(wait, 0.01)
            except OSError:
                pass
        if poller.poll(wait * 1000):
            before = len(res.data)
            drain()
            if len(res.data) != before:
                last_data = time.monotonic()
                quiet_since = None
    if ending == "reset_mid" and not res.eof:
        res.we_cut = True
        linger_reset(s)
    else:
        s.close()
    return res


def units_complete(plan: Plan, sent: int) -> int:
    """How many requests were sent whole."""
    n, off = 0, 0
    for u in plan.units:
        off += len(u.data)
        if off <= sent:
            n += 1
    return n


def units_started(plan: Plan, sent: int) -> int:
    n, off = 0, 0
    for u in plan.units:
        if off < sent:
            n += 1
        off += len(u.data)
    if off < sent:  # the tail after the last request reached the server too
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Checking one connection
# ---------------------------------------------------------------------------------------------

def check(plan: Plan, res: Result, env: Env) -> Tuple[List[Tuple[str, str]], List[Resp]]:
    f: List[Tuple[str, str]] = []
    data = bytes(res.data)
    if res.connect_error is not None:
        return [("connect failed", repr(res.connect_error))], []
    if plan.hostile:
        if res.timed_out:
            f.append(("hostile handshake not closed", f"{plan.hostile[0]}: the connection was still open "
                                                       f"after the header timeout + 3 s"))
        # Plain HTTP gets the server's plain 400 ("This is an HTTPS port"), as nginx answers;
        # anything else gets at most a TLS alert or handshake bytes.
        told = plan.hostile[0] == "plain_http" and data.startswith(b"HTTP/1.1 400 ") and \
            data.endswith(b"send the request with TLS.\n")
        if data and not told and (data[0] not in (21, 22) or b"HTTP/" in data):
            f.append(("hostile handshake answered", f"{plan.hostile[0]}: {show(data, 60)}"))
        return f, []
    if res.tls_error is not None and not res.we_cut:
        f.append(("TLS error", f"the client could not read the server's records: {res.tls_error!r}"))
    for token, where in env.canaries:
        if token in data:
            f.append(("CANARY LEAK", f"the {where} canary {token[:20].decode(errors='replace')}... is in a response"))
    for marker in (b"CANARY-", b"HIDDEN-", b"NOPERM-"):
        if marker in data and not any(tok in data for tok, _ in env.canaries):
            f.append(("CANARY LEAK", f"a partial canary ({marker!r}) is in a response"))
    resps, problem, incomplete = parse_responses(data, plan.units)
    if problem is not None:
        f.append(("malformed response", problem))
    if incomplete is not None and not res.we_cut:
        last = resps[-1] if incomplete == "body" else None
        detail = (f"response {len(resps)} ({last.status}) has {last.body_len} of "
                  f"{last.headers.get(b'content-length', [b'?'])[0].decode()} body bytes"
                  if last else f"a response head ends unfinished ({len(data) - data.rfind(b'HTTP/1.1 ')} bytes)")
        if res.eof:
            f.append(("truncated response", detail + (" when the server reset" if res.peer_reset else " when the server closed")))
        elif res.timed_out:
            f.append(("stalled response", detail + f" and nothing came for {HANG_S:.0f} s"))
    allowed = units_started(plan, res.sent)
    got = len(resps)
    if got > allowed:
        f.append(("response without a request", f"{got} responses to {allowed} requests sent"))
    for i, r in enumerate(resps):
        if r.close and r.complete and r.body_start + r.body_len < len(data):
            f.append(("bytes after Connection: close",
                      f"response {i + 1} ({r.status}) says close, then {len(data) - r.body_start - r.body_len} more bytes"))
            break
    for i, r in enumerate(resps):
        if not r.complete or i >= len(plan.units):
            continue
        u = plan.units[i]
        if r.status == 500:
            f.append(("500 Internal Server Error", f"response {i + 1}"))
        if u.declares_body and not r.close:
            f.append(("keep-alive after a request with a body", f"response {i + 1} ({r.status}) keeps the connection"))
        if u.expect is not None:
            want_status = u.expect[0]
            body = data[r.body_start:r.body_start + r.body_len]
            if r.status != want_status:
                f.append(("wrong answer to a known request", f"request {i + 1}: status {r.status}, expected {want_status}"))
            elif len(u.expect) == 2 and isinstance(u.expect[1], tuple):
                problem_mp = check_multipart(r, body, u.expect[1][1], u.expect[1][2])
                if problem_mp:
                    f.append(("wrong answer to a known request", f"request {i + 1} (multipart): {problem_mp}"))
            elif len(u.expect) == 2 and body != u.expect[1]:
                f.append(("wrong answer to a known request",
                          f"request {i + 1}: {len(body)}-byte body differs from the expected {len(u.expect[1])} bytes"
                          f" (first difference at {next((k for k, (x, y) in enumerate(zip(body, u.expect[1])) if x != y), min(len(body), len(u.expect[1])))})"))
            elif len(u.expect) == 3:
                cl = int(r.headers.get(b"content-length", [b"-1"])[0])
                if cl != u.expect[2] or r.body_len != 0:
                    f.append(("wrong answer to a known request",
                              f"request {i + 1} (HEAD): Content-Length {cl}, expected {u.expect[2]}; body {r.body_len} bytes"))
    complete_sent = units_complete(plan, res.sent)
    done = [r for r in resps if r.complete]
    closed_by_server = any(r.close for r in done)
    if plan.ending in ("keep", "half_close") and not res.we_cut and res.send_error is None and problem is None:
        if res.eof and not closed_by_server and len(done) < complete_sent and incomplete is None:
            f.append(("requests dropped", f"the server closed after {len(done)} keep-alive responses; "
                                          f"{complete_sent} complete requests were sent"))
        if res.timed_out and not closed_by_server and len(done) < complete_sent and incomplete is None:
            f.append(("hang", f"{len(done)} of {complete_sent} complete requests answered, then "
                              f"{HANG_S:.0f} s of silence on an open connection"))
        if plan.ending == "half_close" and res.timed_out and len(done) >= complete_sent:
            f.append(("hang", "a half-closed connection was answered but not closed"))
    if plan.ending == "stall" and res.timed_out and not res.eof:
        f.append(("no 408", f"an unfinished head got neither a response nor a close within "
                            f"the header timeout + 4 s ({len(done)} responses before)"))
    return f, resps


def check_multipart(r: Resp, body: bytes, ranges, content: bytes) -> Optional[str]:
    """None if `body` is exactly the multipart/byteranges of `ranges` of `content`."""
    ct = r.headers.get(b"content-type", [b""])[0]
    m = re.fullmatch(rb"multipart/byteranges; ?boundary=([0-9A-Za-z'()+_,\-./:=?]{1,70})", ct)
    if not m:
        return f"Content-Type {ct[:80]!r}"
    delim = b"--" + m.group(1)
    pos = 0
    for k, (a, b) in enumerate(ranges):
        lead = (b"" if k == 0 else b"\r\n") + delim + b"\r\n"
        if not body.startswith(lead, pos):
            return f"part {k + 1} does not start with its delimiter at offset {pos}: {body[pos:pos + 60]!r}"
        pos += len(lead)
        end = body.find(b"\r\n\r\n", pos)
        if end < 0:
            return f"part {k + 1} has no end of headers"
        want = b"Content-Range: bytes %d-%d/%d" % (a, b, len(content))
        if want not in body[pos:end].split(b"\r\n"):
            return f"part {k + 1} headers {body[pos:end][:120]!r}, expected {want!r}"
        pos = end + 4
        if body[pos:pos + b - a + 1] != content[a:b + 1]:
            return f"part {k + 1} ({a}-{b}) has the wrong bytes"
        pos += b - a + 1
    if body[pos:] != b"\r\n" + delim + b"--\r\n":
        return f"closing delimiter {body[pos:pos + 80]!r}"
    return None


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

class Server:
    def __init__(self, binary: str, root: str, workers: int, header_timeout: int, extra: List[str] = ()):
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", "0", "-r", root, "-w", str(workers),
             "--header-timeout", str(header_timeout), "--no-pin", "--metrics", "127.0.0.1:0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: List[str] = []
        self.port = None
        self.metrics = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            mm = re.search(r"metrics on http://(\S+)/metrics", text)
            if mm:
                self.metrics = mm.group(1)
            m = re.search(r"listening on (\S+):(\d+)", text)
            if m:
                self.port = int(m.group(2))
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("server did not start: " + " | ".join(self.lines[-5:]))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())
            if len(self.lines) > 2000:
                del self.lines[:1000]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fds(self) -> int:
        try:
            return procstat.open_fds(self.proc.pid)
        except OSError:
            return -1

    def fd_kinds(self) -> str:
        try:
            targets = procstat.fd_targets(self.proc.pid)
        except OSError:
            return "gone"
        kinds = Counter(t.split(":")[0] if ":" in t else "file" for t in targets)
        return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))

    def rss_kb(self) -> int:
        try:
            return procstat.rss_bytes(self.proc.pid) // 1024
        except (OSError, RuntimeError):
            return 0

    def scrape(self) -> Dict[str, float]:
        """The server's metrics: {series: value}."""
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=5) as r:
            text = r.read().decode()
        return parse_metrics(text)

    def fatal_lines(self) -> List[str]:
        return [l for l in self.lines if re.search(r"fatal|panic|error", l, re.I)]


def connect_blocking(port: int, cafile: Optional[str]) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if cafile is not None:
        s = client_context(None, cafile).wrap_socket(s, server_hostname="localhost")
    return s


def plain_get(port: int, path: str, cafile: Optional[str] = None) -> Tuple[int, bytes]:
    with connect_blocking(port, cafile) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n".encode())
        data = httpio.read_to_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    m = httpio.STATUS_LINE.match(head.split(b"\r\n")[0])
    return (int(m.group(1)) if m else 0), body


def saturate_pools(port: int, n: int, cafile: Optional[str] = None) -> None:
    """Warm-up: n simultaneous large bodies, read to the end, so each worker's pipe pool and
    connection slab reach the size the fuzzing concurrency can need."""
    socks = []
    for _ in range(n):
        s = connect_blocking(port, cafile)
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
        socks.append(s)
    time.sleep(0.3)
    for s in socks:
        while s.recv(1 << 20):
            pass
        s.close()


def settle(server: Server, seconds: float) -> Tuple[int, int]:
    """Waits for lingering closes and idle cache entries to go, then samples fds and RSS."""
    time.sleep(seconds)
    return server.fds(), server.rss_kb()


def settle_stable(server: Server, seconds: float) -> Tuple[int, int]:
    """As settle, and then until the descriptor count stops falling (at most 10 s more)."""
    fds, rss = settle(server, seconds)
    for _ in range(10):
        time.sleep(1)
        now = server.fds()
        if now >= fds:
            break
        fds = now
    return fds, server.rss_kb()


# ---------------------------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------------------------

class Campaign:
    def __init__(self, args, env: Env, server: Server):
        self.args = args
        self.env = env
        self.server = server
        self.lock = threading.Lock()
        self.next_iteration = 0
        self.stop_at = 0.0
        self.stopped = False
        self.connections = 0
        self.requests = 0
        self.responses = 0
        self.bytes_in = 0
        self.verified = 0
        self.flood_requests = 0
        self.endings = Counter()
        self.statuses = Counter()
        self.findings: List[dict] = []
        self.in_flight: Dict[int, int] = {}
        self.death_reported = False

    def take(self) -> Optional[int]:
        with self.lock:
            if self.stopped or time.monotonic() >= self.stop_at:
                return None
            i = self.next_iteration
            self.next_iteration += 1
            return i

    def add_finding(self, kind: str, detail: str, plan: Optional[Plan], data: bytes = b"") -> None:
        with self.lock:
            self.findings.append({
                "kind": kind, "detail": detail,
                "iteration": plan.iteration if plan else None,
                "ending": plan.ending if plan else None,
                "request": plan.stream if plan else b"",
                "response": data,
            })

    def worker(self) -> None:
        tid = threading.get_ident()
        while True:
            i = self.take()
            if i is None:
                return
            plan = gen_plan(self.args.seed, i, self.env, self.args.tls)
            with self.lock:
                self.in_flight[tid] = i
            res = run_connection(plan, self.server.port, self.args.header_timeout, self.args.cafile)
            with self.lock:
                self.in_flight.pop(tid, None)
            if not self.server.alive():
                self.server_died(plan)
                return
            found, resps = check(plan, res, self.env)
            for kind, detail in found:
                self.add_finding(kind, detail, plan, bytes(res.data))
            with self.lock:
                self.connections += 1
                self.requests += units_started(plan, res.sent)
                if plan.flood:
                    self.flood_requests += units_started(plan, res.sent)
                self.responses += len(resps)
                self.bytes_in += len(res.data)
                self.endings[plan.ending + (" (flood)" if plan.flood else "")] += 1
                for k, r in enumerate(resps):
                    self.statuses[r.status] += 1
                    if r.complete and k < len(plan.units) and plan.units[k].expect is not None:
                        self.verified += 1

    def server_died(self, plan: Plan) -> None:
        with self.lock:
            if self.death_reported:
                return
            self.death_reported = True
            self.stopped = True
            in_flight = sorted(set(self.in_flight.values()) | {plan.iteration})
        code = self.server.proc.poll()
        self.add_finding("SERVER DIED", f"exit status {code}; iterations in flight: {in_flight}; "
                                        f"last stderr: {' | '.join(self.server.lines[-5:])}", plan)

    def run_phase(self, seconds: float) -> float:
        self.stop_at = time.monotonic() + seconds
        t0 = time.monotonic()
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.args.jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - t0


def show(b: bytes, n: int = TRUNC) -> str:
    r = repr(b[:n])
    return r + (f" ... ({len(b)} bytes)" if len(b) > n else "")


def ensure_binary(path: str) -> None:
    if os.path.exists(path):
        return
    if os.path.abspath(path) != os.path.abspath(DEFAULT_BIN):
        sys.exit(f"fuzz_live: {path} does not exist")
    print("fuzz_live: building the release binary (cargo build --release; waits for the build lock)",
          flush=True)
    subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)


def replay(args, env: Env, server: Server) -> int:
    plan = gen_plan(args.seed, args.iteration, env, args.tls)
    print(f"iteration {args.iteration}: {plan.describe()}")
    for i, u in enumerate(plan.units):
        print(f"  request {i + 1}{' (known answer)' if u.expect else ''}: {show(u.data, 600)}")
    if plan.tail:
        print(f"  tail: {show(plan.tail)}")
    print("  chunks: " + ", ".join(f"{len(c)}B+{p * 1000:.1f}ms" for c, p in plan.chunks))
    res = run_connection(plan, server.port, args.header_timeout, args.cafile)
    print(f"sent {res.sent} bytes, received {len(res.data)} (eof={res.eof} peer_reset={res.peer_reset} "
          f"we_cut={res.we_cut} timed_out={res.timed_out} send_error={res.send_error})")
    found, resps = check(plan, res, env)
    for r in resps:
        print(f"  response: {r.status} Content-Length={r.headers.get(b'content-length')} body={r.body_len} "
              f"{'complete' if r.complete else 'INCOMPLETE'} {'close' if r.close else 'keep-alive'}")
    print(f"  received: {show(bytes(res.data), 1500)}")
    if not server.alive():
        found.append(("SERVER DIED", f"exit status {server.proc.poll()}"))
    for kind, detail in found:
        print(f"FINDING {kind}: {detail}")
    print(f"findings: {len(found)}")
    return 1 if found else 0


def main() -> int:
    ap = argparse.ArgumentParser(description="Live-socket fuzzer for ringhttpd.")
    ap.add_argument("--bin", default=DEFAULT_BIN, help="server binary (default: target/release/ringhttpd)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60.0, help="fuzzing time after the warm-up (default 60)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up fuzzing seconds (default: 10%% of --seconds, 1-5)")
    ap.add_argument("--jobs", type=int, default=16, help="concurrent client connections (default 16)")
    ap.add_argument("--header-timeout", type=int, default=2, help="the server's --header-timeout (default 2)")
    ap.add_argument("--iteration", type=int, default=None, help="replay one iteration verbosely")
    ap.add_argument("--show", type=int, default=20, help="findings printed in full (default 20)")
    ap.add_argument("--plant-canary-inside", action="store_true",
                    help="debug: put a canary file inside the root (it is served, so this must be a finding)")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="extra server flag, repeatable (e.g. --server-arg=--autoindex)")
    ap.add_argument("--keep-root", action="store_true", help="do not delete the generated tree")
    ap.add_argument("--tls", action="store_true",
                    help="HTTPS only: every connection in TLS, some with hostile handshakes")
    args = ap.parse_args()

    ensure_binary(args.bin)
    env = Env(args.seed, args.plant_canary_inside)
    args.cafile = None
    extra = list(args.server_arg)
    if args.tls:
        cert, key = env.make_cert()
        args.cafile = cert
        extra = ["--tls-cert", cert, "--tls-key", key, "--tls-port", "0", "--https-only"] + extra
    try:
        server = Server(args.bin, env.root, 2, args.header_timeout, extra)
    except (RuntimeError, OSError) as e:
        print(f"fuzz_live: {e}", file=sys.stderr)
        env.cleanup()
        return 2
    try:
        if args.iteration is not None:
            return replay(args, env, server)
        return campaign(args, env, server)
    finally:
        if server.alive():
            server.proc.kill()
            server.proc.wait()
        if args.keep_root:
            print(f"fuzz_live: tree kept at {env.tmp}")
        else:
            env.cleanup()


def campaign(args, env: Env, server: Server) -> int:
    print(f"fuzz_live: seed {args.seed}, {args.seconds:g} s, {args.jobs} client connections at a time"
          f"{' over TLS (HTTPS only)' if args.tls else ''}; "
          f"ringhttpd pid {server.proc.pid} on 127.0.0.1:{server.port} (2 workers, header timeout "
          f"{args.header_timeout} s), root {env.root}"
          + (" [PLANTED CANARY INSIDE THE ROOT]" if env.planted else ""), flush=True)
    c = Campaign(args, env, server)
    warmup = args.warmup if args.warmup is not None else min(5.0, max(1.0, args.seconds * 0.1))
    saturate_pools(server.port, 3 * args.jobs, args.cafile)
    c.run_phase(warmup)
    base_fds = base_rss = 0
    if server.alive():
        base_fds, base_rss = settle_stable(server, 5.0)
        print(f"after warm-up ({warmup:g} s, {c.connections} connections): {base_fds} fds "
              f"({server.fd_kinds()}), RSS {base_rss} kB", flush=True)
    warm = (c.connections, c.requests, c.responses, c.verified, c.flood_requests)
    elapsed = c.run_phase(args.seconds) if server.alive() else 0.0
    conns, reqs, resps = c.connections - warm[0], c.requests - warm[1], c.responses - warm[2]
    print(f"executions: {conns} connections, {reqs} requests, {resps} responses in {elapsed:.1f} s "
          f"({reqs / max(elapsed, 1e-9):.0f} requests/s, {conns / max(elapsed, 1e-9):.0f} connections/s; "
          f"{c.flood_requests - warm[4]} of the requests in floods); "
          f"{c.verified - warm[3]} known answers verified byte for byte; {c.bytes_in / 1e6:.1f} MB received in all")
    print("endings: " + ", ".join(f"{k} {v}" for k, v in sorted(c.endings.items())))
    print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(c.statuses.items())))

    if server.alive():
        fds, rss = settle_stable(server, 5.0)
        print(f"after the run: {fds} fds ({server.fd_kinds()}; warm-up {base_fds}), "
              f"RSS {rss} kB (warm-up {base_rss} kB)")
        if fds > base_fds + FD_TOLERANCE:
            c.add_finding("descriptor growth", f"{base_fds} -> {fds} open descriptors "
                                               f"(tolerance +{FD_TOLERANCE})", None)
        if rss > base_rss * (1 + RSS_TOLERANCE):
            c.add_finding("memory growth", f"RSS {base_rss} kB -> {rss} kB (tolerance +{RSS_TOLERANCE:.0%})", None)
        try:
            m = server.scrape()
            open_now = m.get("ringhttpd_connections_open")
            tls = ""
            if args.tls:
                fails = {k.split('"')[1]: int(v) for k, v in m.items()
                         if k.startswith("ringhttpd_tls_handshake_failures_total{")}
                modes = {k.split('"')[1]: int(v) for k, v in m.items()
                         if k.startswith("ringhttpd_tls_connections_total{")}
                tls = (f"; TLS handshakes {int(m.get('ringhttpd_tls_handshakes_total', 0))} (records sealed by "
                       + ", ".join(f"{k} {v}" for k, v in sorted(modes.items())) + "), failures "
                       + ", ".join(f"{k} {v}" for k, v in sorted(fails.items())))
            print(f"metrics after the run: {open_now:g} connections open (the scrape's own included){tls}")
            if open_now is None or open_now > 1:
                c.add_finding("leaked connections", f"ringhttpd_connections_open is {open_now} with no client "
                                                    f"left (the scrape's own aside)", None)
        except (OSError, ValueError) as e:
            c.add_finding("metrics unreachable", repr(e), None)
        try:
            status, body = plain_get(server.port, "/index.html", args.cafile)
            ok = status == 200 and body == env.known["/index.html"]
            print(f"final GET /index.html: {status}, {len(body)} bytes{'' if ok else ' (WRONG)'}")
            if not ok:
                c.add_finding("final GET failed", f"status {status}, body {show(body, 100)}", None)
        except OSError as e:
            c.add_finding("final GET failed", repr(e), None)
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=15)
            if code != 0:
                c.add_finding("unclean stop", f"SIGTERM: exit status {code}", None)
        except subprocess.TimeoutExpired:
            c.add_finding("unclean stop", "still running 15 s after SIGTERM", None)
    elif not c.death_reported:
        c.add_finding("SERVER DIED", f"exit status {server.proc.poll()}; last stderr: "
                                     f"{' | '.join(server.lines[-5:])}", None)
    for line in server.fatal_lines():
        c.add_finding("server logged an error", line[:300], None)
    warn = [l for l in server.lines if "warn" in l]
    if warn:
        print(f"server warnings: {len(warn)} (e.g. {warn[0][:160]})")

    kinds = Counter(fd["kind"] for fd in c.findings)
    print(f"findings: {len(c.findings)}" + (" (" + ", ".join(f"{k}: {v}" for k, v in kinds.items()) + ")"
                                            if kinds else ""))
    shown = 0
    seen = Counter()
    for fd in c.findings:
        seen[fd["kind"]] += 1
        if shown >= args.show or seen[fd["kind"]] > 3:
            continue
        shown += 1
        where = (f"seed {args.seed} iteration {fd['iteration']} ({fd['ending']}); replay: "
                 f"scripts/fuzz_live.py --seed {args.seed} --iteration {fd['iteration']}"
                 + (" --tls" if args.tls else "")
                 + (" --plant-canary-inside" if env.planted else "")
                 if fd["iteration"] is not None else f"seed {args.seed}, whole run")
        print(f"- {fd['kind']}: {fd['detail']}\n    {where}")
        if fd["request"]:
            print(f"    sent: {show(fd['request'])}")
        if fd["response"]:
            print(f"    got:  {show(fd['response'])}")
    return 1 if c.findings else 0


if __name__ == "__main__":
    sys.exit(main())
