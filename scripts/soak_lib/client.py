"""The soak's load: client processes that request, check every response, and report.

Each role runs in a process of its own (so the GIL of one does not pace another), with a few
threads; every second a process sends what it saw to the driver's queue as one dict:
  counts    {request kind: n}            every request that got a response
  errors    {error kind: n}              connection failures, short bodies, findings
  lat       [(end time, seconds)]        latencies of the normal requests (keepalive, newconn)
  events    [(what, t0, t1, detail)]     outcomes acceptable only inside a descriptor-
                                         exhaustion window (503, connection failures); the
                                         driver classifies them at the end
  findings  [str]                        wrong responses
"""
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pylib import httpio  # noqa: E402

CLIENT_TIMEOUT = 10.0      # seconds without progress before a request counts as stalled
HOST = "127.0.0.1"
# With soak.py --tls: every connection is wrapped in TLS, trusting the run's certificate.
TLS_CONTEXT = None


def use_tls(cafile):
    """Makes every later `connect` a TLS connection (TLS 1.2 or 1.3) trusting `cafile`."""
    global TLS_CONTEXT
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    TLS_CONTEXT = ctx


class ConnError(Exception):
    """No response head: the kind is what the error table shows."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind} {detail}".strip())
        self.kind = kind


def connect(port, rcvbuf=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(CLIENT_TIMEOUT)
    try:
        sock.connect((HOST, port))
    except socket.timeout:
        sock.close()
        raise ConnError("connect timeout")
    except OSError as e:
        sock.close()
        raise ConnError("connect failed", str(e))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if TLS_CONTEXT is not None:
        try:
            sock = TLS_CONTEXT.wrap_socket(sock, server_hostname="localhost")
        except socket.timeout:
            sock.close()
            raise ConnError("TLS handshake timeout")
        except OSError as e:   # ssl.SSLError included
            sock.close()
            raise ConnError("TLS handshake failed", str(e))
    return sock


def request_bytes(url, agent, headers=(), close=False):
    lines = [f"GET {url} HTTP/1.1", "Host: soak", f"User-Agent: soak/{agent}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock, pending=b"", pace=None, stop=None):
    """httpio.read_response (returns (Response, leftover bytes)), with a missing or malformed
    head raised as ConnError. `pace` (bytes, seconds) reads the body slowly, giving up (end
    "aborted") once `stop` is set."""
    try:
        return httpio.read_response(sock, pending, pace=pace, stop=stop)
    except httpio.ResponseCut as e:
        raise ConnError({"stall": "timeout before response head",
                         "reset": "reset before response head",
                         "eof": "closed before response head"}[e.end])
    except httpio.MalformedResponse as e:
        raise ConnError(f"malformed {e.what}", repr(e.bad)[:80])


def expect_close(sock, leftover):
    """After a response with Connection: close: the server must close without more bytes."""
    if leftover:
        return f"{len(leftover)} bytes after the response on a closing connection"
    data, why = httpio.recv_some(sock)
    if data:
        return f"{len(data)} bytes after the response on a closing connection"
    if why == "stall":
        return "connection not closed after Connection: close"
    return None


def parse_content_range(value):
    """'bytes A-B/N' -> (A, B, N)."""
    unit, _, spec = value.partition(" ")
    rng, _, total = spec.partition("/")
    first, _, last = rng.partition("-")
    if unit != "bytes":
        raise ValueError(value)
    return int(first), int(last), int(total)


def parse_multipart(body, boundary):
    """multipart/byteranges body -> [(first, last, total, data)], positional (binary-safe)."""
    delim = b"--" + boundary.encode()
    pos = body.find(delim)
    if pos < 0 or body[:pos].strip(b"\r\n"):
        raise ValueError("no leading boundary")
    parts = []
    while True:
        pos += len(delim)
        if body.startswith(b"--", pos):
            if body[pos + 2:].strip(b"\r\n"):
                raise ValueError("bytes after the closing boundary")
            return parts
        if not body.startswith(b"\r\n", pos):
            raise ValueError("boundary not followed by CRLF")
        hend = body.find(b"\r\n\r\n", pos)
        if hend < 0:
            raise ValueError("part head not terminated")
        crange = None
        for line in body[pos + 2:hend].decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-range":
                crange = parse_content_range(value.strip())
        if crange is None:
            raise ValueError("part without Content-Range")
        first, last, total = crange
        start = hend + 4
        data = body[start:start + last - first + 1]
        if len(data) != last - first + 1:
            raise ValueError("part shorter than its range")
        parts.append((first, last, total, data))
        pos = start + len(data)
        if not body.startswith(b"\r\n" + delim, pos):
            raise ValueError("part not followed by a boundary")
        pos += 2


# ---- per-process bookkeeping ----

class Stats:
    def __init__(self, role):
        self.role = role
        self.lock = threading.Lock()
        self._reset()

    def _reset(self):
        self.counts, self.errors, self.lat, self.events, self.findings = {}, {}, [], [], []

    def count(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def error(self, kind):
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def latency(self, t_end, seconds):
        with self.lock:
            self.lat.append((t_end, seconds))

    def event(self, what, t0, t1, detail):
        with self.lock:
            self.events.append((what, t0, t1, detail))

    def finding(self, text):
        with self.lock:
            self.errors["wrong response"] = self.errors.get("wrong response", 0) + 1
            if len(self.findings) < 200:
                self.findings.append(f"[{self.role}] {text}")

    def take(self):
        with self.lock:
            msg = {"role": self.role, "counts": self.counts, "errors": self.errors,
                   "lat": self.lat, "events": self.events, "findings": self.findings}
            self._reset()
        return msg


# ---- checking one response ----

def check(spec, kind, resp, req, sent_etag, stats, t0, t1):
    """Checks `resp` for `spec` answering a request of `kind` (get, range, multirange, inm,
    ims, slow, reset); records the outcome. `req` is the range asked for (first, last)."""
    where = f"{kind} {spec.url}"
    st = resp.status
    if st == 503:
        stats.event("503", t0, t1, where)
        return
    if st >= 500:
        stats.finding(f"{where}: status {st}")
        return
    if resp.length is None and st not in (204, 304):
        stats.finding(f"{where}: status {st} without Content-Length")
        return
    if not resp.complete:
        if resp.end == "stall":
            stats.finding(f"{where}: status {st}, {len(resp.body)} of {resp.length} body bytes, "
                          f"then nothing for {CLIENT_TIMEOUT:g} s with the connection open "
                          f"(Content-Length larger than what is sent?)")
            return
        if st == 200:
            why = spec.check_prefix(resp.body)
            if why:
                stats.finding(f"{where}: short body then {resp.end}: {why}")
                return
        if spec.kind == "inplace":
            stats.error(f"short body then {resp.end} (truncated file)")
        else:
            # The server holds the file open: only a failure on its side (no pipe, no
            # descriptor) cuts a body short. Acceptable inside an exhaustion window.
            stats.event(f"short body then {resp.end}", t0, t1, where)
        return
    if st == 404:
        if spec.kind == "recreate":
            stats.error("404 while the file was deleted (ok)")
            return
        stats.finding(f"{where}: 404 for a file that always exists")
        return
    if st == 304:
        if kind not in ("inm", "ims"):
            stats.finding(f"{where}: 304 to an unconditional request")
        elif kind == "inm" and resp.headers.get("etag") not in (None, sent_etag):
            stats.finding(f"{where}: 304 with ETag {resp.headers.get('etag')} to "
                          f"If-None-Match {sent_etag}")
        return
    if st == 416:
        if spec.kind != "inplace" or kind not in ("range", "multirange"):
            stats.finding(f"{where}: 416")
        return
    if st == 200:
        why = spec.check_whole(resp.body)
        if why and spec.kind == "inplace":
            # A file rewritten in place while it is spliced (or sendfile'd: nginx shows the same)
            # changes the page-cache pages already handed to the socket; only the framing can be
            # promised (a full Content-Length, or an early close), not which bytes arrive.
            stats.error("in-place rewrite seen inside a complete body (zero-copy)")
        elif why:
            stats.finding(f"{where}: 200 with a wrong body: {why}")
        return
    if st == 206 and kind in ("range", "multirange"):
        ctype = resp.headers.get("content-type", "")
        try:
            if ctype.startswith("multipart/byteranges"):
                boundary = ctype.split("boundary=", 1)[1].strip().strip('"')
                parts = parse_multipart(resp.body, boundary)
            else:
                first, last, total = parse_content_range(resp.headers.get("content-range", ""))
                parts = [(first, last, total, resp.body)]
        except (ValueError, IndexError) as e:
            stats.finding(f"{where}: malformed 206 ({e})")
            return
        why = spec.check_parts(parts)
        if not why and kind == "range":
            first, last, total, _ = parts[0]
            if (len(parts) != 1 or first != req[0]
                    or last != min(req[1], total - 1)):
                why = f"asked for {req[0]}-{req[1]}, got {first}-{last}/{total}"
        if why:
            stats.finding(f"{where}: 206 with wrong parts: {why}")
        return
    stats.finding(f"{where}: unexpected status {st}")


# ---- the roles ----

class Target:
    """Picks files, remembers their validators (per thread), builds requests."""

    def __init__(self, specs, seed):
        self.rng = random.Random(seed)
        self.specs = list(specs.values())
        weights = {"small": 6, "large": 1, "huge": 0}
        self.weights = [weights[s.size_class] for s in self.specs]
        self.validators = {}   # url -> (etag, last-modified)

    def pick(self):
        spec = self.rng.choices(self.specs, self.weights)[0]
        kind = self.rng.choices(["get", "range", "multirange", "inm", "ims"],
                                [50, 15, 10, 15, 10])[0]
        etag, lm = self.validators.get(spec.url, (None, None))
        if (kind == "inm" and not etag) or (kind == "ims" and not lm):
            kind = "get"
        headers, req = [], None
        if kind == "range":
            first = self.rng.randrange(0, 500)   # every version is longer
            req = (first, first + self.rng.randrange(0, 5000))
            headers.append(("Range", f"bytes={req[0]}-{req[1]}"))
        elif kind == "multirange":
            headers.append(("Range", "bytes=0-9,20-29"))
        elif kind == "inm":
            headers.append(("If-None-Match", etag))
        elif kind == "ims":
            headers.append(("If-Modified-Since", lm))
        return spec, kind, headers, req, etag

    def learn(self, spec, resp):
        if resp.status == 200 and resp.complete and "etag" in resp.headers:
            self.validators[spec.url] = (resp.headers["etag"], resp.headers.get("last-modified"))


def normal_loop(role, port, specs, stats, stop, seed, period, keepalive):
    """Keep-alive (one connection, reused) or new-connection-per-request client."""
    tgt = Target(specs, seed)
    sock, pending = None, b""
    while not stop.is_set():
        spec, kind, headers, req, etag = tgt.pick()
        label = f"{role} {kind}"
        t0 = time.monotonic()
        try:
            if sock is None:
                sock, pending = connect(port), b""
            sock.sendall(request_bytes(spec.url, role, headers, close=not keepalive))
            resp, pending = read_response(sock, pending)
        except (ConnError, OSError) as e:
            kindname = e.kind if isinstance(e, ConnError) else f"send failed: {e}"
            stats.event(f"{role}: {kindname}", t0, time.monotonic(), label + " " + spec.url)
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.05)
            continue
        t1 = time.monotonic()
        stats.count(label)
        if resp.complete:
            stats.latency(t1, t1 - t0)
        check(spec, kind, resp, req, etag, stats, t0, t1)
        tgt.learn(spec, resp)
        closing = (not keepalive or not resp.complete
                   or resp.headers.get("connection", "").lower() == "close")
        if closing:
            if resp.complete and not keepalive:
                why = expect_close(sock, pending)
                if why:
                    stats.finding(f"{label} {spec.url}: {why}")
            sock.close()
            sock = None
        time.sleep(max(0.0, t0 + period - time.monotonic()))
    if sock is not None:
        sock.close()


def large_targets(specs):
    return [s for s in specs.values() if s.size_class != "small" and s.kind != "inplace"]


def slow_loop(role, port, specs, stats, stop, seed, chunk=4096, pause=0.01):
    """Small receive buffer, reads `chunk` bytes every `pause` s of a large file."""
    rng = random.Random(seed)
    targets = large_targets(specs)
    while not stop.is_set():
        spec = rng.choice(targets)
        t0 = time.monotonic()
        try:
            sock = connect(port, rcvbuf=4096)
        except ConnError as e:
            stats.event(f"{role}: {e.kind}", t0, time.monotonic(), f"{role} {spec.url}")
            time.sleep(0.2)
            continue
        with sock:
            try:
                sock.sendall(request_bytes(spec.url, role, close=True))
                resp, _ = read_response(sock, pace=(chunk, pause), stop=stop)
            except (ConnError, OSError) as e:
                kindname = e.kind if isinstance(e, ConnError) else f"send failed: {e}"
                stats.event(f"{role}: {kindname}", t0, time.monotonic(), f"{role} {spec.url}")
                continue
        if resp.end == "aborted":
            break
        stats.count(f"{role} get")
        check(spec, "slow", resp, None, None, stats, t0, time.monotonic())


def reset_loop(role, port, specs, stats, stop, seed, period=0.05):
    """Requests a large file, reads a little of the body, then resets (SO_LINGER 0)."""
    rng = random.Random(seed)
    targets = [s for s in large_targets(specs) if s.kind != "recreate"]
    linger0 = struct.pack("ii", 1, 0)
    while not stop.is_set():
        spec = rng.choice(targets)
        t0 = time.monotonic()
        try:
            sock = connect(port)
            sock.sendall(request_bytes(spec.url, role))
            want, got, head = rng.randrange(1, 200_000), 0, b""
            while got < want:
                data, why = httpio.recv_some(sock, 65536)
                if why:
                    if head.startswith(b"HTTP/1.1 ") and not head.startswith(b"HTTP/1.1 200 "):
                        break   # an error response and its close: judged by its status below
                    raise ConnError(f"{why} before the planned reset")
                got += len(data)
                if len(head) < 64:
                    head += data[:64]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
            sock.close()
        except (ConnError, OSError) as e:
            kindname = e.kind if isinstance(e, ConnError) else f"failed: {e}"
            stats.event(f"{role}: {kindname}", t0, time.monotonic(), f"{role} {spec.url}")
            time.sleep(0.1)
            continue
        status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.1 ") else b"?"
        stats.count(f"{role} mid-body")
        if status == b"503":
            stats.event("503", t0, time.monotonic(), f"{role} {spec.url}")
        elif status != b"200":
            stats.finding(f"{role} {spec.url}: status {status.decode(errors='replace')}")
        time.sleep(max(0.0, t0 + period - time.monotonic()))


ROLES = {
    # role: (threads, loop, extra kwargs)
    "keepalive": (3, normal_loop, {"period": 0.004, "keepalive": True}),
    "newconn": (3, normal_loop, {"period": 0.01, "keepalive": False}),
    "slow": (3, slow_loop, {}),
    "reset": (1, reset_loop, {}),
}


def run_role(role, port, specs, queue, stop, seed, cafile=None):
    """A client process: the role's threads plus a reporter sending stats every second (over
    TLS, trusting `cafile`, if given)."""
    if cafile:
        use_tls(cafile)
    threads_n, loop, kw = ROLES[role]
    stats = Stats(role)
    threads = [threading.Thread(target=loop, daemon=True,
                                args=(role, port, specs, stats, stop, seed * 100 + i), kwargs=kw)
               for i in range(threads_n)]
    for t in threads:
        t.start()
    while not stop.wait(1.0):
        queue.put(stats.take())
    for t in threads:
        t.join(timeout=CLIENT_TIMEOUT + 5)
    queue.put(stats.take())
    queue.put({"role": role, "done": True})
