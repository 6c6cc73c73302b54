"""Who each character is and where it comes from: the label list of the many-character bundle.

    python -m training.general.labels        # prints the counts and the merges

Reads ../shared/data/characters/index.csv (+ series.csv) and ../shared/data/reference/character-series.csv and
gives one `Label` per identity: `tag` (unique, Danbooru style), `display` (the name as the source writes it),
`series` (the work, or None when unknown) and `url` (the MyAnimeList page, which lists the anime, when known).

The same person under two sources is merged into one label (the first tag of: a faces/ tag, a game tag),
and only when the works agree: `same_as` is only a hint (two different "Rem"s share it). A MyAnimeList
character is merged into a faces/ or game tag when its series (series.csv, or the reference look-up) names the
same work; Danbooru's tag in series.csv is taken as a match too, and so is a faces/ character (the 32 curated
ones) when the portrait's series is unknown.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from training.common import DATA, read_face_index

CHARS = DATA / "characters"
REFERENCE_SERIES = DATA / "reference" / "character-series.csv"
MAL_URL = "https://myanimelist.net/character/{}"
# MyAnimeList characters whose name another shares: the one the reference look-up means, by eye
SERIES_CHECKED = Path(__file__).resolve().parent / "series_checked.json"
# merges looked at by eye (all 51 of `python -m training.general.labels`): the MyAnimeList characters that are
# not the game character their name and series.csv's joined work point to (old MyAnimeList ids, other anime);
# they stay their own label, without that work
MERGE_CHECKED = Path(__file__).resolve().parent / "merge_checked.json"
# series.csv's rows joined by name to a Danbooru tag list ('danbooru tag list'), all 511 looked at by eye beside the
# portrait: the 47 whose work is not the portrait's character's ('wrong': Inuyasha's Kikyou joined to Blue Archive's,
# One Punch Man's Boros to Hololive) or cannot be told from it ('unsure') get no work; their page still says it
JOINS_CHECKED = Path(__file__).resolve().parent / "joins_checked.json"
# Danbooru's disambiguation of a franchise's tag ("naruto (series)"), not part of the work's name
SERIES_SUFFIX = re.compile(r"\s*\(series\)$")
# words a romanised or English title keeps in lower case unless it starts the title ("Toaru Majutsu no Index")
SMALL_WORDS = frozenset("no wo ni ga wa to de e mo na ka kara made yori o ya he und of and than the a an in on at for".split())
# franchises the sources spell several ways (Danbooru's "touhou" and "idolmaster", MyAnimeList's "Touhou Koumakyou ~
# the Embodiment of Scarlet Devil", the games' "Touhou Project" and "The Idolmaster"): (work key, the one spelling).
# A key matches when it is the pattern's whole key, or starts with it for the prefixes (every "Touhou ..." title is
# a Touhou Project game); the Idolmaster's sub-series ("... Cinderella Girls") keep their own name
FRANCHISES = (
    (re.compile(r"touhou.*"), "Touhou Project"),
    (re.compile(r"(the)?idolmaster"), "The Idolmaster"),
    (re.compile(r"kantaicollection|kancolle"), "Kantai Collection"),
)
# the reference system's label list: where two game tags are one person, the tag it uses is kept
REFERENCE_TAGS = DATA / "reference" / "crystal-eyes" / "chara.json"


@dataclass(frozen=True)
class CharRow:
    path: str  # relative to characters/
    tag: str  # the merged identity
    source_tag: str  # the tag as the index writes it
    source: str
    kind: str
    variant: str


@dataclass
class Label:
    tag: str
    display: str
    series: str | None
    url: str | None
    sources: list[str]

    def to_json(self) -> dict:
        return {"tag": self.tag, "display": self.display, "series": self.series, "url": self.url,
                "sources": self.sources}


def _norm(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "", (text or "").lower())


def _work_norm(text: str | None) -> str:
    """A title folded for comparison: accents, Danbooru's " (series)", romanised long vowels ("dō", "dou" -> "do")."""
    text = unicodedata.normalize("NFKD", SERIES_SUFFIX.sub("", (text or "").strip()))
    text = _norm("".join(c for c in text if not unicodedata.combining(c)))
    return re.sub(r"ou|oo", "o", text.replace("uu", "u"))


