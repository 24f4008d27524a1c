#!/usr/bin/env bash
# Builds the Dockerfile's two base images from Debian packages, for hosts that
# reach a Debian mirror and crates.io but no image registry:
#
#   ringhttpd-base/build:SUITE    rustc, cargo, gcc, apache2-utils, python3,
#                                 curl, openssl (the HTTPS tests), and
#                                 the crates of Cargo.lock fetched into
#                                 CARGO_HOME=/usr/local/cargo (offline builds)
#   ringhttpd-base/runtime:SUITE  a minimal Debian (bash, passwd)
#
# Each is an mmdebstrap root filesystem turned into an image by
# "docker import": nothing is pulled from Docker Hub. Run as root from the
# repository root, then build with them:
#
#   deploy/base-images.sh                       # suite trixie (rustc 1.85)
#   export RINGHTTPD_BUILDER_IMAGE=ringhttpd-base/build:trixie
#   export RINGHTTPD_RUNTIME_IMAGE=ringhttpd-base/runtime:trixie
#   export RINGHTTPD_CARGO_OFFLINE=true
#   docker compose up --build --abort-on-container-exit --exit-code-from tests
#
# The runtime image must have the builder's glibc or a newer one: build both
# from the same suite. The crates are those of Cargo.lock when this runs:
# run it again after Cargo.lock changes (or leave RINGHTTPD_CARGO_OFFLINE
# unset where containers may reach crates.io).
#
# Options: --suite SUITE (default trixie; Rust 1.85+ is needed, bookworm's
# 1.63 is too old), --mirror URL (default http://deb.debian.org/debian).
# Needs: mmdebstrap, docker (a running daemon), root.
set -euo pipefail

die() {
    printf 'base-images: error: %s\n' "$*" >&2
    exit 1
}

suite=trixie
mirror=http://deb.debian.org/debian
while [[ $# -gt 0 ]]; do
    case "$1" in
        --suite) suite="${2:?--suite needs a value}"; shift 2 ;;
        --mirror) mirror="${2:?--mirror needs a value}"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -f Cargo.lock ]] || die "run from a ringhttpd checkout (no Cargo.lock)"
[[ "$(id -u)" -eq 0 ]] || die "mmdebstrap needs root here"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "no docker daemon answers"

work="$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The crate fetch runs inside the new root (its own cargo, so its index cache
# is the format that cargo reads), with the host's DNS and extra CA
# certificates for the duration of the fetch only.
mkdir -p "$work/crates/src"
cp Cargo.toml Cargo.lock "$work/crates/"
printf 'fn main() {}\n' >"$work/crates/src/main.rs"
: >"$work/crates/src/lib.rs"
cat >"$work/fetch-crates.sh" <<'EOF'
#!/bin/sh
set -eu
root="$1"
cp /etc/resolv.conf "$root/etc/resolv.conf"
extra=""
for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] || continue
    cp "$crt" "$root/usr/local/share/ca-certificates/ringhttpd-build-$(basename "$crt")"
    extra=1
done
[ -z "$extra" ] || chroot "$root" update-ca-certificates >/dev/null
mkdir -p "$root/usr/local/cargo" "$root/tmp/crates"
cp -r "$CRATES/." "$root/tmp/crates/"
chroot "$root" env CARGO_HOME=/usr/local/cargo cargo fetch --locked \
    --manifest-path /tmp/crates/Cargo.toml
rm -rf "$root/tmp/crates"
if [ -n "$extra" ]; then
    rm -f "$root"/usr/local/share/ca-certificates/ringhttpd-build-*
    chroot "$root" update-ca-certificates --fresh >/dev/null
fi
: >"$root/etc/resolv.conf"
EOF
chmod +x "$work/fetch-crates.sh"

# mmdebstrap runs this with the new root as $1.
# shellcheck disable=SC2016
tidy_hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'

build_tar="$work/build.tar"
printf '==> %s: build root (rustc, cargo, crates of Cargo.lock)\n' "$suite"
CRATES="$work/crates" nice mmdebstrap --variant=minbase \
    --include=rustc,cargo,gcc,libc6-dev,ca-certificates,apache2-utils,python3,curl,openssl \
    --customize-hook="$work/fetch-crates.sh \"\$1\"" \
    --customize-hook="$tidy_hook" \
    "$suite" "$build_tar" "$mirror"
docker import \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$build_tar" "ringhttpd-base/build:$suite"
rm -f "$build_tar"

runtime_tar="$work/runtime.tar"
printf '==> %s: runtime root\n' "$suite"
nice mmdebstrap --variant=minbase \
    --customize-hook="$tidy_hook" \
    "$suite" "$runtime_tar" "$mirror"
docker import --change 'CMD ["/bin/bash"]' "$runtime_tar" "ringhttpd-base/runtime:$suite"

docker image ls 'ringhttpd-base/*'
cat <<EOF

Build with these images (nothing is pulled):
  export RINGHTTPD_BUILDER_IMAGE=ringhttpd-base/build:$suite
  export RINGHTTPD_RUNTIME_IMAGE=ringhttpd-base/runtime:$suite
  export RINGHTTPD_CARGO_OFFLINE=true
  docker compose up --build --abort-on-container-exit --exit-code-from tests
EOF
