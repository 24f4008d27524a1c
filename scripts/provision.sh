#!/usr/bin/env bash
# Provision a Debian/Ubuntu VM (the Vagrantfile's) for ringhttpd: packages,
# a Rust toolchain for the unprivileged user, release build, test suite, and
# the systemd service on port 8080. Runs as root; safe to run again
# ("vagrant provision"), each step only does what is missing.
#
#   scripts/provision.sh [SOURCE_DIR]      (default: this checkout, else
#                                           /home/vagrant/ringhttpd)
# Environment:
#   RINGHTTPD_PORT=8080        port of the service in the VM
#   RINGHTTPD_WORKERS=N        worker threads (default: number of CPUs)
#   VM_USER=vagrant            user that owns the toolchain and builds
#   RINGHTTPD_SKIP_TESTS=1     do not run scripts/run_tests.sh
#   RINGHTTPD_BENCH_PEERS=0    do not install nginx/lighttpd/h2o for bench.sh
#   RINGHTTPD_RUST=system      Rust from the distribution's packages (1.85+,
#                              Debian 13), not rustup; also the fallback when
#                              https://sh.rustup.rs cannot be reached
#
# Without network (e.g. a guest with RINGHTTPD_GUEST_OFFLINE=1 on a box from
# scripts/vagrant_box.sh) it still works when the packages, Debian's Rust and
# the crates of Cargo.lock (in VM_USER's ~/.cargo) are already there: apt is
# skipped when nothing is missing, Debian's Rust replaces rustup, and cargo
# runs with CARGO_NET_OFFLINE=true when https://index.crates.io cannot be
# reached.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

