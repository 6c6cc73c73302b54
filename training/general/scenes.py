"""End to end on whole pictures, as a user posts them: ../shared/data/scenes through a bundle's real pipeline.

    python -m training.general.scenes [--bundle runs/general/bundle] [--json]

- `onepiece` (287 fan art and screenshots of Luffy, Zoro and Sanji): characters the bundle knows from *one*
  MyAnimeList portrait each (no other picture of them was used anywhere) -- the fan-art proxy on full pictures;
- `newgame` (450 fan-art pictures of the New Game! characters);
- the reference system's own examples: Rem (Re:Zero), Misaka Mikoto, C.C.

A scene's Danbooru tag is matched to the bundle's tag by the words of the name (``monkey_d._luffy`` = "Luffy
Monkey D."), among characters with that exact set of words; a tag with no such character, or with more than
one, is not scored. A picture counts as named when one of its heads has the character at top-1 (top-3).
"""

from __future__ import annotations

import argparse
import csv
import json
import re

from inference.pipeline import Pipeline
from inference.result import _QUALIFIER
from inference.settings import Settings
from training.common import DATA

REFERENCE = {"kiyoshimu-test0.jpg": "Rem", "kiyoshimu-test1.jpg": "Mikoto Misaka", "kiyoshimu-head1.jpg": "C.C."}


def words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.split(r"[^\w]+", text.casefold()) if w)


def tag_words(tag: str) -> frozenset[str]:
    m = _QUALIFIER.match(tag)
    return words((m.group("name") if m and m.group("name") else tag).replace("_", " "))


def match_tags(index, scene_tags: set[str]) -> dict[str, str]:
    """scene tag -> bundle tag: the tag itself when the bundle knows it, else the one character whose name has the
    same words."""
    by_words: dict[frozenset, list[str]] = {}
    for t in index.tags:
        by_words.setdefault(words(index.get(t).display), []).append(t)
    out = {}
    for tag in scene_tags:
        if tag in index:
            out[tag] = tag
        elif len(by_words.get(tag_words(tag), [])) == 1:
            out[tag] = by_words[tag_words(tag)][0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="models")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pipe = Pipeline.from_bundle(args.bundle, Settings(ort_threads=2))
    with open(DATA / "scenes" / "index.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["character"]]
    mapping = match_tags(pipe.characters, {r["character"] for r in rows})
    out: dict = {"matched_tags": dict(sorted(mapping.items()))}
    for scene_set in ("onepiece", "newgame"):
        picked = [r for r in rows if r["path"].startswith(f"scenes/{scene_set}/") and r["character"] in mapping]
        top1 = top3 = nohead = 0
        per: dict[str, list[int]] = {}
        for r in picked:
            truth = mapping[r["character"]]
            res = pipe.recognize((DATA / r["path"]).read_bytes(), top_k=3)
            ranks = [next((i for i, c in enumerate(h.candidates) if c.name == truth), 9) for h in res.heads] or [9]
            nohead += not res.heads
            top1 += min(ranks) == 0
            top3 += min(ranks) < 3
            p = per.setdefault(r["character"], [0, 0])
            p[0] += 1
            p[1] += min(ranks) == 0
        n = len(picked)
        out[scene_set] = {"pictures": n, "top1": round(top1 / n, 4) if n else None,
                          "top3": round(top3 / n, 4) if n else None, "no_head": nohead,
                          "per_character_top1": {c: round(h / k, 4) for c, (k, h) in sorted(per.items())}}
    ref = {}
    for name, want in REFERENCE.items():
        res = pipe.recognize((DATA / "scenes" / "misc" / name).read_bytes(), top_k=3)
        heads = [[(c.name, c.character.display, round(c.probability, 4)) for c in h.candidates] for h in res.heads]
        ref[name] = {"want": want, "named": any(h and h[0][1] == want for h in heads), "heads": heads}
    out["reference_examples"] = ref
    out["reference_named"] = f"{sum(v['named'] for v in ref.values())}/{len(ref)}"
    print(json.dumps(out, ensure_ascii=False, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
