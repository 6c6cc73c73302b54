"""Step 3c: append a colour histogram to the encoder graph (after `quantize`, before the classifier).

    python -m training.encoder.colour models/encoder.onnx [--weight 0.35] [--out OTHER.onnx]

Hair and eye colour are much of a character's identity, and the metric-learned embedding (trained on 26
characters) mixes them with everything else. This step adds, inside the graph, a global HSV histogram of the
encoder's own input crop: the input normalisation undone (0..255 pixel values), 2x2 average pooling, hue /
saturation / value binned (24 x 3 x 3 by default), square root of the counts, L2-normalised, times `weight`. It is concatenated to the
graph's embedding and the result L2-normalised again, so the classifier (`training.encoder.classifier`), the
gallery and every consumer see one unit vector, as before; only its dimension grows. No weights are learned: the
histogram is a fixed function of the pixels, and the global histogram does not change under a mirror flip.

`colour_hist` is the same computation in numpy, used by the tests to check the graph.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.encoder.appended import PREFIXES, append_features, gallery_compatible, read_info, write_info

BINS = (24, 3, 3)
WEIGHT = 0.35
EPS = 0.125  # differences of pooled pixel values are multiples of 1/4: any smaller positive number would do
# added before flooring: ratios of small integers often sit exactly on a bin edge (s = 2/3, ...)
NUDGE = 1e-4


def colour_hist(x: np.ndarray, mean: list[float], std: list[float], scale: float,
                bins: tuple[int, int, int] = BINS) -> np.ndarray:
    """The graph's histogram in numpy, operation for operation in float32: `x` is the encoder input (N, 3, H, W),
    normalised as (pixel * scale - mean) / std; returns (N, prod(bins)) L2-normalised square-root histograms."""
    f = np.float32
    x = np.asarray(x, f)
    n, _, h, w = x.shape
    mul = (np.asarray(std, f) / f(scale)).reshape(1, 3, 1, 1)
    add = (np.asarray(mean, f) / f(scale)).reshape(1, 3, 1, 1)
    px = np.round(x * mul + add)  # the 0..255 pixel values, exactly
    px = px.reshape(n, 3, h // 2, 2, w // 2, 2).sum((3, 5), dtype=f) / f(4)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]
    v = np.maximum(np.maximum(r, g), b)
    d = v - np.minimum(np.minimum(r, g), b)
    ds = np.maximum(d, f(EPS))
    h6 = np.where(v == r, (g - b) / ds, np.where(v == g, (b - r) / ds + f(2), (r - g) / ds + f(4)))
    h6 = np.where(h6 < 0, h6 + f(6), h6)
    hb = np.floor(h6 * f(bins[0] / 6) + f(NUDGE))
    hb = np.where(hb >= bins[0], hb - f(bins[0]), hb)
    sb = np.clip(np.floor(d / np.maximum(v, f(EPS)) * f(bins[1]) + f(NUDGE)), 0, bins[1] - 1)
    vb = np.clip(np.floor(v * f(bins[2] / 255) + f(NUDGE)), 0, bins[2] - 1)
    idx = (hb * (bins[1] * bins[2]) + sb * bins[2] + vb).reshape(n, -1).astype(np.int64)
    hist = np.sqrt(np.stack([np.bincount(i, minlength=int(np.prod(bins))) for i in idx]).astype(f))
    return hist / np.linalg.norm(hist, axis=1, keepdims=True)


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def colour_nodes(inp: str, out: str, mean: list[float], std: list[float], scale: float,
                 bins: tuple[int, int, int], weight: float, p: str = PREFIXES["colour"]) -> tuple[list, list]:
    """Nodes + initializers: normalised input `inp` (N, 3, H, W) -> `out` (N, prod(bins)) = weight * histogram."""
    nb_h, nb_s, nb_v = bins
    f = np.float32
    inits = [
        _const(p + "mul", (np.asarray(std, f) / f(scale)).reshape(1, 3, 1, 1)),
        _const(p + "add", (np.asarray(mean, f) / f(scale)).reshape(1, 3, 1, 1)),
        _const(p + "eps", EPS), _const(p + "nudge", NUDGE), _const(p + "zero", 0.0), _const(p + "two", 2.0),
        _const(p + "four", 4.0), _const(p + "six", 6.0), _const(p + "hscale", f(nb_h / 6)),
        _const(p + "hn", float(nb_h)), _const(p + "sn", float(nb_s)), _const(p + "smax", nb_s - 1),
        _const(p + "vscale", f(nb_v / 255)), _const(p + "vmax", nb_v - 1), _const(p + "svmul", float(nb_v)),
        _const(p + "weight", weight),
        _const(p + "hrange", np.arange(nb_h, dtype=f)),
        _const(p + "svrange", np.arange(nb_s * nb_v, dtype=f)),
        numpy_helper.from_array(np.array([0, -1, 1], np.int64), p + "col"),
        numpy_helper.from_array(np.array([0, nb_h * nb_s * nb_v], np.int64), p + "hist_shape"),
    ]

    def n(op, ins, outs, **kw):
        return helper.make_node(op, [x if x.startswith(p) or x == inp else p + x for x in ins], [p + o for o in outs],
                                **kw)

    nodes = [
        # back to 0..255 pixel values, exactly (Round), then 2x2 means (exact: quarters of integers)
        n("Mul", [inp, p + "mul"], ["scaled"]), n("Add", ["scaled", p + "add"], ["px0"]), n("Round", ["px0"], ["px"]),
        n("AveragePool", ["px"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Split", ["pool"], ["r", "g", "b"], axis=1),
        n("Max", ["r", "g", "b"], ["v"]),
        n("Min", ["r", "g", "b"], ["mn"]),
        n("Sub", ["v", "mn"], ["d"]),
        n("Max", ["d", p + "eps"], ["ds"]),
        # hue in sixths of the circle, as in the usual RGB -> HSV conversion (red first, then green)
        n("Sub", ["g", "b"], ["gb"]), n("Div", ["gb", "ds"], ["hr"]),
        n("Sub", ["b", "r"], ["br"]), n("Div", ["br", "ds"], ["hg0"]), n("Add", ["hg0", p + "two"], ["hg"]),
        n("Sub", ["r", "g"], ["rg"]), n("Div", ["rg", "ds"], ["hb0"]), n("Add", ["hb0", p + "four"], ["hb"]),
        n("Equal", ["v", "r"], ["is_r"]), n("Equal", ["v", "g"], ["is_g"]),
        n("Where", ["is_g", "hg", "hb"], ["h_gb"]), n("Where", ["is_r", "hr", "h_gb"], ["h6n"]),
        n("Less", ["h6n", p + "zero"], ["neg"]), n("Add", ["h6n", p + "six"], ["h6w"]),
        n("Where", ["neg", "h6w", "h6n"], ["h6"]),
        n("Mul", ["h6", p + "hscale"], ["hf0"]), n("Add", ["hf0", p + "nudge"], ["hf"]), n("Floor", ["hf"], ["hfl"]),
        n("Less", ["hfl", p + "hn"], ["h_in"]), n("Sub", ["hfl", p + "hn"], ["h_wrap"]),  # the nudge may reach 360 deg
        n("Where", ["h_in", "hfl", "h_wrap"], ["hbin"]),
        n("Max", ["v", p + "eps"], ["vs"]), n("Div", ["d", "vs"], ["s"]),
        n("Mul", ["s", p + "sn"], ["sf0"]), n("Add", ["sf0", p + "nudge"], ["sf"]), n("Floor", ["sf"], ["sfl"]),
        n("Clip", ["sfl", p + "zero", p + "smax"], ["sbin"]),
        n("Mul", ["v", p + "vscale"], ["vf0"]), n("Add", ["vf0", p + "nudge"], ["vf"]), n("Floor", ["vf"], ["vfl"]),
        n("Clip", ["vfl", p + "zero", p + "vmax"], ["vbin"]),
        n("Mul", ["sbin", p + "svmul"], ["s3"]), n("Add", ["s3", "vbin"], ["svbin"]),
        # one-hot hue (N, P, nh) and sat/val (N, P, ns*nv); their product summed over pixels is the 3-d histogram
        n("Reshape", ["hbin", p + "col"], ["hcol"]), n("Equal", ["hcol", p + "hrange"], ["hoh_b"]),
        n("Cast", ["hoh_b"], ["hoh"], to=TensorProto.FLOAT),
        n("Reshape", ["svbin", p + "col"], ["svcol"]), n("Equal", ["svcol", p + "svrange"], ["svoh_b"]),
        n("Cast", ["svoh_b"], ["svoh"], to=TensorProto.FLOAT),
        n("Transpose", ["hoh"], ["hoh_t"], perm=[0, 2, 1]),
        n("MatMul", ["hoh_t", "svoh"], ["h3"]),
        n("Reshape", ["h3", p + "hist_shape"], ["counts"]),
        n("Sqrt", ["counts"], ["root"]),  # fractions would only rescale: the L2 normalisation removes it
        n("LpNormalization", ["root"], ["unit"], axis=1, p=2),
        helper.make_node("Mul", [p + "unit", p + "weight"], [out]),
    ]
    return nodes, inits


def append_colour(model: onnx.ModelProto, mean: list[float], std: list[float], scale: float, bins: tuple[int, int, int] = BINS,
                  weight: float = WEIGHT) -> onnx.ModelProto:
    """A copy of `model` whose (only) output is normalise(concat(old output, weight * colour histogram))."""

    def build(g: onnx.GraphProto) -> tuple[list, list, int]:
        nodes, inits = colour_nodes(g.input[0].name, "colour/weighted", mean, std, scale, bins, weight)
        return nodes, inits, int(np.prod(bins))

    return append_features(model, PREFIXES["colour"], build)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the (quantized) encoder graph")
    ap.add_argument("--out", type=Path, default=None, help="default: replace MODEL")
    ap.add_argument("--weight", type=float, default=WEIGHT)
    ap.add_argument("--bins", type=int, nargs=3, default=list(BINS), metavar=("H", "S", "V"))
    a = ap.parse_args()
    from training.encoder.onnx_embed import MEAN, SCALE, STD

    out = a.out or a.model
    info = read_info(a.model)
    if info.get("colour"):
        raise SystemExit(f"{a.model} already has a colour branch ({info['colour']})")
    m = append_colour(onnx.load(str(a.model)), list(MEAN), list(STD), SCALE, tuple(a.bins), a.weight)
    compatible = gallery_compatible(info, a.model)
    onnx.save(m, str(out))
    info.update(dim=info["dim"] + int(np.prod(a.bins)), colour={"bins": list(a.bins), "weight": a.weight},
                bytes=out.stat().st_size, gallery_compatible=compatible)
    write_info(out, info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), embedding dim {info['dim']}")


if __name__ == "__main__":
    main()
