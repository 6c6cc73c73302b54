"""How many of the reference system's characters a bundle knows: by tag, or by name within the tag's own work.

    python -m training.general.coverage [--bundle models] [--missing 15]

The reference system's label list (`../shared/data/reference/crystal-eyes/chara.json`, 1,551 Danbooru tags) is
what fan-art channels post most. A reference tag counts as known when
- the bundle knows that very tag (`known.npz`, or the classifier's labels), or
- the bundle knows a character of the same name (the words of its display name or of its tag without the
  "_(work)" suffix, in any order: MyAnimeList's "Marisa Kirisame" is Danbooru's `kirisame_marisa`) within the tag's
  own work: the reference look-up's work for the tag (`reference/character-series.csv`) or the tag's suffix
  (`fubuki_(kantai_collection)`), compared as `labels.same_work` does (one franchise however spelt; a work the
  look-up writes only in Chinese cannot be compared and counts as unknown, `tag_works`). `name`: the
  works agree; `name_unconfirmed`: one side's work is unknown (a MyAnimeList portrait whose anime the data does not
  say, a tag the look-up has no work for), so nothing says it is another work's: counted as known, as the issue's
  ".36 today" counts it, and reported apart (`confirmed_share` leaves them out).
A namesake from another work (Azur Lane's Fubuki for `fubuki_(kantai_collection)`) does not count: `namesake_only`.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from training.common import DATA, ROOT
from training.general.labels import franchise, reference_series, same_work

REFERENCE_TAGS = DATA / "reference" / "crystal-eyes" / "chara.json"
SUFFIX = re.compile(r"_\(([^()]*)\)$")


@dataclass(frozen=True)
class Known:
    tag: str
    display: str
    series: str | None


def name_key(text: str) -> tuple[str, ...]:
    """The words of a name, folded and sorted: "Marisa Kirisame", "kirisame_marisa" -> ('kirisame', 'marisa').
    Romanised long vowels are folded too ("Toujou" ~ "Tojo", "Yuuki" ~ "Yuki")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    words = re.sub(r"[\W_]+", " ", text).split()
    return tuple(sorted(re.sub(r"ou|oo", "o", re.sub(r"uu", "u", w)) for w in words))


def tag_name(tag: str) -> str:
    """The name part of a Danbooru tag: `fubuki_(kantai_collection)` -> "fubuki"."""
    return SUFFIX.sub("", tag)


def tag_works(tag: str, lookup: dict[str, str]) -> list[str]:
    """The works a reference tag belongs to, as far as they can be compared: the reference look-up's, then its
    suffix's. Danbooru's "_(character)" says the character has its work's name (`bayonetta_(character)`). A work the
    look-up gives only in Chinese ("妖精的尾巴") cannot be compared with the bundle's (romanised or English) works:
    it is left out, so such a tag's work counts as unknown."""
    works = [lookup[tag]] if lookup.get(tag) and re.search(r"[A-Za-z]", lookup[tag]) else []
    m = SUFFIX.search(tag)
    if m:
        works.append((tag_name(tag) if m.group(1) == "character" else m.group(1)).replace("_", " "))
    return works


def coverage(reference: list[str], known: list[Known], lookup: dict[str, str]) -> dict:
    """Per reference tag how the bundle knows it ('tag', 'name', 'namesake_only' or 'unknown'), and the shares."""
    tags = {k.tag for k in known}
    by_name: dict[tuple[str, ...], list[Known]] = {}
    for k in known:
        keys = {name_key(k.display)}
        if not k.tag.startswith("mal_"):
            keys.add(name_key(tag_name(k.tag)))
        for key in keys - {()}:
            by_name.setdefault(key, []).append(k)
    verdicts = {}
    for t in reference:
        if t in tags:
            verdicts[t] = "tag"
            continue
        same_name = by_name.get(name_key(tag_name(t)), [])
        works = tag_works(t, lookup)
        if any(k.series and any(same_work(k.series, w) for w in works) for k in same_name):
            verdicts[t] = "name"
        elif same_name and (not works or any(not k.series for k in same_name)):
            verdicts[t] = "name_unconfirmed"
        else:
            verdicts[t] = "namesake_only" if same_name else "unknown"
    n = Counter(verdicts.values())
    total = max(len(reference), 1)
    return {"reference": len(reference), "by_tag": n["tag"], "by_name": n["name"],
            "by_name_unconfirmed": n["name_unconfirmed"], "namesake_only": n["namesake_only"], "unknown": n["unknown"],
            "known_share": round((n["tag"] + n["name"] + n["name_unconfirmed"]) / total, 4),
            "confirmed_share": round((n["tag"] + n["name"]) / total, 4), "verdicts": verdicts}


def bundle_characters(bundle: Path) -> list[Known]:
    """Every character a bundle knows (classifier labels and known prototypes), described by its index."""
    from inference.bundle import Bundle

    b = Bundle.load(bundle, sessions=False)
    return [Known(c.tag, c.display, c.series) for c in (b.characters.get(t) for t in b.characters.tags)]


def missing_by_work(verdicts: dict[str, str], lookup: dict[str, str]) -> Counter:
    """Reference tags not known, counted by their work (the franchise's one spelling where there is one)."""
    out = Counter()
    for t, v in verdicts.items():
        if v in ("namesake_only", "unknown"):
            works = tag_works(t, lookup)
            out[(franchise(works[0]) or works[0]) if works else "(no work)"] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=ROOT / "models")
    ap.add_argument("--missing", type=int, default=15, help="works with the most unknown reference tags to list")
    ap.add_argument("--json", action="store_true", help="print the numbers (and every verdict) as JSON")
    a = ap.parse_args()
    reference = json.loads(REFERENCE_TAGS.read_text())
    lookup = reference_series()[0]
    known = bundle_characters(a.bundle)
    r = coverage(reference, known, lookup)
    if a.json:
        print(json.dumps(r, ensure_ascii=False))
        return
    print(f"{a.bundle}: {len(known)} characters; of the {r['reference']} reference tags {r['known_share']:.2%} known "
          f"({r['by_tag']} by tag, {r['by_name']} by name within their work, {r['by_name_unconfirmed']} by name where "
          f"one work is unknown; {r['confirmed_share']:.2%} without those); {r['namesake_only']} only by a namesake of "
          f"another work, {r['unknown']} not at all")
    print("unknown, by work: " + ", ".join(f"{w} {n}" for w, n in missing_by_work(r["verdicts"], lookup)
                                            .most_common(a.missing)))


if __name__ == "__main__":
    main()
