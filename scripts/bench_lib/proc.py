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


def _stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (the command name may hold spaces and
    parentheses, so split after the last ')')."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    return raw[raw.rfind(b")") + 2:].split()


def tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry)[1])  # field 4
        except (OSError, IndexError, ValueError):
            continue  # the process went away while we looked
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(root):
    total = 0
    for pid in tree(root):
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # fields 14 (utime) and 15 (stime)
    return total


def rss_bytes(root):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024  # kB
                        break
        except OSError:
            continue
    return total


def main(argv):
    if len(argv) != 3 or argv[1] not in ("cpu", "rss", "tree"):
        sys.exit(__doc__)
    pid = int(argv[2])
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit(f"proc.py: no process {pid}")
    if argv[1] == "cpu":
        print(cpu_ticks(pid))
    elif argv[1] == "rss":
        print(rss_bytes(pid))
    else:
        print("\n".join(map(str, tree(pid))))


if __name__ == "__main__":
    main(sys.argv)
