"""The manifest, parsed once: one frozen dataclass per section, every default and every check in one place.

`Manifest.parse` reads `manifest.json`'s object (docs/bundle.md) into the typed sections below and refuses, with
a `BundleError` naming the key, whatever no step could use: an unknown format, a missing file or checksum, input
sizes, block widths, a gallery width. The steps (detect, embed, classify, characters, verify, decide) take their
section's object and never read the JSON; what needs the model files themselves (shapes, weights) is checked by
`inference/bundle.py` once they are loaded. `parse` of a section alone (`ClassifierSpec.parse({...})`) is what
tests and training scripts use to make one step.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import BundleError
from .preprocess import InputSpec

DETECTOR_FORMATS = ("boxes", "yolov5", "cascade")
CLASSIFIER_FORMATS = ("linear_npz", "onnx_softmax")
KNOWN_MODES = ("joint", "gate")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _section(raw: dict, name: str) -> dict:
    spec = raw.get(name)
    if not isinstance(spec, dict):
        raise BundleError(f"The manifest's '{name}' section must be an object.")
    return spec


def _input(spec: dict, section: str, default_resize: str) -> InputSpec:
    if not isinstance(spec.get("input"), dict):
        raise BundleError(f"{section}.input must be an object (size, colour, normalisation).")
    try:
        return InputSpec.from_manifest(spec["input"], default_resize=default_resize)
    except ValueError as e:
        raise BundleError(f"{section}.{e}") from None


def _format(spec: dict, allowed: tuple[str, ...], what: str) -> str:
    fmt = spec.get("format")
    if fmt not in allowed:
        raise BundleError(f"Unknown {what} format {fmt!r} (expected one of {', '.join(allowed)}).")
    return fmt


def _value(spec: dict, key: str, default, kind, section: str):
    """`spec[key]` (or `default`) as a float or int, or a BundleError naming the key: not a bare TypeError."""
    v = spec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BundleError(f"{section}.{key} must be a number, not {v!r}.")
    return kind(v)


def _whole(value, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BundleError(f"{what} must be a whole number of at least {minimum}, not {value!r}.")
    return value


@dataclass(frozen=True)
class ModelFileRef:
    """A section's model file, relative to the bundle directory, and the sha256 the bundle checks it against."""

    file: str
    sha256: str

    @classmethod
    def parse(cls, spec: dict, section: str) -> ModelFileRef:
        if not spec.get("file"):
            raise BundleError(f"The '{section}' section names no file.")
        if not spec.get("sha256"):
            raise BundleError(f"The '{section}' section has no sha256 for {spec['file']}.")
        return cls(str(spec["file"]), str(spec["sha256"]).lower())


def _model(spec: dict, section: str) -> ModelFileRef | None:
    """A section's file as far as it names one: a section parsed alone (tests, a detector being calibrated) may
    not have its checksum yet; `Manifest.parse` insists on both."""
    return ModelFileRef(str(spec["file"]), str(spec.get("sha256") or "").lower()) if spec.get("file") else None


@dataclass(frozen=True)
class Block:
    """A named run of an encoder's output dimensions; `parts`: what it holds, in order (normalised with it)."""

    name: str
    dims: int
    parts: tuple[Block, ...] = ()

    @classmethod
    def parse_all(cls, blocks, dim: int | None, where: str = "encoder.blocks",
                  width: str = "dim") -> tuple[Block, ...]:
        if blocks is None:
            return ()
        ok = isinstance(blocks, list) and blocks and all(
            isinstance(b, dict) and isinstance(b.get("name"), str) and isinstance(b.get("dims"), int)
            and not isinstance(b.get("dims"), bool) and b["dims"] > 0 for b in blocks)
        if not ok or (dim is not None and sum(b["dims"] for b in blocks) != dim):
            raise BundleError(f"{where} must be a list of {{name, dims}} whose widths add up to {width} ({dim}).")
        out = []
        for b in blocks:
            parts = ()
            if b.get("parts") is not None:
                try:
                    parts = cls.parse_all(b["parts"], b["dims"], f"{where}[{b['name']!r}].parts", "the block's")
                except BundleError as e:
                    raise e from None
            out.append(cls(b["name"], b["dims"], parts))
        return tuple(out)


