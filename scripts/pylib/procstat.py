"""A process seen through /proc: the one reader of its memory, CPU time, descriptors and
start time, and of the tree of its descendants.

    rss_bytes(pid)    -> VmRSS in bytes (RuntimeError if /proc/PID/status has none: a zombie)
    cpu_ticks(pid)    -> utime + stime, in clock ticks
    open_fds(pid)     -> how many descriptors are open
    fd_targets(pid)   -> what each open descriptor points to (readlink), vanished ones left out
    start_time(pid)   -> the start time field of /proc/PID/stat (str; changes on a restart)
    stat_fields(pid)  -> fields 3.. of /proc/PID/stat
    tree(root)        -> root and all its descendants' PIDs

Every figure covers all threads of the process. A process that is gone raises OSError;
callers that tolerate that catch it. Standard library only.
"""
import os


def stat_fields(pid):
    """Fields 3.. of /proc/PID/stat as str (the command name may hold spaces and parentheses,
    so split after the last ')'); index i is field i + 3."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    return raw[raw.rfind(b")") + 2:].decode("ascii").split()


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


def cpu_ticks(pid):
    f = stat_fields(pid)
    return int(f[11]) + int(f[12])  # fields 14 (utime) and 15 (stime)


def start_time(pid):
    return stat_fields(pid)[19]  # field 22


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed while we looked
    return out


def tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(stat_fields(entry)[1])  # field 4
        except (OSError, IndexError, ValueError):
            continue  # the process went away while we looked
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out
