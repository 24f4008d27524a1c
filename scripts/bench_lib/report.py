#!/usr/bin/env python3
"""Render the Markdown report of scripts/bench.sh from its work directory.

    report.py WORKDIR

WORKDIR holds (all tab-separated, written by bench.sh):
  meta.tsv     key, value            (host facts, command, workload titles)
  results.tsv  server, workload, round, requests, duration_s, bytes, errors,
               cpu_ticks             (NA where a run produced no result)
  mem.tsv      server, rss_before, rss_after, opened, failed, alive
  notes.txt    free-text notes (skipped servers, failures), one per line

With https-* workloads, meta.tsv also holds tls.cert, tls.config,
tls.servers (the servers with an HTTPS port), tls.<server> (what an OpenSSL
client negotiated) and ktls.nginx; a server without HTTPS shows "skipped"
in the https tables.

Per cell, req/s, MB/s and CPU µs/req are the medians over rounds (each round
computed on its own); errors are summed over all rounds so none is hidden.
Ratios are peer / ringhttpd: req/s ratio > 1 means the peer served more,
CPU ratio > 1 means the peer spent more CPU per request.
"""
import os
import statistics
import sys

REF = "ringhttpd"
# A second ringhttpd build (--baseline-bin): never a peer.
BASELINE = "baseline"


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def fmt_rate(x):
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_mb(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fmt_us(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fmt_ratio(x, ref):
    if x is None or ref is None or ref == 0:
        return "–"
    return f"{x / ref:.2f}×"


def versus_best(summary, wl, peers, key, best):
    """ringhttpd's `key` ÷ the best peer's (`best` is max or min), naming that peer."""
    ours = summary(REF, wl)
    theirs = [(c[key], p) for p in peers
              for c in [summary(p, wl)] if c and c[key] is not None]
    if not ours or ours[key] is None or not theirs:
        return "–"
    value, peer = best(theirs)
    return f"{fmt_ratio(ours[key], value)} ({peer})"


def regression_line(w, summary, workloads):
    """This build against the baseline build of the same run, per workload, and one line
    naming every workload where it lost by more than the two builds' spread."""
    w("## ringhttpd against the baseline (regression line)")
    w("")
    w("Per workload: this build's req/s ÷ the baseline build's, and its CPU µs/req ÷ the "
      "baseline's, measured in the same rounds. A ratio counts as a regression only "
      "beyond the larger of the two builds' req/s spreads.")
    w("")
    w("| workload | req/s vs baseline | CPU/req vs baseline | beyond the spread |")
    w("|---|--:|--:|---|")
    worse = []
    unjudged = 0
    for wl in workloads:
        ours, base = summary(REF, wl), summary(BASELINE, wl)
        if not ours or not base:
            w(f"| {wl} | – | – | not measured |")
            continue
        if ours["spread"] is None or base["spread"] is None:
            w(f"| {wl} | {fmt_ratio(ours['rps'], base['rps'])} "
              f"| {fmt_ratio(ours['cpu'], base['cpu'])} | not judged (one round: no spread) |")
            unjudged += 1
            continue
        noise = max(ours["spread"], base["spread"])
        notes = []
        if ours["rps"] and base["rps"]:
            if ours["rps"] / base["rps"] < 1 - noise:
                notes.append("slower")
            elif ours["rps"] / base["rps"] > 1 + noise:
                notes.append("faster")
        if ours["cpu"] and base["cpu"]:
            if ours["cpu"] / base["cpu"] > 1 + noise:
                notes.append("more CPU")
            elif ours["cpu"] / base["cpu"] < 1 - noise:
                notes.append("less CPU")
        if "slower" in notes or "more CPU" in notes:
            worse.append(f"{wl} ({', '.join(notes)})")
        w(f"| {wl} | {fmt_ratio(ours['rps'], base['rps'])} "
          f"| {fmt_ratio(ours['cpu'], base['cpu'])} "
          f"| {', '.join(notes) or f'no (spread {noise:.0%})'} |")
    w("")
    if worse:
        line = "worse than the baseline beyond the spread in " + "; ".join(worse)
    elif unjudged == len(workloads):
        line = "not judged (run two rounds or more)"
    else:
        line = "no workload worse than the baseline beyond the spread"
    w(f"Regression line: {line}.")
    w("")


def cpu_set(meta, key):
    """A CPU-set row: the taskset list and its size, or 'not confined'."""
    cpus = meta.get(key, "")
    if not cpus:
        return "any (not confined)"
    n = meta.get(key + "_n", "?")
    return f"`{cpus}` ({n} CPU{'' if n == '1' else 's'}, `taskset -c`)"


def median(xs):
    return statistics.median(xs) if xs else None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    work = sys.argv[1]
    meta = {}
    for row in read_tsv(os.path.join(work, "meta.tsv")):
        meta[row[0]] = row[1] if len(row) > 1 else ""
    clk = int(meta.get("clk_tck", "100"))
    servers = [s for s in meta.get("servers", "").split(",") if s]
    workloads = [w for w in meta.get("workloads", "").split(",") if w]
    rounds = int(meta.get("rounds", "1"))

    # cells[(server, workload)] -> list of per-round dicts
    cells = {}
    for row in read_tsv(os.path.join(work, "results.tsv")):
        server, wl, _rnd, req, dur, nbytes, err, ticks = row
        cell = cells.setdefault((server, wl), [])
        if "NA" in (req, dur, nbytes, err):
            cell.append(None)
            continue
        req, dur, nbytes, err = int(req), float(dur), int(nbytes), int(err)
        cpu_us = None
        if ticks != "NA" and req > 0:
            cpu_us = int(ticks) / clk * 1e6 / req
        cell.append({
            "rps": req / dur if dur > 0 else 0.0,
            "mbps": nbytes / dur / 1e6 if dur > 0 else 0.0,
            "err": err,
            "cpu": cpu_us,
        })

    def summary(server, wl):
        runs = cells.get((server, wl), [])
        ok = [r for r in runs if r]
        if not ok:
            return None
        rps = [r["rps"] for r in ok]
        return {
            "rps": median(rps),
            # (max - min) / median over rounds: how far to trust the median
            "spread": (max(rps) - min(rps)) / median(rps)
            if len(rps) > 1 and median(rps) > 0 else None,
            "mbps": median([r["mbps"] for r in ok]),
            "err": sum(r["err"] for r in ok),
            "cpu": median([r["cpu"] for r in ok if r["cpu"] is not None]),
            "n": len(ok),
            "failed": len(runs) - len(ok),
        }

    out = []
    w = out.append
    w(f"# ringhttpd benchmark — {meta.get('date', '?')}")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| date | {meta.get('date', '?')} |")
    w(f"| host | `{meta.get('uname', '?')}` |")
    confined = meta.get("server_cpus") or meta.get("client_cpus")
    where = ("servers and load generators confined to the CPU sets below"
             if confined else "servers and load generators share them")
    w(f"| CPU | {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores "
      f"({where}; loopback only) |")
    w(f"| server CPUs | {cpu_set(meta, 'server_cpus')} |")
    w(f"| load generator CPUs | {cpu_set(meta, 'client_cpus')} |")
    w(f"| workers per server | {meta.get('workers', '?')} |")
    if meta.get("load"):
        w(f"| client threads (-t) and connections (-c) | {meta['load']} |")
    w(f"| rounds | {rounds} (median shown; errors summed over all rounds) |")
    w(f"| command | `{meta.get('command', '?')}` |")
    vers = [meta.get(f"version.{s}", s) for s in servers]
    w(f"| servers | {', '.join(vers) if vers else 'none'} |")
    w(f"| load generators | {meta.get('tools', '?')} |")
    if meta.get("paths"):
        w(f"| tools used | {meta['paths']} |")
    w(f"| load average at start | {meta.get('loadavg', '?')} |")
    w("")
    notes = []
    if os.path.exists(os.path.join(work, "notes.txt")):
        with open(os.path.join(work, "notes.txt")) as f:
            notes = [n.strip() for n in f if n.strip()]
    if REF not in servers:
        notes.insert(0, f"{REF} was not measured: ratio columns are empty.")
    if notes:
        w("Notes:")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")
    w("Ratios are *peer ÷ ringhttpd*: req/s ratio > 1 means the peer served "
      "more; CPU ratio > 1 means the peer spent more CPU time per request. "
      "CPU µs/req is the server's whole process tree (user + system time) "
      "divided by completed requests (measured in clock ticks of "
      f"{1000 / clk:g} ms, so very short runs are coarse). "
      "MB/s counts response headers and bodies, 1 MB = 10^6 bytes. "
      "Spread is (max − min) ÷ median of req/s over the rounds.")
    w("")

    tls_servers = [s for s in meta.get("tls.servers", "").split(",") if s]
    if meta.get("tls.cert"):
        w("## HTTPS setup")
        w("")
        w(f"Each server listens on a second port with TLS: certificate "
          f"{meta['tls.cert']}; {meta.get('tls.config', '?')}. "
          "The https workloads use the address `127.0.0.1`; wrk and ab "
          "do not verify the certificate, the checks below do.")
        w("")
        w("| server | HTTPS | negotiated with `openssl s_client` (the "
          "defaults wrk and ab use) | kernel TLS |")
        w("|---|---|---|---|")
        for s in servers:
            on = s in tls_servers
            # The peers other than nginx never ask for kernel TLS here;
            # whether ringhttpd does is its own business (see the notes).
            peer = s not in (REF, BASELINE)
            ktls = meta.get(f"ktls.{s}", "no (user space)" if on and peer else "–")
            w(f"| {s} | {'yes' if on else 'skipped (no HTTPS)'} "
              f"| {meta.get('tls.' + s, 'n/a' if on else '–')} | {ktls} |")
        w("")

    for wl in workloads:
        w(f"## {meta.get('title.' + wl, wl)}")
        w("")
        cmd = meta.get("cmd." + wl)
        if cmd:
            w(f"`{cmd}`")
            w("")
        w("| server | req/s | spread | MB/s | errors | CPU µs/req "
          "| req/s vs ringhttpd | CPU/req vs ringhttpd |")
        w("|---|--:|--:|--:|--:|--:|--:|--:|")
        ref = summary(REF, wl)
        for s in servers:
            c = summary(s, wl)
            if c is None and wl.startswith("https-") and s not in tls_servers:
                w(f"| {s} | skipped (no HTTPS) | – | – | – | – | – | – |")
                continue
            if c is None:
                w(f"| {s} | n/a | – | n/a | n/a | n/a | – | – |")
                continue
            name = s if not c["failed"] else \
                f"{s} ({c['n']}/{c['n'] + c['failed']} rounds ran)"
            spread = "–" if c["spread"] is None else f"{c['spread']:.0%}"
            w(f"| {name} | {fmt_rate(c['rps'])} | {spread} | {fmt_mb(c['mbps'])} "
              f"| {c['err']:,} | {fmt_us(c['cpu'])} "
              f"| {fmt_ratio(c['rps'], ref and ref['rps'])} "
              f"| {fmt_ratio(c['cpu'], ref and ref['cpu'])} |")
        w("")

    peers = [s for s in servers if s not in (REF, BASELINE)]
    if REF in servers and peers:
        w("## ringhttpd against the best peer")
        w("")
        w("Per workload: ringhttpd's req/s ÷ the best peer's (> 1: ringhttpd "
          "leads), and ringhttpd's CPU µs/req ÷ the least any peer spent "
          "(< 1: ringhttpd spends less).")
        w("")
        w("| workload | req/s vs best peer | CPU/req vs least peer |")
        w("|---|--:|--:|")
        for wl in workloads:
            w(f"| {wl} | {versus_best(summary, wl, peers, 'rps', max)} "
              f"| {versus_best(summary, wl, peers, 'cpu', min)} |")
        w("")

    if REF in servers and BASELINE in servers:
        regression_line(w, summary, workloads)

    mem = {row[0]: row for row in read_tsv(os.path.join(work, "mem.tsv"))}
    if mem:
        n = meta.get("idle_conns", "?")
        w(f"## Memory: {n} idle keep-alive connections")
        w("")
        w("Sum of VmRSS over the server's process tree on a fresh server, "
          f"then with {n} keep-alive connections open and idle (each served "
          "one `GET /index.html` first). Kernel socket buffers are not in "
          "RSS.")
        w("")
        w("| server | RSS before (MiB) | RSS with idle conns (MiB) "
          "| bytes / idle conn | vs ringhttpd | conns still open |")
        w("|---|--:|--:|--:|--:|--:|")

        def per_conn(row):
            if not row or "NA" in row[1:3]:
                return None
            held = int(row[5]) if row[5] != "NA" else int(row[3])
            if held <= 0:
                return None
            return max(0, int(row[2]) - int(row[1])) / held

        ref = per_conn(mem.get(REF))
        for s in servers:
            row = mem.get(s)
            if not row:
                w(f"| {s} | n/a | n/a | n/a | – | n/a |")
                continue
            before = "n/a" if row[1] == "NA" else f"{int(row[1]) / 2**20:.1f}"
            after = "n/a" if row[2] == "NA" else f"{int(row[2]) / 2**20:.1f}"
            pc = per_conn(row)
            pcs = "n/a" if pc is None else f"{pc:,.0f}"
            held = f"{row[5]} of {int(row[3]) + int(row[4])}" \
                if row[3] != "NA" else "n/a"
            w(f"| {s} | {before} | {after} | {pcs} "
              f"| {fmt_ratio(pc, ref)} | {held} |")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
