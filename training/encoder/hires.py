"""Step 3e: add a member trained at a larger input size, or on every character, to the encoder graph, as
classifier-only features (after `pooled`, before the classifier).

    python -m training.encoder.hires models/encoder.onnx runs/encoder/m96/member.onnx [--weight 0.5] [--out OTHER.onnx]
    python -m training.encoder.hires models/encoder.onnx runs/encoder/all64/member.onnx --every-character

The members of the ensemble see 64 px crops, which lose the small details (eyes, ornaments) that tell some
characters apart. A member trained at a larger size (`size = 96` in its config, exported alone with `export --flip-tta
--whiten`, then `quantize`) is added here without changing what the graph computed before:

* the graph's input becomes the larger size; the old graph (members, colour histogram) is fed the input resized
  inside the graph by cv2's INTER_AREA weights (`area_matrix`: a fixed (small, large) matrix M, image -> M x M^T),
  so on a crop of the larger size it sees what `cv2.resize(..., INTER_AREA)` to the old size would give it;
* the new member's unit embedding and its pooled features (crop + mirror pass added, L2-normalised; as
  `training.encoder.pooled` does for the others) are each multiplied by `weight` (0.5: the share each of the four
  old members has in the embedding and in the pooled block) and appended to the old output, which is then
  normalised again (`training.encoder.appended`). The member may be an ensemble (`export --run A,B`): its unit
  embedding, and its members' unit pooled features concatenated and scaled by 1 / sqrt(members), then count as
  one block.

A member of the graph's own input size is added the same way, without the resize. `--every-character` admits a member
trained on the characters the graph holds out for the open-set evaluation (`heldout = "none"` in the config): only the linear
classifier sees it, and the open-set measurements leave its dimensions out (`classifier.open_set_view`), since it
has seen the characters they treat as new.

The old output stays the leading part, so the gallery compares exactly what it compared before (manifest
`classifier.gallery_dims`) and galleries saved with the graph before stay usable (`gallery_compatible`). Only the
linear classifier sees the new member.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.encoder.appended import (
    PREFIXES,
    append_features,
    appended_steps,
    gallery_compatible,
    raised_opsets,
    read_info,
    renamed,
    write_info,
)
from training.encoder.pooled import channels, pooled_groups, unit_pooled
from training.encoder.quantize import declared_input_size

PREFIX = PREFIXES["hires"]
WEIGHT = 0.5


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of cv2's INTER_AREA resize along one axis: M @ x @ M.T resizes a (src, src) image."""
    return cv2.resize(np.eye(src, dtype=np.float32), (src, dst), interpolation=cv2.INTER_AREA)


def input_side(model: onnx.ModelProto) -> int:
    side = declared_input_size(model)
    if not side:
        raise ValueError("the graph declares no fixed square input size")
    return side


