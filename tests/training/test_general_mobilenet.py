"""MobileNetV2 1.4 declared in code (training/general/mobilenet.py): TF.js weight decoding, the graph's names mapped
onto the module, TensorFlow's padding, the stages' widths. No npm package needed: weights here are synthetic."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.general import mobilenet as mn

SCOPE = "StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/predict/"  # as the graph prefixes


def quantized(q: np.ndarray, scale: float, lo: float, name: str) -> tuple[dict, bytes]:
    spec = {"name": name, "shape": list(q.shape), "dtype": "float32",
            "quantization": {"min": lo, "scale": scale, "dtype": "uint8"}}
    return spec, q.astype(np.uint8).tobytes()


def test_decode_dequantizes_q_times_scale_plus_min_in_manifest_order():
    q = np.array([[0, 1, 2], [127, 254, 255]])
    a, a_bytes = quantized(q, 0.5, -3.0, "a")
    b = {"name": "b", "shape": [2], "dtype": "float32"}
    b_bytes = np.array([1.25, -7.5], "<f4").tobytes()
    c = {"name": "c", "shape": [], "dtype": "float32", "quantization": {"min": 2, "scale": 1, "dtype": "uint8"}}
    d = {"name": "d", "shape": [2], "dtype": "float32", "quantization": {"min": -1.0, "scale": 0.25, "dtype": "uint16"}}
    d_bytes = np.array([4, 1000], "<u2").tobytes()
    manifest = [{"paths": ["g1"], "weights": [a, b]}, {"paths": ["g2"], "weights": [c, d]}]
    got = mn.decode_weights(manifest, [a_bytes + b_bytes, bytes([0]) + d_bytes])
    assert got["a"].dtype == np.float32 and got["a"].shape == (2, 3)
    np.testing.assert_array_equal(got["a"], np.float32(q * 0.5 - 3.0))
    np.testing.assert_array_equal(got["b"], [1.25, -7.5])
    assert got["c"].shape == () and float(got["c"]) == 2.0  # the graph's `x * 2`: q = 0, min = 2
    np.testing.assert_array_equal(got["d"], [0.0, 249.0])
    with pytest.raises(ValueError, match="left over"):
        mn.decode_weights(manifest, [a_bytes + b_bytes + b"\0", bytes([0]) + d_bytes])
    with pytest.raises(ValueError, match="before the tensor"):
        mn.decode_weights(manifest, [a_bytes, bytes([0]) + d_bytes])


def tf_layout(t: torch.Tensor, layout: str) -> np.ndarray:
    a = t.detach().numpy()
    return {"conv": lambda: a.transpose(2, 3, 1, 0), "depthwise": lambda: a.transpose(2, 3, 0, 1),
            "dense": lambda: a.T, "bias": lambda: a}[layout]()


def graph_style_weights(b: mn.Backbone) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Random weights under the graph's own names (its long scope; the dense layer's converter names, found from
    the matmul node) and TF layouts, for every tensor of `b`."""
    rng = np.random.default_rng(0)
    ours = b.state_dict()
    weights, nodes = {}, [{"op": "_FusedMatMul", "input": ["x", "Func/StatefulPartitionedCall/input/_262",
                                                               "Func/StatefulPartitionedCall/input/_263"]}]
    for dst, (src, layout) in mn.graph_names(b).items():
        name = {"dense/kernel": nodes[0]["input"][1], "dense/bias": nodes[0]["input"][2]}.get(src, SCOPE + src)
        weights[name] = rng.standard_normal(tf_layout(ours[dst], layout).shape).astype(np.float32)
    weights[SCOPE + "hub_input/Mul/y"] = np.float32(2)
    return weights, nodes


