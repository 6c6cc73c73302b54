"""Step 5 — classify: embeddings -> a ranked list of characters with calibrated probabilities.

Two sources are merged into one softmax:
- the bundle's classifier over its known characters (linear logits, or an ONNX model that outputs
  probabilities, whose log is used as logits), divided by the manifest's `temperature`;
- a gallery of enrolled characters: logit = gallery_scale * cosine(embedding, prototype) + gallery_bias.
  The cosine is taken on the classifier's gallery view (`classifier.gallery_compares`, manifest.GalleryView):
  declared runs of the embedding, each normalised on its own and weighted, so that it is the weighted mean of
  their cosines (the general embedding, the closed encoder's embedding, the colour histogram); older bundles
  compare the first `gallery_dims` dimensions, renormalised.
- the bundle's known characters (`known`, inference/characters.py): prototypes compared the same way, with their
  own calibrated scale and bias. They are how a bundle knows thousands of characters from a few pictures each.
  With a hubness correction (`known.hub`) every prototype's cosine, known or enrolled, is lowered by how close it
  is to the known prototypes (a "hub" is close to most heads).
- a server's own characters win at home: every enrolled logit gets the calibrated `classifier.home_prior` on top
  (a server that taught nothing ranks exactly as without it).
If a name is in more than one, their probabilities are added. The calibration constants come from training.
Each candidate carries who it is (display name, work, page) from the bundle's character index.
"""

from __future__ import annotations

import numpy as np

from .gallery import Gallery
from .manifest import ClassifierSpec
from .result import Candidate


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def combine_views(p: np.ndarray, views: int) -> np.ndarray:
    """(N * V, K) probabilities, V consecutive rows per head -> (N, K): the normalised geometric mean of each head's
    rows (the mean of their log-probabilities, as one softmax of the mean logits in a joint ranking)."""
    if views <= 1:
        return p
    logp = np.log(np.clip(p, 1e-300, None)).reshape(-1, views, p.shape[1]).mean(1)
    return softmax(logp)


def mix(lin: np.ndarray, z: np.ndarray, in_labels: np.ndarray, mode: str = "joint") -> np.ndarray:
    """(N, L + K) probabilities over [the classifier's L labels | K prototypes' names], from the linear logits `lin`
    (N, L) and the prototypes' logits `z` (N, K); `in_labels` (K,) marks the prototypes of names that are also
    labels. 'joint': one softmax over both. 'gate': the prototypes' softmax says how likely the head is one of the
    labels (their mass), and the classifier's softmax shares that mass among them; the others keep theirs. The one
    copy of this formula: serving (`Classifier.probabilities`) and the bundle's calibration (training.general.bundle)
    both call it."""
    if mode == "gate":
        g = softmax(z)
        share = g[:, in_labels].sum(1, keepdims=True)
        g[:, in_labels] = 0.0
        return np.concatenate([share * softmax(lin), g], axis=1)
    return softmax(np.concatenate([lin, z], axis=1))


def gallery_view(x: np.ndarray, dims: int | None) -> np.ndarray:
    """The part of (N, D) embeddings that the gallery compares: the first `dims` dimensions, renormalised."""
    if not dims:
        return x
    part = np.asarray(x, np.float32)[:, :dims]
    return part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)


