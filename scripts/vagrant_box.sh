#!/usr/bin/env bash
# Builds a Vagrant box for the libvirt provider from Debian packages only (no
# image download): Debian 13 (trixie) arm64, kernel 6.12, booting on its own
# with UEFI (GPT disk, EFI system partition with a standalone GRUB), for the
# Vagrantfile's libvirt provider when no arm64 box can be downloaded.
#
#   scripts/vagrant_box.sh [--name NAME] [--output FILE] [--size GiB] [--add]
#
#   --name    box name for "vagrant box add" (default ringhttpd/debian-13-arm64)
#   --output  the .box file (default ~/.cache/ringhttpd-vm/vagrant/NAME.box,
#             "/" in NAME as "-")
#   --size    virtual disk size in GiB (default 24; the qcow2 image is sparse)
#   --add     also run "vagrant box add --force --name NAME FILE"
#
# Then, on an x86-64 or arm64 Linux host with vagrant-libvirt:
#   RINGHTTPD_LIBVIRT_BOX=ringhttpd/debian-13-arm64 vagrant up --provider libvirt
#
# The box has what scripts/provision.sh and scripts/run_tests.sh would
# install (build-essential, Debian's rustc/cargo 1.85 with rustfmt and clippy,
# apache2-utils, wrk, curl, openssl, testssl.sh, nginx and lighttpd with
# their services disabled, ...), openssh-server, sudo, rsync,
# qemu-guest-agent, DHCP on the NIC (systemd-networkd), a "vagrant" user with
# passwordless sudo and Vagrant's insecure key (replaced on first "vagrant
# up"), and the crates of this checkout's Cargo.lock in the vagrant user's
# ~/.cargo, so a guest without any network (RINGHTTPD_GUEST_OFFLINE=1) can
# still provision, build and test. SSH host keys are made at first boot.
#
# Needs root (mmdebstrap, chroot), mmdebstrap, qemu-user-static (binfmt
# qemu-aarch64 on a non-arm64 host), e2fsprogs, fdisk (sfdisk), dosfstools,
# mtools, qemu-utils, and Vagrant (its insecure public key). Exit status 0
# only if the box was written.
set -euo pipefail

prog=vagrant_box.sh
note() { printf '%s: %s\n' "$prog" "$*"; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

name="ringhttpd/debian-13-arm64"
output=""
size_gib=24
add=0
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --name) name="${2:?}"; shift 2 ;;
        --output) output="${2:?}"; shift 2 ;;
        --size) size_gib="${2:?}"; shift 2 ;;
        --add) add=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
[[ "$size_gib" =~ ^[0-9]+$ && "$size_gib" -ge 8 ]] || die "--size takes a number of GiB, 8 or more"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ringhttpd-vm/vagrant"
[[ -n "$output" ]] || output="$cache/${name//\//-}.box"
[[ "$(id -u)" -eq 0 ]] || die "needs root (mmdebstrap, chroot)"
for tool in mmdebstrap mke2fs sfdisk mkfs.fat mmd mcopy qemu-img tar git; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (apt-get install mmdebstrap e2fsprogs fdisk dosfstools mtools qemu-utils git)"
done

# Vagrant's insecure public key: the first "vagrant up" logs in with it and
# replaces it with a key of the machine's own.
vagrant_key=""
for f in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
    /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub \
    /usr/share/vagrant/keys/vagrant.pub; do
    [[ -f "$f" ]] && vagrant_key="$f"
done
[[ -n "$vagrant_key" ]] || die "Vagrant's insecure key (keys/vagrant.pub) not found: install vagrant"

tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -f "$tree/Cargo.lock" ]] || die "no Cargo.lock in $tree"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/ringhttpd-box.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
started=$(date +%s)

if [[ "$(uname -m)" != aarch64 ]]; then
    [[ -e /proc/sys/fs/binfmt_misc/register ]] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
        conf=/usr/lib/binfmt.d/qemu-aarch64.conf
        [[ -f "$conf" ]] || die "no $conf: apt-get install qemu-user-static"
        grep -v '^#' "$conf" | head -n 1 >/proc/sys/fs/binfmt_misc/register || die "cannot register qemu-aarch64"
    fi
fi

# What provision.sh and run_tests.sh install, plus what the box itself needs.
packages=(
    linux-image-arm64 systemd-sysv udev kmod e2fsprogs grub-efi-arm64-bin
    openssh-server sudo rsync qemu-guest-agent iproute2 procps less ca-certificates
    build-essential pkg-config curl openssl git apache2-utils wrk python3 logrotate
    rustc cargo rustfmt rust-clippy testssl.sh python3-prometheus-client
    nginx lighttpd
)
include="$(IFS=,; printf '%s' "${packages[*]}")"

# The checkout's tracked files, for "cargo fetch" in the image.
mkdir -p "$work/src"
git -C "$tree" ls-files -z | tar -C "$tree" --null -T - -cf - | tar -C "$work/src" -xf -
cp "$vagrant_key" "$work/vagrant.pub"
cp /etc/ssl/certs/ca-certificates.crt "$work/ca.crt"

