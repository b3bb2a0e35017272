#!/usr/bin/env bash
# Builds the Linux test guests from Debian packages only:
#
#   OUT/<flavour>/vmlinuz      the kernel of linux-image-*-<flavour>-amd64 (cloud or generic)
#   OUT/initrd.img             a busybox-static initramfs whose /init checks the system
#   OUT/<flavour>/disk.img     a FAT disk (mkfs.vfat + syslinux --install) booting that kernel
#   OUT/<flavour>/cd.iso       the same as an El Torito CD (ISOLINUX, xorriso)
#
# Usage: tests/linux/build.sh [--kernel-only] [OUT]   (OUT defaults to tests/linux/out;
# FERRITE_LINUX_FLAVOURS picks the kernels, default "cloud generic"). Installs what it needs as
# root; downloads the kernel packages with apt-get download into OUT/debs once. Prints the
# paths it made. --kernel-only makes just the kernels and the initrd (for direct kernel boot,
# `ferrite --kernel`), without the disk and CD images and the boot loaders they need.
#
# The init prints FERRITE-LINUX-START, then checks: /proc and /sys mount, the timer interrupt
# count rises across a sleep, /proc/cpuinfo names a CPU, the PCI devices under /sys/bus/pci
# (listed like `lspci -n`) include the host bridge and the IDE controller, the kernel log has
# no "Oops", "BUG:", "soft lockup", "hard LOCKUP" or "rcu_sched self-detected stall". Each check
# prints "CHECK name: ok" or "CHECK name: FAILED ...". It then prints FERRITE-LINUX-OK (all
# passed) or FERRITE-LINUX-FAILED, and powers off through ACPI (poweroff -f).
#
# The initramfs also carries each kernel's ATA disk modules (ata_piix, sd_mod and their
# dependencies, from the same kernel package) under /lib/modules/<version>. With
# ferrite.disk=MODE on the kernel command line the init loads them and, instead of the checks,
# works on /dev/sdb (the --hdb disk): write-pattern / verify-pattern (a known pattern, see the
# init, at ferrite.regions=LBA+SECTORS,... with ferrite.seed=N), records (numbered records
# written and flushed until Ferrite is killed, from ferrite.first=SEQ), bench (4 KiB and 1 MiB
# throughput over ferrite.mib=N MiB, ferrite.ops=N random I/Os). The last two are done by
# /bin/diskio, tests/linux/diskio.c built static with gcc. Its lines start FERRITE-DISK- (and
# FERRITE-REC-); it ends with FERRITE-DISK-OK or FERRITE-DISK-FAILED and powers off.
# frontend/tests/disk_guest.rs and tests/linux/disk-bench.sh use them.
#
# With ferrite.shell on the kernel command line the init runs none of that: it starts an
# interactive shell on the first virtual console (the VGA screen and the PS/2 keyboard), says
# FERRITE-SHELL-READY on COM1, and powers off when the shell exits. frontend/tests/window.rs
# types commands into it through Ferrite's window.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/scripts/lib/host.sh"
kernel_only=
if [ "${1:-}" = --kernel-only ]; then
    kernel_only=1
    shift
fi
out="${1:-$here/out}"
flavours="${FERRITE_LINUX_FLAVOURS:-cloud generic}"
mkdir -p "$out/debs"
chmod a+rwx "$out/debs" # apt-get download fetches as _apt
out="$(cd "$out" && pwd)"

if [ -n "$kernel_only" ]; then
    need_packages busybox-static gcc libc6-dev
else
    need_packages busybox-static gcc libc6-dev dosfstools mtools syslinux syslinux-common isolinux xorriso
fi

# The newest installable kernel of a flavour: linux-image-<abi>-cloud-amd64 or -amd64.
kernel_package() {
    local pattern
    case "$1" in
        cloud) pattern='^linux-image-[0-9.]+-[0-9]+-cloud-amd64$' ;;
        generic) pattern='^linux-image-[0-9.]+-[0-9]+-amd64$' ;;
        *) echo "$0: unknown kernel flavour $1 (cloud or generic)" >&2; exit 2 ;;
    esac
    apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$pattern" | sort -V | tail -1
}

fetch_kernel() {
    local flavour="$1" pkg deb dir
    pkg="$(kernel_package "$flavour")"
    if [ -z "$pkg" ]; then
        [ -z "$_ferrite_apt_updated" ] && { apt-get update -qq >&2 || true; _ferrite_apt_updated=1; }
        pkg="$(kernel_package "$flavour")"
    fi
    [ -n "$pkg" ] || { echo "$0: no $flavour kernel package in the apt sources" >&2; exit 1; }
    deb="$(ls "$out/debs/${pkg}_"*.deb 2>/dev/null | tail -1 || true)"
    if [ -z "$deb" ]; then
        (cd "$out/debs" && apt-get download "$pkg" >&2)
        deb="$(ls "$out/debs/${pkg}_"*.deb | tail -1)"
    fi
    dir="$out/$flavour"
    mkdir -p "$dir"
    if [ ! -s "$dir/vmlinuz" ] || [ "$deb" -nt "$dir/vmlinuz" ]; then
        local x; x="$(mktemp -d)"
        dpkg-deb -x "$deb" "$x"
        cp "$x"/boot/vmlinuz-* "$dir/vmlinuz"
        basename "$x"/boot/vmlinuz-* | sed 's/^vmlinuz-//' >"$dir/version"
        rm -rf "$x"
    fi
}

