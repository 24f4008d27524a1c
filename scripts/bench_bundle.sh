#!/usr/bin/env bash
# Packs what scripts/bench.sh and scripts/manycore_probe.sh need into .devbench/ at the root of
# this checkout, so a benchmark can run on another x86-64 Linux machine without package access
# (a many-core box, say):
#   .devbench/bin/    ringhttpd (release), nginx, lighttpd, h2o, wrk, ab
#   .devbench/lib/    their shared libraries, glibc's own excepted (the target has those)
#   .devbench/env.sh  source it there, from the checkout's root: puts bin/ on PATH, lib/ on
#                     LD_LIBRARY_PATH, and makes the directories and user nginx expects
# .devbench/ is listed in .git/info/exclude, so it is never committed. About 20 MB.
#
# Usage: scripts/bench_bundle.sh [RINGHTTPD_BINARY]   (default: a fresh release build)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
TOOLS=(nginx lighttpd h2o wrk ab)

missing=()
for pair in nginx:nginx-light lighttpd:lighttpd h2o:h2o wrk:wrk ab:apache2-utils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    apt_install "${missing[@]}" || { echo "bench_bundle: error: cannot install ${missing[*]}" >&2; exit 1; }
fi

bin=${1:-}
if [[ -z $bin ]]; then
    cargo build --release --quiet
    bin=target/release/ringhttpd
fi
[[ -x $bin ]] || { echo "bench_bundle: error: $bin is not an executable" >&2; exit 1; }

rm -rf .devbench
mkdir -p .devbench/bin .devbench/lib
cp "$bin" .devbench/bin/ringhttpd
for tool in "${TOOLS[@]}"; do cp "$(command -v "$tool")" .devbench/bin/; done
# Every shared library they load, except the C library's, which must match the target's kernel
# interface and is on every machine.
for b in .devbench/bin/*; do ldd "$b" | awk '$3 ~ /^\// { print $3 }'; done | sort -u |
    grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
    xargs -r -I{} cp -L {} .devbench/lib/

cat >.devbench/env.sh <<'ENV'
# Source this on the target machine, from the checkout's root.
export PATH="$PWD/.devbench/bin:$PATH"
export LD_LIBRARY_PATH="$PWD/.devbench/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p /var/lib/nginx /var/log/nginx 2>/dev/null || true
id www-data >/dev/null 2>&1 || useradd -r www-data 2>/dev/null || true
ENV

exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.devbench/' "$exclude" 2>/dev/null || echo '/.devbench/' >>"$exclude"
du -sh .devbench
