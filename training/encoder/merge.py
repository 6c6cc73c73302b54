"""Step 3a': add members to an exported (and quantized) encoder ensemble without re-exporting it.

    python -m training.encoder.merge BASE.onnx MEMBER.onnx [MEMBER.onnx ...] --out OUT.onnx

`export --run a,b,c` builds an ensemble from the runs' checkpoints. Where the base ensemble's checkpoints are not at
hand, this step adds members exported on their own (`export --run NEW --flip-tta --whiten`, then `quantize`) to
the base graph: the result computes what the ensemble export of all the runs computes, the L2-normalised
concatenation of every member's unit embedding. The base's output is normalise(concat of its n members), so the
new members are appended (`training.encoder.appended`) divided by sqrt(n). Each new member's nodes and tensors are renamed
under `/members.<i>` (its place in the ensemble), as `export` names them, so `training.encoder.pooled` finds its
pooled features. Run it before `colour` and `pooled`; the export info (`<out>_export.json`) lists every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.encoder.appended import (
    PREFIXES,
    append_features,
    appended_steps,
    raised_opsets,
    read_info,
    renamed,
    write_info,
)

PREFIX = PREFIXES["merge"]


def _count(info: dict) -> int:
    return len(info.get("runs") or [1])


def merge(base: onnx.ModelProto, base_members: int, members: list[onnx.ModelProto]) -> onnx.ModelProto:
    """One graph: normalise(concat(base output, concat of each member's output / sqrt(base_members))), which is the
    ensemble of all the members (the base's output is its members' concatenation divided by sqrt(base_members))."""
    if appended_steps(base) & {"colour", "pooled"}:
        raise ValueError("merge members before the colour and pooled steps")
    inp = base.graph.input[0].name

    def build(g: onnx.GraphProto) -> tuple[list, list, int]:
        nodes, inits, parts, added = [], [], [], 0
        for i, mem in enumerate(members):
            if mem.graph.input[0].name != inp:
                raise ValueError(f"a member's input is {mem.graph.input[0].name!r}, the base's {inp!r}")
            sub = renamed(mem, f"/members.{base_members + i}", {inp})
            nodes += sub.node
            inits += sub.initializer
            g.value_info.extend(sub.value_info)
            parts.append(sub.output[0].name)
            added += sub.output[0].type.tensor_type.shape.dim[1].dim_value
        nodes += [helper.make_node("Concat", parts, [PREFIX + "members"], axis=1),
                  helper.make_node("Mul", [PREFIX + "members", PREFIX + "scale"], [PREFIX + "weighted"])]
        inits.append(numpy_helper.from_array(np.asarray(1 / np.sqrt(base_members), np.float32), PREFIX + "scale"))
        return nodes, inits, added

    return append_features(raised_opsets(base, members), PREFIX, build)


def merged_info(base: dict, members: list[dict], out: Path) -> dict:
    """The export info of the merged graph: every run, in order; refuses members another ensemble could not hold."""
    for info in members:
        for key in ("size", "flip_tta", "heldout"):
            if info.get(key) != base.get(key):
                raise ValueError(f"a member's {key} ({info.get(key)}) differs from the base's ({base.get(key)})")
        if bool(info.get("whitening")) != bool(base.get("whitening")):
            raise ValueError("whitened and unwhitened members cannot share an ensemble")
    if any(base.get(k) for k in ("colour", "pooled")):
        raise ValueError("merge members before the colour and pooled steps")

    def listed(info: dict, key: str) -> list:
        v = info.get(key)
        return list(v) if isinstance(v, list) and _count(info) > 1 else [v]

    all_ = [base, *members]
    return {**base, "file": str(out), "bytes": None, "dim": sum(i["dim"] for i in all_),
            "whitening": [w for i in all_ for w in listed(i, "whitening")] if base.get("whitening") else None,
            "runs": [r for i in all_ for r in i["runs"]],
            "steps_per_run": [s for i in all_ for s in i["steps_per_run"]],
            "merged": [i.get("file") for i in all_]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="an exported (quantized) ensemble or single encoder")
    ap.add_argument("members", type=Path, nargs="+", help="single encoders exported the same way")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    base_info, member_infos = read_info(a.base), [read_info(p) for p in a.members]
    if any(_count(i) != 1 for i in member_infos):
        raise SystemExit("each member must be a single encoder (export --run ONE)")
    info = merged_info(base_info, member_infos, a.out)  # refuses members that do not fit before any work
    merged = merge(onnx.load(str(a.base)), _count(base_info), [onnx.load(str(p)) for p in a.members])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(merged, str(a.out))
    info["bytes"] = a.out.stat().st_size
    write_info(a.out, info)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB): runs {info['runs']}, embedding dim {info['dim']}")


if __name__ == "__main__":
    main()
