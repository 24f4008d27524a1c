# shellcheck shell=bash
# For the scripts that start a ringhttpd of their own. The EXIT trap: stop the server (SIGTERM,
# then SIGKILL after STOP_GRACE_TENTHS tenths of a second, default 50; 0 kills at once) and
# remove the work directory. The caller sets SERVER_PID and WORK_DIR when it has them.
SERVER_PID=""
WORK_DIR=""

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        if [ "${STOP_GRACE_TENTHS:-50}" -gt 0 ]; then
            kill -TERM "$SERVER_PID" 2>/dev/null || true
            for _ in $(seq "${STOP_GRACE_TENTHS:-50}"); do
                kill -0 "$SERVER_PID" 2>/dev/null || break
                sleep 0.1
            done
        fi
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$WORK_DIR" ]; then
        rm -rf "$WORK_DIR"
    fi
}
trap cleanup EXIT

# Waits (15 s at most) for the server started as SERVER_PID to report its address in the
# stderr file $1, and prints that `listening on` line; on failure shows the stderr and dies
# (the caller's `die`).
await_listening() {
    local line="" i
    for ((i = 0; i < 150; i++)); do
        line=$(grep -m 1 'listening on ' "$1" || true)
        [ -n "$line" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        cat "$1" >&2 || true
        die "server did not report its address within 15 s"
    fi
    printf '%s\n' "$line"
}
