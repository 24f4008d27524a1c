#!/usr/bin/env bash
# Command of the "tests" service in docker-compose.yml (Dockerfile target
# "test", working directory /src):
#   1. the repository's test suite (cargo test, a debug build: the
#      fault-injection hooks some tests use exist only there), which starts
#      its own servers inside this container;
#   2. an ab smoke run against the "ringhttpd" service over the compose
#      network, with and without keep-alive, requiring every request to
#      complete with a 2xx answer.
# Exit status: 0 only if both parts pass.
set -euo pipefail

url="${RINGHTTPD_URL:-http://ringhttpd:8080/}"
requests="${AB_REQUESTS:-2000}"
concurrency="${AB_CONCURRENCY:-50}"

if [[ "${SKIP_CARGO_TEST:-0}" == "1" ]]; then
    echo "==> SKIP_CARGO_TEST=1: test suite skipped"
else
    echo "==> cargo test --locked"
    cargo test --locked
fi

smoke() {
    local label="$1"; shift
    local out
    echo
    echo "==> ab ${*:+$* }-n $requests -c $concurrency $url ($label)"
    if ! out="$(ab "$@" -n "$requests" -c "$concurrency" "$url" 2>&1)"; then
        printf '%s\n' "$out"
        echo "compose-tests: ab failed ($label)" >&2
        return 1
    fi
    printf '%s\n' "$out" | sed -n '/^Server Software/,/^Transfer rate/p'
    local complete failed
    complete="$(awk '/^Complete requests:/ {print $3}' <<<"$out")"
    failed="$(awk '/^Failed requests:/ {print $3}' <<<"$out")"
    if [[ "$complete" != "$requests" || "$failed" != "0" ]] ||
        grep -q '^Non-2xx responses:' <<<"$out"; then
        printf '%s\n' "$out" | grep -E '^(Complete|Failed|Non-2xx)' >&2
        echo "compose-tests: smoke run failed ($label)" >&2
        return 1
    fi
    echo "ok: $complete requests, 0 failed, all 2xx ($label)"
}

smoke "new connection per request"
smoke "keep-alive" -k

echo
echo "compose-tests: all passed"
