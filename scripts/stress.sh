#!/usr/bin/env bash
# Slowloris and idle keep-alive stress test of ringhttpd, on loopback only.
#
#   scripts/stress.sh [--no-build]
#
# Builds the release binary (unless --no-build), starts it on 127.0.0.1 with
# short timeouts, and runs scripts/stress_lib/stress.py against it: 1,500
# slowloris connections and 5,000 idle keep-alive connections held while a
# normal client requests /index.html every ~10 ms. Prints normal-traffic
# latency under attack, how promptly the held connections were reaped, the
# server's RSS per idle connection and its open descriptors before, at peak
# and after. Exits non-zero if normal p99 > 1 s, reaping failed or descriptors
# leaked. The run itself takes about 15 s (the build is extra).
#
# Environment:
#   SLOW_CONNS         slowloris connections (default 1500)
#   IDLE_CONNS         idle keep-alive connections (default 5000)
#   HEADER_TIMEOUT     server --header-timeout in seconds (default 5)
#   KEEPALIVE_TIMEOUT  server --keepalive-timeout in seconds (default 10)
#   WORKERS            server workers (default 2)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

SLOW_CONNS="${SLOW_CONNS:-1500}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
HEADER_TIMEOUT="${HEADER_TIMEOUT:-5}"
KEEPALIVE_TIMEOUT="${KEEPALIVE_TIMEOUT:-10}"
WORKERS="${WORKERS:-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BUILD=1

die() {
    printf 'stress: error: %s\n' "$*" >&2
    exit 1
}

case "${1:-}" in
    "") ;;
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
esac

# SERVER_PID, WORK_DIR, the EXIT trap that stops the server and removes WORK_DIR, and
# await_listening.
# shellcheck source-path=SCRIPTDIR source=lib/own_server.sh
. "$REPO/scripts/lib/own_server.sh"

# Every held connection costs a descriptor in the driver and one in the server.
raise_fd_limit() {
    local hard need=$((SLOW_CONNS + IDLE_CONNS + 512))
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ]; then
        [ "$hard" -ge "$need" ] || die "descriptor hard limit $hard is below the $need needed"
        ulimit -n "$hard"
    else
        ulimit -n "$need"
    fi
    printf 'descriptor limit: %s\n' "$(ulimit -n)"
}

# Starts the server on port 0; sets SERVER_PID and SERVER_PORT.
start_server() {
    local bin="$TARGET_DIR/release/ringhttpd" line
    [ -x "$bin" ] || die "$bin not built (run without --no-build)"
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-stress.XXXXXX")
    mkdir -p "$WORK_DIR/root"
    printf '<!DOCTYPE html>\n<html><body>stress test index</body></html>\n' \
        >"$WORK_DIR/root/index.html"
    "$bin" -a 127.0.0.1 -p 0 -r "$WORK_DIR/root" -w "$WORKERS" \
        --header-timeout "$HEADER_TIMEOUT" --keepalive-timeout "$KEEPALIVE_TIMEOUT" \
        </dev/null >/dev/null 2>"$WORK_DIR/stderr" &
    SERVER_PID=$!
    line=$(await_listening "$WORK_DIR/stderr") || exit 1
    SERVER_PORT=$(printf '%s\n' "$line" | sed -E 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/')
    printf 'server pid %s on 127.0.0.1:%s (workers %s, --header-timeout %s, --keepalive-timeout %s)\n' \
        "$SERVER_PID" "$SERVER_PORT" "$WORKERS" "$HEADER_TIMEOUT" "$KEEPALIVE_TIMEOUT"
}

main() {
    command -v python3 >/dev/null 2>&1 || die "python3 is required"
    if [ "$BUILD" = 1 ]; then
        cargo build --release --bin ringhttpd
    fi
    raise_fd_limit
    start_server
    local status=0
    timeout 120 python3 "$REPO/scripts/stress_lib/stress.py" \
        --port "$SERVER_PORT" --pid "$SERVER_PID" --slow "$SLOW_CONNS" --idle "$IDLE_CONNS" \
        --header-timeout "$HEADER_TIMEOUT" --keepalive-timeout "$KEEPALIVE_TIMEOUT" || status=$?
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK_DIR/stderr" >&2
        die "the server exited during the run"
    fi
    if grep -qE 'panicked|fatal:' "$WORK_DIR/stderr"; then
        cat "$WORK_DIR/stderr" >&2
        die "the server panicked during the run"
    fi
    return "$status"
}

main "$@"
