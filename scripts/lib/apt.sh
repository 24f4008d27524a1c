# shellcheck shell=bash
# apt-get helpers for the scripts that install Debian packages; sourced, not run:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
#
#   as_root CMD...      runs CMD as root: directly when root, else through passwordless sudo;
#                       returns 1 without running it when neither is possible.
#   apt_install PKG...  best effort: apt-get install -y --no-install-recommends PKG...,
#                       non-interactive, stdin from /dev/null; runs `apt-get update -qq` before
#                       the first install of the run. Returns 0 when installed, 1 when apt-get
#                       is missing, root is out of reach or apt-get fails; the caller decides
#                       whether that is fatal.

# Runs "$@" as root: directly, through passwordless sudo, or not at all (returns 1).
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

# Set once `apt-get update` succeeded in this run.
_apt_updated=0

apt_install() {
    [[ $# -gt 0 ]] || return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    if [[ "$_apt_updated" -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null || return 1
        _apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" </dev/null || return 1
}
