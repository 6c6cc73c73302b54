"""What a teacher is told after `/teach` or `enroll` (issue 53, point 3): how well the character is now recognised,
and whether its pictures look like a character the bundle already knows.

- `recognised`: leave-one-out over the character's shots in the gallery: each shot, left out in turn, is ranked
  among every character of the bundle and the gallery (the gallery's prototype of this character made of the other
  shots, the manifest's `home_prior` included, as a recognition on that server ranks it); how many come out on top.
  It needs two shots or more (`MIN_SHOTS`) and reads the last `MAX_SHOTS`.
- `looks_like`: the shots ranked without the gallery, the bundle alone: the built-in character that the bot would
  name (the decision of inference/decide.py says "known") for at least half of them, if any. A teacher who typed a
  new name for a character the bundle knows is offered that one.

The words are in the message table of inference/errors.py (`teach_lines`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .classify import Classifier
from .decide import Decision, decide
from .gallery import Gallery
from .result import Character  # noqa: TC001  (a field's type)

MIN_SHOTS = 2
MAX_SHOTS = 20


@dataclass(frozen=True)
class TeachReport:
    tag: str
    shots: int  # pictures of the character in the gallery now
    tested: int  # how many were left out in turn (0: fewer than MIN_SHOTS)
    recognised: int  # of those, how many were named this character at top-1
    looks_like: Character | None = None  # a character the bundle knows that the shots look like
    looks_like_shots: int = 0  # how many of the shots the bot names that one without the gallery
    checked: int = 0  # how many shots were ranked without the gallery (the last MAX_SHOTS)

    @property
    def share(self) -> float | None:
        return self.recognised / self.tested if self.tested else None


def assess(classifier: Classifier, decision: Decision | None, gallery: Gallery, tag: str,
           threshold: float) -> TeachReport:
    """The report of character `tag` of `gallery` (see the module's docstring)."""
    vectors = gallery.vectors_of(tag)
    shots = len(vectors)
    recent = vectors[-MAX_SHOTS:]
    tested = recognised = 0
    if shots >= MIN_SHOTS:
        names, others = gallery.names_and_vectors()
        mine = np.flatnonzero(np.array(names) == tag)[-MAX_SHOTS:]
        for i in mine:
            keep = np.ones(len(names), bool)
            keep[i] = False
            rest = Gallery(gallery.encoder_id, gallery.dim, [n for n, k in zip(names, keep, strict=True) if k],
                           others[keep], gallery.view)
            top = classifier(others[i:i + 1], top_k=1, gallery=rest)[0]
            tested += 1
            recognised += bool(top) and top[0].name == tag
    ranked = classifier(recent, top_k=1)
    top1 = np.array([c[0].probability if c else 0.0 for c in ranked])
    known = decide(decision, recent, top1, classifier, None)
    named = Counter(c[0].name for c, k in zip(ranked, known, strict=True) if c and k >= threshold)
    looks_like, count = None, 0
    if named:
        name, count = named.most_common(1)[0]
        if 2 * count >= len(recent):
            looks_like = next(c[0] for c in ranked if c and c[0].name == name).character
    return TeachReport(tag, shots, tested, recognised, looks_like, count if looks_like is not None else 0,
                       len(recent))