hook="$work/hook.sh"
cat >"$hook" <<'EOF'
#!/bin/sh
# mmdebstrap customize hook: $1 is the root, $2 the work directory.
set -eu
root="$1"
work="$2"
printf 'LABEL=root / ext4 rw,relatime,errors=remount-ro 0 1\n' >"$root/etc/fstab"
printf 'ringhttpd\n' >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ringhttpd\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

# The vagrant user: passwordless sudo, Vagrant's insecure key.
chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
printf 'vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$work/vagrant.pub" "$root/home/vagrant/.ssh/authorized_keys"

# DHCP on every Ethernet interface.
cat >"$root/etc/systemd/network/10-dhcp.network" <<'NET'
[Match]
Type=ether
[Network]
DHCP=yes
NET
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1

# SSH host keys of its own for every machine made from the box.
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-host-keys.service" <<'UNIT'
[Unit]
Description=SSH host keys (made at first boot)
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable ssh-host-keys.service ssh.service >/dev/null 2>&1

# Benchmark peers are started by scripts/bench.sh only; no timers in the background.
chroot "$root" systemctl disable nginx.service lighttpd.service >/dev/null 2>&1 || true
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# UEFI: a standalone GRUB that boots the kernel from the partition labelled root.
cat >"$root/tmp/grub-box.cfg" <<'CFG'
set timeout=1
search --no-floppy --label root --set=root
linux /vmlinuz root=LABEL=root ro console=ttyAMA0
initrd /initrd.img
boot
CFG
chroot "$root" grub-mkstandalone -O arm64-efi -o /tmp/BOOTAA64.EFI \
    --modules="part_gpt ext2 search_label linux normal" "boot/grub/grub.cfg=/tmp/grub-box.cfg"
mv "$root/tmp/BOOTAA64.EFI" "$work/BOOTAA64.EFI"
rm -f "$root/tmp/grub-box.cfg"

# The crates of Cargo.lock in the vagrant user's CARGO_HOME (guests may have no network).
cp -a "$work/src" "$root/tmp/ringhttpd-src"
cp "$work/ca.crt" "$root/tmp/host-ca.crt"
chroot "$root" chown -R vagrant:vagrant /home/vagrant /tmp/ringhttpd-src
chroot "$root" runuser -u vagrant -- env HOME=/home/vagrant CARGO_HTTP_CAINFO=/tmp/host-ca.crt \
    sh -c 'cd /tmp/ringhttpd-src && cargo fetch --locked'
rm -rf "$root/tmp/ringhttpd-src" "$root/tmp/host-ca.crt"

: >"$root/etc/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
EOF
chmod +x "$hook"

note "root filesystem (Debian 13 arm64, ${#packages[@]} packages and their dependencies), log $work/mmdebstrap.log"
t0=$(date +%s)
if ! nice -n 19 mmdebstrap --variant=minbase --architectures=arm64 --include="$include" \
    --customize-hook="$hook \"\$1\" $work" trixie "$work/rootfs" "$mirror" >"$work/mmdebstrap.log" 2>&1; then
    tail -n 30 "$work/mmdebstrap.log" >&2
    die "mmdebstrap failed (log above)"
fi
[[ -f "$work/BOOTAA64.EFI" ]] || die "no GRUB EFI binary was made"
note "root filesystem in $(($(date +%s) - t0)) s"

# GPT: a 64 MiB EFI system partition, then the root file system. Partitions are
# made as files and written into the disk image: no loop device needed.
esp_mib=64
root_mib=$((size_gib * 1024 - esp_mib - 2))
mkfs.fat -F 32 -n ESP -C "$work/esp.img" $((esp_mib * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTAA64.EFI" ::/EFI/BOOT/BOOTAA64.EFI
nice -n 19 mke2fs -q -t ext4 -L root -d "$work/rootfs" "$work/root.img" "${root_mib}M"
rm -rf "$work/rootfs"
truncate -s "${size_gib}G" "$work/disk.raw"
sfdisk -q "$work/disk.raw" <<EOF
label: gpt
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP
start=$((esp_mib + 1))MiB, size=${root_mib}MiB, type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE, name=root
EOF
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$work/disk.raw" bs=1M seek=$((esp_mib + 1)) conv=notrunc,sparse status=none
rm -f "$work/esp.img" "$work/root.img"

mkdir -p "$work/box"
nice -n 19 qemu-img convert -O qcow2 "$work/disk.raw" "$work/box/box.img"
rm -f "$work/disk.raw"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$size_gib" >"$work/box/metadata.json"
cat >"$work/box/Vagrantfile" <<'EOF'
# Made by ringhttpd's scripts/vagrant_box.sh: Debian 13 arm64, UEFI boot.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
  end
end
EOF
mkdir -p "$(dirname "$output")"
tar -C "$work/box" -cf "$output.tmp" metadata.json Vagrantfile box.img
mv "$output.tmp" "$output"
note "wrote $output ($(du -h "$output" | cut -f1)) in $(($(date +%s) - started)) s"
if [[ "$add" -eq 1 ]]; then
    command -v vagrant >/dev/null || die "vagrant not found (--add)"
    vagrant box add --force --name "$name" "$output"
fi
