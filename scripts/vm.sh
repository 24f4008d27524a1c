#!/usr/bin/env bash
# Runs the test suite, an ab load run and the HTTPS check inside a Debian guest
# under QEMU, on a chosen Debian kernel, from Debian packages only (no image
# download):
#
#   1. a guest image: mmdebstrap root filesystem (Debian 12 userland on
#      x86-64 with the kernels of Debian 11 and 12, Debian 13 with Debian 13's
#      and on arm64) with the chosen Debian kernel, turned into
#      an ext4 image without a loop device (mke2fs -d); cached;
#   2. the build, on the host: x86-64 natively; arm64 cross-built in a Debian
#      13 chroot (rustc 1.85, gcc-aarch64-linux-gnu), cached;
#   3. boot with 2 vCPUs: KVM when /dev/kvm runs stock kernels, else TCG
#      (arm64 on an x86-64 host is always TCG). The working tree is shared
#      read-only over 9p at the same path (the test binaries find the server
#      by the path Cargo baked in). User-mode networking with restrict=on:
#      the guest reaches nothing; one forward, 127.0.0.1 only;
#   4. inside: every test binary, then ab -n 50000 -c 100 -r -s 60 against a
#      release server, then the HTTPS check (scripts/tls_check.sh) twice, with
#      --ktls auto (kernel TLS where the guest kernel has the tls module: 12
#      and 13) and --ktls off; the guest powers off and the host prints one
#      line, "N passed, N failed" (each test binary's tests, ab as one, each
#      HTTPS check's cases).
#
#   scripts/vm.sh [--arch x86_64|arm64] [--kernel 11|12|13] [--quick | --https]
#                 [--accel auto|kvm|tcg] [--cache DIR | --no-cache]
#                 [--timeout SECONDS] [--keep]
#
#   --kernel   Debian release whose kernel boots: 11 (5.10), 12 (6.1,
#              default), 13 (6.12). On 11 the server runs its io_uring
#              compat mode (single-shot accepts and receives).
#   --quick    a fast part: the get, errors and operations tests and
#              ab -n 5000 (what .ci/run would use), and the HTTPS check.
#   --https    the HTTPS check only (release build only; no test binaries,
#              no ab).
#   --accel    auto (default): KVM if usable and the guest kernel gets past
#              early boot within 60 s, else TCG (said which).
#   --cache    where images and the cross-build chroot are kept (default
#              ${XDG_CACHE_HOME:-$HOME/.cache}/ringhttpd-vm); --no-cache
#              builds everything in a temporary directory.
#   --timeout  bound on the guest run (default 3600, --quick 1200).
#   --keep     keep the run's directory (console log, per-binary logs).
#
# Needs root (mmdebstrap, chroot), mmdebstrap, e2fsprogs, qemu-utils,
# qemu-system-x86 / qemu-system-arm, and for arm64 qemu-user-static and
# arch-test. Exit
# status 0 only if nothing failed; 2 for a usage or environment problem.
set -euo pipefail

prog=vm.sh
note() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 2; }

arch=x86_64
kernel=12
quick=0
https_only=0
accel=auto
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ringhttpd-vm"
use_cache=1
timeout_s=""
keep=0
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) arch="${2:?}"; shift 2 ;;
        --kernel) kernel="${2:?}"; shift 2 ;;
        --quick) quick=1; shift ;;
        --https) https_only=1; shift ;;
        --accel) accel="${2:?}"; shift 2 ;;
        --cache) cache="${2:?}"; shift 2 ;;
        --no-cache) use_cache=0; shift ;;
        --timeout) timeout_s="${2:?}"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$arch" in
    x86_64 | amd64) arch=x86_64; deb_arch=amd64; userland=bookworm ;; # the host build's glibc 2.36
    arm64 | aarch64) arch=arm64; deb_arch=arm64; userland=trixie ;;
    *) die "--arch is x86_64 or arm64" ;;
esac
case "$kernel" in
    11) ksuite=bullseye ;;
    12) ksuite=bookworm ;;
    13) ksuite=trixie ;;
    *) die "--kernel is 11, 12 or 13" ;;
