"""A corpus of hostile pictures, generated in memory (Pillow, numpy, zlib, struct), deterministic.

`corpus()` -> {name: Item(data, expect)}. The name's suffix is the picture name a user would send
(a text file called `.jpg`, etc.). `expect` is what `inference.decode.decode` must do with it:

- "ok": decodes to an RGB picture (then `expect_shape`, when set, is the decoded (H, W)).
- "error:<Class>": raises that `inference.errors` class, with a plain message.
- "error": some `ImageError` (the class depends on how the header lies), with a plain message.
- "any": random damage; either "ok" or *some* `ImageError` is correct, nothing else is.

Also used to seed the fuzzer (tests/fuzz/seeds.py).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp",
                 ".bmp": "image/bmp", ".tif": "image/tiff"}


@dataclass(frozen=True)
class Item:
    data: bytes
    expect: str  # "ok" | "error:<ImageError subclass>" | "error" | "any"
    expect_shape: tuple[int, int] | None = None  # decoded (H, W) when "ok"

    @property
    def error(self) -> str | None:
        return self.expect.split(":", 1)[1] if self.expect.startswith("error:") else None


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name[name.rfind("."):], "application/octet-stream")


# -- building blocks ----------------------------------------------------------------------------
def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


def picture(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """A small RGB picture with structure (gradients + noise), so codecs have real work to do."""
    r = _rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.int16)
    a += r.integers(-20, 20, a.shape).astype(np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def raw_png(w: int, h: int, bit_depth: int = 8, color_type: int = 0, idat: bytes | None = None,
            extra: bytes = b"") -> bytes:
    """A PNG written by hand: IHDR says what we like; IDAT is given (or one compressed zero row)."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zero_rows_idat(w: int, h: int, bytes_per_pixel: float = 1.0) -> bytes:
    """The IDAT of an all-zero picture, compressed row by row (never the whole raw picture in memory)."""
    row = b"\0" * (1 + int(np.ceil(w * bytes_per_pixel)))
    c = zlib.compressobj(1)
    out = [c.compress(row) for _ in range(h)]
    out.append(c.flush())
    return b"".join(out)


def gif_header_only(w: int, h: int) -> bytes:
    """A GIF whose logical screen and one image descriptor claim w x h, with a tiny LZW stream."""
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    desc = b"," + struct.pack("<HHHHB", 0, 0, w, h, 0)
    return head + desc + b"\x02\x02\x44\x01\x00;"


def jpeg_with_size(w: int, h: int) -> bytes:
    """A real small JPEG whose SOF0 marker is patched to claim w x h."""
    data = bytearray(encode(picture(16, 16), "JPEG", quality=80))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def tiff_with_size(w: int, h: int) -> bytes:
    data = encode(Image.new("L", (8, 8), 128), "TIFF")
    im = Image.open(io.BytesIO(data))
    offsets = im.tag_v2.get(273)  # noqa: F841 - make sure it parsed
    # Patch ImageWidth (256) / ImageLength (257) entries in the first IFD (little-endian, type SHORT or LONG).
    b = bytearray(data)
    ifd = struct.unpack("<I", b[4:8])[0]
    n = struct.unpack("<H", b[ifd:ifd + 2])[0]
    for k in range(n):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", b[e:e + 4])
        if tag in (256, 257):
            v = w if tag == 256 else h
            if typ == 3:
                b[e + 2:e + 4] = struct.pack("<H", 4)  # widen to LONG so any size fits
            b[e + 8:e + 12] = struct.pack("<I", v)
    return bytes(b)


