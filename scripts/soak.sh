#!/usr/bin/env bash
# Long mixed-load soak test of ringhttpd, on loopback only.
#
#   scripts/soak.sh [MINUTES] [--tls] [--no-build] [--bin PATH]
#
# Builds the release binary (unless --no-build or --bin), starts it on 127.0.0.1 (port 0,
# 2 workers, an access log, --metrics 127.0.0.1:0, 5 s timeouts) over a generated document
# root, and runs scripts/soak_lib/soak.py against it for MINUTES (default 10): keep-alive and
# new-connection clients with plain, range, multi-range and conditional requests, slow
# readers and resets mid-body, while files are replaced by rename, truncated and rewritten in
# place, deleted and recreated every 0.2-0.4 s, the access log is rotated (rename + SIGHUP)
# every 3-5 s and the server's descriptor limit is exhausted for 1 s every 20-40 s.
#
# Every response is checked against the versions its file can have; every 10 s a line shows
# the server's RSS, open descriptors, open connections and the p99 latency of normal
# requests. Exits non-zero on any wrong response, a 5xx (503 outside an exhaustion window),
# a server death or restart, lost access log lines, or RSS/descriptors/connections/latency
# growing over the run (see soak_lib/soak.py). The run takes MINUTES plus about 30 s.
#
# --tls: the same load over HTTPS. A self-signed certificate for localhost is generated for the
# run (openssl), the server listens with --https-only on an ephemeral --tls-port (kTLS where the
# kernel has it, rustls records otherwise; --ktls as the server decides), and every client
# connection runs in TLS, trusting that certificate; the same checks apply.
#
# Environment:
#   WORKERS            server workers (default 2)
#   TIMEOUT            server --header/--keepalive/--send-timeout in seconds (default 5)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

WORKERS="${WORKERS:-2}"
TIMEOUT="${TIMEOUT:-5}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
MINUTES=10
BUILD=1
BIN=""
TLS=0
EXTRA=()

die() {
    printf 'soak: error: %s\n' "$*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0 ;;
        --tls) TLS=1 ;;
        --bin)
            [ $# -ge 2 ] || die "--bin needs a path"
            BIN="$2"
            BUILD=0
            shift
            ;;
        --bin=*)
            BIN="${1#--bin=}"
            BUILD=0
            ;;
        --plant-wrong-version) EXTRA+=(--plant-wrong-version) ;; # debug: proves the checker can fail
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "unknown argument: $1 (see --help)"
            MINUTES="$1"
            ;;
    esac
    shift
done
[ -n "$BIN" ] || BIN="$TARGET_DIR/release/ringhttpd"

STOP_GRACE_TENTHS=100
# SERVER_PID, WORK_DIR, the EXIT trap that stops the server and removes WORK_DIR, and
# await_listening.
# shellcheck source-path=SCRIPTDIR source=lib/own_server.sh
. "$REPO/scripts/lib/own_server.sh"

# Starts the server on port 0; sets SERVER_PID, SERVER_PORT and METRICS_ADDR.
start_server() {
    local line mline
    [ -x "$BIN" ] || die "$BIN not built (run without --no-build, or name one with --bin)"
    WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-soak.XXXXXX")
    mkdir -p "$WORK_DIR/root" "$WORK_DIR/tmp"
    : >"$WORK_DIR/stderr" # exists before the first grep below
    local tls_args=()
    if [ "$TLS" = 1 ]; then
        command -v openssl >/dev/null 2>&1 || die "--tls needs openssl (to make the run's certificate)"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$WORK_DIR/key.pem" -out "$WORK_DIR/cert.pem" -days 2 -subj /CN=localhost \
            -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1 ||
            die "openssl could not make a certificate"
        tls_args=(--tls-cert "$WORK_DIR/cert.pem" --tls-key "$WORK_DIR/key.pem" --tls-port 0 --https-only)
        EXTRA+=(--tls "$WORK_DIR/cert.pem")
    fi
    "$BIN" -a 127.0.0.1 -p 0 -r "$WORK_DIR/root" -w "$WORKERS" \
        --access-log "$WORK_DIR/access.log" --metrics 127.0.0.1:0 \
        --header-timeout "$TIMEOUT" --keepalive-timeout "$TIMEOUT" --send-timeout "$TIMEOUT" \
        --shutdown-timeout 5 "${tls_args[@]}" </dev/null >/dev/null 2>"$WORK_DIR/stderr" &
    SERVER_PID=$!
    line=$(await_listening "$WORK_DIR/stderr") || exit 1
    mline=$(grep -m 1 'metrics on http://' "$WORK_DIR/stderr" || true)
    [ -n "$mline" ] || die "server did not report a metrics address (a binary without --metrics?)"
    SERVER_PORT=$(printf '%s\n' "$line" | sed -E 's#.*listening on (https://)?127\.0\.0\.1:([0-9]+).*#\2#')
    METRICS_ADDR=$(printf '%s\n' "$mline" | sed -E 's#.*metrics on http://([^/]+)/metrics.*#\1#')
    printf 'server %s pid %s on %s127.0.0.1:%s, metrics %s (workers %s, timeouts %s s)\n' \
        "$BIN" "$SERVER_PID" "$([ "$TLS" = 1 ] && printf 'https://')" "$SERVER_PORT" "$METRICS_ADDR" \
        "$WORKERS" "$TIMEOUT"
}

# The server's own account of the run: its warnings and errors, grouped.
server_log_summary() {
    local n
    n=$(grep -c -v ': info: ' "$WORK_DIR/stderr" || true)
    printf 'server stderr: %s lines, %s of them warnings or errors\n' \
        "$(wc -l <"$WORK_DIR/stderr")" "$n"
    grep -v ': info: ' "$WORK_DIR/stderr" | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -10 || true
}

main() {
    command -v python3 >/dev/null 2>&1 || die "python3 is required"
    if [ "$BUILD" = 1 ]; then
        # Waits on its own if another build holds the target directory's lock.
        cargo build --release --bin ringhttpd
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    start_server
    local status=0 limit
    limit=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 + 240 }')
    timeout "$limit" python3 "$REPO/scripts/soak_lib/soak.py" \
        --port "$SERVER_PORT" --metrics "$METRICS_ADDR" --pid "$SERVER_PID" \
        --root "$WORK_DIR/root" --tmp "$WORK_DIR/tmp" --log "$WORK_DIR/access.log" \
        --minutes "$MINUTES" --keepalive-timeout "$TIMEOUT" --send-timeout "$TIMEOUT" \
        "${EXTRA[@]}" || status=$?
    [ "$status" != 124 ] || printf 'soak: the driver ran past %s s and was stopped\n' "$limit"
    server_log_summary
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 20 "$WORK_DIR/stderr" >&2
        die "the server exited during the run"
    fi
    if grep -qE 'panicked|fatal:' "$WORK_DIR/stderr"; then
        grep -E -A5 'panicked|fatal:' "$WORK_DIR/stderr" >&2
        die "the server panicked during the run"
    fi
    return "$status"
}

main "$@"
