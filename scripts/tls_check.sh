#!/usr/bin/env bash
# HTTPS check of a live ringhttpd, on loopback only: kernel TLS where the kernel has the tls
# ULP, rustls in user space otherwise (or with --ktls off).
#
#   scripts/tls_check.sh [--ktls auto|off] [--server PATH] [--keep]
#
# Makes an ECDSA P-256 certificate with openssl, a site with a small file, a 64 KiB file and
# a 3 MB file, and starts the server on 127.0.0.1 with --tls-port 0 --metrics 127.0.0.1:0.
# Then with curl --cacert (HTTP/1.1), each body compared byte for byte with the file:
#   - GET of each file, a range, HEAD followed by a GET on the same connection, five
#     requests on one keep-alive connection, a response with Connection: close;
#   - the 3 MB file over TLS 1.2 and TLS 1.3 with each AEAD (AES-128-GCM, AES-256-GCM,
#     ChaCha20-Poly1305);
#   - per case, the connections the metrics count as mode="kernel" or "user": all kernel with
#     --ktls auto where the kernel has the tls ULP, all user otherwise;
#   - file body bytes: via="sendfile", none "sealed", with kernel TLS; "sealed" only in user
#     space;
#   - openssl s_client -tls1_3: a request, a KeyUpdate (s_client's `k`, then `K`, which asks
#     the server to update its keys too), another request. rustls follows the new keys and
#     answers; the kernel's tls module (up to 6.13) cannot take new receive keys, so a
#     kernel TLS connection must close (not hang, not answer garbage);
#   - the server is still serving at the end and logged no warning, error or panic.
# Where the tls ULP is missing (after trying `modprobe tls` as root), it prints
# "kTLS skipped: this kernel has no tls ULP" and checks user space mode.
# Ends with "tls_check (...): N passed, N failed"; exit status 0 only if nothing failed.
# About 5 s on a host; about a minute in an emulated guest. Needs curl, openssl, cmp.
#
#   --ktls    the server's --ktls (default auto)
#   --server  the ringhttpd binary (default: target/release/ringhttpd, built with cargo)
#   --keep    keep the work directory (certificate, site, server log, s_client transcripts)
set -uo pipefail

prog=tls_check
note() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 2; }

ktls=auto
server=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --ktls) ktls="${2:?}"; shift 2 ;;
        --server) server="${2:?}"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$ktls" in auto | off) ;; *) die "--ktls is auto or off" ;; esac
for tool in curl openssl cmp mkfifo; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if [[ -z "$server" ]]; then
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    (cd "$repo" && cargo build --release --bin ringhttpd -q) || die "the build failed"
    server="${CARGO_TARGET_DIR:-$repo/target}/release/ringhttpd"
fi
[[ -x "$server" ]] || die "no server at $server"
server="$(cd "$(dirname "$server")" && pwd)/$(basename "$server")"

work="$(mktemp -d "${TMPDIR:-/tmp}/tls_check.XXXXXX")"
server_pid=""
sc_pid=""
cleanup() {
    [[ -n "$sc_pid" ]] && kill "$sc_pid" 2>/dev/null
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    if [[ "$keep" -eq 1 ]]; then note "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the kernel's tls ULP ---------------------------------------------------------
ulp() { grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; }
ulp || modprobe -q tls 2>/dev/null
if [[ "$ktls" == off ]]; then
    expect=user
    note "--ktls off: records sealed by rustls expected ($(ulp && echo 'the kernel has the tls ULP' || echo 'no tls ULP'))"
elif ulp; then
    expect=kernel
    note "kernel TLS expected: tcp_available_ulp: $(cat /proc/sys/net/ipv4/tcp_available_ulp)"
else
    expect=user
    note "kTLS skipped: this kernel has no tls ULP ($(uname -r)); checking user space mode"
fi

# --- certificate, site, server ------------------------------------------------------
cd "$work" || die "cannot enter $work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem \
    -days 2 -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >openssl.log 2>&1 ||
    { cat openssl.log; die "openssl could not make the certificate"; }
mkdir site
printf 'small file over TLS\n' >site/small.txt
head -c 65536 /dev/urandom >site/mid.bin
head -c 3145728 /dev/urandom >site/big.bin
"$server" -a 127.0.0.1 -p 0 -r site -w 2 --tls-cert cert.pem --tls-key key.pem --tls-port 0 \
    --metrics 127.0.0.1:0 --ktls "$ktls" --log-level debug >server.log 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
    grep -q 'listening on' server.log && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
line="$(grep -m1 'listening on' server.log)" || { cat server.log; die "the server did not start"; }
port="$(sed -n 's|.*https://127\.0\.0\.1:\([0-9]*\).*|\1|p' <<<"$line")"
metrics="$(sed -n 's|.*metrics on \(http://[^ ]*/metrics\).*|\1|p' server.log | head -n 1)"
[[ -n "$port" && -n "$metrics" ]] || { cat server.log; die "no HTTPS port or metrics address in the server's log"; }
note "server: $line"
base="https://localhost:$port"
curl_tls=(curl -sS --http1.1 --cacert cert.pem --resolve "localhost:$port:127.0.0.1" --max-time 120)

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }

