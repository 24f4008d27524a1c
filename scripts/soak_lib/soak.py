#!/usr/bin/env python3
"""Long mixed-load soak of a running ringhttpd (scripts/soak.sh).

    soak.py --port PORT --metrics ADDR:PORT --pid PID --root DIR --tmp DIR --log PATH
            [--minutes M] [--keepalive-timeout S] [--send-timeout S] [--tls CERT]
            [--plant-wrong-version]

With --tls CERT, PORT is an HTTPS port and every client connection runs in TLS, trusting CERT.

Fills DIR with files of known versions (content.py), then for M minutes runs the client
processes of client.py (keep-alive and new-connection clients with plain, range, multi-range
and conditional requests, slow readers, resets mid-body) while, in this process:

  - a mutator replaces, truncates, rewrites, deletes and recreates files every 0.2-0.4 s;
  - the access log is rotated (rename, then SIGHUP) every 3-5 s;
  - the server's descriptor limit is lowered to its open descriptor count for 1 s every
    20-40 s (prlimit), then restored;
  - every 10 s one sample line: RSS, open descriptors, open connections (metrics), p99
    latency of the normal requests in the window.

Exits 1 if a response was wrong (see client.check), a 503 or connection failure happened
outside a descriptor-exhaustion window, the server died or restarted, the access log lost
lines or was not reopened, or a sample series grows: after the warm-up, the last third's
median RSS above 1.25x the first third's, descriptors or connections above it + 64, p99
above 2x + 50 ms; or connections not back near zero once the load stops.
"""
import argparse
import multiprocessing
import os
import random
import re
import resource
import signal
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from client import ROLES, run_role                      # noqa: E402
from content import Mutator, build_specs, plant_wrong_version, populate   # noqa: E402
from pylib.procstat import fd_targets, open_fds, rss_bytes, start_time   # noqa: E402
from pylib.metrics import parse as parse_metrics   # noqa: E402

SAMPLE_EVERY = 10.0
WARMUP_SAMPLES = 2
WINDOW_GRACE = 2.0        # a 503 or failure this long after an exhaustion window still counts
EXHAUST_FOR = 1.0
RSS_RATIO, FD_SLACK, CONN_SLACK, P99_RATIO, P99_SLACK = 1.25, 64, 64, 2.0, 0.050
CONNS_IDLE = 2            # "near zero": the scrape's own connection, and one spare
MAX_PRINTED_FINDINGS = 10


def log(msg):
    print(msg, flush=True)


# ---- the server, seen through its metrics (and /proc: pylib.procstat) ----

class Metrics:
    def __init__(self, addr):
        self.url = f"http://{addr}/metrics"
        self.scrapes = 0    # successful ones; each is an access log line too

    def fetch(self):
        """{series: value} or None."""
        try:
            with urllib.request.urlopen(self.url, timeout=3) as r:
                text = r.read().decode()
        except OSError:
            return None
        self.scrapes += 1
        return parse_metrics(text)


# ---- what the clients report ----

class Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts, self.errors = {}, {}
        self.lat = []          # (t, seconds), drained per sample window
        self.events = []
        self.findings = []
        self.done = set()

    def merge(self, msg):
        with self.lock:
            if msg.get("done"):
                self.done.add(msg["role"])
                return
            for k, v in msg["counts"].items():
                self.counts[k] = self.counts.get(k, 0) + v
            for k, v in msg["errors"].items():
                self.errors[k] = self.errors.get(k, 0) + v
            self.lat.extend(msg["lat"])
            self.events.extend(msg["events"])
            for f in msg["findings"]:
                if len(self.findings) < MAX_PRINTED_FINDINGS:
                    log(f"FINDING: {f}")
                self.findings.append(f)

    def take_latencies(self):
        with self.lock:
            lat, self.lat = self.lat, []
        return lat

    def add_finding(self, kind, text):
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if len(self.findings) < MAX_PRINTED_FINDINGS:
                log(f"FINDING: {text}")
            self.findings.append(text)