def same_work(a: str | None, b: str | None) -> bool:
    """Loose comparison of two series names ("Re:Zero kara Hajimeru Isekai Seikatsu" ~ "re:zero ...",
    "Toradora!" ~ "toradora", "danganronpa (series)" ~ "Danganronpa: Trigger Happy Havoc"): equal or one contains
    the other, after dropping case, accents, punctuation and Danbooru's " (series)" and folding long vowels, or one
    franchise (`FRANCHISES`: "touhou" ~ "Touhou Koumakyou ~ the Embodiment of Scarlet Devil")."""
    na, nb = _work_norm(a), _work_norm(b)
    if len(na) < 3 or len(nb) < 3:
        return False
    return na == nb or na in nb or nb in na or work_key(a) == work_key(b)


def reference_series() -> tuple[dict[str, str], dict[str, str]]:
    """(danbooru tag -> series, MyAnimeList name -> series) from the reference look-up."""
    by_tag, by_mal = {}, {}
    with open(REFERENCE_SERIES, newline="") as f:
        for r in csv.DictReader(f):
            series = r["series"] or r["series_zh"]
            if not series:
                continue
            if r["danbooru_tag"].startswith("mal:"):
                by_mal[r["danbooru_tag"][4:]] = series
            else:
                by_tag[r["danbooru_tag"]] = series
    return by_tag, by_mal


def _title(series: str) -> str:
    """Danbooru's copyright tags are lower case ("toaru majutsu no index", "fate/grand order", "naruto (series)"):
    title-case them for display, small words lower case but the first, every part of "re:zero" or "yu-gi-oh!"
    capitalised, and Danbooru's " (series)" dropped. A title with a capital letter is kept as written."""
    series = SERIES_SUFFIX.sub("", series.strip())
    if any(c.isupper() for c in series):
        return series
    words = series.split()
    out = []
    for i, w in enumerate(words):
        if i and w.rstrip("?!.,") in SMALL_WORDS:
            out.append(w)
        else:  # each part of "yu-gi-oh!", "re:zero", "steins;gate", but not an honorific ("osomatsu-san")
            out.append(re.sub(r"(^|[:/;.]|-(?!(?:san|kun|chan|sama)\b))([a-z])",
                              lambda m: m.group(1) + m.group(2).upper(), w))
    return " ".join(out)


def franchise(series: str) -> str | None:
    """The one spelling of a franchise the sources spell several ways (`FRANCHISES`), or None."""
    key = _norm(SERIES_SUFFIX.sub("", series.strip().lower()))
    return next((name for pattern, name in FRANCHISES if pattern.fullmatch(key)), None)


def work_key(series: str) -> str:
    """Two spellings of one work share this key ("Blue Archive" and "blue archive", "Naruto" and "naruto (series)",
    "idolmaster" and "The Idolmaster")."""
    return _norm(franchise(series) or SERIES_SUFFIX.sub("", series.strip().lower()))


def name_works(labels: list[Label]) -> None:
    """One spelling per work across the labels: a franchise's own (`FRANCHISES`), else the one written with capitals
    (a game's own name, MyAnimeList's top list), the most common of them if several, else the lower-case tag
    title-cased (`_title`)."""
    spellings: dict[str, Counter] = {}
    for lab in labels:
        if lab.series:
            spellings.setdefault(work_key(lab.series), Counter())[lab.series] += 1
    best = {}
    for key, seen in spellings.items():
        cased = [(n, s) for s, n in seen.items() if any(c.isupper() for c in s)]
        own = franchise(next(iter(seen)))
        best[key] = own or (max(cased)[1] if cased else _title(seen.most_common(1)[0][0]))
    for lab in labels:
        if lab.series:
            lab.series = best[work_key(lab.series)]


def _face_display(tag: str) -> str:
    from inference.result import display_name

    name = display_name(tag)
    return name.split(" — ")[0]