def bmp_with_size(w: int, h: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4), (1, 2, 3)), "BMP"))
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def webp_with_canvas(w: int, h: int) -> bytes:
    """An extended (VP8X) WebP whose canvas claims w x h (at most 16384 each, 24-bit fields)."""
    inner = encode(picture(16, 16), "WEBP", quality=50)
    vp8 = inner[12:]  # the VP8 / VP8L chunk
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + vp8
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flip_bits(data: bytes, n: int, seed: int, skip: int = 0) -> bytes:
    """Flip `n` random bits after the first `skip` bytes (the signature stays, so the format is seen)."""
    r = _rng(seed)
    b = bytearray(data)
    for pos in r.integers(skip, len(b), n):
        b[pos] ^= 1 << int(r.integers(0, 8))
    return bytes(b)


def exif_jpeg(orientation: int, w: int = 60, h: int = 20) -> bytes:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 6] = (255, 0, 0)  # a red stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(a), "JPEG", exif=exif.tobytes(), quality=90)


def animated_gif(frames: int, w: int = 16, h: int = 16) -> bytes:
    ims = [Image.new("P", (w, h), i % 256) for i in range(frames)]
    for im in ims:
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (i * 7) % 256)])
    return encode(ims[0], "GIF", save_all=True, append_images=ims[1:], duration=10, loop=0, optimize=False)


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pic.jpg", b"\0" * 100_000)
    return buf.getvalue()


