"""Step 6 — decide: is this a character I know, or do I say "I don't recognise this character"?

Every head gets a score `known` in [0, 1] and is named only when the score reaches the threshold (the manifest's
calibrated `decision.threshold`, unless a caller or a server setting gives its own). With a `decision` section
the score is a logistic model of three numbers, fitted in training on characters the encoder never saw
(leave-characters-out) against known ones (`python -m training.general.bundle`):

- the top candidate's probability (the ranking's own confidence);
- the cosine of the head to the nearest prototype (known characters and the server's enrolled ones), on the part
  of the embedding galleries compare: an unknown character is far from every prototype;
- the margin between the nearest and the second nearest prototype.

Without a `decision` section (older bundles) the score is the top candidate's probability, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classify import Classifier, gallery_view
from .gallery import Gallery

FEATURES = ("top1_probability", "top1_cosine", "cosine_margin")
LEGACY_THRESHOLD = 0.30  # top-1 probability, for bundles without a decision section


@dataclass(frozen=True)
class Decision:
    weights: np.ndarray  # (3,) over FEATURES
    bias: float
    threshold: float

    @classmethod
    def from_manifest(cls, spec: dict | None) -> Decision | None:
        from .errors import BundleError

        if not spec:
            return None
        w = np.asarray(spec.get("weights", []), np.float64)
        t = float(spec.get("threshold", 0.5))
        if list(spec.get("features", [])) != list(FEATURES) or w.shape != (len(FEATURES),) or not 0 <= t <= 1:
            raise BundleError(f"decision needs features {list(FEATURES)}, as many weights and a threshold in [0, 1].")
        return cls(w, float(spec.get("bias", 0.0)), t)


def features(emb: np.ndarray, top1: np.ndarray, classifier: Classifier, gallery: Gallery | None) -> np.ndarray:
    """(N, 3) decision features of N heads (`top1`: each head's top candidate probability)."""
    protos = []
    if classifier.known is not None and len(classifier.known.names):
        protos.append(classifier.known.vectors)
    if gallery is not None and len(gallery):
        protos.append(gallery_view(gallery.prototypes()[1], classifier.gallery_dims))
    part = gallery_view(emb, classifier.gallery_dims)
    if not protos:
        return np.stack([top1, np.zeros(len(emb)), np.zeros(len(emb))], axis=1)
    # one product per block, not one over their concatenation: that copied the 7,229 known prototypes per call
    cos = np.concatenate([part @ block.T for block in protos], axis=1) if len(protos) > 1 else part @ protos[0].T
    if cos.shape[1] >= 2:
        two = -np.partition(-cos, 1, axis=1)[:, :2]
    else:
        two = np.concatenate([cos, cos], axis=1)
    return np.stack([top1, two[:, 0], two[:, 0] - two[:, 1]], axis=1)


def known_scores(decision: Decision | None, feats: np.ndarray) -> np.ndarray:
    if decision is None:
        return feats[:, 0]
    return 1.0 / (1.0 + np.exp(-(feats @ decision.weights + decision.bias)))
