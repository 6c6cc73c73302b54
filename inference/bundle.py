"""The model bundle: `manifest.json` + model files + label list (see docs/bundle.md).

Loading verifies every file's sha256 and the consistency of labels, classifier and encoder, then
creates exactly one onnxruntime session per model, with intra-op threads set explicitly (from CPU
affinity by default). Sessions are thread-safe for `run`, so one bundle serves every thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError
from .labels import load_labels
from .manifest import Manifest
from .settings import cpu_count

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_session(path: Path, threads: int | None = None):
    """One onnxruntime CPU session with explicit threading and full graph optimisation.

    Intra-op threads do not spin-wait for work after a run (`session.intra_op.allow_spinning` = 0).
    A request alternates onnxruntime runs (detector, encoder) with numpy, OpenCV and Pillow work on the
    same few cores, and threads left spinning after one run took those cores from the next step.
    `python -m inference bench` on 2 cores (README, Performance): p50 28.6-32.4 ms with spinning,
    16.3-16.9 ms without; annotate 5.9 -> 1.9 ms and embed 7.4 -> 4.1 ms at p50 for the same work.
    """
    # onnxruntime's telemetry tries to persist a device id under $HOME and warns at every start in a read-only
    # container; we send no telemetry, so turn it off (before the first session creates onnxruntime's environment)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads or cpu_count())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise BundleError(f"Model file {path.name} could not be loaded by onnxruntime: {e}") from None


@dataclass
class ModelFile:
    name: str  # manifest section: "detector", "encoder", "classifier"
    path: Path
    sha256: str


class Bundle:
    """A loaded, verified bundle. `sessions` holds one onnxruntime session per ONNX model."""

    def __init__(self, root: Path, manifest: dict, spec: Manifest, labels: list[str], files: dict[str, ModelFile],
                 threads: int):
        self.root = root
        self.manifest = manifest  # the JSON as read (its metrics are shown as they are)
        self.spec = spec  # the same, typed and checked (inference/manifest.py): what the steps read
        self.labels = labels
        self.files = files
        self.threads = threads
        self.sessions: dict = {}
        self.classifier_weights: tuple[np.ndarray, np.ndarray] | None = None  # (W, b) of a linear_npz classifier
        self.verifier_weights: tuple[np.ndarray, float] | None = None  # (w, b) of the head verifier, if any
        self.known = None  # characters.KnownGallery: characters known by their prototypes, if the bundle has them
        self.characters = None  # characters.CharacterIndex: every character the bundle knows, described

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path, threads: int | None = None, *, sessions: bool = True) -> Bundle:
        """Verify and load a bundle. `sessions=False`: its facts only (labels, characters, galleries' encoder),
        no onnxruntime session: what a bot that sends its pictures to a recognition service needs."""
        root = Path(root)
        mpath = root / "manifest.json"
        if not mpath.is_file():
            hint = ""
            if (root / "best.quant.onnx").exists() or (root / "tf_model.onnx").exists():
                hint = f" It looks like the reference layout: run `python -m inference write-manifest --reference {root}`."
            raise BundleError(f"No model bundle at {root}: manifest.json is missing.{hint}")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BundleError(f"{mpath} is not valid JSON: {e}") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{mpath} must hold a JSON object.")
        try:
            spec = Manifest.parse(manifest, default_name=root.name)  # every section typed and checked, once
        except BundleError as e:
            raise BundleError(f"{mpath}: {e}") from None
        files = {}
        for section, ref in spec.files().items():
            path = (root / ref.file).resolve()
            if not path.is_file():
                raise BundleError(f"Model file {ref.file} ({section}) is missing from {root}.")
            digest = sha256_file(path)
            if digest != ref.sha256:
                raise BundleError(
                    f"Model file {ref.file} ({section}) is corrupt or not the one the manifest names: "
                    f"sha256 {digest[:12]}… != {ref.sha256[:12]}…"
                )
            files[section] = ModelFile(section, path, digest)

        labels = load_labels(root, spec.labels)
        b = cls(root, manifest, spec, labels, files, max(1, threads or cpu_count()))
        if sessions:
            b._open_sessions()
        elif spec.encoder.dim is None:
            raise BundleError(f"{mpath} must declare encoder.dim to be used without running its models.")
        b._check_shapes()
        return b

    def _open_sessions(self) -> None:
        for section, mf in self.files.items():
            if section == "detector" and self.spec.detector.format == "cascade":
                continue
            if section == "verifier" or (section == "classifier" and self.spec.classifier.format == "linear_npz"):
                continue
            if section in ("known", "characters"):
                continue
            self.sessions[section] = make_session(mf.path, self.threads)

    def _check_shapes(self) -> None:
        dim = self.spec.encoder.dim
        out_shape = self.sessions["encoder"].get_outputs()[0].shape if "encoder" in self.sessions else [dim]
        if dim is not None and isinstance(out_shape[-1], int) and out_shape[-1] != dim:
            raise BundleError(f"Encoder outputs {out_shape[-1]} values but the manifest says dim={dim}.")
        n = len(self.labels)
        if self.spec.classifier.format == "linear_npz":
            try:
                with np.load(self.files["classifier"].path, allow_pickle=False) as z:
                    W = np.asarray(z["W"], dtype=np.float32)
                    b = np.asarray(z["b"], dtype=np.float32) if "b" in z else np.zeros(W.shape[0], np.float32)
            except Exception as e:
                raise BundleError(f"Classifier file is unreadable: {e}") from None
            if W.ndim != 2 or b.shape != (W.shape[0],):
                raise BundleError(f"Classifier arrays have wrong shapes: W {W.shape}, b {b.shape}.")
            self.classifier_weights = (W, b)
            classes = W.shape[0]
            if dim is not None and W.shape[1] != dim:
                raise BundleError(f"Classifier takes {W.shape[1]}-d embeddings but the encoder makes {dim}.")
        elif "classifier" in self.sessions:
            classes = self.sessions["classifier"].get_outputs()[0].shape[-1]
        else:
            classes = None
        if isinstance(classes, int) and classes != n:
            raise BundleError(f"The label list has {n} names but the classifier has {classes} classes.")
        gdims = self.spec.classifier.gallery_dims
        if gdims is not None and dim is None and isinstance(out_shape[-1], int) and gdims > out_shape[-1]:
            raise BundleError(f"classifier.gallery_dims must be a whole number from 1 to the embedding width "
                              f"({out_shape[-1]}), not {gdims!r}.")
        if "verifier" in self.files:
            self._load_verifier(dim)
        view = self.spec.classifier.view
        self._load_characters(view.width if view is not None else dim)

    def _load_characters(self, dims: int | None) -> None:
        from .characters import CharacterIndex, KnownGallery

        tags = list(self.labels)
        if "known" in self.files:
            if not dims:
                raise BundleError("A known-character gallery needs encoder.dim, classifier.gallery_compares or "
                                  "classifier.gallery_dims.")
            self.known = KnownGallery.load(self.files["known"].path, self.spec.known, dims)
            tags += self.known.names
        index = self.files["characters"].path if "characters" in self.files else None
        self.characters = CharacterIndex.build(tags, index)

    def _load_verifier(self, dim: int | None) -> None:
        if self.spec.verifier.encoder_sha256 != self.files["encoder"].sha256:
            raise BundleError("The head verifier was fitted on another encoder's embeddings: refit it "
                              "(python -m training.detector.verifier) or remove the 'verifier' section.")
        try:
            with np.load(self.files["verifier"].path, allow_pickle=False) as z:
                w = np.asarray(z["w"], dtype=np.float32)
                b = np.asarray(z["b"], dtype=np.float32).reshape(-1)
        except Exception as e:
            raise BundleError(f"Verifier file is unreadable: {e}") from None
        if w.ndim != 2 or w.shape[0] != 1 or b.shape != (1,):
            raise BundleError(f"Verifier arrays have wrong shapes: w {w.shape}, b {b.shape} (expected (1, D), (1,)).")
        want = self.spec.verifier.width or dim
        if want is not None and w.shape[1] != want:
            what = f"the run it reads, {self.spec.verifier.reads!r}, is" if self.spec.verifier.reads else "the encoder makes"
            raise BundleError(f"The verifier takes {w.shape[1]}-d embeddings but {what} {want}-d.")
        self.verifier_weights = (w[0], float(b[0]))

    # -- facts -----------------------------------------------------------------------------------
    @property
    def encoder_id(self) -> str:
        """Identifies the embedding space: galleries made with another encoder are refused."""
        return self.files["encoder"].sha256

    @property
    def gallery_compatible(self) -> tuple[str, ...]:
        """Other encoders whose galleries this bundle can use: their first `gallery_dims` dimensions are this
        encoder's (it only appended features after them)."""
        return self.spec.classifier.gallery_compatible

    def info(self) -> dict:
        m = self.spec
        return {
            "name": m.name,
            "version": m.version,
            "path": str(self.root),
            "classes": len(self.labels),
            "characters": len(self.characters) if self.characters is not None else len(self.labels),
            "series": self.characters.series_count if self.characters is not None else 0,
            "embedding_dim": m.encoder.dim,
            "detector_format": m.detector.format,
            "models": {k: {"file": v.path.name, "sha256": v.sha256, "bytes": v.path.stat().st_size}
                       for k, v in self.files.items()},
            "metrics": m.metrics,
            "threads": self.threads,
        }


class BundleFacts:
    """What a loaded bundle says about itself, for whatever holds one as `self.bundle`: the pipeline that runs its
    models, or the bot's client of a recognition service that only reads them (service/remote.py)."""

    bundle: Bundle

    @property
    def labels(self) -> list[str]:
        return self.bundle.labels

    @property
    def characters(self):
        """characters.CharacterIndex: every character the bundle knows (classifier and known gallery), described."""
        return self.bundle.characters

    @property
    def info(self) -> dict:
        return self.bundle.info()

    # -- server galleries: made and read against this bundle's encoder ----------------------------------------------
    def embedding_dim(self) -> int:
        """The encoder's output width (the pipeline can find it by running the encoder; a client must be told)."""
        return int(self.bundle.spec.encoder.dim)

    @property
    def gallery_dims(self) -> int | None:
        """The leading dimensions a compatible encoder's galleries are cut to (classifier.gallery_dims), or None."""
        return self.bundle.spec.classifier.gallery_dims

    def assess_taught(self, gallery, tag: str, shots=None):
        """How well `gallery`'s character `tag` is now recognised, and whether it looks like one the bundle knows
        (inference/teaching.py): a TeachReport, or None when this holder cannot rank (an ONNX classifier without
        its session). `shots`: the teaching.Shot of each picture just taught (their judgement is used when every
        one was judged)."""
        from .decide import LEGACY_THRESHOLD
        from .teaching import assess

        clf = self._ranking()
        if clf is None:
            return None
        decision = self.bundle.spec.decision
        settings = getattr(self, "settings", None)
        threshold = getattr(settings, "unsure_threshold", None)
        if threshold is None:
            threshold = decision.threshold if decision is not None else LEGACY_THRESHOLD
        named = [s.named for s in shots] if shots and all(s.judged for s in shots) else None
        return assess(clf, decision, gallery, tag, float(threshold), named)

    def _ranking(self):
        """The classifier the pipeline ranks with, or one made from the bundle's facts (a bot that sends its
        recognitions to a service still holds the weights)."""
        clf = getattr(self, "classifier", None)
        if clf is not None:
            return clf
        made = getattr(self, "_facts_classifier", None)
        if made is None:
            from .classify import Classifier

            b = self.bundle
            if b.classifier_weights is None and "classifier" not in b.sessions:
                return None
            made = self._facts_classifier = Classifier(b.spec.classifier, b.labels, weights=b.classifier_weights,
                                                       session=b.sessions.get("classifier"), known=b.known,
                                                       characters=b.characters)
        return made

    def new_gallery(self):
        from .gallery import Gallery

        return Gallery(self.bundle.encoder_id, self.embedding_dim(), view=self.bundle.spec.classifier.view)

    def load_gallery(self, data):
        """A stored gallery (a file, or its bytes) made with this encoder or a compatible one."""
        from .gallery import Gallery

        return Gallery.load(data, self.bundle.encoder_id, self.embedding_dim(), self.gallery_dims,
                            self.bundle.gallery_compatible, self.bundle.spec.classifier.view)
