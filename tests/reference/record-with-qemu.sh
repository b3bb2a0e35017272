#!/usr/bin/env bash
# Records what each of Ferrite's ROMs prints when run by another PC emulator, QEMU (Debian
# package qemu-system-x86), as reference output for tests/tests/roms.rs. Run it after
# changing a ROM; review the diff before committing it.
#
# QEMU's "isapc" machine without a local APIC, so that the 8259A's INTR reaches the CPU
# without the virtual-wire setup a BIOS would do for a local APIC; TCG, not KVM, so every
# instruction is emulated the same way on any host. The real-mode ROMs run on a Pentium III;
# the system-level ROMs (sys_*) on qemu-system-x86_64's "max" CPU, which has long mode, NX,
# 1 GiB pages, SMEP/SMAP and RDTSCP.
#
# A sys_* ROM may fail checks under QEMU where TCG does not implement what they test; then
# tests/reference/NAME.note must say which and why (tests/tests/roms.rs lists them as
# qemu_lacks), and the run is recorded with its FAIL lines.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
roms="$here/../../roms/build"
for q in qemu-system-i386 qemu-system-x86_64; do
    command -v $q >/dev/null || { echo "needs $q (apt-get install qemu-system-x86)" >&2; exit 1; }
done

input_for() {
    case "$1" in
        serial_echo) printf 'Ferrite echo test\r' ;;
        *) ;;
    esac
}

for image in "$roms"/*.bin; do
    name="$(basename "$image" .bin)"
    [ "$name" = spin ] && continue     # never ends
    [ "$name" = bios ] && continue     # Ferrite's PC BIOS, not a test ROM
    case "$name" in
        sys_*) qemu=(qemu-system-x86_64 -M isapc -cpu max,-apic) ;;
        *) qemu=(qemu-system-i386 -M isapc -cpu pentium3,-apic) ;;
    esac
    set +e
    input_for "$name" | timeout 60 "${qemu[@]}" -m 16 -nodefaults \
        -display none -bios "$image" -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -no-reboot > "$here/$name.txt"
    rc=$?
    set -e
    # isa-debug-exit makes QEMU's status (value << 1) | 1: 1 for guest status 0, 3 for 1 (a
    # check failed). sys_triple ends in a triple fault, which -no-reboot turns into exit 0.
    want=1
    [ "$name" = sys_triple ] && want=0
    if [ "$rc" = 3 ] && [ -f "$here/$name.note" ]; then
        echo "recorded $here/$name.txt: with the failures $name.note explains"
        continue
    fi
    if [ "$rc" != "$want" ]; then
        echo "$name: QEMU exited $rc, not $want" >&2
        exit 1
    fi
    echo "recorded $here/$name.txt"
done
