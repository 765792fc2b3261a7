#!/usr/bin/env python3
"""Writes the small hostile/broken image fixtures of tests/it/hostile.rs into
tests/fixtures/hostile/. Deterministic; run with PIL + numpy:

    python3 tools/make_hostile_fixtures.py

Files whose header declares a huge size carry almost no pixel data: they only
test that xfer refuses them from the header, before allocating anything.
"""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hostile"


def photo(w, h, seed):
    """A textured image (so the JPEG scan data is not trivially small)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h))], -1)
    noise = rng.randint(-40, 40, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def exif_with_thumbnail(thumb: bytes) -> bytes:
    """APP1 payload: Exif header + little-endian TIFF with IFD0 (Orientation = 1)
    and IFD1 holding a JPEG thumbnail, as cameras write it. The thumbnail ends
    with its own FFD9 end-of-image marker."""
    ifd0_off = 8
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 1)
    ifd1_off = ifd0_off + len(ifd0) + 4
    ifd1_len = 2 + 3 * 12 + 4
    thumb_off = ifd1_off + ifd1_len
    ifd0 += struct.pack("<I", ifd1_off)
    ifd1 = struct.pack("<H", 3)
    ifd1 += struct.pack("<HHII", 0x0103, 3, 1, 6)  # Compression = JPEG
    ifd1 += struct.pack("<HHII", 0x0201, 4, 1, thumb_off)  # JPEGInterchangeFormat
    ifd1 += struct.pack("<HHII", 0x0202, 4, 1, len(thumb))  # JPEGInterchangeFormatLength
    ifd1 += struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", ifd0_off) + ifd0 + ifd1 + thumb
    return b"Exif\x00\x00" + tiff


def camera_jpeg():
    img = photo(320, 240, 1)
    main = jpeg_bytes(img, quality=92)
    thumb = jpeg_bytes(img.resize((160, 120)), quality=80)
    app1 = exif_with_thumbnail(thumb)
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    return main[:2] + seg + main[2:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def huge_jpeg(w, h):
    """A real 16×16 baseline JPEG whose SOF0 claims w×h (libjpeg refuses over 65500 itself)."""
    b = bytearray(jpeg_bytes(photo(16, 16, 2), quality=90))
    i = 2
    while True:
        assert b[i] == 0xFF
        marker, length = b[i + 1], struct.unpack(">H", b[i + 2 : i + 4])[0]
        if marker == 0xC0:
            struct.pack_into(">HH", b, i + 5, h, w)
            return bytes(b)
        i += 2 + length


def huge_gif(w, h):
    """GIF89a whose screen and only frame claim w×h (GIF's maximum is 65535)."""
    out = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0)  # 2-colour global table
    out += b"\x00\x00\x00\xff\xff\xff"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
    out += b"\x02\x02\x44\x01\x00"  # min code size 2, one tiny sub-block
    return out + b"\x3b"


def huge_webp(w, h):
    """Extended WebP (VP8X) whose canvas claims w×h, holding a 1×1 lossless image."""
    b = io.BytesIO()
    Image.new("RGB", (1, 1), (9, 9, 9)).save(b, "WEBP", lossless=True)
    small = b.getvalue()
    assert small[12:16] == b"VP8L"
    vp8l = small[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def huge_tiff(w, h):
    """Uncompressed 8-bit RGB TIFF claiming w×h with a few bytes of strip data."""
    entries = [
        (256, 4, 1, w),  # ImageWidth
        (257, 4, 1, h),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample (one value, applies to all)
        (259, 3, 1, 1),  # Compression none
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, 0),  # StripOffsets (patched)
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, h),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts (a lie)
    ]
    ifd_off = 8
    data_off = ifd_off + 2 + len(entries) * 12 + 4
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_off
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_off) + ifd + b"\x80" * 16


def animated_webp():
    frames = [Image.new("RGB", (24, 16), c) for c in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    b = io.BytesIO()
    frames[0].save(b, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    data = b.getvalue()
    assert b"ANIM" in data, "PIL's libwebp has no animation support"
    return data


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "camera_exif_thumbnail.jpg": camera_jpeg(),
        "huge_100000x100000.png": huge_png(100_000, 100_000),
        "huge_60000x60000.jpg": huge_jpeg(60000, 60000),
        "huge_65535x65535.gif": huge_gif(65535, 65535),
        "huge_100000x100000.webp": huge_webp(100_000, 100_000),
        "huge_100000x100000.tiff": huge_tiff(100_000, 100_000),
        "animated_red_green_blue.webp": animated_webp(),
        "progressive.jpg": jpeg_bytes(photo(160, 120, 3), quality=90, progressive=True),
    }
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
