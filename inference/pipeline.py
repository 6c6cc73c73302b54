"""Step 7 — the pipeline: bytes -> decode -> detect -> crop -> embed -> classify -> decide -> Result.

Built once from a bundle directory; thread-safe (one onnxruntime session per model, shared).
Read the steps top to bottom: decode.py, detect.py, crop.py, embed.py, classify.py, annotate.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import annotate as _annotate
from .bundle import Bundle, BundleFacts
from .classify import Classifier
from .cpu import limit_blas_threads
from .crop import crop_heads, whole_box
from .crop import whole_image as whole_crop
from .decide import LEGACY_THRESHOLD, Decision, decide
from .decode import decode
from .detect import Detector
from .embed import Embedder
from .errors import ImageError, NoHeadError  # noqa: F401  (NoHeadError: raised here, imported from here)
from .gallery import Gallery
from .memory import tune_malloc
from .result import Head, Result
from .settings import Settings
from .verify import Verifier


class Pipeline(BundleFacts):
    """The data path over one bundle; its facts (labels, characters, info) come from BundleFacts."""

    def __init__(self, bundle: Bundle, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.bundle = bundle
        m = bundle.spec  # the manifest, typed (inference/manifest.py)
        det = bundle.files["detector"]
        self.detector = Detector(m.detector, bundle.sessions.get("detector"), cascade_path=det.path,
                                 score_threshold=self.settings.detect_threshold,
                                 nms_iou=self.settings.detect_nms_iou)
        self.embedder = Embedder(m.encoder, bundle.sessions["encoder"])
        self.classifier = Classifier(m.classifier, bundle.labels,
                                     weights=bundle.classifier_weights,
                                     session=bundle.sessions.get("classifier"),
                                     known=bundle.known, characters=bundle.characters)
        self.decision: Decision | None = m.decision
        self.verifier = None
        if bundle.verifier_weights is not None and self.settings.verify_heads:
            self.verifier = Verifier(m.verifier, bundle.verifier_weights, self.settings.verify_threshold)

    @classmethod
    def from_bundle(cls, path: str | Path | None = None, settings: Settings | None = None) -> Pipeline:
        settings = settings or Settings()
        tune_malloc(settings.malloc_mmap_threshold_mb)  # process-wide, idempotent; see inference/memory.py
        limit_blas_threads(settings.blas_threads)  # process-wide, idempotent; see inference/cpu.py
        bundle = Bundle.load(path or settings.bundle_dir, threads=settings.ort_threads)
        return cls(bundle, settings)

    # -- steps -----------------------------------------------------------------------------------
    def decode(self, data: bytes):
        s = self.settings
        return decode(data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, max_side=s.decode_max_side)

    def recognize(self, data: bytes, top_k: int | None = None, whole_image: bool = False,
                  gallery: Gallery | None = None, threshold: float | None = None) -> Result:
        """Every head in the picture, each with its top-k candidates. Raises ImageError on bad input."""
        t = {}
        t0 = time.perf_counter()
        dec = self.decode(data)
        t["decode"] = time.perf_counter() - t0
        result = self.recognize_array(dec.image, top_k=top_k, whole=whole_image, gallery=gallery,
                                      threshold=threshold, scale=dec.scale, size=(dec.width, dec.height),
                                      timings=t)
        return result

    def recognize_array(self, image: np.ndarray, top_k: int | None = None, whole: bool = False,
                        gallery: Gallery | None = None, threshold: float | None = None, scale: float = 1.0,
                        size: tuple[int, int] | None = None, timings: dict | None = None) -> Result:
        t = timings if timings is not None else {}
        top_k = self.settings.top_k if top_k is None else int(top_k)
        threshold = self.threshold(threshold)
        h, w = image.shape[:2]
        views = 1
        if whole:
            boxes, scores = np.array([[0, 0, w, h]], np.float32), np.ones(1, np.float32)
            t0 = time.perf_counter()
            crops = self.whole_views(image)
            t1 = time.perf_counter()
            emb = self.embedder(crops)
            views = len(emb)
            t.update(detect=t1 - t0, crop=0.0, embed=time.perf_counter() - t1)  # detect: finding the frame
        else:
            boxes, scores, emb = self.find_heads(image, t)
        t3 = time.perf_counter()
        cos = self.classifier.cosines(emb, gallery) if len(emb) else None  # read by classify and decide
        ranked = self.classifier(emb, top_k=top_k, gallery=gallery, cos=cos, views=views)
        t["classify"] = time.perf_counter() - t3
        t4 = time.perf_counter()
        top1 = np.array([c[0].probability if c else 0.0 for c in ranked])
        known = decide(self.decision, emb, top1, self.classifier, gallery, cos, views) if len(emb) else top1
        t["decide"] = time.perf_counter() - t4
        inv = 1.0 / scale if scale else 1.0
        W, H = size or (w, h)
        heads = []
        for box, score, cands, k in zip(boxes, scores, ranked, known, strict=True):
            b = np.round(box * inv).astype(int)
            b = (int(np.clip(b[0], 0, W)), int(np.clip(b[1], 0, H)), int(np.clip(b[2], 0, W)), int(np.clip(b[3], 0, H)))
            heads.append(Head(b, float(score), tuple(cands), bool(cands and k >= threshold), float(k)))
        return Result(W, H, tuple(heads), {k: round(v * 1000, 3) for k, v in t.items()}, image)

    def find_heads(self, image: np.ndarray, timings: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Detect, crop, embed and verify: (boxes, scores, embeddings) of the heads, best score first."""
        t = timings if timings is not None else {}
        t0 = time.perf_counter()
        boxes, scores = self.detector(image)
        t1 = time.perf_counter()
        ew, eh = self.embedder.size
        crops = crop_heads(image, boxes, self.embedder.crop, ew, eh)
        t2 = time.perf_counter()
        emb = self.embedder(crops)
        t3 = time.perf_counter()
        t.update(detect=t1 - t0, crop=t2 - t1, embed=t3 - t2)
        if self.verifier is not None and len(boxes):
            keep = self.verifier(emb)
            boxes, scores, emb = boxes[keep], scores[keep], emb[keep]
            t["verify"] = time.perf_counter() - t3
        return boxes, scores, emb

    def whole_views(self, image: np.ndarray) -> np.ndarray:
        """(V, H, W, 3) the encoder's crops of a picture given as one head: framed as a detected head of it would be
        (manifest `encoder.whole_image`, crop.whole_box), then, with `keep_whole`, the whole picture squashed; a
        bundle without that section squashes the whole picture (V = 1), as before."""
        ew, eh = self.embedder.size
        spec = self.embedder.spec.whole
        if spec is None:
            return whole_crop(image, ew, eh)
        h, w = image.shape[:2]
        boxes, _ = self.detector(image)
        crops = crop_heads(image, whole_box(w, h, boxes, spec)[None], self.embedder.crop, ew, eh)
        return np.concatenate([crops, whole_crop(image, ew, eh)]) if spec.keep_whole else crops

    def annotate(self, result: Result, fmt: str = "PNG", max_bytes: int | None = None) -> bytes:
        return _annotate.annotate(result, fmt=fmt, max_bytes=max_bytes)

    # -- enrollment ------------------------------------------------------------------------------
    def embed_for_enroll(self, data: bytes, whole_image: bool = False) -> np.ndarray:
        """The embedding of the largest head in the picture (or of the whole picture, framed as a detected head of
        it would be: the first of `whole_views`, what a query's detected head is compared with)."""
        return self.enroll_shot(data, whole_image).vector

    def enroll_shot(self, data: bytes, whole_image: bool = False):
        """A teaching.Shot: the embedding to teach (`embed_for_enroll`) and who the bundle alone names that head, as a
        recognition of the picture would (a whole picture by both its views)."""
        from .teaching import Shot, named_alone

        img = self.decode(data).image
        if whole_image:
            emb = self.embedder(self.whole_views(img))
        else:
            boxes, _, emb = self.find_heads(img)
            if len(boxes) == 0:
                raise NoHeadError("No head found in this picture; use a clearer picture or the whole-image option.")
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            i = int(np.argmax(areas))
            emb = emb[i:i + 1]
        named = named_alone(self.classifier, self.decision, emb, self.threshold(), views=len(emb))[0]
        return Shot(emb[0], named)

    def threshold(self, threshold: float | None = None) -> float:
        """The "known" score a head needs to be named: `threshold`, else the settings', else the bundle's."""
        if threshold is None:
            threshold = self.settings.unsure_threshold
        if threshold is None:
            threshold = self.decision.threshold if self.decision is not None else LEGACY_THRESHOLD
        return float(threshold)

    def embedding_dim(self) -> int:
        """The manifest's encoder.dim, or the width of one run of the encoder when the manifest has none."""
        dim = self.embedder.dim
        if dim is None:
            dim = int(self.embedder(np.zeros((1, self.embedder.size[1], self.embedder.size[0], 3), np.uint8)).shape[1])
            self.embedder.dim = dim
        return int(dim)
