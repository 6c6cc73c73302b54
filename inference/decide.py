"""Step 6 — decide: is this a character I know, or do I say "I don't recognise this character"?

Every head gets a score `known` in [0, 1] and is named only when the score reaches the threshold (the manifest's
calibrated `decision.threshold`, unless a caller or a server setting gives its own). With a `decision` section
the score is a logistic model of the features the manifest lists by name (`decision.features`), fitted in
training on characters the encoder never saw (leave-characters-out) against known ones
(`python -m training.general.bundle`). The features, each one number per head:

- `top1_probability`: the top candidate's probability (the ranking's own confidence);
- `top1_cosine`: the cosine of the head to the nearest prototype (known characters and the server's enrolled
  ones), on the part of the embedding galleries compare: an unknown character is far from every prototype;
- `cosine_margin`: the nearest prototype's cosine minus the second nearest's;
- `linear_max_logit`, `linear_top1_probability`: the bundle classifier's largest logit and its own softmax's top
  probability (how sure the classifier of the few characters it was trained on is, before the gallery is heard);
- `gallery_top1_probability@S`, `gallery_energy@S`: over the cosines to every prototype, the top probability of
  softmax(S * cos) and the energy logsumexp(S * cos) / S, for a sharpness S (a number in the name).

Without a `decision` section (older bundles) the score is the top candidate's probability, as before. The section
is parsed and checked with the rest of the manifest (`inference/manifest.py`, `DecisionSpec`: the feature names
are data there); this module computes the features and the score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .classify import Classifier, softmax
from .gallery import Gallery
from .manifest import DecisionSpec, sharpened

Decision = DecisionSpec  # the manifest's decision section, parsed (`Decision.from_manifest`)
FEATURES = ("top1_probability", "top1_cosine", "cosine_margin")  # the first decision's; still read
LEGACY_THRESHOLD = 0.30  # top-1 probability, for bundles without a decision section


class Inputs:
    """What the features of N heads are computed from, each computed once and only when a feature asks."""

    def __init__(self, emb: np.ndarray, top1: np.ndarray, classifier: Classifier, gallery: Gallery | None,
                 cos: np.ndarray | None = None):
        self.emb, self.top1, self.classifier, self.gallery = emb, np.asarray(top1, np.float64), classifier, gallery
        self._cos, self._two, self._lin = cos, None, None
        self._lse: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def cos(self) -> np.ndarray | None:
        """(N, P) cosines to every prototype (known, then enrolled), or None without any (`Classifier.cosines`)."""
        if self._cos is None:
            self._cos = self.classifier.cosines(self.emb, self.gallery)
        return self._cos

    @property
    def two(self) -> np.ndarray:
        """(N, 2) the nearest and second nearest prototype's cosines (zeros without prototypes)."""
        if self._two is None:
            cos = self.cos
            if cos is None:
                self._two = np.zeros((len(self.emb), 2))
            elif cos.shape[1] >= 2:
                self._two = -np.partition(-cos, 1, axis=1)[:, :2]
            else:
                self._two = np.concatenate([cos, cos], axis=1)
        return self._two

    def sharpened(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """(largest, logsumexp) of s * cos per head, once per sharpness."""
        if s not in self._lse:
            z = s * self.cos
            top = z.max(axis=1)
            self._lse[s] = top, top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        return self._lse[s]

    @property
    def lin(self) -> np.ndarray:
        if self._lin is None:
            clf = self.classifier
            self._lin = (clf.logits(self.emb) / clf.temperature).astype(np.float64)
        return self._lin


def _sharp(kind: str, s: float) -> Callable[[Inputs], np.ndarray]:
    def f(x: Inputs) -> np.ndarray:
        if x.cos is None:
            return np.zeros(len(x.emb))
        top, lse = x.sharpened(s)
        return lse / s if kind == "gallery_energy" else np.exp(top - lse)
    return f


_FIXED: dict[str, Callable[[Inputs], np.ndarray]] = {
    "top1_probability": lambda x: x.top1,
    "top1_cosine": lambda x: x.two[:, 0],
    "cosine_margin": lambda x: x.two[:, 0] - x.two[:, 1],
    "linear_max_logit": lambda x: x.lin.max(axis=1),
    "linear_top1_probability": lambda x: softmax(x.lin).max(axis=1),
}


def feature(name: str) -> Callable[[Inputs], np.ndarray] | None:
    """The function of a feature name, or None when the name is not one of the manifest's
    (`inference.manifest.DECISION_FEATURES`, and the sharpened gallery's)."""
    if name in _FIXED:
        return _FIXED[name]
    sharp = sharpened(name)
    return _sharp(*sharp) if sharp else None


def features(emb: np.ndarray, top1: np.ndarray, classifier: Classifier, gallery: Gallery | None,
             names: Sequence[str] = FEATURES, cos: np.ndarray | None = None) -> np.ndarray:
    """(N, F) decision features `names` of N heads (`top1`: each head's top candidate probability; `cos`: their
    `Classifier.cosines`, when the caller has them)."""
    x = Inputs(emb, top1, classifier, gallery, cos)
    return np.stack([feature(n)(x) for n in names], axis=1) if len(names) else np.zeros((len(emb), 0))


def known_scores(decision: Decision | None, feats: np.ndarray) -> np.ndarray:
    if decision is None:
        return feats[:, 0]
    return 1.0 / (1.0 + np.exp(-(feats @ decision.weights + decision.bias)))


def decide(decision: Decision | None, emb: np.ndarray, top1: np.ndarray, classifier: Classifier,
          gallery: Gallery | None, cos: np.ndarray | None = None, views: int = 1) -> np.ndarray:
    """Each head's `known` score: the decision's, or its top-1 probability without one. `views` > 1: `emb` (and
    `cos`) hold `views` consecutive rows per head (`Classifier.__call__`), `top1` one per head; the features of a
    head are the mean of its views'."""
    if decision is None:
        return np.asarray(top1, np.float64)
    top1 = np.repeat(np.asarray(top1, np.float64), views)
    f = features(emb, top1, classifier, gallery, decision.features, cos)
    return known_scores(decision, f.reshape(-1, views, f.shape[1]).mean(1))
