"""The pretrained encoder declared in code (training/general/backbone.py): weights mapped by name, TensorFlow's
padding, the served graph, the head's columns."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from training.general import backbone, bundle
from training.general.features import TAPS, tap_columns


def package_style_state_dict(b: backbone.Backbone) -> dict[str, torch.Tensor]:
    """A state dict named as the PyPI package names it (EfficientNet-PyTorch's `_blocks.i._expand_conv` ...), with
    random values of the right shapes, found by asking `converted_state_dict` which package key fills which of ours."""
    asked: dict[str, int] = {}

    class Recorder(dict):
        def __missing__(self, key):
            asked[key] = len(asked)
            return torch.tensor(float(asked[key]))

    mapped = backbone.converted_state_dict(Recorder(), b)
    ours = b.state_dict()
    by_marker = {int(v.item()): k for k, v in mapped.items()}
    g = torch.Generator().manual_seed(0)
    return {src: torch.rand(ours[by_marker[i]].shape, generator=g) + 0.5 for src, i in asked.items()}


def test_every_pretrained_tensor_lands_under_its_stage_name(tmp_path):
    b = backbone.Backbone("head")
    sd = package_style_state_dict(b)
    assert "_blocks.15._project_conv.weight" in sd and "_conv_head.weight" in sd  # 16 blocks, then the head
    assert sd["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)  # s3's first block: 24 x 6, kernel 5
    torch.save(sd, tmp_path / "w.pth")
    backbone.load_pretrained(b, tmp_path / "w.pth")
    assert torch.equal(b.stages["s6"][3].project[0].weight, sd["_blocks.14._project_conv.weight"])
    assert torch.equal(b.head[1].running_var, sd["_bn1.running_var"])
    # a truncated backbone takes only its stages; a missing tensor is refused
    short = backbone.Backbone("s5")
    backbone.load_pretrained(short, tmp_path / "w.pth")
    assert "s6" not in short.stages and short.head is None
    del sd["_blocks.7._bn1.running_mean"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(KeyError):
        backbone.load_pretrained(backbone.Backbone("head"), tmp_path / "bad.pth")


def test_same_padding_puts_the_extra_row_at_the_end_as_tensorflow_does():
    x = torch.rand(1, 2, 8, 8)
    conv = backbone.SameConv(2, 3, 3, 2, bias=False)
    want = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)  # TF SAME, stride 2, kernel 3: (0, 1)
    assert torch.allclose(conv(x), want)
    conv5 = backbone.SameConv(2, 3, 5, 1, bias=False)
    assert torch.allclose(conv5(x), F.conv2d(x, conv5.weight, padding=2))  # stride 1: symmetric


def test_stage_widths_and_the_declared_block(tmp_path):
    enc = backbone.Encoder(("s5", "head"), dim=16).eval()
    out = enc.backbone(torch.rand(2, 3, 64, 64))
    assert {k: v.shape[1] for k, v in out.items()} == backbone.widths()
    assert out["s5"].shape[-1] == 4 and out["head"].shape[-1] == 2  # strides 16 and 32
    assert enc.features == 112 + 1280 and enc.blocks() == [{"name": "embedding", "dims": 16}]
    assert enc.describe()["weights"]["package"] == backbone.PACKAGE


def test_the_served_graph_is_the_mirror_averaged_embedding(tmp_path):
    enc = backbone.Encoder(("s6", "s7"), dim=8).eval()
    model = backbone.Served(enc, 32).eval()
    path = tmp_path / "enc.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), str(path), input_names=["input0"],
                      output_names=["embedding"], dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input0": x.numpy()})[0]
    with torch.no_grad():
        want = F.normalize(enc.proj((enc.pooled(x) + enc.pooled(x.flip(3))) / 2), dim=1).numpy()
        mirrored = model(x.flip(3)).numpy()
    assert got.shape == (3, 8)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(mirrored - want).max() < 1e-4  # a crop and its mirror embed the same


def test_the_head_reads_the_columns_of_its_taps():
    w = backbone.widths()
    cols = tap_columns(("s6", "head"))
    starts = np.cumsum([0] + [w[t] for t in TAPS])
    assert len(cols) == w["s6"] + w["head"]
    assert cols[0] == starts[TAPS.index("s6")] and cols[-1] == starts[-1] - 1


def test_the_linear_classifier_fit_separates_what_is_separable():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    y = rng.integers(0, 3, 300)
    x = centres[y] + 0.1 * rng.normal(size=(300, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    W, b = bundle.fit_linear(x, y, 3)
    assert W.shape == (3, 8) and b.shape == (3,)
    assert ((x @ W.T + b).argmax(1) == y).mean() > 0.98


def test_the_mobilenet_family_taps_its_named_blocks():
    from training.general import mobilenet

    enc = backbone.Encoder(("block6", "block13"), dim=8, family="mnv2").eval()
    assert enc.features == mobilenet.widths()["block6"] + mobilenet.widths()["block13"]
    assert "block14" not in enc.backbone.blocks  # cut after its last tap
    assert enc(torch.rand(2, 3, 64, 64) * 2 - 1).shape == (2, 8)
    assert enc.describe()["weights"] == {"package": "nsfwjs", "version": "4.4.0", "license": "MIT"}
    enc.freeze("block9")
    assert not any(p.requires_grad for p in enc.backbone.blocks["block9"].parameters())
    assert all(p.requires_grad for p in enc.backbone.blocks["block10"].parameters())
    assert len(tap_columns(("block9", "block13"), "mnv2")) == mobilenet.widths()["block9"] + 224


def test_frozen_stages_keep_their_weights_and_statistics_while_training():
    enc = backbone.Encoder(("s5", "s6"), dim=8)
    enc.freeze("s4")
    enc.train()
    assert not enc.backbone.stages["s4"].training and enc.backbone.stages["s5"].training
    assert not any(p.requires_grad for p in enc.backbone.stages["s3"].parameters())
    assert all(p.requires_grad for p in enc.backbone.stages["s6"].parameters())
    before = enc.backbone.stages["s4"][0].expand[1].running_mean.clone()
    moving = enc.backbone.stages["s5"][0].expand[1].running_mean.clone()
    enc(torch.rand(4, 3, 64, 64) * 2 - 1).sum().backward()
    assert torch.equal(enc.backbone.stages["s4"][0].expand[1].running_mean, before)
    assert not torch.equal(enc.backbone.stages["s5"][0].expand[1].running_mean, moving)
    assert enc.backbone.stem[0].weight.grad is None and enc.proj.weight.grad is not None


def test_a_compact_checkpoint_keeps_the_weights_in_half_and_the_step(tmp_path):
    import json

    from training.general import train

    enc = backbone.Encoder(("s5",), dim=8)
    cos = torch.nn.Linear(8, 3)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": enc.state_dict(), "proj": enc.proj.state_dict(), "cosface": cos.state_dict(),
                "opt": {"moments": torch.zeros(10_000)}, "steps_done": 1234, "config": {"run": "x"},
                "identities": ["a", "b", "c"]}, run / "encoder.pt")
    (run / "history.json").write_text(json.dumps({"steps_done": 1234}))
    out = train.compact(run, tmp_path / "candidates" / "x")
    ck = torch.load(out, weights_only=False)
    assert ck["steps_done"] == 1234 and ck["identities"] == ["a", "b", "c"] and "opt" not in ck
    w = ck["state_dict"]["backbone.stages.s5.0.project.0.weight"]
    assert w.dtype == torch.float16
    assert torch.allclose(w.float(), enc.backbone.stages["s5"][0].project[0].weight, atol=1e-3)
    assert ck["state_dict"]["backbone.stem.1.num_batches_tracked"].dtype == torch.int64  # counters stay counters
    assert (tmp_path / "candidates" / "x" / "history.json").exists()


def test_a_manifest_serving_would_refuse_is_not_written(tmp_path):
    import json
    import shutil

    from inference.errors import BundleError
    from training import manifest as tm

    root = bundle.ROOT / "models"
    good = json.loads((root / "manifest.json").read_text())
    path = tmp_path / "manifest.json"
    shutil.copy2(root / "manifest.json", path)
    bad = {**good, "classifier": {**good["classifier"], "format": "no-such-format"}}
    with pytest.raises(BundleError):
        tm.write_manifest(path, bad)
    assert json.loads(path.read_text()) == good  # nothing lost
    tm.write_manifest(tmp_path / "partial.json", {"format": 1, "name": "x", "detector": {}}, partial=True)
    with pytest.raises(BundleError):
        tm.write_manifest(tmp_path / "partial.json", {"format": 1, "name": "x", "detector": {}})


def test_the_trainers_embedding_runs_where_the_model_is():
    from training.encoder.train import embed, supcon

    enc = backbone.Encoder(("s4",), dim=8)
    imgs = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    e = embed(enc, imgs, 32, flip=True)
    assert e.shape == (3, 8) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-3)
    assert enc.training  # back in training mode
    z = torch.rand(4, 5)
    assert float(supcon(z, torch.tensor([0, 0, 1, 1]), 0.1)) > 0


def test_the_colour_block_is_the_numpy_histogram_and_exports_exactly(tmp_path):
    """`Served(colour=True)` outputs [embedding | colour]: the colour block is `colour_hist` of the input crop (a
    fixed HSV histogram, the same for the mirror image), in torch and in the exported ONNX graph, bin for bin."""
    enc = backbone.Encoder(("s6", "s7"), dim=8).eval()
    model = backbone.Served(enc, 32, colour=True).eval()
    assert model.blocks() == [{"name": "embedding", "dims": 8}, {"name": "colour", "dims": 216}]
    path = tmp_path / "enc.onnx"
    torch.onnx.export(model, (torch.zeros(2, 3, 32, 32),), str(path), input_names=["input0"],
                      output_names=["embedding"], dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 3, 32, 32))
    pixels[0] = 128  # grey: every pixel in one bin
    pixels[1, 0], pixels[1, 1:] = 250, 10  # saturated red
    x = torch.from_numpy(((pixels / 255.0 - 0.5) / 0.5).astype(np.float32))
    want = backbone.colour_hist(x.numpy())
    with torch.no_grad():
        torch_out = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input0": x.numpy()})[0]
    assert got.shape == (4, 8 + 216)
    assert np.abs(torch_out[:, 8:] - want).max() < 1e-6 and np.abs(got[:, 8:] - want).max() < 1e-6
    assert (want[0] > 0).sum() == 1 and (want[1] > 0).sum() == 1 and want[1].argmax() != want[0].argmax()
    assert np.abs(got[:, :8] - torch_out[:, :8]).max() < 1e-4
    with torch.no_grad():
        assert np.abs(model(x.flip(3)).numpy()[:, 8:] - want).max() < 1e-6
