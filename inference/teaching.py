"""What a teacher is told after `/teach` or `enroll` (issue 53, point 3): how well the character is now recognised,
and whether its pictures look like a character the bundle already knows.

- `recognised`: leave-one-out over the character's shots in the gallery: each shot, left out in turn, is ranked
  among every character of the bundle and the gallery (the gallery's prototype of this character made of the other
  shots, the manifest's `home_prior` included, as a recognition on that server ranks it); how many come out on top.
  It needs two shots or more (`MIN_SHOTS`) and reads the last `MAX_SHOTS`.
- `looks_like`: the built-in character that the bot, without the gallery, names (the decision of
  inference/decide.py says "known") for at least half of the pictures just taught, if any: each judged as a
  recognition would judge it (`Pipeline.enroll_shot`: a whole picture by both its views), or, where only the
  stored vectors are at hand (a bot whose recognitions run on a service), the character's last shots. A teacher
  who typed a new name for a character the bundle knows is offered that one.

The words are in the message table of inference/errors.py (`teach_lines`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .classify import Classifier
from .decide import Decision, decide
from .gallery import Gallery
from .result import Candidate, Character  # noqa: TC001  (fields' types)

MIN_SHOTS = 2
MAX_SHOTS = 20


@dataclass(frozen=True, eq=False)
class Shot:
    """One picture taught: the vector the gallery stores, and who the bot names that head without the gallery
    (None: nobody it is sure of). `judged` False: not judged here (a service embedded it)."""

    vector: np.ndarray
    named: Candidate | None = None
    judged: bool = True


@dataclass(frozen=True)
class TeachReport:
    tag: str
    shots: int  # pictures of the character in the gallery now
    tested: int  # how many were left out in turn (0: fewer than MIN_SHOTS)
    recognised: int  # of those, how many were named this character at top-1
    looks_like: Character | None = None  # a character the bundle knows that the shots look like
    looks_like_shots: int = 0  # how many of the shots the bot names that one without the gallery
    checked: int = 0  # how many pictures were judged without the gallery

    @property
    def share(self) -> float | None:
        return self.recognised / self.tested if self.tested else None

    @property
    def more_needed(self) -> int:
        """How many more pictures before the left-out check can run (MIN_SHOTS in all)."""
        return max(MIN_SHOTS - self.shots, 0)


def named_alone(classifier: Classifier, decision: Decision | None, emb: np.ndarray, threshold: float,
                views: int = 1) -> list[Candidate | None]:
    """Who the bundle alone names each head (`views` rows per head), or None where the decision is not sure."""
    ranked = classifier(emb, top_k=1, views=views)
    top1 = np.array([c[0].probability if c else 0.0 for c in ranked])
    known = decide(decision, emb, top1, classifier, None, views=views)
    return [c[0] if c and k >= threshold else None for c, k in zip(ranked, known, strict=True)]


def assess(classifier: Classifier, decision: Decision | None, gallery: Gallery, tag: str, threshold: float,
           named: Sequence[Candidate | None] | None = None) -> TeachReport:
    """The report of character `tag` of `gallery` (see the module's docstring). `named`: who the bot names each
    picture just taught without the gallery (`Shot.named`); None: judge the last shots' stored vectors."""
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
    if named is None:
        named = named_alone(classifier, decision, recent, threshold)
    counts = Counter(c.name for c in named if c is not None)
    looks_like, count = None, 0
    if counts:
        name, count = counts.most_common(1)[0]
        if 2 * count >= len(named):
            looks_like = next(c for c in named if c is not None and c.name == name).character
    return TeachReport(tag, shots, tested, recognised, looks_like, count if looks_like is not None else 0,
                       len(named))
