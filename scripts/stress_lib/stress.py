#!/usr/bin/env python3
"""Slowloris and idle keep-alive attack on a running ringhttpd (scripts/stress.sh).

    stress.py --port PORT --pid PID [--slow N] [--idle N]
              [--header-timeout S] [--keepalive-timeout S]

Against 127.0.0.1:PORT, while a separate normal client requests /index.html
every ~10 ms (alternating one keep-alive connection and new connections) and
records its latencies:

  1. opens --idle connections, each sending one complete request and reading
     its response, then going idle (the keep-alive timer starts);
  2. opens --slow connections, each sending a partial head and then one more
     header byte every TRICKLE seconds (the header timer runs from connect);
  3. watches every held connection until the server closes it: a slow one
     must get a 408 first, an idle one nothing; each close is timed against
     its deadline (reaped on time = within timeout + REAP_GRACE).

It reads the server's RSS and open descriptors from /proc/PID before, with
the connections held, and after everything closed, prints a report and exits
1 if normal p99 latency exceeds P99_LIMIT, a connection was not reaped on time
(or early, or without its 408), a normal request failed, or descriptors leaked.
"""
import argparse
import multiprocessing
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pylib import httpio                                # noqa: E402
from pylib.procstat import open_fds, rss_bytes          # noqa: E402

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
REQUEST_CLOSE = (b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n"
                 b"Connection: close\r\n\r\n")
SLOW_HEAD = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
TRICKLE = 2.0          # seconds between header bytes on a slow connection
REAP_GRACE = 2.0       # a reap later than deadline + this is late
EARLY_GRACE = 0.2      # a close this much before the deadline is early
NORMAL_PERIOD = 0.010  # seconds between normal requests
P99_LIMIT = 1.0        # seconds
FD_TOLERANCE = 4       # cached file descriptors and pooled pipes


# ---- HTTP/1.1 (pylib.httpio reads the responses) ----

def read_response(sock, pending=b""):
    """Reads one whole response from a blocking socket; returns (status, leftover)."""
    resp, leftover = httpio.read_whole(sock, pending)
    return resp.status, leftover


def connect(port, timeout=5.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# ---- the normal client (its own process, so the GIL does not skew it) ----

def normal_client(port, stop, results):
    latencies, errors = [], []
    keepalive, pending = None, b""
    i = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            if i % 2 == 0:
                if keepalive is None:
                    keepalive, pending = connect(port), b""
                keepalive.sendall(REQUEST)
                status, pending = read_response(keepalive, pending)
            else:
                with connect(port) as sock:
                    sock.sendall(REQUEST_CLOSE)
                    status, _ = read_response(sock)
            if status == 200:
                latencies.append(time.monotonic() - started)
            else:
                errors.append(f"status {status}")
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e}")
            if i % 2 == 0 and keepalive is not None:
                keepalive.close()
                keepalive = None
        i += 1
        time.sleep(max(0.0, started + NORMAL_PERIOD - time.monotonic()))
    results.put((latencies, errors))


# ---- held connections ----

class Held:
    """One attack connection and what happened to it."""
    __slots__ = ("sock", "kind", "deadline", "next_byte", "received",
                 "closed_at")

    def __init__(self, sock, kind, deadline):
        self.sock = sock
        self.kind = kind            # "slow" or "idle"
        self.deadline = deadline    # monotonic time the server's timer ends
        self.next_byte = None       # slow only: when to send the next byte
        self.received = b""
        self.closed_at = None


def open_idle(port, count, keepalive_timeout, sel, failures):
    held = []
    for _ in range(count):
        try:
            sock = connect(port)
            sock.sendall(REQUEST)
            status, leftover = read_response(sock)
            if status != 200 or leftover:
                raise ConnectionError(f"status {status}")
        except OSError as e:
            failures.append(f"idle connection {len(held)}: {e}")
            break
        sock.setblocking(False)
        h = Held(sock, "idle", time.monotonic() + keepalive_timeout)
        sel.register(sock, selectors.EVENT_READ, h)
        held.append(h)
    return held


def open_slow(port, count, header_timeout, sel, failures):
    held = []
    for i in range(count):
        started = time.monotonic()
        try:
            sock = connect(port)
            sock.sendall(SLOW_HEAD)
        except OSError as e:
            failures.append(f"slow connection {len(held)}: {e}")
            break
        sock.setblocking(False)
        h = Held(sock, "slow", started + header_timeout)
        # Stagger the trickle so the bytes do not all arrive in one burst.
        h.next_byte = started + TRICKLE * (1 + (i % 10) / 10)
        sel.register(sock, selectors.EVENT_READ, h)
        held.append(h)
    return held


