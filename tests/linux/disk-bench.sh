#!/usr/bin/env bash
# Disk throughput from inside a guest (a benchmark, not a test). Linux (the tests/linux guest
# with the cloud kernel, ferrite.disk=bench) runs `diskio bench` (tests/linux/diskio.c) on a
# new second disk of each image format: over the first MIB MiB, with O_DIRECT (the guest's page
# cache out of the way) and one request at a time, sequential 1 MiB writes and reads,
# sequential 4 KiB writes and reads, then OPS random 4 KiB writes and reads; writes end with
# fdatasync (ATA FLUSH CACHE, an fsync on the host), counted in their time. The guest runs with
# --realtime (its clock is the host's; the deterministic clock would make the figures
# meaningless) and --accel auto (KVM where the host has it). The baseline is the same program
# built for the host, on a raw file of the same size with O_DIRECT. Ferrite itself reads and
# writes its images through the host's page cache, so guest reads of data it wrote can be
# faster than the host's O_DIRECT reads. Prints MB/s (10^6 bytes per second) per run and
# format, and IOPS for the 4 KiB runs.
#
# Usage: tests/linux/disk-bench.sh [MIB [OPS]] [-- FERRITE-OPTIONS...]
#   MIB defaults to 64, OPS to 4096. FERRITE_LINUX_GUESTS names a built guest directory (else
#   the guest is built into tests/linux/out); FERRITE names the ferrite binary (else the
#   release build, built first). Options after -- go to ferrite (e.g. -- --accel interp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mib=64
ops=4096
if [ $# -gt 0 ] && [ "$1" != -- ]; then mib="$1"; shift; fi
if [ $# -gt 0 ] && [ "$1" != -- ]; then ops="$1"; shift; fi
[ "${1:-}" = -- ] && shift

guests="${FERRITE_LINUX_GUESTS:-$here/out}"
if [ ! -s "$guests/cloud/disk.img" ]; then
    FERRITE_LINUX_FLAVOURS=cloud bash "$here/build.sh" "$guests" >/dev/null
fi
if [ -z "${FERRITE:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p frontend
    FERRITE="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
        sed 's/.*"target_directory":"\([^"]*\)".*/\1/')/release/ferrite"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The boot disk with the bench mode on the kernel command line.
cp "$guests/cloud/disk.img" "$work/boot.img"
sed "s/^\( *APPEND .*\)/\1 ferrite.disk=bench ferrite.mib=$mib ferrite.ops=$ops/" "$guests/cloud/syslinux.cfg" >"$work/syslinux.cfg"
mcopy -o -i "$work/boot.img" "$work/syslinux.cfg" ::syslinux.cfg
gcc -O2 -Wall -o "$work/diskio" "$here/diskio.c"

# row NAME FILE: one table row from the FERRITE-DISK-BENCH lines in FILE.
row() {
    awk -v name="$1" '
        /^FERRITE-DISK-BENCH / { mb[$2] = $(NF - 3); iops[$2] = $(NF - 1) }
        END {
            printf "| %-16s | %8s | %8s | %8s (%6s) | %8s (%6s) | %8s (%6s) | %8s (%6s) |\n", name,
                mb["seq-write-1M"], mb["seq-read-1M"], mb["seq-write-4K"], iops["seq-write-4K"],
                mb["seq-read-4K"], iops["seq-read-4K"], mb["rand-write-4K"], iops["rand-write-4K"],
                mb["rand-read-4K"], iops["rand-read-4K"]
        }' "$2"
}

size=$((mib + 16))M
echo "MB/s (4 KiB runs: MB/s (IOPS)); $mib MiB region, $ops random I/Os, O_DIRECT, queue depth 1"
echo "| image            | seq W 1M | seq R 1M | seq W 4K (IOPS)   | seq R 4K (IOPS)   | rand W 4K (IOPS)  | rand R 4K (IOPS)  |"
echo "|------------------|----------|----------|-------------------|-------------------|-------------------|-------------------|"
"$FERRITE" img create -f raw -s "$size" "$work/host.raw" >/dev/null
"$work/diskio" bench "$work/host.raw" "$mib" "$ops" >"$work/host.log"
row "host, raw" "$work/host.log"
rm -f "$work/host.raw"
for format in raw vhd-fixed vhd qcow2; do
    img="$work/disk.$format"
    "$FERRITE" img create -f "$format" -s "$size" "$img" >/dev/null
    "$FERRITE" --realtime --accel auto --serial "file:$work/serial.log" --timeout 3600 "$@" \
        --hda "$work/boot.img" --hdb "$img" >/dev/null 2>"$work/ferrite.err" || true
    [ "$format" = raw ] && sed -n 's/^ferrite: accelerator: /(Ferrite: /p' "$work/ferrite.err" | sed 's/$/)/' >&2
    if ! grep -q FERRITE-DISK-OK "$work/serial.log"; then
        echo "$format: the guest failed:" >&2
        cat "$work/ferrite.err" >&2
        grep -a FERRITE-DISK "$work/serial.log" >&2 || tail -20 "$work/serial.log" >&2
        exit 1
    fi
    grep -a '^FERRITE-DISK-BENCH' "$work/serial.log" | tr -d '\r' >"$work/guest.log"
    row "guest, $format" "$work/guest.log"
    rm -f "$img"
done
