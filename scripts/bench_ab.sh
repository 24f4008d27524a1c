#!/usr/bin/env bash
# Interleaved before/after comparison of two ringhttpd binaries on this machine, for changes
# whose cost per request is smaller than the run-to-run spread of scripts/bench.sh.
#
#   scripts/bench_ab.sh OLD_BIN NEW_BIN [ROUNDS] [WORKLOADS]
#
# Each round starts OLD, runs one workload, stops it, then does the same with NEW, so both
# meet the same background noise. WORKLOADS (default "ab index.html 16k.bin"): `ab` is
# `ab -n $AB_N -c 100` on /index.html (a new connection per request; AB_N defaults to 30000),
# anything else is a file fetched with `wrk -t1 -d5s` (keep-alive) over the connections
# bench.sh uses for it: 16 for 1m.bin, 1 for 100m.bin (the stream), 100 otherwise. Servers run
# with 2 workers and --no-pin over a generated root (11-byte index.html, 16 KiB 16k.bin, and
# 1m.bin and 100m.bin when asked for). Prints
# one line per run: label, workload, req/s, and the server's CPU (user+system, from
# /proc/PID/stat) per completed request in µs. Compare medians.
set -euo pipefail

[ "$#" -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
OLD="$1" NEW="$2" ROUNDS="${3:-3}" WORKLOADS="${4:-ab index.html 16k.bin}"
AB_N="${AB_N:-30000}"
for tool in ab wrk bc; do
    command -v "$tool" >/dev/null || { echo "bench_ab: $tool is required" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-ab.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/root"
printf 'hello world' >"$WORK/root/index.html"
head -c 16384 /dev/urandom >"$WORK/root/16k.bin"
case " $WORKLOADS " in *" 1m.bin "*) head -c 1048576 /dev/urandom >"$WORK/root/1m.bin" ;; esac
case " $WORKLOADS " in *" 100m.bin "*) head -c 104857600 /dev/urandom >"$WORK/root/100m.bin" ;; esac

# wrk connections per file, as bench.sh runs it.
connections() {
    case "$1" in
    1m.bin) echo 16 ;;
    100m.bin) echo 1 ;;
    *) echo 100 ;;
    esac
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {
    local bin="$1" label="$2" workload="$3" pid addr c0 c1 out n rps i
    : >"$WORK/err"
    "$bin" -a 127.0.0.1 -p 0 -r "$WORK/root" -w 2 --no-pin 2>"$WORK/err" &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        grep -q 'listening on' "$WORK/err" && break
        sleep 0.05
    done
    addr="$(grep -o 'listening on [^ ]*' "$WORK/err" | cut -d' ' -f3)"
    c0="$(cpu_ticks "$pid")"
    if [ "$workload" = ab ]; then
        out="$(ab -q -n "$AB_N" -c 100 "http://$addr/index.html" 2>&1)"
        n="$(awk '/^Complete requests/ {print $3}' <<<"$out")"
        rps="$(awk '/^Requests per second/ {print $4}' <<<"$out")"
    else
        out="$(wrk -t1 -c"$(connections "$workload")" -d5s "http://$addr/$workload" 2>&1)"
        n="$(awk '/requests in/ {print $1}' <<<"$out")"
        rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    fi
    c1="$(cpu_ticks "$pid")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # Clock ticks are 10 ms: (ticks × 10,000 µs) / requests.
    printf '%s %s rps=%s cpu_us_per_req=%.2f\n' "$label" "$workload" "$rps" \
        "$(bc -l <<<"($c1 - $c0) * 10000 / $n")"
}

for ((r = 0; r < ROUNDS; r++)); do
    for workload in $WORKLOADS; do
        run "$OLD" old "$workload"
        run "$NEW" new "$workload"
    done
done
