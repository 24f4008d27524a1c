#!/usr/bin/env bash
# Full check of the repository: formatting, lints, unit and integration tests, then a short
# load smoke test with ApacheBench against a server on an ephemeral port.
# Installs missing tools itself on Debian-like systems when it can (root or passwordless sudo).
#
# Environment:
#   AB_REQUESTS     requests per ab run (default 2000)
#   AB_CONCURRENCY  concurrent ab clients (default 50)
set -euo pipefail

# as_root, apt_install (best effort; failure is reported here, not fatal)
# shellcheck source-path=SCRIPTDIR source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

AB_REQUESTS="${AB_REQUESTS:-2000}"
AB_CONCURRENCY="${AB_CONCURRENCY:-50}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

section() {
    printf '\n==== %s ====\n' "$*"
}

die() {
    printf 'run_tests: error: %s\n' "$*" >&2
    exit 1
}

# Best-effort pip install of a Python package (module name, then package name).
pip_install() {
    local module="$1" package="$2"
    if python3 -c "import $module" >/dev/null 2>&1 ||
        python3 -m pip install --quiet "$package" >/dev/null 2>&1 ||
        python3 -m pip install --quiet --break-system-packages "$package" >/dev/null 2>&1; then
        printf '%s: installed\n' "$package"
    else
        printf '%s: could not install with pip (the tests that use it skip themselves)\n' "$package"
    fi
}

# Installs the Debian package `package` when `command` is missing; dies if it still is.
require_command() {
    local command="$1" package="$2"
    if ! command -v "$command" >/dev/null 2>&1; then
        printf 'trying to install %s with apt-get\n' "$package"
        apt_install "$package" || printf 'could not install %s\n' "$package"
    fi
    command -v "$command" >/dev/null 2>&1 || die "$command (Debian package $package) is required by the tests"
}

require_cargo_component() {
    local component="$1" probe="$2"
    if ! cargo "$probe" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add "$component" || true
        fi
    fi
    cargo "$probe" --version >/dev/null 2>&1 || die "cargo $probe is not available (rustup component add $component)"
}

ensure_tools() {
    section "tools"
    command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH"
    require_cargo_component rustfmt fmt
    require_cargo_component clippy clippy
    if ! command -v ab >/dev/null 2>&1; then
        printf 'trying to install apache2-utils with apt-get\n'
        apt_install apache2-utils || printf 'could not install apache2-utils\n'
    fi
    command -v ab >/dev/null 2>&1 || die "ab (ApacheBench, Debian package apache2-utils) is required for the load smoke test"
    # The HTTPS tests (tests/https.rs) generate their certificates with openssl and drive the
    # server with curl, openssl s_client and Python's ssl module; they fail without them.
    require_command curl curl
    require_command openssl openssl
    require_command python3 python3
    # The TLS scan (scripts/tls_scan.sh) needs testssl.sh.
    require_command testssl testssl.sh
    # Best effort: without them the REDbot audit (tests/redbot.rs) and the Prometheus format
    # check (tests/operations.rs) skip themselves with a line saying so.
    pip_install redbot redbot
    pip_install prometheus_client prometheus_client
    cargo --version
    cargo fmt --version
    cargo clippy --version
    ab -V | sed -n 1p
    curl --version | sed -n 1p
    openssl version
    python3 --version
}

run_checks() {
    section "cargo fmt --check"
    cargo fmt --all -- --check

    section "cargo clippy"
    cargo clippy --all-targets -- -D warnings

    section "cargo test"
    cargo test --all-targets --no-fail-fast

    # The io_uring compat mode (single-shot accepts and receives into buffers of their own)
    # is what kernels 5.10 to 5.19 run; forced here so it is tested on every kernel.
    section "cargo test, io_uring compat mode (RINGHTTPD_IO_URING_COMPAT=1)"
    RINGHTTPD_IO_URING_COMPAT=1 cargo test --tests --no-fail-fast

    if [ -f src/lib.rs ]; then
        section "cargo test --doc"
        cargo test --doc
    fi
}

# --- load smoke test -------------------------------------------------------------------------

STOP_GRACE_TENTHS=0
# SERVER_PID, WORK_DIR, the EXIT trap that stops the server and removes WORK_DIR, and
# await_listening.
# shellcheck source-path=SCRIPTDIR source=lib/own_server.sh
. scripts/lib/own_server.sh

