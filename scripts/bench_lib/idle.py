#!/usr/bin/env python3
"""Hold N idle keep-alive connections open against a server (scripts/bench.sh).

    idle.py PORT N HOLD_SECONDS

Opens N connections to 127.0.0.1:PORT one after the other, sends one
`GET /index.html` on each and reads the whole response, so that every
connection has really been accepted and served and now sits idle in
keep-alive.  Then prints `READY <opened> <failed>`, keeps them open for
HOLD_SECONDS (the caller measures the server's RSS meanwhile), prints
`ALIVE <count>` (connections the server had not closed) and exits, closing
them all.  It runs as its own process so its file descriptors do not count
against the server's limit.
"""
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pylib import httpio  # noqa: E402

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"


def read_response(sock):
    """Reads one whole response, which must be a 200; anything else is a failed connection
    (ConnectionError)."""
    try:
        resp, _ = httpio.read_whole(sock)
    except httpio.MalformedResponse as e:
        raise ConnectionError(str(e))
    if resp.status != 200:
        raise ConnectionError(f"status line {resp.head.line!r}")


def still_open(sock):
    """True if the server has not closed the connection (no EOF pending)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""  # unsolicited data: odd, but still open
    except BlockingIOError:
        return True
    except OSError:
        return False


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if hard != resource.RLIM_INFINITY and want > hard:
        sys.exit(f"idle.py: need {want} file descriptors, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    socks, failed = [], 0
    deadline = time.monotonic() + 120  # bounded even if the server stalls
    for _ in range(n):
        s = None
        if time.monotonic() > deadline:
            failed += n - len(socks) - failed
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(REQUEST)
            read_response(s)
            socks.append(s)
        except OSError as e:
            failed += 1
            if failed == 1:
                print(f"idle.py: first failure after {len(socks)} ok: {e}",
                      file=sys.stderr)
            if s is not None:
                s.close()
    print(f"READY {len(socks)} {failed}", flush=True)
    time.sleep(hold)
    alive = sum(1 for s in socks if still_open(s))
    print(f"ALIVE {alive}", flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