def _output_width(model: onnx.ModelProto, side: int) -> int:
    """The width of the graph's output, by running it once (an export may leave it symbolic)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return int(sess.run(None, {model.graph.input[0].name: np.zeros((1, 3, side, side), np.float32)})[0].shape[1])


def append_hires(base: onnx.ModelProto, member: onnx.ModelProto, weight: float = WEIGHT) -> tuple[onnx.ModelProto, int]:
    """A copy of `base` whose input is `member`'s size (larger or the same) and whose output is normalise(concat(base
    output on the area-resized input, weight * member embedding, weight * member pooled features)); returns it and the
    dims added."""
    inp = base.graph.input[0].name
    if member.graph.input[0].name != inp:
        raise ValueError(f"the member's input is {member.graph.input[0].name!r}, the base's {inp!r}")
    if "hires" in appended_steps(base):
        raise ValueError("the graph already has a hires member")
    small, large = input_side(base), input_side(member)
    if large < small:
        raise ValueError(f"the member's input ({large} px) is smaller than the graph's ({small} px)")
    if appended_steps(member):
        raise ValueError("the member must be an exported encoder (export, quantize) without appended features")
    groups = pooled_groups(member)
    emb_dim = _output_width(member, large)
    sub = renamed(member, PREFIX + "member", {inp})
    added = emb_dim + int(sum(channels(member, [grp[0] for grp in groups])))

    def build(g: onnx.GraphProto) -> tuple[list, list, int]:
        inits = []
        if large > small:
            resized = PREFIX + "input_small"
            old = list(g.node)
            for node in old:  # the old graph reads the resized input
                node.input[:] = [resized if i == inp else i for i in node.input]
            m = area_matrix(large, small)
            front = [helper.make_node("MatMul", [inp, PREFIX + "area_t"], [PREFIX + "cols"]),  # (N, 3, L, S)
                     helper.make_node("MatMul", [PREFIX + "area", PREFIX + "cols"], [resized])]  # (N, 3, S, S)
            del g.node[:]
            g.node.extend(front + old)  # topological order: the resize first
            dims = g.input[0].type.tensor_type.shape.dim
            dims[2].dim_value = dims[3].dim_value = large
            inits = [numpy_helper.from_array(m, PREFIX + "area"),
                     numpy_helper.from_array(np.ascontiguousarray(m.T), PREFIX + "area_t")]
        g.value_info.extend(sub.value_info)
        nodes, units = list(sub.node), []
        for i, grp in enumerate(groups):  # each member's pooled features, unit length; together unit length
            nodes += unit_pooled([PREFIX + "member" + name for name in grp], f"{PREFIX}pool{i}_")
            units.append(f"{PREFIX}pool{i}_unit")
        nodes += [helper.make_node("Concat", units, [PREFIX + "pool_cat"], axis=1),
                  helper.make_node("Mul", [PREFIX + "pool_cat", PREFIX + "pool_share"], [PREFIX + "pool_unit"]),
                  helper.make_node("LpNormalization", [sub.output[0].name], [PREFIX + "emb_unit_m"], axis=1, p=2),
                  helper.make_node("Concat", [PREFIX + "emb_unit_m", PREFIX + "pool_unit"], [PREFIX + "units"], axis=1),
                  helper.make_node("Mul", [PREFIX + "units", PREFIX + "weight"], [PREFIX + "weighted"])]
        inits = [*sub.initializer, *inits, numpy_helper.from_array(np.asarray(weight, np.float32), PREFIX + "weight"),
                 numpy_helper.from_array(np.asarray(1 / np.sqrt(len(groups)), np.float32), PREFIX + "pool_share")]
        return nodes, inits, added

    return append_features(raised_opsets(base, [member]), PREFIX, build), added


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the encoder graph (after colour and pooled)")
    ap.add_argument("member", type=Path, help="an encoder (one run or several) exported and quantized, input size >= "
                                              "the graph's")
    ap.add_argument("--out", type=Path, default=None, help="default: replace MODEL")
    ap.add_argument("--weight", type=float, default=WEIGHT)
    ap.add_argument("--every-character", action="store_true",
                    help="admit a member trained on the characters the graph holds out (classifier-only)")
    a = ap.parse_args()
    out = a.out or a.model
    info, member_info = read_info(a.model), read_info(a.member)
    if info.get("hires"):
        raise SystemExit(f"{a.model} already has a hires member ({info['hires']})")
    for key in ("flip_tta",) if a.every_character else ("flip_tta", "heldout"):
        if member_info.get(key) != info.get(key):
            raise SystemExit(f"the member's {key} ({member_info.get(key)}) differs from the graph's ({info.get(key)})")
    m, added = append_hires(onnx.load(str(a.model)), onnx.load(str(a.member)), a.weight)
    compatible = gallery_compatible(info, a.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out))
    info.update(dim=info["dim"] + added, size=member_info["size"], bytes=out.stat().st_size,
                gallery_compatible=compatible,
                hires={"runs": member_info["runs"], "steps": member_info.get("steps_per_run"), "size": member_info["size"],
                       "base_size": info["size"], "weight": a.weight, "dims": added,
                       "heldout": member_info.get("heldout")})
    write_info(out, info)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), input {member_info['size']} px, embedding dim {info['dim']}")


if __name__ == "__main__":
    main()
