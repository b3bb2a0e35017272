#!/usr/bin/env bash
# Records what each of Ferrite's ROMs prints when run by another PC emulator, QEMU (Debian
# package qemu-system-x86), as reference output for tests/tests/roms.rs. Run it after
# changing a ROM; review the diff before committing it.
#
# QEMU's "isapc" machine without a local APIC, so that the 8259A's INTR reaches the CPU
# without the virtual-wire setup a BIOS would do for a local APIC; TCG, not KVM, so every
# instruction is emulated the same way on any host.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
roms="$here/../../roms/build"
command -v qemu-system-i386 >/dev/null || { echo "needs qemu-system-i386 (apt-get install qemu-system-x86)" >&2; exit 1; }

input_for() {
    case "$1" in
        serial_echo) printf 'Ferrite echo test\r' ;;
        *) ;;
    esac
}

for image in "$roms"/*.bin; do
    name="$(basename "$image" .bin)"
    [ "$name" = spin ] && continue     # never ends
    set +e
    input_for "$name" | timeout 60 qemu-system-i386 -M isapc -cpu pentium3,-apic -m 16 -nodefaults \
        -display none -bios "$image" -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -no-reboot > "$here/$name.txt"
    rc=$?
    set -e
    # isa-debug-exit makes QEMU's status (value << 1) | 1.
    if [ "$rc" != 1 ]; then
        echo "$name: QEMU exited $rc, not 1 (guest status 0)" >&2
        exit 1
    fi
    echo "recorded $here/$name.txt"
done