def runs(blocks: tuple[Block, ...]) -> dict[str, tuple[int, int]]:
    """Every declared block and part by name (`closed`, `closed.colour`) -> its (start, stop) in the output."""
    out, start = {}, 0
    for b in blocks:
        out[b.name] = (start, start + b.dims)
        at = start
        for p in b.parts:
            out[f"{b.name}.{p.name}"] = (at, at + p.dims)
            at += p.dims
        start += b.dims
    return out


@dataclass(frozen=True)
class ViewPart:
    name: str  # a block (`general`) or a block's part (`closed.colour`), or `dims:N` for the leading N dimensions
    start: int
    stop: int
    weight: float


@dataclass(frozen=True)
class GalleryView:
    """What a gallery compares (the known characters', a server's enrolled ones): runs of the embedding, each
    L2-normalised on its own and scaled by sqrt(weight / total weight), so that the dot product of two views is the
    weighted mean of the runs' cosines. Declared by `classifier.gallery_compares` (`[{"part", "weight"}]`, parts
    named as in `encoder.blocks`) or, for older bundles, by `classifier.gallery_dims` (the leading N dimensions)."""

    parts: tuple[ViewPart, ...]

    @property
    def width(self) -> int:
        return sum(p.stop - p.start for p in self.parts)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, width) views, unit rows (when every run is non-zero)."""
        x = np.asarray(x, np.float32)
        total = sum(p.weight for p in self.parts)
        out, at = np.empty((len(x), self.width), np.float32), 0
        for p in self.parts:
            run = x[:, p.start:p.stop]
            w = p.stop - p.start
            out[:, at:at + w] = run * (math.sqrt(p.weight / total)
                                       / np.maximum(np.linalg.norm(run, axis=1, keepdims=True), 1e-12))
            at += w
        return out

    def pool(self, views: np.ndarray) -> np.ndarray:
        """(G, width) sums or means of views -> (G, width) prototypes, each run normalised and weighted again (a
        prototype's cosine is then the weighted mean of its runs' cosines, as for one embedding)."""
        at, own = 0, []
        for p in self.parts:
            w = p.stop - p.start
            own.append(ViewPart(p.name, at, at + w, p.weight))
            at += w
        return GalleryView(tuple(own)).apply(views)

    @classmethod
    def leading(cls, dims: int) -> GalleryView:
        return cls((ViewPart(f"dims:{dims}", 0, dims, 1.0),))

    @classmethod
    def parse(cls, raw, blocks: tuple[Block, ...]) -> GalleryView:
        where = "classifier.gallery_compares"
        ok = isinstance(raw, list) and raw and all(
            isinstance(r, dict) and isinstance(r.get("part"), str) and set(r) <= {"part", "weight"} for r in raw)
        if not ok:
            raise BundleError(f"{where} must be a list of {{part, weight}} objects.")
        if not blocks:
            raise BundleError(f"{where} names parts of the embedding: it needs encoder.blocks.")
        known = runs(blocks)
        parts = []
        for r in raw:
            if r["part"] not in known:
                raise BundleError(f"{where} names {r['part']!r}, not a block or part of encoder.blocks "
                                  f"({', '.join(known)}).")
            w = _value(r, "weight", 1.0, float, where)
            if not w > 0:
                raise BundleError(f"{where}: the weight of {r['part']!r} must be above 0, not {w!r}.")
            parts.append(ViewPart(r["part"], *known[r["part"]], w))
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise BundleError(f"{where} names a part twice.")
        return cls(tuple(parts))


@dataclass(frozen=True)
class Crop:
    """How a detector box becomes the encoder's crop (inference/crop.py): side `scale` x the box's, centre moved
    down by `shift_y` box sides, square or not."""

    scale: float = 1.0
    shift_y: float = 0.0
    square: bool = False

    @classmethod
    def parse(cls, spec) -> Crop:
        if spec is None:
            return cls()
        if not isinstance(spec, dict):
            raise BundleError("encoder.crop must be an object {scale, shift_y, square}.")
        return cls(_value(spec, "scale", 1.0, float, "encoder.crop"), _value(spec, "shift_y", 0.0, float, "encoder.crop"),
                   bool(spec.get("square", False)))


@dataclass(frozen=True)
class WholeImage:
    """How a picture given as one head (`whois --whole-image`, `/teach whole:true`, `enroll --whole-image`, the API's
    `whole_image`) reaches the encoder (inference/pipeline.py, `Pipeline.whole_views`): framed as a detected head of
    that picture would be. The detector runs on the picture; its largest head is the box when it covers at least
    `min_cover` of the picture's area, else `box` (x1, y1, x2, y2 as fractions of the picture's width and height: the
    box the detector gives for a head crop, measured by `python -m training.general.framing --fit`); the box is then
    cut by `encoder.crop`, like any detected head. `keep_whole`: the whole picture, squashed as before, is compared
    too (a second view of the same head; the two rankings are combined by their geometric mean), for the tight face
    crops the closed encoder was trained on whole. Without this section a whole picture is squashed, as before."""

    box: tuple[float, float, float, float]
    min_cover: float = 0.25
    keep_whole: bool = True

    @classmethod
    def parse(cls, spec) -> WholeImage | None:
        where = "encoder.whole_image"
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise BundleError(f"{where} must be an object {{box, min_cover, keep_whole}}, not {spec!r}.")
        box = spec.get("box")
        ok = isinstance(box, list) and len(box) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        if not ok or not (box[0] < box[2] and box[1] < box[3]):
            raise BundleError(f"{where}.box must be [x1, y1, x2, y2] (fractions of the picture, x1 < x2, y1 < y2), "
                              f"not {box!r}.")
        cover = _value(spec, "min_cover", 0.25, float, where)
        if not 0.0 <= cover <= 1.0:
            raise BundleError(f"{where}.min_cover must lie in [0, 1], not {cover!r}.")
        keep = spec.get("keep_whole", True)
        if not isinstance(keep, bool):
            raise BundleError(f"{where}.keep_whole must be true or false, not {keep!r}.")
        return cls(tuple(float(v) for v in box), cover, keep)


@dataclass(frozen=True, eq=False)  # holds numpy arrays (InputSpec) or dicts: compared by identity
class DetectorSpec:
    format: str  # boxes | yolov5 | cascade (inference/detect.py)
    input: InputSpec | None  # None for a cascade
    score_threshold: float = 0.35
    nms_iou: float = 0.45
    max_heads: int = 50
    # cascade only
    min_size: int = 24
    scale_factor: float = 1.1
    min_neighbors: int = 5
    box_expand: float = 1.0
    model: ModelFileRef | None = None

    @classmethod
    def parse(cls, spec: dict) -> DetectorSpec:
        fmt = _format(spec, DETECTOR_FORMATS, "detector")
        return cls(fmt, None if fmt == "cascade" else _input(spec, "detector", "letterbox"),
                   *(_value(spec, k, d, t, "detector") for k, d, t in (
                       ("score_threshold", 0.35, float), ("nms_iou", 0.45, float), ("max_heads", 50, int),
                       ("min_size", 24, int), ("scale_factor", 1.1, float), ("min_neighbors", 5, int),
                       ("box_expand", 1.0, float))),
                   _model(spec, "detector"))


@dataclass(frozen=True, eq=False)  # holds numpy arrays (InputSpec) or dicts: compared by identity
class EncoderSpec:
    input: InputSpec
    dim: int | None = None  # the output width; None: found by running the encoder once
    batched: bool = True  # False: `batch` "fixed1", the graph takes one crop per run
    tta_flip: bool = False  # embed the mirrored crop too and add the two
    crop: Crop = field(default_factory=Crop)
    blocks: tuple[Block, ...] = ()  # the output as named blocks, each L2-normalised on its own
    model: ModelFileRef | None = None
    whole: WholeImage | None = None  # how a whole picture is framed; None: squashed whole, as before

    @classmethod
    def parse(cls, spec: dict) -> EncoderSpec:
        dim = spec.get("dim")
        if dim is not None:
            _whole(dim, "encoder.dim")
        batch = spec.get("batch", "dynamic")
        if batch not in ("dynamic", "fixed1"):
            raise BundleError(f"encoder.batch must be 'dynamic' or 'fixed1', not {batch!r}.")
        return cls(_input(spec, "encoder", "squash"), dim, batch != "fixed1", bool(spec.get("tta_flip", False)),
                   Crop.parse(spec.get("crop")), Block.parse_all(spec.get("blocks"), dim),
                   _model(spec, "encoder"), WholeImage.parse(spec.get("whole_image")))


@dataclass(frozen=True)
class ClassifierSpec:
    format: str  # linear_npz | onnx_softmax (inference/classify.py)
    temperature: float = 1.0
    gallery_scale: float = 16.0
    gallery_bias: float = 0.0
    gallery_dims: int | None = None  # the leading dimensions galleries compare; None: all of them
    gallery_compatible: tuple[str, ...] = ()  # encoders whose galleries this one can read (sha256)
    input_name: str | None = None  # an ONNX classifier's input
    model: ModelFileRef | None = None
    view: GalleryView | None = None  # what galleries compare (gallery_compares or gallery_dims); None: all of it
    # a server's own characters win at home: added to every enrolled character's logit (a prior, in logits, of
    # a character the server taught over the bundle's own; `python -m training.general.teach --fit` sets it)
    home_prior: float = 0.0

    @classmethod
    def parse(cls, spec: dict, blocks: tuple[Block, ...] = ()) -> ClassifierSpec:
        """`blocks`: the encoder's, which `gallery_compares` names parts of."""
        fmt = _format(spec, CLASSIFIER_FORMATS, "classifier")
        gdims = spec.get("gallery_dims")
        if gdims is not None:
            _whole(gdims, "classifier.gallery_dims")
        compares = spec.get("gallery_compares")
        if compares is not None and gdims is not None:
            raise BundleError("classifier.gallery_compares and classifier.gallery_dims both say what galleries "
                              "compare: keep one.")
        view = GalleryView.parse(compares, blocks) if compares is not None else (
            GalleryView.leading(gdims) if gdims is not None else None)
        compatible = spec.get("gallery_compatible", [])
        if not isinstance(compatible, list) or not all(isinstance(h, str) and _SHA256.fullmatch(h) for h in compatible):
            raise BundleError("classifier.gallery_compatible must be a list of encoder sha256 checksums (64 hex digits).")
        if compatible and gdims is None:
            raise BundleError("classifier.gallery_compatible needs classifier.gallery_dims: the part the encoders share.")
        inp = spec.get("input") or {}
        if not isinstance(inp, dict):
            raise BundleError(f"classifier.input must be an object {{name}}, not {inp!r}.")
        home = _value(spec, "home_prior", 0.0, float, "classifier")
        if not (math.isfinite(home) and 0.0 <= home <= 20.0):
            raise BundleError(f"classifier.home_prior must be a number from 0 to 20 (logits), not {home!r}.")
        return cls(fmt, _value(spec, "temperature", 1.0, float, "classifier") or 1.0,
                   _value(spec, "gallery_scale", 16.0, float, "classifier"),
                   _value(spec, "gallery_bias", 0.0, float, "classifier"), gdims, tuple(h.lower() for h in compatible),
                   inp.get("name"),
                   _model(spec, "classifier"), view, home)