def drain(queue, totals, stop):
    while not stop.is_set():
        try:
            msg = queue.get(timeout=0.2)
        except Exception:  # queue.Empty
            continue
        totals.merge(msg)


# ---- the disturbances ----

def mutate(mutator, stop, problems):
    rng = random.Random(7)
    while not stop.wait(rng.uniform(0.2, 0.4)):
        try:
            mutator.step()
        except OSError as e:
            problems.append(f"mutator: {e}")


class Rotator:
    """Renames the access log and sends SIGHUP; counts and deletes rotated files once the
    server holds none of them open."""

    def __init__(self, pid, path):
        self.pid, self.path = pid, path
        self.rotations = 0
        self.missing = 0         # rotations that found no access log to rename
        self.pending = []        # rotated files not yet counted
        self.lines = 0

    def rotate(self):
        self.rotations += 1
        rotated = f"{self.path}.{self.rotations}"
        try:
            os.rename(self.path, rotated)
            self.pending.append(rotated)
        except FileNotFoundError:
            self.missing += 1   # the last reopen failed (or has not happened yet): ask again
        try:
            os.kill(self.pid, signal.SIGHUP)
        except ProcessLookupError:
            pass  # the server is gone; the driver notices and reports it

    def collect(self, force=False):
        held = set(fd_targets(self.pid)) if not force else set()
        for p in list(self.pending):
            if p in held:
                continue
            with open(p, "rb") as f:
                self.lines += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            os.unlink(p)
            self.pending.remove(p)

    def run(self, stop):
        rng = random.Random(11)
        while not stop.wait(rng.uniform(3.0, 5.0)):
            try:
                self.rotate()
                self.collect()
            except (ProcessLookupError, FileNotFoundError):
                return  # the server is gone (/proc/PID): the driver reports it


class Exhauster:
    """Lowers the server's soft RLIMIT_NOFILE to its open descriptor count for a while."""

    def __init__(self, pid, floor):
        self.pid = pid
        self.floor = floor        # the server's descriptor count when idle
        self.t_start = time.monotonic()
        self.windows = []
        self.skipped = None

    def run(self, stop, first_after):
        rng = random.Random(13)
        delay = first_after
        while not stop.wait(delay):
            delay = rng.uniform(20, 40)
            try:
                soft, hard = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
                n = open_fds(self.pid)
                # Not the open count itself: connections close all the time, and the
                # holes they leave below it would keep accepting. Below the idle count,
                # every new descriptor (socket, file, pipe, log) fails.
                limit = min(n, self.floor)
                t0 = time.monotonic()
                resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (limit, hard))
            except (ProcessLookupError, FileNotFoundError):
                return  # the server is gone: the driver reports it
            except OSError as e:
                self.skipped = f"descriptor exhaustion skipped: prlimit not permitted ({e})"
                log(self.skipped)
                return
            try:
                time.sleep(EXHAUST_FOR)
            finally:
                try:
                    resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (soft, hard))
                except ProcessLookupError:
                    return
                self.windows.append((t0, time.monotonic(), n))
                log(f"{t0 - self.t_start:5.0f}s  descriptor limit {limit} (server had {n} open) for "
                    f"{time.monotonic() - t0:.1f} s, then {soft} again")

    def covers(self, t0, t1):
        """Seconds after the nearest window's end when [t0, t1] overlaps a window plus
        grace, else None."""
        for w0, w1, _ in self.windows:
            if t0 <= w1 + WINDOW_GRACE and t1 >= w0 - 0.05:
                return max(0.0, t1 - w1)
        return None


# ---- samples and the report ----

def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def median(values):
    return percentile(values, 50)


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MiB":
        return f"{v / 2**20:.1f}"
    if unit == "ms":
        return f"{v * 1000:.1f}"
    return f"{v:.0f}"