metric() { # metric NAME LABELS: the value in the last scrape
    awk -v key="$1$2" '$1 == key { print $2; found = 1 } END { if (!found) print 0 }' metrics.now
}
scrape() { curl -sS --max-time 30 "$metrics" >metrics.now 2>/dev/null || : >metrics.now; }
conns() { printf '%s %s' "$(metric ringhttpd_tls_connections_total '{mode="kernel"}')" \
    "$(metric ringhttpd_tls_connections_total '{mode="user"}')"; }

# case NAME CHECK...: runs CHECK (which says what went wrong on stdout and fails), then
# checks the TLS connections it opened went to the expected mode.
case_() {
    local name="$1" before after k0 u0 k1 u1 t0 msg
    shift
    scrape
    before="$(conns)"
    t0=$(date +%s%N)
    msg="$("$@" 2>&1)"
    local status=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    scrape
    after="$(conns)"
    read -r k0 u0 <<<"$before"
    read -r k1 u1 <<<"$after"
    local dk=$((k1 - k0)) du=$((u1 - u0)) modes
    modes="kernel $dk, user $du"
    if [[ "$status" -ne 0 ]]; then
        fail "$name (${ms} ms; $modes): $msg"
    elif [[ $((dk + du)) -eq 0 ]]; then
        fail "$name (${ms} ms): no TLS connection counted"
    elif [[ "$expect" == kernel && "$du" -ne 0 ]] || [[ "$expect" == user && "$dk" -ne 0 ]]; then
        fail "$name (${ms} ms): connections $modes, expected all $expect${msg:+; $msg}"
    else
        pass "$name (${ms} ms; $modes${msg:+; $msg})"
    fi
}

# get PATH FILE [CURL ARGS]: GET, body compared with FILE.
get() {
    local path="$1" file="$2" code
    shift 2
    code="$("${curl_tls[@]}" "$@" -o body -w '%{http_code}' "$base$path" 2>curl.err)" ||
        { echo "curl: $(tail -n 1 curl.err)"; return 1; }
    [[ "$code" == 200 ]] || { echo "status $code"; return 1; }
    cmp -s body "$file" || { echo "body differs from $file ($(wc -c <body) bytes, $(cmp body "$file" 2>&1))"; return 1; }
}

# suite VERSION CIPHER: the 3 MB file with that protocol version and cipher, checked in
# curl's account of the handshake.
suite() {
    local version="$1" cipher="$2" args seen
    if [[ "$version" == 1.2 ]]; then
        args=(--tlsv1.2 --tls-max 1.2 --ciphers "$cipher")
    else
        args=(--tlsv1.3 --tls13-ciphers "$cipher")
    fi
    get /big.bin site/big.bin "${args[@]}" -v || return 1
    seen="$(sed -n 's/^\* SSL connection using //p' curl.err)"
    # curl 8 adds the group and the key type: "TLSv1.3 / TLS_AES_128_GCM_SHA256 / x25519 / ...".
    [[ "$seen" == "TLSv$version / $cipher" || "$seen" == "TLSv$version / $cipher / "* ]] ||
        { echo "negotiated $seen"; return 1; }
}

range() {
    local code
    code="$("${curl_tls[@]}" -r 1000-66535 -o body -w '%{http_code}' "$base/big.bin" 2>curl.err)" ||
        { echo "curl: $(tail -n 1 curl.err)"; return 1; }
    [[ "$code" == 206 ]] || { echo "status $code"; return 1; }
    head -c 66536 site/big.bin | tail -c 65536 >expected
    cmp -s body expected || { echo "body differs ($(wc -c <body) bytes)"; return 1; }
}

