#!/usr/bin/env bash
# In-guest disk throughput (a benchmark, not a test): Linux (the tests/linux guest with the
# cloud kernel, ferrite.disk=bench) writes MIB MiB sequentially to a new second disk
# (1 MiB writes, then fsync) and reads them back after dropping its page cache, once per
# image format, and prints MB/s (10^6 bytes per second, timed by the guest's /proc/uptime)
# and the host's wall time for the whole run (boot included). Under the interpreter the
# guest's clock is Ferrite's deterministic virtual clock, so its MB/s are per guest second
# (the same on a busy and an idle host); under KVM they are real time.
#
# Usage: tests/linux/disk-bench.sh [MIB] [-- FERRITE-OPTIONS...]
#   MIB defaults to 64. FERRITE_LINUX_GUESTS names a built guest directory (else the guest
#   is built into tests/linux/out); FERRITE names the ferrite binary (else the release build,
#   built first). Options after -- go to ferrite (e.g. -- --accel interp).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mib=64
if [ $# -gt 0 ] && [ "$1" != -- ]; then mib="$1"; shift; fi
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
sed "s/^\( *APPEND .*\)/\1 ferrite.disk=bench ferrite.mib=$mib/" "$guests/cloud/syslinux.cfg" >"$work/syslinux.cfg"
mcopy -o -i "$work/boot.img" "$work/syslinux.cfg" ::syslinux.cfg

size=$((mib + 16))M
for format in raw vhd-fixed vhd qcow2; do
    img="$work/disk.$format"
    "$FERRITE" img create -f "$format" -s "$size" "$img" >/dev/null
    start=$(date +%s.%N)
    "$FERRITE" --serial "file:$work/serial.log" --timeout 3600 "$@" --hda "$work/boot.img" --hdb "$img" >/dev/null
    end=$(date +%s.%N)
    if ! grep -q FERRITE-DISK-OK "$work/serial.log"; then
        echo "$format: the guest failed:" >&2
        grep FERRITE-DISK "$work/serial.log" >&2 || tail -20 "$work/serial.log" >&2
        exit 1
    fi
    grep -a '^FERRITE-DISK-BENCH' "$work/serial.log" | sed "s/^FERRITE-DISK-BENCH/$(printf '%-10s' "$format")/"
    awk -v a="$start" -v b="$end" -v f="$format" 'BEGIN { printf "%-10s host: the whole run (boot, write, read, power-off) took %.1f s\n", f, b - a }'
    rm -f "$img"
done
