#!/usr/bin/python3
"""Run a command under a Docker-format seccomp profile, without Docker.

    deploy/seccomp-run.py deploy/seccomp-io_uring.json \\
        target/release/ringhttpd -a 127.0.0.1 -p 8080 -r www

The profile is turned into a filter the way runc does it: rules whose action
equals the default action are skipped, and so are syscall names that do not
exist on this architecture; then the filter is loaded and the command is
exec'd under it. Use it to check that the server (or cargo test) still works
under the profile after code changes.

Needs the libseccomp Python bindings: apt-get install python3-seccomp (run
with the system python3, /usr/bin/python3).
"""
import json
import os
import sys

try:
    import seccomp
except ImportError:
    sys.exit("seccomp-run: the libseccomp bindings are missing: apt-get install python3-seccomp")

OPS = {
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}


def action(name, errno_ret, default_errno):
    if name == "SCMP_ACT_ALLOW":
        return seccomp.ALLOW
    if name == "SCMP_ACT_ERRNO":
        return seccomp.ERRNO(default_errno if errno_ret is None else errno_ret)
    sys.exit(f"seccomp-run: action {name} is not supported by this tool")


def main():
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} PROFILE.json COMMAND [ARG...]")
    with open(sys.argv[1]) as f:
        profile = json.load(f)
    default_errno = profile.get("defaultErrnoRet", 1)  # EPERM, as in runc
    default = action(profile["defaultAction"], None, default_errno)
    filt = seccomp.SyscallFilter(defaction=default)

    skipped = []
    for rule in profile["syscalls"]:
        act = action(rule["action"], rule.get("errnoRet"), default_errno)
        if act == default:
            continue  # redundant; runc skips it too
        args = []
        for a in rule.get("args") or []:
            if a["op"] == "SCMP_CMP_MASKED_EQ":
                args.append(seccomp.Arg(a["index"], OPS[a["op"]], a["value"], a.get("valueTwo", 0)))
            else:
                args.append(seccomp.Arg(a["index"], OPS[a["op"]], a["value"]))
        for name in rule["names"]:
            try:
                if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
                    skipped.append(name)
                    continue
            except (ValueError, RuntimeError):
                skipped.append(name)
                continue
            filt.add_rule(act, name, *args)

    if os.environ.get("SECCOMP_RUN_VERBOSE"):
        print(f"seccomp-run: not syscalls on this architecture: {' '.join(skipped)}", file=sys.stderr)
    filt.load()
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
