"""Draw docs/annotate-after.png (and, given the old annotate module, docs/annotate-before.png): a synthetic crowded
picture (no third-party art), 38 drawn heads named in several scripts, some not recognised.

    python docs/annotation_examples.py [--before OLD_ANNOTATE_PY]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.result import Candidate, Character, Head, Result  # noqa: E402

NAMES = [("aqua_(konosuba)", "Aqua", "Konosuba"), ("mal_40", "モンキー・D・ルフィ", "ONE PIECE"),
         ("hoshino_(blue_archive)", "호시노", "Blue Archive"), ("misaka_mikoto", "御坂美琴", "とある魔術の禁書目録"),
         ("mal_118763", "Rem", "Re:Zero kara Hajimeru Isekai Seikatsu"), ("c.c.", "C.C.", "Code Geass")]


def picture(w=1024, h=1000, rows=6, cols=7, n=38, size=110):
    rng = np.random.default_rng(0)
    im = Image.new("RGB", (w, h), (236, 232, 226))
    d = ImageDraw.Draw(im)
    heads = []
    for i in range(n):
        r, c = divmod(i, cols)
        x = int((c + 0.5) * w / cols - size / 2)
        y = int((r + 0.5) * h / rows - size / 2)
        hair = tuple(int(v) for v in rng.integers(40, 230, 3))
        d.ellipse([x, y, x + size, y + size], fill=(250, 224, 200), outline=hair, width=10)
        d.ellipse([x + 25, y + 45, x + 40, y + 62], fill=(40, 60, 140))
        d.ellipse([x + 70, y + 45, x + 85, y + 62], fill=(40, 60, 140))
        tag, disp, series = NAMES[i % len(NAMES)]
        who = Character(tag, disp, series)
        p = float(rng.uniform(0.35, 0.99))
        sure = i % 5 != 3
        heads.append(Head((x, y, x + size, y + size), 0.9, (Candidate(tag, p, "model", who),), sure, p if sure else 0.1))
    return Result(w, h, tuple(heads), {}, np.asarray(im))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", help="an older inference/annotate.py to draw the 'before' picture with")
    args = ap.parse_args()
    from inference.annotate import draw

    r = picture()
    draw(r).save(ROOT / "docs" / "annotate-after.png")
    small = picture(w=61, h=80, rows=1, cols=1, n=1, size=50)
    im = draw(small)
    im.resize((im.width * 4, im.height * 4), Image.NEAREST).save(ROOT / "docs" / "annotate-after-small.png")
    if args.before:
        spec = importlib.util.spec_from_file_location("inference.annotate_before", args.before)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        old.draw(r).save(ROOT / "docs" / "annotate-before.png")
        im = old.draw(small)
        im.resize((im.width * 4, im.height * 4), Image.NEAREST).save(ROOT / "docs" / "annotate-before-small.png")


if __name__ == "__main__":
    main()
