#!/usr/bin/env bash
# Builds Ferrite's own ROMs: asm/NAME.asm -> build/NAME.bin, each a 64 KiB BIOS image whose
# reset vector (offset 0xFFF0) far-jumps to the program; Ferrite's PC BIOS, bios/bios.asm
# (with the files it includes) -> build/bios.bin; and boot programs, boot/NAME.asm ->
# build/NAME.img, a boot sector and what it loads, whole 512-byte sectors that fit the first
# track of a 1.44 MB floppy (18 sectors). The images are committed, so building
# Ferrite needs no assembler; this script is how they are made, and the roms crate's
# `reproducible` test checks that the committed ones are what it makes.
#
#   roms/build.sh            rebuild roms/build/*.bin
#   roms/build.sh OUTDIR     build into OUTDIR instead (the test does this)
#
# Needs NASM (images committed so far: NASM 2.16.01, Debian 12). When it is missing and this
# runs as root on Debian, it installs it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/build}"

if ! command -v nasm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build.sh: installing nasm" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm >&2
    else
        echo "build.sh: nasm is needed (Debian: apt-get install nasm)" >&2
        exit 1
    fi
fi

mkdir -p "$out"
for src in "$here"/asm/*.asm "$here"/bios/bios.asm; do
    name="$(basename "$src" .asm)"
    tmp="$out/$name.bin.tmp"
    inc="$here/asm/"
    [ "$name" = bios ] && inc="$here/"
    # -Ox: NASM's default multi-pass optimisation, spelled out so the encoding cannot change
    # with a different default.
    nasm -f bin -Ox -w+all -I "$inc" -o "$tmp" "$src"
    size="$(stat -c %s "$tmp")"
    if [ "$size" != 65536 ]; then
        echo "build.sh: $name: image is $size bytes, expected 65536" >&2
        rm -f "$tmp"
        exit 1
    fi
    mv "$tmp" "$out/$name.bin"
    echo "built $out/$name.bin"
done
for src in "$here"/boot/*.asm; do
    name="$(basename "$src" .asm)"
    tmp="$out/$name.img.tmp"
    nasm -f bin -Ox -w+all -I "$here/boot/" -o "$tmp" "$src"
    size="$(stat -c %s "$tmp")"
    if [ $((size % 512)) != 0 ] || [ "$size" -gt $((18 * 512)) ]; then
        echo "build.sh: $name: image is $size bytes, expected whole sectors, at most 18" >&2
        rm -f "$tmp"
        exit 1
    fi
    mv "$tmp" "$out/$name.img"
    echo "built $out/$name.img"
done