def on_readable(h, sel):
    try:
        data = h.sock.recv(65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if data:
        h.received += data
        return
    h.closed_at = time.monotonic()
    sel.unregister(h.sock)
    h.sock.close()


def trickle(slow, now):
    for h in slow:
        if h.closed_at is None and h.next_byte <= now:
            h.next_byte += TRICKLE
            try:
                h.sock.send(b"a")
            except OSError:
                pass  # closed by the server; the read side will see it


def watch(sel, slow, until):
    """Serves readable sockets and the trickle until every connection closed
    or `until` passes."""
    while time.monotonic() < until and sel.get_map():
        for key, _ in sel.select(timeout=0.05):
            on_readable(key.data, sel)
        trickle(slow, time.monotonic())


# ---- the report ----

def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def reap_summary(held, timeout, name, wants_408):
    """Prints one line about `held`; returns a list of failures."""
    failures = []
    closed = [h for h in held if h.closed_at is not None]
    delays = sorted(h.closed_at - h.deadline for h in closed)
    on_time = [d for d in delays if -EARLY_GRACE <= d <= REAP_GRACE]
    early = [d for d in delays if d < -EARLY_GRACE]
    if wants_408:
        answered = sum(1 for h in closed if h.received.startswith(b"HTTP/1.1 408 "))
        extra = f", {answered} with a 408 first"
        if answered != len(held):
            failures.append(f"{len(held) - answered} {name} connections got no 408")
    else:
        talked = sum(1 for h in closed if h.received)
        extra = f", {talked} sent bytes before the close"
        if talked:
            failures.append(f"{talked} {name} connections got unexpected bytes")
    print(f"{name} connections reaped: {len(closed)}/{len(held)}{extra}; "
          f"on time (deadline .. +{REAP_GRACE:.0f} s): {len(on_time)}, "
          f"early: {len(early)}")
    if delays:
        print(f"  seconds after the {timeout:g} s deadline: min {delays[0]:.2f}, "
              f"p50 {percentile(delays, 50):.2f}, p99 {percentile(delays, 99):.2f}, "
              f"max {delays[-1]:.2f}")
    if len(on_time) != len(held):
        failures.append(f"{len(held) - len(on_time)} of {len(held)} {name} "
                        f"connections not reaped on time")
    return failures


def wait_for_fds(pid, target, limit):
    deadline = time.monotonic() + limit
    count = open_fds(pid)
    while abs(count - target) > FD_TOLERANCE and time.monotonic() < deadline:
        time.sleep(0.1)
        count = open_fds(pid)
    return count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--slow", type=int, default=1500)
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--header-timeout", type=float, default=5)
    ap.add_argument("--keepalive-timeout", type=float, default=10)
    args = ap.parse_args()
    pid, port = args.pid, args.port
    failures = []

    for _ in range(3):
        with connect(port) as sock:
            sock.sendall(REQUEST_CLOSE)
            read_response(sock)
    fds_before, rss_before = open_fds(pid), rss_bytes(pid)

    # Started before any attack socket exists, so it inherits none of them.
    stop, results = multiprocessing.Event(), multiprocessing.Queue()
    normal = multiprocessing.Process(target=normal_client, args=(port, stop, results))
    normal.start()

    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    idle = open_idle(port, args.idle, args.keepalive_timeout, sel, failures)
    rss_idle = rss_bytes(pid)
    t_idle = time.monotonic() - t0
    slow = open_slow(port, args.slow, args.header_timeout, sel, failures)
    t_slow = time.monotonic() - t0 - t_idle
    held_at_peak = len(sel.get_map())
    # Connections complete in the kernel's backlog before the server accepts them.
    fds_peak = wait_for_fds(pid, fds_before + held_at_peak, 2.0)
    rss_peak = rss_bytes(pid)

    last_deadline = max([h.deadline for h in idle + slow], default=time.monotonic())
    watch(sel, slow, last_deadline + REAP_GRACE + 3)

    stop.set()
    latencies, errors = results.get(timeout=30)
    normal.join(timeout=10)
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
    fds_after = wait_for_fds(pid, fds_before, 5.0)

    print(f"connections held: {held_at_peak} ({len(idle)}/{args.idle} idle keep-alive "
          f"opened in {t_idle:.2f} s, {len(slow)}/{args.slow} slowloris opened in "
          f"{t_slow:.2f} s)")
    lat = sorted(latencies)
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    print(f"normal requests under attack: {len(lat) + len(errors)} ({len(errors)} failed); "
          f"latency p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
          f"max {lat[-1] * 1000 if lat else float('nan'):.2f} ms")
    failures += reap_summary(slow, args.header_timeout, "slowloris", True)
    failures += reap_summary(idle, args.keepalive_timeout, "idle keep-alive", False)
    per_conn = (rss_idle - rss_before) / len(idle) if idle else float("nan")
    print(f"server RSS: before {rss_before / 2**20:.1f} MiB, with {len(idle)} idle "
          f"connections {rss_idle / 2**20:.1f} MiB, at peak {rss_peak / 2**20:.1f} MiB; "
          f"{per_conn:.0f} bytes per idle connection")
    print(f"server open fds: before {fds_before}, at peak {fds_peak}, "
          f"after everything closed {fds_after}")

    if errors:
        failures.append(f"{len(errors)} normal requests failed, first: {errors[0]}")
    if not lat or p99 > P99_LIMIT:
        failures.append(f"normal p99 latency {p99:.3f} s exceeds {P99_LIMIT} s")
    if abs(fds_after - fds_before) > FD_TOLERANCE:
        failures.append(f"descriptors leaked: {fds_before} before, {fds_after} after")
    for f in failures:
        print(f"FAIL: {f}")
    print("result:", "FAIL" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
