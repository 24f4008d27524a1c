#!/usr/bin/env bash
# Scans ringhttpd's HTTPS listener with testssl.sh (Debian package testssl.sh): protocols,
# cipher suites and their order, key exchange groups, resumption, renegotiation and the known
# vulnerabilities, with the client simulations. Fails on any finding rated MEDIUM or worse,
# except those that only concern the throwaway self-signed certificate the scan runs with (no
# chain of trust, no revocation URI) or the page served (no application security headers).
#
#   scripts/tls_scan.sh [BINARY]      (default target/release/ringhttpd, built if missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    printf 'tls_scan: error: %s\n' "$*" >&2
    exit 1
}

BIN="${1:-target/release/ringhttpd}"
command -v testssl >/dev/null 2>&1 || die "testssl (Debian package testssl.sh) is not installed"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
if [ ! -x "$BIN" ]; then
    cargo build --release --bin ringhttpd
fi

STOP_GRACE_TENTHS=20
# shellcheck source-path=SCRIPTDIR source=lib/own_server.sh
. scripts/lib/own_server.sh

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-tls-scan.XXXXXX")"
mkdir -p "$WORK_DIR/root"
printf '<html><body>scan</body></html>\n' >"$WORK_DIR/root/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -keyout "$WORK_DIR/key.pem" -out "$WORK_DIR/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
"$BIN" -a 127.0.0.1 -p 0 --https-only --tls-port 0 --hsts 31536000 -r "$WORK_DIR/root" -w 2 \
    --tls-cert "$WORK_DIR/cert.pem" --tls-key "$WORK_DIR/key.pem" </dev/null >/dev/null 2>"$WORK_DIR/stderr" &
SERVER_PID=$!
line=$(await_listening "$WORK_DIR/stderr")
addr="$(printf '%s\n' "$line" | sed -E 's|.*listening on https://([^ ]+).*|\1|')"
printf 'scanning https://%s with testssl\n' "$addr"

# Findings about the certificate a scan has to run with, and about the page, not the TLS setup;
# and `engine_problem`, a WARN about the scanning machine's own openssl (no GOST engine, as on
# Debian 12's OpenSSL 3.0.19), not about the server.
ALLOWED='cert_chain_of_trust|cert_revocation|cert_ocspRevoked|OCSP_stapling|DNS_CAArecord|security_headers|engine_problem'
scan() {
    rm -f "$WORK_DIR/scan.json"
    timeout 900 testssl --quiet --color 0 --warnings off --jsonfile "$WORK_DIR/scan.json" "$addr" \
        >"$WORK_DIR/scan.txt" 2>&1 || true
    [ -s "$WORK_DIR/scan.json" ] || { cat "$WORK_DIR/scan.txt" >&2; die "testssl wrote no findings"; }
    python3 - "$WORK_DIR/scan.json" "$ALLOWED" <<'PY'
import json, re, sys
findings = json.load(open(sys.argv[1]))
allowed = re.compile(sys.argv[2])
bad = [f for f in findings
       if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL", "WARN") and not allowed.fullmatch(f["id"])]
for f in bad:
    print(f"  {f['severity']:8} {f['id']}: {f['finding']}")
wanted = {f["id"]: f["finding"] for f in findings}
for key in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "cipher_order", "sessionresumption_ticket"):
    print(f"  {key}: {wanted.get(key, '?')}")
sys.exit(1 if bad else 0)
PY
}
# A WARN is a check testssl could not finish (a connection it could not make on a loaded
# machine): scan once more before calling it a finding.
if scan; then
    printf 'tls scan: nothing worse than LOW besides the test certificate\n'
elif printf 'second scan\n' && scan; then
    printf 'tls scan: nothing worse than LOW besides the test certificate (second scan)\n'
else
    grep -E 'NOT ok|VULNERABLE|[Cc]onnect problem' "$WORK_DIR/scan.txt" >&2 || true
    printf 'server stderr (last 20 lines):\n' >&2
    tail -n 20 "$WORK_DIR/stderr" >&2 || true
    die "testssl found what the intermediate profile does not allow (above)"
fi
