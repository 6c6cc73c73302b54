"""Stage 3: export a general-encoder run to ONNX (mirror pass inside the graph), check it against torch, and make
the int8 graph that is served (convolutions, ReLUs and adds int8 as for the base encoder, training.quantize;
activation ranges from 512 training crops of faces/ and characters/).

    python -m training.general.export RUN      # -> runs/general/RUN/general_float.onnx, general.onnx (int8)
    python -m training.general.export RUN --members A B   # an ensemble of finished runs A and B, named RUN
    python -m training.general.export RUN      # a pretrained encoder's run (head.pt) -> runs/general/RUN/encoder.onnx

An ensemble's graph runs every member (each with its mirror pass) and outputs their unit embeddings side by side,
normalised together (`training.encoder.export.Ensemble`): its block is the members' widths added, and its cosine
is the mean of the members' cosines. The members' spaces are trained apart, so they are never summed.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from training.encoder.augment import eval_views
from training.encoder.export import Ensemble, Exported
from training.encoder.model import Encoder
from training.general.dataset import OUT


def load_run(run: str) -> tuple[Encoder, dict]:
    ck = torch.load(OUT / run / "encoder.pt", map_location="cpu", weights_only=False)
    cfg = ck["config"]
    enc = Encoder(widths=tuple(cfg["widths"]), depths=tuple(cfg["depths"]), dim=cfg["dim"])
    enc.load_state_dict(ck["state_dict"])
    return enc.eval(), ck


def fold_bn(enc: Encoder) -> Encoder:
    """The embedding's Linear + BatchNorm1d folded into one Linear with a bias (same outputs in eval mode). Left as
    two ops, onnxruntime fuses them into a node it names MatMulBnFusion_Gemm, and the base encoder's graph has
    one of those already: a composed graph with two is refused ("two nodes with same node name")."""
    fc, bn = enc.fc, enc.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = torch.nn.Linear(fc.in_features, fc.out_features, bias=True)
    with torch.no_grad():
        fused.weight.copy_(fc.weight * scale[:, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
    enc.fc, enc.bn = fused, torch.nn.Identity()
    return enc


def served_modules(names: list[str], ensemble: bool) -> tuple[torch.nn.Module, torch.nn.Module, int, list[dict]]:
    """(the module as trained, the same with the embedding's BatchNorm folded into its Linear, the input size, the
    runs' checkpoints): each run with its mirror pass; with `ensemble`, all of `names` side by side (the module
    docstring). Each run is read once."""
    runs = [load_run(m) for m in names]
    sizes = {ck["config"]["size"] for _, ck in runs}
    if len(sizes) != 1:
        raise SystemExit(f"the members take different input sizes: {sorted(sizes)}")
    if not ensemble and len(runs) != 1:
        raise ValueError("one run, or an ensemble")
    size = sizes.pop()

    def module(encs: list[Encoder]) -> torch.nn.Module:
        parts = [Exported(e, True, size) for e in encs]
        return (Ensemble(parts) if ensemble else parts[0]).eval()

    folded = module([fold_bn(copy.deepcopy(enc)) for enc, _ in runs])
    return module([enc for enc, _ in runs]), folded, size, [ck for _, ck in runs]


def export(run: str, out: Path | None = None, members: list[str] | None = None) -> Path:
    """Export run `run`, or with `members` the ensemble of those runs under the name `run`."""
    names = members or [run]
    ref_model, model, size, cks = served_modules(names, members is not None)
    out = out or OUT / run / "general_float.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, size, size)
    torch.onnx.export(model, (dummy,), str(out), input_names=["input0"], output_names=["embedding"],
                      dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    onnx.checker.check_model(onnx.load(str(out)))
    x = eval_views(np.random.default_rng(0).integers(0, 256, (16, 96, 96, 3), dtype=np.uint8), size)
    with torch.no_grad():
        ref = ref_model(x).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input0": x.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    # an ensemble's steps and config are its members' (`members`); its width is theirs added
    info = {"run": run, "steps": [ck["steps_done"] for ck in cks] if members else cks[0]["steps_done"],
            "size": size, "dim": sum(ck["config"]["dim"] for ck in cks), "flip_tta": True,
            "bytes": out.stat().st_size, "max_abs_diff": diff, "config": None if members else cks[0]["config"]}
    if members is not None:
        info["members"] = [{"run": m, "steps": ck["steps_done"], "dim": ck["config"]["dim"], "config": ck["config"]}
                           for m, ck in zip(names, cks)]
    if diff > 1e-3:
        raise SystemExit(f"ONNX output differs from torch: max |diff| {diff:.2e}")
    served = out.parent / "general.onnx"
    info.update(quantize(out, served, size))
    (out.parent / "general_export.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "config"}))
    return served


def quantize(src: Path, dst: Path, size: int, n: int = 512) -> dict:
    from training.encoder.onnx_embed import preprocess
    from training.encoder.quantize import QUANTIZED_OPS
    from training.general import dataset
    from training.quantize import quantize_graph

    data = dataset.load()
    train = np.where(data.train)[0]
    pick = np.sort(np.random.default_rng(0).choice(train, min(n, len(train)), replace=False))
    feeds = [{"input0": preprocess(data.images[pick[i:i + 32]], size)} for i in range(0, len(pick), 32)]
    quantize_graph(src, dst, feeds, QUANTIZED_OPS)
    x = preprocess(data.images[np.where(data.val_variant)[0][:256]], size)
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]
    b = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"input0": x})[0]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"int8_bytes": dst.stat().st_size, "int8_min_cosine_to_float": round(float(cos.min()), 5),
            "int8_mean_cosine_to_float": round(float(cos.mean()), 5)}


def pretrained_encoder(run: str, fetched: Path | None = None):
    """The pretrained encoder of a head run (`training/general/head.py`): the package's backbone with the run's
    trained head, and the run's checkpoint."""
    from training.general.backbone import Encoder, load_family
    from training.general.features import FETCHED

    if (OUT / run / "head.pt").exists():  # the head alone, on the package's backbone
        ck = torch.load(OUT / run / "head.pt", map_location="cpu", weights_only=False)
        cfg = ck["config"]
        family = cfg.get("backbone", "lite0")
        enc = load_family(Encoder(tuple(cfg["taps"]), cfg["dim"], family), fetched or FETCHED[family])
        enc.proj.load_state_dict(ck["proj"])
        return enc.eval(), ck
    # a run of training.general.train with `backbone` set: the whole encoder tuned
    ck = torch.load(OUT / run / "encoder.pt", map_location="cpu", weights_only=False)
    cfg = ck["config"]
    enc = Encoder(tuple(cfg["taps"]), cfg["dim"], cfg["backbone"])
    enc.load_state_dict(ck["state_dict"])
    ck = {**ck, "steps": ck["steps_done"], "config": {**cfg, "size": cfg["size"]}}
    return enc.eval(), ck


