#!/usr/bin/env bash
# What one request costs ringhttpd at the kernel interface: io_uring_enter calls, submissions
# and completions, sleeps in the ring's wait, context switches, sendfile and cachestat calls,
# and CPU time, each divided by the requests completed (perf stat tracepoints on the server's
# process while wrk or ab runs).
#
#   scripts/per_request.sh [--bin PATH] [--workers N] [WORKLOAD...]
#
# WORKLOAD: `ab` (ab -n 30000 -c 100 on /index.html, a new connection per request), or a
# file fetched with wrk -t1 -d5s over keep-alive connections: index.html (11 B, 100
# connections), 16k.bin (100), 1m.bin (16). Default: ab index.html 16k.bin 1m.bin, 1 worker
# (with one worker, "completions per wake-up" is a property of the loop, not of how the
# connections were spread). Needs root (tracepoints), perf, wrk and ab.
set -euo pipefail

prog=per_request.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 2; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/target/release/ringhttpd"
workers=1
workloads=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) workloads+=("$1"); shift ;;
    esac
done
[[ ${#workloads[@]} -gt 0 ]] || workloads=(ab index.html 16k.bin 1m.bin)
[[ -x "$bin" ]] || die "no ringhttpd binary at $bin (cargo build --release, or --bin PATH)"
for tool in perf wrk ab; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-per-request.XXXXXX")"
server=""
cleanup() {
    if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/root"
printf 'hello world' >"$work/root/index.html"
head -c 16384 /dev/urandom >"$work/root/16k.bin"
head -c 1048576 /dev/urandom >"$work/root/1m.bin"

events=(
    syscalls:sys_enter_io_uring_enter io_uring:io_uring_submit_req io_uring:io_uring_complete
    io_uring:io_uring_cqring_wait sched:sched_switch syscalls:sys_enter_sendfile64
    syscalls:sys_enter_cachestat task-clock
)
labels=(
    "io_uring_enter calls" "submissions (SQEs)" "completions (CQEs)" "sleeps in the ring's wait"
    "context switches" "sendfile calls" "cachestat calls" "CPU µs"
)
event_list="$(IFS=,; echo "${events[*]}")"
perf stat -e "$event_list" -- true >/dev/null 2>&1 ||
    die "perf cannot read the tracepoints (run as root; some events need Linux 6.5+ for cachestat)"

header="$(IFS='|'; echo "${labels[*]}")"
printf '| workload | %s |\n' "${header//|/ | }"
printf '|---|%s\n' "$(printf -- '--:|%.0s' "${labels[@]}")"
for workload in "${workloads[@]}"; do
    "$bin" -a 127.0.0.1 -p 0 -r "$work/root" -w "$workers" --no-pin 2>"$work/err" &
    server=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$work/err" && break
        sleep 0.05
    done
    addr="$(grep -o 'listening on [^ ]*' "$work/err" | cut -d' ' -f3)"
    [[ -n "$addr" ]] || die "the server did not start: $(cat "$work/err")"
    perf stat -x, -e "$event_list" -p "$server" -o "$work/stat" -- sleep 5.5 &
    stat_pid=$!
    sleep 0.2
    case "$workload" in
    ab) n="$(ab -q -n 30000 -c 100 "http://$addr/index.html" 2>&1 | awk '/^Complete requests/ {print $3}')" ;;
    1m.bin) n="$(wrk -t1 -c16 -d5s "http://$addr/$workload" | awk '/requests in/ {print $1}')" ;;
    *) n="$(wrk -t1 -c100 -d5s "http://$addr/$workload" | awk '/requests in/ {print $1}')" ;;
    esac
    wait "$stat_pid"
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    [[ "${n:-0}" -gt 0 ]] || die "$workload: no request completed"
    row="$(awk -F, -v n="$n" '!/^#/ && NF > 2 {
        # task-clock is in milliseconds
        if ($3 == "task-clock") printf " %.2f |", $1 * 1000 / n; else printf " %.3f |", $1 / n }' "$work/stat")"
    printf '| %s (%s requests) |%s\n' "$workload" "$n" "$row"
done