# The decision's features by name (inference/decide.py computes each): the fixed ones, and the sharpened gallery's
# `gallery_top1_probability@S` and `gallery_energy@S` for a sharpness S > 0.
DECISION_FEATURES = ("top1_probability", "top1_cosine", "cosine_margin", "linear_max_logit",
                     "linear_top1_probability")
SHARPENED = re.compile(r"^(gallery_top1_probability|gallery_energy)@(\d+(?:\.\d+)?)$")


def sharpened(name: str) -> tuple[str, float] | None:
    """(kind, S) of a sharpened gallery feature's name (`gallery_energy@30` -> ("gallery_energy", 30.0)), or None
    when the name is not one."""
    m = SHARPENED.match(name)
    return (m.group(1), float(m.group(2))) if m and float(m.group(2)) > 0 else None


def is_decision_feature(name) -> bool:
    return isinstance(name, str) and (name in DECISION_FEATURES or sharpened(name) is not None)


@dataclass(frozen=True, eq=False)  # holds a numpy array: compared by identity
class DecisionSpec:
    """The known-or-not decision (inference/decide.py): a logistic model of the named features, one weight each,
    and the calibrated threshold a head's score must reach to be named."""

    features: tuple[str, ...]
    weights: np.ndarray  # (F,) over features
    bias: float
    threshold: float

    @classmethod
    def parse(cls, spec: dict | None) -> DecisionSpec | None:
        """The manifest's `decision` section; None without one (older bundles: the top-1 probability decides)."""
        if not spec:
            return None
        if not isinstance(spec, dict):
            raise BundleError(f"decision must be an object {{features, weights, bias, threshold}}, not {spec!r}.")
        names = tuple(spec.get("features", ()))
        try:
            w = np.asarray(spec.get("weights", []), np.float64)
            t = float(spec.get("threshold", 0.5))
            bias = float(spec.get("bias", 0.0))
        except (TypeError, ValueError):
            raise BundleError("decision.weights, bias and threshold must be numbers.") from None
        unknown = [n for n in names if not is_decision_feature(n)]
        if not names or unknown or w.shape != (len(names),) or not 0 <= t <= 1:
            raise BundleError(f"decision needs known features (not {unknown}), one weight each and a threshold in "
                              f"[0, 1]; features are {list(DECISION_FEATURES)} and gallery_top1_probability@S, "
                              "gallery_energy@S.")
        return cls(names, w, bias, t)

    from_manifest = parse  # the name training scripts know it by


