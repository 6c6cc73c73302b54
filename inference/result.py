"""What recognition returns: typed, immutable, and convertible to the JSON shapes we serve."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

_INITIALS = re.compile(r"^(\w\.)+\w?$")
_QUALIFIER = re.compile(r"^(?P<name>.*?)_\((?P<series>[^()]*)\)$")


def display_name(tag: str) -> str:
    """Danbooru tag -> display form: ``mori_calliope`` -> ``Mori Calliope``,
    ``aqua_(konosuba)`` -> ``Aqua — Konosuba``. Dotted tags such as ``c.c.`` are kept upper-cased."""

    def words(text: str) -> str:
        parts = [p for p in text.replace("_", " ").split(" ") if p]
        return " ".join(p.upper() if _INITIALS.match(p) else p[:1].upper() + p[1:] for p in parts)

    m = _QUALIFIER.match(tag)
    if m and m.group("name"):
        return f"{words(m.group('name'))} — {words(m.group('series'))}"
    return words(tag)


def series_of(tag: str) -> str | None:
    """The series qualifier of a tag, in display form, or None (``aqua_(konosuba)`` -> ``Konosuba``)."""
    m = _QUALIFIER.match(tag)
    return display_name(m.group("series")) if m and m.group("name") else None


@dataclass(frozen=True)
class Character:
    """Who a tag is: its display name, the work it comes from (None when unknown) and a page about it."""

    tag: str
    display: str
    series: str | None = None
    url: str | None = None

    @classmethod
    def from_tag(cls, tag: str) -> Character:
        """What the tag alone says: ``aqua_(konosuba)`` -> "Aqua", series "Konosuba"."""
        series = series_of(tag)
        name = display_name(tag)
        if series and name.endswith(f" — {series}"):
            name = name[: -len(f" — {series}")]
        return cls(tag, name, series, None)

    @property
    def title(self) -> str:
        """One line for people: "Rem — Re:Zero", or the name alone when the work is unknown."""
        return f"{self.display} — {self.series}" if self.series else self.display


@dataclass(frozen=True)
class Candidate:
    name: str  # the tag, e.g. "aqua_(konosuba)"
    probability: float
    source: str = "model"  # "model" (the bundle: its classifier or its known characters) or "gallery" (enrolled)
    who: Character | None = field(default=None, compare=False)  # from the bundle's character index, if it has one

    @property
    def character(self) -> Character:
        return self.who or Character.from_tag(self.name)

    @property
    def display(self) -> str:
        return self.character.title

    def to_json(self) -> dict:
        c = self.character
        out = {"name": self.name, "display": c.display, "series": c.series,
               "probability": round(float(self.probability), 6)}
        if c.url:
            out["url"] = c.url
        return out


# One wording for a head the bot will not name, everywhere (CLI, bot, HTTP API docs); the picture labels it "?".
UNKNOWN_TEXT = "I don't recognise this character"


@dataclass(frozen=True)
class Head:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the (EXIF-rotated) original picture
    score: float  # detector confidence (1.0 for whole_image)
    candidates: tuple[Candidate, ...]
    sure: bool  # known >= the call's threshold: the head is named (inference/decide.py)
    known: float | None = None  # how sure the bot is that this is a character it knows, in [0, 1]

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def answer(self) -> str | None:
        """The tag the bot names this head with, or None when it says it does not recognise the character."""
        return self.top.name if self.sure and self.top is not None else None

    def to_json(self) -> dict:
        known = self.known if self.known is not None else (self.top.probability if self.top else 0.0)
        return {
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 4),
            "answer": self.answer,
            "known": round(float(known), 4),
            "sure": bool(self.sure),
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass(frozen=True)
class Result:
    width: int
    height: int
    heads: tuple[Head, ...]
    timings_ms: dict = field(default_factory=dict, compare=False)
    # The decoded RGB picture (H, W, 3) uint8, kept so the picture can be annotated without decoding
    # it again. Not part of the JSON.
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {"width": self.width, "height": self.height, "heads": [h.to_json() for h in self.heads]}

    def to_reference_json(self) -> dict:
        """The reference system's response shape: ``{"preds": [[[name, prob], ...]], "head_locs": [[[x1, y1], [x2, y2]]]}``."""
        return {
            "preds": [[[c.name, float(c.probability)] for c in h.candidates] for h in self.heads],
            "head_locs": [[[int(h.box[0]), int(h.box[1])], [int(h.box[2]), int(h.box[3])]] for h in self.heads],
        }