prog="provision.sh"
step() { printf '\n==> %s\n' "$*"; }
note() { printf '%s: %s\n' "$prog" "$*"; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root (sudo $0)"

remove_policy_rc_d=0
tmp_files=()
cleanup() {
    if [[ "$remove_policy_rc_d" -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if [[ ${#tmp_files[@]} -gt 0 ]]; then rm -f "${tmp_files[@]}"; fi
}
trap cleanup EXIT

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ge 1 ]]; then
    src="$1"
elif [[ -f "$script_dir/../Cargo.toml" ]]; then
    src="$(cd "$script_dir/.." && pwd)"
else
    # Vagrant uploads this script to /tmp, away from the checkout.
    src="/home/vagrant/ringhttpd"
fi
[[ -f "$src/Cargo.toml" ]] || die "no ringhttpd checkout at $src"

# as_root, apt_install: next to this script, or in the checkout when Vagrant runs a copy of this
# script uploaded to /tmp.
apt_lib="$script_dir/lib/apt.sh"
[[ -f "$apt_lib" ]] || apt_lib="$src/scripts/lib/apt.sh"
[[ -f "$apt_lib" ]] || die "scripts/lib/apt.sh found neither next to $0 nor in $src"
# shellcheck source-path=SCRIPTDIR source=lib/apt.sh
. "$apt_lib"

port="${RINGHTTPD_PORT:-8080}"
workers="${RINGHTTPD_WORKERS:-$(nproc)}"
vm_user="${VM_USER:-vagrant}"
[[ "$port" =~ ^[0-9]+$ ]] || die "RINGHTTPD_PORT must be a number"
[[ "$workers" =~ ^[0-9]+$ ]] || die "RINGHTTPD_WORKERS must be a number"
id "$vm_user" >/dev/null 2>&1 || die "user $vm_user does not exist (set VM_USER)"
user_home="$(getent passwd "$vm_user" | cut -d: -f6)"

# Commands as the unprivileged user, with its rustup toolchain on PATH (and
# CARGO_NET_OFFLINE=true once crates.io turned out unreachable).
user_env=()
as_user() {
    runuser -u "$vm_user" -- env HOME="$user_home" USER="$vm_user" \
        PATH="$user_home/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "${user_env[@]}" "$@"
}

# --- kernel ------------------------------------------------------------------
step "kernel and io_uring"
note "kernel $(uname -r) on $(uname -m)"
if [[ -r /proc/sys/kernel/io_uring_disabled ]]; then
    disabled="$(cat /proc/sys/kernel/io_uring_disabled)"
    if [[ "$disabled" != "0" ]]; then
        warn "kernel.io_uring_disabled was $disabled; setting it to 0 (now and at boot)"
        printf 'kernel.io_uring_disabled = 0\n' >/etc/sysctl.d/60-ringhttpd-io_uring.conf
        sysctl -q -w kernel.io_uring_disabled=0
    else
        note "kernel.io_uring_disabled = 0"
    fi
fi

# --- packages ----------------------------------------------------------------
missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            printf '%s\n' "$pkg"
    done
}

step "packages"
packages=(build-essential pkg-config curl openssl ca-certificates git apache2-utils wrk python3 logrotate)
mapfile -t todo < <(missing_packages "${packages[@]}")
if [[ ${#todo[@]} -gt 0 ]]; then
    note "installing: ${todo[*]}"
    apt_install "${todo[@]}" || die "could not install: ${todo[*]}"
else
    note "all present: ${packages[*]}"
fi

# scripts/bench.sh compares against these, but it cannot apt-get install them
# when run as the unprivileged user. Installed with their services disabled:
# they must not hold ports or CPU while ringhttpd is measured.
if [[ "${RINGHTTPD_BENCH_PEERS:-1}" != "0" ]]; then
    mapfile -t peers < <(missing_packages nginx lighttpd h2o)
    if [[ ${#peers[@]} -gt 0 ]]; then
        note "installing benchmark peers (services disabled): ${peers[*]}"
        # policy-rc.d exit 101 = "do not start services from package scripts"
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 0755 /usr/sbin/policy-rc.d
            remove_policy_rc_d=1
        fi
        for peer in "${peers[@]}"; do
            apt_install "$peer" || warn "could not install $peer; bench.sh will skip it"
        done
        if [[ "$remove_policy_rc_d" -eq 1 ]]; then
            rm -f /usr/sbin/policy-rc.d
            remove_policy_rc_d=0
        fi
        for peer in "${peers[@]}"; do
            systemctl disable --now "$peer.service" >/dev/null 2>&1 || true
        done
    fi
fi

# --- Rust toolchain ----------------------------------------------------------
# Edition 2024 needs Rust 1.85+. rustup (stable) where https://sh.rustup.rs can
# be reached; else the distribution's own rustc/cargo/rustfmt/clippy packages,
# which are new enough from Debian 13 (trixie, 1.85) on. Set
# RINGHTTPD_RUST=system to use the packages without trying rustup.
step "Rust toolchain for $vm_user"
rust_minimum="1.85"
rust_from="${RINGHTTPD_RUST:-rustup}"
if [[ "$rust_from" == "rustup" ]]; then
    if [[ -x "$user_home/.cargo/bin/rustup" ]]; then
        note "rustup present; updating stable"
        as_user rustup toolchain install stable --profile minimal \
            --component clippy --component rustfmt ||
            warn "rustup could not update stable; keeping the installed toolchain"
    elif rustup_sh="$(curl --proto '=https' --tlsv1.2 -sSf --max-time 60 https://sh.rustup.rs)"; then
        note "installing rustup (stable, minimal profile, clippy + rustfmt)"
        if ! printf '%s\n' "$rustup_sh" | as_user sh -s -- -y --profile minimal \
            --default-toolchain stable --component clippy --component rustfmt; then
            warn "rustup could not install a toolchain; using the distribution's packages"
            rust_from=system
        fi
    else
        warn "https://sh.rustup.rs cannot be reached; using the distribution's Rust packages"
        rust_from=system
    fi
fi
if [[ "$rust_from" == "system" ]]; then
    mapfile -t todo < <(missing_packages rustc cargo rustfmt rust-clippy)
    if [[ ${#todo[@]} -gt 0 ]]; then
        apt_install "${todo[@]}" || die "could not install: ${todo[*]}"
    fi
fi
rust_version="$(as_user rustc --version | awk '{print $2}')"
if [[ "$(printf '%s\n%s\n' "$rust_minimum" "${rust_version%%-*}" | sort -V | head -n 1)" != "$rust_minimum" ]]; then
    die "rustc $rust_version is older than $rust_minimum (edition 2024): use Debian 13+ or reach https://sh.rustup.rs"
fi
as_user rustc --version
as_user cargo --version

# rustup puts cargo on PATH from the end of ~/.bashrc, after Ubuntu's "not
# interactive: return" guard, so "vagrant ssh -c 'cd ringhttpd && cargo ...'"
# would not find it. Source it before that guard too.
bashrc="$user_home/.bashrc"
marker="# cargo for non-interactive shells too (scripts/provision.sh)"
if [[ -f "$bashrc" ]] && ! grep -qF "$marker" "$bashrc"; then
    bashrc_tmp="$(mktemp)"
    tmp_files+=("$bashrc_tmp")
    {
        printf '%s\n' "$marker"
        # shellcheck disable=SC2016 # written literally, expanded by the user's shell
        printf '%s\n' '[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"'
        cat "$bashrc"
    } >"$bashrc_tmp"
    cat "$bashrc_tmp" >"$bashrc"
    note "cargo added to PATH for non-interactive shells in $bashrc"
fi

# --- crates ------------------------------------------------------------------
step "crates"
if curl -fsS -o /dev/null --max-time 30 https://index.crates.io/config.json; then
    note "https://index.crates.io reachable"
else
    warn "https://index.crates.io cannot be reached: cargo runs offline (CARGO_NET_OFFLINE=true), with the crates already in $user_home/.cargo"
    user_env+=(CARGO_NET_OFFLINE=true)
fi

# --- build and test ----------------------------------------------------------
step "release build"
cargo_args=(build --release)
[[ -f "$src/Cargo.lock" ]] && cargo_args+=(--locked)
(cd "$src" && as_user cargo "${cargo_args[@]}")

tests_status="skipped"
if [[ "${RINGHTTPD_SKIP_TESTS:-0}" == "1" ]]; then
    note "RINGHTTPD_SKIP_TESTS=1: tests skipped"
elif [[ -x "$src/scripts/run_tests.sh" ]]; then
    step "test suite (scripts/run_tests.sh as $vm_user)"
    # A failure does not stop provisioning: the service still gets installed
    # so the VM can be inspected; the exit status reports it at the end.
    if (cd "$src" && as_user scripts/run_tests.sh); then
        tests_status="passed"
    else
        tests_status="FAILED"
    fi
else
    warn "$src/scripts/run_tests.sh not found or not executable; tests skipped"
fi

# --- service -----------------------------------------------------------------
step "install the service (port $port, $workers workers)"
"$src/scripts/install.sh" --skip-build

dropin_dir=/etc/systemd/system/ringhttpd.service.d
dropin="$dropin_dir/vagrant.conf"
install -d -m 0755 "$dropin_dir"
dropin_tmp="$(mktemp)"
tmp_files+=("$dropin_tmp")
cat >"$dropin_tmp" <<EOF
# Written by scripts/provision.sh: the VM serves on port $port (forwarded to
# the host), with one worker per CPU.
[Service]
ExecStart=
ExecStart=/usr/local/bin/ringhttpd -a 0.0.0.0 -p $port -r /srv/www -w $workers --access-log /var/log/ringhttpd/access.log
EOF
if ! cmp -s "$dropin_tmp" "$dropin" 2>/dev/null; then
    install -m 0644 "$dropin_tmp" "$dropin"
    note "wrote $dropin"
fi

systemctl daemon-reload
systemctl enable --quiet ringhttpd.service
# restart, not start: a re-provision must pick up the new binary and unit.
systemctl restart ringhttpd.service

step "check http://127.0.0.1:$port/"
ok=0
for _ in $(seq 1 50); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/"; then
        ok=1
        break
    fi
    sleep 0.2
done
if [[ "$ok" -ne 1 ]]; then
    systemctl --no-pager status ringhttpd.service || true
    journalctl --no-pager -u ringhttpd.service -n 30 || true
    die "ringhttpd does not answer on port $port (see the log above)"
fi
curl -sSI "http://127.0.0.1:$port/" | head -n 1
journalctl --no-pager -u ringhttpd.service -n 5 -o cat | grep 'listening on' | tail -n 1 || true

cat <<EOF

ringhttpd is running in the VM on port $port (systemd unit ringhttpd).
Tests: $tests_status

From the host (forwarded port 8080; "vagrant port" shows it if Vagrant had
to pick another one):
  curl -I http://127.0.0.1:8080/
  ab -n 50000 -c 100 -r http://127.0.0.1:8080/
Or inside the VM:
  vagrant ssh -c 'ab -n 50000 -c 100 -r http://127.0.0.1:$port/'
Benchmark against nginx/lighttpd/h2o inside the VM (stop the service first
so it does not share the CPUs with the run):
  vagrant ssh -c 'sudo systemctl stop ringhttpd'
  vagrant ssh -c 'cd ringhttpd && scripts/bench.sh --quick'
  vagrant ssh -c 'sudo systemctl start ringhttpd'
After editing on the host: vagrant rsync && vagrant provision
EOF

if [[ "$tests_status" == "FAILED" ]]; then
    die "scripts/run_tests.sh failed (output above)"
fi