esac
# Debian 13's kernel comes with its own userland (newer than the host build needs); Debian 11's
# goes into the default userland, whose glibc the host build needs.
[[ "$kernel" == 13 ]] && userland=trixie
case "$accel" in auto | kvm | tcg) ;; *) die "--accel is auto, kvm or tcg" ;; esac
[[ "$quick" -eq 1 && "$https_only" -eq 1 ]] && die "--quick and --https do not go together"
[[ -n "$timeout_s" ]] || timeout_s=$((quick || https_only ? 1200 : 3600))
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout takes seconds"
[[ "$(id -u)" -eq 0 ]] || die "needs root (mmdebstrap, chroot, mounts)"
for tool in mmdebstrap mke2fs qemu-img timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install mmdebstrap e2fsprogs qemu-utils)"
done
qemu="qemu-system-$([[ $arch == arm64 ]] && echo aarch64 || echo x86_64)"
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-$([[ $arch == arm64 ]] && echo arm || echo x86))"

tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$(date +%s)
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-vm.XXXXXX")"
[[ "$use_cache" -eq 1 ]] || cache="$run_dir/cache"
mkdir -p "$cache" "$run_dir/out"
qemu_pid=""
mounted=()
cleanup() {
    local status=$?
    if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$qemu_pid" 2>/dev/null || true
    fi
    local m
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    if [[ "$keep" -eq 1 ]]; then
        note "run directory kept: $run_dir"
    else
        rm -rf "$run_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
elapsed() { printf '%dm%02ds' $((($(date +%s) - started) / 60)) $((($(date +%s) - started) % 60)); }

# --- guest image -------------------------------------------------------------
# Root filesystem + kernel + initrd, built once per arch and kernel; rebuilt when
# the package list changes (recorded next to the image).
image_dir="$cache/guest-$arch-kernel$kernel"
image_packages="systemd-sysv,kmod,udev,apache2-utils,python3,procps,iproute2,curl,openssl"
build_image() {
    local root="$run_dir/rootfs" include="$image_packages"
    local kpkg="linux-image-$deb_arch"
    note "building the guest image ($userland userland, $ksuite kernel, $deb_arch) in $image_dir"
    [[ "$ksuite" == "$userland" ]] && include="$include,$kpkg"
    local hook="$run_dir/image-hook.sh"
    cat >"$hook" <<EOF
#!/bin/sh
set -eu
root="\$1"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"\$root/etc/fstab"
printf 'ringhttpd-vm\n' >"\$root/etc/hostname"
if [ "$ksuite" != "$userland" ]; then
    cp /etc/resolv.conf "\$root/etc/resolv.conf"
    printf 'deb $mirror $ksuite main\n' >"\$root/etc/apt/sources.list.d/kernel.list"
    chroot "\$root" apt-get update -qq
    chroot "\$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t $ksuite $kpkg
    rm "\$root/etc/apt/sources.list.d/kernel.list"
    : >"\$root/etc/resolv.conf"
fi
# The run: a oneshot unit mounts the share "out" (Debian 11's 5.10 does not load
# 9p's virtio transport on demand) and runs the run.sh the host
# put there; the guest powers off when it ends, whatever the outcome.
cat >"\$root/etc/systemd/system/ringhttpd-vm-run.service" <<'UNIT'
[Unit]
Description=ringhttpd test run (scripts/vm.sh)
After=local-fs.target
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'modprobe -q 9pnet_virtio; mkdir -p /srv/out && mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out /srv/out && exec /bin/sh /srv/out/run.sh'
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "\$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/ringhttpd-vm-run.service "\$root/etc/systemd/system/multi-user.target.wants/"
for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "\$root/etc/systemd/system/\$unit"
done
rm -rf "\$root"/var/lib/apt/lists/* "\$root"/var/cache/apt/*.bin
EOF
    chmod +x "$hook"
    local arch_opts=()
    if [[ "$arch" == arm64 && "$(uname -m)" != aarch64 ]]; then
        register_binfmt
    fi
    [[ "$arch" == arm64 ]] && arch_opts=(--architectures=arm64)
    nice mmdebstrap --variant=minbase "${arch_opts[@]}" --include="$include" \
        --customize-hook="$hook \"\$1\"" "$userland" "$root" "$mirror" >"$run_dir/mmdebstrap.log" 2>&1 ||
        { tail -n 30 "$run_dir/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }
    local vmlinuz initrd
    vmlinuz="$(find "$root/boot" -name 'vmlinuz-*' | sort | tail -n 1)"
    initrd="$(find "$root/boot" -name 'initrd.img-*' | sort | tail -n 1)"
    [[ -f "$vmlinuz" && -f "$initrd" ]] || die "no kernel or initrd in the guest's /boot"
    rm -rf "$image_dir.new"
    mkdir -p "$image_dir.new"
    cp "$vmlinuz" "$image_dir.new/vmlinuz"
    cp "$initrd" "$image_dir.new/initrd"
    basename "$vmlinuz" | sed 's/^vmlinuz-//' >"$image_dir.new/kernel-release"
    printf '%s\n' "$image_packages" >"$image_dir.new/packages"
    mke2fs -q -t ext4 -L root -d "$root" "$image_dir.new/root.img" 6G
    rm -rf "$root"
    rm -rf "$image_dir"
    mv "$image_dir.new" "$image_dir"
}

register_binfmt() {
    [[ -e /proc/sys/fs/binfmt_misc/register ]] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] && return 0
    local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [[ -f "$conf" ]] || die "no $conf: apt-get install qemu-user-static (or qemu-user-binfmt)"
    grep -v '^#' "$conf" | head -n 1 >/proc/sys/fs/binfmt_misc/register || die "cannot register qemu-aarch64"
}

if [[ -f "$image_dir/root.img" && "$(cat "$image_dir/packages" 2>/dev/null)" == "$image_packages" ]]; then
    note "guest image: $image_dir (cached, kernel $(cat "$image_dir/kernel-release"))"
else
    [[ -f "$image_dir/root.img" ]] && note "the cached image in $image_dir has other packages than $image_packages: rebuilding it"
    t0=$(date +%s)
    build_image
    note "guest image built in $(($(date +%s) - t0)) s (kernel $(cat "$image_dir/kernel-release"))"
fi

# --- build -------------------------------------------------------------------
# Test binaries (debug: the test hooks exist only there) and a release server
# for ab. Their paths go into run.sh; the guest sees the tree at this path.
tests_list="$run_dir/out/tests.txt"
t0=$(date +%s)
if [[ "$arch" == x86_64 ]]; then
    command -v cargo >/dev/null || die "cargo not found"
    target_dir="$(cd "$tree" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    release_bin="$target_dir/release/ringhttpd"
    note "building on the host ($([[ "$https_only" -eq 1 ]] || echo 'cargo test --no-run, ')cargo build --release)"
    (cd "$tree" && nice cargo build --release --bin ringhttpd >"$run_dir/build.log" 2>&1 &&
        if [[ "$https_only" -eq 0 ]]; then nice cargo test --no-run --tests >>"$run_dir/build.log" 2>&1; fi) ||
        { tail -n 30 "$run_dir/build.log" >&2; die "the build failed"; }
else
    xroot="$cache/xbuild-trixie"
    if [[ ! -x "$xroot/usr/bin/cargo" ]]; then
        note "building the cross-build chroot (Debian 13, rustc + gcc-aarch64-linux-gnu) in $xroot"
        rm -rf "$xroot"
        nice mmdebstrap --variant=minbase --architectures=amd64,arm64 \
            --include=rustc,cargo,libstd-rust-dev:arm64,gcc,libc6-dev,gcc-aarch64-linux-gnu,libc6-dev-arm64-cross,ca-certificates \
            trixie "$xroot" "$mirror" >"$run_dir/xbuild.log" 2>&1 ||
            { tail -n 30 "$run_dir/xbuild.log" >&2; die "mmdebstrap (cross-build chroot) failed"; }
    fi
    # crates.io from the chroot: the host's DNS and extra CA certificates.
    cp /etc/resolv.conf "$xroot/etc/resolv.conf"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$xroot/usr/local/share/ca-certificates/"
        chroot "$xroot" update-ca-certificates >/dev/null 2>&1 || true
    fi
    for m in proc dev; do
        mount --bind "/$m" "$xroot/$m"
        mounted+=("$xroot/$m")
    done
    mkdir -p "$xroot$tree"
    mount --bind "$tree" "$xroot$tree"
    mounted+=("$xroot$tree")
    target_dir="$tree/target/vm-aarch64"
    release_bin="$target_dir/aarch64-unknown-linux-gnu/release/ringhttpd"
    note "cross-building for aarch64 in $xroot"
    xenv=(env HOME=/root CARGO_HOME=/root/.cargo CARGO_TARGET_DIR="$target_dir"
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc)
    xtests="&& cargo test --locked --no-run --tests --target aarch64-unknown-linux-gnu"
    [[ "$https_only" -eq 0 ]] || xtests=""
    (nice chroot "$xroot" "${xenv[@]}" sh -c "cd '$tree' && cargo build --locked --release --bin ringhttpd --target aarch64-unknown-linux-gnu $xtests") \
        >"$run_dir/build.log" 2>&1 || { tail -n 30 "$run_dir/build.log" >&2; die "the cross-build failed"; }
    for m in "${mounted[@]}"; do umount -l "$m"; done
    mounted=()
fi
case "$target_dir" in "$tree"/*) ;; *) die "the target directory $target_dir is outside the tree (unset CARGO_TARGET_DIR)" ;; esac
{ grep -oE '\(([^)]*/deps/[^)]*)\)' "$run_dir/build.log" || true; } | tr -d '()' | sort -u |
    while read -r exe; do
        [[ "$exe" == /* ]] || exe="$tree/$exe"
        printf '%s\n' "$exe"
    done >"$tests_list"
if [[ "$quick" -eq 1 ]]; then
    grep -E '/deps/(get|errors|operations)-[0-9a-f]+$' "$tests_list" >"$tests_list.quick" || true
    mv "$tests_list.quick" "$tests_list"
fi
if [[ "$https_only" -eq 1 ]]; then
    : >"$tests_list"
    note "built in $(($(date +%s) - t0)) s: the release server (--https: no test binaries, no ab)"
else
    [[ -s "$tests_list" ]] || die "no test binaries found in the build output"
    note "built in $(($(date +%s) - t0)) s: $(wc -l <"$tests_list") test binaries"
fi
[[ -x "$release_bin" ]] || die "no release server at $release_bin"

# --- run.sh (runs in the guest) ------------------------------------------------
ab_requests=$((quick ? 5000 : 50000))
cat >"$run_dir/out/run.sh" <<EOF
#!/bin/sh
# Written by scripts/vm.sh; runs as root in the guest, output to /srv/out.
out=/srv/out
exec >"\$out/guest.log" 2>&1
set -u
echo "kernel \$(uname -r) \$(uname -m), \$(nproc) CPUs"
mkdir -p '$tree'
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,ro tree '$tree' || { echo "0 passed, 1 failed" >"\$out/result"; exit 1; }
cd '$tree'
passed=0
failed=0
while read -r exe; do
    name=\$(basename "\$exe")
    log="\$out/\$name.log"
    timeout 1200 "\$exe" >"\$log" 2>&1
    status=\$?
    p=\$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "\$log" | awk '{s+=\$1} END {print s+0}')
    f=\$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "\$log" | awk '{s+=\$1} END {print s+0}')
    if [ "\$status" -ne 0 ] && [ "\$f" -eq 0 ]; then f=1; fi
    echo "\$name: \$p passed, \$f failed (exit \$status)"
    [ "\$f" -eq 0 ] || grep -E '^test .* FAILED|panicked' "\$log" | head -n 20
    passed=\$((passed + p))
    failed=\$((failed + f))
done <"\$out/tests.txt"

if [ $https_only -eq 0 ]; then
# ab against a release server on 2 workers.
site=\$(mktemp -d)
printf '<html><body>vm load test</body></html>\n' >"\$site/index.html"
'$release_bin' -a 127.0.0.1 -p 8080 -r "\$site" -w 2 >"\$out/server.log" 2>&1 &
server=\$!
up=0
for _ in \$(seq 1 100); do
    if grep -q 'listening on' "\$out/server.log"; then up=1; break; fi
    sleep 0.1
done
if [ "\$up" -eq 1 ]; then
    timeout 900 ab -n $ab_requests -c 100 -r -s 60 http://127.0.0.1:8080/index.html >"\$out/ab.log" 2>&1
    grep -E '^(Complete requests|Failed requests|Non-2xx|Requests per second)' "\$out/ab.log"
    if grep -qE '^Complete requests: +$ab_requests\$' "\$out/ab.log" &&
        grep -qE '^Failed requests: +0\$' "\$out/ab.log" &&
        ! grep -q '^Non-2xx' "\$out/ab.log"; then
        echo "ab: passed"
        passed=\$((passed + 1))
    else
        echo "ab: FAILED"
        failed=\$((failed + 1))
    fi
else
    echo "ab: FAILED (the server did not start)"
    cat "\$out/server.log"
    failed=\$((failed + 1))
fi
kill "\$server" 2>/dev/null
wait "\$server" 2>/dev/null
head -n 3 "\$out/server.log"
fi

# HTTPS: kernel TLS where this kernel has the tls module, and rustls alone.
for mode in auto off; do
    log="\$out/tls-\$mode.log"
    t0=\$(date +%s)
    timeout 900 bash '$tree/scripts/tls_check.sh' --server '$release_bin' --ktls "\$mode" >"\$log" 2>&1
    status=\$?
    line=\$(grep -E '^tls_check \(.*: [0-9]+ passed, [0-9]+ failed\$' "\$log" | tail -n 1)
    p=\$(echo "\$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed\$/\1/p')
    f=\$(echo "\$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed\$/\2/p')
    p=\${p:-0}
    f=\${f:-0}
    if [ "\$status" -ne 0 ] && [ "\$f" -eq 0 ]; then f=1; fi
    cat "\$log"
    echo "tls_check --ktls \$mode: \$p passed, \$f failed (exit \$status, \$((\$(date +%s) - t0)) s)"
    passed=\$((passed + p))
    failed=\$((failed + f))
done
echo "\$passed passed, \$failed failed" >"\$out/result"
cat "\$out/result"
sync
EOF

# --- boot ----------------------------------------------------------------------
fwd_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
qemu-img create -q -f qcow2 -b "$image_dir/root.img" -F raw "$run_dir/root.qcow2"
console="$run_dir/out/console.log"
boot() {
    local how="$1" machine cpu tty
    if [[ "$arch" == x86_64 ]]; then
        machine=(-machine q35); tty=ttyS0
        if [[ "$how" == kvm ]]; then cpu=(-accel kvm -cpu host); else cpu=(-accel "tcg,thread=multi" -cpu max); fi
    else
        machine=(-machine virt); tty=ttyAMA0
        if [[ "$how" == kvm ]]; then cpu=(-accel kvm -cpu host); else cpu=(-accel "tcg,thread=multi" -cpu "max,pauth-impdef=on"); fi
    fi
    : >"$console"
    "$qemu" "${machine[@]}" "${cpu[@]}" -smp 2 -m 2048 \
        -kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd" \
        -append "root=/dev/vda rw console=$tty panic=-1" \
        -drive "file=$run_dir/root.qcow2,format=qcow2,if=virtio" \
        -virtfs "local,path=$tree,mount_tag=tree,security_model=none,readonly=on" \
        -virtfs "local,path=$run_dir/out,mount_tag=out,security_model=none" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$fwd_port-:8080" \
        -device virtio-net-pci,netdev=n0,romfile= \
        -display none -monitor none -serial "file:$console" -no-reboot &
    qemu_pid=$!
}

# Whether the guest kernel got as far as starting init within $1 seconds.
reached_init() {
    local deadline=$(($(date +%s) + $1))
    while [[ $(date +%s) -lt $deadline ]]; do
        grep -qE 'Run /init|Freeing unused kernel' "$console" 2>/dev/null && return 0
        kill -0 "$qemu_pid" 2>/dev/null || return 1
        sleep 1
    done
    return 1
}

used=tcg
if [[ "$accel" != tcg ]]; then
    if [[ "$arch" == arm64 && "$(uname -m)" != aarch64 ]]; then
        [[ "$accel" == kvm ]] && die "KVM cannot run an arm64 guest on $(uname -m)"
        note "arm64 guest on $(uname -m): emulated (TCG)"
    elif [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
        [[ "$accel" == kvm ]] && die "/dev/kvm is not usable"
        note "no usable /dev/kvm: TCG"
    elif [[ -d /sys/module/kvm_pvm && "$accel" == auto ]]; then
        note "/dev/kvm is kvm-pvm, which runs only kernels built for it: TCG"
    else
        boot kvm
        if reached_init 60; then
            used=kvm
        else
            [[ "$accel" == kvm ]] && die "the guest kernel did not reach init under KVM within 60 s"
            note "the guest kernel did not reach init under KVM within 60 s: TCG"
            kill "$qemu_pid" 2>/dev/null || true
            wait "$qemu_pid" 2>/dev/null || true
            qemu_pid=""
        fi
    fi
fi
[[ "$used" == kvm ]] || boot tcg
note "guest booting ($arch, $used, kernel $(cat "$image_dir/kernel-release"), 2 vCPUs, forward 127.0.0.1:$fwd_port -> 8080); bound ${timeout_s}s"

deadline=$(($(date +%s) + timeout_s))
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [[ $(date +%s) -ge $deadline ]]; then
        note "the guest did not finish within ${timeout_s}s; stopping it"
        break
    fi
    sleep 2
done
kill "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""

if [[ -f "$run_dir/out/guest.log" ]]; then
    cat "$run_dir/out/guest.log"
else
    note "no output from the guest; the console's end:"
    tail -n 40 "$console" | tr -d '\r'
fi
result="$(cat "$run_dir/out/result" 2>/dev/null || true)"
if [[ ! "$result" =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]]; then
    result="0 passed, 1 failed"
fi
note "$arch, kernel $(cat "$image_dir/kernel-release"), $used, $(elapsed)"
printf '%s\n' "$result"
[[ "$result" == *" 0 failed" ]]
