"""What the steps that append features to the encoder graph (`colour`, `pooled`, `merge`, `hires`) share.

Each adds, inside the graph, a feature vector computed from what the graph already has, and makes the graph's
only output normalise(concat(normalise(old output), feature)): the classifier sees one unit vector, as before,
only wider, and the old output is still its leading part (the part the gallery compares).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import TensorProto, helper

# The name prefix of each appending step's tensors: what a graph has had appended can be read off its node outputs.
PREFIXES = {"colour": "colour/", "pooled": "pooled/", "merge": "merge/", "hires": "hires/"}


def appended_steps(model: onnx.ModelProto) -> set[str]:
    """The appending steps (keys of PREFIXES) whose tensors are in `model`."""
    return {step for step, prefix in PREFIXES.items() for node in model.graph.node
            if any(o.startswith(prefix) for o in node.output)}


def info_path(model: Path) -> Path:
    """Where a graph's export info lies: `<stem>_export.json` beside it (written by `export` and every later step)."""
    return model.parent / (model.stem + "_export.json")


def read_info(model: Path) -> dict:
    return json.loads(info_path(model).read_text())


def write_info(model: Path, info: dict) -> None:
    info_path(model).write_text(json.dumps(info, indent=2))


def append_features(model: onnx.ModelProto, prefix: str,
                    build: Callable[[onnx.GraphProto], tuple[list, list, int]]) -> onnx.ModelProto:
    """A copy of `model` with a feature appended to its output. `build(graph)` returns the nodes and initializers
    that compute the (already weighted) feature `<prefix>weighted` from the graph's tensors, and its width; every
    name it adds starts with `prefix`, and a graph that has such names already is refused."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    if any(o.startswith(prefix) for node in g.node for o in node.output):
        raise ValueError(f"the graph already has the {prefix.rstrip('/')} features appended")
    nodes, inits, added = build(g)
    old = g.output[0]
    inner = prefix + "embedding_in"
    for node in g.node:
        node.output[:] = [inner if o == old.name else o for o in node.output]
        node.input[:] = [inner if i == old.name else i for i in node.input]
    nodes += [
        helper.make_node("LpNormalization", [inner], [prefix + "emb_unit"], axis=1, p=2),
        helper.make_node("Concat", [prefix + "emb_unit", prefix + "weighted"], [prefix + "joined"], axis=1),
        helper.make_node("LpNormalization", [prefix + "joined"], [old.name], axis=1, p=2),
    ]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    dims = old.type.tensor_type.shape.dim
    batch = dims[0].dim_param or dims[0].dim_value
    new_out = helper.make_tensor_value_info(old.name, TensorProto.FLOAT, [batch, dims[1].dim_value + added])
    g.output.remove(old)
    g.output.append(new_out)
    onnx.checker.check_model(m)
    return m


def gallery_compatible(info: dict, before: Path) -> list[str]:
    """The encoders whose galleries the graph after an appending step can use: those the graph before could, and
    that graph itself (the step leaves the embedding the gallery compares as it was)."""
    from training.manifest import sha256_of

    return [*info.get("gallery_compatible", []), sha256_of(before)]


def renamed(model: onnx.ModelProto, prefix: str, keep: set[str]) -> onnx.GraphProto:
    """A copy of `model`'s graph with every node, tensor and initializer name under `prefix`, except `keep` (to put one
    graph inside another). The symbolic dimensions of its shapes are renamed too, except those of its inputs (the
    batch): onnxruntime takes two equal names in one graph for one size, and exporters reuse `unk__<n>`."""
    g = onnx.GraphProto()
    g.CopyFrom(model.graph)
    shared = {d.dim_param for v in g.input for d in v.type.tensor_type.shape.dim if d.dim_param}
    for v in list(g.value_info) + list(g.output):
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param and d.dim_param not in shared:
                d.dim_param = prefix + d.dim_param

    def rn(name: str) -> str:
        return name if not name or name in keep else prefix + name

    for node in g.node:
        node.name = rn(node.name) if node.name else ""
        node.input[:] = [rn(i) for i in node.input]
        node.output[:] = [rn(o) for o in node.output]
    for t in g.initializer:
        t.name = rn(t.name)
    for v in list(g.value_info) + list(g.output):
        v.name = rn(v.name)
    return g


def raised_opsets(base: onnx.ModelProto, others: list[onnx.ModelProto]) -> onnx.ModelProto:
    """A copy of `base` declaring the newest opset of each domain and the newest IR version of all the graphs (before
    `others`' nodes are put into it)."""
    out = onnx.ModelProto()
    out.CopyFrom(base)
    have = {o.domain: o.version for o in base.opset_import}
    for m in others:
        for o in m.opset_import:
            have[o.domain] = max(o.version, have.get(o.domain, 0))
    del out.opset_import[:]
    out.opset_import.extend(helper.make_opsetid(d, v) for d, v in have.items())
    out.ir_version = max([base.ir_version] + [m.ir_version for m in others])
    return out