# Starts the server on port 0 over a small document root; sets SERVER_PID and SERVER_ADDR.
start_server() {
    local bin="$1"
    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-load.XXXXXX")"
    mkdir -p "$WORK_DIR/root/dir"
    printf '<html><body>load test index</body></html>\n' >"$WORK_DIR/root/index.html"
    head -c 65536 /dev/urandom >"$WORK_DIR/root/dir/blob.bin"

    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$WORK_DIR/key.pem" -out "$WORK_DIR/cert.pem" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

    : >"$WORK_DIR/stderr"
    "$bin" -a 127.0.0.1 -p 0 -r "$WORK_DIR/root" -w 2 --tls-port 0 \
        --tls-cert "$WORK_DIR/cert.pem" --tls-key "$WORK_DIR/key.pem" \
        </dev/null >/dev/null 2>"$WORK_DIR/stderr" &
    SERVER_PID=$!

    local line
    line=$(await_listening "$WORK_DIR/stderr") || exit 1
    SERVER_ADDR="$(printf '%s\n' "$line" | sed -E 's/.*listening on ([^ ]+).*/\1/')"
    SERVER_TLS_ADDR="$(printf '%s\n' "$line" | sed -E 's|.* and https://([^ ]+).*|\1|')"
    printf 'server pid %s listening on %s and https://%s\n' "$SERVER_PID" "$SERVER_ADDR" "$SERVER_TLS_ADDR"
}

# Runs ab with the given extra arguments against a URL and checks that every request succeeded.
run_ab() {
    local url="$1" requests="$2"
    shift 2
    local out="$WORK_DIR/ab.out"
    printf '\n-- ab -n %s -c %s %s %s\n' "$requests" "$AB_CONCURRENCY" "$*" "$url"
    if ! timeout 120 ab -q -r -s 20 -n "$requests" -c "$AB_CONCURRENCY" "$@" "$url" >"$out" 2>&1; then
        cat "$out" >&2
        die "ab failed against $url"
    fi
    grep -E '^(Complete requests|Failed requests|Non-2xx responses|Requests per second|Time per request)' "$out" || true
    grep -qE "^Complete requests:[[:space:]]+$requests\$" "$out" || { cat "$out" >&2; die "not all requests completed"; }
    grep -qE '^Failed requests:[[:space:]]+0$' "$out" || { cat "$out" >&2; die "ab reported failed requests"; }
    if grep -q '^Non-2xx responses' "$out"; then
        cat "$out" >&2
        die "ab received non-2xx responses"
    fi
}

load_smoke() {
    section "load smoke test (ab)"
    cargo build --bin ringhttpd
    start_server "$TARGET_DIR/debug/ringhttpd"
    run_ab "http://$SERVER_ADDR/index.html" "$AB_REQUESTS"
    run_ab "http://$SERVER_ADDR/index.html" "$AB_REQUESTS" -k
    run_ab "http://$SERVER_ADDR/dir/blob.bin" "$((AB_REQUESTS / 4))" -k
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during the load test"
    if [ -n "${SERVER_TLS_ADDR:-}" ]; then
        run_ab "https://$SERVER_TLS_ADDR/index.html" "$((AB_REQUESTS / 4))"
        run_ab "https://$SERVER_TLS_ADDR/dir/blob.bin" "$((AB_REQUESTS / 4))" -k
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during the HTTPS load test"
    fi
    if grep -qE 'panicked|stack backtrace' "$WORK_DIR/stderr"; then
        cat "$WORK_DIR/stderr" >&2
        die "server panicked during the load test"
    fi
}

# Where a nightly toolchain is present: the fuzz targets must build (a failure fails the run),
# then each runs 10 s. A random search is no gate (it would make CI flaky): a finding is printed
# loudly, with how to reproduce it, and the property tests in tests/fuzz.rs are what gates.
fuzz_smoke() {
    section "fuzzing (cargo fuzz: build, then 10 s per target)"
    if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        printf 'installing cargo-fuzz for the nightly toolchain\n'
        timeout 900 cargo +nightly install --quiet --locked cargo-fuzz </dev/null || true
    fi
    if ! cargo +nightly --version >/dev/null 2>&1; then
        printf 'fuzzing skipped: no nightly Rust toolchain (rustup toolchain install nightly)\n'
        return
    fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        printf 'fuzzing skipped: cargo-fuzz could not be installed (cargo +nightly install cargo-fuzz)\n'
        return
    fi
    local out status=0
    out="$(scripts/fuzz.sh 10 2>&1)" || status=$?
    printf '%s\n' "$out"
    if [ "$status" -ne 0 ]; then
        if grep -q 'do not build' <<<"$out"; then
            die "the fuzz targets do not build"
        fi
        printf '\nFUZZ FINDING (reported, not gating): reproduce with scripts/fuzz.sh and the artifact above\n'
    fi
}

tls_scan() {
    section "TLS scan (testssl.sh against the HTTPS listener)"
    cargo build --release --bin ringhttpd
    scripts/tls_scan.sh "$TARGET_DIR/release/ringhttpd"
}

main() {
    ensure_tools
    run_checks
    load_smoke
    tls_scan
    fuzz_smoke
    section "all checks passed"
}

main "$@"