@dataclass(frozen=True)
class HubSpec:
    """The hubness correction of the known characters' cosines (inference/characters.py, `hub_offsets`): a
    prototype close to many others (a "hub") is near most heads too, so each prototype's cosine is lowered by
    `weight` x (the mean of its `k` largest cosines to the known prototypes - `centre`). `known.npz` ships the
    known prototypes' offsets (`offsets`); an enrolled character's is computed the same way when it is taught."""

    k: int
    weight: float
    centre: float

    @classmethod
    def parse(cls, spec) -> HubSpec | None:
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise BundleError(f"known.hub must be an object {{k, weight, centre}}, not {spec!r}.")
        hub = cls(_whole(spec.get("k"), "known.hub.k"), _value(spec, "weight", None, float, "known.hub"),
                  _value(spec, "centre", None, float, "known.hub"))
        if not (math.isfinite(hub.weight) and math.isfinite(hub.centre)) or hub.weight < 0:
            raise BundleError(f"known.hub needs a finite weight >= 0 and a finite centre, not {spec!r}.")
        return hub


@dataclass(frozen=True)
class KnownSpec:
    """Characters known by their prototypes (inference/characters.py), compared like an enrolled gallery."""

    scale: float = 16.0
    bias: float = 0.0
    mode: str = "joint"  # joint | gate: how they combine with the classifier (inference/classify.py)
    model: ModelFileRef | None = None
    hub: HubSpec | None = None  # the hubness correction, if the bundle has one

    @classmethod
    def parse(cls, spec: dict) -> KnownSpec:
        mode = spec.get("mode", "joint")
        if mode not in KNOWN_MODES:
            raise BundleError(f"known.mode must be 'joint' or 'gate', not {mode!r}.")
        return cls(_value(spec, "scale", 16.0, float, "known"), _value(spec, "bias", 0.0, float, "known"), mode,
                   _model(spec, "known"), HubSpec.parse(spec.get("hub")))


