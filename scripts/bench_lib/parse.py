#!/usr/bin/env python3
"""Turn one load generator's output into the numbers scripts/bench.sh keeps.

    parse.py wrk FILE   (output of wrk run with -s wrk_report.lua)
    parse.py ab  FILE   (output of ab)

Prints `requests duration_seconds bytes errors` on one line, or exits 1 if
the output holds no result (the tool crashed or was killed).

errors = wrk: socket errors (connect + read + write + timeout) + non-2xx/3xx
         ab:  "Failed requests" + "Non-2xx responses"
"""
import re
import sys


def parse_wrk(text):
    m = re.search(r"^BENCH (.*)$", text, re.M)
    if not m:
        return None
    f = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    errors = f["connect"] + f["read"] + f["write"] + f["timeout"] + f["status"]
    return f["requests"], f["duration_us"] / 1e6, f["bytes"], errors


def parse_ab(text):
    def grab(pattern, default=None):
        m = re.search(pattern, text, re.M)
        return m.group(1) if m else default

    done = grab(r"^Complete requests:\s+(\d+)")
    took = grab(r"^Time taken for tests:\s+([\d.]+) seconds")
    total = grab(r"^Total transferred:\s+(\d+) bytes")
    if done is None or took is None or total is None:
        return None
    failed = int(grab(r"^Failed requests:\s+(\d+)", "0"))
    non2xx = int(grab(r"^Non-2xx responses:\s+(\d+)", "0"))
    return int(done), float(took), int(total), failed + non2xx


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("wrk", "ab"):
        sys.exit(__doc__)
    with open(sys.argv[2], errors="replace") as f:
        text = f.read()
    res = (parse_wrk if sys.argv[1] == "wrk" else parse_ab)(text)
    if res is None:
        sys.exit(1)
    print("%d %.6f %d %d" % res)


if __name__ == "__main__":
    main()
