#!/usr/bin/env python3
"""Makes the BIOS fonts (font8x16.bin, font8x14.bin, font8x8.bin: 256 glyphs of code page 437,
one byte per scan line) from the X11 "fixed" console fonts that Debian's console-setup-linux
package ships as Uni2-Fixed16 and Uni2-Fixed14 (public domain). The 8x8 font is the 8x16 one
with each pair of scan lines ORed together. The outputs are committed; this script is how they
were made:

    python3 roms/bios/mkfont.py /usr/share/consolefonts roms/bios
"""
import gzip
import os
import sys

# Code page 437 positions 0x00-0x1F and 0x7F are pictures, not controls.
LOW = [0x0020, 0x263A, 0x263B, 0x2665, 0x2666, 0x2663, 0x2660, 0x2022, 0x25D8, 0x25CB, 0x25D9,
       0x2642, 0x2640, 0x266A, 0x266B, 0x263C, 0x25BA, 0x25C4, 0x2195, 0x203C, 0x00B6, 0x00A7,
       0x25AC, 0x21A8, 0x2191, 0x2193, 0x2192, 0x2190, 0x221F, 0x2194, 0x25B2, 0x25BC]


def cp437(code):
    if code < 0x20:
        return LOW[code]
    if code == 0x7F:
        return 0x2302
    return ord(bytes([code]).decode("cp437"))


def read_psf(path):
    """A PSF1 or PSF2 console font with a Unicode table: {code point: glyph}, height."""
    data = gzip.open(path).read()
    table = {}
    if data[:2] == b"\x36\x04":
        mode, height = data[2], data[3]
        count = 512 if mode & 1 else 256
        glyphs = [data[4 + i * height:4 + (i + 1) * height] for i in range(count)]
        pos = 4 + count * height
        for i in range(count):
            seq = False
            while True:
                u = int.from_bytes(data[pos:pos + 2], "little")
                pos += 2
                if u == 0xFFFF:
                    break
                if u == 0xFFFE:
                    seq = True
                elif not seq:
                    table.setdefault(u, glyphs[i])
        return table, height
    assert data[:4] == b"\x72\xb5\x4a\x86", f"{path}: not a PSF font"
    hsize, flags, count, size, height, width = (int.from_bytes(data[8 + 4 * i:12 + 4 * i], "little") for i in range(6))
    assert width == 8, f"{path}: {width} pixels wide"
    glyphs = [data[hsize + i * size:hsize + (i + 1) * size] for i in range(count)]
    pos = hsize + count * size
    for i in range(count):
        end = data.index(b"\xff", pos)
        for ch in data[pos:end].split(b"\xfe")[0].decode("utf-8"):
            table.setdefault(ord(ch), glyphs[i])
        pos = end + 1
    return table, height


def font(table, height):
    blank = bytes(height)
    return b"".join(table.get(cp437(c), table.get(0xFFFD, blank)) for c in range(256))


def main():
    src, out = sys.argv[1], sys.argv[2]
    t16, h16 = read_psf(os.path.join(src, "Uni2-Fixed16.psf.gz"))
    t14, h14 = read_psf(os.path.join(src, "Uni2-Fixed14.psf.gz"))
    assert (h16, h14) == (16, 14)
    f16 = font(t16, 16)
    f8 = bytes(f16[16 * c + 2 * r] | f16[16 * c + 2 * r + 1] for c in range(256) for r in range(8))
    for name, data in [("font8x16.bin", f16), ("font8x14.bin", font(t14, 14)), ("font8x8.bin", f8)]:
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


main()
