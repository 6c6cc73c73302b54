import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hostile.corpus import encode
from inference.decode import decode
from inference.errors import CorruptImageError, EmptyImageError, ImageTooLargeError, NotAnImageError


def test_plain_jpeg(scene_bytes):
    d = decode(scene_bytes)
    assert d.image.dtype == np.uint8 and d.image.shape == (576, 1024, 3)
    assert (d.width, d.height, d.scale, d.format) == (1024, 576, 1.0, "JPEG")


@pytest.mark.parametrize("orientation,shape", [(1, (40, 100, 3)), (3, (40, 100, 3)), (6, (100, 40, 3)), (8, (100, 40, 3))])
def test_exif_orientation(orientation, shape):
    a = np.zeros((40, 100, 3), np.uint8)
    a[:, :10] = (255, 0, 0)  # red stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = orientation
    d = decode(encode(Image.fromarray(a), "JPEG", exif=exif.tobytes(), quality=95))
    assert d.image.shape == shape
    assert (d.width, d.height) == (shape[1], shape[0])
    if orientation == 6:  # rotated 90° clockwise to display: the left edge becomes the top
        assert d.image[:5, :, 0].mean() > 200 and d.image[-5:, :, 0].mean() < 60


def test_alpha_composited_on_white():
    a = np.zeros((8, 8, 4), np.uint8)
    a[:4] = (255, 0, 0, 255)  # top opaque red, bottom fully transparent
    d = decode(encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert tuple(d.image[0, 0]) == (255, 0, 0)
    assert tuple(d.image[7, 7]) == (255, 255, 255)


def test_palette_with_transparency():
    im = Image.new("P", (6, 6), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (0, 0, 3, 6))
    d = decode(encode(im, "PNG", transparency=0))
    assert tuple(d.image[0, 0]) == (0, 255, 0) and tuple(d.image[0, 5]) == (255, 255, 255)


def test_cmyk_grey_16bit_float():
    cmyk = decode(encode(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG"))  # red in CMYK
    assert cmyk.image[5, 5, 0] > 200 and cmyk.image[5, 5, 1] < 60
    grey = decode(encode(Image.new("L", (10, 10), 77), "PNG"))
    assert grey.image.shape == (10, 10, 3) and abs(int(grey.image[0, 0, 0]) - 77) <= 1
    sixteen = Image.fromarray(np.full((10, 10), 65535, np.uint16))
    d16 = decode(encode(sixteen, "PNG"))
    assert d16.image.min() == 255  # full-scale 16-bit is white, not clipped garbage
    half = decode(encode(Image.fromarray(np.full((4, 4), 32896, np.uint16)), "PNG"))
    assert 125 <= half.image[0, 0, 0] <= 130


def test_first_frame_of_animations():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    for fmt in ("GIF", "WEBP"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
        d = decode(data)
        assert d.image[8, 8, 0] > 200 and d.image[8, 8, 2] < 60, fmt


def test_refusals_have_types_and_plain_messages(scene_bytes):
    with pytest.raises(EmptyImageError, match="empty"):
        decode(b"")
    for junk in (b"hello, world", b"<html><body>not a picture</body></html>", b"PK\x03\x04" + b"\0" * 40):
        with pytest.raises(NotAnImageError, match="not a picture"):
            decode(junk)
    with pytest.raises(CorruptImageError, match="JPEG"):
        decode(scene_bytes[: len(scene_bytes) // 2])
    png = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    with pytest.raises(CorruptImageError):
        decode(png[:60])
    with pytest.raises(ImageTooLargeError, match="too large"):
        decode(scene_bytes, max_bytes=1000)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_pixel_limit_checked_from_header_before_decoding():
    bomb = _png_header_only(60000, 60000)  # 3.6 gigapixels announced in 80 bytes
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError, match="pixels"):
        decode(bomb)
    with pytest.raises(ImageTooLargeError):
        decode(_png_header_only(5000, 5000), max_pixels=1_000_000)


def test_big_jpeg_downscaled_early_with_scale():
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), np.uint8))
    d = decode(encode(big, "JPEG", quality=70), max_side=1024)
    assert max(d.image.shape[:2]) <= 1024
    assert (d.width, d.height) == (4000, 3000)
    assert d.scale == pytest.approx(d.image.shape[1] / 4000)


def test_extreme_shapes():
    assert decode(encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")).image.shape == (1, 1, 3)
    long = decode(encode(Image.new("RGB", (20000, 10), (9, 9, 9)), "PNG"), max_side=2048)
    assert long.image.shape[1] == 2048 and (long.width, long.height) == (20000, 10)


def _pillow_rgb(data: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_plain_png_goes_the_opencv_way_and_matches_pillow(scene_bytes):
    import io

    from inference.decode import _png_by_opencv

    rgb = Image.open(io.BytesIO(scene_bytes)).convert("RGB")
    for im in (rgb, rgb.convert("L")):
        data = encode(im, "PNG")
        assert _png_by_opencv(data, Image.open(io.BytesIO(data)), 2048) is not None, im.mode
        d = decode(data)
        assert (d.width, d.height, d.scale, d.format) == (1024, 576, 1.0, "PNG")
        assert np.array_equal(d.image, _pillow_rgb(data))  # lossless: the same pixels either way
    # what the OpenCV way must leave to Pillow: alpha, a transparent colour, EXIF, animation
    exif = Image.Exif()
    exif[0x0112] = 6
    others = [encode(rgb.convert("RGBA"), "PNG"), encode(rgb, "PNG", transparency=(0, 0, 0)),
              encode(rgb, "PNG", exif=exif.tobytes()),
              encode(rgb, "PNG", save_all=True, append_images=[rgb.convert("L").convert("RGB")])]
    for data in others:
        assert _png_by_opencv(data, Image.open(io.BytesIO(data)), 2048) is None
    assert decode(others[2]).image.shape == (1024, 576, 3)  # the EXIF rotation still applies
    # EXIF as ImageMagick writes it into PNGs (a text chunk after the pixels), which Pillow's getexif() reads
    from PIL.PngImagePlugin import PngInfo

    raw = exif.tobytes()
    info = PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw)}\n{raw.hex()}", zip=True)
    data = encode(rgb, "PNG", pnginfo=info)
    assert _png_by_opencv(data, Image.open(io.BytesIO(data)), 2048) is None
    assert decode(data).image.shape == (1024, 576, 3)


def test_big_png_is_shrunk_the_same_either_way(scene_bytes):
    import io

    rgb = Image.open(io.BytesIO(scene_bytes)).convert("RGB")
    for size in ((3000, 1688), (4600, 2588)):  # a < 2x shrink, and an integer box shrink first
        big = rgb.resize(size, Image.BICUBIC)
        fast = decode(encode(big, "PNG"), max_side=2048)
        slow = decode(encode(big.convert("RGBA"), "PNG"), max_side=2048)  # the Pillow way (alpha all 255)
        assert fast.image.shape == slow.image.shape and max(fast.image.shape) == 2048
        assert fast.scale == pytest.approx(slow.scale)
        assert np.abs(fast.image.astype(int) - slow.image.astype(int)).mean() < 1.0


def test_damaged_png_is_refused_by_the_pillow_way():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)), "PNG")
    for cut in (data[: len(data) // 2], data[:-100]):
        with pytest.raises(CorruptImageError, match="PNG"):
            decode(cut)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # a broken deflate stream / CRC in the middle of the pixels
    with pytest.raises(CorruptImageError, match="PNG"):
        decode(bytes(flipped))


def test_png_chunk_claiming_gigabytes_never_reaches_opencv(monkeypatch):
    """Found by the fuzzer: OpenCV allocates what a chunk's length field claims before checking the bytes are
    there (832 bytes whose IDAT claimed 3.9 GB took 3.8 GB and 5 s). Such files go the Pillow way."""
    import cv2

    import inference.decode as dec

    header = _png_header_only(96, 64)
    idat = header.index(b"IDAT") - 4
    liar = header[:idat] + struct.pack(">I", 3_912_630_272) + b"IDAT" + bytes(range(256)) * 3
    assert len(liar) < 1000
    assert dec._png_chunks_fit(header) and not dec._png_chunks_fit(liar)
    assert not dec._png_chunks_fit(header[:-12])  # no IEND: the file is cut short
    calls, real = [], cv2.imdecode
    monkeypatch.setattr(dec.cv2, "imdecode", lambda *a: calls.append(a) or real(*a))
    with pytest.raises(CorruptImageError, match="PNG"):
        decode(liar)
    assert calls == []
    decode(encode(Image.new("RGB", (96, 64), (10, 20, 30)), "PNG"))  # a whole PNG still goes the OpenCV way
    assert len(calls) == 1
