"""Step 4b — verify: embeddings -> is each detected box a head?

The detector's confident mistakes are decorations (paw and flower prints, stars, hands, plush toys). The
encoder's embedding of a box (step 4, computed anyway to name it) tells those from heads far better, so an
optional linear check on it, p = sigmoid(w . e + b), drops the boxes with p below the manifest's
`verifier.threshold`. The weights are fitted on the encoder's embeddings of training pictures
(`python -m training.detector.verifier`), so the bundle refuses a verifier made for another encoder. A verifier
whose manifest section says `reads` (a block such as `closed`) looks at that run of the embedding alone.
"""

from __future__ import annotations

import numpy as np

from .manifest import VerifierSpec


class Verifier:
    def __init__(self, spec: VerifierSpec, weights: tuple[np.ndarray, float], threshold: float | None = None):
        self.spec = spec
        self.w = np.asarray(weights[0], np.float32).reshape(-1)
        self.b = float(weights[1])
        self.threshold = float(spec.threshold if threshold is None else threshold)

    def probability(self, emb: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N,) probability that each shows a head."""
        x = np.asarray(emb, np.float32)
        if self.spec.span is not None:
            x = x.reshape(-1, x.shape[-1])[:, self.spec.span[0]:self.spec.span[1]]
        z = x.reshape(-1, len(self.w)) @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))

    def __call__(self, emb: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N,) bool: keep the box."""
        return self.probability(emb) >= self.threshold
