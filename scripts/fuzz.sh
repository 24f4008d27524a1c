#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and of the connection state machine with cargo-fuzz (libFuzzer + AddressSanitizer,
# debug assertions on, so integer overflow panics too). The targets live in fuzz/ (a crate and
# workspace of its own); each is described at the top of fuzz/fuzz_targets/<target>.rs.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  how long each target runs (default 60)
#   TARGET   request, path, range, date, encoding, connection, tls_connection (default: all of
#            them, one after another; connection drives the whole connection state machine, see
#            src/testing/fuzzing.rs; tls_connection the same over HTTPS against a rustls client,
#            src/testing/fuzzing/tls.rs)
#
# Environment:
#   FUZZ_RUNS  also stop a target after this many executions (libFuzzer -runs)
#   FUZZ_ARGS  further libFuzzer arguments, e.g. "-max_len=20000"
#
# Each target starts from its seed corpus, fuzz/corpus/<target>/ (never written to), and from
# what earlier runs found, fuzz/work/<target>/ (ignored by git); it uses fuzz/dict/<dict>. The
# full libFuzzer output is in fuzz/work/<target>.log. One line per target reports executions
# and libFuzzer's final coverage figures (cov: edges, ft: features). A crash, a panic, a failed
# check, a timeout or an out-of-memory leaves its input in fuzz/artifacts/<target>/, prints the
# path and the report, and makes the script exit 1 (after the remaining targets have run).
# Without a nightly toolchain or cargo-fuzz the script says so in one line and exits 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
FUZZ_DIR="$ROOT/fuzz"

SECONDS_PER_TARGET="${1:-60}"
[ "$#" -gt 0 ] && shift
case "$SECONDS_PER_TARGET" in
'' | *[!0-9]*)
    printf 'usage: scripts/fuzz.sh [SECONDS] [TARGET...]\n' >&2
    exit 2
    ;;
esac

ALL_TARGETS=(request path range date encoding connection tls_connection)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

dict_of() {
    case "$1" in
    request | connection) printf 'http.dict' ;;
    *) printf '%s.dict' "$1" ;;
    esac
}

if ! cargo +nightly --version >/dev/null 2>&1; then
    printf 'fuzz: skipped: no nightly Rust toolchain (rustup toolchain install nightly)\n'
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    printf 'fuzz: skipped: cargo-fuzz is not installed (cargo +nightly install cargo-fuzz)\n'
    exit 0
fi

FUZZ_FLAGS=(--debug-assertions --fuzz-dir "$FUZZ_DIR" --target-dir "$FUZZ_DIR/target")

printf 'fuzz: building the targets (%s)\n' "$(cargo +nightly fuzz --version)"
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}" >"$FUZZ_DIR/build.log" 2>&1 || {
    cat "$FUZZ_DIR/build.log" >&2
    printf 'fuzz: error: the fuzz targets do not build\n' >&2
    exit 1
}

failed=()
for target in "${TARGETS[@]}"; do
    [ -f "$FUZZ_DIR/fuzz_targets/$target.rs" ] || {
        printf 'fuzz: error: no target %s (targets: %s)\n' "$target" "${ALL_TARGETS[*]}" >&2
        exit 2
    }
    mkdir -p "$FUZZ_DIR/work/$target" "$FUZZ_DIR/artifacts/$target"
    log="$FUZZ_DIR/work/$target.log"
    args=(
        "-dict=$FUZZ_DIR/dict/$(dict_of "$target")"
        "-max_total_time=$SECONDS_PER_TARGET"
        "-timeout=10"
        "-print_final_stats=1"
        "-artifact_prefix=$FUZZ_DIR/artifacts/$target/"
    )
    # Each encoding input is negotiated a dozen times over; real Accept-Encoding values are short.
    [ "$target" = encoding ] && args+=("-max_len=1024")
    [ -n "${FUZZ_RUNS:-}" ] && args+=("-runs=$FUZZ_RUNS")
    # shellcheck disable=SC2206 # FUZZ_ARGS is a list of arguments on purpose
    [ -n "${FUZZ_ARGS:-}" ] && args+=($FUZZ_ARGS)

    status=0
    cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" \
        "$FUZZ_DIR/work/$target" "$FUZZ_DIR/corpus/$target" -- "${args[@]}" >"$log" 2>&1 || status=$?

    # The last status line: "#1234  REDUCE cov: 345 ft: 1234 corp: 100/5Kb ... exec/s: 9 ...".
    last="$(grep -aE '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)"
    execs="$(grep -aoE '^stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)"
    [ -n "$execs" ] || execs="$(printf '%s' "$last" | sed -nE 's/^#([0-9]+).*/\1/p')"
    cov="$(printf '%s' "$last" | sed -nE 's/.*cov: ([0-9]+).*/\1/p')"
    ft="$(printf '%s' "$last" | sed -nE 's/.* ft: ([0-9]+).*/\1/p')"
    corp="$(printf '%s' "$last" | sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p')"
    speed="$(printf '%s' "$last" | sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p')"
    printf 'fuzz: %-14s %s executions, cov: %s ft: %s, corpus %s, %s exec/s\n' \
        "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${speed:-?}"

    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        printf '\nfuzz: %s FAILED (exit %s); from %s:\n' "$target" "$status" "$log" >&2
        report="$(grep -a -m 1 -A 40 -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" || true)"
        if [ -n "$report" ]; then
            printf '%s\n' "$report" >&2
            grep -a -E '^(MS: |Base64: |artifact_prefix=)' "$log" >&2 || true
        else
            tail -n 60 "$log" >&2
        fi
        artifacts="$(grep -aoE 'Test unit written to [^[:space:]]+' "$log" | sed 's/^Test unit written to //' |
            sort -u | tr '\n' ' ' || true)"
        printf 'fuzz: %s: crash artifact: %s\n' "$target" "${artifacts:-(none written; see $log)}" >&2
        printf 'fuzz: reproduce with: cargo +nightly fuzz run -a %s ARTIFACT; minimise with: cargo +nightly fuzz tmin -a %s ARTIFACT\n\n' \
            "$target" "$target" >&2
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    printf 'fuzz: FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf 'fuzz: all %d targets ran %s s each without a failure\n' "${#TARGETS[@]}" "$SECONDS_PER_TARGET"