# The ATA disk driver of a kernel package as modules for the initramfs: ata_piix, sd_mod and
# what they need (from each module's .modinfo depends=, as depmod would), uncompressed, under
# ROOT/lib/modules/<version>/, with load-order naming them in the order insmod wants.
add_ata_modules() {
    local deb="$1" root="$2" x version dir
    x="$(mktemp -d)"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$x" --wildcards './lib/modules/*' 2>/dev/null ||
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$x" --wildcards 'lib/modules/*'
    version="$(ls "$x/lib/modules" | head -1)"
    dir="$root/lib/modules/$version"
    mkdir -p "$dir"
    local -A path=() done=()
    local f n
    while IFS= read -r f; do
        n="${f##*/}"; n="${n%%.ko*}"; n="${n//-/_}"
        path[$n]="$f"
    done < <(find "$x/lib/modules/$version/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
    add_module() { # dependencies first
        local n="${1//-/_}" f d deps
        [ -n "${done[$n]:-}" ] && return 0
        f="${path[$n]:-}"
        [ -n "$f" ] || { echo "$0: $version has no module $n" >&2; exit 1; }
        done[$n]=1
        case "$f" in
            *.xz) xz -dc "$f" >"$dir/$n.ko" ;;
            *.zst) zstd -qdc "$f" >"$dir/$n.ko" ;;
            *.gz) gzip -dc "$f" >"$dir/$n.ko" ;;
            *) cp "$f" "$dir/$n.ko" ;;
        esac
        deps="$(tr '\0' '\n' <"$dir/$n.ko" | sed -n 's/^depends=//p' | head -1)"
        for d in ${deps//,/ }; do add_module "$d"; done
        echo "$n.ko" >>"$dir/load-order"
    }
    : >"$dir/load-order"
    add_module ata_piix
    add_module sd_mod
    rm -rf "$x"
}

build_initrd() {
    local x; x="$(mktemp -d)"
    mkdir -p "$x"/{bin,sbin,proc,sys,dev,tmp,etc}
    cp /bin/busybox "$x/bin/busybox"
    for a in sh mount umount cat grep sleep echo poweroff dmesg awk ls head tail wc sed mkdir \
        insmod uname dd md5sum cmp tr sync rm seq setsid; do
        ln -s busybox "$x/bin/$a"
    done
    install -m 0755 "$here/init" "$x/init"
    gcc -static -s -O2 -Wall -o "$x/bin/diskio" "$here/diskio.c"
    local deb
    for deb in "$@"; do add_ata_modules "$deb" "$x"; done
    (cd "$x" && find . | sort | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -9n) >"$out/initrd.img.tmp"
    mv "$out/initrd.img.tmp" "$out/initrd.img"
    rm -rf "$x"
}

# The kernel command line: the console on COM1 and nothing a real PC would not need.
append="console=tty0 console=ttyS0,115200 panic=-1"

# syslinux.cfg naming the kernel and initrd under DIR (ISOLINUX takes relative names from its
# own directory, /isolinux: the CD names them from the root).
syslinux_cfg() {
    local dir="${1:-}"
    cat <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL ${dir}vmlinuz
  INITRD ${dir}initrd.img
  APPEND $append
EOF
}

build_disk() {
    local dir="$out/$1" img
    img="$dir/disk.img.tmp"
    rm -f "$img"
    # 64 MiB FAT16 "superfloppy": syslinux's boot sector is sector 0, as on a USB stick.
    mkfs.vfat -C -n FERRITE "$img" 65536 >/dev/null
    syslinux --install "$img"
    syslinux_cfg >"$dir/syslinux.cfg"
    mcopy -i "$img" "$dir/vmlinuz" ::vmlinuz
    mcopy -i "$img" "$out/initrd.img" ::initrd.img
    mcopy -i "$img" "$dir/syslinux.cfg" ::syslinux.cfg
    mv "$img" "$dir/disk.img"
}

build_iso() {
    local dir="$out/$1" x
    x="$(mktemp -d)"
    mkdir -p "$x/isolinux"
    cp /usr/lib/ISOLINUX/isolinux.bin "$x/isolinux/"
    cp /usr/lib/syslinux/modules/bios/ldlinux.c32 "$x/isolinux/"
    syslinux_cfg / >"$x/isolinux/isolinux.cfg"
    cp "$dir/vmlinuz" "$out/initrd.img" "$x/"
    xorriso -as mkisofs -quiet -o "$dir/cd.iso.tmp" -V FERRITE \
        -b isolinux/isolinux.bin -c isolinux/boot.cat \
        -no-emul-boot -boot-load-size 4 -boot-info-table "$x" 2>/dev/null
    mv "$dir/cd.iso.tmp" "$dir/cd.iso"
    rm -rf "$x"
}

for f in $flavours; do
    fetch_kernel "$f"
done
# One initramfs for every kernel: each finds its ATA modules under /lib/modules/$(uname -r).
debs=()
for f in $flavours; do
    debs+=("$(ls "$out/debs/$(kernel_package "$f")_"*.deb | tail -1)")
done
build_initrd "${debs[@]}"
for f in $flavours; do
    if [ -n "$kernel_only" ]; then
        echo "$out/$f/vmlinuz"
        continue
    fi
    build_disk "$f"
    build_iso "$f"
    echo "$out/$f/disk.img"
    echo "$out/$f/cd.iso"
done
