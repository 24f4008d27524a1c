#!/usr/bin/env python3
"""Process-tree accounting for scripts/bench.sh.

A server under test is a whole tree (nginx master + workers, lighttpd's
watcher + forked workers, a threaded h2o or ringhttpd), so every figure here
is summed over the given PID and all of its descendants.  Threads need no
special care: /proc/PID/stat and /proc/PID/status already cover every thread
of the process.

    proc.py cpu  PID   -> utime+stime of the tree, in clock ticks
    proc.py rss  PID   -> VmRSS of the tree, in bytes
    proc.py tree PID   -> the PIDs of the tree, one per line (for cleanup)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pylib import procstat  # noqa: E402


def tree_cpu_ticks(root):
    total = 0
    for pid in procstat.tree(root):
        try:
            total += procstat.cpu_ticks(pid)
        except OSError:
            continue  # the process went away while we looked
    return total


def tree_rss_bytes(root):
    total = 0
    for pid in procstat.tree(root):
        try:
            total += procstat.rss_bytes(pid)
        except (OSError, RuntimeError):
            continue  # gone, or a zombie (no VmRSS)
    return total


def main(argv):
    if len(argv) != 3 or argv[1] not in ("cpu", "rss", "tree"):
        sys.exit(__doc__)
    pid = int(argv[2])
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit(f"proc.py: no process {pid}")
    if argv[1] == "cpu":
        print(tree_cpu_ticks(pid))
    elif argv[1] == "rss":
        print(tree_rss_bytes(pid))
    else:
        print("\n".join(map(str, procstat.tree(pid))))


if __name__ == "__main__":
    main(sys.argv)