@dataclass(frozen=True)
class VerifierSpec:
    """The head verifier (inference/verify.py): a linear check on each box's embedding, or on the run of it that
    `reads` names (a block or part of encoder.blocks, e.g. `closed`). Fitted on one block, its refit after a change
    of the other blocks gives the same check; it is still refitted (`encoder_sha256` names the whole graph)."""

    threshold: float = 0.5
    encoder_sha256: str = ""  # the encoder its weights were fitted on
    model: ModelFileRef | None = None
    reads: str | None = None  # the block or part it reads; None: the whole embedding
    span: tuple[int, int] | None = None  # where `reads` lies in the embedding

    @classmethod
    def parse(cls, spec: dict, blocks: tuple[Block, ...] = ()) -> VerifierSpec:
        """`blocks`: the encoder's, which `reads` names one of."""
        if spec.get("format", "linear_npz") != "linear_npz":
            raise BundleError(f"Unknown verifier format {spec.get('format')!r} (expected linear_npz).")
        t = _value(spec, "threshold", 0.5, float, "verifier")
        if not 0.0 <= t <= 1.0:
            raise BundleError("The verifier threshold must lie in [0, 1].")
        reads, span = spec.get("reads"), None
        if reads is not None:
            known = runs(blocks)
            if not isinstance(reads, str) or reads not in known:
                raise BundleError(f"verifier.reads must name a block or part of encoder.blocks "
                                  f"({', '.join(known) or 'none declared'}), not {reads!r}.")
            span = known[reads]
        return cls(t, str(spec.get("encoder_sha256", "")).lower(), _model(spec, "verifier"), reads, span)

    @property
    def width(self) -> int | None:
        """How many dimensions the weights take, when `reads` says (else the encoder's width)."""
        return self.span[1] - self.span[0] if self.span else None


