"""Step 3d: append each member's pooled features to the encoder graph (after `colour`, before the classifier).

    python -m training.encoder.pooled models/encoder.onnx [--weight 1.0] [--out OTHER.onnx]

Every member of the exported encoder ends in global average pooling (256 channels) and then a linear map to its
128-d metric embedding. That map was trained for metric learning on 26 characters and throws most of the pooled
features away; the linear classifier over all 32 known characters can use them. This step adds, inside the graph,
for each member: the pooled features of the crop and of its mirror image (the two passes that `export
--flip-tta` built) added, L2-normalised, times `weight / sqrt(members)`; they are concatenated to the graph's
embedding and the whole is L2-normalised again. No weights are learned and no layer is added that costs
anything to speak of: the pooled features are already computed. The gallery keeps comparing only the leading
embedding (manifest `classifier.gallery_dims`), as with the colour histogram.

The pooled tensors are found by name: each `ReduceMean` named `<member>/enc/ReduceMean` (the crop) or
`<member>/enc_<k>/ReduceMean` (the mirror pass), where `<member>` is `/members.<i>` in an ensemble and empty
for a single encoder: the names torch gives `Encoder.forward`'s `x.mean(dim=(2, 3))` in `export`'s modules.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.encoder.appended import PREFIXES, append_features, gallery_compatible, read_info, write_info

WEIGHT = 1.0
PREFIX = PREFIXES["pooled"]
_POOL = re.compile(r"^(?P<member>(?:/members\.(?P<i>\d+))?)/enc(?:_\d+)?/ReduceMean$")


def pooled_groups(model: onnx.ModelProto) -> list[list[str]]:
    """The pooled-feature tensors of each member, in member order: [[crop, mirror], ...] (one each without flip)."""
    groups: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    for node in model.graph.node:
        m = _POOL.match(node.name)
        if node.op_type == "ReduceMean" and m:
            groups.setdefault(m["member"], []).append(node.output[0])
            order[m["member"]] = int(m["i"] or 0)
    if not groups:
        raise ValueError("no pooled features (<member>/enc/ReduceMean) in the graph")
    return [sorted(groups[k]) for k in sorted(groups, key=order.__getitem__)]


def channels(model: onnx.ModelProto, names: list[str]) -> list[int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v.type.tensor_type.shape.dim for v in inferred.graph.value_info}
    out = []
    for n in names:
        dims = shapes.get(n)
        if dims is None or len(dims) != 2 or not dims[1].dim_value:
            raise ValueError(f"pooled tensor {n} has no known (batch, channels) shape")
        out.append(dims[1].dim_value)
    return out


def unit_pooled(passes: list[str], stem: str) -> list:
    """Nodes that add one member's pooled features over its passes (crop, mirror) and L2-normalise the sum into
    `<stem>unit`: adding before normalising gives the mean's direction."""
    nodes, summed = [], passes[0]
    for j, other in enumerate(passes[1:]):
        nodes.append(helper.make_node("Add", [summed, other], [f"{stem}sum{j}"]))
        summed = f"{stem}sum{j}"
    return [*nodes, helper.make_node("LpNormalization", [summed], [f"{stem}unit"], axis=1, p=2)]


def append_pooled(model: onnx.ModelProto, weight: float = WEIGHT) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` whose (only) output is normalise(concat(old output, weighted pooled features of each
    member)); returns it and the number of dimensions added."""
    groups = pooled_groups(model)
    added = int(sum(channels(model, [grp[0] for grp in groups])))

    def build(g: onnx.GraphProto) -> tuple[list, list, int]:
        nodes, units = [], []
        for i, grp in enumerate(groups):
            nodes += unit_pooled(grp, f"{PREFIX}{i}_")
            units.append(f"{PREFIX}{i}_unit")
        nodes += [helper.make_node("Concat", units, [PREFIX + "units"], axis=1),
                  helper.make_node("Mul", [PREFIX + "units", PREFIX + "weight"], [PREFIX + "weighted"])]
        inits = [numpy_helper.from_array(np.asarray(weight / np.sqrt(len(groups)), np.float32), PREFIX + "weight")]
        return nodes, inits, added

    return append_features(model, PREFIX, build), added


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the (quantized, coloured) encoder graph")
    ap.add_argument("--out", type=Path, default=None, help="default: replace MODEL")
    ap.add_argument("--weight", type=float, default=WEIGHT)
    a = ap.parse_args()
    out = a.out or a.model
    info = read_info(a.model)
    if info.get("pooled"):
        raise SystemExit(f"{a.model} already has pooled features appended ({info['pooled']})")
    m, added = append_pooled(onnx.load(str(a.model)), a.weight)
    compatible = gallery_compatible(info, a.model)
    onnx.save(m, str(out))
    info.update(dim=info["dim"] + added, pooled={"weight": a.weight, "dims": added, "members": len(pooled_groups(m))},
                bytes=out.stat().st_size, gallery_compatible=compatible)
    write_info(out, info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), embedding dim {info['dim']}")


if __name__ == "__main__":
    main()
