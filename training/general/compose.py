"""Put the general encoder beside the shipped one in one graph, with a declared output layout.

The composed graph feeds one input to both encoders and outputs their embeddings side by side:
``[general (its dims) | closed (the old graph's width)]``. The manifest declares the two as `encoder.blocks`, so
`inference/embed.py` normalises each on its own: the `closed` block is exactly the old graph's output (its linear
classifier over the 32 faces/ characters keeps working, weights padded with zeros for the general block), and
the `general` block leads, galleries compare it (with what `classifier.gallery_compares` adds).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from training.encoder.appended import raised_opsets, renamed

PREFIX = "general/"


def compose(closed: onnx.ModelProto, general: onnx.ModelProto, closed_dims: int,
            general_dims: int) -> tuple[onnx.ModelProto, list[dict]]:
    """(the composed graph, its blocks [{name, dims}]). Both graphs take the same input (N, 3, S, S); their widths
    are given (from the manifest and the export info: an exported graph may leave its output width symbolic)."""
    c_in, g_in = closed.graph.input[0], general.graph.input[0]
    c_dims = [d.dim_value for d in c_in.type.tensor_type.shape.dim[1:]]
    g_dims = [d.dim_value for d in g_in.type.tensor_type.shape.dim[1:]]
    if c_dims != g_dims:
        raise ValueError(f"the encoders take different inputs: {c_dims} vs {g_dims}")
    out = raised_opsets(closed, [general])
    g = out.graph
    old_out = g.output[0]
    closed_name = "closed/embedding"
    for node in g.node:
        node.output[:] = [closed_name if o == old_out.name else o for o in node.output]
    inner = renamed(general, PREFIX, keep={g_in.name})
    for node in inner.node:
        node.input[:] = [c_in.name if i == g_in.name else i for i in node.input]
    g.node.extend(inner.node)
    g.initializer.extend(inner.initializer)
    g_width, c_width = int(general_dims), int(closed_dims)
    stale = [v for v in g.value_info if v.name == old_out.name]
    for v in stale:
        g.value_info.remove(v)
    g.node.append(helper.make_node("Concat", [PREFIX + general.graph.output[0].name, closed_name], [old_out.name],
                                   axis=1, name="blocks/concat"))
    batch = old_out.type.tensor_type.shape.dim[0].dim_param or "batch"
    g.output.remove(old_out)
    g.output.append(helper.make_tensor_value_info(old_out.name, TensorProto.FLOAT, [batch, g_width + c_width]))
    onnx.checker.check_model(out)
    return out, [{"name": "general", "dims": int(g_width)}, {"name": "closed", "dims": int(c_width)}]


def compose_files(closed: Path, general: Path, out: Path, closed_dims: int, general_dims: int) -> list[dict]:
    model, blocks = compose(onnx.load(str(closed)), onnx.load(str(general)), closed_dims, general_dims)
    onnx.save(model, str(out))
    return blocks