# HEAD of the 3 MB file, then a GET on the same connection: no body may follow the HEAD.
head_then_get() {
    local out
    out="$("${curl_tls[@]}" -I -o head.txt -w '%{http_code} %{num_connects}\n' "$base/big.bin" \
        --next "${curl_tls[@]:1}" -o body -w '%{http_code} %{num_connects}\n' "$base/small.txt" 2>curl.err)" ||
        { echo "curl: $(tail -n 1 curl.err)"; return 1; }
    [[ "$out" == $'200 1\n200 0' ]] || { echo "status and new connections per request: $(tr '\n' ' ' <<<"$out")"; return 1; }
    grep -qi '^content-length: 3145728' head.txt || { echo "HEAD: no content-length 3145728"; return 1; }
    cmp -s body site/small.txt || { echo "the GET after HEAD got another body"; return 1; }
}

keepalive() {
    local out i
    local files=(big.bin mid.bin small.txt big.bin mid.bin)
    local args=()
    for i in "${!files[@]}"; do
        args+=(-o "ka$i" "$base/${files[$i]}")
    done
    out="$("${curl_tls[@]}" -w '%{http_code} %{num_connects}\n' "${args[@]}" 2>curl.err)" ||
        { echo "curl: $(tail -n 1 curl.err)"; return 1; }
    [[ "$out" == $'200 1\n200 0\n200 0\n200 0\n200 0' ]] ||
        { echo "status and new connections per request: $(tr '\n' ' ' <<<"$out")"; return 1; }
    for i in "${!files[@]}"; do
        cmp -s "ka$i" "site/${files[$i]}" || { echo "request $((i + 1)) (${files[$i]}): body differs"; return 1; }
    done
}

# Connection: close on the 3 MB file: the response ends the connection (with close_notify).
close_after() {
    get /big.bin site/big.bin -H 'Connection: close' -v || return 1
    grep -qi '^< connection: close' curl.err || { echo "no Connection: close in the response"; return 1; }
}

