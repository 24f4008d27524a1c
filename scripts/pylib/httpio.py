"""HTTP/1.1 responses as the scripts read them: the one parser of a response head, the one
rule for how long a body is, and the one reader of a response from a socket.

A head is strict (RFC 9112): the status line is `HTTP/1.1 NNN reason`, every header line a
token, a colon and a value without control bytes, Content-Length at most once and all digits.
Anything else raises MalformedResponse.

A body is empty after a 1xx, 204 or 304 and after a HEAD request; otherwise it is
Content-Length bytes long, or without Content-Length runs until the server closes.

    parse_head(block)                  -> Head            (block: the head without its CRLFCRLF)
    has_body(status)                   -> False for 1xx, 204, 304
    body_length(head, head_request)    -> int, or None    (None: read to the close)
    read_response(sock, pending, ...)  -> (Response, bytes after it)
    read_whole(sock, pending)          -> (Response, bytes after it), or ResponseCut
    read_to_close(sock)                -> every byte until the server closes (OSError on a failure)
    recv_some(sock, n)                 -> (bytes, None) or (b"", "eof" | "reset" | "stall")

Timeouts are the socket's own (settimeout): one that expires ends a read as "stall".
Standard library only.
"""
import re
import socket
import time

STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([\x20-\x7e]*)\Z")
HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*\Z")
HEAD_END = b"\r\n\r\n"
RECV_SIZE = 262144
CUT_WORDS = {"eof": "closed", "reset": "reset", "stall": "timeout"}


class MalformedResponse(ValueError):
    """A response head that breaks the grammar. `what` is "status line", "header line" or
    "Content-Length"; `bad` the offending line (bytes) or Content-Length values (list);
    `status` the status code once the status line was read."""

    def __init__(self, what, bad, status=None):
        super().__init__(f"malformed {what}: {bad!r}")
        self.what, self.bad, self.status = what, bad, status


class ResponseCut(ConnectionError):
    """The connection ended ("eof"), failed ("reset") or went silent ("stall") before the
    response was whole; `part` is "head" or "body", `response` the partial one (body only)."""

    def __init__(self, end, part, response=None):
        super().__init__(f"{CUT_WORDS[end]} in the response {part}")
        self.end, self.part, self.response = end, part, response


class Head:
    """A parsed response head. `fields`: lower-case name -> every value (bytes), in order;
    `headers`: lower-case name -> the last value (str, latin-1)."""

    __slots__ = ("line", "status", "reason", "fields", "content_length", "_headers")

    def __init__(self, line, status, reason, fields, content_length):
        self.line, self.status, self.reason = line, status, reason
        self.fields = fields
        self.content_length = content_length    # None if absent
        self._headers = None

    @property
    def headers(self):
        if self._headers is None:
            self._headers = {k.decode(): v[-1].decode("latin-1") for k, v in self.fields.items()}
        return self._headers

    @property
    def close(self):
        return any(v.lower() == b"close" for v in self.fields.get(b"connection", []))


def parse_head(block):
    """Parses a response head (status line and header lines, without the final CRLFCRLF)."""
    lines = block.split(b"\r\n")
    m = STATUS_LINE.match(lines[0])
    if not m:
        raise MalformedResponse("status line", lines[0])
    status = int(m.group(1))
    fields = {}
    for ln in lines[1:]:
        hm = HEADER_LINE.match(ln)
        if not hm:
            raise MalformedResponse("header line", ln, status)
        fields.setdefault(hm.group(1).lower(), []).append(hm.group(2))
    cls = fields.get(b"content-length")
    cl = None
    if cls is not None:
        if len(cls) != 1 or not cls[0].isdigit():
            raise MalformedResponse("Content-Length", cls, status)
        cl = int(cls[0])
    return Head(lines[0], status, m.group(2), fields, cl)


def has_body(status):
    """False for the statuses that never carry a body (1xx, 204, 304)."""
    return not (status < 200 or status in (204, 304))


def body_length(head, head_request=False):
    """The body's length; None when it runs until the server closes."""
    if head_request or not has_body(head.status):
        return 0
    return head.content_length


class Response:
    """A response read from a socket. `end`: "complete", or why the body stopped short: "eof",
    "reset", "stall", or "aborted" (a paced read told to stop)."""

    __slots__ = ("head", "body", "end")

    def __init__(self, head, body, end):
        self.head, self.body, self.end = head, body, end

    status = property(lambda self: self.head.status)
    headers = property(lambda self: self.head.headers)
    length = property(lambda self: self.head.content_length)

    @property
    def complete(self):
        return self.end == "complete"


def recv_some(sock, n=RECV_SIZE):
    """recv that maps failures onto an end kind: (data, None) or (b"", kind)."""
    try:
        data = sock.recv(n)
    except socket.timeout:
        return b"", "stall"
    except OSError:
        return b"", "reset"
    return (data, None) if data else (b"", "eof")


def read_response(sock, pending=b"", head_request=False, pace=None, stop=None):
    """Reads one response from a blocking socket, starting with the bytes `pending`; returns
    (Response, the bytes read past it). Raises ResponseCut without a whole head and
    MalformedResponse for a bad one. A body that stops short is returned with its `end`.
    `pace` (bytes, seconds) reads the body slowly, giving up (end "aborted") once the
    threading.Event `stop` is set."""
    buf = bytearray(pending)
    while True:
        end = buf.find(HEAD_END)
        if end >= 0:
            break
        data, why = recv_some(sock)
        if why:
            raise ResponseCut(why, "head")
        buf += data
    head = parse_head(bytes(buf[:end]))
    body = bytearray(buf[end + 4:])
    want = body_length(head, head_request)
    endkind = "complete"
    while want is None or len(body) < want:
        room = RECV_SIZE if want is None else want - len(body)
        if pace:
            if stop is not None and stop.is_set():
                endkind = "aborted"
                break
            data, why = recv_some(sock, min(pace[0], room))
            time.sleep(pace[1])
        else:
            data, why = recv_some(sock, min(RECV_SIZE, room))
        if why:
            endkind = "complete" if why == "eof" and want is None else why
            break
        body += data
    if want is None:
        return Response(head, bytes(body), endkind), b""
    return Response(head, bytes(body[:want]), endkind), bytes(body[want:])


def read_whole(sock, pending=b""):
    """read_response for a plain GET that must get its whole response: a body that stops
    short raises ResponseCut."""
    resp, rest = read_response(sock, pending)
    if not resp.complete:
        raise ResponseCut(resp.end, "body", resp)
    return resp, rest


def read_to_close(sock, n=65536):
    """Every byte the server sends until it closes; a failure or timeout raises (OSError)."""
    out = bytearray()
    while True:
        data = sock.recv(n)
        if not data:
            return bytes(out)
        out += data