@dataclass(frozen=True, eq=False)  # holds numpy arrays (InputSpec) or dicts: compared by identity
class Manifest:
    name: str
    version: str
    labels: str  # the label list, relative to the bundle directory
    detector: DetectorSpec
    encoder: EncoderSpec
    classifier: ClassifierSpec
    verifier: VerifierSpec | None = None
    known: KnownSpec | None = None
    characters: ModelFileRef | None = None  # the JSON index of who each character is
    decision: DecisionSpec | None = None
    metrics: dict = field(default_factory=dict)  # free-form: what training measured

    @classmethod
    def parse(cls, raw: dict, default_name: str = "bundle") -> Manifest:
        if not isinstance(raw, dict):
            raise BundleError("manifest.json must hold a JSON object.")
        for section in ("detector", "encoder", "classifier"):
            if not isinstance(raw.get(section), dict):
                raise BundleError(f"The manifest has no '{section}' section; the bundle is incomplete.")
        optional = {name: _section(raw, name) for name in ("verifier", "known", "characters") if name in raw}
        for name in ("detector", "encoder", "classifier", *optional):
            ModelFileRef.parse(raw[name], name)  # every section with a model names its file and checksum
        encoder = EncoderSpec.parse(raw["encoder"])
        classifier = ClassifierSpec.parse(raw["classifier"], encoder.blocks)
        if classifier.gallery_dims and encoder.dim and classifier.gallery_dims > encoder.dim:
            raise BundleError(f"classifier.gallery_dims must be a whole number from 1 to the embedding width "
                              f"({encoder.dim}), not {classifier.gallery_dims!r}.")
        if classifier.gallery_dims and encoder.blocks and classifier.gallery_dims != encoder.blocks[0].dims:
            raise BundleError(f"classifier.gallery_dims ({classifier.gallery_dims}) must be the width of the leading "
                              f"block galleries compare, {encoder.blocks[0].name!r} ({encoder.blocks[0].dims}).")
        return cls(str(raw.get("name", default_name)), str(raw.get("version", "unversioned")),
                   str(raw.get("labels", "chara.json")), DetectorSpec.parse(raw["detector"]), encoder, classifier,
                   VerifierSpec.parse(optional["verifier"], encoder.blocks) if "verifier" in optional else None,
                   KnownSpec.parse(optional["known"]) if "known" in optional else None,
                   ModelFileRef.parse(optional["characters"], "characters") if "characters" in optional else None,
                   DecisionSpec.parse(raw.get("decision")), raw.get("metrics") or {})

    def files(self) -> dict[str, ModelFileRef]:
        """Every section's model file by section name, in loading order."""
        out = {"detector": self.detector.model, "encoder": self.encoder.model, "classifier": self.classifier.model,
               "verifier": self.verifier.model if self.verifier else None,
               "known": self.known.model if self.known else None, "characters": self.characters}
        return {k: v for k, v in out.items() if v is not None}
