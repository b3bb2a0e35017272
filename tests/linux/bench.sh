#!/usr/bin/env bash
# Boot benchmark (not a test): the wall time from start to power-off of the Linux test disk
# (tests/linux/build.sh, cloud kernel, SeaBIOS) under Ferrite's interpreter and, when they are
# installed, under QEMU (TCG) and Bochs on the same disk. Prints one line per emulator:
#
#   emulator      seconds (best of N)   runs   reached the marker
#
# Usage: tests/linux/bench.sh [-n RUNS] [-k cloud|generic] [OUT]   (OUT: where the guests are
# built, default tests/linux/out). FERRITE: the ferrite binary to time (default: a release
# build made here). Run it on an otherwise idle machine: it measures wall time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs=1
flavour=cloud
while getopts "n:k:" o; do
    case "$o" in
        n) runs="$OPTARG" ;;
        k) flavour="$OPTARG" ;;
        *) echo "usage: $0 [-n RUNS] [-k cloud|generic] [OUT]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
out="${1:-$here/out}"
. "$root/scripts/lib/host.sh"
need_packages seabios
want_packages qemu-system-x86 bochs bochsbios vgabios

if [ ! -s "$out/$flavour/disk.img" ]; then
    FERRITE_LINUX_FLAVOURS="$flavour" "$here/build.sh" "$out" >/dev/null
fi
disk="$out/$flavour/disk.img"
if [ -z "${FERRITE:-}" ]; then
    need_cargo
    (cd "$root" && cargo build --release -q -p frontend)
    FERRITE="$(cd "$root" && cargo metadata --format-version 1 --no-deps | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')/release/ferrite"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# time_run NAME LOG COMMAND...: runs it RUNS times; prints the best wall time and whether the
# serial log reached FERRITE-LINUX-OK every time.
time_run() {
    local name="$1" log="$2" best="" ok=yes t0 t1 t
    shift 2
    for _ in $(seq "$runs"); do
        rm -f "$log"
        t0=$(date +%s.%N)
        "$@" >"$tmp/$name.out" 2>&1 </dev/null || true
        t1=$(date +%s.%N)
        t=$(echo "$t1 - $t0" | bc)
        grep -aq FERRITE-LINUX-OK "$log" 2>/dev/null || ok=no
        if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
    done
    printf "%-22s %8.2f s   %d run(s)   marker: %s\n" "$name" "$best" "$runs" "$ok"
}

echo "Linux boot to power-off ($flavour kernel, $(basename "$disk"), SeaBIOS, 512 MiB):"
time_run "ferrite (interp)" "$tmp/ferrite.log" \
    "$FERRITE" --accel interp --bios /usr/share/seabios/bios-256k.bin \
    --vga-rom /usr/share/seabios/vgabios-stdvga.bin -m 512M --hda "$disk,snapshot=on" \
    --serial "file:$tmp/ferrite.log" --timeout 600 --no-reboot

if command -v qemu-system-x86_64 >/dev/null; then
    time_run "qemu (tcg)" "$tmp/qemu.log" \
        timeout 600 qemu-system-x86_64 -accel tcg -m 512 -drive "file=$disk,format=raw,snapshot=on" \
        -display none -serial "file:$tmp/qemu.log" -monitor none -no-reboot
else
    echo "qemu (tcg)             not installed (qemu-system-x86)"
fi

if command -v bochs >/dev/null; then
    cp "$disk" "$tmp/bochs.img"
    cat >"$tmp/bochsrc" <<EOF
megs: 512
romimage: file=/usr/share/seabios/bios-256k.bin
vgaromimage: file=/usr/share/seabios/vgabios-stdvga.bin
vga: extension=vbe
pci: enabled=1, chipset=i440fx
ata0-master: type=disk, path="$tmp/bochs.img", mode=flat
boot: disk
com1: enabled=1, mode=file, dev="$tmp/bochs.log"
display_library: nogui
log: /dev/null
panic: action=fatal
error: action=report
clock: sync=none, time0=local
cpu: count=1, ips=100000000
EOF
    time_run "bochs" "$tmp/bochs.log" timeout 600 bochs -q -f "$tmp/bochsrc"
else
    echo "bochs                  not installed (bochs, bochsbios)"
fi
