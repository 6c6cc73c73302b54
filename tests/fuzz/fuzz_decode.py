"""Coverage-guided fuzzing of the decode entry point with atheris (libFuzzer for Python).

The property: `inference.decode.decode(data)` returns an RGB uint8 picture or raises an
`inference.errors.ImageError` subclass. Any other exception, a hang (-timeout) or a memory blow-up
(-rss_limit_mb) is a crash, and libFuzzer writes the input that caused it (crash-*/timeout-*/oom-*).

Short run (what CI does, through tests/fuzz/test_fuzz_decode.py):
    python tests/fuzz/fuzz_decode.py -max_total_time=20 -timeout=10 -rss_limit_mb=2048

Long run (documented in the README; keep the corpus directory between runs to build on it):
    python tests/fuzz/fuzz_decode.py -max_total_time=3600 -timeout=10 -rss_limit_mb=2048 runs/fuzz-decode
(runs/ is git-ignored; crash-*/timeout-*/oom-* files land in the current directory unless -artifact_prefix=DIR/)

A corpus directory that is missing or empty is first filled with the seeds (tests/fuzz/seeds.py).
Pillow's Python plugins and `inference` are instrumented; the C codecs behind them are exercised but
give no coverage feedback (that needs a sanitizer build of Pillow).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fuzz")]

with atheris.instrument_imports(include=["PIL", "inference"]):
    from PIL import (  # noqa: F401 - imported here so they are instrumented
        BmpImagePlugin,
        GifImagePlugin,
        Image,
        ImageFile,
        JpegImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    from inference.decode import decode
    from inference.errors import ImageError

# Smaller limits than the defaults: the same code paths, but a legal 40 Mpx picture that the fuzzer
# builds from a few bytes costs a tenth of the time, so more inputs run per second.
MAX_PIXELS = 4_000_000
MAX_SIDE = 512


def _selftest_decode(data: bytes, **kw):
    """FUZZ_DECODE_SELFTEST=1: a planted bug (a KeyError on any PNG), to prove crashes are caught."""
    if data.startswith(b"\x89PNG"):
        raise KeyError("planted bug")
    return decode(data, **kw)


DECODE = _selftest_decode if os.environ.get("FUZZ_DECODE_SELFTEST") == "1" else decode


def test_one_input(data: bytes) -> None:
    try:
        d = DECODE(data, max_pixels=MAX_PIXELS, max_side=MAX_SIDE)
    except ImageError as e:
        if not str(e):
            raise AssertionError(f"{type(e).__name__} without a message") from None
        return
    img = d.image
    if img.dtype.name != "uint8" or img.ndim != 3 or img.shape[2] != 3 or max(img.shape[:2]) > MAX_SIDE:
        raise AssertionError(f"bad decoded picture {img.dtype} {img.shape}")
    if not (0 < d.scale <= 1.0) or d.width <= 0 or d.height <= 0:
        raise AssertionError(f"bad size/scale {d.width}x{d.height} scale {d.scale}")


def main() -> None:
    warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF etc.; decode() handles those
    argv = list(sys.argv)
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:  # no corpus directory given: a fresh one, seeded
        dirs = [tempfile.mkdtemp(prefix="fuzz_decode_")]
        argv.append(dirs[0])
    from seeds import write_seeds

    for d in dirs:
        p = Path(d)
        if not p.is_dir() or not any(p.iterdir()):
            print(f"seeding {p} with {write_seeds(p)} inputs", file=sys.stderr)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
