#!/usr/bin/env bash
# Install ringhttpd as a systemd service: binary, unit, logrotate rules and a
# document root. Safe to run again (upgrades the binary and the unit, leaves a
# non-empty document root alone). Run as root from a checkout:
#
#   sudo scripts/install.sh                 # build with cargo, then install
#   sudo scripts/install.sh --skip-build    # install target/release/ringhttpd
#
# Options:
#   --skip-build        do not run cargo; use the binary already built
#   --binary PATH       install this binary (implies --skip-build)
#   --prefix DIR        install the binary to DIR/bin (default /usr/local)
#   --docroot DIR       document root to create and serve (default /srv/www)
#   -h, --help          show this help
# Environment:
#   DESTDIR             stage everything under this directory instead of /
#                       (for packaging and tests; root is then not required,
#                       systemctl is not called)
set -euo pipefail

prog="install.sh"
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*"; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="/usr/local"
docroot="/srv/www"
skip_build=0
binary=""
destdir="${DESTDIR:-}"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --skip-build) skip_build=1 ;;
        --binary) [[ $# -ge 2 ]] || die "--binary needs a path"; binary="$2"; skip_build=1; shift ;;
        --binary=*) binary="${1#*=}"; skip_build=1 ;;
        --prefix) [[ $# -ge 2 ]] || die "--prefix needs a directory"; prefix="$2"; shift ;;
        --prefix=*) prefix="${1#*=}" ;;
        --docroot) [[ $# -ge 2 ]] || die "--docroot needs a directory"; docroot="$2"; shift ;;
        --docroot=*) docroot="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

# Paths end up in the unit file through sed: keep them simple and absolute.
for path in "$prefix" "$docroot"; do
    [[ "$path" =~ ^/[A-Za-z0-9._/-]*$ ]] ||
        die "'$path' must be an absolute path of letters, digits and . _ - /"
done
prefix="${prefix%/}"
docroot="${docroot%/}"
[[ -n "$docroot" ]] || die "--docroot cannot be /"

if [[ -z "$destdir" && "$(id -u)" -ne 0 ]]; then
    die "must run as root (try: sudo $0)"
fi

unit_src="$repo_root/deploy/ringhttpd.service"
logrotate_src="$repo_root/deploy/logrotate.d/ringhttpd"
[[ -f "$unit_src" ]] || die "missing $unit_src (run this script from a ringhttpd checkout)"
[[ -f "$logrotate_src" ]] || die "missing $logrotate_src"

# --- build -----------------------------------------------------------------

# Build as the owner of the checkout, so that a "sudo scripts/install.sh" does
# not leave root-owned files in target/ and finds the owner's rustup toolchain.
build() {
    local -a cargo_args=(build --release)
    [[ -f "$repo_root/Cargo.lock" ]] && cargo_args+=(--locked)

    local owner home cargo
    owner="$(stat -c %U "$repo_root")"
    if [[ "$(id -u)" -eq 0 && "$owner" != "root" && "$owner" != "UNKNOWN" ]]; then
        home="$(getent passwd "$owner" | cut -d: -f6)"
        cargo="$home/.cargo/bin/cargo"
        [[ -x "$cargo" ]] || cargo="$(command -v cargo || true)"
        [[ -n "$cargo" ]] || die "cargo not found for user $owner; install Rust (rustup) or use --skip-build"
        note "building as $owner: cargo ${cargo_args[*]}"
        (cd "$repo_root" && runuser -u "$owner" -- env HOME="$home" \
            PATH="$(dirname "$cargo"):$PATH" "$cargo" "${cargo_args[@]}")
    else
        cargo="$(command -v cargo || true)"
        [[ -n "$cargo" ]] || cargo="${HOME:-/root}/.cargo/bin/cargo"
        [[ -x "$cargo" ]] || die "cargo not found; install Rust (rustup) or use --skip-build"
        note "building: cargo ${cargo_args[*]}"
        (cd "$repo_root" && "$cargo" "${cargo_args[@]}")
    fi
}

if [[ -z "$binary" ]]; then
    [[ "$skip_build" -eq 1 ]] || build
    binary="${CARGO_TARGET_DIR:-$repo_root/target}/release/ringhttpd"
fi
[[ -f "$binary" && -x "$binary" ]] || die "no executable at $binary (build first: cargo build --release)"

# --- install ---------------------------------------------------------------

bin_dest="$destdir$prefix/bin/ringhttpd"
unit_dest="$destdir/etc/systemd/system/ringhttpd.service"
logrotate_dest="$destdir/etc/logrotate.d/ringhttpd"
docroot_dest="$destdir$docroot"

# install(1) unlinks the old file first, so replacing a running binary is fine.
install -D -m 0755 "$binary" "$bin_dest"
note "installed $bin_dest"

# The unit names /usr/local/bin/ringhttpd and /srv/www; follow --prefix/--docroot.
unit_tmp="$(mktemp)"
trap 'rm -f "$unit_tmp"' EXIT
sed -e "s#/usr/local/bin/ringhttpd#$prefix/bin/ringhttpd#g" \
    -e "s#/srv/www#$docroot#g" "$unit_src" >"$unit_tmp"
unit_changed=1
if [[ -f "$unit_dest" ]] && cmp -s "$unit_tmp" "$unit_dest"; then
    unit_changed=0
fi
install -D -m 0644 "$unit_tmp" "$unit_dest"
note "installed $unit_dest"

install -D -m 0644 "$logrotate_src" "$logrotate_dest"
note "installed $logrotate_dest"
if [[ -z "$destdir" ]] && ! command -v logrotate >/dev/null 2>&1; then
    warn "logrotate is not installed; the access log will not be rotated"
fi

# Document root: create it, fill it only when empty, never touch existing content.
install -d -m 0755 "$docroot_dest"
if [[ -z "$(ls -A "$docroot_dest")" ]]; then
    if [[ -d "$repo_root/www" ]]; then
        cp -R "$repo_root/www/." "$docroot_dest/"
        note "copied the sample site from www/ to $docroot_dest"
    else
        printf '<!doctype html>\n<title>ringhttpd</title>\n<h1>ringhttpd is running</h1>\n' \
            >"$docroot_dest/index.html"
        note "wrote a sample $docroot_dest/index.html"
    fi
    # The service runs as a transient user: everything must be world-readable.
    find "$docroot_dest" -type d -exec chmod 0755 {} +
    find "$docroot_dest" -type f -exec chmod 0644 {} +
else
    note "$docroot_dest is not empty; left as it is"
    unreadable="$(find "$docroot_dest" \( -type f ! -perm -o=r \) -o \( -type d ! -perm -o=rx \) 2>/dev/null | head -n 5 || true)"
    if [[ -n "$unreadable" ]]; then
        warn "some paths under $docroot_dest are not readable by other users; the service (DynamicUser) will get 403/404 for them, e.g.:"
        printf '  %s\n' "$unreadable" >&2
    fi
fi

# --- kernel checks (warnings only) -------------------------------------------

if [[ -r /proc/sys/kernel/io_uring_disabled ]]; then
    io_uring_disabled="$(cat /proc/sys/kernel/io_uring_disabled)"
    if [[ "$io_uring_disabled" != "0" ]]; then
        warn "sysctl kernel.io_uring_disabled = $io_uring_disabled: ringhttpd needs io_uring;" \
            "set it to 0 (sysctl -w kernel.io_uring_disabled=0, and in /etc/sysctl.d/ to keep it)"
    fi
fi
kernel="$(uname -r)"
IFS=. read -r kmajor kminor _ <<<"$kernel"
kminor="${kminor%%[!0-9]*}"
if [[ "$kmajor" =~ ^[0-9]+$ && "$kminor" =~ ^[0-9]+$ ]]; then
    if (( kmajor < 5 || (kmajor == 5 && kminor < 19) )); then
        warn "kernel $kernel is older than 5.19; ringhttpd will not start (6.1+ recommended)"
    elif (( kmajor == 5 || (kmajor == 6 && kminor < 1) )); then
        note "kernel $kernel: supported through fallbacks; 6.1 or newer is recommended"
    fi
fi

# --- systemd -----------------------------------------------------------------

if [[ -n "$destdir" ]]; then
    note "staged under $destdir (systemctl not called)"
    exit 0
fi

if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    note "systemctl daemon-reload done"
    if systemctl is-active --quiet ringhttpd.service; then
        if ((unit_changed)); then
            note "ringhttpd is running with the previous unit and binary; to switch: systemctl restart ringhttpd"
        else
            note "ringhttpd is running; to use the binary just installed: systemctl restart ringhttpd"
        fi
    fi
else
    warn "systemd is not running here; the unit is installed but cannot be started now"
fi

cat <<EOF

Next steps:
  systemctl enable --now ringhttpd     # start now and at boot
  systemctl status ringhttpd           # expect "listening on ..." in the log lines
  journalctl -u ringhttpd -f           # server messages (stderr)
  curl -I http://127.0.0.1/            # HTTP check
  tail -f /var/log/ringhttpd/access.log
Change flags (port, workers, timeouts): systemctl edit ringhttpd
Reopen the access log by hand:          systemctl reload ringhttpd
EOF
