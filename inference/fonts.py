"""The label font: a real TrueType chain that draws Latin, punctuation (— · ’), Japanese, Korean and Chinese.

Found once at start-up, first hit per glyph, in this order:
1. `LABEL_FONT` (a .ttf/.otf/.ttc path), if set;
2. Noto Sans CJK (Debian `fonts-noto-cjk`), WenQuanYi Micro Hei (`fonts-wqy-microhei`, what the Docker image
   installs: 1.6 MB, Latin + CJK + Hangul), Droid Sans Fallback (`fonts-droid-fallback`);
3. DejaVu Sans (`fonts-dejavu-core`) for Latin and punctuation;
4. Pillow's built-in font, the last resort (Latin only; other scripts draw as boxes, and `missing` says so).

Each character is drawn with the first font of the chain that has a glyph for it (a font "has" a glyph when it
renders it differently from its missing-glyph box), so a name mixing scripts draws whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
_NOT_A_CHAR = "\U0010fffd"  # a private-use code point no font has: what a missing glyph looks like


def font_paths() -> list[str]:
    """The chain of TrueType files found on this machine (may be empty)."""
    env = os.environ.get("LABEL_FONT", "").strip()
    out = [env] if env and Path(env).is_file() else []
    return out + [p for p in CANDIDATES if Path(p).is_file() and p not in out]


@dataclass(frozen=True)
class Run:
    text: str
    font: object


class FontChain:
    def __init__(self, size: int, paths: list[str] | None = None):
        self.size = size
        self.fonts = []
        for p in font_paths() if paths is None else paths:
            try:
                self.fonts.append(ImageFont.truetype(p, size))
            except OSError:
                continue
        self.builtin = not self.fonts
        if self.builtin:
            try:
                self.fonts = [ImageFont.load_default(size=size)]
            except TypeError:  # Pillow < 10.1: bitmap font only
                self.fonts = [ImageFont.load_default()]
        self._missing = [_signature(f, _NOT_A_CHAR) for f in self.fonts]
        self._has: dict[tuple[int, str], bool] = {}

    def has(self, i: int, ch: str) -> bool:
        key = (i, ch)
        if key not in self._has:
            self._has[key] = ch.isspace() or _signature(self.fonts[i], ch) != self._missing[i]
        return self._has[key]

    def font_for(self, ch: str) -> object | None:
        for i, f in enumerate(self.fonts):
            if self.has(i, ch):
                return f
        return None

    def missing(self, text: str) -> list[str]:
        """The characters of `text` no font of the chain can draw (they would show as boxes)."""
        return [c for c in dict.fromkeys(text) if self.font_for(c) is None]

    def runs(self, text: str) -> list[Run]:
        out: list[Run] = []
        for ch in text:
            f = self.font_for(ch) or self.fonts[-1]
            if out and out[-1].font is f:
                out[-1] = Run(out[-1].text + ch, f)
            else:
                out.append(Run(ch, f))
        return out

    def measure(self, text: str) -> tuple[float, int, int]:
        """(advance width, ascent, descent) of `text` drawn with the chain, in pixels."""
        width = sum(r.font.getlength(r.text) for r in self.runs(text))
        asc = max((f.getmetrics()[0] for f in self.fonts if hasattr(f, "getmetrics")), default=self.size)
        desc = max((f.getmetrics()[1] for f in self.fonts if hasattr(f, "getmetrics")), default=0)
        return width, asc, desc

    def draw(self, d, xy: tuple[float, float], text: str, fill) -> None:
        """Draw `text` with its left end at x and its baseline at y."""
        x, y = xy
        for r in self.runs(text):
            d.text((x, y), r.text, font=r.font, fill=fill, anchor="ls")
            x += r.font.getlength(r.text)


def _signature(font, ch: str):
    m = font.getmask(ch)
    return m.size, bytes(m)


@lru_cache(maxsize=16)
def chain(size: int) -> FontChain:
    return FontChain(size)
