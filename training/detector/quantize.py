"""Quantize an exported detector to int8 (`training.quantize`: onnxruntime static quantization, QDQ).

    python -m training.detector.quantize runs/detector/v7a.onnx runs/detector/v7a_int8.onnx
    python -m training.detector.quantize runs/detector/v7a.pt runs/detector/v7a_flip_int8.onnx --flip
    python -m training.detector.ship runs/detector/v7a_flip_int8.onnx --sizes 448
    python -m training.detector.quantize runs/detector/v13a.pt runs/detector/v13ab_pair_int8.onnx --pair runs/detector/v13b.pt

From a checkpoint (.pt) the float graph is exported first; `--flip` then puts the mirror pass in it (the
outputs for the picture and its mirror image averaged, `training.detector.model.flip_average`). Two runs from
the same starting point can be combined at no extra cost: `--soup B.pt` averages their weights (one net), and
`--pair B.pt` lets the second run make the mirror pass (two nets, each on one of the two images).

Only the network is quantized: convolutions, their residual adds, ReLUs and the FPN upsampling. The decoding
stays float32: every node downstream of a Shape (the cell-centre grid), of the Clip/Exp of the box distances and
of the Sigmoid of the scores. Quantized, the grid would be rounded to 256 steps, which moves boxes by several
pixels at large inputs. Activation ranges come from training pictures only (MinMax with a moving average), each
letterboxed to one of the sizes it may be served at.

On 2 cores the quantized graph runs 2.4-3x faster than the float one at the same size. The shipped detector
spends that on the mirror pass at 448 px, not on a larger input: larger inputs won on the training-picture
calibration but lost on the checked held-out set (docs/experiments/detector.md).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import cv2
import numpy as np

# ops whose outputs belong to the decoding: everything downstream of them stays float
DECODE_ROOTS = ("Shape", "Sigmoid", "Clip", "Exp")
QUANTIZED_OPS = ["Conv", "Add", "Relu", "Resize"]


def float_nodes(model) -> list[str]:
    """Names of the nodes of an exported detector graph that must stay float: the decoding roots and every
    node that consumes, directly or not, one of their outputs."""
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    keep = {n.name for n in model.graph.node if n.op_type in DECODE_ROOTS}
    todo = [t for n in model.graph.node if n.op_type in DECODE_ROOTS for t in n.output]
    while todo:
        for n in consumers.get(todo.pop(), []):
            if n.name not in keep:
                keep.add(n.name)
                todo.extend(n.output)
    return sorted(keep)


def calibration_feeds(pictures: list[np.ndarray], sizes: list[int], seed: int = 0) -> list[dict]:
    """One input per picture (BGR), letterboxed as served (pad to multiples of 32) at a size drawn from `sizes`."""
    from inference.preprocess import InputSpec, fit
    from training.detector.ship import served_pad, spec

    rng = random.Random(seed)
    feeds = []
    for img in pictures:
        inp = InputSpec.from_manifest(spec(size=rng.choice(sizes), pad_multiple=served_pad(True))["input"])
        resized, _ = fit(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), inp)
        feeds.append({inp.name: inp.to_tensor(resized[None])})
    return feeds


def quantize(src: Path, dst: Path, feeds: list[dict]) -> None:
    """Write the int8 (QDQ) version of the float graph `src` to `dst`, activation ranges measured on `feeds`."""
    from training.quantize import quantize_graph

    quantize_graph(src, dst, feeds, QUANTIZED_OPS, keep_float=float_nodes, moving_average=True)


def export_checkpoint(checkpoint: Path, dst: Path, flip: bool = False, soup_with: Path | None = None,
                      pair_with: Path | None = None) -> None:
    """The float graph of a trained HeadNet state dict (as `training.detector.train` saves it). `soup_with`: a
    second checkpoint (a run from the same starting point) averaged into the first, weight by weight;
    `pair_with`: a second checkpoint that runs the mirror pass (`model.flip_average`)."""
    import torch

    from training.detector.model import HeadNet, soup
    from training.detector.train import export

    state = torch.load(checkpoint, weights_only=True)
    if soup_with is not None:
        state = soup([state, torch.load(soup_with, weights_only=True)])
    net = HeadNet()
    net.load_state_dict(state)
    mirror = None
    if pair_with is not None:
        mirror = HeadNet()
        mirror.load_state_dict(torch.load(pair_with, weights_only=True))
    export(net, dst, flip=flip, size=448, mirror_net=mirror)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="int8 version of an exported detector (see the module docstring)")
    ap.add_argument("model", help="an exported float detector (.onnx) or a checkpoint (.pt)")
    ap.add_argument("out", help="where to write the int8 graph (.onnx)")
    ap.add_argument("--pictures", type=int, default=60, help="training pictures to measure activation ranges on")
    ap.add_argument("--sizes", default="448,480", help="input sizes the calibration pictures are letterboxed to")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--flip", action="store_true", help="(checkpoints) average the picture and its mirror in the graph")
    ap.add_argument("--soup", metavar="B.pt", help="(checkpoints) average this checkpoint's weights into the first's")
    ap.add_argument("--pair", metavar="B.pt", help="(checkpoints) this checkpoint runs the mirror pass (implies --flip)")
    return ap


def main() -> None:
    a = parser().parse_args()
    from training.detector.ship import calibration_set

    pictures = [img for img, _ in calibration_set(n=a.pictures, seed=a.seed)]  # training pictures only
    feeds = calibration_feeds(pictures, [int(z) for z in a.sizes.split(",")])
    if a.model.endswith(".pt"):
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "float.onnx"
            export_checkpoint(Path(a.model), src, flip=a.flip, soup_with=Path(a.soup) if a.soup else None,
                              pair_with=Path(a.pair) if a.pair else None)
            quantize(src, Path(a.out), feeds)
    elif a.flip or a.soup or a.pair:
        raise SystemExit("--flip, --soup and --pair need checkpoints (.pt): they act when the graph is exported")
    else:
        quantize(Path(a.model), Path(a.out), feeds)
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.2f} MB), ranges from {len(pictures)} training pictures")


if __name__ == "__main__":
    main()