def test_every_graph_tensor_lands_under_its_stage_name():
    b = mn.Backbone("head", top=True)
    raw, nodes = graph_style_weights(b)
    w = mn.canonical(raw, nodes)
    assert "MobilenetV2/expanded_conv/depthwise/depthwise_weights" in w and "hub_input/Mul/y" in w
    assert w["MobilenetV2/expanded_conv_13/depthwise/depthwise_weights"].shape == (3, 3, 816, 1)  # 136 x 6
    assert "MobilenetV2/expanded_conv/expand/Conv2D_weights" not in w  # block0 does not expand
    mn.load_graph_weights(b, w)
    dw = w["MobilenetV2/expanded_conv_13/depthwise/depthwise_weights"]
    assert torch.equal(b.blocks["block13"].depthwise[0].weight, torch.from_numpy(dw.transpose(2, 3, 0, 1)))
    k = w["MobilenetV2/expanded_conv_7/expand/Conv2D_weights"]  # 1 x 1 x 88 x 528
    assert torch.equal(b.blocks["block7"].expand[0].weight[5, 3, 0, 0], torch.tensor(k[0, 0, 3, 5]))
    stem = w["MobilenetV2/Conv/Conv2D_weights"]  # 3 x 3 x 3 x 48: kernel row, column, in, out
    assert torch.equal(b.stem[0].weight[40, 2, 0, 1], torch.tensor(stem[0, 1, 2, 40]))
    assert torch.equal(b.head[0].bias, torch.from_numpy(w["MobilenetV2/Conv_1/Conv2D_bn_offset"]))
    assert torch.equal(b.top.weight, torch.from_numpy(raw["Func/StatefulPartitionedCall/input/_262"].T))
    n = sum(a.size for k, a in w.items() if k.startswith("MobilenetV2/") or k.startswith("dense/"))
    assert n == sum(p.numel() for p in b.parameters())  # every parameter from the graph, nothing twice
    # a truncated backbone takes only its stages; a missing tensor is refused, named
    short = mn.load_graph_weights(mn.Backbone("block13"), w)
    assert list(short.blocks)[-1] == "block13" and short.head is None and short.top is None
    del w["MobilenetV2/expanded_conv_5/project/Conv2D_bn_offset"]
    with pytest.raises(KeyError, match="expanded_conv_5/project/Conv2D_bn_offset"):
        mn.load_graph_weights(mn.Backbone("block13"), w)
    mn.load_graph_weights(mn.Backbone("block4"), w)  # ... only where the backbone needs it


def test_same_padding_puts_the_extra_row_at_the_end_as_tensorflow_does():
    b = mn.Backbone("block1")
    dw = b.blocks["block1"].depthwise[0]  # 3 x 3, stride 2, depthwise
    assert dw.stride == (2, 2) and dw.groups == 144
    for size, pad in ((8, (0, 1, 0, 1)), (7, (1, 1, 1, 1))):  # even: all at the end; odd: both sides
        x = torch.rand(1, 144, size, size)
        want = F.conv2d(F.pad(x, pad), dw.weight, dw.bias, stride=2, groups=144)
        assert torch.allclose(dw(x), want, atol=1e-6)
    x = torch.rand(1, 3, 9, 9)
    stem = b.stem[0]
    assert torch.allclose(stem(x), F.conv2d(F.pad(x, (1, 1, 1, 1)), stem.weight, stem.bias, stride=2), atol=1e-6)


def test_stage_widths_and_resolutions_at_128():
    want = {"stem": 48, "block0": 24, "block2": 32, "block5": 48, "block9": 88, "block12": 136, "block13": 224,
            "block15": 224, "block16": 448, "head": 1792}
    assert {k: mn.widths()[k] for k in want} == want
    assert list(mn.widths()) == ["stem", *(f"block{i}" for i in range(17)), "head"]
    torch.manual_seed(0)
    b = mn.Backbone("head", top=True).eval()
    with torch.no_grad():
        out = b(torch.rand(2, 3, 128, 128) * 2 - 1)
    assert list(out) == [*mn.NAMES, "classes"]
    for name, y in out.items():
        if name != "classes":
            s = 128 // mn.strides()[name]
            assert y.shape == (2, mn.widths()[name], s, s), name
    assert (mn.strides()["block12"], mn.strides()["block13"]) == (16, 32)
    assert out["classes"].shape == (2, 5) and torch.allclose(out["classes"].sum(1), torch.ones(2))
    assert list(mn.Backbone("block13")(torch.zeros(1, 3, 64, 64))) == list(mn.NAMES[:15])
    with pytest.raises(ValueError):
        mn.Backbone("block13", top=True)
    with pytest.raises(ValueError):
        mn.Backbone("block17")


@pytest.mark.skipif(shutil.which("node") is None, reason="node reads the package's JavaScript")
def test_node_reads_a_tiny_package_in_the_shipped_form(tmp_path):
    """A UMD-free stand-in for model.min.js and its shards (CommonJS modules: the model JSON; base64 strings),
    read by the same node script as the package."""
    spec, data = quantized(np.array([3, 250]), 0.1, -1.0, "w")
    model = {"format": "graph-model", "modelTopology": {"node": []},
             "weightsManifest": [{"paths": ["group1-shard1of2", "group1-shard2of2"], "weights": [spec]}]}
    (tmp_path / "model.min.js").write_text(f"module.exports = {json.dumps(model)};")
    for i, part in enumerate((data[:1], data[1:]), 1):
        (tmp_path / f"group1-shard{i}of2.min.js").write_text(f"module.exports = '{base64.b64encode(part).decode()}';")
    got, groups = mn.read_package(tmp_path)
    assert got["weightsManifest"] == model["weightsManifest"] and groups == [data]
    np.testing.assert_allclose(mn.read_weights(tmp_path)["w"], [-0.7, 24.0], rtol=1e-6)