def build() -> tuple[list[Label], list[CharRow], list[str]]:
    """(labels sorted by tag, one CharRow per picture with its merged tag, merge notes)."""
    by_tag, by_mal = reference_series()
    with open(CHARS / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    with open(CHARS / "series.csv", newline="") as f:
        mal_series = {r["character"]: r for r in csv.DictReader(f)}
    face_tags = sorted({r.character for r in read_face_index()})

    labels: dict[str, Label] = {}
    for t in face_tags:
        s = by_tag.get(t)
        labels[t] = Label(t, _face_display(t), _title(s) if s else None, None, ["faces"])
    first: dict[str, dict] = {}
    for r in index:
        first.setdefault(r["character"], r)
    # game characters first, so a MyAnimeList character can be merged into one
    for tag, r in sorted(first.items(), key=lambda kv: kv[1]["source"] == "myanimelist"):
        if r["source"] != "myanimelist":
            labels[tag] = Label(tag, r["name"], r["series"] or None, None, [r["source"]])
    merged: dict[str, str] = {}
    notes = []
    # `same_as` is written on one side only by some sources (a Touhou or Idolmaster row names its MyAnimeList twin,
    # the portrait's row does not): the hint goes both ways
    hints: dict[str, list[str]] = {t: r["same_as"].split() for t, r in first.items()}
    for t, r in first.items():
        for c in r["same_as"].split():
            if c in hints and t not in hints[c]:
                hints[c].append(t)
    # two game tags of one person in one work (Uma Musume's "hayakawa_tazuna" and "tazuna_hayakawa"): one label,
    # under the reference system's tag if it uses one of them, else the tag with more pictures
    reference = set(json.loads(REFERENCE_TAGS.read_text()))
    pictures = Counter(r["character"] for r in index)
    for tag in sorted(labels):
        if tag in merged or tag in face_tags:
            continue
        for cand in hints.get(tag, []):
            if cand == tag or cand not in labels or cand in merged or cand in face_tags:
                continue
            if not same_work(labels[tag].series, labels[cand].series):
                continue
            keep, drop = sorted((tag, cand), key=lambda t: (t not in reference, -pictures[t], t))
            merged[drop] = keep
            labels[keep].sources += [s for s in labels.pop(drop).sources if s not in labels[keep].sources]
            notes.append(f"{drop} ({first[drop]['name']}, {first[drop]['series']}) = {keep} ({labels[keep].series})")
            break
    game_merged = dict(merged)
    mal_into: set[str] = set()  # the game tags a MyAnimeList portrait was merged into: one each
    # the reference look-up is by name, so for a name two MyAnimeList characters share (Rem of Re:Zero and Rem of
    # Death Note, three Sabers) it gives the work of one of them to all: series.csv leaves those out on purpose.
    # Which portrait is the reference's character was checked by eye (SERIES_CHECKED); the others get no work.
    mal_names = Counter(r["name"] for r in first.values() if r["source"] == "myanimelist")
    checked = json.loads(SERIES_CHECKED.read_text())
    not_same = json.loads(MERGE_CHECKED.read_text())
    wrong_join = json.loads(JOINS_CHECKED.read_text())
    for tag, r in first.items():
        if r["source"] != "myanimelist":
            continue
        ms = mal_series.get(tag, {}) if tag not in wrong_join else {}
        by_name = by_mal.get(r["name"]) if mal_names[r["name"]] == 1 else checked.get(tag, {}).get("series")
        series = ms.get("series") or by_name or None
        if tag in not_same or tag in wrong_join:  # a work joined by name, the portrait's character's it is not
            series = None
        url = MAL_URL.format(tag.split("_", 1)[1])
        target = None
        for cand in hints[tag]:
            cand = game_merged.get(cand, cand)
            if cand not in labels or cand in mal_into and cand not in face_tags:
                continue
            if not_same.get(tag, {}).get("not") == cand:
                continue
            other = labels[cand]
            # a faces/ character (32 curated ones) whose words equal the portrait's: merged even when the
            # portrait's series is unknown (New Game!'s four have none in series.csv)
            if ms.get("danbooru_tag") == cand or same_work(series, other.series) or (
                    series is None and cand in face_tags):
                target = cand
                break
        if target:
            merged[tag] = target
            mal_into.add(target)
            lab = labels[target]
            lab.url = lab.url or url
            lab.series = lab.series or series
            lab.sources.append("myanimelist")
            notes.append(f"{tag} ({r['name']}, {series}) = {target} ({lab.series})")
        else:
            labels[tag] = Label(tag, r["name"], series, url, ["myanimelist"])
    name_works(list(labels.values()))
    rows = [CharRow(r["path"], merged.get(r["character"], r["character"]), r["character"], r["source"], r["kind"],
                    r["variant"]) for r in index]
    rows.sort(key=lambda r: r.path)
    return sorted(labels.values(), key=lambda lab: lab.tag), rows, notes


def read_characters() -> list[CharRow]:
    return build()[1]


def main() -> None:
    labels, rows, notes = build()
    print(f"{len(labels)} labels from {len(rows)} pictures; {sum(1 for lab in labels if lab.series)} with a series, "
          f"{sum(1 for lab in labels if lab.url)} with a MyAnimeList page; {len(notes)} merges:")
    for n in notes:
        print("  " + n)


if __name__ == "__main__":
    main()