def growth(samples, key, label, unit, limit_fn, limit_text):
    """Compares the medians of the first and last thirds after warm-up; returns a failure
    text or None, and a line describing it."""
    values = [s[key] for s in samples[WARMUP_SAMPLES:] if s[key] is not None]
    third = len(values) // 3
    if third < 1:
        return None, f"  {label}: too few samples after warm-up to judge growth"
    first, last = median(values[:third]), median(values[-third:])
    limit = limit_fn(first)
    line = (f"  {label}: first-third median {fmt(first, unit)}, last-third median "
            f"{fmt(last, unit)} {unit} (limit {fmt(limit, unit)}, {limit_text})")
    if last > limit:
        return f"{label} grows: {fmt(first, unit)} -> {fmt(last, unit)} {unit}", line
    return None, line


def table(title, rows, header=None):
    log(title)
    if header:
        log("  " + "".join(f"{h:>12}" if i else f"{h:<36}" for i, h in enumerate(header)))
    for row in rows:
        log("  " + "".join(f"{c:>12}" if i else f"{c:<36}" for i, c in enumerate(row)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--keepalive-timeout", type=float, default=5)
    ap.add_argument("--send-timeout", type=float, default=5)
    ap.add_argument("--tls", metavar="CERT", help="HTTPS: connect with TLS, trusting CERT")
    ap.add_argument("--plant-wrong-version", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    pid = args.pid
    failures = []

    specs = build_specs()
    populate(args.root, specs)
    if args.plant_wrong_version:
        url = plant_wrong_version(specs)
        log(f"debug: --plant-wrong-version: the checker expects a corrupted version of {url}")
    started = start_time(pid)
    metrics = Metrics(args.metrics)
    m0 = metrics.fetch()
    if m0 is None:
        log("FAIL: metrics endpoint not reachable")
        return 1
    fds_base, rss_base = open_fds(pid), rss_bytes(pid)
    log(f"document root: {len(specs)} files; baseline: rss {rss_base / 2**20:.1f} MiB, "
        f"fds {fds_base}; {args.minutes:g} min of load")

    ctx = multiprocessing.get_context("fork")
    queue, load_stop = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=run_role, args=(role, args.port, specs, queue, load_stop, i + 1, args.tls),
                         name=f"soak-{role}", daemon=True)
             for i, role in enumerate(ROLES)]
    for p in procs:
        p.start()

    totals, side_stop, drain_stop = Totals(), threading.Event(), threading.Event()
    mutator, problems = Mutator(args.root, args.tmp, specs), []
    rotator, exhauster = Rotator(pid, args.log), Exhauster(pid, fds_base)
    threads = [threading.Thread(target=drain, args=(queue, totals, drain_stop), daemon=True),
               threading.Thread(target=mutate, args=(mutator, side_stop, problems), daemon=True),
               threading.Thread(target=rotator.run, args=(side_stop,), daemon=True),
               threading.Thread(target=exhauster.run, args=(side_stop, 15.0), daemon=True)]
    t_start = exhauster.t_start = time.monotonic()
    for t in threads:
        t.start()
    t_end = t_start + args.minutes * 60
    samples, died, died_at = [], None, None
    next_sample = t_start + SAMPLE_EVERY
    last_total = 0
    log(f"{'t':>6}  {'rss MiB':>8}  {'fds':>5}  {'conns':>5}  {'p99 ms':>8}  {'req/s':>6}  wrong")
    while time.monotonic() < t_end:
        # Liveness every second, so a dead server stops the load at once.
        time.sleep(max(0.0, min(next_sample, t_end, time.monotonic() + 1.0) - time.monotonic()))
        try:
            if start_time(pid) != started:
                died = f"server pid {pid} restarted"
        except OSError:
            died = f"server pid {pid} exited"
        if died:
            died_at = time.monotonic()
            failures.append(f"{died} at t={died_at - t_start:.0f}s")
            log(f"FAIL: {died}")
            break
        if time.monotonic() < next_sample - 0.01:
            continue
        next_sample += SAMPLE_EVERY
        lat = [s for _, s in totals.take_latencies()]
        m = metrics.fetch()
        if m and m.get("process_start_time_seconds") != m0.get("process_start_time_seconds"):
            died = "server restarted (process_start_time_seconds changed)"
            failures.append(died)
            break
        s = {"t": time.monotonic() - t_start, "rss": rss_bytes(pid), "fds": open_fds(pid),
             "conns": m.get("ringhttpd_connections_open") if m else None,
             "p99": percentile(lat, 99), "n": len(lat)}
        samples.append(s)
        with totals.lock:
            total = sum(totals.counts.values())
            wrong = len(totals.findings)
        rate, last_total = (total - last_total) / SAMPLE_EVERY, total
        log(f"{s['t']:5.0f}s  {fmt(s['rss'], 'MiB'):>8}  {fmt(s['fds'], ''):>5}  "
            f"{fmt(s['conns'], ''):>5}  {fmt(s['p99'], 'ms'):>8}  {rate:6.0f}  {wrong}")

    # ---- wind down ----
    load_stop.set()
    side_stop.set()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
            failures.append(f"client process {p.name} did not stop")
    for t in threads[1:]:
        t.join(timeout=30)
    deadline = time.monotonic() + 5
    while len(totals.done) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    drain_stop.set()
    threads[0].join()
    while not queue.empty():
        totals.merge(queue.get())

    conns_after = fds_after = rss_after = None
    if not died:
        try:
            deadline = time.monotonic() + args.keepalive_timeout + args.send_timeout + 5
            while True:
                m = metrics.fetch()
                conns_after = m.get("ringhttpd_connections_open") if m else None
                if (conns_after is not None and conns_after <= CONNS_IDLE) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            time.sleep(4.5)   # idle cache entries dropped after 3 s, on the 1 s tick
            fds_after, rss_after = open_fds(pid), rss_bytes(pid)
            rotator.rotate()  # a last reopen, with no exhaustion under way
            time.sleep(2.5)
            rotator.collect()
            m_final = metrics.fetch()
            time.sleep(2.5)   # the scrape's own line is flushed on the next tick
            log_files_open = [t for t in fd_targets(pid) if t.startswith(args.log)]
            rotator.collect(force=True)
            with open(args.log, "rb") as f:
                current_lines = f.read().count(b"\n")
        except OSError as e:
            died = f"server gone while winding down ({e})"
            failures.append(died)

    # ---- classify window-dependent outcomes ----
    in_window, late = {}, []
    for what, t0, t1, detail in totals.events:
        if died_at is not None and t1 >= died_at - 1.0:
            continue  # failures from the server's death: reported once, as the death
        after = exhauster.covers(t0, t1)
        if after is None:
            totals.add_finding(f"{what} (no exhaustion window)",
                               f"{detail}: {what} at t={t0 - t_start:.1f}s, outside any "
                               f"descriptor-exhaustion window")
        else:
            in_window[what] = in_window.get(what, 0) + 1
            late.append(after)

    # ---- report ----
    log("")
    with totals.lock:
        counts, errors, findings = dict(totals.counts), dict(totals.errors), list(totals.findings)
    table("requests by kind", sorted(counts.items()) + [("total", sum(counts.values()))])
    err_rows = sorted(errors.items()) + [(f"{k} (in an exhaustion window: ok)", v)
                                         for k, v in sorted(in_window.items())]
    table("errors by kind", err_rows or [("none", 0)])
    if late:
        log(f"  latest window-tolerated outcome: {max(late):.2f} s after its window ended")
    rows = []
    for key, label, unit in (("rss", "RSS MiB", "MiB"), ("fds", "open descriptors", ""),
                             ("conns", "open connections", ""), ("p99", "p99 latency ms", "ms")):
        vals = [s[key] for s in samples if s[key] is not None]
        rows.append((label, fmt(vals[0] if vals else None, unit),
                     fmt(vals[-1] if vals else None, unit), fmt(max(vals) if vals else None, unit)))
    table(f"samples ({len(samples)}, every {SAMPLE_EVERY:g} s)", rows, ("", "first", "last", "max"))
    log(f"  after the load: open connections {fmt(conns_after, '')}, descriptors "
        f"{fmt(fds_after, '')} (baseline {fds_base}), RSS {fmt(rss_after, 'MiB')} MiB "
        f"(baseline {rss_base / 2**20:.1f})")
    table("disturbances", sorted(mutator.counts.items()) + [
        ("access log rotations", rotator.rotations),
        ("  of which found no log to rename", rotator.missing),
        ("descriptor exhaustions (1 s)", len(exhauster.windows))])
    if exhauster.skipped:
        log(f"  {exhauster.skipped}")
    failures += problems

    for key, label, unit, fn, text in (
            ("rss", "RSS", "MiB", lambda f: f * RSS_RATIO, f"x{RSS_RATIO}"),
            ("fds", "open descriptors", "", lambda f: f + FD_SLACK, f"+{FD_SLACK}"),
            ("conns", "open connections", "", lambda f: f + CONN_SLACK, f"+{CONN_SLACK}"),
            ("p99", "p99 latency", "ms", lambda f: f * P99_RATIO + P99_SLACK,
             f"x{P99_RATIO} + {P99_SLACK * 1000:.0f} ms")):
        fail, line = growth(samples, key, label, unit, fn, text)
        log(line)
        if fail:
            failures.append(fail)

    if not died:
        if conns_after is None or conns_after > CONNS_IDLE:
            failures.append(f"open connections not back near zero after the load: {conns_after}")
        if fds_after > fds_base + FD_SLACK:
            failures.append(f"descriptors after the load {fds_after}, baseline {fds_base}")
        served = sum(v for k, v in (m_final or {}).items() if k.startswith("ringhttpd_requests_total"))
        lines = rotator.lines + current_lines
        logged_scrapes = metrics.scrapes
        log(f"access log: {lines} lines in {rotator.rotations} rotations; server counted "
            f"{served:.0f} requests + {logged_scrapes} metrics scrapes = "
            f"{served + logged_scrapes:.0f}; log descriptors open at the end: "
            f"{len(log_files_open)}, all on {os.path.basename(args.log)}: "
            f"{all(t == args.log for t in log_files_open)}")
        if lines < served + logged_scrapes:
            failures.append(f"access log lost lines: {lines} lines for "
                            f"{served + logged_scrapes:.0f} responses")
        else:
            log(f"  {lines - served - logged_scrapes:.0f} more lines than counted responses: "
                f"unfinished responses (resets, short bodies) are logged but not counted")
        if any(t != args.log for t in log_files_open):
            failures.append(f"access log not reopened: server still writes {log_files_open}")
        if m_final:
            closed = {k.split('"')[1]: int(v) for k, v in m_final.items()
                      if k.startswith("ringhttpd_connections_closed_total")}
            paused = {k.split('"')[1]: int(v) for k, v in m_final.items()
                      if k.startswith("ringhttpd_accept_paused_total")}
            codes = {k.split('"')[1]: int(v) for k, v in m_final.items()
                     if k.startswith("ringhttpd_requests_total") and v}
            log(f"server: responses by code {codes}; connections closed by reason {closed}; "
                f"accept paused {paused}")

    if findings:
        groups = {}
        for f in findings:
            key = re.sub(r"\d+", "N", f)
            groups.setdefault(key, [0, f])[0] += 1
        log(f"findings ({len(findings)}), grouped, one example each:")
        for n, example in sorted(groups.values(), key=lambda g: -g[0])[:10]:
            log(f"  {n:>7}x  {example}")
        failures.append(f"{len(findings)} wrong responses or failures outside exhaustion windows")
    for f in failures:
        log(f"FAIL: {f}")
    log("result: " + ("FAIL" if failures else "PASS"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