# keyupdate LETTER: s_client -tls1_3, a request, LETTER (k: update our keys; K: and ask the
# server to update its own), another request. Expected: both answered (user space), or the
# connection closed after the key update (kernel TLS). A hang fails.
wait_for() { # wait_for PATTERN COUNT SECONDS
    local deadline=$(($(date +%s) + $3))
    while [[ $(date +%s) -lt $deadline ]]; do
        [[ $(grep -c -- "$1" sc.out) -ge $2 ]] && return 0
        kill -0 "$sc_pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
keyupdate() {
    local letter="$1" req=$'GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n' answered closed how said
    rm -f sc.in
    mkfifo sc.in
    openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile cert.pem -tls1_3 \
        <sc.in >sc.out 2>&1 &
    sc_pid=$!
    exec 3>sc.in
    wait_for 'Verify return code' 1 60 || { exec 3>&-; echo "no handshake: $(tail -n 2 sc.out | tr '\n' ' ')"; return 1; }
    printf '%s' "$req" >&3
    wait_for 'small file over TLS' 1 60 || { exec 3>&-; echo "no answer to the first request"; return 1; }
    printf '%s\n' "$letter" >&3
    wait_for KEYUPDATE 1 30 || { exec 3>&-; echo "s_client did not send the key update"; return 1; }
    sleep 0.5
    printf '%s' "$req" >&3 2>/dev/null
    wait_for 'small file over TLS' 2 30
    answered=$([[ $(grep -c 'small file over TLS' sc.out) -ge 2 ]] && echo 1 || echo 0)
    # Give a server that closes the time to (s_client ends when its connection does): 10 s
    # without a second answer, 2 s with one.
    for _ in $(seq 1 $((answered ? 10 : 50))); do kill -0 "$sc_pid" 2>/dev/null || break; sleep 0.2; done
    closed=$(kill -0 "$sc_pid" 2>/dev/null && echo 0 || echo 1)
    exec 3>&-
    wait "$sc_pid" 2>/dev/null
    sc_pid=""
    cp sc.out "s_client-$letter.out"
    how="after the key update: $([[ $answered == 1 ]] && echo 'second request answered' || echo 'no answer')"
    how+=", $([[ $closed == 1 ]] && echo "connection closed ($(grep -m1 -oE 'errno=[0-9]+|closed' sc.out || echo 'EOF'))" || echo 'connection open')"
    # The server's account (its debug log), the first time only.
    said="$(grep -m1 'kernel TLS: record of type' server.log | sed 's/^ringhttpd: debug: //')"
    [[ -n "$said" && "$letter" == k ]] && how+="; server: $said"
    echo "$how"
    if [[ "$expect" == kernel ]]; then
        [[ $answered == 0 && $closed == 1 ]]
    else
        [[ $answered == 1 && $closed == 0 ]]
    fi
}

# --- the cases --------------------------------------------------------------------------
case_ "GET small file" get /small.txt site/small.txt
case_ "GET 64 KiB file" get /mid.bin site/mid.bin
case_ "GET 3 MB file" get /big.bin site/big.bin
case_ "range 1000-66535 of the 3 MB file" range
case_ "HEAD then GET on one connection" head_then_get
case_ "5 requests on one keep-alive connection" keepalive
case_ "Connection: close, 3 MB" close_after
case_ "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256, 3 MB" suite 1.2 ECDHE-ECDSA-AES128-GCM-SHA256
case_ "TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384, 3 MB" suite 1.2 ECDHE-ECDSA-AES256-GCM-SHA384
case_ "TLS 1.2 ECDHE-ECDSA-CHACHA20-POLY1305, 3 MB" suite 1.2 ECDHE-ECDSA-CHACHA20-POLY1305
case_ "TLS 1.3 TLS_AES_128_GCM_SHA256, 3 MB" suite 1.3 TLS_AES_128_GCM_SHA256
case_ "TLS 1.3 TLS_AES_256_GCM_SHA384, 3 MB" suite 1.3 TLS_AES_256_GCM_SHA384
case_ "TLS 1.3 TLS_CHACHA20_POLY1305_SHA256, 3 MB" suite 1.3 TLS_CHACHA20_POLY1305_SHA256
case_ "s_client -tls1_3: request, KeyUpdate (k), request" keyupdate k
case_ "s_client -tls1_3: request, KeyUpdate (K, update requested), request" keyupdate K

# File bodies: sendfile with kernel TLS (nothing sealed), sealed by rustls otherwise.
scrape
sendfile="$(metric ringhttpd_file_body_bytes_total '{via="sendfile"}')"
splice="$(metric ringhttpd_file_body_bytes_total '{via="splice"}')"
sealed="$(metric ringhttpd_file_body_bytes_total '{via="sealed"}')"
bodies="file body bytes: sendfile $sendfile, splice $splice, sealed $sealed"
if [[ "$expect" == kernel ]]; then
    if [[ "$sendfile" -ge $((3145728 * 9)) && "$sealed" -eq 0 ]]; then
        pass "$bodies"
    else
        fail "$bodies (expected >= 9 x 3 MB via sendfile, none sealed)"
    fi
else
    if [[ "$sealed" -ge $((3145728 * 9)) && "$sendfile" -eq 0 && "$splice" -eq 0 ]]; then
        pass "$bodies"
    else
        fail "$bodies (expected >= 9 x 3 MB sealed, none by sendfile or splice)"
    fi
fi
note "metrics: $(grep -E '^ringhttpd_tls_(connections|handshakes|handshake_failures)_total' metrics.now | tr '\n' ' ')"

# Still serving, and a clean log.
if kill -0 "$server_pid" 2>/dev/null && get /small.txt site/small.txt >/dev/null; then
    pass "server still serving"
else
    fail "server still serving: $(kill -0 "$server_pid" 2>/dev/null && echo 'it is running but did not answer' || echo 'it exited')"
fi
if grep -Ei 'warn|error|panick' server.log >server.bad; then
    fail "server log: $(wc -l <server.bad) warning/error lines: $(head -n 5 server.bad | tr '\n' ' ')"
else
    pass "server log has no warning, error or panic"
fi
grep -m2 -E 'TLS handshake done|tls module' server.log | sed "s/^/$prog: server log: /"

summary="$prog (--ktls $ktls, $(uname -r), $([[ "$expect" == kernel ]] && echo 'kernel TLS' || echo 'rustls')): $passed passed, $failed failed"
printf '%s\n' "$summary"
[[ "$failed" -eq 0 ]]