# -- the corpus ---------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def corpus() -> dict[str, Item]:
    c: dict[str, Item] = {}
    pic = picture()
    good = {
        "jpg": encode(pic, "JPEG", quality=85),
        "png": encode(pic, "PNG"),
        "gif": encode(pic.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "webp": encode(pic, "WEBP", quality=80),
        "bmp": encode(pic, "BMP"),
        "tif": encode(pic, "TIFF", compression="tiff_lzw"),
    }
    for ext, data in good.items():
        c[f"plain.{ext}"] = Item(data, "ok", (64, 96))

    # --- nothing / not pictures, with picture names ---
    c["zero_bytes.jpg"] = Item(b"", "error:EmptyImageError")
    c["text.jpg"] = Item(b"hello, this is not a picture\n" * 10, "error:NotAnImageError")
    c["html.png"] = Item(b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>", "error:NotAnImageError")
    c["svg.png"] = Item(b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "error:NotAnImageError")
    c["zip.jpg"] = Item(zip_bytes(), "error:NotAnImageError")
    c["pdf.jpg"] = Item(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "error:NotAnImageError")
    c["eps.jpg"] = Item(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "error:NotAnImageError")
    c["ico.png"] = Item(encode(Image.new("RGB", (16, 16)), "ICO"), "error:NotAnImageError")  # format not allowed
    c["one_byte.gif"] = Item(b"G", "error:NotAnImageError")
    c["nul_4k.webp"] = Item(b"\0" * 4096, "error:NotAnImageError")
    c["random_64k.jpg"] = Item(_rng(3).integers(0, 256, 65536, dtype=np.uint8).tobytes(), "error:NotAnImageError")

    # --- decompression bombs: huge dimensions, small file ---
    c["bomb_png_60000x60000.png"] = Item(raw_png(60000, 60000), "error:ImageTooLargeError")
    c["bomb_png_real_7000x7000.png"] = Item(raw_png(7000, 7000, idat=zero_rows_idat(7000, 7000)),
                                            "error:ImageTooLargeError")  # 49 Mpx of real (zero) pixels, ~50 KB
    c["bomb_png_1bit_65535x65535.png"] = Item(raw_png(65535, 65535, bit_depth=1), "error:ImageTooLargeError")
    c["bomb_gif_60000x60000.gif"] = Item(gif_header_only(60000, 60000), "error:ImageTooLargeError")
    c["bomb_gif_9000x5000.gif"] = Item(gif_header_only(9000, 5000), "error:ImageTooLargeError")
    c["bomb_jpeg_60000x60000.jpg"] = Item(jpeg_with_size(60000, 60000), "error:ImageTooLargeError")
    c["bomb_jpeg_30000x1500.jpg"] = Item(jpeg_with_size(30000, 1500), "error:ImageTooLargeError")
    c["bomb_webp_16384x16384.webp"] = Item(webp_with_canvas(16384, 16384), "error:ImageTooLargeError")
    c["bomb_tiff_60000x60000.tif"] = Item(tiff_with_size(60000, 60000), "error:ImageTooLargeError")
    c["bomb_bmp_30000x30000.bmp"] = Item(bmp_with_size(30000, 30000), "error:ImageTooLargeError")

    # --- header lies, the other way: zero or absurd sizes ---
    c["png_0x0.png"] = Item(raw_png(0, 0), "error:CorruptImageError")
    c["gif_0x0.gif"] = Item(gif_header_only(0, 0), "error:CorruptImageError")
    c["jpeg_0x0.jpg"] = Item(jpeg_with_size(0, 0), "error:CorruptImageError")
    c["bmp_negative.bmp"] = Item(bmp_with_size(-5, 4), "error")

    # --- truncated and corrupt, every format ---
    for ext, data in good.items():
        c[f"truncated_half.{ext}"] = Item(data[: len(data) // 2], "error:CorruptImageError")
        c[f"truncated_header.{ext}"] = Item(data[:20], "error:CorruptImageError")
        for k in range(3):
            skip = 12 if ext == "webp" else 8
            c[f"bitflip{k}.{ext}"] = Item(flip_bits(data, 4 + 8 * k, seed=100 * k + len(ext), skip=skip), "any")
    c["signature_only.png"] = Item(b"\x89PNG\r\n\x1a\n", "error:CorruptImageError")
    c["signature_only.jpg"] = Item(b"\xff\xd8\xff", "error:CorruptImageError")
    c["png_bad_crc.png"] = Item(good["png"][:29] + b"\0\0\0\0" + good["png"][33:], "error:CorruptImageError")
    c["png_bad_idat.png"] = Item(raw_png(64, 64, color_type=2, idat=b"\x78\x9c" + b"\xff" * 200), "error:CorruptImageError")
    c["gif_polyglot_html.gif"] = Item(good["gif"][:40] + b"<html><script>x</script></html>", "error:CorruptImageError")
    c["webp_chunk_lies.webp"] = Item(good["webp"][:16] + struct.pack("<I", 0x7FFFFFF0) + good["webp"][20:],
                                     "error:CorruptImageError")
    # a PNG whose zTXt text chunk inflates to 16 MiB (Pillow stops at its text-chunk limit)
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (16 << 20), 9))
    c["png_ztxt_bomb.png"] = Item(raw_png(8, 8, idat=zero_rows_idat(8, 8), extra=ztxt), "any")
    c["png_iccp_bomb.png"] = Item(raw_png(8, 8, idat=zero_rows_idat(8, 8),
                                          extra=png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (16 << 20), 9))),
                                  "any")

    # --- animations: first frame only, in bounded time ---
    c["gif_1000_frames.gif"] = Item(animated_gif(1000), "ok", (16, 16))
    anim = [picture(32, 24, seed=i) for i in range(60)]
    c["webp_60_frames.webp"] = Item(encode(anim[0], "WEBP", save_all=True, append_images=anim[1:], duration=10),
                                    "ok", (24, 32))
    c["apng_60_frames.png"] = Item(encode(anim[0], "PNG", save_all=True, append_images=anim[1:], duration=10),
                                   "ok", (24, 32))

    # --- modes: CMYK, 16-bit, palette + transparency, grey, 1-bit, float, alpha ---
    c["cmyk.jpg"] = Item(encode(pic.convert("CMYK"), "JPEG", quality=90), "ok", (64, 96))
    c["grey.jpg"] = Item(encode(pic.convert("L"), "JPEG"), "ok", (64, 96))
    c["grey16.png"] = Item(encode(Image.fromarray((np.arange(64 * 96).reshape(64, 96) * 10).astype(np.uint16)), "PNG"),
                           "ok", (64, 96))
    rgb48 = (np.arange(64 * 96 * 3, dtype=np.uint32).reshape(64, 96, 3) * 9 % 65536).astype(">u2")
    rows = b"".join(b"\0" + rgb48[y].tobytes() for y in range(64))
    c["rgb48.png"] = Item(raw_png(96, 64, bit_depth=16, color_type=2, idat=zlib.compress(rows)), "ok", (64, 96))
    pal = pic.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    c["palette_transparency.png"] = Item(encode(pal, "PNG", transparency=0), "ok", (64, 96))
    c["palette_transparency.gif"] = Item(encode(pal, "GIF", transparency=0), "ok", (64, 96))
    c["rgba.png"] = Item(encode(pic.convert("RGBA"), "PNG"), "ok", (64, 96))
    c["la.png"] = Item(encode(pic.convert("LA"), "PNG"), "ok", (64, 96))
    c["bilevel.png"] = Item(encode(pic.convert("1"), "PNG"), "ok", (64, 96))
    c["float.tif"] = Item(encode(Image.fromarray(np.linspace(0, 1000, 64 * 96, dtype=np.float32).reshape(64, 96)),
                                 "TIFF"), "ok", (64, 96))
    c["cmyk.tif"] = Item(encode(pic.convert("CMYK"), "TIFF"), "ok", (64, 96))
    c["rgba.webp"] = Item(encode(pic.convert("RGBA"), "WEBP", lossless=True), "ok", (64, 96))

    # --- extreme but legal sizes ---
    c["1x1.png"] = Item(encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "ok", (1, 1))
    c["1x1.jpg"] = Item(encode(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"), "ok", (1, 1))
    c["1x1.gif"] = Item(encode(Image.new("P", (1, 1)), "GIF"), "ok", (1, 1))
    c["1x1.webp"] = Item(encode(Image.new("RGB", (1, 1)), "WEBP"), "ok", (1, 1))
    c["20000x10.png"] = Item(encode(Image.new("RGB", (20000, 10), (200, 10, 10)), "PNG"), "ok", (2, 2048))
    c["10x20000.png"] = Item(encode(Image.new("RGB", (10, 20000), (10, 200, 10)), "PNG"), "ok", (2048, 2))
    c["20000x10.jpg"] = Item(encode(Image.new("RGB", (20000, 10), (10, 10, 200)), "JPEG"), "any")
    c["65000x1.gif"] = Item(encode(Image.new("P", (65000, 1)), "GIF"), "ok", (1, 2048))
    c["big_6000x6000.jpg"] = Item(encode(Image.new("RGB", (6000, 6000), (90, 120, 30)), "JPEG", quality=50),
                                  "ok", (2048, 2048))
    c["big_6000x6000_rgba.png"] = Item(raw_png(6000, 6000, color_type=6, idat=zero_rows_idat(6000, 6000, 4)),
                                       "ok", (2048, 2048))  # 36 Mpx: legal, must stay cheap
    c["big_6000x6000_palette.png"] = Item(raw_png(6000, 6000, color_type=3, idat=zero_rows_idat(6000, 6000),
                                                  extra=png_chunk(b"PLTE", bytes(range(256)) * 3)
                                                  + png_chunk(b"tRNS", b"\x80")), "ok", (2048, 2048))
    c["big_6000x6000_grey16.png"] = Item(raw_png(6000, 6000, bit_depth=16, idat=zero_rows_idat(6000, 6000, 2)),
                                         "ok", (2048, 2048))

    # --- EXIF orientations 1..8, and broken EXIF ---
    for o in range(1, 9):
        c[f"exif_orientation_{o}.jpg"] = Item(exif_jpeg(o), "ok", (60, 20) if o >= 5 else (20, 60))
    c["exif_orientation_99.jpg"] = Item(exif_jpeg(99), "ok", (20, 60))
    j = exif_jpeg(6)
    i = j.index(b"Exif\0\0")
    c["exif_garbage.jpg"] = Item(j[:i + 6] + b"\xff" * 8 + j[i + 14:], "ok", (20, 60))  # TIFF header smashed
    return c