class Classifier:
    def __init__(self, spec: ClassifierSpec, labels: list[str], *, weights: tuple | None = None, session=None,
                 known=None, characters=None):
        self.spec = spec
        self.labels = list(labels)
        self.format = spec.format
        self.temperature = spec.temperature
        self.gallery_scale = spec.gallery_scale
        self.gallery_bias = spec.gallery_bias
        self.view = spec.view  # what galleries compare; None: the whole embedding
        self.weights = weights
        self.session = session
        self.known = known  # characters.KnownGallery or None
        self.characters = characters  # characters.CharacterIndex or None
        self._hub_cache = None  # (enrolled prototypes, their hubness offsets): see _enrolled_offsets
        # the names every call starts from (labels, then the known characters) and which known ones are labels:
        # built once, not per head (7,229 known characters)
        known_names = list(known.names) if known is not None else []
        self._names = self.labels + known_names
        mine = set(self.labels)
        self._known_in_labels = np.array([n in mine for n in known_names], dtype=bool)
        if session is not None:
            self.input_name = spec.input_name or session.get_inputs()[0].name
            shape = session.get_inputs()[0].shape
            self.batched = not isinstance(shape[0], int) or shape[0] != 1

    def logits(self, emb: np.ndarray) -> np.ndarray:
        """(N, D) unit embeddings -> (N, C) logits over the bundle's characters."""
        if self.format == "linear_npz":
            W, b = self.weights
            return emb @ W.T + b
        if self.batched:
            p = np.asarray(self.session.run(None, {self.input_name: emb})[0], np.float32)
        else:
            p = np.concatenate([np.asarray(self.session.run(None, {self.input_name: emb[i:i + 1]})[0], np.float32)
                                for i in range(len(emb))])
        return np.log(np.clip(p.reshape(len(emb), -1), 1e-12, None))

    def gallery_logits(self, emb: np.ndarray, protos: np.ndarray) -> np.ndarray:
        """(N, D) unit embeddings, (G, D) unit prototypes -> (N, G) logits, on the scale of the model's."""
        if self.view is not None:
            emb, protos = self.view.apply(emb), self.view.apply(protos)
        return self.gallery_scale * (emb @ protos.T) + self.gallery_bias

    def cosines(self, emb: np.ndarray, gallery: Gallery | None = None) -> np.ndarray | None:
        """(N, K + G) cosines of N unit embeddings to the known characters' prototypes, then the enrolled ones, on
        the part of the embedding galleries compare; None without any prototype. Computed once per picture: the
        ranking and the decision (inference/decide.py) both read them."""
        blocks = []
        part = self.view.apply(emb) if self.view is not None else emb
        if self.known is not None and len(self.known.names):
            # prototypes @ heads.T: 2.3x faster than heads @ prototypes.T here (4 heads x 7,229: 0.43 vs 1.0 ms);
            # one product per block, not one over their concatenation (that copied the 7,229 prototypes)
            c = (self.known.vectors @ part.T).T
            if self.known.offsets is not None:  # the hubness correction (manifest.HubSpec)
                c -= self.known.offsets
            blocks.append(c)
        if gallery is not None and len(gallery):
            protos = gallery.prototypes()[1]  # prototypes of views (gallery.py)
            c = (protos @ part.T).T
            off = self._enrolled_offsets(protos)
            if off is not None:
                c -= off
            blocks.append(c)
        if not blocks:
            return None
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def _enrolled_offsets(self, protos: np.ndarray) -> np.ndarray | None:
        """The hubness correction of the enrolled prototypes (as the known ones'), computed once per version of
        the gallery (its prototypes array is rebuilt whenever a character is taught or removed)."""
        if self.known is None or self.known.hub is None:
            return None
        cached = self._hub_cache
        if cached is None or cached[0] is not protos:
            cached = self._hub_cache = (protos, self.known.offsets_for(protos))
        return cached[1]

    def probabilities(self, emb: np.ndarray, gallery: Gallery | None = None,
                      cos: np.ndarray | None = None) -> tuple[np.ndarray, list, list]:
        """(N, K) probabilities over the names (classifier labels, known characters, enrolled ones; a name may
        repeat), the names and their sources. With the known gallery's mode 'gate' the prototypes (known and
        enrolled) decide how likely the head is one of the classifier's characters, and the classifier shares that
        mass among them; with 'joint' (and without a known gallery) all logits go into one softmax. `cos`: the
        heads' `cosines`, when the caller has them already."""
        lin = self.logits(emb) / self.temperature
        names, sources = self._names, ["model"] * len(self._names)  # names: shared, never changed in place
        z, in_labels = [], self._known_in_labels
        if cos is None:
            cos = self.cosines(emb, gallery)
        n_known = len(self.known.names) if self.known is not None else 0
        if n_known:
            z.append(self.known.scale * cos[:, :n_known] + self.known.bias)
        if gallery is not None and len(gallery):
            enrolled = gallery.prototypes()[0]
            z.append(self.gallery_scale * cos[:, n_known:] + self.gallery_bias + self.spec.home_prior)
            names = names + list(enrolled)
            sources = sources + ["gallery"] * len(enrolled)
            mine = set(self.labels)
            in_labels = np.concatenate([in_labels, np.array([n in mine for n in enrolled], dtype=bool)])
        mode = self.known.mode if self.known is not None and z else "joint"
        z = np.concatenate(z, axis=1).astype(np.float64) if z else np.zeros((len(lin), 0))
        return mix(lin.astype(np.float64), z, in_labels, mode), names, sources

    def __call__(self, emb: np.ndarray, top_k: int = 3, gallery: Gallery | None = None,
                 cos: np.ndarray | None = None, views: int = 1) -> list[list[Candidate]]:
        """The top-k candidates of each head. `views` > 1: the rows come in runs of `views`, the views of one head
        (a whole picture framed as a head and as it is, `Pipeline.whole_views`), ranked by the geometric mean of
        their probabilities (`combine_views`)."""
        if len(emb) == 0:
            return []
        p, names, sources = self.probabilities(emb, gallery, cos)
        p = combine_views(p, views)
        top_k = max(1, int(top_k))
        n_best = min(p.shape[1], top_k * 2 + 2)
        out = []
        for row in p:
            best = np.argpartition(-row, n_best - 1)[:n_best] if n_best < len(row) else np.arange(len(row))
            merged: dict[str, list] = {}
            for j in best[np.argsort(-row[best])]:
                e = merged.setdefault(names[j], [0.0, sources[j]])
                e[0] += float(row[j])
                if sources[j] == "gallery":
                    e[1] = "gallery"
            ranked = sorted(merged.items(), key=lambda kv: -kv[1][0])[:top_k]
            out.append([Candidate(n, prob, src, self._who(n, src, gallery)) for n, (prob, src) in ranked])
        return out

    def _who(self, name: str, source: str, gallery: Gallery | None):
        if source == "gallery" and gallery is not None:
            return gallery.character(name)
        if self.characters is None:
            return None
        return self.characters.get(name) if name in self.characters else None