def is_pretrained(run: str) -> bool:
    """A run of the pretrained encoder: a head run, or a general run with `backbone` set."""
    if (OUT / run / "head.pt").exists():
        return True
    path = OUT / run / "encoder.pt"
    return path.exists() and bool(torch.load(path, map_location="cpu", weights_only=False)["config"].get("backbone"))


def export_pretrained(run: str, fetched: Path | None = None, colour: bool = True, name: str | None = None) -> Path:
    """`runs/general/RUN/encoder.onnx` (or `runs/general/NAME/`): the pretrained encoder with its mirror pass and,
    with `colour`, the crop's colour histogram as a second block (`backbone.Served`), checked against torch on
    random crops; and `encoder_export.json` (what made it: package, taps, blocks, config, steps)."""
    from training.general.backbone import Served

    enc, ck = pretrained_encoder(run, fetched)
    size = ck["config"]["size"]
    model = Served(enc, size, colour=colour).eval()
    out = OUT / (name or run) / "encoder.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(2, 3, size, size),), str(out), input_names=["input0"],
                      output_names=["embedding"], dynamic_axes={"input0": {0: "batch"}, "embedding": {0: "batch"}},
                      opset_version=17, dynamo=False)
    model.eval()
    onnx.checker.check_model(onnx.load(str(out)))
    x = (torch.randint(0, 256, (8, 3, size, size)).float() / 255 - 0.5) / 0.5  # pictures' values, as served
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input0": x.numpy()})[0]
    diff = float(np.abs(got - ref).max())
    if diff > 1e-3:
        raise SystemExit(f"ONNX output differs from torch: max |diff| {diff:.2e}")
    blocks = model.blocks()
    info = {"file": "encoder.onnx", "bytes": out.stat().st_size, "dim": sum(b["dims"] for b in blocks), "blocks": blocks,
            "encoder": enc.describe(), "run": run, "steps": ck["steps"], "size": size, "flip_tta": True,
            "max_abs_diff": diff, "config": ck["config"]}
    (out.parent / "encoder_export.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k != "config"}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--members", nargs="+", help="finished runs to export as one ensemble named RUN")
    ap.add_argument("--no-colour", action="store_true", help="a pretrained encoder without its colour block")
    ap.add_argument("--name", help="a pretrained encoder's export into runs/general/NAME instead of its run's folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if is_pretrained(args.run):  # a pretrained encoder's run (training/general/head.py or train.py `backbone`)
        export_pretrained(args.run, colour=not args.no_colour, name=args.name)
        return
    export(args.run, members=args.members)


if __name__ == "__main__":
    main()
